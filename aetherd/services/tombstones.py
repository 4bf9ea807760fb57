"""Audit tombstones: what is kept of a deleted session, and for how long.

A tombstone is written in the same transaction that deletes the session, so
there is never a deleted session without one (nor a tombstone for a delete
that rolled back). It records who deleted it and why, when, its final root
hash and size, and a summary of its events; not its content, which gc frees
once nothing else references it (a tombstone is no gc root).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from aether.errors import NotFound
from aetherd.services.state import SessionRecord, Store

DEFAULT_RETENTION_SECONDS = 90 * 86400
MAX_PAGE = 1000
_COLS = ("session_id, name, owner, labels, deleted_by, reason, created_ns, deleted_ns, "
         "final_root, files, bytes, events, last_cursor, checkpoints, commits, expires_ns")


@dataclass
class TombstoneRecord:
    session_id: str
    name: str
    owner: str
    labels: dict[str, str]
    deleted_by: str
    reason: str
    created_ns: int
    deleted_ns: int
    final_root: str
    files: int
    bytes: int
    events: dict[str, int] = field(default_factory=dict)
    last_cursor: int = 0
    checkpoints: int = 0
    commits: int = 0
    expires_ns: int = 0

    @classmethod
    def from_row(cls, row: tuple) -> TombstoneRecord:
        values = list(row)
        values[3] = json.loads(values[3])
        values[11] = json.loads(values[11])
        return cls(*values)


class Tombstones:
    def __init__(self, store: Store, retention_seconds: int = DEFAULT_RETENTION_SECONDS) -> None:
        self.store = store
        self.db = store.db
        self.retention_ns = retention_seconds * 1_000_000_000

    def write(self, rec: SessionRecord, final_root: str, files: int, size: int,
              deleted_by: str, reason: str) -> None:
        """Record `rec` as deleted, with its final state's root, file count and
        bytes. Call inside the deleting write transaction, before the session's
        rows (and with them its events) are removed."""
        now = time.time_ns()
        counts = {t: n for t, n in self.db.query(
            "SELECT type, COUNT(*) FROM events WHERE session_id=? GROUP BY type", (rec.id,))}
        last = self.db.one("SELECT COALESCE(MAX(cursor), 0) FROM events WHERE session_id=?",
                           (rec.id,))
        checkpoints = self.db.one("SELECT COUNT(*) FROM checkpoints WHERE session_id=?",
                                  (rec.id,))
        commits = self.db.one("SELECT COUNT(*) FROM commits WHERE session_id=?", (rec.id,))
        self.db.execute(
            f"INSERT OR REPLACE INTO tombstones({_COLS}) VALUES "
            "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (rec.id, rec.name, rec.owner, json.dumps(rec.labels), deleted_by, reason,
             rec.created_ns, now, final_root, files, size, json.dumps(counts),
             last[0] if last else 0, checkpoints[0] if checkpoints else 0,
             commits[0] if commits else 0, now + self.retention_ns))

    def get(self, session_id: str) -> TombstoneRecord:
        row = self.db.one(f"SELECT {_COLS} FROM tombstones WHERE session_id=? AND expires_ns>?",
                          (session_id, time.time_ns()))
        if row is None:
            raise NotFound(f"no tombstone for {session_id!r}", session_id=session_id)
        return TombstoneRecord.from_row(row)

    def list(self, owner: str, page_size: int,
             page_token: str) -> tuple[list[TombstoneRecord], str]:
        """Newest deletion first; the page token is the last session id seen."""
        limit = min(page_size or 100, MAX_PAGE)
        after_ns, after_id = 2**63 - 1, ""
        if page_token:
            last = self.db.one("SELECT deleted_ns, session_id FROM tombstones WHERE session_id=?",
                               (page_token,))
            if last is not None:
                after_ns, after_id = last
        rows = self.db.query(
            f"SELECT {_COLS} FROM tombstones WHERE (?='' OR owner=?) AND expires_ns>? "
            "AND (deleted_ns<? OR (deleted_ns=? AND session_id<?)) "
            "ORDER BY deleted_ns DESC, session_id DESC LIMIT ?",
            (owner, owner, time.time_ns(), after_ns, after_ns, after_id or "\uffff", limit + 1))
        out = [TombstoneRecord.from_row(r) for r in rows[:limit]]
        return out, (out[-1].session_id if len(rows) > limit else "")

    def prune(self, now_ns: int | None = None) -> int:
        """Drop tombstones past their retention; how many."""
        with self.db.write() as conn:
            conn.execute("DELETE FROM tombstones WHERE expires_ns<=?", (now_ns or time.time_ns(),))
            return conn.changes()
