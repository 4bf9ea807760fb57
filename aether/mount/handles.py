"""Open files, their content, and write-back.

A clean file is read from the content cache (cache.py): its whole content,
fetched once by hash. The first change to a file (a write, a truncate, an open
with O_TRUNC) copies it into a *staging file* under the cache directory; from
then on every handle of that inode reads and writes the staging file. On
close (flush, release) dirty content is journalled (journal.py), which sends
small files in batches and calls `writeback` here for the others; fsync waits
for it. Either way a write-back is one conditional write:

    If-Match: the hash this mount last saw for the file ("must not exist" for a
    file created here)

A file larger than one chunk (1 MiB) is sent by chunks: the mount hashes its
1 MiB chunks, asks the daemon which it lacks, uploads only those, and then
writes the file as its list of chunks, conditionally, in one request. So the
daemon never shows a partial file, a failure midway changes nothing, and an
edit of a large file moves only the chunks it touched.

The conflict rule: **the first write-back to reach the daemon wins**. When the
condition fails (the file was changed or deleted through the API or another
mount since this mount last saw it), the local version is saved beside it as
`<name>.conflict-<tag>-<n>` and the file shows the daemon's version again; the
close still succeeds, since no data was lost. A warning is logged.

Once a staging file is clean and no handle is open, it becomes the cache entry
for its hash (a rename), so what was just written is read back from the cache.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import blake3
import trio

from aether.mount.bridge import (
    EMPTY_HASH,
    RETRY_SECONDS,
    Bridge,
    ConflictError,
    Entry,
    RemoteError,
)
from aether.mount.cache import BlobCache
from aether.mount.fileio import pread_all, pwrite_all
from aether.mount.inodes import FILE, InodeTable, Node, now_ns
from aether.mount.journal import Journal

log = logging.getLogger("aether.mount.files")

INLINE_READ_MAX = 256 << 10
# The daemon's fixed chunk size; larger files are sent by chunks, at most
# PUT_CHUNKS of them (16 MiB) in one request.
CHUNK = 1 << 20
PUT_CHUNKS = 16
# Prefetch: a small file read for the first time brings its small uncached
# siblings along, this many at most (`_prefetch`).
PREFETCH_FILE_MAX = 256 << 10
PREFETCH_FILES = 256
PREFETCH_BYTES = 8 << 20
def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


class Staging:
    """A file's content while it differs from (or may soon differ from) the daemon's."""

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self.fd = fd
        # The content hash of what the file holds, when known (copied from a
        # blob, or just written back); "" once written to. Only a known hash
        # may file it in the content-addressed cache (never the node's hash,
        # which a refresh may have moved on).
        self.content_hash = ""

    @classmethod
    def empty(cls, directory: Path, ino: int) -> Staging:
        fd, path = tempfile.mkstemp(dir=directory, prefix=f"{ino}-")
        return cls(path, fd)

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def discard(self) -> None:
        self.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


@dataclass(eq=False)
class Handle:
    fh: int
    node: Node
    readable: bool
    writable: bool
    append: bool
    blob_fd: int | None = None  # the clean content this handle reads (close-to-open)


def _copy_fd(src: int, dst: int) -> None:
    size = os.fstat(src).st_size
    with os.fdopen(os.dup(src), "rb") as fin, os.fdopen(os.dup(dst), "wb") as fout:
        fin.seek(0)
        fout.seek(0)
        shutil.copyfileobj(fin, fout, 1 << 20)
        fout.truncate(size)


class Files:
    """Handles, staging and write-back for one mount."""

    def __init__(self, table: InodeTable, cache: BlobCache, bridge: Bridge,
                 conflict_tag: str, notifier=None,
                 journal: Journal | None = None) -> None:
        self.table = table
        self.journal = journal
        if journal is not None:
            journal.send_file = self.writeback
            journal.lost_race = self.lost_race
            journal.written = self._sent
        self.cache = cache
        self.bridge = bridge
        self.conflict_tag = conflict_tag
        self.notifier = notifier
        self.handles: dict[int, Handle] = {}
        self._next_fh = 1
        self._fetching: dict[int, trio.Event] = {}
        self.conflicts = 0
        self.writebacks = 0
        # Bytes of large files sent by chunks, and those the daemon had already.
        self.chunk_bytes_sent = 0
        self.chunk_bytes_skipped = 0

    # ---- handles

    def new_handle(self, node: Node, readable: bool, writable: bool, append: bool) -> Handle:
        fh = self._next_fh
        self._next_fh += 1
        h = Handle(fh, node, readable, writable, append)
        self.handles[fh] = h
        node.opens += 1
        return h

    def handle(self, fh: int) -> Handle:
        h = self.handles.get(fh)
        if h is None:
            raise OSError(errno.EBADF, "unknown file handle")
        return h

    def drop_handle(self, h: Handle) -> None:
        self.handles.pop(h.fh, None)
        if h.blob_fd is not None:
            os.close(h.blob_fd)
            h.blob_fd = None
        h.node.opens -= 1

    # ---- clean content

    async def blob_fd(self, node: Node) -> int | None:
        """A read-only fd on the node's clean content (None: the file is empty)."""
        while True:
            if not node.hash or node.hash == EMPTY_HASH:
                return None
            p = self.cache.lookup(node.hash)
            if p is not None:
                try:
                    return os.open(p, os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue  # evicted by another mount just now
            busy = self._fetching.get(node.ino)
            if busy is not None:
                await busy.wait()
                continue
            done = trio.Event()
            self._fetching[node.ino] = done
            try:
                await self._fetch(node)
            finally:
                del self._fetching[node.ino]
                done.set()

    async def _fetch(self, node: Node) -> None:
        if node.size <= PREFETCH_FILE_MAX and await self._prefetch(node):
            return
        if self.journal is not None:
            # a rename on its way changes what the path names
            await self.journal.settle(self.table.path(node))
        path = self.table.path(node)
        fd, tmp = self.cache.new_tmp()
        try:
            content_hash, size = await self.bridge.download(path, fd)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(fd)
        self.cache.insert(tmp, content_hash)
        if content_hash != node.hash and not node.dirty:
            # Changed in the daemon since we listed it: what we fetched is the truth.
            log.debug("%s changed to %s while opening", path, content_hash)
            node.hash = content_hash
            node.size = size
            if self.notifier is not None:
                self.notifier.inode(node.ino, attr_only=True)

    async def _prefetch(self, node: Node) -> bool:
        """Fetch a small file together with its small uncached siblings, in one
        request (`fs:read`): programs that read one file of a directory (git
        status, compilers, test runners) usually read the others next. True
        when the node's content is in the cache afterwards."""
        parent = node.parent
        if parent is None or parent.children is None or node.unlinked:
            return False
        batch = [node]
        size = node.size
        for c in parent.children.values():
            if len(batch) >= PREFETCH_FILES or size >= PREFETCH_BYTES:
                break
            if c is node or c.kind != FILE or c.dirty or not c.remote or c.ino in self._fetching \
                    or (self.journal is not None and self.journal.pending(c)):
                continue
            if not c.hash or c.hash == EMPTY_HASH or c.size > PREFETCH_FILE_MAX \
                    or self.cache.has(c.hash):
                continue
            batch.append(c)
            size += c.size
        if len(batch) < 2:
            return False  # a single file: the ranged single read is as good
        waiting = {}
        for c in batch[1:]:
            waiting[c.ino] = self._fetching[c.ino] = trio.Event()
        try:
            if self.journal is not None:  # (the siblings have nothing journalled)
                await self.journal.settle(self.table.path(node))
            paths = [self.table.path(c) for c in batch]
            try:
                got = await self.bridge.read_files(paths)
            except RemoteError as exc:
                log.debug("prefetch of %d files failed (%s); reading one", len(paths), exc)
                return False
            written = await trio.to_thread.run_sync(self._write_tmps, got)
            fetched = {}
            for path, tmp, content_hash, length in written:
                self.cache.insert(tmp, content_hash)
                fetched[path] = (content_hash, length)
        finally:
            for ino, done in waiting.items():
                del self._fetching[ino]
                done.set()
        answer = fetched.get(paths[0])
        if answer is None:
            return False  # failed or left out: the single read says why
        content_hash, length = answer
        if content_hash != node.hash and not node.dirty:
            node.hash, node.size = content_hash, length  # changed since listed
            if self.notifier is not None:
                self.notifier.inode(node.ino, attr_only=True)
        return True

    def _write_tmps(self, files: list[tuple[str, bytes, str]]) -> list[tuple[str, str, str, int]]:
        """Write fetched contents to cache temporaries, each checked against its
        hash (off the trio thread); (path, temporary, hash, size) of each."""
        out = []
        for path, data, content_hash in files:
            if blake3.blake3(data).hexdigest() != content_hash:
                log.warning("%s: content does not match its hash; not cached", path)
                continue
            fd, tmp = self.cache.new_tmp()
            try:
                pwrite_all(fd, data, 0)
            finally:
                os.close(fd)
            out.append((path, tmp, content_hash, len(data)))
        return out

    # ---- staging

    async def stage(self, node: Node, keep_content: bool = True) -> Staging:
        """The node's staging file, made now if needed (a copy of its clean content,
        or empty when `keep_content` is False)."""
        if node.staging is not None:
            return node.staging
        async with node.lock:
            if node.staging is not None:
                return node.staging
            st = Staging.empty(self.cache.staging_dir, node.ino)
            copied = EMPTY_HASH  # the hash of what `st` holds
            try:
                if keep_content and node.size > 0:
                    fd = await self.blob_fd(node)
                    # blob_fd opened the cache file of node.hash without an await
                    # since: this is the hash of the bytes copied below, even if
                    # a refresh moves node.hash on during the copy.
                    copied = node.hash or EMPTY_HASH
                    if fd is not None:
                        try:
                            await trio.to_thread.run_sync(_copy_fd, fd, st.fd)
                        finally:
                            os.close(fd)
            except BaseException:
                st.discard()
                raise
            node.staging = st
            if keep_content:
                st.content_hash = copied
            return st

    def _changed(self, node: Node, size: int) -> None:
        if node.staging is not None:
            node.staging.content_hash = ""
        node.size = size
        node.dirty = True
        node.data_gen += 1
        node.mtime_ns = node.ctime_ns = now_ns()
        node.local_times = False

    def wrote(self, node: Node, size: int) -> None:
        """Record a write; the file is now `size` bytes."""
        self._changed(node, size)

    async def truncate(self, node: Node, size: int) -> None:
        st = await self.stage(node, keep_content=size > 0)
        os.ftruncate(st.fd, size)
        self._changed(node, size)

    # ---- sending content

    async def send(self, path: str, fd: int, size: int, if_match: str, mode: int) -> Entry:
        """Make the daemon's `path` hold the first `size` bytes of `fd`,
        conditional on `if_match` (a hash, "*" or "!"): one request for a
        file of one chunk or less, else by chunks (`_send_chunked`)."""
        if size > CHUNK:
            return await self._send_chunked(path, fd, if_match, mode)
        # small files are read inline: a thread hop costs more than the read
        data = b"" if size == 0 else pread_all(fd, size, 0) if size <= INLINE_READ_MAX \
            else await trio.to_thread.run_sync(pread_all, fd, size, 0)
        return await self.bridge.write_file(path, data, if_match, mode)

    async def _send_chunked(self, path: str, fd: int, if_match: str, mode: int) -> Entry:
        """Upload only the chunks the daemon lacks, then write the file as its
        list of chunks, in one conditional request: the file changes at once
        or not at all (never a partial file), an edit of a large file moves the
        chunks it touched, and a copy or a conflict copy moves nothing.

        The staging file may change meanwhile (writes and truncations do not
        wait for a write-back): chunks are hashed from what it holds at each
        attempt, and an attempt whose uploads do not match its hashes (the
        daemon returns the hashes of what it got) starts over. If the file
        changed while it was hashed, what is written can mix chunks from before
        and after that change (the daemon shows it until the next write-back);
        the node stays dirty (its data_gen moved on), so the next write-back
        sends the file as it is then. A chunk freed by `aetherd gc` between the question and the
        write (`missing_chunk`) is sent again."""
        for _attempt in range(6):
            size = os.fstat(fd).st_size
            hashes = await trio.to_thread.run_sync(_chunk_hashes, fd, size)
            if hashes is None:
                continue  # cut while it was hashed
            missing = await self.bridge.missing_chunks(hashes) if hashes else set()
            i = 0
            changed = False
            while i < len(hashes) and not changed:
                if hashes[i] not in missing:
                    self.chunk_bytes_skipped += min(CHUNK, size - i * CHUNK)
                    i += 1
                    continue
                # a run of consecutive chunks, each sent once (a file of zeros
                # is one chunk, many times)
                run = {hashes[i]}
                j = i + 1
                while j < len(hashes) and hashes[j] in missing and hashes[j] not in run \
                        and (j - i) < PUT_CHUNKS:
                    run.add(hashes[j])
                    j += 1
                lo, hi = i * CHUNK, min(j * CHUNK, size)
                data = await trio.to_thread.run_sync(pread_all, fd, hi - lo, lo)
                if len(data) != hi - lo:
                    changed = True  # cut meanwhile
                    break
                stored = await self.bridge.put_chunks(data)
                self.chunk_bytes_sent += len(data)
                if stored != hashes[i:j]:
                    changed = True  # written to meanwhile
                missing -= run
                i = j
            if changed:
                continue
            try:
                return await self.bridge.write_chunks(path, hashes, if_match, mode,
                                                      self.bridge.new_batch_id())
            except RemoteError as exc:
                if "missing_chunk" not in exc.details:
                    raise
                log.info("a chunk of %s was freed before its write; sending it again", path)
        raise OSError(errno.EAGAIN, f"{path} kept changing while it was sent; it stays dirty "
                      "and is sent again")

    # ---- write-back

    async def commit(self, node: Node, *, again: bool = False) -> None:
        """Queue a dirty file's content for write-back (the journal sends it;
        `Journal.sync` waits for it). `again`: also if it was queued before and
        failed (fsync retries a failed write-back; a close does not)."""
        if node.dirty and not node.unlinked and node.kind == FILE and node.staging is not None:
            assert self.journal is not None
            self.journal.write(node, again=again)
            await self.journal.room()

    async def writeback(self, node: Node, at: str | None = None) -> None:
        """Send dirty content to the daemon now, as the file at `at` (its
        current path by default); see the module doc for the rule. The journal
        calls this for files too large to go in a batch."""
        if not node.dirty or node.unlinked or node.kind != FILE:
            return
        try:
            async with node.lock:
                if not node.dirty or node.unlinked or node.staging is None:
                    return
                gen = node.data_gen
                st = node.staging
                path = self.table.path(node) if at is None else at
                size = st.size()
                if_match = node.hash if node.remote and node.hash else "!"
                try:
                    entry = await self.send(path, st.fd, size, if_match, node.mode)
                except ConflictError:
                    await self.lost_race(node)
                    return
                except BaseException as exc:
                    if isinstance(exc, OSError):
                        log.warning("write-back of %s failed (%s); its content stays in %s and "
                                    "is tried again on the next fsync, change or unmount",
                                    path, exc.strerror or exc, st.path)
                    raise
                self._sent(node, entry, gen)
        finally:
            # A forget that came while the lock was held could not free the
            # node (maybe_drop leaves locked nodes alone): free it now.
            if node.unlinked:
                self.table.maybe_drop(node)

    def _sent(self, node: Node, entry: Entry, gen: int) -> None:
        """The daemon has the content the node had at data generation `gen`."""
        self.writebacks += 1
        node.hash = entry.hash
        node.remote = True
        if node.data_gen == gen:
            node.kernel_hash = entry.hash  # the kernel's pages are what was written
            if node.staging is not None:
                node.staging.content_hash = entry.hash
            node.dirty = False
            node.size = entry.size
            if not node.local_times:
                node.mtime_ns = entry.mtime_ns or node.mtime_ns
            if node.opens == 0 and node.staging is not None and not node.unlinked:
                self._promote(node)
        # else: written to while uploading: still dirty; its next write-back is
        # conditional on what was just sent (node.hash)
        if node.unlinked:
            self.table.maybe_drop(node)

    async def lost_race(self, node: Node) -> None:
        """A write-back met the conflict rule: keep the local version (the
        staging file) as a conflict copy and show the daemon's version. The
        caller holds the node lock (or is the journal's flusher, which does)."""
        st = node.staging
        if st is None or node.unlinked:
            return
        path = self.table.path(node)
        # Take the losing content out of the node before any await: a write
        # arriving meanwhile must start a new staging file (on the daemon's
        # version) instead of landing in the one that becomes the conflict
        # copy and is then discarded.
        node.staging = None
        node.dirty = False
        try:
            await self._conflict(node, path, st)
        except BaseException:
            # Never lose it: the staging file stays on disk, and the next mount
            # with this cache directory moves it to lost+found (cache.py).
            st.close()
            log.error("could not save the losing version of %s as a conflict copy; it is "
                      "kept in %s", path, st.path)
            raise
        st.discard()

    async def _conflict(self, node: Node, path: str, st: Staging) -> None:
        """Keep the local version (the staging file `st`) as a conflict copy;
        show the daemon's version. (Sent by chunks when large: the chunks the
        lost write-back uploaded are there already, so nothing moves again.)"""
        self.conflicts += 1
        parent = node.parent
        assert parent is not None and parent.children is not None
        parent_path = self.table.path(parent)
        for n in range(1, 1000):
            name = f"{node.name}.conflict-{self.conflict_tag}-{n}"
            if name in parent.children:
                continue
            cpath = _join(parent_path, name)
            try:
                entry = await self.send(cpath, st.fd, st.size(), "!", node.mode)
            except RemoteError as exc:
                if exc.errno != errno.EEXIST:
                    raise
                continue
            break
        else:  # pragma: no cover - a thousand conflict copies of one file
            raise OSError(errno.EIO, f"{path}: too many conflict copies")
        log.warning("write-back conflict on %s: it changed in the session since this mount "
                    "read it; the daemon's version stays, this mount's is saved as %s",
                    path, cpath)
        if name not in parent.children:
            t = now_ns()
            self.table.new_node(parent, name, FILE, mode=node.mode, size=entry.size,
                                hash=entry.hash, mtime_ns=entry.mtime_ns or t, ctime_ns=t,
                                atime_ns=t)
        if self.notifier is not None:
            self.notifier.entry(parent.ino, name)
        # The node now shows the daemon's version (or disappears with it); the
        # caller has already taken the losing content out of it.
        if not await self._adopt(node, path):
            self.table.detach(node)
            if self.notifier is not None:
                self.notifier.entry(parent.ino, node.name)

    async def _adopt(self, node: Node, path: str) -> bool:
        """Take the daemon's current version of a clean file (as a refresh would);
        False when it is gone."""
        try:
            e = Entry.from_info(await self.bridge.stat(path))
        except RemoteError as err:
            if err.errno != errno.ENOENT:
                raise
            return False
        content = e.hash != node.hash
        if content and node.staging is not None and not node.dirty:
            # clean but stale: it must not become the base of the next write
            node.staging.discard()
            node.staging = None
        node.hash, node.size, node.mode, node.remote = e.hash, e.size, e.mode, True
        node.mtime_ns = e.mtime_ns or node.mtime_ns
        node.xattrs = dict(e.xattrs)
        if self.notifier is not None:
            self.notifier.inode(node.ino, attr_only=not content or node.opens > 0)
        return True

    async def release(self, fh: int) -> None:
        h = self.handles.get(fh)
        if h is None:
            return
        node = h.node
        self.drop_handle(h)
        try:
            if node.dirty and h.writable:
                await self.commit(node)
        finally:
            if node.opens == 0 and node.staging is not None and not node.dirty \
                    and not node.unlinked:
                self._promote(node)
            self.table.maybe_drop(node)

    def _promote(self, node: Node) -> None:
        """A clean staging file becomes the cache entry of its content's hash."""
        st = node.staging
        assert st is not None
        node.staging = None
        st.close()
        if st.content_hash and st.content_hash != EMPTY_HASH:
            try:
                self.cache.insert(st.path, st.content_hash)
                return
            except OSError as exc:
                log.debug("could not keep %s in the cache: %s", st.path, exc)
        st.discard()

    async def flush_all(self) -> None:
        """Write back everything still dirty (at unmount)."""
        assert self.journal is not None
        for node in self.table.dirty_nodes():
            self.journal.write(node, again=True)
        await self.journal.drain(trio.current_time() + 2 * RETRY_SECONDS)
        for node in self.table.dirty_nodes():
            log.error("write-back of %s failed at unmount; its content stays in %s",
                      self.table.path(node), node.staging.path if node.staging else "?")
        if len(self.journal):
            log.error("%d change(s) could not be sent to aetherd before unmount",
                      len(self.journal))

    def close_all(self) -> None:
        """At exit: close everything; staging files of clean nodes go, dirty
        ones stay (see cache.py, lost+found)."""
        for h in list(self.handles.values()):
            self.drop_handle(h)
        for node in list(self.table.nodes.values()):
            if node.staging is not None:
                if node.dirty and not node.unlinked:
                    node.staging.close()
                else:
                    node.staging.discard()
                node.staging = None
        try:
            self.cache.staging_dir.rmdir()
        except OSError:
            pass  # not empty: changes that could not be written back


def _chunk_hashes(fd: int, size: int) -> list[str] | None:
    """The daemon's chunk hashes of the first `size` bytes of `fd`: BLAKE3 of
    each 1 MiB piece (off the trio thread); None if the file is shorter now."""
    out = []
    for off in range(0, size, CHUNK):
        want = min(CHUNK, size - off)
        piece = pread_all(fd, want, off)
        if len(piece) != want:
            return None
        out.append(blake3.blake3(piece).hexdigest())
    return out
