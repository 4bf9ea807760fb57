"""Strict decoding of the raw request target.

aiohttp's decoded `request.path` turns %2F into "/" (so a file name could
smuggle in a path separator) and its `request.query` turns invalid UTF-8 into
U+FFFD (so a wrong name would be written silently). We therefore decode the raw
target ourselves and refuse what cannot be a name: invalid UTF-8, NUL, and
broken percent-escapes. Dot segments are left alone on purpose: the services
reject "..", and normalising here would hide the attempt.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes, urlsplit

from aether.errors import InvalidArgument

_BROKEN_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def split_target(raw: str) -> tuple[str, str]:
    """Raw request target -> (raw path, raw query string)."""
    if not raw.startswith("/"):
        # absolute-form ("http://host/path?q"), which HTTP/1.1 servers must accept
        parts = urlsplit(raw)
        return parts.path or "/", parts.query
    path, _, query = raw.partition("?")
    return path.partition("#")[0], query.partition("#")[0]


def decode(component: str, what: str, *, plus_is_space: bool = False) -> str:
    if _BROKEN_ESCAPE.search(component):
        raise InvalidArgument(f"{what}: malformed percent-escape", parameter=what)
    if plus_is_space:
        component = component.replace("+", " ")
    try:
        text = unquote_to_bytes(component).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidArgument(f"{what}: not valid UTF-8 after percent-decoding",
                              parameter=what) from None
    if "\x00" in text:
        raise InvalidArgument(f"{what}: must not contain NUL", parameter=what)
    return text


def parse_query(query: str) -> list[tuple[str, str]]:
    """`a=1&b&a=2` -> [("a", "1"), ("b", ""), ("a", "2")], strictly decoded."""
    pairs = []
    for item in query.split("&"):
        if not item:
            continue
        raw_key, _, raw_value = item.partition("=")
        key = decode(raw_key, "query parameter name", plus_is_space=True)
        pairs.append((key, decode(raw_value, key, plus_is_space=True)))
    return pairs
