"""A minimal pyfuse3 passthrough filesystem: the floor under `aether mount`.

bench/mount.py runs its workloads on a native directory, on an `aether mount`,
and on this: a FUSE filesystem in Python that does nothing but forward each
request to a backing native directory. What it costs over native is the price
of FUSE plus pyfuse3's per-request Python dispatch, which no daemon or mount
design can remove: the mount's time minus this one is what its design adds.

For fairness it mounts as the real mount does (aether/mount/runner.py, ops.py):
default_permissions, nosuid, nodev, allow_other where permitted, no write-back
cache, entries, attributes and negative lookups cached for 10 s, getxattr
answered ENODATA at once. A benchmark tool, not a filesystem to use: no hard
links, special files or extended attributes, one path per inode, and new files
belong to the user running it.

    python bench/passthrough.py BACKING MOUNTPOINT

runs in the foreground until SIGTERM/SIGINT or `fusermount3 -u MOUNTPOINT`.
"""

from __future__ import annotations

import argparse
import errno
import functools
import os
import signal
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pyfuse3
import trio

TIMEOUT = 10.0  # entry and attribute timeouts, as aether.mount.ops
ROOT = pyfuse3.ROOT_INODE
Ctx = pyfuse3.RequestContext
Attrs = pyfuse3.EntryAttributes
STAT_FIELDS = ("st_mode", "st_nlink", "st_uid", "st_gid", "st_rdev", "st_size", "st_blksize",
               "st_blocks", "st_atime_ns", "st_mtime_ns", "st_ctime_ns")


def _errors(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """An OSError from the backing directory becomes the FUSE answer's errno."""
    @functools.wraps(fn)
    async def wrapper(*args: Any) -> Any:
        try:
            return await fn(*args)
        except OSError as exc:
            raise pyfuse3.FUSEError(exc.errno or errno.EIO) from None
    return wrapper


class Passthrough(pyfuse3.Operations):
    enable_writeback_cache = False  # as the real mount
    supports_dot_lookup = True
    enable_acl = False

    def __init__(self, backing: str) -> None:
        super().__init__()
        root = os.fsencode(os.path.abspath(backing))
        self.root_ino = os.lstat(root).st_ino
        # A FUSE inode is the backing file's st_ino (the backing root's is ROOT).
        self.paths: dict[int, bytes] = {ROOT: root}
        self.lookups: dict[int, int] = {ROOT: 1}
        self.dirs: dict[int, tuple[int, list[bytes]]] = {}  # handle: (inode, names listed)
        self.next_dh = 1

    def _path(self, ino: int, name: bytes | None = None) -> bytes:
        if (base := self.paths.get(ino)) is None:
            raise OSError(errno.ENOENT, "forgotten inode")
        return base if name is None else base + b"/" + name

    def _attrs(self, st: os.stat_result) -> Attrs:
        a = Attrs()
        for f in STAT_FIELDS:
            setattr(a, f, getattr(st, f))
        a.st_ino = ROOT if st.st_ino == self.root_ino else st.st_ino
        a.entry_timeout = a.attr_timeout = TIMEOUT
        return a

    def _entry(self, path: bytes, st: os.stat_result | None = None) -> Attrs:
        """Attributes of path, counted as one kernel lookup of its inode."""
        a = self._attrs(os.lstat(path) if st is None else st)
        self.paths[a.st_ino] = path
        self.lookups[a.st_ino] = self.lookups.get(a.st_ino, 0) + 1
        return a

    # ---- names and attributes
    async def lookup(self, parent_inode: int, name: bytes, ctx: Ctx) -> Attrs:
        path = self._path(parent_inode)
        if name == b".." and parent_inode != ROOT:
            path = os.path.dirname(path)
        elif name not in (b".", b".."):
            path += b"/" + name
        try:
            return self._entry(path)
        except FileNotFoundError:
            neg = Attrs()  # a negative entry, cached by the kernel like the real mount's
            neg.entry_timeout = TIMEOUT
            return neg

    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        for ino, n in inode_list:
            if (left := self.lookups.get(ino, 0) - n) > 0 or ino == ROOT:
                self.lookups[ino] = max(left, 1)
            else:
                self.lookups.pop(ino, None)
                self.paths.pop(ino, None)

    async def getattr(self, inode: int, ctx: Ctx) -> Attrs:
        return self._attrs(os.lstat(self._path(inode)))

    async def setattr(self, inode: int, attr: Attrs, fields: pyfuse3.SetattrFields,
                      fh: int | None, ctx: Ctx) -> Attrs:
        path = self._path(inode)
        if fields.update_size:
            os.truncate(path if fh is None else fh, attr.st_size)
        if fields.update_mode:
            os.chmod(path, attr.st_mode & 0o7777)
        if fields.update_atime or fields.update_mtime:
            st = os.lstat(path)
            os.utime(path, ns=(attr.st_atime_ns if fields.update_atime else st.st_atime_ns,
                               attr.st_mtime_ns if fields.update_mtime else st.st_mtime_ns),
                     follow_symlinks=False)
        return self._attrs(os.lstat(path))

    async def readlink(self, inode: int, ctx: Ctx) -> bytes:
        return os.readlink(self._path(inode))

    # ---- directories
    async def opendir(self, inode: int, ctx: Ctx) -> int:
        self._path(inode)
        dh, self.next_dh = self.next_dh, self.next_dh + 1
        self.dirs[dh] = (inode, [])
        return dh

    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        inode, names = self.dirs[fh]
        dir_path = self._path(inode)
        if start_id == 0:  # (re)list; offset i is "after names[i - 1]" of this handle's list
            names[:] = sorted(os.listdir(dir_path))
        for i in range(start_id, len(names)):
            path = dir_path + b"/" + names[i]
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue  # removed since the listing
            if not pyfuse3.readdir_reply(token, names[i], self._attrs(st), i + 1):
                break
            self._entry(path, st)  # readdirplus: an accepted entry counts as a lookup

    async def releasedir(self, fh: int) -> None:
        self.dirs.pop(fh, None)

    async def mkdir(self, parent_inode: int, name: bytes, mode: int, ctx: Ctx) -> Attrs:
        os.mkdir(path := self._path(parent_inode, name), mode)
        return self._entry(path)

    async def rmdir(self, parent_inode: int, name: bytes, ctx: Ctx) -> None:
        os.rmdir(self._path(parent_inode, name))

    async def unlink(self, parent_inode: int, name: bytes, ctx: Ctx) -> None:
        os.unlink(self._path(parent_inode, name))

    async def rename(self, parent_inode_old: int, name_old: bytes, parent_inode_new: int,
                     name_new: bytes, flags: int, ctx: Ctx) -> None:
        if flags:
            raise OSError(errno.EINVAL, "no RENAME_NOREPLACE or RENAME_EXCHANGE")
        old, new = self._path(parent_inode_old, name_old), self._path(parent_inode_new, name_new)
        os.rename(old, new)
        for ino, p in self.paths.items():  # the moved entry and, for a directory, all below
            if p == old or p.startswith(old + b"/"):
                self.paths[ino] = new + p[len(old):]

    async def symlink(self, parent_inode: int, name: bytes, target: bytes, ctx: Ctx) -> Attrs:
        os.symlink(target, path := self._path(parent_inode, name))
        return self._entry(path)

    # ---- files: a file handle is the backing file's descriptor; keep_cache, as
    # the backing directory changes only through this mount
    async def open(self, inode: int, flags: int, ctx: Ctx) -> pyfuse3.FileInfo:
        return pyfuse3.FileInfo(fh=os.open(self._path(inode), flags & ~os.O_CREAT),
                                keep_cache=True)

    async def create(self, parent_inode: int, name: bytes, mode: int, flags: int,
                     ctx: Ctx) -> tuple[pyfuse3.FileInfo, Attrs]:
        fd = os.open(path := self._path(parent_inode, name), flags | os.O_CREAT, mode)
        try:
            return pyfuse3.FileInfo(fh=fd, keep_cache=True), self._entry(path)
        except BaseException:
            os.close(fd)
            raise

    async def read(self, fh: int, off: int, size: int) -> bytes:
        return os.pread(fh, size, off)

    async def write(self, fh: int, off: int, buf: bytes) -> int:
        return os.pwrite(fh, buf, off)

    async def flush(self, fh: int) -> None:
        return None  # nothing is buffered here

    async def fsync(self, fh: int, datasync: bool) -> None:
        (os.fdatasync if datasync else os.fsync)(fh)

    async def release(self, fh: int) -> None:
        os.close(fh)

    # ---- filesystem and extended attributes
    async def statfs(self, ctx: Ctx) -> pyfuse3.StatvfsData:
        sv, s = os.statvfs(self.paths[ROOT]), pyfuse3.StatvfsData()
        for f in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files",
                  "f_ffree", "f_favail", "f_namemax"):
            setattr(s, f, getattr(sv, f))
        return s

    async def getxattr(self, inode: int, name: bytes, ctx: Ctx) -> bytes:
        raise pyfuse3.FUSEError(errno.ENODATA)  # security.capability, asked on every write


# Every handler: an OSError becomes pyfuse3.FUSEError(errno).
for _name, _fn in list(vars(Passthrough).items()):
    if not _name.startswith("_") and callable(_fn):
        setattr(Passthrough, _name, _errors(_fn))
del _name, _fn


def fuse_options(backing: str) -> set[str]:
    """aether.mount.runner.fuse_options, for the passthrough."""
    opts = set(pyfuse3.default_options) | {
        f"fsname=passthrough:{os.path.abspath(backing)}", "subtype=passthrough",
        "default_permissions", "nosuid", "nodev"}
    try:
        with open("/etc/fuse.conf") as f:
            user_allow_other = any(line.strip() == "user_allow_other" for line in f)
    except OSError:
        user_allow_other = False
    if os.getuid() == 0 or user_allow_other:
        opts.add("allow_other")
    return opts


async def _serve() -> None:
    async def on_signal() -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                pyfuse3.terminate()  # main() returns, as after fusermount3 -u
                return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(on_signal)
        await pyfuse3.main()
        nursery.cancel_scope.cancel()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("backing", help="the native directory every request is forwarded to")
    ap.add_argument("mountpoint")
    args = ap.parse_args()
    os.umask(0)  # the kernel has applied the caller's umask to create and mkdir modes
    pyfuse3.init(Passthrough(args.backing), args.mountpoint, fuse_options(args.backing))
    try:
        trio.run(_serve)
    finally:
        pyfuse3.close(unmount=True)


if __name__ == "__main__":
    main()
