"""Per-session health, usage and analytics, read from the store.

Nothing here writes (except the fold `Sessions.snapshot` does for a very large
overlay, which any read would do too).

Costs, since these are polled by dashboards:
  health     O(overlay rows + checkpoints): indexed lookups of the objects
             the session's state names, no tree walk.
  usage      O(distinct directories and files of the current state): see
             `Usage.usage`.
  analytics  O(events of the session): one grouped scan of its event rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from aether.errors import InvalidArgument
from aetherd.services.sessions import Sessions
from aetherd.services.state import ARCHIVED, SessionRecord, Store
from aetherd.store.objects import DIR, EMPTY_CONTENT_HASH, EMPTY_TREE, FILE, ObjectBatch, ObjectStore

DEFAULT_WINDOW_SECONDS = 3600
# A day of hourly windows by default: enough for a dashboard sparkline.
WINDOWS = 24
# 24 windows of 30 days cover two years; longer is not "recent activity".
MAX_WINDOW_SECONDS = 30 * 86400

OK, DEGRADED = "ok", "degraded"


@dataclass
class SessionUsage:
    files: int  # files and symlinks, as Session.file_count
    directories: int  # below the root
    bytes: int  # file content, every file counted
    unique_blob_bytes: int  # distinct chunks, each counted once
    cache_keys: int
    cache_bytes: int
    bus_backlog: int
    checkpoints: int
    commits: int

    @property
    def dedup_ratio(self) -> float:
        # Nothing stored means nothing was deduplicated: 1, not a division by zero.
        return self.bytes / self.unique_blob_bytes if self.unique_blob_bytes else 1.0


@dataclass
class Window:
    start_ns: int
    end_ns: int
    counts: dict[str, int] = field(default_factory=dict)


class Usage:
    def __init__(self, store: Store, sessions: Sessions) -> None:
        self.store = store
        self.db = store.db
        self.sessions = sessions

    # ---- health
    def health(self, session_id: str) -> tuple[str, dict[str, str]]:
        """(status, checks). Each check is "ok...", "error: ..." or, for `state`,
        informational. Any "error" makes the session degraded; archived is not
        an error. A missing session is NotFound, like every other session call."""
        with self.db.read():
            rec = self.store.session(session_id)
            checks = {
                "session": OK,
                "state": _state(rec),
                "root_tree": self._tree_check(rec.fold_root),
                "base_tree": self._tree_check(rec.base_root),
                "overlay": self._overlay_check(rec.id),
                "checkpoints": self._checkpoint_check(rec.id),
            }
        bad = any(v.startswith("error") for v in checks.values())
        return (DEGRADED if bad else OK), checks

    def _tree_check(self, h: str) -> str:
        if h == EMPTY_TREE or self.db.one("SELECT 1 FROM trees WHERE hash=?", (h,)):
            return OK
        return f"error: tree {h} is missing"

    def _overlay_check(self, session_id: str) -> str:
        pending = self.db.one("SELECT count(*) FROM overlay WHERE session_id=?", (session_id,))[0]
        # Changed files and replaced directories must name objects that exist.
        missing = self.db.one(
            "SELECT count(*) FROM overlay o WHERE o.session_id=? AND o.hash != '' AND ("
            " (o.kind=? AND o.hash != ? AND NOT EXISTS (SELECT 1 FROM files f WHERE f.hash=o.hash))"
            " OR (o.kind=? AND o.hash != ? AND NOT EXISTS (SELECT 1 FROM trees t WHERE t.hash=o.hash)))",
            (session_id, FILE, EMPTY_CONTENT_HASH, DIR, EMPTY_TREE),
        )[0]
        if missing:
            return f"error: {missing} of {pending} overlay rows name missing objects"
        return f"ok: {pending} overlay rows"

    def _checkpoint_check(self, session_id: str) -> str:
        total = self.db.one("SELECT count(*) FROM checkpoints WHERE session_id=?", (session_id,))[0]
        broken = [r[0] for r in self.db.query(
            "SELECT c.id FROM checkpoints c WHERE c.session_id=? AND c.root != ? AND "
            "NOT EXISTS (SELECT 1 FROM trees t WHERE t.hash=c.root) ORDER BY c.id LIMIT 5",
            (session_id, EMPTY_TREE),
        )]
        if broken:
            return f"error: root tree missing for {', '.join(broken)}"
        return f"ok: {total} checkpoints"

    # ---- usage
    def usage(self, session_id: str) -> SessionUsage:
        """Usage of the session's current working state.

        `files` and `bytes` come from the tree totals (O(1) once the state is a
        tree). `directories` and `unique_blob_bytes` walk the state: every
        distinct directory tree once and every distinct file's chunk list once,
        so the cost is O(distinct directories + distinct files) of the state,
        plus one indexed lookup per 500 distinct chunks. Identical subtrees and
        identical files are visited once, which is also what makes the chunk
        count exact: a chunk shared by two files (or with another session) is
        counted once. Chunk bytes are the chunks' content length as the blob
        store reports it (before compression), so `dedup_ratio` measures
        deduplication alone.
        """
        rec = self.store.session(session_id)
        snap = self.sessions.snapshot(rec)
        directories, file_hashes = _walk(snap.trees, snap.root)
        chunks: set[str] = set()
        for h in file_hashes:
            chunks.update(self.store.objects.file(h).chunks)
        unique = self.store.objects.blobs.stored_bytes(sorted(chunks))
        now = time.time_ns()
        with self.db.read():
            cache_keys, cache_bytes = self.db.one(
                "SELECT count(*), COALESCE(SUM(length(value)), 0) FROM cache "
                "WHERE session_id=? AND (expires_ns=0 OR expires_ns>?)", (rec.id, now))
            backlog = self.db.one("SELECT count(*) FROM bus WHERE session_id=?", (rec.id,))[0]
            checkpoints = self.db.one(
                "SELECT count(*) FROM checkpoints WHERE session_id=?", (rec.id,))[0]
            commits = self.db.one("SELECT count(*) FROM commits WHERE session_id=?", (rec.id,))[0]
        return SessionUsage(
            files=snap.files, directories=directories, bytes=snap.bytes, unique_blob_bytes=unique,
            cache_keys=cache_keys, cache_bytes=cache_bytes, bus_backlog=backlog,
            checkpoints=checkpoints, commits=commits,
        )

    # ---- analytics
    def analytics(self, session_id: str, window_seconds: int = 0,
                  now_ns: int | None = None) -> list[Window]:
        """Event counts by type over the last WINDOWS windows, oldest first.

        Windows are aligned to multiples of `window_seconds` since the epoch
        (UTC), so two calls in the same window agree and hourly windows start on
        the hour; the last one holds `now` and is still filling. Empty windows
        are returned too, so the series has no gaps. Operations are the event
        types: changes, not reads (reads leave no events).
        """
        window = window_seconds or DEFAULT_WINDOW_SECONDS
        if window > MAX_WINDOW_SECONDS:
            raise InvalidArgument(f"window_seconds must be at most {MAX_WINDOW_SECONDS}",
                                  parameter="window_seconds")
        step = window * 1_000_000_000
        now = time.time_ns() if now_ns is None else now_ns
        first = (now // step - (WINDOWS - 1)) * step
        out = [Window(first + i * step, first + (i + 1) * step) for i in range(WINDOWS)]
        with self.db.read():
            self.store.session(session_id)
            rows = self.db.query(
                "SELECT (time_ns - ?) / ?, type, count(*) FROM events "
                "WHERE session_id=? AND time_ns>=? AND time_ns<? GROUP BY 1, 2",
                (first, step, session_id, first, first + WINDOWS * step),
            )
        for index, type_, count in rows:
            out[index].counts[type_] = count
        return out


def _state(rec: SessionRecord) -> str:
    if rec.state == ARCHIVED:
        return "archived (read-only)"
    return "read-only by policy" if rec.policy.get("readOnly") else "active"


def _walk(trees: ObjectStore | ObjectBatch, root: str) -> tuple[int, set[str]]:
    """(directories below root, distinct file content hashes), each distinct
    tree read once. Iterative: a deep tree must not hit the recursion limit."""
    dirs_below: dict[str, int] = {}
    files: set[str] = set()
    # (tree, None) is still to be read; (tree, its subdirectories) waits for
    # those to finish, which they do first as they sit above it on the stack.
    # A Merkle tree cannot contain itself, so nothing cycles.
    stack: list[tuple[str, list[str] | None]] = [(root, None)]
    while stack:
        h, subdirs = stack.pop()
        if subdirs is not None:
            dirs_below[h] = sum(1 + dirs_below[d] for d in subdirs)
            continue
        if h in dirs_below:
            continue  # an identical subtree seen elsewhere
        subdirs = []
        for e in trees.tree(h).values():
            if e.kind == DIR:
                subdirs.append(e.hash)
            elif e.kind == FILE:
                files.add(e.hash)
        stack.append((h, subdirs))
        stack.extend((d, None) for d in subdirs if d not in dirs_below)
    return dirs_below[root], files
