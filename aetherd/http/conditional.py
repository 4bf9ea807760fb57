"""ETags, preconditions and byte ranges (RFC 9110 sections 8.8.3, 13 and 14).

The ETag of a file is its content hash, so it is a strong validator and the
If-Match value can go to the service as the expected hash unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aether.errors import InvalidArgument, RangeNotSatisfiable

_ETAG = re.compile(r'\s*(W/)?"([^"]*)"\s*(?:,|$)|\s*(\*)\s*(?:,|$)|\s*([^",\s]+)\s*(?:,|$)')


def etag(content_hash: str) -> str:
    return f'"{content_hash}"'


def parse_etags(header: str) -> list[str]:
    """'W/"a", "b"' -> ["a", "b"]; "*" stays "*". Bare tokens are accepted too,
    because people type `If-Match: <hash>` without quotes."""
    tags, pos = [], 0
    header = header.strip()
    while pos < len(header):
        m = _ETAG.match(header, pos)
        if m is None or m.end() == pos:
            raise InvalidArgument(f"malformed entity-tag list {header!r}")
        tags.append(m.group(2) if m.group(2) is not None else (m.group(3) or m.group(4)))
        pos = m.end()
    return tags


def if_match_value(if_match: str | None, if_none_match: str | None) -> str:
    """The WriteFileRequest/DeleteFileRequest `if_match` for these headers:
    a hash, "*" (must exist) or "!" (must not exist: If-None-Match: *)."""
    value = ""
    if if_match is not None:
        tags = parse_etags(if_match)
        if len(tags) != 1:
            raise InvalidArgument("If-Match takes exactly one entity tag (or *)")
        value = tags[0]
    if if_none_match is not None:
        if parse_etags(if_none_match) != ["*"]:
            raise InvalidArgument("on writes, If-None-Match only supports *")
        if value:
            raise InvalidArgument("give If-Match or If-None-Match: *, not both")
        value = "!"
    return value


def none_match(if_none_match: str | None, content_hash: str) -> bool:
    """True when If-None-Match says the client already has this content (-> 304)."""
    if if_none_match is None:
        return False
    tags = parse_etags(if_none_match)
    return "*" in tags or content_hash in tags


@dataclass(frozen=True)
class ByteRange:
    """`first-last` (last None = to the end) or, when suffix is set, the last `suffix` bytes."""

    first: int = 0
    last: int | None = None
    suffix: int | None = None

    def resolve(self, size: int) -> tuple[int, int]:
        """-> (offset, length) within a file of `size` bytes; 416 when none of it exists."""
        if self.suffix is not None:
            if self.suffix == 0 or size == 0:
                raise RangeNotSatisfiable("range not satisfiable", size=str(size))
            length = min(self.suffix, size)
            return size - length, length
        if self.first >= size:
            raise RangeNotSatisfiable("range not satisfiable", size=str(size))
        last = size - 1 if self.last is None else min(self.last, size - 1)
        return self.first, last - self.first + 1


def parse_range(header: str | None) -> ByteRange | None:
    """A single `bytes=` range, or None when the header is to be ignored (absent,
    another unit, or several ranges: serving the whole file is allowed then)."""
    if header is None:
        return None
    unit, sep, spec = header.strip().partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    if "," in spec:
        return None
    spec = spec.strip()
    m = re.fullmatch(r"([0-9]*)-([0-9]*)", spec)
    if m is None or (not m.group(1) and not m.group(2)):
        raise RangeNotSatisfiable(f"malformed Range {header!r}")
    first, last = m.groups()
    if not first:
        return ByteRange(suffix=int(last))
    if last and int(last) < int(first):
        raise RangeNotSatisfiable(f"malformed Range {header!r}: last byte before first")
    return ByteRange(first=int(first), last=int(last) if last else None)
