"""One HTTP request on its way to one RPC: what was matched, and how the
request message is built from body, query and path (in that order; the path
always wins)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import betterproto2
from aiohttp import web

from aether.errors import InvalidArgument, PayloadTooLarge
from aetherd.api import Api
from aetherd.config import Config
from aetherd.http.proto_json import accepted_names, message_from_json, message_to_json
from aetherd.http.query import apply_path, apply_query, route_aliases
from aetherd.http.routes import Route
from aetherd.http.rpcs import Rpc


@dataclass
class Call:
    request: web.Request
    api: Api
    config: Config
    route: Route
    rpc: Rpc
    params: dict[str, str]
    query: list[tuple[str, str]] = field(default_factory=list)
    request_id: str = ""

    def method(self, name: str | None = None) -> Callable[..., Any]:
        """The bound API method: the route's RPC, or another RPC of the same service."""
        return getattr(getattr(self.api, self.route.service), name or self.route.rpc)

    def take_query(self, *keys: str) -> list[str]:
        """Remove and return the values of query parameters the handler reads itself."""
        taken = [v for k, v in self.query if k in keys]
        self.query = [(k, v) for k, v in self.query if k not in keys]
        return taken

    def take_one(self, *keys: str) -> str | None:
        values = self.take_query(*keys)
        if len(values) > 1:
            raise InvalidArgument(f"query parameter {keys[0]!r} given more than once",
                                  parameter=keys[0])
        return values[0] if values else None

    def has_query(self, field_name: str) -> bool:
        names = {k for k, v in accepted_names(self.rpc.request).items() if v == field_name}
        return any(k in names for k, _ in self.query)

    async def body(self) -> bytes:
        declared = self.request.content_length
        if declared is not None and declared > self.config.max_body_bytes:
            raise PayloadTooLarge(f"request body over the limit of {self.config.max_body_bytes} "
                                  "bytes", limit=str(self.config.max_body_bytes))
        # aiohttp raises HTTPRequestEntityTooLarge past client_max_size for bodies
        # without a Content-Length (chunked); errors.py maps that to the same 413.
        return await self.request.read()

    async def json_body(self) -> Any:
        raw = await self.body()
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise InvalidArgument(f"request body is not valid JSON: {exc}") from None

    async def build(
        self, *, body: betterproto2.Message | None = None,
        aliases: Mapping[str, str] | None = None,
    ) -> betterproto2.Message:
        """The request message per the route table; `body` replaces the body step."""
        if body is not None:
            msg = body
        elif self.route.body == "json":
            msg = message_from_json(self.rpc.request, await self.json_body())
        elif self.route.body == "raw":
            msg = self.rpc.request()
            setattr(msg, self.route.raw_field, await self.body())
        else:
            msg = self.rpc.request()
        apply_query(msg, self.query, aliases={**route_aliases(self.route), **(aliases or {})})
        apply_path(msg, self.params)
        return msg


def json_reply(msg: betterproto2.Message, status: int = 200,
               headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=json.dumps(message_to_json(msg)),
                        content_type="application/json", headers=headers)
