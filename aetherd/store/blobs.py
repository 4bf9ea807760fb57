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

from aetherd.store.db import Database
from aetherd.store.schema import BLOB_SCHEMA

RAW, ZSTD = 0, 1
# Compress only when it pays: zstd level 3 must save at least 1/8.
_ZSTD_LEVEL = 3
_MIN_SAVING = 8


def chunk_hash(data: bytes) -> str:
    return blake3.blake3(data, max_threads=blake3.blake3.AUTO if len(data) > 1 << 20 else 1).hexdigest()


class BlobCorrupt(Exception):
    def __init__(self, expected: str, got: str) -> None:
        super().__init__(f"chunk {expected} is corrupt: content hashes to {got}")
        self.expected, self.got = expected, got


class BlobStore(Protocol):
    def has(self, hashes: Iterable[str]) -> set[str]: ...
    def put_many(self, chunks: Iterable[tuple[str, bytes]]) -> int:
        """Store chunks not yet present; durable when this returns. Returns bytes written."""
        items = dict(chunks)
        if not items:
            return 0
        # Compress outside the write lock; `present` is only a hint here.
        hint = self.has(items)
        packed = {h: self._pack(data) for h, data in items.items() if h not in hint}
        now = time.time_ns()
        written = 0
        with self.db.write() as conn:
            # Decide under the lock: a gc may have freed a "present" chunk since
            # the hint, and a chunk that is kept must get its age refreshed in
            # the same transaction so a gc that marked earlier cannot free it.
            present = self.has(items)
            for h, data in items.items():
                if h in present:
                    conn.execute("UPDATE chunks SET created_ns=? WHERE hash=?", (now, h))
                    continue
                codec, stored = packed[h] if h in packed else self._pack(data)
                conn.execute(
                    "INSERT INTO chunks(hash, size, codec, data, created_ns) VALUES (?,?,?,?,?)",
                    (h, len(data), codec, stored, now),
                )
                written += len(stored)
        return written

    def _pack(self, data: bytes) -> tuple[int, bytes]:
        if len(data) >= 256:
            packed = self._zstd()[0].compress(data)
            if len(packed) * _MIN_SAVING < len(data) * (_MIN_SAVING - 1):
                return ZSTD, packed
        return RAW, data

    def get(self, h: str) -> bytes: ...
    def delete_older_than(self, hashes: Iterable[str], before_ns: int) -> int: ...
    def iter_hashes(self) -> Iterator[tuple[str, int]]: ...
    def stored_bytes(self, hashes: Iterable[str] | None = None) -> int: ...
    def close(self) -> None: ...


class SqliteBlobStore:
    def __init__(self, path: Path) -> None:
        self.db = Database(path, BLOB_SCHEMA)
        # zstd contexts are not thread-safe; the store runs on a thread pool.
        self._local = threading.local()

    def _zstd(self) -> tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor]:
        ctx = getattr(self._local, "ctx", None)
        if ctx is None:
            ctx = self._local.ctx = (zstandard.ZstdCompressor(level=_ZSTD_LEVEL),
                                     zstandard.ZstdDecompressor())
        return ctx

    def has(self, hashes: Iterable[str]) -> set[str]:
        found: set[str] = set()
        batch = list(hashes)
        for i in range(0, len(batch), 500):
            part = batch[i : i + 500]
            marks = ",".join("?" * len(part))
            found.update(
                r[0] for r in self.db.query(f"SELECT hash FROM chunks WHERE hash IN ({marks})", part)
            )
        return found

    def put_many(self, chunks: Iterable[tuple[str, bytes]]) -> int:
        """Store chunks not yet present; durable when this returns. Returns bytes written."""
        items = list(chunks)
        if not items:
            return 0
        present = self.has(h for h, _ in items)
        now = time.time_ns()
        rows = []
        seen: set[str] = set()
        for h, data in items:
            if h in present or h in seen:
                continue
            seen.add(h)
            codec, stored = RAW, data
            if len(data) >= 256:
                packed = self._zstd()[0].compress(data)
                if len(packed) * _MIN_SAVING < len(data) * (_MIN_SAVING - 1):
                    codec, stored = ZSTD, packed
            rows.append((h, len(data), codec, stored, now))
        with self.db.write() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO chunks(hash, size, codec, data, created_ns) VALUES (?,?,?,?,?)",
                rows,
            )
            # Re-put of a chunk that already exists refreshes its age, so a gc
            # that marked before this write started cannot free it.
            if present:
                conn.executemany(
                    "UPDATE chunks SET created_ns=? WHERE hash=?", [(now, h) for h in present]
                )
        return sum(len(r[3]) for r in rows)

    def get(self, h: str) -> bytes:
        row = self.db.one("SELECT codec, data FROM chunks WHERE hash=?", (h,))
        if row is None:
            raise KeyError(h)
        codec, data = row
        return self._zstd()[1].decompress(data) if codec == ZSTD else bytes(data)

    def verify(self, h: str) -> None:
        got = chunk_hash(self.get(h))
        if got != h:
            raise BlobCorrupt(h, got)

    def delete_older_than(self, hashes: Iterable[str], before_ns: int) -> int:
        n = 0
        with self.db.write() as conn:
            for h in hashes:
                conn.execute("DELETE FROM chunks WHERE hash=? AND created_ns<?", (h, before_ns))
                n += conn.changes()
        return n

    def iter_hashes(self) -> Iterator[tuple[str, int]]:
        yield from self.db.query("SELECT hash, created_ns FROM chunks")

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
