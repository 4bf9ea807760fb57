"""The local content cache: whole file contents keyed by their BLAKE3 hash.

Content is addressed by hash, so an entry can never be stale: a file that
changes gets a new hash and a new entry. The cache only has to decide what to
keep, which it does by least-recently-used order under `--cache-size`.
Several mounts may share one cache directory: entries are put in place with an
atomic rename, and an entry that vanished (another mount evicted it) is simply
fetched again. Open files keep reading an evicted entry through their file
descriptor, so eviction never breaks a reader.

Eviction takes an entry's name away at once, with a rename into trash/ (a
metadata update), and leaves the unlink, which frees the blocks and can take
long for a large file, to a worker thread (`reaper`, a task of the mount). Since the name is gone
before any await, a read of the same content at that moment either already
holds a file descriptor (and keeps reading) or misses and fetches it again,
and a new entry for that hash is a new file the pending unlink cannot touch.

Layout under the cache directory:

    blobs/ab/abcdef...   one file per content hash
    tmp/                 downloads in progress
    trash/               evicted entries waiting to be unlinked
    staging/<pid>/       content being changed through a mount (handles.Staging)
    lost+found/<pid>/    staging files of a mount that died before writing them back
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

log = logging.getLogger("aether.mount.cache")

_HASH = re.compile(r"^[0-9a-f]{64}$")

UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """'512M', '2G', '1.5g', '4096' -> bytes (binary units)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", text.lower())
    if not m:
        raise ValueError(f"bad size {text!r}: want a number with an optional K, M, G or T")
    return int(float(m.group(1)) * UNITS[m.group(2)])


def format_size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"  # pragma: no cover


class BlobCache:
    def __init__(self, root: Path, limit: int) -> None:
        self.root = root
        self.limit = limit
        self.blobs = root / "blobs"
        self.tmp = root / "tmp"
        self.trash = root / "trash"
        self._doomed: list[str] = []  # in trash/, to unlink off the trio thread
        self._trashed = 0
        self._wake: Any = None  # a trio.Event while the reaper waits
        self.staging_dir = root / "staging" / str(os.getpid())
        self._lru: OrderedDict[str, int] = OrderedDict()
        self.used = 0
        self.hits = 0
        self.misses = 0

    def open(self) -> BlobCache:
        for d in (self.blobs, self.tmp, self.trash, self.staging_dir):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._clean_dead_staging()
        # Left by a mount that ended before its reaper ran (or by one running now,
        # which ignores a file that is already gone).
        self._doomed.extend(str(f) for f in self.trash.iterdir())
        found: list[tuple[float, str, int]] = []
        for sub in self.blobs.iterdir():
            if not sub.is_dir():
                continue
            for f in sub.iterdir():
                if _HASH.match(f.name):
                    try:
                        st = f.stat()
                    except FileNotFoundError:
                        continue
                    found.append((st.st_atime, f.name, st.st_size))
        for _, h, size in sorted(found):
            self._lru[h] = size
            self.used += size
        self.evict()
        return self

    def _clean_dead_staging(self) -> None:
        """Staging directories of mount processes that no longer run: empty ones
        are removed; files left in one (a mount that died with changes not
        written back) are kept under lost+found/ and reported."""
        for d in (self.root / "staging").iterdir():
            if d == self.staging_dir or not d.name.isdigit():
                continue
            try:
                os.kill(int(d.name), 0)
                continue  # still running
            except ProcessLookupError:
                pass
            except OSError:
                continue
            if any(d.iterdir()):
                lost = self.root / "lost+found" / d.name
                lost.parent.mkdir(exist_ok=True, mode=0o700)
                os.replace(d, lost)
                log.warning("a mount (pid %s) ended with changes it had not written back; "
                            "they are kept in %s", d.name, lost)
            else:
                shutil.rmtree(d, ignore_errors=True)

    def path(self, content_hash: str) -> Path:
        if not _HASH.match(content_hash):
            raise ValueError(f"not a content hash: {content_hash!r}")
        return self.blobs / content_hash[:2] / content_hash

    def lookup(self, content_hash: str) -> Path | None:
        """The cached content for a hash, or None (and counts a hit or a miss)."""
        p = self.path(content_hash)
        if content_hash in self._lru:
            if p.exists():
                self._lru.move_to_end(content_hash)
                self.hits += 1
                return p
            self.used -= self._lru.pop(content_hash)
        elif p.exists():  # put there by another mount sharing the directory
            self._account(content_hash, p.stat().st_size)
            self.hits += 1
            return p
        self.misses += 1
        return None

    def has(self, content_hash: str) -> bool:
        """Is this content cached? (A look only: no hit or miss is counted.)"""
        return self.path(content_hash).exists()

    def new_tmp(self) -> tuple[int, str]:
        """A file to download into: (fd, path)."""
        return tempfile.mkstemp(dir=self.tmp, prefix="dl-")

    def insert(self, tmp_path: str | Path, content_hash: str) -> Path:
        """Move a complete file into the cache under its hash (atomic)."""
        p = self.path(content_hash)
        p.parent.mkdir(exist_ok=True, mode=0o700)
        size = os.stat(tmp_path).st_size
        if p.exists():
            # The same content is there already. Replacing it would free the old
            # file's blocks inside the rename, on this thread: drop the new copy
            # the way eviction drops files instead.
            self._trash(tmp_path)
        else:
            os.replace(tmp_path, p)
        if content_hash in self._lru:
            self.used -= self._lru.pop(content_hash)
        self._account(content_hash, size)
        self.evict()
        return p

    def _account(self, content_hash: str, size: int) -> None:
        self._lru[content_hash] = size
        self.used += size

    def evict(self) -> None:
        """Drop least recently used entries until the cache fits its limit (the
        newest entry stays even when it alone is over the limit). Their files
        move to trash/; `reap` unlinks them."""
        while self.used > self.limit and len(self._lru) > 1:
            h, size = self._lru.popitem(last=False)
            self.used -= size
            self._trash(self.path(h))  # (gone already: evicted by another mount)
            log.debug("evicted %s (%d bytes)", h, size)

    def _trash(self, path: str | Path) -> None:
        """Take a file's name away now; `reaper` unlinks it on a worker thread."""
        self._trashed += 1
        doomed = self.trash / f"{os.getpid()}-{self._trashed}"
        try:
            os.rename(path, doomed)
        except FileNotFoundError:
            return
        self._doomed.append(str(doomed))
        if self._wake is not None:
            self._wake.set()

    async def reaper(self) -> None:
        """Unlink evicted files as they come (run it in a nursery)."""
        import trio

        while True:
            if not self._doomed:
                self._wake = trio.Event()
                await self._wake.wait()
                self._wake = None
            await self.reap()

    async def reap(self) -> None:
        """Unlink the evicted files now, on a worker thread."""
        if not self._doomed:
            return
        import trio  # here, not at the top: the CLI imports this module without trio

        doomed, self._doomed = self._doomed, []
        await trio.to_thread.run_sync(_unlink_all, doomed)

    def __len__(self) -> int:
        return len(self._lru)


def _unlink_all(paths: list[str]) -> None:
    for p in paths:
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not delete the evicted cache file %s: %s", p, exc)
