"""What may be stored as an extended attribute of a session path.

Only the `user.` namespace, as an unprivileged process may set on Linux:
`security.`, `trusted.` and `system.` attributes mean something to the
kernel of whoever mounts the session, and are not the session's to carry.
`user.aether.` is reserved for the attributes a mount computes (hash,
extents, session, state). The sizes are Linux's (XATTR_NAME_MAX,
XATTR_SIZE_MAX), and one path holds at most MAX_TOTAL bytes of names and
values, so that a directory's tree object stays small.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aether.errors import InvalidArgument, ResourceExhausted

PREFIX = "user."
RESERVED = "user.aether."
MAX_NAME_BYTES = 255
MAX_VALUE_BYTES = 64 * 1024
MAX_TOTAL = 64 * 1024


def check_name(path: str, name: str) -> None:
    raw = name.encode("utf-8", "surrogatepass")
    if not name.startswith(PREFIX) or name == PREFIX:
        raise InvalidArgument(f"extended attribute {name!r}: only user.* names can be stored",
                              path=path, name=name)
    if name.startswith(RESERVED):
        raise InvalidArgument(f"extended attribute {name!r}: user.aether.* names are "
                              "reserved", path=path, name=name)
    if len(raw) > MAX_NAME_BYTES or "\x00" in name:
        raise InvalidArgument(f"extended attribute name too long or with a NUL byte "
                              f"(at most {MAX_NAME_BYTES} bytes)", path=path,
                              limit=MAX_NAME_BYTES)


def check_change(path: str, set_: Mapping[str, bytes], remove: Sequence[str]) -> None:
    for name, value in set_.items():
        check_name(path, name)
        if len(value) > MAX_VALUE_BYTES:
            raise InvalidArgument(f"extended attribute {name!r}: value of {len(value)} bytes, "
                                  f"the limit is {MAX_VALUE_BYTES}", path=path, name=name,
                                  limit=MAX_VALUE_BYTES)
    for name in remove:
        check_name(path, name)
        if name in set_:
            raise InvalidArgument(f"extended attribute {name!r} is both set and removed",
                                  path=path, name=name)


def check_total(path: str, xattrs: Sequence[tuple[str, bytes]]) -> None:
    total = sum(len(n.encode()) + len(v) for n, v in xattrs)
    if total > MAX_TOTAL:
        raise ResourceExhausted(f"extended attributes of {path!r} would take {total} bytes, "
                              f"the limit is {MAX_TOTAL} per path", path=path, limit=MAX_TOTAL)
