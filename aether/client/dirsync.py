"""Sync a session state into, or out of, a host directory, writing only what differs.

    from aether.client import connect
    from aether.client.dirsync import export_dir, import_dir

    with connect() as client:
        r = export_dir(client, "ses_...", "/tmp/work")            # session -> directory
        r = import_dir(client, "ses_...", "/tmp/work", delete=True)  # directory -> session
        print(r.added, r.changed, r.deleted, r.unchanged, r.bytes)

Both directions first compare, then change. A path is the same on both sides when
it has the same kind (file, directory, symlink) and

- a file: the same content and the same executable bit. The content is compared by
  hash: the session's manifest carries each file's BLAKE3 hash, and the local file
  is hashed (streamed) with the `blake3` package. Local files are hashed on every
  run, not trusted on size and mtime: a different size proves a change without
  hashing, an equal size is always confirmed by the hash. Like git, only the
  executable bit of the mode is compared; the other permission bits are set when a
  file is written (export: the session's mode; import: the local mode) but a
  difference in them alone is not a change (umasks differ between hosts).
- a symlink: the same target, compared as a string. Symlinks are copied as
  symlinks, never followed.
- a directory: always the same (their modes and times are not synced).

Paths only on the receiving side are left alone unless `delete=True` (like rsync's
--delete). Replacing a non-empty directory with a file or a symlink also needs
`delete=True`, since it deletes everything below it; without it the sync stops with
Conflict before changing anything.

Export never writes outside the directory: every path from the manifest is
checked (no "", ".", "..", NUL or leading "/"), and every local operation runs
relative to a directory descriptor opened component by component with
O_NOFOLLOW, so a symlink in the directory (pre-existing, or one the session
created) is replaced where the session has a directory, and never followed. Files
are written to a temporary name next to their destination and renamed into place.

Import writes are conditional on what the comparison saw (If-Match on the old
hash, or "must not exist"), so a concurrent change to the session makes the
import fail with Conflict instead of being overwritten. Removing a directory or
a symlink has no such precondition in the API: the import first re-reads what
it is about to remove and stops with Conflict if that changed, which leaves
only the moment between that read and the removal unguarded.

The sync client is what these functions take (`aether.client.Client`).
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import stat as st
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import blake3

from aether.errors import Conflict, FailedPrecondition, InvalidArgument, NotFound

FILE, DIR, SYMLINK, OTHER = "file", "directory", "symlink", "other"
CHUNK = 1 << 20
TMP_PREFIX = ".aether-sync-"
# Temporary files of an export in progress (or one that crashed): never synced,
# on either side, so a session file that happens to look like one is reported
# as skipped instead of being rewritten (or deleted) on every run.
_TMP_NAME = re.compile(re.escape(TMP_PREFIX) + r"[0-9a-f]{12}")


def is_temporary(name: str) -> bool:
    return _TMP_NAME.fullmatch(name) is not None

# progress(done_bytes, total_bytes): called once with (0, total) when the
# comparison is done, then after every chunk transferred.
Progress = Callable[[int, int], None]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class SyncResult:
    """What a sync did (or, with dry_run, would do). Path lists are session paths
    relative to the synced subtree, sorted."""

    direction: str  # "export" (session -> directory) or "import" (directory -> session)
    session: str
    directory: str
    at: str = ""
    path: str = ""
    dry_run: bool = False
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    # Local special files and names that are not UTF-8; paths on either side
    # named like a sync's temporary file.
    skipped: list[str] = field(default_factory=list)
    unchanged: int = 0
    bytes: int = 0  # file content transferred

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON shape (`aether export --to-dir --json`)."""
        return {
            "direction": self.direction,
            "session": self.session,
            "directory": self.directory,
            "at": self.at,
            "path": self.path,
            "dryRun": self.dry_run,
            "added": len(self.added),
            "changed": len(self.changed),
            "deleted": len(self.deleted),
            "unchanged": self.unchanged,
            "skipped": len(self.skipped),
            "bytes": self.bytes,
            "paths": {
                "added": sorted(self.added),
                "changed": sorted(self.changed),
                "deleted": sorted(self.deleted),
                "skipped": sorted(self.skipped),
            },
        }


@dataclass(frozen=True)
class Node:
    """One path on either side, reduced to what the comparison needs."""

    kind: str
    mode: int = 0
    size: int = 0
    hash: str = ""  # remote files only (local files are hashed on demand)
    target: str = ""
    mtime_ns: int = 0


def _executable(mode: int) -> bool:
    return bool(mode & 0o111)


# ---------------------------------------------------------------- paths


def check_path(path: str) -> str:
    """A session path that is safe to use under a local directory, or InvalidArgument."""
    if (not path or path.startswith("/") or "\x00" in path
            or any(part in ("", ".", "..") for part in path.split("/"))):
        raise InvalidArgument(f"refusing unsafe path {path!r}", path=path)
    return path


def _prefix(path: str) -> str:
    path = path.strip("/")
    if path:
        check_path(path)
    return path


def _under(path: str, top: str) -> bool:
    return path.startswith(top + "/")


# ---------------------------------------------------------------- the remote side


def _kind_name(kind: Any) -> str:
    name = getattr(kind, "name", str(kind)).upper()
    if name.endswith("DIRECTORY"):
        return DIR
    if name.endswith("SYMLINK"):
        return SYMLINK
    if name.endswith("FILE"):
        return FILE
    return OTHER


def _ns(ts: datetime | None) -> int:
    if ts is None:
        return 0
    return (ts - _EPOCH) // timedelta(microseconds=1) * 1000


def remote_tree(client: Any, session: str, at: str = "", path: str = "",
                skipped: list[str] | None = None) -> dict[str, Node]:
    """The session's state as {relative path: Node}, below `path` ("" = everything).
    Paths named like a sync's temporary file go to `skipped` instead."""
    top = _prefix(path)
    out: dict[str, Node] = {}
    for e in client.iter_manifest(session, at=at):
        p = e.path.strip("/")
        if top:
            if p == top:
                if _kind_name(e.kind) != DIR:
                    raise FailedPrecondition(f"not a directory in the session: {top!r}",
                                             path=top)
                continue
            if not _under(p, top):
                continue
            p = p[len(top) + 1:]
        check_path(p)  # a hostile or broken manifest stops the sync before any write
        if is_temporary(p.rsplit("/", 1)[-1]):
            if skipped is not None:
                skipped.append(p)
            continue
        out[p] = Node(_kind_name(e.kind), e.mode, e.size, e.hash, e.symlink_target,
                      _ns(e.mtime))
    return out


# ---------------------------------------------------------------- the local side


class LocalDir:
    """A host directory, touched only through descriptors: nothing under it is
    ever reached through a symlink."""

    def __init__(self, root: str | os.PathLike[str], *, create: bool) -> None:
        self.path = os.path.abspath(os.fspath(root))
        self.umask = os.umask(0o022)  # reading the umask means setting it: put it back
        os.umask(self.umask)
        if create:
            try:
                os.makedirs(self.path, exist_ok=True)
            except FileExistsError:
                raise FailedPrecondition(f"not a directory: {self.path}",
                                         path=self.path) from None
        try:
            self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            raise NotFound(f"no such directory: {self.path}", path=self.path) from None
        except NotADirectoryError:
            raise FailedPrecondition(f"not a directory: {self.path}", path=self.path) from None

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> LocalDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading

    def scan(self) -> tuple[dict[str, Node], list[str]]:
        """Everything below the root, symlinks not followed: ({path: Node}, names
        that are not UTF-8 and so cannot be session paths)."""
        out: dict[str, Node] = {}
        skipped: list[str] = []

        def walk(dfd: int, prefix: str) -> None:
            with os.scandir(dfd) as it:
                entries = sorted(it, key=lambda e: e.name)
            for entry in entries:
                name = entry.name
                if is_temporary(name):
                    continue
                rel = prefix + name
                try:
                    rel.encode("utf-8")
                except UnicodeEncodeError:
                    skipped.append(rel.encode("utf-8", "surrogateescape").decode("utf-8",
                                                                                 "replace"))
                    continue
                info = entry.stat(follow_symlinks=False)
                if st.S_ISLNK(info.st_mode):
                    out[rel] = Node(SYMLINK, target=os.readlink(name, dir_fd=dfd))
                elif st.S_ISDIR(info.st_mode):
                    out[rel] = Node(DIR, st.S_IMODE(info.st_mode))
                    child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW,
                                    dir_fd=dfd)
                    try:
                        walk(child, rel + "/")
                    finally:
                        os.close(child)
                elif st.S_ISREG(info.st_mode):
                    out[rel] = Node(FILE, st.S_IMODE(info.st_mode), info.st_size,
                                    mtime_ns=info.st_mtime_ns)
                else:  # fifo, socket, device: nothing a session can hold
                    out[rel] = Node(OTHER)

        walk(self.fd, "")
        return out, skipped

    def _parent(self, rel: str) -> tuple[int, str]:
        """(an open descriptor of rel's parent directory, rel's last name). Each
        component is opened with O_NOFOLLOW: a symlink on the way is an error."""
        *dirs, name = check_path(rel).split("/")
        fd = os.dup(self.fd)
        try:
            for part in dirs:
                try:
                    nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in (errno.ENOTDIR, errno.ELOOP):
                        raise FailedPrecondition(
                            f"refusing to follow a symlink or non-directory in {rel!r} "
                            f"under {self.path}", path=rel) from None
                    raise
                os.close(fd)
                fd = nxt
        except BaseException:
            os.close(fd)
            raise
        return fd, name

    def hash(self, rel: str) -> str:
        pfd, name = self._parent(rel)
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=pfd)
        finally:
            os.close(pfd)
        h = blake3.blake3()
        with os.fdopen(fd, "rb") as fh:
            while chunk := fh.read(CHUNK):
                h.update(chunk)
        return h.hexdigest()

    def chunks(self, rel: str) -> Iterator[bytes]:
        pfd, name = self._parent(rel)
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=pfd)
        finally:
            os.close(pfd)
        with os.fdopen(fd, "rb") as fh:
            while chunk := fh.read(CHUNK):
                yield chunk

    # -- writing

    def remove(self, rel: str) -> None:
        pfd, name = self._parent(rel)
        try:
            info = os.stat(name, dir_fd=pfd, follow_symlinks=False)
            if st.S_ISDIR(info.st_mode):
                shutil.rmtree(name, dir_fd=pfd)  # fd-based: never follows symlinks
            else:
                os.unlink(name, dir_fd=pfd)
        finally:
            os.close(pfd)

    def mkdir(self, rel: str) -> None:
        pfd, name = self._parent(rel)
        try:
            os.mkdir(name, 0o777, dir_fd=pfd)
        finally:
            os.close(pfd)

    def write(self, rel: str, chunks: Iterable[bytes], mode: int, mtime_ns: int,
              sent: Callable[[int], None]) -> int:
        """Write a file under a temporary name, then rename it over rel."""
        pfd, name = self._parent(rel)
        tmp = f"{TMP_PREFIX}{secrets.token_hex(6)}"
        written = 0
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600,
                         dir_fd=pfd)
            try:
                with os.fdopen(fd, "wb", closefd=False) as fh:
                    for chunk in chunks:
                        fh.write(chunk)
                        written += len(chunk)
                        sent(len(chunk))
                os.fchmod(fd, self.file_mode(mode))
                if mtime_ns:
                    os.utime(fd, ns=(mtime_ns, mtime_ns))
            finally:
                os.close(fd)
            os.replace(tmp, name, src_dir_fd=pfd, dst_dir_fd=pfd)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=pfd)
            except OSError:
                pass
            raise
        finally:
            os.close(pfd)
        return written

    def file_mode(self, mode: int) -> int:
        """The permission bits to give a file written from a session: rwx bits
        only (a session must never plant a setuid file), less the umask."""
        return mode & 0o777 & ~self.umask

    def chmod(self, rel: str, mode: int) -> None:
        pfd, name = self._parent(rel)
        try:
            # Through a descriptor opened without following symlinks: a link
            # swapped in after the comparison cannot redirect the chmod.
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=pfd)
            except OSError as exc:
                raise Conflict(f"{rel!r} changed during the sync", path=rel) from exc
            try:
                if not st.S_ISREG(os.fstat(fd).st_mode):
                    raise Conflict(f"{rel!r} changed during the sync", path=rel)
                os.fchmod(fd, self.file_mode(mode))
            finally:
                os.close(fd)
        finally:
            os.close(pfd)

    def symlink(self, rel: str, target: str) -> None:
        pfd, name = self._parent(rel)
        tmp = f"{TMP_PREFIX}{secrets.token_hex(6)}"
        try:
            os.symlink(target, tmp, dir_fd=pfd)
            try:
                os.replace(tmp, name, src_dir_fd=pfd, dst_dir_fd=pfd)
            except BaseException:
                os.unlink(tmp, dir_fd=pfd)
                raise
        finally:
            os.close(pfd)


# ---------------------------------------------------------------- comparing


@dataclass
class _Step:
    op: str  # "add" | "change" | "chmod" | "delete"
    path: str
    node: Node | None = None  # what the path becomes (None for a delete)
    replace: str = ""  # kind of what must go first, on a type change


@dataclass
class _Plan:
    steps: list[_Step] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)  # every path deletes remove
    unchanged: int = 0


def _subtree(tree: dict[str, Node], top: str) -> list[str]:
    return [p for p in tree if _under(p, top)]


def _plan(src: dict[str, Node], dst: dict[str, Node], same_file: Callable[[str, Node, Node], bool],
          delete: bool) -> _Plan:
    """The steps that make `dst` look like `src` (both {path: Node})."""
    plan = _Plan()
    gone: set[str] = set()  # dst directories removed with their contents

    def covered(p: str) -> bool:
        return any(_under(p, g) for g in gone)

    for p in sorted(src):
        s = src[p]
        d = None if covered(p) else dst.get(p)
        if s.kind == OTHER:
            continue
        if d is None:
            plan.steps.append(_Step("add", p, s))
        elif d.kind != s.kind:
            if d.kind == DIR:
                below = _subtree(dst, p)
                if below and not delete:
                    raise Conflict(
                        f"{p!r} is a non-empty directory on the receiving side and a {s.kind} "
                        "on the sending side; replacing it deletes what it holds: use --delete",
                        path=p)
                plan.deleted.extend(q for q in below if not covered(q))
                gone.add(p)
            plan.steps.append(_Step("change", p, s, replace=d.kind))
        elif s.kind == FILE:
            if d.size != s.size or not same_file(p, s, d):
                plan.steps.append(_Step("change", p, s))
            elif _executable(d.mode) != _executable(s.mode):
                plan.steps.append(_Step("chmod", p, s))
            else:
                plan.unchanged += 1
        elif s.kind == SYMLINK and d.target != s.target:
            plan.steps.append(_Step("change", p, s, replace=SYMLINK))
        else:
            plan.unchanged += 1

    if delete:
        # by components, so a directory's contents follow it ("a", "a/x", "a-b")
        extras = sorted((p for p in dst if p not in src and not covered(p)),
                        key=lambda p: p.split("/"))
        tops: list[str] = []
        for p in extras:
            if tops and _under(p, tops[-1]):
                continue
            tops.append(p)
        for p in tops:
            plan.steps.insert(0, _Step("delete", p, replace=dst[p].kind))
            plan.deleted.append(p)
            plan.deleted.extend(q for q in extras if _under(q, p))
    return plan


def _to_send(plan: _Plan, chmod_resends: bool) -> int:
    """Bytes of file content the plan transfers."""
    return sum(s.node.size for s in plan.steps
               if s.node is not None and s.node.kind == FILE
               and (s.op != "chmod" or chmod_resends))


def _result(plan: _Plan, r: SyncResult) -> SyncResult:
    for s in plan.steps:
        if s.op == "add":
            r.added.append(s.path)
        elif s.op in ("change", "chmod"):
            r.changed.append(s.path)
    r.deleted = sorted(set(plan.deleted))
    r.unchanged = plan.unchanged
    return r


class _Meter:
    def __init__(self, total: int, progress: Progress | None) -> None:
        self.done = 0
        self.total = total
        self.progress = progress
        if progress is not None:
            progress(0, total)

    def __call__(self, n: int) -> None:
        self.done += n
        if self.progress is not None:
            self.progress(self.done, self.total)

    def wrap(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            yield chunk
            self(len(chunk))


def _join(top: str, rel: str) -> str:
    return f"{top}/{rel}" if top else rel


# ---------------------------------------------------------------- session -> directory


def export_dir(
    client: Any,
    session: str,
    directory: str | os.PathLike[str],
    *,
    at: str = "",
    path: str = "",
    delete: bool = False,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> SyncResult:
    """Make `directory` hold the session's state `at` ("" = working, "base",
    ckp_..., cmt_...), or its subtree `path`, writing only what differs. The
    directory is created when missing."""
    top = _prefix(path)
    look_alikes: list[str] = []
    # NotFound before touching disk
    remote = remote_tree(client, session, at=at, path=top, skipped=look_alikes)
    result = SyncResult("export", session, os.path.abspath(os.fspath(directory)), at=at,
                        path=top, dry_run=dry_run, skipped=look_alikes)
    if dry_run and not os.path.exists(result.directory):
        plan = _plan(remote, {}, lambda *_: False, delete)
        result.bytes = _to_send(plan, False)
        return _result(plan, result)
    with LocalDir(directory, create=not dry_run) as local:
        here, unsyncable = local.scan()  # names no session can hold stay as they are
        result.skipped = sorted(look_alikes + unsyncable)

        def same(p: str, s: Node, d: Node) -> bool:
            return local.hash(p) == s.hash

        plan = _plan(remote, here, same, delete)
        _result(plan, result)
        if dry_run:
            result.bytes = _to_send(plan, False)
            return result
        meter = _Meter(_to_send(plan, False), progress)
        for step in plan.steps:
            node = step.node
            if step.op == "delete":
                local.remove(step.path)
            elif step.op == "chmod":
                assert node is not None
                local.chmod(step.path, node.mode)
            else:
                assert node is not None
                if step.replace == DIR or (step.replace and node.kind == DIR):
                    local.remove(step.path)
                if node.kind == DIR:
                    local.mkdir(step.path)
                elif node.kind == SYMLINK:
                    local.symlink(step.path, node.target)
                else:
                    stream = client.stream_file(session, _join(top, step.path), at=at)
                    local.write(step.path, stream, node.mode, node.mtime_ns, meter)
        result.bytes = meter.done
    return result


# ---------------------------------------------------------------- directory -> session


def import_dir(
    client: Any,
    session: str,
    directory: str | os.PathLike[str],
    *,
    path: str = "",
    delete: bool = False,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> SyncResult:
    """Make the session's working state (or its subtree `path`) hold what
    `directory` holds, writing only what differs."""
    top = _prefix(path)
    with LocalDir(directory, create=False) as local:
        here, skipped = local.scan()
        try:
            remote = remote_tree(client, session, path=top, skipped=skipped)
        except NotFound:
            if not top:
                raise
            client.get_session(session)  # an unknown session stays NotFound
            remote = {}  # the subtree does not exist yet
        skipped += sorted(p for p, n in here.items() if n.kind == OTHER)
        result = SyncResult("import", session, local.path, path=top, dry_run=dry_run,
                            skipped=skipped)

        def same(p: str, s: Node, d: Node) -> bool:
            return local.hash(p) == d.hash

        plan = _plan(here, remote, same, delete)
        _result(plan, result)
        if dry_run:
            result.bytes = _to_send(plan, True)
            return result
        meter = _Meter(_to_send(plan, True), progress)
        if top and plan.steps:
            client.mkdir(session, top, parents=True)
        for step in plan.steps:
            node = step.node
            where = _join(top, step.path)
            old = remote.get(step.path)
            if step.op == "delete" or step.replace:
                assert old is not None
                if old.kind == DIR:
                    _check_unchanged_below(client, session, where, step.path, remote)
                    client.rmdir(session, where, recursive=True)
                elif old.kind == SYMLINK:
                    _check_symlink_unchanged(client, session, where, old)
                    client.delete_file(session, where)
                else:
                    client.delete_file(session, where, if_match=old.hash)
                if step.op == "delete":
                    continue
                old = None
            assert node is not None
            if node.kind == DIR:
                client.mkdir(session, where, parents=True)
            elif node.kind == SYMLINK:
                client.symlink(session, where, node.target)
            else:
                if_match = old.hash if old is not None else "!"
                client.upload_file(session, where, meter.wrap(local.chunks(step.path)),
                                   if_match=if_match, mode=(node.mode & 0o777) or 0o644)
        result.bytes = meter.done
    return result


def _check_unchanged_below(client: Any, session: str, where: str, rel: str,
                           remote: dict[str, Node]) -> None:
    """Conflict unless the session's subtree `where` still holds exactly what the
    comparison saw: removing it recursively must not take files someone added
    or changed since. (The API has no precondition for rmdir; this narrows the
    window to the moment between this listing and the removal.)"""
    seen = {p: (n.kind, n.hash, n.target) for p, n in remote.items() if _under(p, rel)}
    now = {}
    for e in client.iter_tree(session, where, recursive=True):
        p = _join(rel, e.path.strip("/")[len(where) + 1:])
        kind = _kind_name(e.kind)
        now[p] = (kind, e.hash if kind == FILE else seen.get(p, ("", "", ""))[1], e.symlink_target)
    if now != seen:
        raise Conflict(f"{where!r} changed in the session during the sync; nothing below "
                       "it was removed", path=where)


def _check_symlink_unchanged(client: Any, session: str, where: str, old: Node) -> None:
    info = client.stat(session, where)
    if _kind_name(info.kind) != SYMLINK or info.symlink_target != old.target:
        raise Conflict(f"{where!r} changed in the session during the sync", path=where)


__all__ = ["LocalDir", "SyncResult", "check_path", "export_dir", "import_dir", "remote_tree"]
