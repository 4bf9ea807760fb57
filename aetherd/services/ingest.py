"""Turning outside content (host directories, archives, git) into trees.

Everything funnels through `TreeBuilder`, which validates every path with the
same rules as the API and stores content as it goes. Nothing becomes visible
until the caller commits a session row (or overlay row) pointing at the
finished root, so a rejected archive leaves no trace but unreferenced chunks
for gc.

Untrusted archives (uploads) are refused whole when a member would land
outside its destination: absolute names, `..`, absolute symlink targets,
relative targets that climb out of the tree (also through other symlinks), and
symlink loops or chains longer than `max_symlink_hops`. Host directories and
git repositories are the daemon host's own data, so their symlinks are kept as
they are (the daemon never follows a symlink itself).

Every source is metered by an `ImportBudget` while it is read: entries,
content bytes and, for archives, bytes after decompression. A source that
goes over is refused the moment it does, not after it has been expanded.
"""

from __future__ import annotations

import dataclasses
import errno
import gzip
import io
import math
import os
import posixpath
import stat
import subprocess
import tarfile
import tempfile
import time
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from aether import pb
from aether.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    ResourceExhausted,
)
from aetherd import paths
from aetherd.config import Limits, limits
from aetherd.services import xattr_names
from aetherd.store.objects import (
    CHUNK_SIZE,
    DIR,
    FILE,
    SYMLINK,
    Entry,
    ObjectBatch,
    file_entry,
    symlink_entry,
)

_Node = dict  # name -> Entry | _Node

# A tar member's extension headers (pax, GNU long names, sparse maps) are read
# whole into memory by tarfile, and each one nests a call. Real ones hold a few
# names and numbers: these bounds are far above them and far below harm.
MAX_TAR_HEADER_BYTES = 1 << 20
MAX_TAR_HEADER_CHAIN = 32
_TAR_EXTENSIONS = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.GNUTYPE_SPARSE,
                   tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)
_MTIME_RANGE = (-(1 << 63), (1 << 63) - 1)  # what a tree can store


class ImportBudget:
    """What one import may still create; refuses the moment it is spent."""

    def __init__(self, lim: Limits) -> None:
        self.lim = lim
        self.packed = 0
        self.entries = 0
        self.bytes = 0  # content of the files created
        self.unpacked = 0  # archive bytes after decompression
        self.cap, self.setting = lim.max_import_bytes, "max_import_bytes"

    def packed_size(self, size: int) -> None:
        """Bound the expansion of an archive of `size` bytes by the ratio guard too."""
        if size > self.lim.max_body_bytes:
            raise PayloadTooLarge(
                f"archive of {size} bytes is over the limit of {self.lim.max_body_bytes}",
                limit=self.lim.max_body_bytes, setting="max_body_bytes")
        self.packed = size
        by_ratio = max(self.lim.archive_ratio_floor_bytes, self.lim.max_archive_ratio * size)
        if by_ratio < self.cap:
            self.cap, self.setting = by_ratio, "max_archive_ratio"

    def entry(self) -> None:
        self.entries += 1
        if self.entries > self.lim.max_import_entries:
            raise ResourceExhausted(
                f"import has more than {self.lim.max_import_entries} entries",
                limit=self.lim.max_import_entries, setting="max_import_entries")

    def expect(self, size: int) -> None:
        """Refuse up front when `size` more content bytes cannot fit."""
        if self.bytes + size > self.cap:
            raise self._too_big(self.bytes + size)

    def content(self, n: int) -> None:
        self.bytes += n
        if self.bytes > self.cap:
            raise self._too_big(self.bytes)

    def unpacked_room(self) -> int:
        return self.cap - self.unpacked

    def unpack(self, n: int) -> None:
        self.unpacked += n
        if self.unpacked > self.cap:
            raise self._too_big(self.unpacked)

    def _too_big(self, size: int) -> ResourceExhausted:
        if self.setting == "max_archive_ratio":
            why = (f"an archive of {self.packed} bytes may expand to {self.cap} bytes: "
                   f"{self.lim.max_archive_ratio} times its size, or "
                   f"archive_ratio_floor_bytes if more")
        else:
            why = f"the limit is {self.cap} bytes"
        return ResourceExhausted(f"import expands to more than its limit ({why})", size=size,
                                 limit=self.cap, setting=self.setting)


class TreeBuilder:
    def __init__(self, batch: ObjectBatch, *, trusted: bool, base: str = "") -> None:
        """`base`: the session path the tree will be placed at, so that path
        limits hold for where members end up, not only inside the archive."""
        self.batch = batch
        self.trusted = trusted
        self.base = base
        self.lim = limits()
        self.budget = ImportBudget(self.lim)
        self.root: _Node = {}
        self.dir_attrs: dict[str, tuple[int, int, Xattrs]] = {}
        self.links: list[str] = []
        self.files = 0
        self.dirs = 0
        self.bytes = 0

    def _clean(self, name: str) -> str:
        try:
            p = paths.normalize(name)
            if self.base and p:
                paths.normalize(paths.join(self.base, p))
        except InvalidArgument as e:
            raise InvalidArgument(f"refusing archive member {name!r}: {e.message}",
                                  **e.details) from None
        if name.startswith("/") and not self.trusted:
            raise InvalidArgument(f"refusing archive member with an absolute path: {name!r}")
        return p

    def _dir_node(self, path: str, *, named: bool = False) -> _Node:
        """The directory node at `path`, made as needed. `named`: a member names
        `path` itself, so only its ancestors are implied (and counted) here."""
        node = self.root
        if not path:
            return node
        parts = path.split("/")
        for i, part in enumerate(parts):
            child = node.get(part)
            if child is None:
                if not (named and i == len(parts) - 1):
                    self.budget.entry()
                child = node[part] = {}
                self.dirs += 1
            elif not isinstance(child, dict):
                raise InvalidArgument(f"archive puts {path!r} below a file")
            node = child
        return node

    def add_dir(self, name: str, mode: int = 0o755, mtime_ns: int = 0,
                xattrs: Xattrs = ()) -> None:
        p = self._clean(name)
        if p:
            self._dir_node(p, named=True)
            self.dir_attrs[p] = (mode & 0o7777, _mtime(mtime_ns), xattrs)

    def _leaf(self, p: str, what: str) -> tuple[_Node, str]:
        if not p:
            raise InvalidArgument(f"archive member names the root as a {what}")
        parent = self._dir_node(paths.parent_of(p))
        leaf = paths.name_of(p)
        if isinstance(parent.get(leaf), dict):
            raise InvalidArgument(f"archive has both a directory and a {what} at {p!r}")
        return parent, leaf

    def add_file(self, name: str, data: bytes | Iterable[bytes], mode: int = 0o644,
                 mtime_ns: int = 0, size: int | None = None, xattrs: Xattrs = ()) -> None:
        """`size`, when known before reading, refuses an over-large member unread."""
        p = self._clean(name)
        parent, leaf = self._leaf(p, "file")
        if size is not None:
            self._check_file_size(p, size)
            self.budget.expect(size)
        rec = self.batch.add_content(self._metered(p, data))
        entry = file_entry(rec.hash, rec.size, mode & 0o7777, _mtime(mtime_ns))
        self._put(parent, leaf, dataclasses.replace(entry, xattrs=xattrs) if xattrs else entry)

    def add_hardlink(self, name: str, target: str, mtime_ns: int = 0) -> None:
        """A second name for a file added earlier: its entry again, no re-read."""
        p = self._clean(name)
        try:
            t = "" if target.startswith("/") else paths.normalize(target)
        except InvalidArgument:
            t = ""
        node: _Node | Entry | None = self.root if t else None
        for part in t.split("/") if t else ():
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, Entry) or node.kind != FILE:
            raise InvalidArgument(f"hard link {name!r} points outside the archive")
        parent, leaf = self._leaf(p, "file")
        self.budget.content(node.size)
        self._put(parent, leaf, file_entry(node.hash, node.size, node.mode, _mtime(mtime_ns)))

    def add_symlink(self, name: str, target: str, mtime_ns: int = 0) -> None:
        p = self._clean(name)
        if not target or "\x00" in target:
            raise InvalidArgument(f"bad symlink target for {p!r}")
        try:
            size = len(target.encode("utf-8"))
        except UnicodeEncodeError:
            raise InvalidArgument(f"symlink target of {p!r} is not valid UTF-8") from None
        if size > self.lim.max_path_bytes:
            raise InvalidArgument(
                f"symlink target of {p!r} too long: {size} bytes, the limit is "
                f"{self.lim.max_path_bytes}", limit=self.lim.max_path_bytes,
                setting="max_path_bytes")
        if not self.trusted:
            if target.startswith("/"):
                raise InvalidArgument(f"refusing absolute symlink {p!r} -> {target!r}")
            resolved = posixpath.normpath(posixpath.join(paths.parent_of(p), target))
            if resolved == ".." or resolved.startswith("../"):
                raise InvalidArgument(f"refusing symlink that leaves the tree: {p!r} -> {target!r}")
        parent, leaf = self._leaf(p, "symlink")
        self._put(parent, leaf, symlink_entry(target, _mtime(mtime_ns)))
        self.links.append(p)

    def _put(self, parent: _Node, leaf: str, entry: Entry) -> None:
        old = parent.get(leaf)
        if old is None:
            self.files += 1
        elif old.kind == FILE:
            self.bytes -= old.size
        if entry.kind == FILE:
            self.bytes += entry.size
        parent[leaf] = entry

    def _check_file_size(self, p: str, size: int) -> None:
        if size > self.lim.max_file_bytes:
            raise ResourceExhausted(
                f"{p!r} is larger than {self.lim.max_file_bytes} bytes", path=p, size=size,
                limit=self.lim.max_file_bytes, setting="max_file_bytes")

    def _metered(self, p: str, data: bytes | Iterable[bytes]) -> Iterator[bytes]:
        pieces: Iterable[bytes] = (data,) if isinstance(data, (bytes, bytearray)) else data
        size = 0
        for piece in pieces:
            size += len(piece)
            self._check_file_size(p, size)
            self.budget.content(len(piece))
            yield piece

    def finish(self) -> Entry:
        if not self.trusted:
            check_symlinks(self.root, self.links, self.lim.max_symlink_hops)
        now = time.time_ns()

        def build(node: _Node, path: str) -> Entry:
            entries = {}
            for name, child in node.items():
                if isinstance(child, dict):
                    sub = paths.join(path, name)
                    entries[name] = build(child, sub)
                else:
                    entries[name] = child
            e = self.batch.add_tree(entries)
            mode, mtime, xattrs = self.dir_attrs.get(path, (0o755, now, ()))
            return Entry(DIR, mode, e.size, e.hash, "", mtime or now, e.files, xattrs)

        return build(self.root, "")

    def summary(self) -> pb.ImportResponse:
        return pb.ImportResponse(files=self.files, directories=self.dirs, bytes=self.bytes)


Xattrs = tuple[tuple[str, bytes], ...]
# How tar (GNU and bsdtar, --xattrs) carries extended attributes: a pax record
# per attribute, the value as raw bytes (hdrcharset=BINARY when not UTF-8).
TAR_XATTR = "SCHILY.xattr."


def tar_xattrs(path: str, pax: dict[str, str]) -> Xattrs:
    """A member's user.* extended attributes. Other namespaces (security.selinux,
    system.posix_acl_*) and the mount's computed user.aether.* are left out, as
    tar leaves them out unless asked; a user.* attribute the session cannot
    store refuses the archive (xattr_names)."""
    got = {}
    for key, value in pax.items():
        if key.startswith(TAR_XATTR + xattr_names.PREFIX) and \
                not key.startswith(TAR_XATTR + xattr_names.RESERVED):
            got[key[len(TAR_XATTR):]] = value.encode("utf-8", "surrogateescape")
    if not got:
        return ()
    xattr_names.check_change(path, got, ())
    out = tuple(sorted(got.items()))
    xattr_names.check_total(path, out)
    return out


def _mtime(ns: int | float) -> int:
    """A time a tree can hold: out-of-range and non-finite archive times become 0 ("now")."""
    if isinstance(ns, float) and not math.isfinite(ns):
        return 0
    ns = int(ns)
    return ns if _MTIME_RANGE[0] <= ns <= _MTIME_RANGE[1] else 0


# ---- symlinks inside an untrusted tree
def check_symlinks(root: _Node, links: list[str], max_hops: int) -> None:
    """Resolve every symlink of the tree as the kernel would, inside the tree.

    Refuses a loop, a resolution that follows more than `max_hops` links in
    all (the kernel's ELOOP), and a link that leaves the tree through other
    links (`d -> x/y/..` with `x/y -> ..`), which the lexical check in
    add_symlink cannot see. Dangling links are fine. Each link is resolved
    once (memoised with the number of links it takes), so this is linear in
    the total length of the targets, and the recursion is at most `max_hops`
    deep.
    """
    resolved: dict[str, tuple[tuple[str, ...] | None, int]] = {}
    active: set[str] = set()

    def node_at(comps: tuple[str, ...]) -> _Node | Entry | None:
        node: _Node | Entry | None = root
        for c in comps:
            node = node.get(c) if isinstance(node, dict) else None
        return node

    def too_long(link: str) -> InvalidArgument:
        return InvalidArgument(
            f"resolving symlink {link!r} follows more than {max_hops} symlinks",
            path=link, limit=max_hops, setting="max_symlink_hops")

    def follow(link: str, depth: int) -> tuple[tuple[str, ...] | None, int]:
        """(where the link leads, None if it dangles; links followed to get there)."""
        if link in resolved:
            return resolved[link]
        if link in active:
            raise InvalidArgument(f"symlink loop through {link!r}", path=link)
        if depth > max_hops:
            raise too_long(link)
        active.add(link)
        comps = tuple(link.split("/"))
        entry = node_at(comps)
        assert isinstance(entry, Entry)
        where, inner = walk(link, comps[:-1], entry.target, depth)
        if 1 + inner > max_hops:
            raise too_long(link)
        active.discard(link)
        resolved[link] = (where, 1 + inner)
        return resolved[link]

    def walk(link: str, start: tuple[str, ...], target: str,
             depth: int) -> tuple[tuple[str, ...] | None, int]:
        pos = list(start)
        node = node_at(start)
        followed = 0
        for part in target.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                if not pos:
                    raise InvalidArgument(
                        f"refusing symlink that leaves the tree through other symlinks: "
                        f"{link!r}", path=link)
                pos.pop()
                node = node_at(tuple(pos))
                continue
            child = node.get(part) if isinstance(node, dict) else None
            if child is None:
                return None, followed  # dangling (or through a file): nothing to follow
            pos.append(part)
            if isinstance(child, Entry) and child.kind == SYMLINK:
                there, n = follow("/".join(pos), depth + 1)
                followed += n
                if there is None:
                    return None, followed
                pos = list(there)
                child = node_at(there)
            node = child
        return tuple(pos), followed

    for link in links:
        # A later member may have replaced the link: only links still there count.
        e = node_at(tuple(link.split("/")))
        if isinstance(e, Entry) and e.kind == SYMLINK:
            follow(link, 1)


# ---- host directories
def ingest_directory(builder: TreeBuilder, root: Path) -> None:
    if not root.is_dir():
        raise NotFound(f"no such directory on the daemon host: {str(root)!r}")
    budget = builder.budget

    def rec(dir_path: str, rel: str) -> None:
        subdirs = []
        try:
            with os.scandir(dir_path) as it:
                for d in it:
                    budget.entry()
                    sub = paths.join(rel, d.name)
                    st = d.stat(follow_symlinks=False)
                    if stat.S_ISLNK(st.st_mode):
                        builder.add_symlink(sub, os.readlink(d.path), st.st_mtime_ns)
                    elif stat.S_ISDIR(st.st_mode):
                        # Checked (depth, names) before descending, so a deep
                        # tree is refused rather than recursed into.
                        builder.add_dir(sub, st.st_mode, st.st_mtime_ns,
                                        host_xattrs(d.path, sub))
                        subdirs.append((d.path, sub))
                    elif stat.S_ISREG(st.st_mode):
                        with open(d.path, "rb") as fh:
                            builder.add_file(sub, _pieces(fh), st.st_mode, st.st_mtime_ns,
                                             size=st.st_size,
                                             xattrs=host_xattrs(fh.fileno(), sub))
                    # sockets, fifos and devices have no place in a workspace: skipped.
        except PermissionError as e:
            raise PermissionDenied(f"cannot read {e.filename!r}: {e.strerror}") from None
        except OSError as e:
            raise FailedPrecondition(f"cannot read {e.filename!r}: {e.strerror}") from None
        for path, sub in subdirs:
            rec(path, sub)

    rec(str(root), "")


def host_xattrs(where: str | int, path: str) -> Xattrs:
    """The user.* extended attributes of a host file or directory (a path or
    an open fd), as tar_xattrs takes them from an archive. A filesystem
    without xattrs has none."""
    try:
        names = [n for n in os.listxattr(where) if n.startswith(xattr_names.PREFIX)
                 and not n.startswith(xattr_names.RESERVED)]
        if not names:
            return ()
        got = {n: os.getxattr(where, n) for n in names}
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.ENODATA):
            return ()
        raise
    xattr_names.check_change(path, got, ())
    out = tuple(sorted(got.items()))
    xattr_names.check_total(path, out)
    return out


def _pieces(fh: IO[bytes]) -> Iterator[bytes]:
    while piece := fh.read(CHUNK_SIZE):
        yield piece


# ---- archives
def detect_format(data: bytes | IO[bytes], declared: int = 0) -> int:
    if declared:
        return declared
    head = data[:512] if isinstance(data, bytes) else data.read(512)
    if not isinstance(data, bytes):
        data.seek(0)
    if head[:2] == b"\x1f\x8b":
        return pb.ArchiveFormat.TAR_GZ
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return pb.ArchiveFormat.ZIP
    if len(head) >= 262 and head[257:262] == b"ustar":
        return pb.ArchiveFormat.TAR
    if not head:
        raise InvalidArgument("empty archive")
    raise InvalidArgument("unrecognised archive: expected tar, tar.gz or zip")


def ingest_archive(builder: TreeBuilder, fileobj: IO[bytes], fmt: int) -> None:
    size = fileobj.seek(0, io.SEEK_END)
    fileobj.seek(0)
    builder.budget.packed_size(size)
    fmt = detect_format(fileobj, fmt)
    if fmt == pb.ArchiveFormat.ZIP:
        _ingest_zip(builder, fileobj)
    else:
        _ingest_tar(builder, fileobj, gz=fmt == pb.ArchiveFormat.TAR_GZ)


class _Unpacked(io.RawIOBase):
    """The decompressed byte stream of an archive, metered as it is read.

    A read never asks the decompressor for more than the budget has room
    for, so a bomb stops at the cap instead of being inflated first.
    """

    def __init__(self, raw: IO[bytes], budget: ImportBudget) -> None:
        self.raw = raw
        self.budget = budget

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        room = self.budget.unpacked_room() + 1
        data = self.raw.read(room if n is None or n < 0 or n > room else n)
        self.budget.unpack(len(data))
        return data

    def readinto(self, b) -> int:  # type: ignore[override]
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)


class _HeaderBytes:
    """tarfile's reader while it parses one member's extension headers."""

    def __init__(self, raw) -> None:
        self.raw = raw
        # The extension headers' content, plus the 512-byte blocks that announce them.
        self.left = MAX_TAR_HEADER_BYTES + (MAX_TAR_HEADER_CHAIN + 1) * tarfile.BLOCKSIZE
        self.chain = 0

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0 or n > self.left:
            raise ResourceExhausted(
                f"tar extension headers of one member over {MAX_TAR_HEADER_BYTES} bytes",
                limit=MAX_TAR_HEADER_BYTES)
        data = self.raw.read(n)
        self.left -= len(data)
        return data

    def __getattr__(self, name: str):
        return getattr(self.raw, name)


class _BoundedTarInfo(tarfile.TarInfo):
    """TarInfo whose extension headers are bounded in size and nesting.

    tarfile reads a pax or GNU long-name header whole, and one header nests
    the parsing of the next: unbounded, a small tar.gz could claim gigabytes of
    memory or exhaust the stack. `_proc_member` is the hook tarfile's source
    names for subclasses (TarFile takes the class as `tarinfo=`).
    """

    def _proc_member(self, tarfile_):  # type: ignore[no-untyped-def]
        if self.type not in _TAR_EXTENSIONS:
            return super()._proc_member(tarfile_)
        # A sparse member's size is its data; its header blocks are bounded below.
        if self.type != tarfile.GNUTYPE_SPARSE and self.size > MAX_TAR_HEADER_BYTES:
            raise ResourceExhausted(
                f"tar extension header of {self.size} bytes is over {MAX_TAR_HEADER_BYTES}",
                limit=MAX_TAR_HEADER_BYTES)
        outer = tarfile_.fileobj
        guard = outer if isinstance(outer, _HeaderBytes) else _HeaderBytes(outer)
        guard.chain += 1
        if guard.chain > MAX_TAR_HEADER_CHAIN:
            raise InvalidArgument(f"tar member with more than {MAX_TAR_HEADER_CHAIN} "
                                  "extension headers")
        tarfile_.fileobj = guard
        try:
            return super()._proc_member(tarfile_)
        finally:
            tarfile_.fileobj = outer


def _ingest_tar(builder: TreeBuilder, raw: IO[bytes], *, gz: bool) -> None:
    budget = builder.budget
    source: IO[bytes] = gzip.GzipFile(fileobj=raw, mode="rb") if gz else raw
    stream = _Unpacked(source, budget)
    try:
        # Stream mode: one forward pass, every byte through the meter.
        with tarfile.open(fileobj=stream, mode="r|", tarinfo=_BoundedTarInfo) as tar:
            while (m := tar.next()) is not None:
                # The index of members read so far is only needed for seeking
                # back, which stream mode cannot do: it would be memory per member.
                tar.members.clear()
                budget.entry()
                name = m.name
                if name in (".", "./") or name.startswith("pax_global_header"):
                    continue
                name = name[2:] if name.startswith("./") else name
                mtime = m.mtime * 1_000_000_000
                if m.isdir():
                    builder.add_dir(name, m.mode, mtime, tar_xattrs(name, m.pax_headers))
                elif m.isreg():
                    fh = tar.extractfile(m)
                    builder.add_file(name, _pieces(fh) if fh else b"", m.mode, mtime,
                                     size=m.size, xattrs=tar_xattrs(name, m.pax_headers))
                elif m.issym():
                    builder.add_symlink(name, m.linkname, mtime)
                elif m.islnk():
                    # A hard link inside the archive: a copy of its target.
                    target = m.linkname[2:] if m.linkname.startswith("./") else m.linkname
                    builder.add_hardlink(name, target, mtime)
                # devices and fifos are skipped
    except tarfile.TarError as e:
        raise InvalidArgument(f"bad tar archive: {e}") from None
    except (EOFError, OSError, zlib.error) as e:
        raise InvalidArgument(f"truncated or corrupt archive: {e}") from None


def _zip_entries_at_most(fileobj: IO[bytes]) -> int:
    """An upper bound on the entries ZipFile would parse, without parsing.

    ZipFile builds an object per central-directory record before anything
    can be checked, and each record starts with this signature, so counting
    signatures bounds the count (content that happens to hold it only raises
    the bound).
    """
    sig = b"PK\x01\x02"
    count, tail = 0, b""
    fileobj.seek(0)
    while block := fileobj.read(CHUNK_SIZE):
        data = tail + block
        count += data.count(sig)
        tail = data[-(len(sig) - 1):]
    fileobj.seek(0)
    return count


def _zip_mtime(info: zipfile.ZipInfo) -> float:
    try:
        return time.mktime((*info.date_time, 0, 0, -1)) * 1_000_000_000
    except (OverflowError, ValueError):
        return 0


def _ingest_zip(builder: TreeBuilder, fileobj: IO[bytes]) -> None:
    budget, lim = builder.budget, builder.lim
    if _zip_entries_at_most(fileobj) > lim.max_import_entries:
        raise ResourceExhausted(f"zip has more than {lim.max_import_entries} entries",
                                limit=lim.max_import_entries, setting="max_import_entries")
    try:
        with zipfile.ZipFile(fileobj) as zf:
            infos = zf.infolist()
            # Sizes from the central directory are what ZipFile will inflate
            # each member to at most, so a bomb is refused before any inflating.
            budget.expect(sum(i.file_size for i in infos if not i.is_dir()))
            for info in infos:
                budget.entry()
                mode = info.external_attr >> 16
                mtime = _zip_mtime(info)
                if info.is_dir():
                    builder.add_dir(info.filename, mode or 0o755, mtime)
                elif stat.S_ISLNK(mode):
                    with zf.open(info) as fh:
                        raw = fh.read(lim.max_path_bytes + 1)
                    builder.add_symlink(info.filename, raw.decode("utf-8"), mtime)
                else:
                    with zf.open(info) as fh:
                        builder.add_file(info.filename, _pieces(fh), (mode & 0o7777) or 0o644,
                                         mtime, size=info.file_size)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error) as e:
        raise InvalidArgument(f"bad zip archive: {e}") from None
    except UnicodeDecodeError:
        raise InvalidArgument("zip symlink target is not UTF-8") from None
    except (NotImplementedError, RuntimeError) as e:
        # zipfile's words for an unsupported compression method and for encryption.
        raise InvalidArgument(f"unsupported zip member: {e}") from None


# ---- git
def ingest_git(builder: TreeBuilder, url: str, ref: str) -> str:
    """Import `ref` of a git repository; returns the resolved commit sha."""
    ref = ref or "HEAD"
    if ref.startswith("-"):
        raise InvalidArgument(f"bad git ref {ref!r}")
    with tempfile.TemporaryDirectory(prefix="aether-git-") as tmp:
        repo = url
        if not is_dir(url):
            if url.startswith("-"):
                raise InvalidArgument(f"bad git url {url!r}")
            repo = str(Path(tmp) / "repo.git")
            _git(["clone", "--quiet", "--bare", "--", url, repo], url)
        sha = _git(["-C", repo, "rev-parse", "--verify", "--end-of-options", f"{ref}^{{commit}}"],
                   url).decode().strip()
        with tempfile.TemporaryFile() as err:
            # Streamed, so an over-large tree stops git instead of filling a temp file.
            proc = subprocess.Popen(["git", "-C", repo, "archive", "--format=tar", sha],
                                    stdout=subprocess.PIPE, stderr=err)
            assert proc.stdout is not None
            try:
                _ingest_tar(builder, proc.stdout, gz=False)
                while proc.stdout.read(CHUNK_SIZE):  # the end-of-archive padding
                    pass
            except BaseException:
                proc.kill()  # refused midway: git need not write the rest
                if proc.wait() <= 0:  # killed by us, not failed by itself
                    raise
            finally:
                proc.stdout.close()
                proc.wait()
            if proc.returncode != 0:
                err.seek(0)
                raise FailedPrecondition(
                    f"git archive failed: {err.read(4096).decode(errors='replace')}")
    return sha


def is_dir(path: str) -> bool:
    try:
        return Path(path).is_dir()
    except (OSError, ValueError):  # too long for the OS, NUL: not a directory, a url maybe
        return False


def _git(args: list[str], url: str) -> bytes:
    proc = subprocess.run(["git", *args], capture_output=True,
                          env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        raise NotFound(f"git: {msg[-1] if msg else 'failed'} ({url})")
    return proc.stdout


def as_fileobj(data: bytes) -> IO[bytes]:
    return io.BytesIO(data)
