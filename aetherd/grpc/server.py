"""The gRPC transport: the Api objects served by grpclib.

Generated `XxxServiceBase` handlers never see the stream, so two things are
done around them here: errors are translated (AetherError -> gRPC status plus
the stable code in the `aether-error-code` trailer), and on TCP the bearer
token is checked in a `RecvRequest` listener before any handler runs.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from typing import Any

import grpclib.const
import grpclib.events
from grpclib import GRPCError
from grpclib.const import Status
from grpclib.server import Server

from aether.errors import AetherError
from aetherd.api import Api

log = logging.getLogger("aetherd.grpc")
ERROR_CODE_KEY = "aether-error-code"


async def _fail(stream: Any, status: Status, code: str, message: str) -> None:
    await stream.send_trailing_metadata(
        status=status, status_message=message, metadata={ERROR_CODE_KEY: code}
    )


def _translated(func: Callable[[Any], Any], name: str) -> Callable[[Any], Any]:
    async def handler(stream: Any) -> None:
        try:
            await func(stream)
        except AetherError as e:
            await _fail(stream, e.grpc_status, e.code, e.message)
        except GRPCError as e:
            code = "unimplemented" if e.status == Status.UNIMPLEMENTED else e.status.name.lower()
            await _fail(stream, e.status, code, e.message or e.status.name)
        except UnicodeDecodeError:
            await _fail(stream, Status.INVALID_ARGUMENT, "invalid_argument",
                        "a string field is not valid UTF-8")
        except Exception:
            log.exception("unhandled error in %s", name)
            await _fail(stream, Status.INTERNAL, "internal", "internal error")

    return handler


class _Translating:
    """Wraps a service so every handler of its __mapping__ translates errors."""

    def __init__(self, service: Any) -> None:
        self.service = service

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        out = {}
        for name, h in self.service.__mapping__().items():
            out[name] = grpclib.const.Handler(
                _translated(h.func, name), h.cardinality, h.request_type, h.reply_type
            )
        return out


def make_server(api: Api, *, token: str | None) -> Server:
    server = Server([_Translating(s) for s in api.services()])
    if token:
        expected = f"Bearer {token}".encode()

        async def check_token(event: grpclib.events.RecvRequest) -> None:
            given = event.metadata.get("authorization", "")
            if not hmac.compare_digest(str(given).encode(), expected):
                raise GRPCError(Status.UNAUTHENTICATED, "missing or bad bearer token")

        grpclib.events.listen(server, grpclib.events.RecvRequest, check_token)
    return server
