"""The HTTP/JSON shim: aiohttp in front of the same Api objects gRPC serves.

Routing is done here from the raw request target rather than by aiohttp's
router (see routing.py and urls.py for why), in one middleware that also owns
authentication and turns every failure into the JSON error shape. No route is
registered with aiohttp, so nothing can reach a handler around it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from aether import pb
from aetherd.api import Api
from aetherd.auth.authenticate import Authenticator
from aetherd.auth.principal import Principal, as_principal
from aetherd.config import Config
from aetherd.http import files, streams
from aetherd.http import metrics as http_metrics
from aetherd.http.call import Call, json_reply
from aetherd.http.errors import response_for
from aetherd.http.openapi import OPENAPI_PATH, build_openapi
from aetherd.http.routes import ROUTES, Route
from aetherd.http.routing import Router
from aetherd.http.rpcs import rpc
from aetherd.http.urls import parse_query, split_target
from aetherd.metrics import Metrics
from aetherd.services.events import from_origin

log = logging.getLogger("aetherd.http")

# Served by the shim itself; not an RPC, so not in the route table.
OPENAPI_ROUTE = Route("GET", OPENAPI_PATH, "", "", summary="This API's OpenAPI 3.1 document.")
# The one route a TCP client may call without a token: liveness probes have none.
# /metrics is not public: it names routes and sizes, and Prometheus can send a
# bearer token (`authorization: {credentials_file: ...}` in its scrape config).
PUBLIC_PATH = "/v1/health"

# Upload content types that make POST /v1/sessions an archive upload.
ARCHIVE_UPLOADS: dict[str, pb.ArchiveFormat] = {
    "application/x-tar": pb.ArchiveFormat.TAR,
    "application/gzip": pb.ArchiveFormat.TAR_GZ,
    "application/x-gzip": pb.ArchiveFormat.TAR_GZ,
    "application/zip": pb.ArchiveFormat.ZIP,
    "application/x-zip-compressed": pb.ArchiveFormat.ZIP,
    "application/octet-stream": pb.ArchiveFormat.UNSPECIFIED,
}

CLIENT_CLOSED = 499  # nginx's status for "the client went away first"

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")

Handler = Callable[[Call], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class _Shim:
    api: Api
    config: Config
    require_token: bool
    authenticator: Authenticator
    router: Router
    openapi_json: str
    metrics: Metrics


SHIM = web.AppKey("aether_http_shim", _Shim)


def make_app(api: Api, config: Config, authenticator: Authenticator, *,
             require_token: bool) -> web.Application:
    """`require_token`: a TCP listener (bearer tokens); else a unix socket,
    whose every caller is the socket's owner."""
    app = web.Application(client_max_size=config.max_body_bytes, middlewares=[_serve])
    # The observability service owns the daemon's metrics (see api/observability.py).
    metrics: Metrics = api.observability.metrics  # type: ignore[attr-defined]
    app[SHIM] = _Shim(api, config, require_token, authenticator,
                      Router((*ROUTES, OPENAPI_ROUTE, http_metrics.METRICS_ROUTE)),
                      json.dumps(build_openapi()), metrics)
    return app


@web.middleware
async def _serve(request: web.Request, handler: object) -> web.StreamResponse:
    # `handler` is aiohttp's "no route" handler (no routes are registered):
    # every request is dispatched here instead.
    incoming = request.headers.get("X-Request-Id", "")
    request_id = incoming if _REQUEST_ID.fullmatch(incoming) else secrets.token_hex(8)
    shim = request.app[SHIM]
    started, matched = time.perf_counter(), []
    try:
        response = await _dispatch(request, shim, request_id, matched)
    except asyncio.CancelledError:
        # The client went away (aiohttp cancels the handler). Count the request
        # under the status it was sent, or nginx's 499 if nothing went out.
        sent = request.get(streams.STARTED_RESPONSE) or web.StreamResponse(status=CLIENT_CLOSED)
        http_metrics.record(shim.metrics, shim.router, request, sent, started,
                            matched[0] if matched else None)
        raise
    except Exception as exc:  # every failure leaves as the JSON error shape
        response = response_for(exc, request, request_id)
    if not response.prepared:  # streamed responses set it themselves
        response.headers["X-Request-Id"] = request_id
    http_metrics.record(shim.metrics, shim.router, request, response, started,
                        matched[0] if matched else None)
    return response


async def _dispatch(request: web.Request, shim: _Shim, request_id: str,
                    matched: list[Route]) -> web.StreamResponse:
    """Serve one request; the route it resolves to is appended to `matched`."""
    raw_path, raw_query = split_target(request.raw_path)
    public = raw_path == PUBLIC_PATH and request.method in ("GET", "HEAD")
    principal = _principal(request, shim, public)
    match = shim.router.resolve(request.method, raw_path)
    route = match.route
    matched.append(route)
    query = parse_query(raw_query)
    if route is OPENAPI_ROUTE:
        return web.Response(text=shim.openapi_json, content_type="application/json")
    if route is http_metrics.METRICS_ROUTE:
        return await http_metrics.serve(request, shim.metrics)
    call = Call(request=request, api=shim.api, config=shim.config, route=route,
                rpc=rpc(route.service, route.rpc), params=match.params, query=query,
                request_id=request_id)
    with as_principal(principal), from_origin(request.headers.get("Aether-Origin", "")):
        return await _handler_for(call)(call)


_NOBODY = Principal(name="", authenticated_by="none")


def _principal(request: web.Request, shim: _Shim, public: bool) -> Principal:
    """Who sends this request. A TCP request must authenticate, except to the
    public health route (its caller is nobody, which is all that route needs)."""
    if not shim.require_token:
        return shim.authenticator.socket_owner()
    header = request.headers.get("Authorization", "")
    if public and not header:
        return _NOBODY
    return shim.authenticator.bearer(header)


def _handler_for(call: Call) -> Handler:
    route = call.route
    special = SPECIAL.get((route.service, route.rpc))
    if special is not None:
        return special
    if route.kind == "raw_file":
        return files.read_file
    if route.kind == "stream_bytes":
        return streams.export
    if route.kind == "sse":
        return lambda c: streams.follow(c, route.rpc)
    follow = streams.FOLLOWS.get((route.service, route.rpc))
    if follow is not None and streams.wants_event_stream(call.request):
        return lambda c: streams.follow(c, follow)
    return _unary


async def _unary(call: Call) -> web.Response:
    reply = await call.method()(await call.build())
    return json_reply(reply, call.route.success_status)


async def _create_session(call: Call) -> web.Response:
    """JSON body, or an archive upload whose content type names the format."""
    aliases = {"label": "labels", "tag": "tags"}
    body = None
    if "Content-Type" in call.request.headers:
        archive_format = ARCHIVE_UPLOADS.get(call.request.content_type)
        if archive_format is not None:
            body = pb.CreateSessionRequest(source=pb.SessionSource(archive=pb.ArchiveSource(
                data=await call.body(), format=archive_format)))
    reply = await call.method()(await call.build(body=body, aliases=aliases))
    return json_reply(reply, call.route.success_status)


SPECIAL: dict[tuple[str, str], Handler] = {
    ("sessions", "create_session"): _create_session,
    ("files", "write_file"): files.write_file,
    ("files", "delete_file"): files.delete_file,
    ("files", "patch_file"): files.patch_file,
}
