"""Proto adapters for sessions, files and persistence.

Each method maps a request message to a domain call and the result back to a
response message. Domain calls block (SQLite, hashing), so they run on the
daemon's worker pool, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import blake3

from aether import pb
from aether.errors import AetherError, InvalidArgument, PermissionDenied
from aetherd.api import convert
from aetherd.auth.guard import visible_sessions
from aetherd.auth.principal import acting_name, current
from aetherd.services import batch_records
from aetherd.services.files import (
    BATCH_KINDS,
    FileRead,
    Files,
    Once,
    check_batch_size,
    check_chunk_query,
    check_read_batch_size,
)
from aetherd.services.persistence import Persistence
from aetherd.services.sessions import NewSession, Sessions

T = TypeVar("T")


class Runner:
    """Runs blocking domain calls on a bounded thread pool."""

    def __init__(self, workers: int = 8) -> None:
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="aetherd-store")

    async def __call__(self, fn: Callable[..., T], *args, **kwargs) -> T:
        loop = asyncio.get_running_loop()
        # The request's context goes along: the origin its events record.
        ctx = contextvars.copy_context()
        return await loop.run_in_executor(self.pool, lambda: ctx.run(fn, *args, **kwargs))

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _policy(p: pb.SessionPolicy | None) -> dict | None:
    return p.to_dict() if p is not None else None


class SessionsApi(pb.SessionServiceBase):
    def __init__(self, sessions: Sessions, run: Runner) -> None:
        self.s, self.run = sessions, run

    async def create_session(self, message: pb.CreateSessionRequest) -> pb.Session:
        spec = NewSession(message.name, message.labels, message.tags, message.metadata,
                          owner_for(message.owner), _policy(message.policy))
        rec = await self.run(self.s.create, spec, message.source)
        return convert.session(rec)

    async def get_session(self, message: pb.GetSessionRequest) -> pb.Session:
        return convert.session(await self.run(self.s.get, message.session_id))

    async def list_sessions(self, message: pb.ListSessionsRequest) -> pb.ListSessionsResponse:
        recs, token = await self.run(self.s.list, message.labels, message.tags,
                                     int(message.state), message.page_size, message.page_token,
                                     visible_sessions(current()))
        return pb.ListSessionsResponse(sessions=[convert.session(r) for r in recs],
                                       next_page_token=token)

    async def update_session(self, message: pb.UpdateSessionRequest) -> pb.Session:
        allowed = ("name", "labels", "tags", "metadata", "policy")
        mask = list(message.update_mask)
        if not mask:
            # Without a mask, replace what the request sets.
            d = message.to_dict()
            mask = [f for f in allowed if _camel(f) in d]
        fields = {}
        for f in mask:
            if f not in allowed:
                raise InvalidArgument(f"update_mask names {f!r}; allowed: {', '.join(allowed)}")
            value = getattr(message, f)
            fields[f] = _policy(value) or {} if f == "policy" else value
        return convert.session(await self.run(self.s.update, message.session_id, fields))

    async def delete_session(self, message: pb.DeleteSessionRequest) -> pb.Session:
        who = current()
        return convert.session(await self.run(self.s.delete, message.session_id,
                                              who.name if who else ""))

    async def fork_session(self, message: pb.ForkSessionRequest) -> pb.Session:
        spec = NewSession(message.name, message.labels or None, message.tags or None,
                          owner=owner_for(""))
        rec = await self.run(self.s.fork, message.session_id, spec, message.at)
        return convert.session(rec)

    async def archive_session(self, message: pb.ArchiveSessionRequest) -> pb.Session:
        return convert.session(await self.run(self.s.archive, message.session_id))

    async def restore_session(self, message: pb.RestoreSessionRequest) -> pb.Session:
        rec = await self.run(self.s.restore, message.session_id, message.checkpoint_id)
        return convert.session(rec)


    async def list_tombstones(self, message: pb.ListTombstonesRequest,
                              ) -> pb.ListTombstonesResponse:
        recs, token = await self.run(self.s.tombstones.list, message.owner, message.page_size,
                                     message.page_token)
        return pb.ListTombstonesResponse(tombstones=[convert.tombstone(r) for r in recs],
                                         next_page_token=token)

    async def get_tombstone(self, message: pb.GetTombstoneRequest) -> pb.Tombstone:
        return convert.tombstone(await self.run(self.s.tombstones.get, message.session_id))


def owner_for(asked: str) -> str:
    """Who owns a session being made: the caller, or whom an admin names."""
    who = current()
    if who is None:
        return asked
    if asked and asked != who.name and not who.admin:
        raise PermissionDenied(f"{who.name} may not create a session owned by {asked!r}")
    return asked or who.name


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


class FilesApi(pb.FileServiceBase):
    def __init__(self, files: Files, persistence: Persistence, run: Runner) -> None:
        self.f, self.p, self.run = files, persistence, run

    async def list_tree(self, message: pb.ListTreeRequest) -> pb.ListTreeResponse:
        depth = 0 if message.recursive else (message.depth or 1)  # walk(): 0 = unlimited
        entries, token = await self.run(
            self.f.list_tree, message.session_id, message.path, depth, message.at,
            message.page_size, message.page_token,
        )
        return pb.ListTreeResponse(entries=[convert.file_info(p, e) for p, e in entries],
                                   next_page_token=token)

    async def read_file(self, message: pb.ReadFileRequest) -> pb.ReadFileResponse:
        data, h, size = await self.run(self.f.read, message.session_id, message.path,
                                       message.offset, message.length, message.at)
        return pb.ReadFileResponse(data=data, hash=h, size=size)

    async def read_files(self, message: pb.ReadFilesRequest) -> pb.ReadFilesResponse:
        check_read_batch_size(len(message.paths))
        got = await self.run(self.f.read_many, message.session_id, message.paths, message.at,
                             message.max_bytes)
        return pb.ReadFilesResponse(files=[_read_entry(r) for r in got])

    async def write_file(self, message: pb.WriteFileRequest) -> pb.FileInfo:
        path, e = await self.run(
            self.f.write, message.session_id, message.path, message.data,
            if_match=message.if_match, mode=message.mode, create_parents=message.create_parents,
            at_offset=message.at_offset, offset=message.offset, chunks=message.chunks,
        )
        return convert.file_info(path, e)

    async def delete_file(self, message: pb.DeleteFileRequest) -> pb.FileInfo:
        path, e = await self.run(self.f.delete, message.session_id, message.path, message.if_match)
        return convert.file_info(path, e)

    async def stat(self, message: pb.StatRequest) -> pb.FileInfo:
        path, e, rec = await self.run(self.f.stat, message.session_id, message.path, message.at)
        return convert.file_info(path, e, rec)

    async def mkdir(self, message: pb.MkdirRequest) -> pb.FileInfo:
        path, e = await self.run(self.f.mkdir, message.session_id, message.path, message.parents,
                                 message.mode)
        return convert.file_info(path, e)

    async def rmdir(self, message: pb.RmdirRequest) -> pb.FileInfo:
        path, e = await self.run(self.f.rmdir, message.session_id, message.path, message.recursive)
        return convert.file_info(path, e)

    async def rename(self, message: pb.RenameRequest) -> pb.FileInfo:
        path, e = await self.run(self.f.rename, message.session_id, message.from_path,
                                 message.to_path, message.overwrite)
        return convert.file_info(path, e)

    async def symlink(self, message: pb.SymlinkRequest) -> pb.FileInfo:
        path, e = await self.run(self.f.symlink, message.session_id, message.path, message.target)
        return convert.file_info(path, e)

    async def copy(self, message: pb.CopyRequest) -> pb.FileInfo:
        path, e = await self.run(self.f.copy, message.session_id, message.from_path,
                                 message.to_path, message.overwrite, message.at)
        return convert.file_info(path, e)

    async def patch_file(self, message: pb.PatchFileRequest) -> pb.FileInfo:
        path, e = await self.run(self.f.patch, message.session_id, message.path,
                                 message.unified_diff, message.if_match)
        return convert.file_info(path, e)

    async def set_attributes(self, message: pb.SetAttributesRequest) -> pb.FileInfo:
        path, e = await self.run(self.f.set_attributes, message.session_id,
                                 **_attribute_args(message))
        return convert.file_info(path, e)

    async def get_manifest(self, message: pb.ManifestRequest) -> pb.ManifestResponse:
        entries, root, token = await self.run(self.f.manifest, message.session_id, message.at,
                                              message.page_size, message.page_token)
        return pb.ManifestResponse(entries=[convert.file_info(p, e) for p, e in entries],
                                   root_hash=root, next_page_token=token)

    async def list_changes(self, message: pb.ListChangesRequest) -> pb.ListChangesResponse:
        changes, a, b = await self.run(self.p.changes, message.session_id, message.since)
        return pb.ListChangesResponse(changes=[convert.change(c) for c in changes],
                                      from_root=a, to_root=b)

    async def apply(self, message: pb.ApplyRequest) -> pb.ApplyResponse:
        check_batch_size(len(message.ops))
        ops = [_fs_op(i, op) for i, op in enumerate(message.ops)]
        once = None
        if message.batch_id:
            batch_records.check_id(message.batch_id)
            once = Once(message.batch_id, await self.run(_ops_hash, message),
                        lambda results: bytes(_apply_response(results)))
        done = await self.run(self.f.apply, message.session_id, ops, message.atomic, once=once)
        if done.replayed is not None:
            return pb.ApplyResponse.parse(done.replayed)
        return _apply_response(done.results)

    async def missing_chunks(self, message: pb.MissingChunksRequest) -> pb.MissingChunksResponse:
        check_chunk_query(message.hashes)
        missing = await self.run(self.f.missing_chunks, message.session_id, message.hashes)
        return pb.MissingChunksResponse(missing=missing)

    async def put_chunks(self, message: pb.PutChunksRequest) -> pb.PutChunksResponse:
        hashes = await self.run(self.f.put_chunks, message.session_id, message.data)
        return pb.PutChunksResponse(hashes=hashes)


def _apply_response(results: list) -> pb.ApplyResponse:
    return pb.ApplyResponse(results=[
        pb.FsOpResult(error=convert.error_detail(r)) if isinstance(r, AetherError)
        else pb.FsOpResult(info=convert.file_info(*r)) for r in results])


def _ops_hash(message: pb.ApplyRequest) -> str:
    """What a batch id stands for: the ops and how they apply (not the session,
    which is part of the record's key, nor the id itself)."""
    return blake3.blake3(bytes(pb.ApplyRequest(ops=message.ops,
                                               atomic=message.atomic))).hexdigest()


def _read_entry(r: FileRead) -> pb.ReadFilesEntry:
    if r.error is not None:
        return pb.ReadFilesEntry(path=r.path, error=convert.error_detail(r.error))
    e = r.entry
    assert e is not None
    return pb.ReadFilesEntry(path=r.path, data=r.data, hash=e.hash, size=e.size, mode=e.mode,
                             truncated=r.truncated)


def _fs_op(index: int, op: pb.FsOp) -> tuple[str, dict]:
    """One change of a batch as (kind, arguments of Files.apply); its own
    session_id is ignored."""
    set_ = [kind for kind in BATCH_KINDS if getattr(op, kind) is not None]
    if len(set_) != 1:
        what = "no change" if not set_ else f"more than one change ({', '.join(set_)})"
        raise InvalidArgument(f"ops[{index}] holds {what}: set exactly one of "
                              f"{', '.join(BATCH_KINDS)}", field=f"ops[{index}]")
    kind = set_[0]
    m = getattr(op, kind)
    if kind == "write":
        return kind, dict(path=m.path, data=m.data, if_match=m.if_match, mode=m.mode,
                          create_parents=m.create_parents, at_offset=m.at_offset,
                          offset=m.offset, chunks=m.chunks)
    if kind == "delete":
        return kind, dict(path=m.path, if_match=m.if_match)
    if kind == "mkdir":
        return kind, dict(path=m.path, parents=m.parents, mode=m.mode)
    if kind == "rmdir":
        return kind, dict(path=m.path, recursive=m.recursive)
    if kind == "rename":
        return kind, dict(src=m.from_path, dst=m.to_path, overwrite=m.overwrite)
    if kind == "set_attributes":
        return kind, _attribute_args(m)
    return kind, dict(path=m.path, target=m.target)


def _attribute_args(m: pb.SetAttributesRequest) -> dict:
    return dict(path=m.path, mode=m.mode,
                mtime_ns=None if m.mtime is None else convert.ns_of(m.mtime),
                set_xattrs=m.set_xattrs, remove_xattrs=m.remove_xattrs,
                replace_xattrs=m.replace_xattrs, if_match=m.if_match)


class PersistenceApi(pb.PersistenceServiceBase):
    def __init__(self, persistence: Persistence, run: Runner) -> None:
        self.p, self.run = persistence, run

    async def create_checkpoint(self, message: pb.CreateCheckpointRequest) -> pb.Checkpoint:
        rec = await self.run(self.p.create_checkpoint, message.session_id, message.message,
                             message.labels)
        return convert.checkpoint(rec)

    async def list_checkpoints(self, message: pb.ListCheckpointsRequest) -> pb.ListCheckpointsResponse:
        recs, token = await self.run(self.p.list_checkpoints, message.session_id,
                                     message.page_size, message.page_token)
        return pb.ListCheckpointsResponse(checkpoints=[convert.checkpoint(r) for r in recs],
                                          next_page_token=token)

    async def get_checkpoint(self, message: pb.GetCheckpointRequest) -> pb.Checkpoint:
        rec = await self.run(self.p.get_checkpoint, message.session_id, message.checkpoint_id)
        return convert.checkpoint(rec)

    async def delete_checkpoint(self, message: pb.DeleteCheckpointRequest) -> pb.Checkpoint:
        rec = await self.run(self.p.delete_checkpoint, message.session_id, message.checkpoint_id)
        return convert.checkpoint(rec)

    async def create_commit(self, message: pb.CreateCommitRequest) -> pb.Commit:
        who = current()
        rec = await self.run(self.p.create_commit, message.session_id, message.message,
                             acting_name(message.author), who.name if who else "")
        return convert.commit(rec)

    async def list_commits(self, message: pb.ListCommitsRequest) -> pb.ListCommitsResponse:
        recs, token = await self.run(self.p.list_commits, message.session_id,
                                     message.page_size, message.page_token)
        return pb.ListCommitsResponse(commits=[convert.commit(r) for r in recs],
                                      next_page_token=token)

    async def get_commit(self, message: pb.GetCommitRequest) -> pb.Commit:
        return convert.commit(await self.run(self.p.get_commit, message.commit_id))

    async def diff(self, message: pb.DiffRequest) -> pb.DiffResponse:
        context = message.context_lines or 3
        a, b, items = await self.run(self.p.diff, message.session_id, message.from_, message.to,
                                     context, list(message.paths), message.name_only)
        files = [
            pb.FileDiff(change=convert.change(ch), binary=binary, lines_added=added,
                        lines_deleted=deleted, unified=text)
            for ch, text, binary, added, deleted in items
        ]
        return pb.DiffResponse(from_root=a, to_root=b, files=files,
                               unified="".join(f.unified for f in files))

    async def export(self, message: pb.ExportRequest) -> AsyncIterator[pb.ExportChunk]:
        it = await self.run(self.p.export, message.session_id, int(message.format), message.at,
                            message.path)
        done = object()
        while True:
            piece = await self.run(next, it, done)
            if piece is done:
                return
            yield pb.ExportChunk(data=piece)

    async def import_(self, message: pb.ImportRequest) -> pb.ImportResponse:
        return await self.run(self.p.import_archive, message.session_id, message.path,
                              int(message.format), message.data)

