"""Per-session quotas from the session's policy: `max_bytes` and `max_files`
of its working state, `max_cache_bytes` of its cache values.

Each is checked inside the write transaction, after the change: a change that
leaves the session over a quota raises `resource_exhausted`, which rolls the
whole transaction back, so nothing of a refused write is visible. Deletes,
moves and restores are never refused, so a session over a quota lowered after
the fact can always be brought back under it.

Cost: sessions without these quotas pay nothing. With one, a write pays for
counting: the working state's totals come from the folded tree plus the
changed paths (O(changed paths since the last fold), as every read of the
working state), the cache's from its live values (O(keys)).
"""

from __future__ import annotations

from typing import Any

from aether.errors import ResourceExhausted
from aetherd.services.state import SessionRecord


def _quota(rec: SessionRecord, key: str) -> int:
    return int(rec.policy.get(key) or 0)  # 64-bit numbers are strings in proto3 JSON


def check_tree(sessions: Any, rec: SessionRecord) -> None:
    """Raise when the working state (as the running transaction sees it) is
    over max_bytes or max_files."""
    max_bytes, max_files = _quota(rec, "maxBytes"), _quota(rec, "maxFiles")
    if not (max_bytes or max_files):
        return
    _count(sessions, rec, max_bytes, max_files)


def _count(sessions: Any, rec: SessionRecord, max_bytes: int, max_files: int) -> tuple[int, int]:
    """(files, bytes) of the working state; raises when they are over a quota."""
    snap = sessions.snapshot(sessions.store.session(rec.id))
    if max_files and snap.files > max_files:
        raise ResourceExhausted(
            f"session {rec.id} would hold {snap.files} files; its policy allows {max_files}",
            session_id=rec.id, quota="max_files", limit=str(max_files))
    if max_bytes and snap.bytes > max_bytes:
        raise ResourceExhausted(
            f"session {rec.id} would hold {snap.bytes} bytes; its policy allows {max_bytes}",
            session_id=rec.id, quota="max_bytes", limit=str(max_bytes))
    return snap.files, snap.bytes


class TreeBudget:
    """check_tree for a batch of changes (fs:apply), without a recount per change.

    The first check counts the working state, as check_tree does; later ones
    add what each change added (at most) to that count. Only when the sum
    could be over a quota is the state counted again, so a batch that stays
    clear of its quotas pays for one count, and a refusal is exactly what
    check_tree would answer. Every change that can grow the state (writes and
    symlinks) must be reported. The sum is an upper bound: what changes take
    away (deletes, renames over a file, rmdir, a write of a smaller file) is
    not subtracted, and a change counted here that is rolled back afterwards
    is not taken out, which can only cause an early recount, never a missed
    refusal.
    """

    def __init__(self, sessions: Any, rec: SessionRecord) -> None:
        self.sessions = sessions
        self.max_bytes, self.max_files = _quota(rec, "maxBytes"), _quota(rec, "maxFiles")
        self.files: int | None = None  # upper bounds of the working state, once counted
        self.bytes = 0

    def check(self, rec: SessionRecord, files: int, size: int) -> None:
        """After a change that added `files` files and `size` bytes to the
        working state (what it removed, a negative number, is ignored)."""
        if not (self.max_bytes or self.max_files):
            return
        if self.files is not None:
            files, size = self.files + max(files, 0), self.bytes + max(size, 0)
            if not (self.max_files and files > self.max_files
                    or self.max_bytes and size > self.max_bytes):
                self.files, self.bytes = files, size
                return
        self.files, self.bytes = _count(self.sessions, rec, self.max_bytes, self.max_files)


def check_cache(db: Any, rec: SessionRecord, live_sql: str, now: int) -> None:
    """Raise when the session's live cache values are over max_cache_bytes."""
    limit = _quota(rec, "maxCacheBytes")
    if not limit:
        return
    row = db.one(f"SELECT COALESCE(SUM(length(value)), 0) FROM cache "
                 f"WHERE session_id=? AND {live_sql}", (rec.id, now))
    total = int(row[0]) if row else 0
    if total > limit:
        raise ResourceExhausted(
            f"session {rec.id}'s cache would hold {total} bytes of values; its policy "
            f"allows {limit}", session_id=rec.id, quota="max_cache_bytes", limit=str(limit))


def bus_retention(rec: SessionRecord, default: int) -> int:
    """How many bus messages the session keeps: max_bus_backlog when set (and
    lower than the daemon's retention), else the daemon's."""
    backlog = _quota(rec, "maxBusBacklog")
    return min(backlog, default) if backlog else default
