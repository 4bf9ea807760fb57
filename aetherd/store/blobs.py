"""The blob store: content-addressed chunks, stored once across all sessions.

`BlobStore` is the narrow interface the rest of the daemon uses, so that an
S3-compatible store can replace the local one. `SqliteBlobStore` keeps chunks
in their own SQLite file (blobs.db): small chunks are faster there than as
loose files, a batch is one fsync, and a transaction never leaves a torn
chunk behind.

Ordering rule (crash safety): callers put chunks and let `put_many` return
(durably committed) *before* committing metadata that references them. A crash
in between leaves unreferenced chunks, which gc frees; never the reverse.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol

import blake3
import zstandard

from aether.errors import DataLoss
from aetherd.store.db import Database
from aetherd.store.schema import BLOB_SCHEMA

RAW, ZSTD = 0, 1
# Compress only when it pays: zstd level 3 must save at least 1/8.
_ZSTD_LEVEL = 3
_MIN_SAVING = 8
# ... judged first on this much of the chunk: data that barely compresses
# (media, archives, fio's buffers at 0.90) cost 12-19 ms per 1 MiB chunk for a
# result that was thrown away; 64 KiB of it says so for under 1 ms.
_PROBE = 64 * 1024


def chunk_hash(data: bytes) -> str:
    return blake3.blake3(data, max_threads=blake3.blake3.AUTO if len(data) > 1 << 20 else 1).hexdigest()


# Refresh a chunk's age (see chunk_ages in schema.py).
_TOUCH = "INSERT OR REPLACE INTO chunk_ages(hash, touched_ns) VALUES (?,?)"


def _pays(packed: int, raw: int) -> bool:
    return packed * _MIN_SAVING < raw * (_MIN_SAVING - 1)


class BlobMissing(DataLoss):
    def __init__(self, h: str) -> None:
        super().__init__(f"chunk {h} is missing from the blob store: this content is lost; "
                         "run `aetherd fsck` and restore from a backup", chunk=h)
        self.hash = h


class BlobCorrupt(DataLoss):
    def __init__(self, expected: str, why: str) -> None:
        super().__init__(f"chunk {expected} is corrupt ({why}): this content is damaged; "
                         "run `aetherd fsck` and restore from a backup", chunk=expected)
        self.expected, self.why = expected, why


class BlobStore(Protocol):
    def has(self, hashes: Iterable[str]) -> set[str]:
        """The chunks that are stored and not being freed by gc."""
        ...

    def put_many(self, chunks: Iterable[tuple[str, bytes]]) -> int:
        """Store chunks not yet present and refresh the age of those present,
        deciding which is which under the store's write lock (gc deletes under
        it too); durable when this returns. Returns bytes written."""
        ...

    def get(self, h: str) -> bytes:
        """The chunk's bytes, checked against its hash: BlobMissing or
        BlobCorrupt, never wrong bytes."""
        ...

    def keep(self, hashes: Iterable[str]) -> set[str]:
        """Unmark and refresh those of these chunks that are still stored; returns them."""
        ...

    def touch(self, hashes: Iterable[str]) -> dict[str, int]:
        """As `keep` (unmark and refresh the age of those of these chunks that
        are stored, in one transaction), returning each kept chunk's size:
        what a client asking which chunks it must upload is told are present
        stays so for the gc grace period from now."""
        ...

    def mark_for_freeing(self, hashes: Iterable[str]) -> None:
        """Durably: these chunks (and no others) are to be freed; they count as
        absent from now on."""
        ...

    def free_marked(self, before_ns: int) -> int:
        """Delete the marked chunks still marked and older than before_ns, in
        short transactions. Returns how many went."""
        ...

    def iter_hashes(self) -> Iterator[tuple[str, int]]: ...
    def stored_bytes(self, hashes: Iterable[str] | None = None) -> int: ...
    def close(self) -> None: ...


class SqliteBlobStore:
    def __init__(self, path: Path) -> None:
        # 64 KiB pages: a 1 MiB chunk is 16 overflow pages instead of 256 (the
        # WAL and the checkpoint move it in bigger pieces). Checkpoints run
        # beside commits: a PutChunks or a write no longer waits for chunks of
        # earlier commits to be copied into blobs.db and fsynced again.
        self.db = Database(path, BLOB_SCHEMA, page_size=65536, background_checkpoints=True)
        # zstd contexts are not thread-safe; the store runs on a thread pool.
        self._local = threading.local()

    def _zstd(self) -> tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor]:
        ctx = getattr(self._local, "ctx", None)
        if ctx is None:
            ctx = self._local.ctx = (zstandard.ZstdCompressor(level=_ZSTD_LEVEL),
                                     zstandard.ZstdDecompressor())
        return ctx

    def has(self, hashes: Iterable[str]) -> set[str]:
        return self._stored(hashes, "AND NOT EXISTS (SELECT 1 FROM freeing f "
                                    "WHERE f.hash = chunks.hash)")

    def _stored(self, hashes: Iterable[str], where: str = "") -> set[str]:
        found: set[str] = set()
        batch = list(hashes)
        for i in range(0, len(batch), 500):
            part = batch[i : i + 500]
            marks = ",".join("?" * len(part))
            found.update(r[0] for r in self.db.query(
                f"SELECT hash FROM chunks WHERE hash IN ({marks}) {where}", part))
        return found

    def put_many(self, chunks: Iterable[tuple[str, bytes]]) -> int:
        """Store chunks not yet present; durable when this returns. Returns bytes written."""
        items = dict(chunks)
        if not items:
            return 0
        # Compress outside the write lock; what is present is only a hint here.
        hint = self._stored(items)
        packed = {h: self._pack(data) for h, data in items.items() if h not in hint}
        now = time.time_ns()
        written = 0
        with self.db.write() as conn:
            # Decide under the lock: gc may have freed a "present" chunk since
            # the hint (refreshing a row that is gone keeps nothing), and a
            # chunk that is kept must have its age refreshed in this same
            # transaction, so that a gc that marked before this write began
            # cannot free it.
            present = self._stored(items)
            for h, data in items.items():
                if h in present:  # kept: no longer to be freed, and young again
                    conn.execute("DELETE FROM freeing WHERE hash=?", (h,))
                    conn.execute(_TOUCH, (h, now))
                    continue
                codec, stored = packed[h] if h in packed else self._pack(data)
                conn.execute(
                    "INSERT INTO chunks(hash, size, codec, data, created_ns) VALUES (?,?,?,?,?)",
                    (h, len(data), codec, stored, now),
                )
                written += len(stored)
        return written

    def _pack(self, data: bytes) -> tuple[int, bytes]:
        if len(data) < 256:
            return RAW, data
        if len(data) <= _PROBE:
            packed = self._zstd()[0].compress(data)
        else:
            # One frame, compressed in two steps: the first block tells
            # whether the rest is worth it.
            cobj = self._zstd()[0].compressobj(size=len(data))
            head = cobj.compress(data[:_PROBE]) + cobj.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
            if not _pays(len(head), _PROBE):
                return RAW, data
            packed = head + cobj.compress(data[_PROBE:]) + cobj.flush()
        return (ZSTD, packed) if _pays(len(packed), len(data)) else (RAW, data)

    def get(self, h: str) -> bytes:
        # Every read is checked against the chunk's hash: a damaged row (a bad
        # disk, a torn copy, a hand edit) must fail the read, never serve wrong
        # bytes under the file's ETag or feed them into a range write. BLAKE3
        # costs about 0.6 ms per 1 MiB chunk on one core, less than the zstd
        # decompression that compressible chunks need anyway.
        row = self.db.one("SELECT codec, size, data FROM chunks WHERE hash=?", (h,))
        if row is None:
            raise BlobMissing(h)
        codec, size, stored = row
        try:
            data = self._zstd()[1].decompress(stored) if codec == ZSTD else bytes(stored)
        except zstandard.ZstdError:
            raise BlobCorrupt(h, "its zstd frame does not decode") from None
        got = chunk_hash(data)
        if got != h:
            raise BlobCorrupt(h, f"its bytes hash to {got}")
        if len(data) != size:  # pragma: no cover - the hash differs first
            raise BlobCorrupt(h, f"it holds {len(data)} bytes, not {size}")
        return data

    def keep(self, hashes: Iterable[str]) -> set[str]:
        return set(self.touch(hashes))

    def touch(self, hashes: Iterable[str]) -> dict[str, int]:
        wanted = list(dict.fromkeys(hashes))
        if not wanted:
            return {}
        now = time.time_ns()
        sizes: dict[str, int] = {}
        with self.db.write() as conn:
            # A few statements per 500 hashes: a query of 100,000 hashes is one
            # short transaction (one fsync), not 200,000 statements.
            for i in range(0, len(wanted), 500):
                part = wanted[i : i + 500]
                marks = ",".join("?" * len(part))
                found = {h: int(size) for h, size in conn.execute(
                    f"SELECT hash, size FROM chunks WHERE hash IN ({marks})", part)}
                if not found:
                    continue
                sizes.update(found)
                kept = list(found)
                marks = ",".join("?" * len(kept))
                conn.executemany(_TOUCH, ((h, now) for h in kept))
                conn.execute(f"DELETE FROM freeing WHERE hash IN ({marks})", kept)
        return sizes

    def mark_for_freeing(self, hashes: Iterable[str]) -> None:
        with self.db.write() as conn:
            # Marks left by a gc that died, or restored from a backup taken
            # beside one, were decided against another state of the metadata:
            # only the caller's decision, made under the metadata lock, counts.
            conn.execute("DELETE FROM freeing")
            conn.executemany("INSERT OR IGNORE INTO freeing(hash) VALUES (?)",
                             ((h,) for h in hashes))

    def free_marked(self, before_ns: int, batch: int = 500) -> int:
        # Deleting a chunk costs a page walk per 4 KiB of it, so the work is
        # cut into short transactions: writers wait for one batch at most.
        n = 0
        while True:
            with self.db.write() as conn:
                marked = [h for (h,) in conn.execute("SELECT hash FROM freeing LIMIT ?",
                                                     (batch,))]
                for h in marked:
                    conn.execute("DELETE FROM chunks WHERE hash=? AND created_ns<? AND NOT "
                                 "EXISTS (SELECT 1 FROM chunk_ages WHERE hash=? AND "
                                 "touched_ns>=?)", (h, before_ns, h, before_ns))
                    if conn.changes():
                        n += 1
                        conn.execute("DELETE FROM chunk_ages WHERE hash=?", (h,))
                    conn.execute("DELETE FROM freeing WHERE hash=?", (h,))
            if len(marked) < batch:
                return n

    def iter_hashes(self) -> Iterator[tuple[str, int]]:
        """Every chunk with its age: when it was stored or last refreshed."""
        yield from self.db.query(
            "SELECT c.hash, MAX(c.created_ns, COALESCE(a.touched_ns, 0)) FROM chunks c "
            "LEFT JOIN chunk_ages a ON a.hash = c.hash")

    def stored_bytes(self, hashes: Iterable[str] | None = None) -> int:
        if hashes is None:
            row = self.db.one("SELECT COALESCE(SUM(length(data)),0) FROM chunks")
            return int(row[0]) if row else 0
        total = 0
        batch = list(hashes)
        for i in range(0, len(batch), 500):
            part = batch[i : i + 500]
            marks = ",".join("?" * len(part))
            row = self.db.one(f"SELECT COALESCE(SUM(size),0) FROM chunks WHERE hash IN ({marks})", part)
            total += int(row[0]) if row else 0
        return total

    def close(self) -> None:
        self.db.close()
