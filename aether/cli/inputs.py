"""Where commands read their input from: a FILE, or stdin for "-". People at a
terminal are told how to end stdin (Ctrl-D), scripts are not."""

from __future__ import annotations

import sys
from typing import Any


def stdin_hint(out: Any, what: str) -> None:
    """Before reading stdin: tell a person at a terminal what is expected
    (through `out.note`, or straight to stderr when `out` is None)."""
    if sys.stdin.isatty():
        text = f"Reading the {what} from stdin; end it with Ctrl-D."
        if out is None:
            sys.stderr.write(text + "\n")
        else:
            out.note(text)


def read_input(source: str, what: str, out: Any, limit: int = -1) -> bytes:
    """The bytes of FILE, or of stdin for "-" (at most `limit` when given)."""
    if source == "-":
        stdin_hint(out, what)
        return sys.stdin.buffer.read(limit)
    with open(source, "rb") as fh:
        return fh.read(limit)


def read_text(source: str, what: str, out: Any) -> str:
    """A whole FILE, or stdin for "-", as (UTF-8) text."""
    if source == "-":
        stdin_hint(out, what)
        return sys.stdin.read()
    with open(source, encoding="utf-8") as fh:
        return fh.read()
