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
`security.capability` on every write). Any other `user.*` attribute is kept in
the mount's memory: the daemon has no place for it yet, so it is lost at
unmount and not seen by other mounts or the API.
"""

from __future__ import annotations

import errno
import json

AETHER = b"user.aether."
HASH = b"user.aether.hash"
SESSION = b"user.aether.session"
STATE = b"user.aether.state"
EXTENTS = b"user.aether.extents"
ENODATA = errno.ENODATA
MAX_VALUE = 64 * 1024
MAX_LOCAL_PER_NODE = 64


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


def check_set(name: bytes, value: bytes, local: dict[bytes, bytes]) -> None:
    """Raise OSError unless a user attribute may be stored locally."""
    if name.startswith(AETHER):
        raise OSError(errno.EPERM, "user.aether.* attributes are read-only")
    if not name.startswith(b"user."):
        raise OSError(errno.ENOTSUP, "only user.* attributes can be set")
    if len(value) > MAX_VALUE:
        raise OSError(errno.E2BIG, "attribute value too large")
    if name not in local and len(local) >= MAX_LOCAL_PER_NODE:
        raise OSError(errno.ENOSPC, "too many attributes on this file")
