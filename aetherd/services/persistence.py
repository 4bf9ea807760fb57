"""Checkpoints, commits, diffs, export and import.

Checkpoints and commits fold the working state and record its root tree:
O(changed paths). Restore lives in Sessions (it changes the working state).
"""

from __future__ import annotations

import io
import json
import tarfile
import time
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from aether import pb
from aether.errors import FailedPrecondition, InvalidArgument, NotFound
from aetherd import paths
from aetherd.ids import check_id, new_id
from aetherd.services import diffing, ingest, quota
from aetherd.services.review import Review
from aetherd.services.sessions import Sessions, Snapshot
from aetherd.services.state import Store
from aetherd.store.objects import DIR, FILE, SYMLINK, Entry, ObjectBatch, ObjectStore
from aetherd.store.workspace import Workspace, walk

_CKP_COLS = "id, session_id, root, message, labels, created_ns"


@dataclass
class CheckpointRecord:
    id: str
    session_id: str
    root: str
    message: str
    labels: dict[str, str]
    created_ns: int
    file_count: int = 0
    total_bytes: int = 0


@dataclass
class CommitRecord:
    id: str
    root: str
    session_id: str
    parent_id: str
    message: str
    author: str
    approvals: list[str]
    created_ns: int
    file_count: int = 0
    total_bytes: int = 0
    committed_by: str = ""  # the authenticated principal


class Persistence:
    def __init__(self, store: Store, sessions: Sessions) -> None:
        self.store = store
        self.db = store.db
        self.objects = store.objects
        self.sessions = sessions

    # ---- checkpoints
    def _ckp(self, row: tuple) -> CheckpointRecord:
        rec = CheckpointRecord(row[0], row[1], row[2], row[3], json.loads(row[4]), row[5])
        rec.file_count, rec.total_bytes = self.objects.tree_stats(rec.root)
        return rec

    def create_checkpoint(self, session_id: str, message: str,
                          labels: dict[str, str]) -> CheckpointRecord:
        rec = self.store.session(session_id)
        cid = new_id("ckp")
        with self.db.write():
            rec = self.store.session(session_id)
            root = self.store.workspace(rec).fold()
            self.db.execute(
                f"INSERT INTO checkpoints({_CKP_COLS}) VALUES (?,?,?,?,?,?)",
                (cid, session_id, root, message, json.dumps(labels), time.time_ns()),
            )
            self.store.events.emit(session_id, "checkpoint.created", checkpoint_id=cid, root=root)
        return self.get_checkpoint(session_id, cid)

    def get_checkpoint(self, session_id: str, checkpoint_id: str) -> CheckpointRecord:
        self.store.session(session_id)
        check_id(checkpoint_id, "ckp", "checkpoint")
        row = self.db.one(
            f"SELECT {_CKP_COLS} FROM checkpoints WHERE id=? AND session_id=?",
            (checkpoint_id, session_id),
        )
        if row is None:
            raise NotFound(f"no checkpoint {checkpoint_id!r} in session {session_id}")
        return self._ckp(row)

    def list_checkpoints(self, session_id: str, page_size: int,
                         page_token: str) -> tuple[list[CheckpointRecord], str]:
        self.store.session(session_id)
        limit = min(page_size or 100, 1000)
        rows = self.db.query(
            f"SELECT {_CKP_COLS} FROM checkpoints WHERE session_id=? AND (?='' OR id<?) "
            "ORDER BY id DESC LIMIT ?",
            (session_id, page_token, page_token, limit + 1),
        )
        out = [self._ckp(r) for r in rows[:limit]]
        return out, (out[-1].id if len(rows) > limit else "")

    def delete_checkpoint(self, session_id: str, checkpoint_id: str) -> CheckpointRecord:
        rec = self.get_checkpoint(session_id, checkpoint_id)
        with self.db.write():
            self.db.execute("DELETE FROM checkpoints WHERE id=?", (checkpoint_id,))
            self.store.events.emit(session_id, "checkpoint.deleted", checkpoint_id=checkpoint_id)
        return rec

    # ---- commits
    def _cmt(self, row: tuple) -> CommitRecord:
        rec = CommitRecord(row[0], row[1], row[2], row[3], row[4], row[5], json.loads(row[6]),
                           row[7], committed_by=row[8])
        rec.file_count, rec.total_bytes = self.objects.tree_stats(rec.root)
        return rec

    def create_commit(self, session_id: str, message: str, author: str,
                      committed_by: str = "") -> CommitRecord:
        if not message.strip():
            raise InvalidArgument("a commit needs a message")
        cid = new_id("cmt")
        with self.db.write():
            rec, ws = self.store.writable(session_id)
            root = ws.fold()
            approvals: list[str] = []
            if rec.policy.get("commitRequiresApproval"):
                # Checked under the write lock against the root being committed,
                # so no write can land between the check and the commit.
                approvals = Review(self.store, self.sessions).approvals_for_commit(session_id, root)
                need = max(1, int(rec.policy.get("minApprovals") or 0))
                if len(approvals) < need:
                    raise FailedPrecondition(
                        f"commit_requires_approval: the current state has {len(approvals)} "
                        f"of the {need} approval(s) it needs (distinct reviewers)",
                        session_id=session_id, root_hash=root,
                    )
            prev = self.db.one(
                "SELECT id FROM commits WHERE session_id=? ORDER BY id DESC LIMIT 1", (session_id,)
            )
            parent = prev[0] if prev else (rec.source_ref if rec.source_kind == "commit" else "")
            self.db.execute(
                "INSERT INTO commits(id, root, session_id, parent_id, message, author, approvals, "
                "created_ns, committed_by) VALUES (?,?,?,?,?,?,?,?,?)",
                (cid, root, session_id, parent, message, author or rec.owner, json.dumps(approvals),
                 time.time_ns(), committed_by),
            )
            self.store.events.emit(session_id, "commit.created", actor=author or rec.owner,
                                   commit_id=cid, root=root)
        return self.get_commit(cid)

    def get_commit(self, commit_id: str) -> CommitRecord:
        return self._cmt(self.store.commit_row(commit_id))

    def list_commits(self, session_id: str, page_size: int,
                     page_token: str) -> tuple[list[CommitRecord], str]:
        self.store.session(session_id)
        limit = min(page_size or 100, 1000)
        rows = self.db.query(
            "SELECT id, root, session_id, parent_id, message, author, approvals, created_ns, "
            "committed_by FROM commits WHERE session_id=? AND (?='' OR id<?) "
            "ORDER BY id DESC LIMIT ?",
            (session_id, page_token, page_token, limit + 1),
        )
        out = [self._cmt(r) for r in rows[:limit]]
        return out, (out[-1].id if len(rows) > limit else "")

    # ---- diff
    def _state(self, session_id: str, at: str) -> Snapshot:
        rec = self.store.session(session_id)
        root = self.store.resolve_state(rec, at)
        if root is None:
            return self.sessions.snapshot(rec)
        return Snapshot(root, 0, 0, self.objects)

    def _pair(self, session_id: str, frm: str, to: str) -> tuple[str, str, ObjectStore | ObjectBatch]:
        a, b = self._state(session_id, frm), self._state(session_id, to)
        # At most one side is the in-memory working state; its batch also
        # reads through to the store for the other side.
        trees = a.trees if isinstance(a.trees, ObjectBatch) else b.trees
        return a.root, b.root, trees

    def changes(self, session_id: str, since: str) -> tuple[list[diffing.TreeChange], str, str]:
        a, b, trees = self._pair(session_id, since or "base", "")
        return diffing.diff_trees(trees, a, b), a, b

    def diff(self, session_id: str, frm: str, to: str, context: int, only: list[str],
             name_only: bool) -> tuple[str, str, list[tuple[diffing.TreeChange, str, bool, int, int]]]:
        a, b, trees = self._pair(session_id, frm or "base", to)
        prefixes = [paths.normalize(p) for p in only]
        out = []
        for ch in diffing.diff_trees(trees, a, b):
            if prefixes and not any(paths.is_under(ch.path, p) for p in prefixes):
                continue
            if name_only:
                out.append((ch, "", False, 0, 0))
            else:
                out.append((ch, *diffing.unified(self.objects, ch, context)))
        return a, b, out

    # ---- export / import
    def export(self, session_id: str, fmt: int, at: str, path: str) -> Iterator[bytes]:
        state = self._state(session_id, at)
        root, trees = state.root, state.trees
        top = paths.normalize(path)
        if top:
            e = Workspace(self.objects, "", root, trees=trees).lookup(top)
            if e is None or e.kind != DIR:
                raise NotFound(f"no directory {top!r} to export")
            root = e.hash
        fmt = fmt or pb.ArchiveFormat.TAR
        if fmt == pb.ArchiveFormat.ZIP:
            return self._zip(root, trees)
        return (piece for piece in self._tar(root, trees, fmt == pb.ArchiveFormat.TAR_GZ) if piece)

    def _tar(self, root: str, trees: ObjectStore | ObjectBatch, gz: bool) -> Iterator[bytes]:
        """A tar (PAX) stream written member by member, file content chunk by chunk,
        so an export never holds more than one chunk in memory."""
        comp = zlib.compressobj(6, zlib.DEFLATED, 31) if gz else None  # 31: gzip framing
        written = 0

        def emit(data: bytes) -> bytes:
            nonlocal written
            written += len(data)
            return comp.compress(data) if comp else data

        for p, e in walk(trees, root):
            info = tarfile.TarInfo(p)
            info.mode = e.mode
            info.mtime = e.mtime_ns / 1e9
            for name, value in e.xattrs:  # read back by `tar --xattrs` (and by import)
                info.pax_headers[ingest.TAR_XATTR + name] = value.decode("utf-8", "surrogateescape")
            if e.kind == DIR:
                info.type = tarfile.DIRTYPE
            elif e.kind == SYMLINK:
                info.type, info.linkname = tarfile.SYMTYPE, e.target
            else:
                info.size = e.size
            yield emit(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
            if e.kind == FILE and e.size:
                for piece in self.objects.iter_range(self.objects.file(e.hash), 0, e.size):
                    yield emit(piece)
                yield emit(b"\0" * (-e.size % tarfile.BLOCKSIZE))
        end = b"\0" * (2 * tarfile.BLOCKSIZE)
        end += b"\0" * (-(written + len(end)) % tarfile.RECORDSIZE)
        yield emit(end)
        if comp:
            yield comp.flush()

    def _zip(self, root: str, trees: ObjectStore | ObjectBatch) -> Iterator[bytes]:
        sink = _Sink()
        with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for p, e in walk(trees, root):
                ts = time.gmtime(max(e.mtime_ns / 1e9, 315532800))[:6]
                if e.kind == DIR:
                    info = zipfile.ZipInfo(p + "/", ts)
                    info.external_attr = (0o40000 | e.mode) << 16
                    zf.writestr(info, b"")
                elif e.kind == SYMLINK:
                    info = zipfile.ZipInfo(p, ts)
                    info.external_attr = (0o120000 | 0o777) << 16
                    zf.writestr(info, e.target.encode())
                else:
                    info = zipfile.ZipInfo(p, ts)
                    info.external_attr = (0o100000 | e.mode) << 16
                    info.compress_type = zipfile.ZIP_DEFLATED
                    with zf.open(info, "w", force_zip64=e.size > (1 << 31)) as out:
                        for piece in self.objects.iter_range(
                            self.objects.file(e.hash), 0, e.size
                        ) if e.size else ():
                            out.write(piece)
                            yield from sink.drain()
                yield from sink.drain()
        yield from sink.drain()

    def import_archive(self, session_id: str, path: str, fmt: int,
                       data: bytes) -> pb.ImportResponse:
        top = paths.normalize(path)
        self.store.writable(session_id)
        batch = self.objects.batch()
        builder = ingest.TreeBuilder(batch, trusted=False, base=top)
        ingest.ingest_archive(builder, io.BytesIO(data), fmt)
        tree = builder.finish()
        batch.commit()
        with self.db.write():
            rec, ws = self.store.writable(session_id)
            existing = ws.lookup(top)
            if existing is not None and existing.kind != DIR:
                raise FailedPrecondition(f"not a directory: {top!r}", path=top)
            if existing is None:
                parent = ws.lookup(paths.parent_of(top))
                if parent is None or parent.kind != DIR:
                    raise NotFound(f"parent directory of {top!r} does not exist")
            self._merge_into(ws, top, tree)
            quota.check_tree(self.sessions, rec)
            self.store.touch(session_id)
            self.store.events.emit(session_id, "import.completed", top, files=builder.files,
                                   bytes=builder.bytes)
            root = ws.fold()
        resp = builder.summary()
        resp.root_hash = root
        return resp

    def _merge_into(self, ws: Workspace, top: str, tree: Entry) -> None:
        """Overlay the imported tree onto `top`: archive entries win, others stay."""
        def rec(prefix: str, t: str) -> None:
            for name, e in self.objects.tree(t).items():
                p = paths.join(prefix, name)
                cur = ws.lookup(p)
                if e.kind == DIR:
                    if cur is None or cur.kind != DIR:
                        if cur is not None:
                            ws.remove(p)
                        ws.put(p, e)  # a whole new directory: one row
                    else:
                        rec(p, e.hash)
                else:
                    if cur is not None and cur.kind == DIR:
                        ws.remove(p)
                    ws.put(p, e)

        if ws.lookup(top) is None:
            ws.put(top, tree)
        else:
            rec(top, tree.hash)


class _Sink(io.RawIOBase):
    """A write-only stream that hands out what was written so far."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.pos = 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[override]
        self.buf += b
        self.pos += len(b)
        return len(b)

    def tell(self) -> int:
        return self.pos

    def drain(self) -> Iterator[bytes]:
        if self.buf:
            out = bytes(self.buf)
            self.buf.clear()
            yield out
