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
    # An `internal` error's message normally stays in the daemon's log (it may
    # name code or state the caller has no business seeing). A subclass sets
    # this when its message is written for the caller and must reach them.
    expose = False

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


class StorageFull(ResourceExhausted):
    """The disk under the data directory is full (ENOSPC / SQLITE_FULL).

    The code stays `resource_exhausted` (gRPC RESOURCE_EXHAUSTED is documented
    for "the entire file system is out of space"); only the HTTP status is
    specific: 507 Insufficient Storage, so it is not mistaken for the 429 of a
    limit that the same request will hit again. Nothing of the request was
    stored; it succeeds once space is freed.
    """

    @property
    def http_status(self) -> int:
        return 507


class PayloadTooLarge(AetherError):
    code = "payload_too_large"


class Unimplemented(AetherError):
    code = "unimplemented"


class Internal(AetherError):
    code = "internal"


class DataLoss(Internal):
    """Stored content is missing or fails its hash check.

    Still `internal` (500): the daemon, not the request, is at fault. But the
    message is shown: it names only content hashes the caller can already see
    (stat's extents) and says what to do, and a client must be able to tell
    "your data is damaged" from a passing fault.
    """

    expose = True


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
