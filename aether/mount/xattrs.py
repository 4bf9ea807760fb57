"""Extended attributes of a mount.

    user.aether.hash      BLAKE3 of the content the daemon has (files), or the
                          tree hash of a directory when the daemon reports one
    user.aether.session   the session id (with "@<state>" when mounted --at)
    user.aether.state     "clean", or "dirty" while local changes are not
                          written back yet
    user.aether.extents   JSON list of {offset, length, hash}: the file's
                          1 MiB chunks as the daemon stores them

They are read-only (setting or removing one is EPERM). `security.*`, `system.*`
and `trusted.*` names answer ENODATA at once (the kernel asks for
`security.capability` on every write). Any other `user.*` attribute is the
session's: stored by the daemon with the path (it follows renames, copies,
forks and checkpoints), sent through the journal like any change. The
daemon's rules are checked here first, so that a refusal is the setxattr's
error and not a later fsync's: UTF-8 names of at most 255 bytes, values of
at most 64 KiB, at most 64 KiB of names and values per path
(aether/xattr_rules.py).
"""

from __future__ import annotations

import errno
import json

from aether import xattr_rules

AETHER = b"user.aether."
HASH = b"user.aether.hash"
SESSION = b"user.aether.session"
STATE = b"user.aether.state"
EXTENTS = b"user.aether.extents"
ENODATA = errno.ENODATA
MAX_NAME = xattr_rules.MAX_NAME_BYTES
MAX_VALUE = xattr_rules.MAX_VALUE_BYTES
MAX_TOTAL = xattr_rules.MAX_TOTAL


def is_system(name: bytes) -> bool:
    return name.startswith((b"security.", b"system.", b"trusted."))


def names(kind: str, has_hash: bool, local: dict[bytes, bytes]) -> list[bytes]:
    out = [SESSION, STATE]
    if has_hash:
        out.append(HASH)
    if kind == "file":
        out.append(EXTENTS)
    return out + sorted(local)


def extents_json(info) -> bytes:
    return json.dumps([{"offset": e.offset, "length": e.length, "hash": e.hash}
                       for e in info.extents]).encode()


def check_set(name: bytes, value: bytes, have: dict[bytes, bytes]) -> None:
    """Raise OSError unless the daemon would store this user attribute."""
    if name.startswith(AETHER):
        raise OSError(errno.EPERM, "user.aether.* attributes are read-only")
    if not name.startswith(b"user.") or name == b"user.":
        raise OSError(errno.ENOTSUP, "only user.* attributes can be set")
    if len(name) > MAX_NAME:
        raise OSError(errno.ERANGE, "attribute name too long")
    try:
        name.decode("utf-8")
    except UnicodeDecodeError:
        raise OSError(errno.EINVAL, "attribute names must be UTF-8") from None
    if len(value) > MAX_VALUE:
        raise OSError(errno.E2BIG, "attribute value too large")
    total = sum(len(n) + len(v) for n, v in have.items() if n != name) + len(name) + len(value)
    if total > MAX_TOTAL:
        raise OSError(errno.ENOSPC, "no room for more attributes on this file")
