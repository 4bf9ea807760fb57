"""Filesystem operations on a session's working state (or, for reads, any state).

Writes store content first, outside the metadata transaction, then take the
write lock only to check preconditions (If-Match, kinds) and update the
overlay. Conditional writes are therefore atomic: the hash is re-checked under
the lock.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import blake3
import whatthepatch

from aether.errors import (
    AetherError,
    AlreadyExists,
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PayloadTooLarge,
    ResourceExhausted,
)
from aetherd import paths
from aetherd.config import limits
from aetherd.services import batch_records, quota, xattr_names
from aetherd.services.state import SessionRecord, Store
from aetherd.store.blobs import BlobMissing, chunk_hash
from aetherd.store.objects import (
    CHUNK_SIZE,
    DIR,
    EMPTY_CONTENT_HASH,
    EMPTY_TREE,
    FILE,
    SYMLINK,
    Entry,
    FileRecord,
    ObjectBatch,
    ObjectStore,
    file_entry,
    symlink_entry,
)
from aetherd.store.workspace import Workspace, walk

MAX_PAGE = 10_000
# One change of a batch, ready to run under the lock with the batch's quota budget.
_Step = Callable[[quota.TreeBudget], tuple[str, Entry]]
# A chunk's name: the BLAKE3 of its bytes, as 64 lowercase hex digits.
_CHUNK_HASH = re.compile(r"[0-9a-f]{64}")
# Chunks kept at hand while a write by chunks reads its chunks back: a chunk
# listed again soon (a sparse file's zeros) is read from the store once.
_REREAD_CACHE = 8


class Files:
    def __init__(self, store: Store, sessions, *, chunk_queries: bool = True) -> None:
        self.store = store
        self.db = store.db
        self.objects = store.objects
        self.sessions = sessions
        # MissingChunks answers truthfully (False: every chunk is "missing").
        self.chunk_queries = chunk_queries

    # ---- views
    def view(self, session_id: str, at: str) -> tuple[SessionRecord, Workspace, bool]:
        """(session, a workspace over the chosen state, whether it is a fixed tree)."""
        rec = self.store.session(session_id)
        root = self.store.resolve_state(rec, at)
        if root is None:
            return rec, self.store.workspace(rec), False
        return rec, Workspace(self.objects, "", root), True

    def _existing(self, ws: Workspace, path: str) -> Entry:
        e = ws.lookup(path)
        if e is None:
            raise NotFound(f"no such file or directory: {path!r}", path=path)
        return e

    def _hide_stale_dir_hash(self, ws: Workspace, fixed: bool, e: Entry) -> Entry:
        # A directory's tree hash is only meaningful once the overlay is folded.
        if e.kind == DIR and not fixed and not ws.is_clean():
            return dataclasses.replace(e, hash="", size=0, files=0)
        return e

    # ---- reads
    def stat(self, session_id: str, path: str,
             at: str = "") -> tuple[str, Entry, FileRecord | None]:
        path = paths.normalize(path)
        _, ws, fixed = self.view(session_id, at)
        e = self._existing(ws, path)
        rec = self.objects.file(e.hash) if e.kind == FILE else None
        return path, self._hide_stale_dir_hash(ws, fixed, e), rec

    def read(self, session_id: str, path: str, offset: int, length: int,
             at: str = "") -> tuple[bytes, str, int]:
        path = paths.normalize(path, allow_root=False)
        _, ws, _ = self.view(session_id, at)
        e = self._existing(ws, path)
        if e.kind == DIR:
            raise FailedPrecondition(f"is a directory: {path!r}", path=path)
        if e.kind == SYMLINK:
            data = e.target.encode()
            return data[offset : offset + length if length else None], "", len(data)
        data = self.objects.read(e.hash, offset, length or None)
        return data, e.hash, e.size

    def read_many(self, session_id: str, asked: Sequence[str], at: str = "",
                  max_bytes: int = 0) -> list[FileRead]:
        """Whole files of one state, one result per asked path, in order.

        Every path is looked up in one read transaction, so the answer never
        mixes two versions of the session. A path that cannot be read (bad,
        missing, a directory, a symlink, damaged content) gets its error as
        its result; the others are still read. Content is added until the
        answer holds the byte budget: min(max_bytes or the daemon's limit,
        max_batch_read_bytes). A file always goes in while the answer holds
        no data yet and the file alone fits max_batch_read_bytes, so each
        answer makes progress; after the first file that does not fit, every
        later file is `truncated` (its entry, without data). A file over
        max_batch_read_bytes is truncated on its own and does not end the
        answer: it never fits, the client reads it in ranges.

        Costs O(paths + bytes returned): a lookup per path (O(depth)) and a
        read of the chunks of the files included (each checked against its
        hash by the blob store).
        """
        check_read_batch_size(len(asked))
        most = limits().max_batch_read_bytes
        budget = min(max_bytes, most) if max_bytes else most
        out: list[FileRead] = []
        used, full = 0, False
        with self.db.read():  # one snapshot: the session row, its overlay, the trees
            _, ws, _ = self.view(session_id, at)
            for raw in asked:
                path = raw
                try:
                    path = paths.normalize(raw, allow_root=False)
                    e = self._existing(ws, path)
                    if e.kind == DIR:
                        raise FailedPrecondition(f"is a directory: {path!r}", path=path)
                    if e.kind == SYMLINK:
                        raise FailedPrecondition(
                            f"is a symlink: {path!r} (a batch read does not follow or "
                            "return symlinks; stat or a single read gives the target)",
                            path=path)
                    if e.size > most or full or (used and used + e.size > budget):
                        full = full or e.size <= most
                        out.append(FileRead(path, e, truncated=True))
                        continue
                    data = self.objects.read(e.hash) if e.size else b""
                except AetherError as exc:
                    if exc.code == "internal" and not exc.expose:
                        raise  # a fault of the daemon, not of the path: the request fails
                    out.append(FileRead(path, error=exc))
                    continue
                used += len(data)
                out.append(FileRead(path, e, data))
        return out

    def list_tree(self, session_id: str, path: str, depth: int, at: str, page_size: int,
                  page_token: str) -> tuple[list[tuple[str, Entry]], str]:
        path = paths.normalize(path)
        limit = min(page_size or 1000, MAX_PAGE)
        rec, ws, fixed = self.view(session_id, at)
        if depth == 1:
            children = ws.listdir(path)
            names = sorted(n for n in children if n > page_token)
            out = [(paths.join(path, n), self._hide_stale_dir_hash(ws, fixed, children[n]))
                   for n in names[:limit]]
            return out, (names[limit - 1] if len(names) > limit else "")
        # Deeper listings walk trees: take a snapshot of the working state first.
        trees: ObjectStore | ObjectBatch = self.objects
        if not fixed:
            snap = self.sessions.snapshot(rec)
            trees = snap.trees
            ws = Workspace(self.objects, "", snap.root, trees=trees)
        top = self._existing(ws, path)
        if top.kind != DIR:
            raise FailedPrecondition(f"not a directory: {path!r}", path=path)
        tree = top.hash
        after = tuple(page_token.split("/")) if page_token else ()
        out = []
        for p, e in walk(trees, tree, path, depth=depth, after=after):
            out.append((p, e))
            if len(out) > limit:
                break
        more = len(out) > limit
        out = out[:limit]
        return out, (out[-1][0] if more else "")

    def manifest(self, session_id: str, at: str, page_size: int,
                 page_token: str) -> tuple[list[tuple[str, Entry]], str, str]:
        rec = self.store.session(session_id)
        root = self.store.resolve_state(rec, at)
        trees: ObjectStore | ObjectBatch = self.objects
        if root is None:
            snap = self.sessions.snapshot(rec)
            root, trees = snap.root, snap.trees
        limit = min(page_size or 1000, MAX_PAGE)
        after = tuple(page_token.split("/")) if page_token else ()
        out = []
        for p, e in walk(trees, root, "", after=after):
            out.append((p, e))
            if len(out) > limit:
                break
        more = len(out) > limit
        out = out[:limit]
        return out, root, (out[-1][0] if more else "")

    # ---- writes
    def _ensure_parent(self, ws: Workspace, path: str, create: bool) -> None:
        parent = paths.parent_of(path)
        e = ws.lookup(parent)
        if e is not None:
            if e.kind != DIR:
                raise FailedPrecondition(f"not a directory: {parent!r}", path=parent)
            return
        if not create:
            raise NotFound(f"parent directory does not exist: {parent!r}", path=parent)
        self._mkdirs(ws, parent)

    def _mkdirs(self, ws: Workspace, path: str) -> None:
        now = time.time_ns()
        for p in [*paths.ancestors(path), path]:
            e = ws.lookup(p)
            if e is None:
                ws.put(p, Entry(DIR, 0o755, 0, EMPTY_TREE, "", now, 0))
            elif e.kind != DIR:
                raise FailedPrecondition(f"not a directory: {p!r}", path=p)

    @staticmethod
    def _check_match(path: str, current: Entry | None, if_match: str) -> None:
        if not if_match:
            return
        if if_match == "!":
            if current is not None:
                raise Conflict(f"{path!r} already exists", path=path)
            return
        if current is None:
            raise Conflict(f"{path!r} does not exist (If-Match {if_match})", path=path)
        if if_match != "*" and current.hash != if_match:
            raise Conflict(
                f"{path!r} changed: its hash is {current.hash}, not {if_match}",
                path=path, current_hash=current.hash,
            )

    def write(self, session_id: str, path: str, data: bytes, *, if_match: str = "",
              mode: int = 0, create_parents: bool = True, at_offset: bool = False,
              offset: int = 0, event: str = "file.written",
              payload: bool = True, chunks: Sequence[str] = ()) -> tuple[str, Entry]:
        """`payload`: `data` came from the client as is (not made here, as by a patch).
        `chunks`: the content as the hashes of its stored chunks, instead of `data`."""
        path = _checked_write(path, data, mode, at_offset, offset, payload)
        chunked: FileRecord | None = None
        if chunks:
            _check_chunked(path, data, at_offset)
            self.store.writable(session_id)  # fail fast before reading chunks back
            chunked = self._chunked_content(path, chunks)
            contents = self.objects.batch()
            contents.add_record(chunked)
            contents.commit()
        for _ in range(8):
            expect: str | None = None
            if at_offset:
                rec, ws = self.store.writable(session_id)
                cur = ws.lookup(path)
                if cur is not None and cur.kind != FILE:
                    raise FailedPrecondition(f"not a regular file: {path!r}", path=path)
                base_hash = cur.hash if cur else EMPTY_CONTENT_HASH
                content = self.objects.write_range(base_hash, offset, data)
                expect = cur.hash if cur else ""
            elif chunked is not None:
                content = chunked
            else:
                self.store.writable(session_id)  # fail fast before storing content
                content = self.objects.put_content(data)
            with self.db.write():
                entry = self._put_file(session_id, path, content, if_match=if_match, mode=mode,
                                       create_parents=create_parents, event=event,
                                       expect=expect)
            if entry is None:
                continue  # a concurrent writer changed the file under our range write
            return path, entry
        raise Conflict(f"{path!r} kept changing during a range write; retry", path=path)

    def _put_file(self, session_id: str, path: str, content: FileRecord, *, if_match: str,
                  mode: int, create_parents: bool, event: str = "file.written",
                  expect: str | None = None,
                  budget: quota.TreeBudget | None = None) -> Entry | None:
        """Point `path` at stored `content`: every check of a write under the lock
        (call inside db.write()). None: the file is no longer `expect` (a range
        write's base), nothing was changed. `budget`: a batch's quota check."""
        rec, ws = self.store.writable(session_id)
        cur = ws.lookup(path)
        if cur is not None and cur.kind == DIR:
            raise FailedPrecondition(f"is a directory: {path!r}", path=path)
        self._check_match(path, cur, if_match)
        if expect is not None and (cur.hash if cur else "") != expect:
            return None
        self._ensure_parent(ws, path, create_parents)
        same_file = cur is not None and cur.kind == FILE
        new_mode = mode or (cur.mode if same_file else 0o644)
        entry = file_entry(content.hash, content.size, new_mode)
        if same_file and cur.xattrs:  # new content, the same file: its attributes stay
            entry = dataclasses.replace(entry, xattrs=cur.xattrs)
        ws.put(path, entry)
        if budget is None:
            quota.check_tree(self.sessions, rec)
        else:
            old_size = cur.size if cur is not None and cur.kind == FILE else 0
            budget.check(rec, 0 if cur is not None else 1, content.size - old_size)
        self.store.touch(session_id)
        self.store.events.emit(session_id, event, path, size=content.size, hash=content.hash)
        return entry

    def delete(self, session_id: str, path: str, if_match: str = "") -> tuple[str, Entry]:
        path = paths.normalize(path, allow_root=False)
        with self.db.write():
            _, ws = self.store.writable(session_id)
            cur = self._existing(ws, path)
            if cur.kind == DIR:
                raise FailedPrecondition(f"is a directory (use rmdir): {path!r}", path=path)
            self._check_match(path, cur, if_match)
            ws.remove(path)
            self.store.touch(session_id)
            self.store.events.emit(session_id, "file.deleted", path)
        return path, cur

    def mkdir(self, session_id: str, path: str, parents: bool, mode: int) -> tuple[str, Entry]:
        path = paths.normalize(path, allow_root=False)
        if mode & ~0o7777:  # as for files: a tree must stay exportable as tar and zip
            raise InvalidArgument(f"bad mode {oct(mode)}")
        with self.db.write():
            _, ws = self.store.writable(session_id)
            cur = ws.lookup(path)
            if cur is not None:
                if cur.kind == DIR and parents:
                    return path, cur
                raise AlreadyExists(f"{path!r} already exists", path=path)
            self._ensure_parent(ws, path, parents)
            entry = Entry(DIR, mode or 0o755, 0, EMPTY_TREE, "", time.time_ns(), 0)
            ws.put(path, entry)
            self.store.touch(session_id)
            self.store.events.emit(session_id, "dir.created", path)
        return path, entry

    def rmdir(self, session_id: str, path: str, recursive: bool) -> tuple[str, Entry]:
        path = paths.normalize(path, allow_root=False)
        with self.db.write():
            _, ws = self.store.writable(session_id)
            cur = self._existing(ws, path)
            if cur.kind != DIR:
                raise FailedPrecondition(f"not a directory: {path!r}", path=path)
            if not recursive and ws.listdir(path):
                raise FailedPrecondition(f"directory not empty: {path!r}", path=path)
            ws.remove(path)
            self.store.touch(session_id)
            self.store.events.emit(session_id, "dir.removed", path, recursive=recursive)
        return path, cur

    def symlink(self, session_id: str, path: str, target: str, *,
                budget: quota.TreeBudget | None = None) -> tuple[str, Entry]:
        path = paths.normalize(path, allow_root=False)
        _check_target(target)
        with self.db.write():
            rec, ws = self.store.writable(session_id)
            if ws.lookup(path) is not None:
                raise AlreadyExists(f"{path!r} already exists", path=path)
            self._ensure_parent(ws, path, False)
            entry = symlink_entry(target)
            ws.put(path, entry)
            if budget is None:
                quota.check_tree(self.sessions, rec)
            else:
                budget.check(rec, 1, 0)
            self.store.touch(session_id)
            self.store.events.emit(session_id, "symlink.created", path, target=target)
        return path, entry

    def set_attributes(self, session_id: str, path: str, *, mode: int | None = None,
                       mtime_ns: int | None = None, set_xattrs: Mapping[str, bytes] | None = None,
                       remove_xattrs: Sequence[str] = (), replace_xattrs: bool = False,
                       if_match: str = "") -> tuple[str, Entry]:
        """chmod, utimes and extended attributes of a path, its content kept.

        None leaves mode or mtime as they are. `set_xattrs` adds or replaces
        names, `remove_xattrs` drops names (absent ones are ignored);
        `replace_xattrs` makes `set_xattrs` the whole set. `if_match` as for a
        write (the file's content hash, "*": it exists). A symlink takes an
        mtime only, as on Linux (no lchmod, no user xattrs on symlinks).
        """
        path = paths.normalize(path, allow_root=False)
        if mode is not None and mode & ~0o7777:
            raise InvalidArgument(f"bad mode {oct(mode)}", path=path)
        if mtime_ns is not None and mtime_ns < 0:
            raise InvalidArgument("mtime before 1970 is not supported", path=path)
        set_xattrs = set_xattrs or {}
        xattr_names.check_change(path, set_xattrs, remove_xattrs)
        with self.db.write():
            _, ws = self.store.writable(session_id)
            cur = self._existing(ws, path)
            if if_match == "!":
                raise Conflict(f"{path!r} already exists", path=path)
            self._check_match(path, cur, if_match)
            if cur.kind == SYMLINK and (mode is not None or set_xattrs or replace_xattrs):
                raise FailedPrecondition(
                    f"{path!r} is a symlink: only its mtime can be set", path=path)
            have = {} if replace_xattrs else dict(cur.xattrs)
            for name in remove_xattrs:
                have.pop(name, None)
            have.update((n, bytes(v)) for n, v in set_xattrs.items())
            xattrs = tuple(sorted(have.items()))
            xattr_names.check_total(path, xattrs)
            new = dataclasses.replace(
                cur, mode=cur.mode if mode is None else mode,
                mtime_ns=cur.mtime_ns if mtime_ns is None else mtime_ns, xattrs=xattrs)
            changed = [f for f, a, b in (("mode", cur.mode, new.mode),
                                         ("mtime", cur.mtime_ns, new.mtime_ns),
                                         ("xattrs", cur.xattrs, new.xattrs)) if a != b]
            if changed:
                new = ws.set_attrs(path, new)
                self.store.touch(session_id)
            # An event even when nothing changed, as for a write of the same
            # content: every successful call leaves one, so a follower sees
            # each call that was made (`changed` says whether it did anything).
            self.store.events.emit(session_id, "path.attributes_changed", path,
                                   changed=",".join(changed))
        return path, new

    def _place(self, ws: Workspace, src: str | None, dst: str, entry: Entry,
               overwrite: bool) -> None:
        """Put `entry` at dst; src is the live path it comes from (None: another state)."""
        if src is not None and entry.kind == DIR and paths.is_under(dst, src):
            raise InvalidArgument(f"cannot move or copy {src!r} into itself ({dst!r})")
        cur = ws.lookup(dst)
        if cur is not None:
            if cur.kind == DIR:
                raise FailedPrecondition(f"destination is a directory: {dst!r}", path=dst)
            if not overwrite:
                raise AlreadyExists(f"{dst!r} already exists (set overwrite)", path=dst)
        self._ensure_parent(ws, dst, False)
        if cur is not None:
            ws.remove(dst)
        ws.put(dst, dataclasses.replace(entry, mtime_ns=entry.mtime_ns or time.time_ns()))

    def _check_depth(self, src: str, dst: str, entry: Entry) -> None:
        """Refuse moving or copying a directory where its deepest path would be
        over `max_path_depth`.

        Every path was within the limit where it is, so only a move deeper
        needs a look, and the look stops at the depth that would be too deep:
        O(directories above that depth), nothing when the depth does not grow.
        """
        dst_depth = paths.depth_of(dst)
        if dst_depth <= paths.depth_of(src):
            return
        most = limits().max_path_depth
        room = most - dst_depth  # levels allowed below dst
        level = [entry.hash]
        for _ in range(room):
            level = [e.hash for h in level for e in self.objects.tree(h).values()
                     if e.kind == DIR]
            if not level:
                return
        if any(self.objects.tree(h) for h in level):
            raise InvalidArgument(
                f"path too long: {dst!r} would hold paths more than {most} levels deep",
                path=dst, limit=most, setting="max_path_depth")

    def rename(self, session_id: str, src: str, dst: str, overwrite: bool) -> tuple[str, Entry]:
        src = paths.normalize(src, allow_root=False)
        dst = paths.normalize(dst, allow_root=False)
        if src == dst:
            raise InvalidArgument("source and destination are the same path")
        with self.db.write():
            _, ws = self.store.writable(session_id)
            entry = self._existing(ws, src)
            if entry.kind == DIR:
                batch = self.objects.batch()
                entry = ws.materialize(src, batch)
                batch.commit()
                self._check_depth(src, dst, entry)
            self._place(ws, src, dst, entry, overwrite)
            ws.remove(src)
            self.store.touch(session_id)
            self.store.events.emit(session_id, "path.renamed", dst, from_path=src)
        return dst, entry

    def copy(self, session_id: str, src: str, dst: str, overwrite: bool,
             at: str = "") -> tuple[str, Entry]:
        src = paths.normalize(src, allow_root=at != "")
        dst = paths.normalize(dst, allow_root=False)
        _, view, fixed = self.view(session_id, at)
        with self.db.write():
            rec, ws = self.store.writable(session_id)
            source_ws = view if fixed else ws
            entry = self._existing(source_ws, src)
            if entry.kind == DIR and not fixed:
                batch = self.objects.batch()
                entry = ws.materialize(src, batch)
                batch.commit()
            if entry.kind == DIR:
                self._check_depth(src, dst, entry)
            if not fixed and src == dst:
                raise InvalidArgument("source and destination are the same path")
            self._place(ws, None if fixed else src, dst, entry, overwrite)
            quota.check_tree(self.sessions, rec)
            self.store.touch(session_id)
            self.store.events.emit(session_id, "path.copied", dst, from_path=src, at=at)
        return dst, entry

    def patch(self, session_id: str, path: str, diff_text: str,
              if_match: str = "") -> tuple[str, Entry]:
        path = paths.normalize(path, allow_root=False)
        _, ws = self.store.writable(session_id)
        cur = self._existing(ws, path)
        if cur.kind != FILE:
            raise FailedPrecondition(f"not a regular file: {path!r}", path=path)
        self._check_match(path, cur, if_match)
        try:
            text = self.objects.read(cur.hash).decode("utf-8")
        except UnicodeDecodeError:
            raise FailedPrecondition(f"{path!r} is not UTF-8 text; cannot patch") from None
        diffs = list(whatthepatch.parse_patch(diff_text))
        if len(diffs) != 1 or diffs[0].changes is None:
            raise InvalidArgument("expected a unified diff for exactly one file")
        lines = text.splitlines()
        try:
            new_lines = whatthepatch.apply_diff(diffs[0], lines)
        except whatthepatch.exceptions.HunkApplyException as e:
            raise Conflict(f"patch does not apply to {path!r}: {e}", path=path) from None
        new_text = "\n".join(new_lines)
        if text.endswith("\n") or not text:
            new_text += "\n"
        # Conditional on the content we patched, so a concurrent write is not lost.
        return self.write(session_id, path, new_text.encode(), if_match=cur.hash,
                          event="file.patched", payload=False)

    # ---- content by chunks (docs/api.md, "Large files: upload only missing chunks")
    def missing_chunks(self, session_id: str, hashes: Sequence[str]) -> list[str]:
        """Those of `hashes` the blob store lacks, in order, without duplicates.
        The ones present get their age refreshed, so gc keeps them for its grace
        period from now: long enough for the client's write to commit."""
        check_chunk_query(hashes)
        self.store.writable(session_id)
        asked = list(dict.fromkeys(hashes))
        if not self.chunk_queries:
            return asked
        present = self.objects.blobs.touch(asked)
        return [h for h in asked if h not in present]

    def put_chunks(self, session_id: str, data: bytes) -> list[str]:
        """Store `data` cut at CHUNK_SIZE boundaries, as chunks no file names
        yet (gc keeps them for its grace period); their hashes, in order."""
        if not data:
            raise InvalidArgument("no data: PutChunks stores 1 byte or more", field="data")
        _check_write_size("", len(data), 0)
        self.store.writable(session_id)
        view = memoryview(data)
        pieces = [view[i : i + CHUNK_SIZE] for i in range(0, len(view), CHUNK_SIZE)]
        hashes = [chunk_hash(p) for p in pieces]
        self.objects.blobs.put_many(zip(hashes, pieces, strict=True))
        return hashes

    def _chunked_content(self, path: str, chunks: Sequence[str]) -> FileRecord:
        """The file record of content given as its chunks: every one must be
        stored (else failed_precondition `missing_chunk`), 1 MiB each but the
        last. The whole-file hash is the daemon's own: the chunks are read back
        in order (each checked against its hash) into one BLAKE3."""
        chunks = list(chunks)
        for i, h in enumerate(chunks):
            if not isinstance(h, str) or not _CHUNK_HASH.fullmatch(h):
                raise InvalidArgument(f"chunks[{i}] is not a chunk hash (64 lowercase hex "
                                      f"digits): {str(h)[:80]!r}", field=f"chunks[{i}]",
                                      path=path)
        # At least this big, whatever the chunks hold: refuse before any lookup.
        _check_write_size(path, 0, (len(chunks) - 1) * CHUNK_SIZE + 1)
        sizes = self.objects.blobs.touch(chunks)  # kept for gc's grace period from now
        missing = [h for h in dict.fromkeys(chunks) if h not in sizes]
        if missing:
            raise _missing_chunk(path, missing[0], len(missing))
        last = len(chunks) - 1
        for i, h in enumerate(chunks):
            size = sizes[h]
            if (i < last and size != CHUNK_SIZE) or not 0 < size <= CHUNK_SIZE:
                want = f"exactly {CHUNK_SIZE}" if i < last else f"1 to {CHUNK_SIZE}"
                raise InvalidArgument(
                    f"chunks[{i}] ({h}) holds {size} bytes; it must hold {want} (every "
                    f"chunk but the last is {CHUNK_SIZE} bytes)", field=f"chunks[{i}]",
                    path=path, size=size)
        total = last * CHUNK_SIZE + sizes[chunks[-1]]
        _check_write_size(path, 0, total)
        whole = blake3.blake3(max_threads=blake3.blake3.AUTO)
        recent: OrderedDict[str, bytes] = OrderedDict()
        for h in chunks:
            piece = recent.get(h)
            if piece is None:
                try:
                    piece = self.objects.blobs.get(h)  # checked against its hash
                except BlobMissing:  # freed by a gc since the touch above
                    raise _missing_chunk(path, h, 1) from None
                recent[h] = piece
                if len(recent) > _REREAD_CACHE:
                    recent.popitem(last=False)
            else:
                recent.move_to_end(h)
            whole.update(piece)
        return FileRecord(whole.hexdigest(), total, tuple(chunks))

    # ---- batches
    def apply(self, session_id: str, ops: Sequence[tuple[str, dict[str, Any]]],
              atomic: bool = False, *, once: Once | None = None) -> Applied:
        """Apply many changes in order, in one write transaction (one commit).

        `ops` are (kind, arguments): a kind of BATCH_KINDS and the keyword
        arguments of the method of that name (a write's are those of `write`).
        Each op runs in a savepoint of its own, with the very checks of its
        single call, and sees what the ops before it did. Non-atomic: a failed
        op is rolled back alone and its error is its result; the ops after it
        still run. Atomic: the first failure rolls everything back and is
        raised. Problems of the whole request (an unknown or archived session,
        too many ops, too much data) are raised before anything runs.

        Every write's content is stored first, outside the transaction, in one
        object batch.

        `once` (a batch id): if this batch was applied before, nothing runs
        and the answer recorded then is returned (`Applied.replayed`);
        otherwise the answer is recorded in the batch's transaction
        (batch_records.py).
        """
        check_batch_size(len(ops))
        lim = limits()
        data_size = sum(len(args.get("data", b"")) for kind, args in ops if kind == "write")
        if data_size > lim.max_body_bytes:
            raise PayloadTooLarge(f"{data_size} bytes of data is over the limit of "
                                  f"{lim.max_body_bytes}", limit=lim.max_body_bytes,
                                  setting="max_body_bytes")
        self.store.writable(session_id)  # fail fast before storing content
        steps: list[_Step] = []
        contents = self.objects.batch()
        for kind, args in ops:
            if kind == "write":
                steps.append(self._batch_write(session_id, contents, **args))
            elif kind in BATCH_KINDS:
                steps.append(self._batch_step(session_id, kind, args))
            else:
                raise InvalidArgument(f"unknown kind of change {kind!r}")
        contents.commit()
        results: list[tuple[str, Entry] | AetherError] = []
        with self.db.write():
            rec, _ = self.store.writable(session_id)  # still writable now that we hold the lock
            if once is not None:
                earlier = batch_records.find(self.db, session_id, once.batch_id,
                                             once.request_hash)
                if earlier is not None:
                    return Applied([], earlier)
            budget = quota.TreeBudget(self.sessions, rec)
            for step in steps:
                if atomic:
                    results.append(step(budget))
                    continue
                try:
                    with self.db.write():  # a savepoint: a failed op leaves nothing
                        results.append(step(budget))
                except AetherError as exc:
                    if exc.code == "internal" and not exc.expose:
                        raise  # a fault of the daemon, not of the op: the request fails
                    results.append(exc)
            if once is not None:
                batch_records.record(self.db, session_id, once.batch_id, once.request_hash,
                                     once.encode(results))
        return Applied(results)

    def _batch_step(self, session_id: str, kind: str, args: dict[str, Any]) -> _Step:
        """The step of a change other than a write: its single call."""
        fn = getattr(self, kind)
        if kind == "symlink":  # besides writes, the one change that can grow the tree
            return lambda budget: fn(session_id, **args, budget=budget)
        return lambda _budget: fn(session_id, **args)

    def _batch_write(self, session_id: str, contents: ObjectBatch, *, path: str, data: bytes,
                     if_match: str = "", mode: int = 0, create_parents: bool = False,
                     at_offset: bool = False, offset: int = 0, chunks: Sequence[str] = (),
                     ) -> _Step:
        """The step of a write: its content goes into `contents` now; the step
        checks and points the path at it under the lock. A write refused before
        that is a step that raises (so an atomic batch fails at its place).
        A write by `chunks` has its chunks checked and read back here."""
        try:
            if chunks:
                _check_chunked(path, data, at_offset)
            if at_offset:
                raise InvalidArgument("a write in a batch replaces the whole file: "
                                      "at_offset is not allowed", path=path)
            path = _checked_write(path, data, mode, False, offset, True)
            chunked = self._chunked_content(path, chunks) if chunks else None
        except AetherError as exc:
            refused = exc

            def fail(_budget: quota.TreeBudget) -> tuple[str, Entry]:
                raise refused
            return fail
        if chunked is not None:
            contents.add_record(chunked)
            content = chunked
        else:
            content = contents.add_content(data)

        def step(budget: quota.TreeBudget) -> tuple[str, Entry]:
            with self.db.write():
                entry = self._put_file(session_id, path, content, if_match=if_match,
                                       mode=mode, create_parents=create_parents, budget=budget)
            assert entry is not None  # no `expect`: never None
            return path, entry
        return step


@dataclasses.dataclass(frozen=True)
class Once:
    """A batch sent with a batch id: applied at most once (batch_records.py)."""

    batch_id: str
    request_hash: str  # of the ops: the same id with other changes is refused
    # The answer as the client gets it, recorded for a repeat of the request.
    encode: Callable[[list[tuple[str, Entry] | AetherError]], bytes]


@dataclasses.dataclass
class Applied:
    """What `Files.apply` did: a result per op, or, for a batch id applied
    before, the answer recorded then (and no results)."""

    results: list[tuple[str, Entry] | AetherError]
    replayed: bytes | None = None


BATCH_KINDS = ("write", "delete", "mkdir", "rmdir", "rename", "symlink", "set_attributes")


@dataclasses.dataclass
class FileRead:
    """One result of `Files.read_many`: the file's entry and whole content,
    its entry alone (`truncated`: no room left in the answer, or the file alone
    is over max_batch_read_bytes), or an error."""

    path: str
    entry: Entry | None = None
    data: bytes = b""
    error: AetherError | None = None
    truncated: bool = False


def check_read_batch_size(count: int) -> None:
    most = limits().max_batch_read_paths
    if count > most:
        raise InvalidArgument(f"{count} paths in one batch read, the limit is {most}",
                              count=count, limit=most, setting="max_batch_read_paths")


def check_batch_size(count: int) -> None:
    most = limits().max_batch_ops
    if count > most:
        raise InvalidArgument(f"{count} changes in one batch, the limit is {most}",
                              count=count, limit=most, setting="max_batch_ops")


def check_chunk_query(hashes: Sequence[str]) -> None:
    most = limits().max_chunk_query
    if len(hashes) > most:
        raise InvalidArgument(f"{len(hashes)} chunk hashes in one query, the limit is {most}",
                              count=len(hashes), limit=most, setting="max_chunk_query")
    for i, h in enumerate(hashes):
        if not isinstance(h, str) or not _CHUNK_HASH.fullmatch(h):
            raise InvalidArgument(f"hashes[{i}] is not a chunk hash (64 lowercase hex "
                                  f"digits): {str(h)[:80]!r}", field=f"hashes[{i}]")


def _check_chunked(path: str, data: bytes, at_offset: bool) -> None:
    """A write by chunks carries no data and replaces the whole file."""
    if data:
        raise InvalidArgument("a write gives its content as data or as chunks, not both",
                              path=path, field="chunks")
    if at_offset:
        raise InvalidArgument("a write by chunks replaces the whole file: at_offset is "
                              "not allowed", path=path, field="at_offset")


def _missing_chunk(path: str, h: str, count: int) -> FailedPrecondition:
    return FailedPrecondition(
        f"chunk {h} is not stored ({count} of the write's chunks are missing); nothing "
        "was changed: upload the missing chunks (PutChunks) and retry",
        path=path, missing_chunk=h, missing=count)


def _checked_write(path: str, data: bytes, mode: int, at_offset: bool, offset: int,
                   payload: bool) -> str:
    """The checks of a write's arguments alone; its normalized path."""
    path = paths.normalize(path, allow_root=False)
    if mode & ~0o7777:
        raise InvalidArgument(f"bad mode {oct(mode)}")
    _check_write_size(path, len(data) if payload else 0,
                      offset + len(data) if at_offset else len(data))
    return path


def _check_write_size(path: str, data_size: int, file_size: int) -> None:
    lim = limits()
    # The HTTP shim refuses such a body before reading it; this gives gRPC,
    # whose message is already read by now, the same answer.
    if data_size > lim.max_body_bytes:
        raise PayloadTooLarge(f"{data_size} bytes of data is over the limit of "
                              f"{lim.max_body_bytes}", limit=lim.max_body_bytes,
                              setting="max_body_bytes")
    if file_size > lim.max_file_bytes:
        raise ResourceExhausted(
            f"{path!r} would be {file_size} bytes, over the limit of {lim.max_file_bytes}",
            path=path, size=file_size, limit=lim.max_file_bytes, setting="max_file_bytes")


def _check_target(target: str) -> None:
    most = limits().max_path_bytes
    try:
        size = len(target.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidArgument("symlink target is not valid UTF-8") from None
    if not target or "\x00" in target:
        raise InvalidArgument("symlink target must be 1 or more bytes without NUL")
    if size > most:
        raise InvalidArgument(f"symlink target too long: {size} bytes, the limit is {most}",
                              limit=most, setting="max_path_bytes")
