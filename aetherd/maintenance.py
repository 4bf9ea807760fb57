"""fsck and gc over a data directory.

Both open the store directly; the daemon may keep running (WAL lets them read
beside it). gc is mark-and-sweep from every root (sessions, overlay rows,
checkpoints, commits, templates). It only frees objects older than its mark
minus a grace period, because a writer stores objects *before* committing the
row that references them: an object that is young may simply not be
referenced *yet*.
Re-storing an existing object refreshes its age for the same reason.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import blake3

from aetherd.store.blobs import SqliteBlobStore, chunk_hash
from aetherd.store.objects import DIR, EMPTY_TREE, FILE, ObjectStore, decode_tree, open_store

DEFAULT_GRACE_SECONDS = 15 * 60


@dataclass
class FsckReport:
    chunks: int = 0
    files: int = 0
    trees: int = 0
    roots: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict:
        return {"ok": self.ok, "chunks": self.chunks, "files": self.files, "trees": self.trees,
                "roots": self.roots, "problems": self.problems}

    def summary(self) -> str:
        head = (f"checked {self.chunks} chunks, {self.files} files, {self.trees} trees, "
                f"{self.roots} roots: ")
        if self.ok:
            return head + "clean"
        return head + f"{len(self.problems)} problem(s)\n" + "\n".join(
            f"  {p}" for p in self.problems)


def _roots(objects: ObjectStore) -> Iterator[tuple[str, str, str]]:
    """(what, tree-or-file hash, kind) for every reference held outside objects."""
    db = objects.db
    for sid, base, fold in db.query("SELECT id, base_root, fold_root FROM sessions"):
        yield f"session {sid} base", base, "tree"
        yield f"session {sid} fold", fold, "tree"
    for sid, path, kind, h in db.query(
        "SELECT session_id, path, kind, hash FROM overlay WHERE hash != ''"
    ):
        yield f"session {sid} overlay {path!r}", h, "tree" if kind == DIR else "file"
    for cid, root in db.query("SELECT id, root FROM checkpoints"):
        yield f"checkpoint {cid}", root, "tree"
    for cid, root in db.query("SELECT id, root FROM commits"):
        yield f"commit {cid}", root, "tree"
    for name, root in db.query("SELECT name, root FROM templates"):
        yield f"template {name!r}", root, "tree"


def fsck(data_dir: Path) -> FsckReport:
    db, objects = open_store(data_dir)
    blobs = objects.blobs
    assert isinstance(blobs, SqliteBlobStore)
    report = FsckReport()
    try:
        chunks: set[str] = set()
        for h, _ in blobs.iter_hashes():
            report.chunks += 1
            chunks.add(h)
            got = chunk_hash(blobs.get(h))
            if got != h:
                report.problems.append(f"chunk {h}: content hashes to {got}")
        files: set[str] = set()
        for h, size, packed in db.query("SELECT hash, size, extents FROM files"):
            report.files += 1
            files.add(h)
            digests = [bytes(packed)[i : i + 32].hex() for i in range(0, len(packed), 32)]
            missing = [d for d in digests if d not in chunks]
            if missing:
                report.problems.append(f"file {h}: {len(missing)} missing chunk(s), e.g. {missing[0]}")
                continue
            whole = blake3.blake3()
            total = 0
            for d in digests:
                piece = blobs.get(d)
                whole.update(piece)
                total += len(piece)
            if total != size or whole.hexdigest() != h:
                report.problems.append(f"file {h}: content is {total} bytes hashing to "
                                       f"{whole.hexdigest()} (expected {size} bytes)")
        trees: dict[str, bytes] = {}
        for h, data in db.query("SELECT hash, data FROM trees"):
            report.trees += 1
            trees[h] = bytes(data)
            got = blake3.blake3(bytes(data)).hexdigest()
            if got != h:
                report.problems.append(f"tree {h}: data hashes to {got}")
        for h, data in trees.items():
            for name, e in decode_tree(data).items():
                if e.kind == DIR and e.hash not in trees:
                    report.problems.append(f"tree {h}: entry {name!r} names missing tree {e.hash}")
                elif e.kind == FILE and e.hash not in files and e.size:
                    report.problems.append(f"tree {h}: entry {name!r} names missing file {e.hash}")
        for what, h, kind in _roots(objects):
            report.roots += 1
            if kind == "tree" and h not in trees and h != EMPTY_TREE:
                report.problems.append(f"{what}: missing tree {h}")
            if kind == "file" and h not in files and not _is_empty_content(h):
                report.problems.append(f"{what}: missing file {h}")
    finally:
        blobs.close()
        db.close()
    return report


def _is_empty_content(h: str) -> bool:
    from aetherd.store.objects import EMPTY_CONTENT_HASH

    return h == EMPTY_CONTENT_HASH


def gc(data_dir: Path, grace_seconds: int = DEFAULT_GRACE_SECONDS) -> dict[str, int]:
    db, objects = open_store(data_dir)
    blobs = objects.blobs
    mark_start = time.time_ns()
    cutoff = mark_start - grace_seconds * 1_000_000_000
    try:
        live_trees: set[str] = set()
        live_files: set[str] = set()
        with db.read():
            stack = []
            for _, h, kind in _roots(objects):
                (stack.append(h) if kind == "tree" else live_files.add(h))
            while stack:
                h = stack.pop()
                if h in live_trees or h == EMPTY_TREE:
                    continue
                live_trees.add(h)
                row = db.one("SELECT data FROM trees WHERE hash=?", (h,))
                if row is None:
                    continue
                for e in decode_tree(bytes(row[0])).values():
                    if e.kind == DIR:
                        stack.append(e.hash)
                    elif e.kind == FILE:
                        live_files.add(e.hash)
            live_chunks: set[str] = set()
            for h, packed in db.query("SELECT hash, extents FROM files"):
                if h in live_files:
                    p = bytes(packed)
                    live_chunks.update(p[i : i + 32].hex() for i in range(0, len(p), 32))
            dead_trees = [h for (h,) in db.query("SELECT hash FROM trees WHERE created_ns<?",
                                                 (cutoff,)) if h not in live_trees and h != EMPTY_TREE]
            dead_files = [h for (h,) in db.query("SELECT hash FROM files WHERE created_ns<?",
                                                 (cutoff,)) if h not in live_files]
        with db.write() as conn:
            for h in dead_trees:
                conn.execute("DELETE FROM trees WHERE hash=? AND created_ns<?", (h, cutoff))
            for h in dead_files:
                conn.execute("DELETE FROM files WHERE hash=? AND created_ns<?", (h, cutoff))
        # Chunks are freed after the metadata that could name them is gone.
        still_named: set[str] = set()
        for _, packed in db.query("SELECT hash, extents FROM files"):
            p = bytes(packed)
            still_named.update(p[i : i + 32].hex() for i in range(0, len(p), 32))
        dead_chunks = [h for h, created in blobs.iter_hashes()
                       if created < cutoff and h not in live_chunks and h not in still_named]
        freed = blobs.delete_older_than(dead_chunks, cutoff)
        return {"trees_freed": len(dead_trees), "files_freed": len(dead_files),
                "chunks_freed": freed}
    finally:
        blobs.close()
        db.close()
