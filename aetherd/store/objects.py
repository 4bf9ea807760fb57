"""Immutable, content-addressed objects: file contents (chunk lists) and trees.

A file's identity is the BLAKE3 of its whole content (the API's hash and HTTP
ETag). Its bytes are cut into fixed CHUNK_SIZE chunks kept in the blob store;
the `files` row lists their digests in order, so extent i covers
[i*CHUNK_SIZE, (i+1)*CHUNK_SIZE). Fixed chunks make a byte-range write touch
only the chunks it overlaps.

A tree is the sorted list of a directory's entries; its hash is the BLAKE3 of
that canonical encoding (a Merkle tree, like git). Equal hashes mean equal
subtrees, which is what makes diff, fork and checkpoint O(changed paths).
"""

from __future__ import annotations

import base64
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from threading import Lock

import blake3
import orjson

from aether.errors import DataLoss, FailedPrecondition, Unavailable
from aetherd.store.blobs import BlobStore, chunk_hash
from aetherd.store.db import Database
from aetherd.store.schema import EMPTY_FILE_HASH

CHUNK_SIZE = 1 << 20
FILE, DIR, SYMLINK = 1, 2, 3  # = pb.EntryKind values
EMPTY_CONTENT_HASH = blake3.blake3(b"").hexdigest()
assert EMPTY_CONTENT_HASH == EMPTY_FILE_HASH  # the schema's reference triggers exempt it
# Flush buffered chunks to the blob store past this many bytes.
_FLUSH_BYTES = 64 << 20


@dataclass(frozen=True, slots=True)
class Entry:
    """One name in a directory. For directories, size/files aggregate the subtree."""

    kind: int
    mode: int
    size: int = 0
    hash: str = ""
    target: str = ""
    mtime_ns: int = 0
    files: int = 0
    # Extended attributes (user.* names), sorted by name: (name, value) pairs.
    xattrs: tuple[tuple[str, bytes], ...] = ()

    @property
    def is_dir(self) -> bool:
        return self.kind == DIR

    def content_equal(self, other: Entry) -> bool:
        """Equal for diff purposes: times do not count."""
        return (
            self.kind == other.kind
            and self.mode == other.mode
            and self.hash == other.hash
            and self.target == other.target
            and self.xattrs == other.xattrs
        )


def file_entry(h: str, size: int, mode: int = 0o644, mtime_ns: int = 0) -> Entry:
    return Entry(FILE, mode, size, h, "", mtime_ns or time.time_ns(), 1)


def symlink_entry(target: str, mtime_ns: int = 0) -> Entry:
    return Entry(SYMLINK, 0o777, len(target.encode()), "", target, mtime_ns or time.time_ns(), 1)


def encode_tree(entries: Mapping[str, Entry]) -> bytes:
    """Compact JSON, names sorted: byte-identical to json.dumps(separators=(",", ":"),
    ensure_ascii=False), only several times faster (trees are re-encoded on every
    snapshot and fold, so this is on the hot path)."""
    return _encode_with_totals(entries)[0]


def _encode_with_totals(entries: Mapping[str, Entry]) -> tuple[bytes, int, int]:
    """encode_tree plus the subtree's file count and content bytes, in one pass."""
    rows = []
    files = size = 0
    for n, e in sorted(entries.items()):
        row = [n, e.kind, e.mode, e.size, e.hash, e.target, e.mtime_ns, e.files]
        if e.xattrs:  # a 9th element only when there are some: older trees keep their hash
            row.append(xattrs_to_json(e.xattrs))
        rows.append(row)
        files += e.files
        if e.kind != SYMLINK:
            size += e.size
    return orjson.dumps(rows), files, size


def decode_tree(data: bytes) -> dict[str, Entry]:
    return {r[0]: Entry(*r[1:]) if len(r) == 8 else _with_xattrs(r) for r in orjson.loads(data)}


def _with_xattrs(r: list) -> Entry:
    return Entry(*r[1:8], xattrs_from_json(r[8]))


def xattrs_to_json(xattrs: tuple[tuple[str, bytes], ...]) -> list[list[str]]:
    """Extended attributes as JSON: [[name, base64 value], ...] (a tree row's
    9th element, an overlay row's `xattrs`)."""
    return [[n, base64.b64encode(v).decode("ascii")] for n, v in xattrs]


def xattrs_from_json(rows: list[list[str]]) -> tuple[tuple[str, bytes], ...]:
    return tuple((n, base64.b64decode(v)) for n, v in rows)


EMPTY_TREE_DATA = encode_tree({})
EMPTY_TREE = blake3.blake3(EMPTY_TREE_DATA).hexdigest()


@dataclass(frozen=True, slots=True)
class FileRecord:
    hash: str
    size: int
    chunks: tuple[str, ...]

    def extents(self) -> list[tuple[int, int, str]]:
        out = []
        for i, h in enumerate(self.chunks):
            off = i * CHUNK_SIZE
            out.append((off, min(CHUNK_SIZE, self.size - off), h))
        return out


def _pack(chunks: Iterable[str]) -> bytes:
    return b"".join(bytes.fromhex(h) for h in chunks)


def _unpack(data: bytes) -> tuple[str, ...]:
    return tuple(data[i : i + 32].hex() for i in range(0, len(data), 32))


class ObjectBatch:
    """Buffers new chunks, files and trees; writes blobs first, then metadata."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self._chunks: dict[str, bytes] = {}
        self._chunk_bytes = 0
        self._files: dict[str, FileRecord] = {}
        # Chunks that records of add_record name: stored by earlier requests
        # (PutChunks), not by this batch.
        self._given: set[str] = set()
        self._trees: dict[str, tuple[bytes, int, int]] = {}
        self._decoded: dict[str, dict[str, Entry]] = {}

    def tree(self, h: str) -> dict[str, Entry]:
        """A tree of this batch (stored or not yet), else one from the store."""
        hit = self._decoded.get(h)
        return hit if hit is not None else self.store.tree(h)

    def add_content(self, data: bytes | Iterable[bytes]) -> FileRecord:
        whole = blake3.blake3(max_threads=blake3.blake3.AUTO)
        digests: list[str] = []
        size = 0
        for piece in _fixed_pieces(data):
            whole.update(piece)
            h = chunk_hash(piece)
            digests.append(h)
            size += len(piece)
            if h not in self._chunks:
                self._chunks[h] = piece
                self._chunk_bytes += len(piece)
                if self._chunk_bytes >= _FLUSH_BYTES:
                    self.flush_chunks()
        rec = FileRecord(whole.hexdigest(), size, tuple(digests))
        self._files[rec.hash] = rec
        return rec

    def add_record(self, rec: FileRecord) -> None:
        """A file record whose chunks are already in the blob store (stored by
        an earlier request: a write by chunks). If one of them is gone by the
        commit, the commit fails with failed_precondition `missing_chunk`."""
        self._files[rec.hash] = rec
        self._given.update(rec.chunks)

    def add_tree(self, entries: Mapping[str, Entry]) -> Entry:
        """Store a directory; returns its entry (mode/mtime to be set by the caller)."""
        data, files, size = _encode_with_totals(entries)
        h = blake3.blake3(data).hexdigest()
        self._trees[h] = (data, files, size)
        self._decoded[h] = dict(entries)
        return Entry(DIR, 0o755, size, h, "", 0, files)

    def flush_chunks(self) -> None:
        if self._chunks:
            self.store.blobs.put_many(self._chunks.items())
            self._chunks.clear()
            self._chunk_bytes = 0

    def commit(self) -> None:
        held = dict(self._chunks)  # the last unflushed bytes, kept until the check below
        self.flush_chunks()
        now = time.time_ns()
        if not (self._files or self._trees):
            return
        with self.store.db.write() as conn:
            self._check_chunks(held)
            # Upsert refreshes created_ns: a gc that marked before this write
            # began will not free an object this write is about to reference.
            conn.executemany(
                "INSERT INTO files(hash, size, extents, created_ns) VALUES (?,?,?,?) "
                "ON CONFLICT(hash) DO UPDATE SET created_ns=excluded.created_ns",
                [(r.hash, r.size, _pack(r.chunks), now) for r in self._files.values()],
            )
            conn.executemany(
                "INSERT INTO trees(hash, data, files, bytes, created_ns) VALUES (?,?,?,?,?) "
                "ON CONFLICT(hash) DO UPDATE SET created_ns=excluded.created_ns",
                [(h, d, f, b, now) for h, (d, f, b) in self._trees.items()],
            )
        for h, entries in self._decoded.items():
            self.store.cache_tree(h, entries)
        self._files.clear()
        self._given.clear()
        self._trees.clear()
        self._decoded.clear()

    def _check_chunks(self, held: dict[str, bytes]) -> None:
        """Every chunk the new file records name is in the blob store; call
        under the metadata write lock.

        The chunks were committed before this transaction, and a gc may have
        freed them since (they were referenced by nothing yet). gc frees
        chunks only while it holds the metadata write lock, so what is present
        now stays present until this transaction commits the records that
        name it, and from then on gc sees them named. A chunk gc is about to
        free is kept; a freed one whose bytes are still at hand is stored
        again; one flushed earlier (a big import) is gone, and the write fails
        as retryable.
        """
        named = {c for rec in self._files.values() for c in rec.chunks}
        missing = named - self.store.blobs.has(named)
        if not missing:
            return
        lost = missing - held.keys() - self.store.blobs.keep(missing - held.keys())
        given = sorted(lost & self._given)
        if given:
            raise FailedPrecondition(
                f"chunk {given[0]} is not stored (freed by `aetherd gc` since it was "
                "uploaded or reported present); nothing was changed: upload it again "
                "(PutChunks) and retry", missing_chunk=given[0], missing=len(given))
        if lost:
            raise Unavailable(
                f"{len(lost)} chunk(s) this request stored were freed by a concurrent "
                "`aetherd gc` before the request could commit; nothing was changed, retry "
                "the request (a longer gc grace period avoids this)", reason="gc_race")
        self.store.blobs.put_many((h, held[h]) for h in missing)


def _fixed_pieces(data: bytes | Iterable[bytes]) -> Iterator[bytes]:
    if isinstance(data, (bytes, bytearray, memoryview)):
        # Views of one immutable copy: slicing bytes would copy every chunk.
        mv = memoryview(data if isinstance(data, bytes) else bytes(data))
        for i in range(0, len(mv), CHUNK_SIZE):
            yield mv[i : i + CHUNK_SIZE]
        return
    buf = bytearray()
    for part in data:
        buf += part
        while len(buf) >= CHUNK_SIZE:
            yield bytes(buf[:CHUNK_SIZE])
            del buf[:CHUNK_SIZE]
    if buf:
        yield bytes(buf)


class ObjectStore:
    def __init__(self, db: Database, blobs: BlobStore) -> None:
        self.db = db
        self.blobs = blobs
        self._trees: OrderedDict[str, dict[str, Entry]] = OrderedDict()
        self._tree_lock = Lock()  # guards both caches (the store runs on a thread pool)
        self._tree_cache_size = 4096
        self._files_cache: OrderedDict[str, FileRecord] = OrderedDict()

    def batch(self) -> ObjectBatch:
        return ObjectBatch(self)

    # ---- trees
    def cache_tree(self, h: str, entries: dict[str, Entry]) -> None:
        with self._tree_lock:
            self._trees[h] = entries
            self._trees.move_to_end(h)
            while len(self._trees) > self._tree_cache_size:
                self._trees.popitem(last=False)

    def tree(self, h: str) -> dict[str, Entry]:
        """The entries of a tree. The returned dict is shared: do not mutate it."""
        if h == EMPTY_TREE:
            return {}
        with self._tree_lock:
            hit = self._trees.get(h)
            if hit is not None:
                self._trees.move_to_end(h)
                return hit
        row = self.db.one("SELECT data FROM trees WHERE hash=?", (h,))
        if row is None:
            raise KeyError(f"tree {h} is missing")
        entries = decode_tree(bytes(row[0]))
        self.cache_tree(h, entries)
        return entries

    def tree_stats(self, h: str) -> tuple[int, int]:
        if h == EMPTY_TREE:
            return 0, 0
        row = self.db.one("SELECT files, bytes FROM trees WHERE hash=?", (h,))
        if row is None:
            raise KeyError(f"tree {h} is missing")
        return int(row[0]), int(row[1])

    def ensure_empty_tree(self) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO trees(hash, data, files, bytes, created_ns) VALUES (?,?,0,0,0)",
            (EMPTY_TREE, EMPTY_TREE_DATA),
        )

    # ---- file content
    def file(self, h: str) -> FileRecord:
        if h == EMPTY_CONTENT_HASH:
            return FileRecord(h, 0, ())
        with self._tree_lock:
            rec = self._files_cache.get(h)
        if rec is not None:
            return rec
        row = self.db.one("SELECT size, extents FROM files WHERE hash=?", (h,))
        if row is None:
            raise KeyError(f"file object {h} is missing")
        rec = FileRecord(h, int(row[0]), _unpack(bytes(row[1])))
        with self._tree_lock:
            self._files_cache[h] = rec
            if len(self._files_cache) > 8192:
                self._files_cache.popitem(last=False)
        return rec

    def read(self, h: str, offset: int = 0, length: int | None = None) -> bytes:
        rec = self.file(h)
        end = rec.size if length is None else min(rec.size, offset + length)
        if offset >= end:
            return b""
        return b"".join(self.iter_range(rec, offset, end))

    def iter_range(self, rec: FileRecord, start: int, end: int) -> Iterator[bytes]:
        first, last = start // CHUNK_SIZE, (end - 1) // CHUNK_SIZE
        for i in range(first, last + 1):
            try:
                data = self.blobs.get(rec.chunks[i])
            except DataLoss as exc:
                exc.details.setdefault("file", rec.hash)
                raise
            base = i * CHUNK_SIZE
            yield data[max(0, start - base) : end - base]

    def put_content(self, data: bytes | Iterable[bytes]) -> FileRecord:
        batch = self.batch()
        rec = batch.add_content(data)
        batch.commit()
        return rec

    def write_range(self, h: str, offset: int, data: bytes) -> FileRecord:
        """New content = old content with `data` written at `offset` (zero-filled gap)."""
        old = self.file(h)
        new_size = max(old.size, offset + len(data))

        def pieces() -> Iterator[bytes]:
            # Untouched chunks are re-read only to feed the whole-file hash.
            pos = 0
            end_write = offset + len(data)
            while pos < new_size:
                i = pos // CHUNK_SIZE
                chunk_end = min(pos + CHUNK_SIZE, new_size)
                old_part = b""
                if i < len(old.chunks):
                    old_part = self.blobs.get(old.chunks[i])
                buf = bytearray(old_part.ljust(chunk_end - pos, b"\0")[: chunk_end - pos])
                lo, hi = max(offset, pos), min(end_write, chunk_end)
                if lo < hi:
                    buf[lo - pos : hi - pos] = data[lo - offset : hi - offset]
                yield bytes(buf)
                pos = chunk_end

        return self.put_content(pieces())


def open_store(data_dir: Path) -> tuple[Database, ObjectStore]:
    from aetherd.store.blobs import SqliteBlobStore
    from aetherd.store.schema import META_COLUMNS, META_SCHEMA

    data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(data_dir / "meta.db", META_SCHEMA)
    with db.write() as conn:
        for table, column, definition in META_COLUMNS:
            present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            if column not in present:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
    blobs = SqliteBlobStore(data_dir / "blobs.db")
    objects = ObjectStore(db, blobs)
    objects.ensure_empty_tree()
    return db, objects
