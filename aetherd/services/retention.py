"""Retiring sessions by policy: `ttl_idle_seconds` archives a session nobody
changed for that long; `ttl_archived_seconds` deletes one archived that long
ago (leaving its tombstone). Expired tombstones are dropped too.

The daemon runs `sweep()` every `retire_interval_seconds`. "Idle" means no
change: the newest of the session's last update and its last event (file and
cache writes, checkpoints, reviews; reads and bus messages do not count).
Each candidate is checked
again inside the transaction that retires it, so a write that lands meanwhile
keeps the session alive.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from aether.errors import NotFound
from aetherd.services.sessions import Sessions
from aetherd.services.state import ACTIVE, ARCHIVED, SessionRecord
from aetherd.services.tombstones import Tombstones

log = logging.getLogger("aetherd.retention")

TTL_ACTOR = "aetherd:ttl"
_NS = 1_000_000_000


@dataclass
class SweepReport:
    archived: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    tombstones_pruned: int = 0


class Retention:
    def __init__(self, sessions: Sessions, tombstones: Tombstones) -> None:
        self.sessions = sessions
        self.tombstones = tombstones
        self.store = sessions.store
        self.db = sessions.db

    def sweep(self, now_ns: int | None = None) -> SweepReport:
        now = now_ns or time.time_ns()
        report = SweepReport()
        # Policies are JSON with 64-bit numbers as strings (proto3 JSON).
        candidates = self.db.query(
            "SELECT id FROM sessions WHERE "
            "(state=? AND CAST(json_extract(policy, '$.ttlIdleSeconds') AS INTEGER) > 0) OR "
            "(state=? AND CAST(json_extract(policy, '$.ttlArchivedSeconds') AS INTEGER) > 0)",
            (ACTIVE, ARCHIVED))
        for (session_id,) in candidates:
            try:
                with self.db.write():
                    rec = self.store.session(session_id)
                    if self._idle_expired(rec, now):
                        self.sessions.archive(session_id, actor=TTL_ACTOR)
                        report.archived.append(session_id)
                    elif self._archive_expired(rec, now):
                        self.sessions.delete(session_id, deleted_by=TTL_ACTOR,
                                             reason="ttl_archived")
                        report.deleted.append(session_id)
            except NotFound:
                continue  # deleted meanwhile
        report.tombstones_pruned = self.tombstones.prune(now)
        if report.archived or report.deleted or report.tombstones_pruned:
            log.info("retention: archived %s, deleted %s, tombstones dropped %d",
                     report.archived, report.deleted, report.tombstones_pruned)
        return report

    def _idle_expired(self, rec: SessionRecord, now: int) -> bool:
        ttl = int(rec.policy.get("ttlIdleSeconds") or 0)
        if rec.state != ACTIVE or not ttl:
            return False
        row = self.db.one("SELECT COALESCE(MAX(time_ns), 0) FROM events WHERE session_id=?",
                          (rec.id,))
        last = max(rec.updated_ns, rec.created_ns, row[0] if row else 0)
        return now - last >= ttl * _NS

    def _archive_expired(self, rec: SessionRecord, now: int) -> bool:
        ttl = int(rec.policy.get("ttlArchivedSeconds") or 0)
        return rec.state == ARCHIVED and bool(ttl) and now - rec.archived_ns >= ttl * _NS
