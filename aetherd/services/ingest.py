"""Turning outside content (host directories, archives, git) into trees.

Everything funnels through `TreeBuilder`, which validates every path with the
same rules as the API and stores content as it goes. Nothing becomes visible
until the caller commits a session row (or overlay row) pointing at the
finished root, so a rejected archive leaves no trace but unreferenced chunks
for gc.

Untrusted archives (uploads) are refused whole when a member would land
outside its destination: absolute names, `..`, absolute symlink targets, or
relative targets that climb out of the tree. Host directories and git
repositories are the daemon host's own data, so their symlinks are kept as
they are (the daemon never follows a symlink itself).
"""

from __future__ import annotations

import io
import os
import posixpath
import stat
import subprocess
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from aether import pb
from aether.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from aetherd import paths
from aetherd.store.objects import DIR, Entry, ObjectBatch, file_entry, symlink_entry

_Node = dict  # name -> Entry | _Node


class TreeBuilder:
    def __init__(self, batch: ObjectBatch, *, trusted: bool) -> None:
        self.batch = batch
        self.trusted = trusted
        self.root: _Node = {}
        self.dir_attrs: dict[str, tuple[int, int]] = {}
        self.files = 0
        self.dirs = 0
        self.bytes = 0

    def _clean(self, name: str) -> str:
        try:
            p = paths.normalize(name)
        except InvalidArgument as e:
            raise InvalidArgument(f"refusing archive member {name!r}: {e.message}") from None
        if name.startswith("/") and not self.trusted:
            raise InvalidArgument(f"refusing archive member with an absolute path: {name!r}")
        return p

    def _dir_node(self, path: str) -> _Node:
        node = self.root
        if not path:
            return node
        for part in path.split("/"):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
                self.dirs += 1
            elif not isinstance(child, dict):
                raise InvalidArgument(f"archive puts {path!r} below a file")
            node = child
        return node

    def add_dir(self, name: str, mode: int = 0o755, mtime_ns: int = 0) -> None:
        p = self._clean(name)
        if p:
            self._dir_node(p)
            self.dir_attrs[p] = (mode & 0o7777, mtime_ns)

    def add_file(self, name: str, data: bytes | Iterator[bytes], mode: int = 0o644,
                 mtime_ns: int = 0) -> None:
        p = self._clean(name)
        if not p:
            raise InvalidArgument("archive member names the root as a file")
        parent = self._dir_node(paths.parent_of(p))
        leaf = paths.name_of(p)
        if isinstance(parent.get(leaf), dict):
            raise InvalidArgument(f"archive has both a directory and a file at {p!r}")
        rec = self.batch.add_content(data)
        if leaf not in parent:
            self.files += 1
        parent[leaf] = file_entry(rec.hash, rec.size, mode & 0o7777, mtime_ns)
        self.bytes += rec.size

    def add_symlink(self, name: str, target: str, mtime_ns: int = 0) -> None:
        p = self._clean(name)
        if not target or "\x00" in target:
            raise InvalidArgument(f"bad symlink target for {p!r}")
        if not self.trusted:
            if target.startswith("/"):
                raise InvalidArgument(f"refusing absolute symlink {p!r} -> {target!r}")
            resolved = posixpath.normpath(posixpath.join(paths.parent_of(p), target))
            if resolved == ".." or resolved.startswith("../"):
                raise InvalidArgument(f"refusing symlink that leaves the tree: {p!r} -> {target!r}")
        parent = self._dir_node(paths.parent_of(p))
        leaf = paths.name_of(p)
        if isinstance(parent.get(leaf), dict):
            raise InvalidArgument(f"archive has both a directory and a symlink at {p!r}")
        if leaf not in parent:
            self.files += 1
        parent[leaf] = symlink_entry(target, mtime_ns)

    def finish(self) -> Entry:
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
            mode, mtime = self.dir_attrs.get(path, (0o755, now))
            return Entry(DIR, mode, e.size, e.hash, "", mtime or now, e.files)

        return build(self.root, "")

    def summary(self) -> pb.ImportResponse:
        return pb.ImportResponse(files=self.files, directories=self.dirs, bytes=self.bytes)


# ---- host directories
def ingest_directory(builder: TreeBuilder, root: Path) -> None:
    if not root.is_dir():
        raise NotFound(f"no such directory on the daemon host: {str(root)!r}")

    def rec(dir_path: Path, rel: str) -> None:
        try:
            it = list(os.scandir(dir_path))
        except PermissionError as e:
            raise PermissionDenied(f"cannot read {str(dir_path)!r}: {e.strerror}") from None
        for d in it:
            name = d.name
            sub = paths.join(rel, name)
            st = d.stat(follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                builder.add_symlink(sub, os.readlink(d.path), st.st_mtime_ns)
            elif stat.S_ISDIR(st.st_mode):
                builder.add_dir(sub, st.st_mode, st.st_mtime_ns)
                rec(Path(d.path), sub)
            elif stat.S_ISREG(st.st_mode):
                with open(d.path, "rb") as fh:
                    data = fh.read()
                builder.add_file(sub, data, st.st_mode, st.st_mtime_ns)
            # sockets, fifos and devices have no place in a workspace: skipped.

    rec(root, "")


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
    fmt = detect_format(fileobj, fmt)
    if fmt == pb.ArchiveFormat.ZIP:
        _ingest_zip(builder, fileobj)
    else:
        _ingest_tar(builder, fileobj, "r:gz" if fmt == pb.ArchiveFormat.TAR_GZ else "r:")


def _ingest_tar(builder: TreeBuilder, fileobj: IO[bytes], mode: str) -> None:
    seen_files: dict[str, tarfile.TarInfo] = {}
    try:
        with tarfile.open(fileobj=fileobj, mode=mode) as tar:  # type: ignore[call-overload]
            for m in tar:
                name = m.name
                if name in (".", "./") or name.startswith("pax_global_header"):
                    continue
                name = name[2:] if name.startswith("./") else name
                mtime = int(m.mtime * 1_000_000_000)
                if m.isdir():
                    builder.add_dir(name, m.mode, mtime)
                elif m.isreg():
                    fh = tar.extractfile(m)
                    data = fh.read() if fh else b""
                    builder.add_file(name, data, m.mode, mtime)
                    seen_files[name.rstrip("/")] = m
                elif m.issym():
                    builder.add_symlink(name, m.linkname, mtime)
                elif m.islnk():
                    # A hard link inside the archive: store a copy of its target.
                    target = m.linkname[2:] if m.linkname.startswith("./") else m.linkname
                    src = seen_files.get(target)
                    if src is None:
                        raise InvalidArgument(f"hard link {name!r} points outside the archive")
                    fh = tar.extractfile(src)
                    builder.add_file(name, fh.read() if fh else b"", src.mode, mtime)
                # devices and fifos are skipped
    except tarfile.TarError as e:
        raise InvalidArgument(f"bad tar archive: {e}") from None
    except (EOFError, OSError) as e:
        raise InvalidArgument(f"truncated or corrupt archive: {e}") from None


def _ingest_zip(builder: TreeBuilder, fileobj: IO[bytes]) -> None:
    try:
        with zipfile.ZipFile(fileobj) as zf:
            for info in zf.infolist():
                mode = info.external_attr >> 16
                mtime = int(time.mktime((*info.date_time, 0, 0, -1)) * 1_000_000_000)
                if info.is_dir():
                    builder.add_dir(info.filename, mode or 0o755, mtime)
                elif stat.S_ISLNK(mode):
                    builder.add_symlink(info.filename, zf.read(info).decode("utf-8"), mtime)
                else:
                    builder.add_file(info.filename, zf.read(info), (mode & 0o7777) or 0o644, mtime)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as e:
        raise InvalidArgument(f"bad zip archive: {e}") from None
    except UnicodeDecodeError:
        raise InvalidArgument("zip symlink target is not UTF-8") from None


# ---- git
def ingest_git(builder: TreeBuilder, url: str, ref: str) -> str:
    """Import `ref` of a git repository; returns the resolved commit sha."""
    ref = ref or "HEAD"
    if ref.startswith("-"):
        raise InvalidArgument(f"bad git ref {ref!r}")
    with tempfile.TemporaryDirectory(prefix="aether-git-") as tmp:
        repo = url
        if not Path(url).is_dir():
            if url.startswith("-"):
                raise InvalidArgument(f"bad git url {url!r}")
            repo = str(Path(tmp) / "repo.git")
            _git(["clone", "--quiet", "--bare", "--", url, repo], url)
        sha = _git(["-C", repo, "rev-parse", "--verify", "--end-of-options", f"{ref}^{{commit}}"],
                   url).decode().strip()
        with tempfile.TemporaryFile() as out:
            proc = subprocess.run(["git", "-C", repo, "archive", "--format=tar", sha],
                                  stdout=out, stderr=subprocess.PIPE)
            if proc.returncode != 0:
                raise FailedPrecondition(f"git archive failed: {proc.stderr.decode(errors='replace')}")
            out.seek(0)
            _ingest_tar(builder, out, "r:")
    return sha


def _git(args: list[str], url: str) -> bytes:
    proc = subprocess.run(["git", *args], capture_output=True,
                          env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        raise NotFound(f"git: {msg[-1] if msg else 'failed'} ({url})")
    return proc.stdout


def as_fileobj(data: bytes) -> IO[bytes]:
    return io.BytesIO(data)
