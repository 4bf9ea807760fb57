"""Domain records -> proto messages (and the few conversions the other way)."""

from __future__ import annotations

import datetime as dt

from aether import pb
from aether.errors import AetherError
from aetherd.services.diffing import TreeChange
from aetherd.services.persistence import CheckpointRecord, CommitRecord
from aetherd.services.state import SessionRecord
from aetherd.services.tombstones import TombstoneRecord
from aetherd.store.objects import DIR, FILE, Entry, FileRecord


def ts(ns: int) -> dt.datetime | None:
    if not ns:
        return None
    return dt.datetime.fromtimestamp(ns / 1e9, tz=dt.UTC)


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)


def ns_of(t: dt.datetime) -> int:
    """A Timestamp as integer nanoseconds (exact: no float on the way; a
    Timestamp message arrives with microsecond precision)."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return (t - _EPOCH) // _MICROSECOND * 1000


def session(rec: SessionRecord) -> pb.Session:
    return pb.Session(
        id=rec.id, name=rec.name, state=pb.SessionState(rec.state), labels=rec.labels,
        tags=rec.tags, metadata=rec.metadata, owner=rec.owner,
        policy=pb.SessionPolicy.from_dict(rec.policy), source_kind=rec.source_kind,
        source_ref=rec.source_ref, parent_session_id=rec.parent_id, base_root=rec.base_root,
        root_hash=rec.root_hash, file_count=rec.file_count, total_bytes=rec.total_bytes,
        create_time=ts(rec.created_ns), update_time=ts(rec.updated_ns),
        archive_time=ts(rec.archived_ns),
    )


def file_info(path: str, e: Entry, rec: FileRecord | None = None) -> pb.FileInfo:
    info = pb.FileInfo(
        path=path, kind=pb.EntryKind(e.kind), mode=e.mode,
        size=e.size if e.kind != DIR else 0, hash=e.hash, symlink_target=e.target,
        mtime=ts(e.mtime_ns), xattrs=dict(e.xattrs),
    )
    if rec is not None and e.kind == FILE:
        info.extents = [pb.Extent(offset=o, length=n, hash=h) for o, n, h in rec.extents()]
    return info


def error_detail(exc: AetherError) -> pb.ErrorDetail:
    """An error as the `error` of an HTTP error response (for errors that are
    results, like a failed op of a batch)."""
    return pb.ErrorDetail(code=exc.code, message=exc.message, status=exc.http_status,
                          details=dict(exc.details))


def change(ch: TreeChange) -> pb.Change:
    o, n = ch.old, ch.new
    return pb.Change(
        path=ch.path, kind=pb.ChangeKind(ch.kind),
        old_kind=pb.EntryKind(o.kind if o else 0), new_kind=pb.EntryKind(n.kind if n else 0),
        old_hash=o.hash if o and o.kind != DIR else "", new_hash=n.hash if n and n.kind != DIR else "",
        old_mode=o.mode if o else 0, new_mode=n.mode if n else 0,
        old_size=o.size if o and o.kind != DIR else 0, new_size=n.size if n and n.kind != DIR else 0,
    )


def checkpoint(rec: CheckpointRecord) -> pb.Checkpoint:
    return pb.Checkpoint(
        id=rec.id, session_id=rec.session_id, root_hash=rec.root, message=rec.message,
        labels=rec.labels, create_time=ts(rec.created_ns), file_count=rec.file_count,
        total_bytes=rec.total_bytes,
    )


def commit(rec: CommitRecord) -> pb.Commit:
    return pb.Commit(
        id=rec.id, session_id=rec.session_id, root_hash=rec.root,
        parent_commit_id=rec.parent_id, message=rec.message, author=rec.author,
        create_time=ts(rec.created_ns), file_count=rec.file_count, total_bytes=rec.total_bytes,
        approval_ids=rec.approvals, committed_by=rec.committed_by,
    )


def tombstone(rec: TombstoneRecord) -> pb.Tombstone:
    return pb.Tombstone(
        session_id=rec.session_id, name=rec.name, owner=rec.owner, labels=rec.labels,
        deleted_by=rec.deleted_by, reason=rec.reason, create_time=ts(rec.created_ns),
        delete_time=ts(rec.deleted_ns), final_root_hash=rec.final_root, file_count=rec.files,
        total_bytes=rec.bytes, event_counts=rec.events, last_event_cursor=rec.last_cursor,
        checkpoint_count=rec.checkpoints, commit_count=rec.commits,
        expire_time=ts(rec.expires_ns),
    )
