"""The gRPC transport: the Api objects served by grpclib.

Generated `XxxServiceBase` handlers never see the stream, so two things are
done around them here: errors are translated (AetherError -> gRPC status plus
the stable code in the `aether-error-code` trailer), and the caller is
authenticated (aetherd/auth) before the handler reads the request, then
served as that principal. (Doing it here rather than in a grpclib event
listener lets a refusal carry the trailer too.)
Every call is counted in the daemon's metrics there as well, by method path
and status.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import grpclib.const
from grpclib import GRPCError
from grpclib.const import Status
from grpclib.server import Server

from aether.errors import AetherError
from aetherd.api import Api
from aetherd.auth.principal import Principal, as_principal
from aetherd.metrics import Metrics
from aetherd.services.events import from_origin

# From call metadata to the caller (raising Unauthenticated), or None on a
# unix socket, whose every caller is the socket's owner.
Authenticate = Callable[[Any], Principal]

log = logging.getLogger("aetherd.grpc")
ERROR_CODE_KEY = "aether-error-code"


async def _fail(stream: Any, status: Status, code: str, message: str) -> None:
    await stream.send_trailing_metadata(
        status=status, status_message=message, metadata={ERROR_CODE_KEY: code}
    )


def _translated(func: Callable[[Any], Any], name: str, authenticate: Authenticate,
                metrics: Metrics) -> Callable[[Any], Any]:
    # A Follow lasts as long as its client listens: counted, not timed.
    timed = not name.endswith("/Follow")

    async def handler(stream: Any) -> None:
        started = time.perf_counter()
        # A client that goes away cancels the call (that is how a Follow ends).
        status = Status.CANCELLED
        if not timed:
            metrics.open_streams.labels("grpc").inc()
        try:
            status = await _handle(func, name, authenticate, stream)
        finally:
            if not timed:
                metrics.open_streams.labels("grpc").dec()
            metrics.observe("grpc", name, status.name, started, timed=timed)

    return handler


async def _handle(func: Callable[[Any], Any], name: str, authenticate: Authenticate,
                  stream: Any) -> Status:
    """Run one call as its authenticated caller, with error translation; its status."""
    try:
        principal = authenticate(stream.metadata)
        origin = str((stream.metadata or {}).get("aether-origin", ""))
        with as_principal(principal), from_origin(origin):
            await func(stream)
        return Status.OK
    except AetherError as e:
        await _fail(stream, e.grpc_status, e.code, e.message)
        return e.grpc_status
    except GRPCError as e:
        code = "unimplemented" if e.status == Status.UNIMPLEMENTED else e.status.name.lower()
        await _fail(stream, e.status, code, e.message or e.status.name)
        return e.status
    except UnicodeDecodeError:
        await _fail(stream, Status.INVALID_ARGUMENT, "invalid_argument",
                    "a string field is not valid UTF-8")
        return Status.INVALID_ARGUMENT
    except Exception:
        log.exception("unhandled error in %s", name)
        await _fail(stream, Status.INTERNAL, "internal", "internal error")
        return Status.INTERNAL


class _Translating:
    """Wraps a service: every handler authenticates its caller and translates errors."""

    def __init__(self, service: Any, authenticate: Authenticate, metrics: Metrics) -> None:
        self.service = service
        self.authenticate = authenticate
        self.metrics = metrics

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        out = {}
        for name, h in self.service.__mapping__().items():
            out[name] = grpclib.const.Handler(
                _translated(h.func, name, self.authenticate, self.metrics), h.cardinality,
                h.request_type, h.reply_type,
            )
        return out


def make_server(api: Api, authenticator: Any, *, require_token: bool) -> Server:
    """`require_token`: a TCP listener (bearer tokens in the `authorization`
    metadata); else a unix socket, whose every caller is the socket's owner."""
    if require_token:
        def authenticate(metadata: Any) -> Principal:
            return authenticator.bearer(str(metadata.get("authorization", "")))
    else:
        def authenticate(metadata: Any) -> Principal:
            return authenticator.socket_owner()
    # The observability service owns the daemon's metrics (see api/observability.py).
    metrics: Metrics = api.observability.metrics  # type: ignore[attr-defined]
    return Server([_Translating(s, authenticate, metrics) for s in api.services()])
