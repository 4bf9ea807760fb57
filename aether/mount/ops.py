"""The FUSE request handlers (pyfuse3.Operations) of a session mount.

Every handler is wrapped (`_handler`): a `FUSEError` passes through, an
OSError (including the bridge's RemoteError) becomes its errno, anything else
is logged with its traceback and answered EIO. No exception can reach pyfuse3
and end the mount.

Metadata is answered from the inode table (inodes.py): a directory is listed
once, with every child's attributes, and the kernel caches entries and
attributes for `ENTRY_TIMEOUT` / `ATTR_TIMEOUT` seconds; coherence.py
invalidates them when the session changes elsewhere. Changes (mkdir, rmdir,
unlink, rename, symlink, a closed file's content) are made in the inode table
and journalled (journal.py), then answered; the journal sends them to the
daemon in batches, and fsync waits for them. File content goes through
handles.py: staged locally, written back through the journal.

Not supported, by decision: hard links (`link` is EPERM, as on filesystems
without them), special files (mknod of fifos, sockets, devices is EPERM: a
session holds only files, directories and symlinks), RENAME_EXCHANGE (EINVAL).
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import stat
from collections.abc import Callable
from typing import Any

import pyfuse3
import trio

from aether.mount import xattrs
from aether.mount.bridge import Bridge, RemoteError
from aether.mount.cache import BlobCache
from aether.mount.coherence import Notifier, add_entry
from aether.mount.handles import Files
from aether.mount.inodes import (
    ATTR_MODE,
    ATTR_MTIME,
    ATTR_XATTRS,
    DIR,
    FILE,
    SYMLINK,
    InodeTable,
    Node,
    now_ns,
)
from aether.mount.journal import Journal

log = logging.getLogger("aether.mount.ops")

# Kernel caching of names and attributes. Coherence invalidates both when the
# session changes elsewhere (events are replayed from the cursor after a
# disconnect), so these only bound staleness if an invalidation is lost. Long
# enough that a build's or git's repeated stats stay in the kernel.
ENTRY_TIMEOUT = 10.0
ATTR_TIMEOUT = 10.0
# A checkpoint or commit (--at) never changes: the kernel may keep it all.
FIXED_STATE_TIMEOUT = 3600.0
BLKSIZE = 128 * 1024  # what stat() tells programs to use as a buffer size


def _handler(fn: Callable[..., Any]) -> Callable[..., Any]:
    name = fn.__name__

    @functools.wraps(fn)
    async def wrapper(self: Operations, *args: Any) -> Any:
        self.requests += 1
        try:
            return await fn(self, *args)
        except pyfuse3.FUSEError:
            raise
        except RemoteError as exc:
            level = logging.DEBUG if exc.errno in (errno.ENOENT, errno.EEXIST) else logging.WARNING
            log.log(level, "%s: daemon said %s", name, exc.strerror)
            raise pyfuse3.FUSEError(exc.errno or errno.EIO) from None
        except OSError as exc:
            log.debug("%s%r: %s", name, _brief(args), exc)
            raise pyfuse3.FUSEError(exc.errno or errno.EIO) from None
        except Exception:
            log.exception("%s%r failed", name, _brief(args))
            raise pyfuse3.FUSEError(errno.EIO) from None

    return wrapper


def _brief(args: tuple) -> tuple:
    return tuple(a for a in args[:3] if isinstance(a, int | bytes))


def _name(raw: bytes) -> str:
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise OSError(errno.EINVAL, "names must be valid UTF-8") from None
    if len(raw) > 255:
        raise OSError(errno.ENAMETOOLONG, "name too long")
    return name


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


class Operations(pyfuse3.Operations):
    # Off on purpose: with it the kernel owns size and mtime and ignores remote
    # size changes while pages are dirty, which defeats live coherence.
    enable_writeback_cache = False
    supports_dot_lookup = True
    enable_acl = False

    def __init__(self, bridge: Bridge, cache: BlobCache, *, session_label: str,
                 read_only: bool, conflict_tag: str, fixed_state: bool = False,
                 uid: int | None = None, gid: int | None = None,
                 sync_close: bool = False) -> None:
        super().__init__()
        self.entry_timeout = FIXED_STATE_TIMEOUT if fixed_state else ENTRY_TIMEOUT
        self.attr_timeout = FIXED_STATE_TIMEOUT if fixed_state else ATTR_TIMEOUT
        self.bridge = bridge
        self.cache = cache
        self.session_label = session_label
        self.read_only = read_only
        self.sync_close = sync_close
        self.table = InodeTable(os.getuid() if uid is None else uid,
                                os.getgid() if gid is None else gid)
        self.notifier = Notifier()
        self.journal = Journal(bridge, self.table)
        self.files = Files(self.table, cache, bridge, conflict_tag, self.notifier,
                           self.journal)
        self._loading: dict[int, Any] = {}
        self.requests = 0

    # ---- helpers

    def attrs(self, node: Node) -> pyfuse3.EntryAttributes:
        a = pyfuse3.EntryAttributes()
        a.st_ino = node.ino
        a.generation = 0
        a.entry_timeout = self.entry_timeout
        a.attr_timeout = self.attr_timeout
        a.st_mode = node.st_mode
        a.st_nlink = 2 + node.subdirs() if node.kind == DIR else 1
        a.st_uid = node.uid
        a.st_gid = node.gid
        a.st_rdev = 0
        a.st_size = node.size if node.kind != DIR else 4096
        a.st_blksize = BLKSIZE
        a.st_blocks = (a.st_size + 511) // 512
        a.st_atime_ns = node.atime_ns or node.mtime_ns
        a.st_mtime_ns = node.mtime_ns
        a.st_ctime_ns = node.ctime_ns or node.mtime_ns
        return a

    def node(self, ino: int) -> Node:
        node = self.table.get(ino)
        if node is None:
            raise OSError(errno.ENOENT, f"unknown inode {ino}")
        return node

    def dir(self, ino: int) -> Node:
        node = self.node(ino)
        if node.kind != DIR:
            raise OSError(errno.ENOTDIR, "not a directory")
        return node

    async def load_dir(self, d: Node) -> dict[str, Node]:
        """The directory's children, listed from the daemon the first time."""
        while d.children is None:
            busy = self._loading.get(d.ino)
            if busy is not None:
                await busy.wait()
                continue
            done = trio.Event()
            self._loading[d.ino] = done
            try:
                await self.journal.settle(self.table.path(d))  # renamed just now?
                entries = await self.bridge.list_dir(self.table.path(d))
                if d.children is None:
                    d.children = {}
                    for e in entries:
                        add_entry(self.table, d, e)
            finally:
                del self._loading[d.ino]
                done.set()
        return d.children

    def path(self, node: Node) -> str:
        return self.table.path(node)

    def _writable(self) -> None:
        if self.read_only:
            raise OSError(errno.EROFS, "read-only mount")

    async def _child(self, parent_ino: int, raw: bytes) -> tuple[Node, Node]:
        parent = self.dir(parent_ino)
        children = await self.load_dir(parent)
        child = children.get(raw.decode("utf-8", "surrogateescape"))
        if child is None:
            raise OSError(errno.ENOENT, "no such entry")
        return parent, child

    async def _free_name(self, parent_ino: int, raw: bytes) -> tuple[Node, str]:
        parent = self.dir(parent_ino)
        name = _name(raw)
        if name in await self.load_dir(parent):
            raise OSError(errno.EEXIST, "exists")
        return parent, name

    def _new_attrs(self, ctx: Any) -> dict[str, Any]:
        t = now_ns()
        return {"uid": ctx.uid, "gid": ctx.gid, "mtime_ns": t, "ctime_ns": t, "atime_ns": t}

    # ---- lifecycle

    def init(self) -> None:
        self.notifier.start()

    # ---- names and attributes

    @_handler
    async def lookup(self, parent_ino: int, name: bytes, ctx: Any) -> pyfuse3.EntryAttributes:
        parent = self.dir(parent_ino)
        if name == b".":
            node = parent
        elif name == b"..":
            node = parent.parent or self.table.root
        else:
            children = await self.load_dir(parent)
            found = children.get(name.decode("utf-8", "surrogateescape"))
            if found is None:
                # A negative entry the kernel may cache for ENTRY_TIMEOUT (a name
                # that appears elsewhere is invalidated by coherence; one created
                # here replaces it): repeated misses (PATH and import searches)
                # then cost nothing.
                neg = pyfuse3.EntryAttributes()
                neg.st_ino = 0
                neg.entry_timeout = self.entry_timeout
                return neg
            node = found
        node.lookups += 1
        return self.attrs(node)

    @_handler
    async def forget(self, inode_list: Any) -> None:
        for ino, n in inode_list:
            self.table.forget(ino, n)

    @_handler
    async def getattr(self, inode: int, ctx: Any) -> pyfuse3.EntryAttributes:
        return self.attrs(self.node(inode))

    @_handler
    async def setattr(self, inode: int, attr: Any, fields: Any, fh: int | None,
                      ctx: Any) -> pyfuse3.EntryAttributes:
        node = self.node(inode)
        if fields.update_size:
            self._writable()
            if node.kind == DIR:
                raise OSError(errno.EISDIR, "is a directory")
            if node.kind != FILE:
                raise OSError(errno.EINVAL, "not a regular file")
            await self.files.truncate(node, attr.st_size)
            if fh is None:  # truncate(2) by path: no close will follow
                await self.files.commit(node)
        changed = 0
        if fields.update_mode and node.kind != SYMLINK:
            mode = attr.st_mode & 0o7777
            if mode != node.mode:
                self._writable()
                node.mode = mode
                changed |= ATTR_MODE
        if fields.update_uid:
            node.uid = attr.st_uid
        if fields.update_gid:
            node.gid = attr.st_gid
        if fields.update_atime:
            node.atime_ns = attr.st_atime_ns
        if fields.update_mtime:
            self._writable()
            node.mtime_ns = attr.st_mtime_ns
            node.local_times = True
            changed |= ATTR_MTIME
        if changed:
            self.journal.attributes(node, changed)
        node.ctime_ns = now_ns()
        return self.attrs(node)

    @_handler
    async def readlink(self, inode: int, ctx: Any) -> bytes:
        node = self.node(inode)
        if node.kind != SYMLINK:
            raise OSError(errno.EINVAL, "not a symlink")
        return node.target.encode("utf-8", "surrogateescape")

    # ---- directories

    @_handler
    async def opendir(self, inode: int, ctx: Any) -> int:
        await self.load_dir(self.dir(inode))
        return inode

    @_handler
    async def readdir(self, fh: int, start_id: int, token: Any) -> None:
        d = self.dir(fh)
        await self.load_dir(d)
        # The next-entry offset is the child's cookie: stable while entries
        # come and go, unlike a position in a list.
        for child in d.entries_after(start_id):  # nothing awaits inside: no mutation
            if not pyfuse3.readdir_reply(token, child.name.encode("utf-8", "surrogateescape"),
                                         self.attrs(child), child.cookie):
                break
            child.lookups += 1  # readdirplus: an accepted entry is a lookup

    @_handler
    async def releasedir(self, fh: int) -> None:
        return None

    @_handler
    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        d = self.dir(fh)
        for child in list((d.children or {}).values()):
            if child.dirty:
                await self.files.commit(child, again=True)
        await self.journal.sync(directory=d)

    @_handler
    async def mkdir(self, parent_ino: int, name: bytes, mode: int,
                    ctx: Any) -> pyfuse3.EntryAttributes:
        self._writable()
        await self.journal.room()
        parent, n = await self._free_name(parent_ino, name)
        self.journal.mkdir(_join(self.path(parent), n), mode & 0o7777)
        node = self.table.new_node(parent, n, DIR, mode=(mode & 0o7777) or 0o755, children={},
                                   **self._new_attrs(ctx))
        node.lookups += 1
        return self.attrs(node)

    @_handler
    async def rmdir(self, parent_ino: int, name: bytes, ctx: Any) -> None:
        self._writable()
        await self.journal.room()
        parent, child = await self._child(parent_ino, name)
        if child.kind != DIR:
            raise OSError(errno.ENOTDIR, "not a directory")
        if await self.load_dir(child):
            raise OSError(errno.ENOTEMPTY, "directory not empty")
        if child.parent is not parent:
            raise OSError(errno.ENOENT, "gone")
        self.journal.rmdir(self.path(child))
        self.table.detach(child)
        self.table.maybe_drop(child)

    @_handler
    async def unlink(self, parent_ino: int, name: bytes, ctx: Any) -> None:
        self._writable()
        await self.journal.room()
        parent, child = await self._child(parent_ino, name)
        if child.kind == DIR:
            raise OSError(errno.EISDIR, "is a directory")
        if child.parent is not parent:
            raise OSError(errno.ENOENT, "gone")
        path = self.path(child)
        if not self.journal.forget_new_file(child, path):
            self.journal.delete(path)
        # Open handles keep reading the staged or cached content; it is freed
        # when the kernel forgets the inode (maybe_drop).
        child.dirty = False
        self.table.detach(child)
        self.table.maybe_drop(child)

    @_handler
    async def symlink(self, parent_ino: int, name: bytes, target: bytes,
                      ctx: Any) -> pyfuse3.EntryAttributes:
        self._writable()
        await self.journal.room()
        parent, n = await self._free_name(parent_ino, name)
        try:
            tgt = target.decode("utf-8")
        except UnicodeDecodeError:
            raise OSError(errno.EINVAL, "symlink targets must be UTF-8") from None
        self.journal.symlink(_join(self.path(parent), n), tgt)
        node = self.table.new_node(parent, n, SYMLINK, mode=0o777, target=tgt,
                                   size=len(target), **self._new_attrs(ctx))
        node.lookups += 1
        return self.attrs(node)

    @_handler
    async def rename(self, parent_old: int, name_old: bytes, parent_new: int, name_new: bytes,
                     flags: int, ctx: Any) -> None:
        self._writable()
        await self.journal.room()
        if flags & pyfuse3.RENAME_EXCHANGE:
            raise OSError(errno.EINVAL, "RENAME_EXCHANGE is not supported")
        src_parent, src = await self._child(parent_old, name_old)
        dst_parent = self.dir(parent_new)
        new = _name(name_new)
        dst = (await self.load_dir(dst_parent)).get(new)
        if dst is src:
            return
        if dst is not None:
            if flags & pyfuse3.RENAME_NOREPLACE:
                raise OSError(errno.EEXIST, "exists")
            if src.kind == DIR and dst.kind != DIR:
                raise OSError(errno.ENOTDIR, "not a directory")
            if src.kind != DIR and dst.kind == DIR:
                raise OSError(errno.EISDIR, "is a directory")
            if dst.kind == DIR and await self.load_dir(dst):
                raise OSError(errno.ENOTEMPTY, "directory not empty")
        if src.kind == DIR:
            p: Node | None = dst_parent
            while p is not None:
                if p is src:
                    raise OSError(errno.EINVAL, "cannot move a directory into itself")
                p = p.parent
        if src.parent is not src_parent or (dst_parent.children or {}).get(new) is not dst:
            # A refresh changed one of the names while a directory was listed.
            raise OSError(errno.EAGAIN, "changed meanwhile; try again")
        if src.kind == FILE and src.dirty:
            self.journal.write(src)  # the daemon renames what it has
        src_path = self.path(src)
        dst_path = _join(self.path(dst_parent), new)
        if dst is not None and dst.kind == DIR:
            # The daemon does not rename over a directory: remove the empty one first.
            self.journal.rmdir(dst_path)
            self.table.detach(dst)
            self.table.maybe_drop(dst)
            dst = None
        # Replace only what the daemon has (or will have, from the journal): a
        # file created meanwhile by someone else makes the rename fail instead.
        overwrite = dst is not None and (dst.remote or self.journal.pending(dst))
        self.journal.rename(src_path, dst_path, overwrite, src)
        if dst is not None:
            dst.dirty = False
            self.table.detach(dst)
            self.table.maybe_drop(dst)
        self.table.detach(src)
        self.table.attach(src, dst_parent, new)
        src.ctime_ns = now_ns()

    @_handler
    async def link(self, inode: int, new_parent: int, new_name: bytes,
                   ctx: Any) -> pyfuse3.EntryAttributes:
        raise OSError(errno.EPERM, "hard links are not supported")

    @_handler
    async def mknod(self, parent_ino: int, name: bytes, mode: int, rdev: int,
                    ctx: Any) -> pyfuse3.EntryAttributes:
        self._writable()
        if not stat.S_ISREG(mode):
            raise OSError(errno.EPERM, "only regular files, directories and symlinks")
        parent, n = await self._free_name(parent_ino, name)
        node = self.table.new_node(parent, n, FILE, mode=mode & 0o7777, remote=False,
                                   **self._new_attrs(ctx))
        await self.files.truncate(node, 0)
        await self.files.commit(node)  # no close follows a mknod
        node.lookups += 1
        return self.attrs(node)

    # ---- files

    @_handler
    async def create(self, parent_ino: int, name: bytes, mode: int, flags: int,
                     ctx: Any) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        self._writable()
        parent, n = await self._free_name(parent_ino, name)
        node = self.table.new_node(parent, n, FILE, mode=mode & 0o7777, remote=False,
                                   **self._new_attrs(ctx))
        await self.files.truncate(node, 0)  # exists here now; written back on close
        acc = flags & os.O_ACCMODE
        h = self.files.new_handle(node, readable=acc != os.O_WRONLY, writable=True,
                                  append=bool(flags & os.O_APPEND))
        node.lookups += 1
        return pyfuse3.FileInfo(fh=h.fh, keep_cache=True), self.attrs(node)

    @_handler
    async def open(self, inode: int, flags: int, ctx: Any) -> pyfuse3.FileInfo:
        node = self.node(inode)
        if node.kind != FILE:
            raise OSError(errno.EISDIR if node.kind == DIR else errno.ELOOP, "not a file")
        acc = flags & os.O_ACCMODE
        writable = acc in (os.O_WRONLY, os.O_RDWR)
        readable = acc in (os.O_RDONLY, os.O_RDWR)
        if writable:
            self._writable()
        h = self.files.new_handle(node, readable, writable, bool(flags & os.O_APPEND))
        try:
            if writable and flags & os.O_TRUNC:
                await self.files.truncate(node, 0)
            elif readable and node.staging is None:
                h.blob_fd = await self.files.blob_fd(node)
        except BaseException:
            self.files.drop_handle(h)
            raise
        # Keep the kernel's cached pages only if they are of this same content.
        keep = node.staging is not None or node.kernel_hash == node.hash
        node.kernel_hash = node.hash
        return pyfuse3.FileInfo(fh=h.fh, keep_cache=keep)

    @_handler
    async def read(self, fh: int, off: int, size: int) -> bytes:
        h = self.files.handle(fh)
        node = h.node
        if node.staging is not None:
            return os.pread(node.staging.fd, size, off)
        if h.blob_fd is None:
            h.blob_fd = await self.files.blob_fd(node)
            if h.blob_fd is None:
                return b""
        return os.pread(h.blob_fd, size, off)

    @_handler
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        h = self.files.handle(fh)
        if not h.writable:
            raise OSError(errno.EBADF, "not open for writing")
        node = h.node
        st = await self.files.stage(node)
        if h.append:
            off = st.size()
        n = os.pwrite(st.fd, buf, off)
        self.files.wrote(node, max(node.size, off + n, st.size()))
        return n

    @_handler
    async def flush(self, fh: int) -> None:
        h = self.files.handles.get(fh)
        if h is not None and h.writable and h.node.dirty:
            # Acknowledged here, sent by the journal (fsync is the barrier).
            await self.files.commit(h.node)
            if self.sync_close:
                await self.journal.sync(node=h.node)

    @_handler
    async def fsync(self, fh: int, datasync: bool) -> None:
        h = self.files.handle(fh)
        if h.node.dirty:
            await self.files.commit(h.node, again=True)
        await self.journal.sync(node=h.node)

    @_handler
    async def release(self, fh: int) -> None:
        await self.files.release(fh)

    # ---- filesystem

    @_handler
    async def statfs(self, ctx: Any) -> pyfuse3.StatvfsData:
        # Local changes are staged in the cache directory, so its filesystem's
        # free space is what limits them.
        sv = os.statvfs(self.cache.root)
        s = pyfuse3.StatvfsData()
        s.f_bsize = BLKSIZE
        s.f_frsize = sv.f_frsize
        s.f_blocks = sv.f_blocks
        s.f_bfree = sv.f_bfree
        s.f_bavail = sv.f_bavail
        s.f_files = max(sv.f_files, 1 << 24)
        s.f_ffree = max(sv.f_ffree, (1 << 24) - len(self.table))
        s.f_favail = s.f_ffree
        s.f_namemax = 255
        return s

    # ---- extended attributes

    @_handler
    async def getxattr(self, inode: int, name: bytes, ctx: Any) -> bytes:
        if xattrs.is_system(name):
            raise OSError(xattrs.ENODATA, "no such attribute")
        node = self.node(inode)
        if name == xattrs.SESSION:
            return self.session_label.encode()
        if name == xattrs.STATE:
            return b"dirty" if node.dirty else b"clean"
        if name == xattrs.HASH:
            if not node.hash or not node.remote:
                raise OSError(xattrs.ENODATA, "no hash yet")
            return node.hash.encode()
        if name == xattrs.EXTENTS:
            if node.kind != FILE or not node.remote:
                raise OSError(xattrs.ENODATA, "not a file in the session")
            await self.journal.settle(self.path(node))
            return xattrs.extents_json(await self.bridge.stat(self.path(node)))
        value = node.xattrs.get(name)
        if value is None:
            raise OSError(xattrs.ENODATA, "no such attribute")
        return value

    @_handler
    async def listxattr(self, inode: int, ctx: Any) -> list[bytes]:
        node = self.node(inode)
        return xattrs.names(node.kind, bool(node.hash and node.remote), node.xattrs)

    @_handler
    async def setxattr(self, inode: int, name: bytes, value: bytes, ctx: Any) -> None:
        self._writable()
        node = self.node(inode)
        xattrs.check_set(name, value, node.xattrs)
        if node.kind == SYMLINK:
            raise OSError(errno.EPERM, "no user attributes on symlinks")
        node.xattrs[name] = bytes(value)
        node.ctime_ns = now_ns()
        self.journal.attributes(node, ATTR_XATTRS)

    @_handler
    async def removexattr(self, inode: int, name: bytes, ctx: Any) -> None:
        self._writable()
        node = self.node(inode)
        if name.startswith(xattrs.AETHER):
            raise OSError(errno.EPERM, "user.aether.* attributes are read-only")
        if node.xattrs.pop(name, None) is None:
            raise OSError(xattrs.ENODATA, "no such attribute")
        node.ctime_ns = now_ns()
        self.journal.attributes(node, ATTR_XATTRS)
