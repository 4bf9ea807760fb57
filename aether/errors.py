"""One error hierarchy for the daemon, with the stable codes of the API.

The daemon raises these; its transports translate them (HTTP status + JSON body,
gRPC status + `aether-error-code` trailer). Nothing else should reach a client.
"""

from __future__ import annotations

from grpclib.const import Status

# code -> (HTTP status, gRPC status). The codes are part of the public API.
CODES: dict[str, tuple[int, Status]] = {
    "invalid_argument": (400, Status.INVALID_ARGUMENT),
    "unauthenticated": (401, Status.UNAUTHENTICATED),
    "permission_denied": (403, Status.PERMISSION_DENIED),
    "not_found": (404, Status.NOT_FOUND),
    "conflict": (409, Status.ABORTED),
    "already_exists": (409, Status.ALREADY_EXISTS),
    "failed_precondition": (412, Status.FAILED_PRECONDITION),
    "range_not_satisfiable": (416, Status.OUT_OF_RANGE),
    "resource_exhausted": (429, Status.RESOURCE_EXHAUSTED),
    "payload_too_large": (413, Status.RESOURCE_EXHAUSTED),
    "internal": (500, Status.INTERNAL),
    "unimplemented": (501, Status.UNIMPLEMENTED),
    "unavailable": (503, Status.UNAVAILABLE),
}


class AetherError(Exception):
    code = "internal"

    def __init__(self, message: str, **details: str) -> None:
        super().__init__(message)
        self.message = message
        self.details = {k: str(v) for k, v in details.items()}

    @property
    def http_status(self) -> int:
        return CODES[self.code][0]

    @property
    def grpc_status(self) -> Status:
        return CODES[self.code][1]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code}: {self.message})"


class InvalidArgument(AetherError):
    code = "invalid_argument"


class Unauthenticated(AetherError):
    code = "unauthenticated"


class PermissionDenied(AetherError):
    code = "permission_denied"


class NotFound(AetherError):
    code = "not_found"


class Conflict(AetherError):
    """A conditional write lost: If-Match / expected version did not hold."""

    code = "conflict"


class AlreadyExists(AetherError):
    code = "already_exists"


class FailedPrecondition(AetherError):
    """The target is in the wrong state: archived session, not a directory, not empty..."""

    code = "failed_precondition"


class RangeNotSatisfiable(AetherError):
    code = "range_not_satisfiable"


class ResourceExhausted(AetherError):
    code = "resource_exhausted"


class PayloadTooLarge(AetherError):
    code = "payload_too_large"


class Unimplemented(AetherError):
    code = "unimplemented"


class Internal(AetherError):
    code = "internal"


class Unavailable(AetherError):
    code = "unavailable"


# One class per wire code (explicit: subclasses elsewhere must not shadow these).
_BY_CODE: dict[str, type[AetherError]] = {
    cls.code: cls
    for cls in (InvalidArgument, Unauthenticated, PermissionDenied, NotFound, Conflict,
                AlreadyExists, FailedPrecondition, RangeNotSatisfiable, ResourceExhausted,
                PayloadTooLarge, Internal, Unimplemented, Unavailable)
}
assert set(_BY_CODE) == set(CODES), "every code needs its class"


def from_code(code: str, message: str) -> AetherError:
    """Rebuild the typed error from a wire code (the client SDK raises the same classes)."""
    return _BY_CODE.get(code, Internal)(message)
