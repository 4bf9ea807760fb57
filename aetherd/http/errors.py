"""Every failure as the one JSON error shape of the API (pb.ErrorResponse).

Nothing but this shape leaves the HTTP shim: typed AetherErrors keep their
code, gRPC statuses (the generated bases raise UNIMPLEMENTED) map to the code
of that status, aiohttp's own HTTP exceptions map by status, and anything else
is a 500 "internal" whose details only carry the request id to grep the log for.
"""

from __future__ import annotations

import json
import logging

import grpclib
from aiohttp import web
from grpclib.const import Status

from aether import pb
from aether.errors import CODES, AetherError

log = logging.getLogger("aetherd.http")

# gRPC status -> our code; the first code listed in CODES for a status wins.
_CODE_BY_GRPC: dict[Status, str] = {}
for _code, (_http, _grpc) in CODES.items():
    _CODE_BY_GRPC.setdefault(_grpc, _code)
_CODE_BY_GRPC[Status.DEADLINE_EXCEEDED] = "unavailable"
_CODE_BY_GRPC[Status.CANCELLED] = "unavailable"

_CODE_BY_HTTP: dict[int, str] = {}
for _code, (_http, _grpc) in CODES.items():
    _CODE_BY_HTTP.setdefault(_http, _code)


class MethodNotAllowed(AetherError):
    """The path exists, the method does not: 405 with an Allow header.

    Its code stays one of the stable codes (a wrong method is a bad argument);
    only the HTTP status is specific.
    """

    code = "invalid_argument"

    def __init__(self, method: str, allowed: list[str]) -> None:
        super().__init__(f"method {method} not allowed here; allowed: {', '.join(allowed)}",
                         allowed=", ".join(allowed))
        self.allowed = allowed

    @property
    def http_status(self) -> int:
        return 405


def describe(
    exc: BaseException, request: web.Request, request_id: str,
) -> tuple[int, pb.ErrorResponse, dict[str, str]]:
    """-> (HTTP status, error body, extra headers) for any exception."""
    if isinstance(exc, MethodNotAllowed):
        return _shape(405, exc.code, exc.message, exc.details, {"Allow": ", ".join(exc.allowed)})
    if isinstance(exc, AetherError):
        code = exc.code if exc.code in CODES else "internal"
        if code == "internal" and not exc.expose:
            return _internal(exc, request, request_id)
        if code == "internal":  # written for the caller (e.g. DataLoss), still worth a log line
            log.error("%s in %s %s [request %s]", exc.message, request.method,
                      request.raw_path, request_id)
            return _shape(exc.http_status, code, exc.message,
                          {**exc.details, "request_id": request_id})
        headers = {"WWW-Authenticate": "Bearer"} if code == "unauthenticated" else {}
        if "retry_after_seconds" in exc.details:  # a rate limit: say when to come back
            headers["Retry-After"] = exc.details["retry_after_seconds"]
        # exc.http_status, not CODES: a subclass may refine the status within
        # its code (StorageFull is resource_exhausted with 507).
        status = exc.http_status if exc.code == code else CODES[code][0]
        return _shape(status, code, exc.message, exc.details, headers)
    if isinstance(exc, grpclib.GRPCError):
        code = _CODE_BY_GRPC.get(exc.status, "internal")
        if code == "internal":
            return _internal(exc, request, request_id)
        default = ("this operation is not implemented yet" if code == "unimplemented"
                   else code.replace("_", " "))
        return _shape(CODES[code][0], code, exc.message or default)
    if isinstance(exc, web.HTTPException):
        if exc.status == 413:
            return _shape(413, "payload_too_large", "request body too large")
        code = _CODE_BY_HTTP.get(exc.status)
        if code is None or exc.status >= 500:
            return _internal(exc, request, request_id)
        return _shape(exc.status, code, exc.reason)
    return _internal(exc, request, request_id)


def response_for(exc: BaseException, request: web.Request, request_id: str) -> web.Response:
    status, body, headers = describe(exc, request, request_id)
    return error_response(status, body, headers)


def error_response(status: int, body: pb.ErrorResponse,
                   headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=json.dumps(body.to_dict(include_default_values=True)),
                        content_type="application/json", headers=headers)


def _shape(status: int, code: str, message: str, details: dict[str, str] | None = None,
           headers: dict[str, str] | None = None) -> tuple[int, pb.ErrorResponse, dict[str, str]]:
    body = pb.ErrorResponse(error=pb.ErrorDetail(
        code=code, message=message, status=status, details=details or {}))
    return status, body, headers or {}


def _internal(exc: BaseException, request: web.Request,
              request_id: str) -> tuple[int, pb.ErrorResponse, dict[str, str]]:
    log.error("internal error in %s %s [request %s]", request.method, request.raw_path,
              request_id, exc_info=exc)
    return _shape(500, "internal", "internal error", {"request_id": request_id})
