"""Session paths: validated and normalised before anything else sees them.

A session path is relative to the session root, components separated by "/".
A leading "/" is accepted and means the session root (a session is its own
root, so nothing can point outside it). Refused with invalid_argument:
".." and "." components, empty components ("a//b"), NUL bytes, names that are
not valid UTF-8 (surrogate escapes), and paths over the daemon's limits
(`max_name_bytes`, `max_path_bytes`, `max_path_depth`; 255, 4096 and 256 by
default). Messages for those say "too long": the mount maps that to
ENAMETOOLONG.
"""

from __future__ import annotations

from aether.errors import InvalidArgument
from aetherd.config import limits


def normalize(path: str, *, allow_root: bool = True) -> str:
    """'/a/b/' -> 'a/b'; '' or '/' -> '' (the root)."""
    if "\x00" in path:
        raise InvalidArgument("path contains a NUL byte", path=path.replace("\x00", "\\0"))
    try:
        raw = path.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument("path is not valid UTF-8") from None
    lim = limits()
    if len(raw) > lim.max_path_bytes:
        raise InvalidArgument(
            f"path too long: {len(raw)} bytes, the limit is {lim.max_path_bytes}",
            limit=lim.max_path_bytes, setting="max_path_bytes")
    p = path[1:] if path.startswith("/") else path
    if p.endswith("/"):
        p = p[:-1]
    if p == "":
        if not allow_root:
            raise InvalidArgument("the session root is not allowed here")
        return ""
    parts = p.split("/")
    if len(parts) > lim.max_path_depth:
        raise InvalidArgument(
            f"path too long: {len(parts)} levels deep, the limit is {lim.max_path_depth}",
            limit=lim.max_path_depth, setting="max_path_depth")
    for part in parts:
        check_name(part, path)
    return p


def check_name(name: str, path: str = "") -> None:
    where = path or name
    if name in ("", ".", ".."):
        raise InvalidArgument(f"bad path component {name!r} in {where!r}", path=where)
    if "/" in name or "\x00" in name:
        raise InvalidArgument(f"bad character in name {name!r}", path=where)
    size = len(name.encode("utf-8", "surrogatepass"))
    most = limits().max_name_bytes
    if size > most:
        raise InvalidArgument(f"name too long: {size} bytes, the limit is {most}, in {where!r}",
                              path=where, limit=most, setting="max_name_bytes")


def depth_of(path: str) -> int:
    """Components in a normalised path; the root has none."""
    return path.count("/") + 1 if path else 0


def parent_of(path: str) -> str:
    return path.rpartition("/")[0]


def name_of(path: str) -> str:
    return path.rpartition("/")[2]


def join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def ancestors(path: str) -> list[str]:
    """'a/b/c' -> ['a', 'a/b'] (proper ancestors, root excluded)."""
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def is_under(path: str, top: str) -> bool:
    return top == "" or path == top or path.startswith(top + "/")
