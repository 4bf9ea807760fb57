"""Session paths: validated and normalised before anything else sees them.

A session path is relative to the session root, components separated by "/".
A leading "/" is accepted and means the session root (a session is its own
root, so nothing can point outside it). Refused with invalid_argument:
".." and "." components, empty components ("a//b"), NUL bytes, names that are
not valid UTF-8 (surrogate escapes), names over 255 bytes, paths over 4096
bytes.
"""

from __future__ import annotations

from aether.errors import InvalidArgument

MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4096


def normalize(path: str, *, allow_root: bool = True) -> str:
    """'/a/b/' -> 'a/b'; '' or '/' -> '' (the root)."""
    if "\x00" in path:
        raise InvalidArgument("path contains a NUL byte", path=path.replace("\x00", "\\0"))
    try:
        raw = path.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument("path is not valid UTF-8") from None
    if len(raw) > MAX_PATH_BYTES:
        raise InvalidArgument(f"path is longer than {MAX_PATH_BYTES} bytes")
    p = path[1:] if path.startswith("/") else path
    if p.endswith("/"):
        p = p[:-1]
    if p == "":
        if not allow_root:
            raise InvalidArgument("the session root is not allowed here")
        return ""
    for part in p.split("/"):
        check_name(part, path)
    return p


def check_name(name: str, path: str = "") -> None:
    where = path or name
    if name in ("", ".", ".."):
        raise InvalidArgument(f"bad path component {name!r} in {where!r}", path=where)
    if "/" in name or "\x00" in name:
        raise InvalidArgument(f"bad character in name {name!r}", path=where)
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise InvalidArgument(f"name longer than {MAX_NAME_BYTES} bytes in {where!r}", path=where)


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
