"""Identifiers: a type prefix plus a time-sortable random part.

`ses_`, `ckp_`, `cmt_`... The prefix lets one `at=` string name a checkpoint or
a commit unambiguously; the time part makes ids sort by creation, which gives
pagination a stable order for free.
"""

from __future__ import annotations

import os
import re
import threading
import time

from aether.errors import InvalidArgument

# Crockford's base32: its digits are in ASCII order, so ids sort as their values do.
_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_ID_RE = re.compile(r"^[a-z]{3}_[0-9a-hjkmnp-tv-z]{26}$")


_last = 0
_lock = threading.Lock()


def new_id(prefix: str) -> str:
    """48 bits of milliseconds then 80 random bits, strictly increasing in this process
    (two ids made in the same millisecond still sort in creation order)."""
    global _last
    value = ((time.time_ns() // 1_000_000) << 80) | int.from_bytes(os.urandom(10), "big")
    with _lock:
        if value <= _last:
            value = _last + 1
        _last = value
    chars = []
    for _ in range(26):
        value, digit = divmod(value, 32)
        chars.append(_ALPHABET[digit])
    return f"{prefix}_{''.join(reversed(chars))}"


def check_id(value: str, prefix: str, what: str) -> str:
    if not value:
        raise InvalidArgument(f"{what} is required")
    if not (_ID_RE.match(value) and value.startswith(prefix + "_")):
        from aether.errors import NotFound

        raise NotFound(f"no {what} {value!r}")
    return value
