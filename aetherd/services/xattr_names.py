"""Checks that an extended attribute may be stored with a session path (the
rules and sizes are in aether/xattr_rules.py, shared with the mount)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aether.errors import InvalidArgument, ResourceExhausted
from aether.xattr_rules import MAX_NAME_BYTES, MAX_TOTAL, MAX_VALUE_BYTES, PREFIX, RESERVED


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
