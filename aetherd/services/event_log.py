"""Reading the per-session logs (events and bus messages) after a cursor.

Both tables are append-only per session, keyed by (session_id, cursor), with
cursors handed out as MAX+1 under the write lock. So cursors commit in order
and without gaps, and a reader that has seen cursor N has seen everything up to
N: "cursor > after" is a complete resume point. (The bus prunes its oldest
rows, which leaves a gap only below the oldest retained cursor.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from aether.errors import InvalidArgument
from aetherd.services.events import TYPES
from aetherd.services.state import Store
from aetherd.store.db import Database

DEFAULT_LIMIT = 100
# Capped, not refused, like page_size everywhere else.
MAX_LIMIT = 1000
# A filter is an SQL IN list; a bound keeps it far from SQLite's parameter limit.
MAX_FILTER_VALUES = 100


@dataclass
class Page:
    rows: list[tuple]
    # Resume point: the last row returned, or the newest cursor of the log when
    # the page reached it (so a filtered read skips what did not match).
    next_cursor: int
    # The page stopped early (limit or byte budget); more rows are already there.
    more: bool


def read_after(db: Database, table: str, columns: str, session_id: str, after: int,
               filter_column: str, values: list[str], limit: int,
               budget_column: int = -1, budget: int = 0,
               exclude: tuple[str, str] | None = None) -> Page:
    """Rows with cursor > after, oldest first; `columns` must start with cursor.

    `budget` bounds the summed length of column `budget_column` (payload bytes),
    so a page of large messages stays within a reasonable reply size; a page
    always holds at least one row. `exclude` (column, value) leaves out the
    rows with that value. Call inside db.read() with the session check
    so the page and `next_cursor` come from one snapshot.
    """
    if after < 0:
        raise InvalidArgument(f"after must not be negative, got {after}", parameter="after")
    if len(values) > MAX_FILTER_VALUES:
        raise InvalidArgument(f"at most {MAX_FILTER_VALUES} filter values, got {len(values)}",
                              limit=str(MAX_FILTER_VALUES))
    limit = min(limit or DEFAULT_LIMIT, MAX_LIMIT)
    row = db.one(f"SELECT COALESCE(MAX(cursor), 0) FROM {table} WHERE session_id=?",
                 (session_id,))
    newest = int(row[0]) if row else 0
    if after > newest:
        # Cursors never shrink, so this cursor did not come from this log:
        # answering "nothing yet" would silently skip messages up to it later.
        raise InvalidArgument(f"cursor {after} is past the newest ({newest}) of this session",
                              parameter="after", newest=str(newest))
    sql = f"SELECT {columns} FROM {table} WHERE session_id=? AND cursor>?"
    params: list[object] = [session_id, after]
    if values:
        sql += f" AND {filter_column} IN ({','.join('?' * len(values))})"
        params.extend(values)
    if exclude is not None:
        sql += f" AND {exclude[0]} != ?"
        params.append(exclude[1])
    sql += " ORDER BY cursor LIMIT ?"
    params.append(limit)
    rows: list[tuple] = []
    size = 0
    stopped = False
    cur = db.connection().cursor()
    try:
        for r in cur.execute(sql, params):
            if budget and rows and size + len(r[budget_column]) > budget:
                stopped = True
                break
            rows.append(r)
            size += len(r[budget_column]) if budget else 0
    finally:
        cur.close()
    stopped = stopped or len(rows) == limit
    next_cursor = rows[-1][0] if stopped else newest
    return Page(rows, next_cursor, next_cursor < newest)


@dataclass
class EventRecord:
    cursor: int
    session_id: str
    type: str
    path: str
    actor: str
    attributes: dict[str, str]
    time_ns: int
    origin: str


class EventLog:
    """The read side of the activity stream (Events.emit is the write side)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def list(self, session_id: str, after: int, types: list[str],
             limit: int, exclude_origin: str = "") -> tuple[list[EventRecord], Page]:
        """Events after a cursor, oldest first, of these types (all when
        empty), but for those caused by `exclude_origin`."""
        unknown = sorted(set(types) - set(TYPES))
        if unknown:
            raise InvalidArgument(f"unknown event type {unknown[0]!r}", parameter="types",
                                  allowed=", ".join(TYPES))
        db = self.store.db
        with db.read():
            self.store.session(session_id)
            page = read_after(db, "events",
                              "cursor, type, path, actor, attributes, time_ns, origin",
                              session_id, after, "type", sorted(set(types)), limit,
                              exclude=("origin", exclude_origin) if exclude_origin else None)
        return [
            EventRecord(c, session_id, t, p, a, json.loads(attrs), ns, o)
            for c, t, p, a, attrs, ns, o in page.rows
        ], page
