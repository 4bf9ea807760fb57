"""What every domain service shares: the open store, session rows, state lookup.

`Store` owns the databases and the object store. `SessionRecord` is a
session row. `resolve_state` turns an `at` selector ("", "base", ckp_..., cmt_...)
into a root tree, which is how every read can look at any state.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aether import pb
from aether.errors import FailedPrecondition, InvalidArgument, NotFound
from aetherd.ids import check_id
from aetherd.services.events import Events
from aetherd.services.hub import Hub
from aetherd.store.db import Database
from aetherd.store.objects import ObjectStore, open_store
from aetherd.store.workspace import Workspace

ACTIVE = int(pb.SessionState.ACTIVE)
ARCHIVED = int(pb.SessionState.ARCHIVED)

_SESSION_COLS = (
    "id, name, state, labels, tags, metadata, owner, policy, source_kind, source_ref, "
    "parent_id, base_root, fold_root, created_ns, updated_ns, archived_ns"
)


@dataclass
class SessionRecord:
    id: str
    name: str
    state: int
    labels: dict[str, str]
    tags: list[str]
    metadata: dict[str, str]
    owner: str
    policy: dict
    source_kind: str
    source_ref: str
    parent_id: str
    base_root: str
    fold_root: str
    created_ns: int
    updated_ns: int
    archived_ns: int
    # Filled by callers that fold first.
    root_hash: str = ""
    file_count: int = 0
    total_bytes: int = 0
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_row(cls, r: tuple) -> SessionRecord:
        return cls(
            r[0], r[1], r[2], json.loads(r[3]), json.loads(r[4]), json.loads(r[5]), r[6],
            json.loads(r[7]), r[8], r[9], r[10], r[11], r[12], r[13], r[14], r[15],
        )


class Store:
    def __init__(self, data_dir: Path, hub: Hub | None = None) -> None:
        self.data_dir = data_dir
        self.db: Database
        self.objects: ObjectStore
        self.db, self.objects = open_store(data_dir)
        self.hub = hub or Hub()
        self.events = Events(self.db, self.hub)
        # Services keeping state in memory that must reach the database
        # before it closes (e.g. the cache's hit/miss tally) register here.
        self.before_close: list[Callable[[], None]] = []

    def close(self) -> None:
        for flush in self.before_close:
            flush()
        self.objects.blobs.close()
        self.db.close()

    # ---- sessions
    def session(self, session_id: str) -> SessionRecord:
        check_id(session_id, "ses", "session")
        row = self.db.one(f"SELECT {_SESSION_COLS} FROM sessions WHERE id=?", (session_id,))
        if row is None:
            raise NotFound(f"no session {session_id!r}", session_id=session_id)
        return SessionRecord.from_row(row)

    def sessions_page(self, after: str, limit: int) -> list[SessionRecord]:
        rows = self.db.query(
            f"SELECT {_SESSION_COLS} FROM sessions WHERE id>? ORDER BY id LIMIT ?", (after, limit)
        )
        return [SessionRecord.from_row(r) for r in rows]

    def insert_session(self, rec: SessionRecord) -> None:
        self.db.execute(
            f"INSERT INTO sessions({_SESSION_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (rec.id, rec.name, rec.state, json.dumps(rec.labels), json.dumps(rec.tags),
             json.dumps(rec.metadata), rec.owner, json.dumps(rec.policy), rec.source_kind,
             rec.source_ref, rec.parent_id, rec.base_root, rec.fold_root, rec.created_ns,
             rec.updated_ns, rec.archived_ns),
        )

    def touch(self, session_id: str) -> None:
        self.db.execute("UPDATE sessions SET updated_ns=? WHERE id=?", (time.time_ns(), session_id))

    def workspace(self, rec: SessionRecord) -> Workspace:
        return Workspace(self.objects, rec.id, rec.fold_root)

    def writable(self, session_id: str) -> tuple[SessionRecord, Workspace]:
        """The session and its workspace, for a write. Call inside db.write()."""
        rec = self.session(session_id)
        if rec.state == ARCHIVED:
            raise FailedPrecondition(f"session {session_id} is archived (read-only)",
                                     session_id=session_id)
        if rec.policy.get("readOnly"):
            raise FailedPrecondition(f"session {session_id} is read-only by policy",
                                     session_id=session_id)
        return rec, self.workspace(rec)

    def fill_stats(self, rec: SessionRecord, root: str) -> SessionRecord:
        rec.root_hash = root
        rec.file_count, rec.total_bytes = self.objects.tree_stats(root)
        return rec

    # ---- states
    def resolve_state(self, rec: SessionRecord, at: str) -> str | None:
        """Root tree of a state; None means the live working state."""
        if at in ("", "working", "HEAD"):
            return None
        if at == "base":
            return rec.base_root
        if at.startswith("ckp_"):
            return self.checkpoint_root(rec.id, at)
        if at.startswith("cmt_"):
            return self.commit_row(at)[1]
        raise InvalidArgument(
            f"bad state selector {at!r}: want '', 'base', a checkpoint id or a commit id"
        )

    def checkpoint_root(self, session_id: str, checkpoint_id: str) -> str:
        check_id(checkpoint_id, "ckp", "checkpoint")
        row = self.db.one(
            "SELECT root FROM checkpoints WHERE id=? AND session_id=?", (checkpoint_id, session_id)
        )
        if row is None:
            raise NotFound(f"no checkpoint {checkpoint_id!r} in session {session_id}")
        return row[0]

    def checkpoint_root_any(self, checkpoint_id: str) -> tuple[str, str]:
        check_id(checkpoint_id, "ckp", "checkpoint")
        row = self.db.one("SELECT session_id, root FROM checkpoints WHERE id=?", (checkpoint_id,))
        if row is None:
            raise NotFound(f"no checkpoint {checkpoint_id!r}")
        return row[0], row[1]

    def commit_row(self, commit_id: str) -> tuple:
        check_id(commit_id, "cmt", "commit")
        row = self.db.one(
            "SELECT id, root, session_id, parent_id, message, author, approvals, created_ns, "
            "committed_by FROM commits WHERE id=?",
            (commit_id,),
        )
        if row is None:
            raise NotFound(f"no commit {commit_id!r}")
        return row
