"""Open files, their content, and write-back.

A clean file is read from the content cache (cache.py): its whole content,
fetched once by hash. The first change to a file (a write, a truncate, an open
with O_TRUNC) copies it into a *staging file* under the cache directory; from
then on every handle of that inode reads and writes the staging file. On
flush (each close), fsync and release, dirty content is written back to the
daemon as one conditional write:

    If-Match: the hash this mount last saw for the file ("must not exist" for a
    file created here)

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

import trio

from aether.mount.bridge import EMPTY_HASH, Bridge, ConflictError, Entry, RemoteError
from aether.mount.cache import BlobCache
from aether.mount.inodes import FILE, InodeTable, Node, now_ns

log = logging.getLogger("aether.mount.files")

# Files at least this large whose changes cover at most half of them are written
# back as one range write of the changed span instead of the whole content.
RANGE_WRITE_MIN_SIZE = 4 << 20
INLINE_READ_MAX = 256 << 10


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

    def read_all(self) -> bytes:
        size = self.size()
        out = bytearray()
        while len(out) < size:
            piece = os.pread(self.fd, min(size - len(out), 64 << 20), len(out))
            if not piece:
                break
            out += piece
        return bytes(out)

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
                 conflict_tag: str, echoes=None, notifier=None) -> None:
        self.table = table
        self.cache = cache
        self.bridge = bridge
        self.conflict_tag = conflict_tag
        self.echoes = echoes
        self.notifier = notifier
        self.handles: dict[int, Handle] = {}
        self._next_fh = 1
        self._fetching: dict[int, trio.Event] = {}
        self.conflicts = 0
        self.writebacks = 0
        self.range_writebacks = 0

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
            self._rebase(node, node.hash if keep_content else "", node.size, node.mode)
            if not keep_content:
                node.shrunk = True
            return st

    @staticmethod
    def _rebase(node: Node, base_hash: str, base_size: int, base_mode: int) -> None:
        node.base_hash, node.base_size, node.base_mode = base_hash, base_size, base_mode
        node.span_lo, node.span_hi, node.shrunk = -1, 0, False

    def _changed(self, node: Node, size: int) -> None:
        if node.staging is not None:
            node.staging.content_hash = ""
        node.size = size
        node.dirty = True
        node.data_gen += 1
        node.mtime_ns = node.ctime_ns = now_ns()
        node.local_times = False

    def wrote(self, node: Node, off: int, n: int, size: int) -> None:
        """Record a write of n bytes at off; the file is now `size` bytes."""
        if n:
            node.span_lo = off if node.span_lo < 0 else min(node.span_lo, off)
            node.span_hi = max(node.span_hi, off + n)
        self._changed(node, size)

    async def truncate(self, node: Node, size: int) -> None:
        st = await self.stage(node, keep_content=size > 0)
        old = st.size()
        os.ftruncate(st.fd, size)
        if size < node.base_size:
            node.shrunk = True
        elif size > old:  # grown: the new bytes are zeros the daemon must get
            node.span_lo = old if node.span_lo < 0 else min(node.span_lo, old)
            node.span_hi = max(node.span_hi, size)
        else:
            node.span_hi = min(node.span_hi, size)
        self._changed(node, size)

    @staticmethod
    def _range_plan(node: Node, size: int) -> tuple[int, int] | None:
        """(offset, length) when a range write of the changed span can replace a
        whole-file upload: a large file, its daemon version known, not cut, mode
        unchanged, and at most half of it changed."""
        if not (node.remote and node.base_hash and node.base_hash == node.hash):
            return None
        if node.shrunk or node.mode != node.base_mode or size < RANGE_WRITE_MIN_SIZE:
            return None
        if node.span_lo < 0:
            return (size, 0) if size == node.base_size else None
        if node.span_lo >= node.span_hi:  # a truncate cut below the written span
            return None
        if size != max(node.base_size, node.span_hi):
            return None
        length = node.span_hi - node.span_lo
        if length > size // 2:
            return None
        return node.span_lo, length

    # ---- write-back

    async def writeback(self, node: Node) -> None:
        """Send dirty content to the daemon (see the module doc for the rule)."""
        if not node.dirty or node.unlinked or node.kind != FILE:
            return
        try:
            async with node.lock:
                if not node.dirty or node.unlinked or node.staging is None:
                    return
                gen = node.data_gen
                st = node.staging
                path = self.table.path(node)
                size = st.size()
                plan = self._range_plan(node, size)
                if plan is not None and plan[1] == 0:  # nothing left to send
                    node.dirty = False
                    return
                if_match = node.hash if node.remote and node.hash else "!"
                if self.echoes is not None:
                    self.echoes.expect("file.written", path)
                try:
                    if plan is not None:
                        off, length = plan
                        piece = await trio.to_thread.run_sync(_pread_all, st.fd, length, off)
                        entry = await self.bridge.write_range(path, piece, off, if_match)
                        self.range_writebacks += 1
                    else:
                        # small files are read inline: a thread hop costs more than the read
                        data = st.read_all() if size <= INLINE_READ_MAX else \
                            await trio.to_thread.run_sync(st.read_all)
                        entry = await self.bridge.write_file(path, data, if_match, node.mode)
                except ConflictError as exc:
                    if self.echoes is not None:
                        self.echoes.cancel("file.written", path)
                    # Take the losing content out of the node before any await: a
                    # write arriving meanwhile must start a new staging file (on the
                    # daemon's version, once we hold no lock) instead of landing in
                    # the one that becomes the conflict copy and is then discarded.
                    node.staging = None
                    node.dirty = False
                    try:
                        data = await trio.to_thread.run_sync(st.read_all)
                        await self._conflict(node, path, data, exc)
                    except BaseException:
                        # Never lose it: the staging file stays on disk, and the
                        # next mount with this cache directory moves it to
                        # lost+found (cache.py).
                        st.close()
                        log.error("could not save the losing version of %s as a conflict "
                                  "copy; it is kept in %s", path, st.path)
                        raise
                    st.discard()
                    return
                except BaseException as exc:
                    if self.echoes is not None:
                        self.echoes.cancel("file.written", path)
                    if isinstance(exc, OSError):
                        log.warning("write-back of %s failed (%s); its content stays in %s and "
                                    "is tried again on the next flush, fsync, close or unmount",
                                    path, exc.strerror or exc, st.path)
                    raise
                self.writebacks += 1
                node.hash = entry.hash
                node.kernel_hash = entry.hash  # the kernel's pages are what was written
                node.remote = True
                if node.data_gen == gen:
                    st.content_hash = entry.hash
                    node.dirty = False
                    node.size = entry.size
                    self._rebase(node, entry.hash, entry.size, node.mode)
                    if not node.local_times:
                        node.mtime_ns = entry.mtime_ns or node.mtime_ns
                else:
                    # Written to while uploading: what was sent is the new base; the
                    # span stays (a superset of what is still to send).
                    node.base_hash, node.base_size = entry.hash, entry.size
                    node.base_mode = node.mode
        finally:
            # A forget that came while the lock was held could not free the
            # node (maybe_drop leaves locked nodes alone): free it now.
            if node.unlinked:
                self.table.maybe_drop(node)

    async def _conflict(self, node: Node, path: str, data: bytes, exc: ConflictError) -> None:
        """Keep the local version as a conflict copy; show the daemon's version."""
        self.conflicts += 1
        parent = node.parent
        assert parent is not None and parent.children is not None
        parent_path = self.table.path(parent)
        for n in range(1, 1000):
            name = f"{node.name}.conflict-{self.conflict_tag}-{n}"
            if name in parent.children:
                continue
            cpath = f"{parent_path}/{name}" if parent_path else name
            if self.echoes is not None:
                self.echoes.expect("file.written", cpath)
            try:
                entry = await self.bridge.write_file(cpath, data, "!", node.mode)
            except ConflictError:
                if self.echoes is not None:
                    self.echoes.cancel("file.written", cpath)
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
        try:
            info = await self.bridge.stat(path)
        except RemoteError as err:
            if err.errno != errno.ENOENT:
                raise
            self.table.detach(node)
            if self.notifier is not None:
                self.notifier.entry(parent.ino, node.name)
            return
        e = Entry.from_info(info)
        node.hash, node.size, node.mode, node.remote = e.hash, e.size, e.mode, True
        node.mtime_ns = e.mtime_ns or node.mtime_ns
        if self.notifier is not None:
            self.notifier.inode(node.ino, attr_only=node.opens > 0)

    async def rewrite_mode(self, node: Node) -> None:
        """chmod of a clean file: the daemon keeps a mode only with content, so
        write the same content again with the new mode."""
        fd = await self.blob_fd(node)
        try:
            data = b"" if fd is None else await trio.to_thread.run_sync(_read_fd, fd)
        finally:
            if fd is not None:
                os.close(fd)
        path = self.table.path(node)
        if self.echoes is not None:
            self.echoes.expect("file.written", path)
        try:
            entry = await self.bridge.write_file(path, data, node.hash or "*", node.mode)
        except BaseException:
            if self.echoes is not None:
                self.echoes.cancel("file.written", path)
            raise
        node.hash = entry.hash

    async def release(self, fh: int) -> None:
        h = self.handles.get(fh)
        if h is None:
            return
        node = h.node
        self.drop_handle(h)
        try:
            if node.dirty and h.writable:
                await self.writeback(node)
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
        for node in self.table.dirty_nodes():
            try:
                await self.writeback(node)
            except Exception:
                log.exception("write-back of %s failed at unmount; its content stays in %s",
                              self.table.path(node),
                              node.staging.path if node.staging else "?")

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


def _pread_all(fd: int, length: int, offset: int) -> bytes:
    out = bytearray()
    while len(out) < length:
        piece = os.pread(fd, min(length - len(out), 64 << 20), offset + len(out))
        if not piece:
            break
        out += piece
    return bytes(out)


def _read_fd(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    out = bytearray()
    while len(out) < size:
        piece = os.pread(fd, size - len(out), len(out))
        if not piece:
            break
        out += piece
    return bytes(out)
