"""Helpers shared by the coordination commands (`cache`, `bus`, `events`,
`review`): reading a value from an argument, a file or stdin; showing bytes to
people; TTLs; and `read`/`ls` and the `tail [-f]` loop over a per-session log
(bus, events).

Imported by command modules at their top, so it imports nothing heavy itself.
"""

from __future__ import annotations

import json
import re
import sys
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from itertools import islice
from typing import Any

import typer

from aether.cli import output as fmt
from aether.cli.inputs import read_input

# Ctrl-C ends a follow: the shell's convention for "killed by SIGINT".
EXIT_INTERRUPTED = 130


def read_value(value: str | None, file: str | None, out: fmt.Output,
               what: str = "VALUE") -> bytes:
    """The bytes of VALUE (an argument), --file FILE, or stdin (VALUE or FILE "-",
    or neither given)."""
    if value is not None and file is not None:
        raise typer.BadParameter(f"give {what} or --file, not both", param_hint="'--file'")
    if value is not None and value != "-":
        return value.encode("utf-8")
    return read_input(file if file is not None else "-", "value", out)


_DURATION = re.compile(r"(\d+)([smhd])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(text: str, param: str = "'--ttl'") -> int:
    """'90' | '90s' | '5m' | '2h' | '1d' | '1h30m' -> seconds (0 = no expiry)."""
    text = text.strip().lower()
    if not text:
        return 0
    if text.isdigit():
        return int(text)
    pos, total = 0, 0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += int(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    if pos != len(text) or not pos:
        raise typer.BadParameter(f"{text!r} is not a duration like 90, 90s, 5m, 2h or 1h30m",
                                 param_hint=param)
    return total


def preview(data: bytes, content_type: str = "", width: int = 0) -> str:
    """Bytes for people: text as one line (without a final newline, the others
    and control characters escaped), cut to `width` (0 = whole); anything else
    as '<N bytes, TYPE>'."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return f"<{len(data)} bytes, {content_type or 'binary'}>"
    if any(ord(ch) < 32 and ch not in "\t\n\r" for ch in text):
        return f"<{len(data)} bytes, {content_type or 'binary'}>"
    if text.endswith("\n"):  # the usual end of a line of text: not worth showing
        text = text[:-1]
    text = text.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")
    text = text.replace("\t", "\\t")
    if width and len(text) > width:
        text = text[:width - 1] + "…"
    return text


def json_line(msg: Any) -> str:
    """One proto3-JSON object on one line (JSON lines), every field present."""
    return json.dumps(fmt.to_json(msg), separators=(",", ":"))


def emit_line(text: str) -> None:
    """One line now: a follower downstream of a pipe must not wait for a buffer."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def list_log(
    out: fmt.Output,
    iterate: Callable[..., Iterable[Any]],
    session: str,
    *,
    after: int | None,
    limit: int,
    columns: Sequence[fmt.Column],
    empty: str,
    **filters: Any,
) -> None:
    """`read`/`ls` of a per-session log (bus, events): the items there now after
    `after`, oldest first, at most `limit` (0 = all), as a table (--json: a list;
    -q: cursors). `iterate` is the client's `iter_*` method, called as
    `iterate(session, after=..., **filters)`."""
    items = islice(iterate(session, after=after or 0, **filters), limit or None)
    out.table(list(items), columns, lambda item: str(item.cursor), empty=empty)


def tail(
    out: fmt.Output,
    read: Callable[..., Any],
    follow: Callable[..., Any],
    session: str,
    *,
    items: str,
    line: Callable[[Any], str],
    after: int | None,
    last: int,
    keep_following: bool,
    **filters: Any,
) -> None:
    """`tail [-f]` over a per-session log read after a cursor (bus, events), one
    item per line: `line(item)` for people, --json one JSON object per line
    (JSON lines), -q the cursor.

    With `after` None: the newest `last` items, else every item after `after`;
    then, with `keep_following`, live items until Ctrl-C (exit 130) or the
    session is deleted (exit 0, with a note for people).
    `read` and `follow` are the client's methods, called as
    `read(session, after=..., **filters)` (one page: `items` and `next_cursor`)
    and `follow(session, after=..., **filters)` (the live FollowStream).
    """
    from aether.errors import NotFound

    def emit(item: Any) -> None:
        if out.mode == "json":
            emit_line(json_line(item))
        elif out.mode == "quiet":
            emit_line(str(item.cursor))
        else:
            emit_line(line(item))

    try:
        if keep_following and after is not None:
            cursor = after  # the follow sends the backlog itself
        else:
            cursor = after or 0
            newest: deque[Any] = deque(maxlen=last)
            while True:
                page = read(session, after=cursor, **filters)
                for item in getattr(page, items):
                    if after is None:
                        newest.append(item)
                    else:
                        emit(item)
                if page.next_cursor <= cursor:
                    break
                cursor = page.next_cursor
            for item in newest:
                emit(item)
        if not keep_following:
            return
        # an unknown session fails here: exit 3
        with follow(session, after=cursor, **filters) as stream:
            try:
                for item in stream:
                    emit(item)
            except NotFound:
                out.note("The session is gone; nothing more will come.")
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None
