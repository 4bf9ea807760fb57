"""fsck and gc over a data directory.

Both open the store directly; the daemon may keep running (WAL lets them read
beside it). gc is mark-and-sweep from every root (sessions, overlay rows,
checkpoints, commits, templates).

How gc stays safe beside writers, at any grace period (0 included):

- A writer stores objects (chunks, then file records and trees) *before* it
  commits the row that references them, in a later transaction. So gc only
  frees objects older than its mark minus the grace period (an object that
  is young may simply not be referenced *yet*), and storing an existing
  object again refreshes its age.
- gc marks once from a snapshot without blocking anyone, then marks again,
  incrementally, under the metadata write lock and sweeps in that same
  transaction: no writer can commit a new reference between the final mark
  and the sweep. Chunks that no file record names are then marked for
  freeing under the same lock (marked chunks count as absent to writers,
  and storing one again unmarks it) and deleted in short batches after it.
- Whatever gc keeps, it keeps whole: young objects are marked like roots, so
  a kept tree or file record never names a freed one.
- What the grace period cannot cover (a write slower than it, or grace 0) is
  refused, not corrupted: a file record is committed only after checking,
  under the same lock, that its chunks are still there (objects.py), and the
  schema's triggers refuse a row that names a freed tree or file record. The
  write fails with `unavailable` and nothing of it is visible; a retry
  succeeds.

Invariant: gc never frees an object reachable from a committed root, nor one
that a kept object references.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import blake3

from aether.errors import DataLoss
from aetherd.store.blobs import BlobCorrupt, SqliteBlobStore
from aetherd.store.db import Database
from aetherd.store.objects import (
    DIR,
    EMPTY_CONTENT_HASH,
    EMPTY_TREE,
    FILE,
    Entry,
    decode_tree,
    open_store,
)

DEFAULT_GRACE_SECONDS = 15 * 60
# Places listed per damaged file in an fsck report.
_MAX_LOCATIONS = 20


class Root(NamedTuple):
    """A reference held outside the objects: `hash` is a tree or a file record."""

    what: str  # human label: "session ses_x", "checkpoint ckp_y of ses_x", ...
    hash: str
    kind: str  # "tree" or "file"
    session_id: str = ""
    path: str = ""  # where in its session the object sits ("" = the root)


def _roots(db: Database) -> list[Root]:
    out: list[Root] = []
    for sid, base, fold in db.query("SELECT id, base_root, fold_root FROM sessions"):
        out.append(Root(f"session {sid} (base)", base, "tree", sid))
        out.append(Root(f"session {sid}", fold, "tree", sid))
    for sid, path, kind, h in db.query(
        "SELECT session_id, path, kind, hash FROM overlay WHERE hash != ''"
    ):
        out.append(Root(f"session {sid} (unfolded change)", h,
                        "tree" if kind == DIR else "file", sid, path))
    for cid, sid, root in db.query("SELECT id, session_id, root FROM checkpoints"):
        out.append(Root(f"checkpoint {cid}", root, "tree", sid))
    for cid, sid, root in db.query("SELECT id, session_id, root FROM commits"):
        out.append(Root(f"commit {cid}", root, "tree", sid))
    for name, root in db.query("SELECT name, root FROM templates"):
        out.append(Root(f"template {name!r}", root, "tree"))
    return out


# ---- fsck ---------------------------------------------------------------------


@dataclass
class Finding:
    """One problem, for people (`line`) and for scripts (the fields)."""

    kind: str  # chunk, file, tree or root: what is damaged
    hash: str
    problem: str  # corrupt, missing, mismatch or dangling
    detail: str
    files: list[str] = field(default_factory=list)  # file records using a bad chunk
    locations: list[dict[str, str]] = field(default_factory=list)  # where those files are

    def line(self) -> str:
        text = f"{self.kind} {self.hash}: {self.detail}"
        if self.files:
            text += f"; used by file {', '.join(self.files[:3])}"
            if len(self.files) > 3:
                text += f" and {len(self.files) - 3} more"
        if self.locations:
            shown = [f"{loc['path'] or '/'} in {loc['root']}" for loc in self.locations[:5]]
            text += "; at " + ", ".join(shown)
            if len(self.locations) > 5:
                text += f" and {len(self.locations) - 5} more"
        return text

    def as_dict(self) -> dict:
        return {"kind": self.kind, "hash": self.hash, "problem": self.problem,
                "detail": self.detail, "files": self.files, "locations": self.locations}


@dataclass
class FsckReport:
    chunks: int = 0
    files: int = 0
    trees: int = 0
    roots: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return [f.line() for f in self.findings]

    @property
    def ok(self) -> bool:
        return not self.findings

    def as_dict(self) -> dict:
        return {"ok": self.ok, "chunks": self.chunks, "files": self.files, "trees": self.trees,
                "roots": self.roots, "problems": self.problems,
                "findings": [f.as_dict() for f in self.findings]}

    def summary(self) -> str:
        head = (f"checked {self.chunks} chunks, {self.files} files, {self.trees} trees, "
                f"{self.roots} roots: ")
        if self.ok:
            return head + "clean"
        return head + f"{len(self.problems)} problem(s)\n" + "\n".join(
            f"  {p}" for p in self.problems)


def fsck(data_dir: Path) -> FsckReport:
    db, objects = open_store(data_dir)
    blobs = objects.blobs
    assert isinstance(blobs, SqliteBlobStore)
    report = FsckReport()
    try:
        # One snapshot of the metadata, taken before the chunks are listed:
        # chunks are committed before the metadata naming them, so every chunk
        # the snapshot names was already there (only gc removes chunks; do
        # not run the two at once).
        with db.read():
            file_rows = {h: (int(size), bytes(packed))
                         for h, size, packed in db.query("SELECT hash, size, extents FROM files")}
            trees = {h: bytes(data) for h, data in db.query("SELECT hash, data FROM trees")}
            roots = _roots(db)
            _check_objects(report, blobs, file_rows, trees, roots)
    finally:
        blobs.close()
        db.close()
    return report


def _check_objects(report: FsckReport, blobs: SqliteBlobStore,
                   file_rows: dict[str, tuple[int, bytes]], trees: dict[str, bytes],
                   roots: list[Root]) -> None:
    chunks: set[str] = set()
    corrupt: dict[str, str] = {}
    for h, _ in blobs.iter_hashes():
        report.chunks += 1
        chunks.add(h)
        try:
            blobs.get(h)  # checks the content against the hash
        except BlobCorrupt as exc:
            corrupt[h] = exc.why

    # Each bad chunk is reported once, with the files that use it; a file is
    # reported on its own only when its chunks are fine but do not add up.
    users: dict[str, list[str]] = defaultdict(list)
    bad_files: set[str] = set()
    for h, (size, packed) in file_rows.items():
        report.files += 1
        digests = [packed[i : i + 32].hex() for i in range(0, len(packed), 32)]
        broken = [d for d in digests if d not in chunks or d in corrupt]
        if broken:
            bad_files.add(h)
            for d in dict.fromkeys(broken):
                users[d].append(h)
            continue
        whole = blake3.blake3()
        total = 0
        try:
            for d in digests:
                piece = blobs.get(d)
                whole.update(piece)
                total += len(piece)
        except DataLoss as exc:  # changed since the chunk pass (a gc running beside)
            report.findings.append(Finding("file", h, "missing", exc.message))
            bad_files.add(h)
            continue
        if total != size or whole.hexdigest() != h:
            bad_files.add(h)
            report.findings.append(Finding(
                "file", h, "mismatch", f"its chunks hold {total} bytes hashing to "
                f"{whole.hexdigest()} (expected {size} bytes)"))
    for d, files in users.items():
        if d in corrupt:
            report.findings.append(Finding("chunk", d, "corrupt", f"corrupt: {corrupt[d]}", files))
        else:
            report.findings.append(Finding("chunk", d, "missing",
                                           "missing from the blob store", files))

    decoded: dict[str, dict[str, Entry]] = {}
    for h, data in trees.items():
        report.trees += 1
        got = blake3.blake3(data).hexdigest()
        if got != h:
            report.findings.append(Finding("tree", h, "corrupt", f"its data hashes to {got}"))
            continue
        decoded[h] = decode_tree(data)
    for h, entries in decoded.items():
        for name, e in entries.items():
            if e.kind == DIR and e.hash not in trees and e.hash != EMPTY_TREE:
                report.findings.append(Finding(
                    "tree", h, "dangling", f"entry {name!r} names missing tree {e.hash}"))
            elif (e.kind == FILE and e.hash not in file_rows and e.hash != EMPTY_CONTENT_HASH
                  and e.size):
                report.findings.append(Finding(
                    "tree", h, "dangling", f"entry {name!r} names missing file {e.hash}"))
    for r in roots:
        report.roots += 1
        if r.kind == "tree" and r.hash not in trees and r.hash != EMPTY_TREE:
            report.findings.append(Finding("root", r.hash, "missing",
                                           f"{r.what} names missing tree {r.hash}"))
        if r.kind == "file" and r.hash not in file_rows and r.hash != EMPTY_CONTENT_HASH:
            report.findings.append(Finding("root", r.hash, "missing",
                                           f"{r.what} names missing file {r.hash}"))

    if bad_files:
        where = _locations(bad_files, decoded, roots)
        for f in report.findings:
            targets = f.files or ([f.hash] if f.kind == "file" else [])
            for fh in targets:
                f.locations.extend(where.get(fh, []))


def _locations(targets: set[str], trees: dict[str, dict[str, Entry]],
               roots: list[Root]) -> dict[str, list[dict[str, str]]]:
    """Where the damaged file records sit: session (or checkpoint, commit,
    template) and path. Only subtrees that contain one are walked, each once."""
    contains: dict[str, bool] = {}

    def holds(tree: str) -> bool:
        stack, busy = [tree], set()
        while stack:
            t = stack[-1]
            if t in contains:
                stack.pop()
                continue
            entries = trees.get(t, {})
            todo = [e.hash for e in entries.values()
                    if e.kind == DIR and e.hash not in contains and e.hash not in busy]
            if todo and t not in busy:
                busy.add(t)
                stack.extend(todo)
                continue
            contains[t] = any(e.hash in targets if e.kind == FILE else
                              e.kind == DIR and contains.get(e.hash, False)
                              for e in entries.values())
            stack.pop()
        return contains[tree]

    out: dict[str, list[dict[str, str]]] = defaultdict(list)

    def note(fh: str, r: Root, path: str) -> None:
        if len(out[fh]) < _MAX_LOCATIONS:
            out[fh].append({"root": r.what, "session_id": r.session_id, "path": path})

    for r in roots:
        if r.kind == "file":
            if r.hash in targets:
                note(r.hash, r, r.path)
            continue
        if not holds(r.hash):
            continue
        stack = [(r.hash, r.path)]
        while stack:
            t, prefix = stack.pop()
            for name, e in sorted(trees.get(t, {}).items()):
                path = f"{prefix}/{name}" if prefix else name
                if e.kind == FILE and e.hash in targets:
                    note(e.hash, r, path)
                elif e.kind == DIR and holds(e.hash):
                    stack.append((e.hash, path))
    return out


# ---- gc -----------------------------------------------------------------------


def _mark(db: Database, cutoff: int, live_trees: set[str], live_files: set[str]) -> None:
    """Add to the live sets what the roots and the young objects reach now.

    Trees already live were walked whole before (trees are immutable), so a
    second mark only walks what is new since the first.
    """
    stack: list[str] = []
    for r in _roots(db):
        (stack.append(r.hash) if r.kind == "tree" else live_files.add(r.hash))
    # Kept because young, so kept with everything they name.
    stack.extend(h for (h,) in db.query("SELECT hash FROM trees WHERE created_ns>=?", (cutoff,)))
    live_files.update(h for (h,) in db.query("SELECT hash FROM files WHERE created_ns>=?",
                                             (cutoff,)))
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


def gc(data_dir: Path, grace_seconds: int = DEFAULT_GRACE_SECONDS) -> dict[str, int]:
    db, objects = open_store(data_dir)
    blobs = objects.blobs
    cutoff = time.time_ns() - grace_seconds * 1_000_000_000
    try:
        live_trees: set[str] = set()
        live_files: set[str] = set()
        # 1. The bulk of the marking, from a snapshot: writers keep going.
        with db.read():
            _mark(db, cutoff, live_trees, live_files)
        # 2. The final mark and the sweep of trees and file records, in one
        #    write transaction: nothing can reference an object between the
        #    moment it is found dead and the moment it is deleted.
        with db.write() as conn:
            _mark(db, cutoff, live_trees, live_files)
            dead_trees = [h for (h,) in db.query("SELECT hash FROM trees WHERE created_ns<?",
                                                 (cutoff,)) if h not in live_trees and h != EMPTY_TREE]
            dead_files = [h for (h,) in db.query("SELECT hash FROM files WHERE created_ns<?",
                                                 (cutoff,)) if h not in live_files]
            trees_freed = files_freed = 0
            for h in dead_trees:
                conn.execute("DELETE FROM trees WHERE hash=? AND created_ns<?", (h, cutoff))
                trees_freed += conn.changes()
            for h in dead_files:
                conn.execute("DELETE FROM files WHERE hash=? AND created_ns<?", (h, cutoff))
                files_freed += conn.changes()
        # 3. Chunks, once the file records that named them are gone (a crash
        #    in between leaves only unnamed chunks). Listing them reads the
        #    whole blob store, so it happens before taking any lock. Under the
        #    metadata lock, no file record can start naming a chunk (objects.py
        #    checks its chunks under it, and a chunk marked for freeing counts
        #    as absent there): the ones no record names are marked, then freed
        #    in short batches without the lock. A writer that needs a marked
        #    chunk stores it again, which unmarks it.
        old_chunks = [h for h, created in blobs.iter_hashes() if created < cutoff]
        with db.write():
            named: set[str] = set()
            for (packed,) in db.query("SELECT extents FROM files"):
                p = bytes(packed)
                named.update(p[i : i + 32].hex() for i in range(0, len(p), 32))
            blobs.mark_for_freeing(h for h in old_chunks if h not in named)
        freed = blobs.free_marked(cutoff)
        return {"trees_freed": trees_freed, "files_freed": files_freed, "chunks_freed": freed}
    finally:
        blobs.close()
        db.close()
