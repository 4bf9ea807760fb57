"""Session lifecycle: create from any source, list, update, fork, archive, restore, delete."""

from __future__ import annotations

import io
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from aether import pb
from aether.errors import InvalidArgument, NotFound, PermissionDenied
from aetherd.ids import new_id
from aetherd.services import ingest
from aetherd.services.cache import Cache
from aetherd.services.state import ACTIVE, ARCHIVED, SessionRecord, Store
from aetherd.services.templates import template_root
from aetherd.services.tombstones import Tombstones
from aetherd.store.objects import EMPTY_TREE, ObjectBatch, ObjectStore

MAX_PAGE = 1000
# Past this many pending overlay rows a read folds them for good instead of
# rebuilding the same directories in memory on every read.
FOLD_AT_ROWS = 2048
_REMOTE_GIT = re.compile(r"^(https?|ssh|git)://[^/\s]+/\S*$")


@dataclass
class Snapshot:
    root: str
    files: int
    bytes: int
    trees: ObjectStore | ObjectBatch  # where the root's trees can be read


@dataclass
class NewSession:
    name: str = ""
    labels: dict[str, str] | None = None
    tags: list[str] | None = None
    metadata: dict[str, str] | None = None
    owner: str = ""
    policy: dict | None = None


class Sessions:
    def __init__(self, store: Store, import_roots: list[str] | None = None, *,
                 host_paths_allowed: bool = True, tombstones: Tombstones | None = None) -> None:
        self.store = store
        self.db = store.db
        self.tombstones = tombstones or Tombstones(store)
        self.import_roots = [Path(p).resolve() for p in (import_roots or [])]
        self.host_paths_allowed = host_paths_allowed

    # ---- create
    def create(self, spec: NewSession, source: pb.SessionSource | None) -> SessionRecord:
        kind, ref, root, parent = self._root_from_source(source)
        return self._insert(spec, kind, ref, root, parent)

    def _insert(self, spec: NewSession, kind: str, ref: str, root: str, parent: str) -> SessionRecord:
        now = time.time_ns()
        _check_labels(spec.labels or {})
        rec = SessionRecord(
            id=new_id("ses"), name=spec.name, state=ACTIVE, labels=dict(spec.labels or {}),
            tags=sorted(set(spec.tags or [])), metadata=dict(spec.metadata or {}),
            owner=spec.owner, policy=spec.policy or {}, source_kind=kind, source_ref=ref,
            parent_id=parent, base_root=root, fold_root=root, created_ns=now, updated_ns=now,
            archived_ns=0,
        )
        with self.db.write():
            self.store.insert_session(rec)
            self.store.events.emit(rec.id, "session.created", source=kind, ref=ref)
            if kind == "session" and parent:
                Cache(self.store).copy_for_fork(parent, rec.id)
                self.store.events.emit(parent, "session.forked", child=rec.id)
        return self.store.fill_stats(rec, root)

    def _root_from_source(self, source: pb.SessionSource | None) -> tuple[str, str, str, str]:
        """(source kind, source ref, root tree, parent session id)."""
        which = _oneof(source)
        if which in (None, "blank"):
            return "blank", "", EMPTY_TREE, ""
        if which == "session":
            sid = source.session.session_id
            parent = self.store.session(sid)
            root = self.fold(parent)
            return "session", sid, root, sid
        if which == "checkpoint":
            cid = source.checkpoint.checkpoint_id
            sid, root = self.store.checkpoint_root_any(cid)
            return "checkpoint", cid, root, sid
        if which == "commit":
            cid = source.commit.commit_id
            return "commit", cid, self.store.commit_row(cid)[1], ""
        if which == "template":
            name = source.template.name
            return "template", name, template_root(self.store, name), ""
        batch = self.store.objects.batch()
        if which == "directory":
            path = self._allowed_dir(source.directory.path)
            builder = ingest.TreeBuilder(batch, trusted=True)
            ingest.ingest_directory(builder, path)
            ref = str(path)
        elif which == "archive":
            builder = ingest.TreeBuilder(batch, trusted=False)
            ingest.ingest_archive(builder, io.BytesIO(source.archive.data), source.archive.format)
            ref = f"{len(source.archive.data)} bytes"
        elif which == "git":
            url = source.git.url
            if not url:
                raise InvalidArgument("git source needs a url")
            if ingest.is_dir(url):
                self._allowed_dir(url)
            elif not _REMOTE_GIT.match(url):
                # file:// and other local forms would bypass import_roots.
                raise InvalidArgument(
                    f"git url {url!r}: want a repository directory on the daemon host or an "
                    "https://, http://, ssh:// or git:// url")
            builder = ingest.TreeBuilder(batch, trusted=True)
            sha = ingest.ingest_git(builder, url, source.git.ref)
            ref = f"{url}@{sha}"
        else:  # pragma: no cover - a new oneof member without a branch here
            raise InvalidArgument(f"unsupported source {which!r}")
        root = builder.finish()
        batch.commit()
        return which, ref, root.hash, ""

    def _allowed_dir(self, raw: str) -> Path:
        if not raw:
            raise InvalidArgument("directory source needs a path")
        try:
            path = Path(raw).resolve()
        except (RuntimeError, OSError, ValueError):  # a symlink loop, too long, NUL
            raise NotFound(f"no such directory on the daemon host: {raw!r}") from None
        if not self.host_paths_allowed:
            raise PermissionDenied(
                "this daemon serves TCP clients and has no import_roots: host paths are off")
        if self.import_roots and not any(path.is_relative_to(r) for r in self.import_roots):
            raise PermissionDenied(f"{raw!r} is outside the daemon's import_roots")
        if not path.is_dir():
            raise NotFound(f"no such directory on the daemon host: {raw!r}")
        return path

    # ---- read
    def snapshot(self, rec: SessionRecord) -> Snapshot:
        """The current state as a tree, without writing when that can be avoided.

        Reads that need a root (get, diff, changes, manifest, export) build the
        changed directories in memory; only a large overlay is folded for good,
        which keeps both reads and writes O(changed paths) over time.
        """
        ws = self.store.workspace(rec)
        with self.db.read():
            pending = self.db.one(
                "SELECT count(*) FROM (SELECT 1 FROM overlay WHERE session_id=? LIMIT ?)",
                (rec.id, FOLD_AT_ROWS),
            )[0]
            if pending == 0:
                files, size = self.store.objects.tree_stats(rec.fold_root)
                return Snapshot(rec.fold_root, files, size, self.store.objects)
            if pending < FOLD_AT_ROWS:
                batch = self.store.objects.batch()
                root = ws.materialize("", batch)
                return Snapshot(root.hash, root.files, root.size, batch)
        root = self.fold(rec)
        files, size = self.store.objects.tree_stats(root)
        return Snapshot(root, files, size, self.store.objects)

    def described(self, rec: SessionRecord) -> SessionRecord:
        snap = self.snapshot(rec)
        rec.root_hash, rec.file_count, rec.total_bytes = snap.root, snap.files, snap.bytes
        return rec

    def fold(self, rec: SessionRecord) -> str:
        """Fold the overlay (if any) and return the current root hash."""
        ws = self.store.workspace(rec)
        if ws.is_clean():
            return rec.fold_root
        with self.db.write():
            fresh = self.store.session(rec.id)  # another writer may have folded
            ws = self.store.workspace(fresh)
            root = ws.fold()
        rec.fold_root = root
        return root

    def get(self, session_id: str) -> SessionRecord:
        return self.described(self.store.session(session_id))

    def list(self, labels: dict[str, str], tags: list[str], state: int, page_size: int,
             page_token: str, visible: tuple[str, list[str]] | None = None,
             ) -> tuple[list[SessionRecord], str]:
        """`visible`: None for every session, else (owner, ids): only sessions
        that owner owns or that are among those ids."""
        limit = min(page_size or 100, MAX_PAGE)
        out: list[SessionRecord] = []
        after = page_token
        want_tags = set(tags)
        while len(out) < limit:
            batch = self.store.sessions_page(after, 500)
            if not batch:
                after = ""
                break
            for rec in batch:
                after = rec.id
                if state and rec.state != state:
                    continue
                if visible is not None and rec.owner != visible[0] and rec.id not in visible[1]:
                    continue
                if any(rec.labels.get(k) != v for k, v in labels.items()):
                    continue
                if not want_tags.issubset(rec.tags):
                    continue
                out.append(self.described(rec))
                if len(out) == limit:
                    break
        more = bool(out) and len(out) == limit and bool(self.store.sessions_page(after, 1))
        return out, (after if more else "")

    # ---- change
    def update(self, session_id: str, fields: dict) -> SessionRecord:
        cols = {"name": "name", "labels": "labels", "tags": "tags", "metadata": "metadata",
                "policy": "policy"}
        with self.db.write():
            self.store.session(session_id)
            for key, value in fields.items():
                if key not in cols:
                    raise InvalidArgument(f"field {key!r} cannot be updated")
                if key == "labels":
                    _check_labels(value)
                if key == "tags":
                    value = sorted(set(value))
                self.db.execute(
                    f"UPDATE sessions SET {cols[key]}=? WHERE id=?",
                    (value if key == "name" else json.dumps(value), session_id),
                )
            self.store.touch(session_id)
            self.store.events.emit(session_id, "session.updated", fields=",".join(sorted(fields)))
        return self.get(session_id)

    def fork(self, session_id: str, spec: NewSession, at: str) -> SessionRecord:
        parent = self.store.session(session_id)
        root = self.store.resolve_state(parent, at) or self.fold(parent)
        spec.labels = spec.labels if spec.labels is not None else dict(parent.labels)
        spec.tags = spec.tags if spec.tags is not None else list(parent.tags)
        spec.policy = spec.policy if spec.policy is not None else dict(parent.policy)
        spec.owner = spec.owner or parent.owner  # the API passes the caller
        spec.name = spec.name or (f"{parent.name} (fork)" if parent.name else "")
        return self._insert(spec, "session", session_id, root, session_id)

    def archive(self, session_id: str, actor: str = "") -> SessionRecord:
        rec = self.store.session(session_id)
        self.fold(rec)
        now = time.time_ns()
        with self.db.write():
            self.db.execute(
                "UPDATE sessions SET state=?, archived_ns=?, updated_ns=? WHERE id=? AND state=?",
                (ARCHIVED, now, now, session_id, ACTIVE),
            )
            if self.db.connection().changes():
                self.store.events.emit(session_id, "session.archived", actor=actor)
        return self.get(session_id)

    def restore(self, session_id: str, target: str) -> SessionRecord:
        """Working state := a checkpoint, a commit or the base. O(changed paths)."""
        with self.db.write():
            rec, ws = self.store.writable(session_id)
            if not target:
                raise InvalidArgument("restore needs a checkpoint id, a commit id or 'base'")
            root = self.store.resolve_state(rec, target)
            if root is None:
                raise InvalidArgument("restore needs a checkpoint id, a commit id or 'base'")
            self.db.execute("DELETE FROM overlay WHERE session_id=?", (session_id,))
            self.db.execute(
                "UPDATE sessions SET fold_root=?, updated_ns=? WHERE id=?",
                (root, time.time_ns(), session_id),
            )
            self.store.events.emit(session_id, "session.restored", target=target, root=root)
        return self.get(session_id)

    def delete(self, session_id: str, deleted_by: str = "",
               reason: str = "deleted") -> SessionRecord:
        """Delete a session, leaving its audit tombstone (in the same transaction)."""
        rec = self.get(session_id)
        with self.db.write():
            current = self.store.session(session_id)
            final = self.snapshot(current)  # not persisted: only its numbers are kept
            self.tombstones.write(current, final.root, final.files, final.bytes, deleted_by,
                                  reason)
            self.db.execute("DELETE FROM overlay WHERE session_id=?", (session_id,))
            self.db.execute("DELETE FROM checkpoints WHERE session_id=?", (session_id,))
            self.db.execute("DELETE FROM sessions WHERE id=?", (session_id,))
            # Wake live followers so their streams end now, not at the next recheck.
            self.db.after_commit(lambda: self.store.hub.notify(session_id))
        return rec


def _oneof(source: pb.SessionSource | None) -> str | None:
    if source is None:
        return None
    import betterproto2

    try:
        name, _ = betterproto2.which_one_of(source, "kind")
    except Exception:  # noqa: BLE001 - betterproto2 raises on an unset oneof in some versions
        return None
    return name or None


def _check_labels(labels: dict[str, str]) -> None:
    for k in labels:
        if not k or len(k) > 63 or "=" in k:
            raise InvalidArgument(f"bad label key {k!r}")
