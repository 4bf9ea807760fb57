"""Review: threaded comments, line annotations and approvals bound to a state.

An approval names the exact root hash it was requested for (the Merkle root:
every path, its content, mode and times). It counts for a commit only while the
session's working state still hashes to that root. Staleness is therefore
derived on every read from the current root, never stored: restoring the
approved state (e.g. from a checkpoint) makes the approval count again,
because the state it approved is back.

Review items are collaboration state, not file content: they may be added to a
session whose policy is `readOnly` (reviewing a frozen state is the point), but
not to an archived one.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from aether import pb
from aether.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from aetherd import paths
from aetherd.ids import check_id, new_id
from aetherd.services.sessions import Sessions
from aetherd.services.state import ARCHIVED, SessionRecord, Store
from aetherd.store.objects import FILE

MAX_BODY_BYTES = 64 * 1024
MAX_NAME_BYTES = 256  # author, requester, reviewer, severity
MAX_TITLE_BYTES = 1024
DEFAULT_PAGE, MAX_PAGE = 100, 1000

PENDING = int(pb.ApprovalState.PENDING)
APPROVED = int(pb.ApprovalState.APPROVED)
REJECTED = int(pb.ApprovalState.REJECTED)
STALE = int(pb.ApprovalState.STALE)

_TOKEN_RE = re.compile(r"^[a-z]{3}_[0-9a-hjkmnp-tv-z]{26}$")
_CMN_COLS = "id, session_id, parent_id, author, body, path, created_ns"
_ANN_COLS = ("id, session_id, path, start_line, end_line, author, body, severity, file_hash, "
             "created_ns")
_APR_COLS = ("id, session_id, root_hash, requester, reviewer, state, reason, title, created_ns, "
             "decided_ns")


@dataclass
class CommentRecord:
    id: str
    session_id: str
    parent_id: str
    author: str
    body: str
    path: str
    created_ns: int


@dataclass
class AnnotationRecord:
    id: str
    session_id: str
    path: str
    start_line: int
    end_line: int
    author: str
    body: str
    severity: str
    file_hash: str
    created_ns: int


@dataclass
class ApprovalRecord:
    id: str
    session_id: str
    root_hash: str
    requester: str
    reviewer: str
    state: int  # as reported: APPROVED becomes STALE when the root moved on
    reason: str
    title: str
    created_ns: int
    decided_ns: int


class Review:
    def __init__(self, store: Store, sessions: Sessions | None = None) -> None:
        self.store = store
        self.db = store.db
        self.sessions = sessions or Sessions(store)

    # ---- comments
    def create_comment(self, session_id: str, parent_id: str, author: str, body: str,
                       path: str) -> CommentRecord:
        _text(body, "body", MAX_BODY_BYTES, required=True)
        _text(author, "author", MAX_NAME_BYTES)
        path = paths.normalize(path)
        cid = new_id("cmn")
        with self.db.write():
            self._open(session_id)
            if parent_id:
                parent = self._comment(session_id, parent_id)
                # A reply lives in its parent's thread, so a path filter that
                # finds the thread finds the whole conversation.
                if path and path != parent.path:
                    raise InvalidArgument(
                        f"a reply is about its parent's path {parent.path!r}, not {path!r}",
                        parent_id=parent_id, path=path)
                path = parent.path
            self.db.execute(
                f"INSERT INTO comments({_CMN_COLS}) VALUES (?,?,?,?,?,?,?)",
                (cid, session_id, parent_id, author, body, path, time.time_ns()),
            )
            self.store.events.emit(session_id, "comment.created", path, actor=author,
                                   comment_id=cid, parent_id=parent_id)
        return self._comment(session_id, cid)

    def _row(self, table: str, cols: str, prefix: str, what: str, session_id: str,
             item_id: str) -> tuple:
        """One review item of this session by id; not_found otherwise (ids are opaque)."""
        check_id(item_id, prefix, what)
        row = self.db.one(f"SELECT {cols} FROM {table} WHERE id=? AND session_id=?",
                          (item_id, session_id))
        if row is None:
            raise NotFound(f"no {what} {item_id!r} in session {session_id}",
                           **{f"{what}_id": item_id})
        return row

    def _comment(self, session_id: str, comment_id: str) -> CommentRecord:
        return CommentRecord(*self._row("comments", _CMN_COLS, "cmn", "comment", session_id,
                                        comment_id))

    def list_comments(self, session_id: str, path: str, page_size: int,
                      page_token: str) -> tuple[list[CommentRecord], str]:
        """Oldest first: a thread reads top-down, and replies follow their parents."""
        self.store.session(session_id)
        where, args = _under(paths.normalize(path))
        rows = self._page("comments", _CMN_COLS, session_id, where, args, page_size, page_token)
        return _paged([CommentRecord(*r) for r in rows], page_size)

    # ---- annotations
    def create_annotation(self, session_id: str, path: str, start_line: int, end_line: int,
                          author: str, body: str, severity: str) -> AnnotationRecord:
        path = paths.normalize(path, allow_root=False)
        _text(body, "body", MAX_BODY_BYTES, required=True)
        _text(author, "author", MAX_NAME_BYTES)
        _text(severity, "severity", MAX_NAME_BYTES)
        if not 1 <= start_line <= end_line:
            raise InvalidArgument(
                f"bad line range {start_line}-{end_line}: want 1 <= start_line <= end_line",
                start_line=start_line, end_line=end_line)
        aid = new_id("ann")
        with self.db.write():
            rec = self._open(session_id)
            e = self.store.workspace(rec).lookup(path)
            if e is None:
                raise NotFound(f"no such file: {path!r}", path=path)
            if e.kind != FILE:
                raise FailedPrecondition(f"not a regular file: {path!r}", path=path)
            lines = self._line_count(e.hash)
            if end_line > lines:
                raise InvalidArgument(
                    f"line range {start_line}-{end_line} is past the end of {path!r} "
                    f"({lines} lines)", path=path, lines=lines)
            self.db.execute(
                f"INSERT INTO annotations({_ANN_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (aid, session_id, path, start_line, end_line, author, body, severity, e.hash,
                 time.time_ns()),
            )
            self.store.events.emit(session_id, "annotation.created", path, actor=author,
                                   annotation_id=aid, start_line=start_line, end_line=end_line)
        return self._annotation(session_id, aid)

    def _line_count(self, content_hash: str) -> int:
        """Lines as an editor numbers them: a last line without a newline still counts."""
        objects = self.store.objects
        rec = objects.file(content_hash)
        if rec.size == 0:
            return 0
        count, last = 0, b""
        for piece in objects.iter_range(rec, 0, rec.size):
            count += piece.count(b"\n")
            last = piece[-1:] or last
        return count + (last != b"\n")

    def _annotation(self, session_id: str, annotation_id: str) -> AnnotationRecord:
        return AnnotationRecord(*self._row("annotations", _ANN_COLS, "ann", "annotation",
                                           session_id, annotation_id))

    def list_annotations(self, session_id: str, path: str, page_size: int,
                         page_token: str) -> tuple[list[AnnotationRecord], str]:
        self.store.session(session_id)
        where, args = _under(paths.normalize(path))
        rows = self._page("annotations", _ANN_COLS, session_id, where, args, page_size,
                          page_token)
        return _paged([AnnotationRecord(*r) for r in rows], page_size)

    def delete_annotation(self, session_id: str, annotation_id: str) -> AnnotationRecord:
        with self.db.write():
            self._open(session_id)
            ann = self._annotation(session_id, annotation_id)
            self.db.execute("DELETE FROM annotations WHERE id=?", (annotation_id,))
            self.store.events.emit(session_id, "annotation.deleted", ann.path,
                                   annotation_id=annotation_id)
        return ann

    # ---- approvals
    def request_approval(self, session_id: str, requester: str, title: str) -> ApprovalRecord:
        _text(requester, "requester", MAX_NAME_BYTES)
        _text(title, "title", MAX_TITLE_BYTES)
        aid = new_id("apr")
        with self.db.write():
            rec = self._open(session_id)
            # Inside the write lock, so no write can slip between reading the
            # root and binding the request to it.
            root = self.sessions.snapshot(rec).root
            self.db.execute(
                f"INSERT INTO approvals({_APR_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (aid, session_id, root, requester, "", PENDING, "", title, time.time_ns(), 0),
            )
            self.store.events.emit(session_id, "approval.requested", actor=requester,
                                   approval_id=aid, root_hash=root)
        return self.get_approval(session_id, aid)

    def get_approval(self, session_id: str, approval_id: str) -> ApprovalRecord:
        rec = self.store.session(session_id)
        return self._approval(session_id, approval_id, self._root(rec))

    def _approval(self, session_id: str, approval_id: str, current: str) -> ApprovalRecord:
        row = self._row("approvals", _APR_COLS, "apr", "approval", session_id, approval_id)
        return _approval(row, current)

    def list_approvals(self, session_id: str, state: int, page_size: int,
                       page_token: str) -> tuple[list[ApprovalRecord], str]:
        """Newest first, like commits and checkpoints: the latest decision matters most."""
        rec = self.store.session(session_id)
        current = self._root(rec)
        where, args = {
            0: ("", ()),
            PENDING: ("AND state=?", (PENDING,)),
            REJECTED: ("AND state=?", (REJECTED,)),
            APPROVED: ("AND state=? AND root_hash=?", (APPROVED, current)),
            STALE: ("AND state=? AND root_hash<>?", (APPROVED, current)),
        }.get(state, (None, ()))
        if where is None:
            raise InvalidArgument(f"unknown approval state {state}", state=state)
        rows = self._page("approvals", _APR_COLS, session_id, where, args, page_size, page_token,
                          newest_first=True)
        return _paged([_approval(r, current) for r in rows], page_size)

    def decide(self, session_id: str, approval_id: str, reviewer: str, reason: str, *,
               approve: bool) -> ApprovalRecord:
        if not reviewer.strip():
            raise InvalidArgument("a decision needs a reviewer")
        if not approve and not reason.strip():
            raise InvalidArgument("a rejection needs a reason")
        _text(reviewer, "reviewer", MAX_NAME_BYTES)
        _text(reason, "reason", MAX_BODY_BYTES)
        with self.db.write():
            rec = self._open(session_id)
            current = self.sessions.snapshot(rec).root
            apr = self._approval(session_id, approval_id, current)
            if apr.state != PENDING:
                raise FailedPrecondition(
                    f"approval {approval_id} is already {_state_name(apr.state)}",
                    approval_id=approval_id, state=_state_name(apr.state))
            if approve and rec.policy.get("separationOfDuties") and apr.requester == reviewer:
                # The requester stands for the changes under review; for API
                # tokens both names are the authenticated principals.
                raise PermissionDenied(
                    f"separation_of_duties: {reviewer} requested approval {approval_id} "
                    "and may not approve it", approval_id=approval_id)
            if approve and apr.root_hash != current:
                # Approving would bless a state the reviewer can no longer see;
                # a rejection grants nothing, so it may still close the request.
                raise FailedPrecondition(
                    f"the session changed since approval {approval_id} was requested: "
                    "request approval of the current state", approval_id=approval_id,
                    root_hash=apr.root_hash, current_root=current)
            self.db.execute(
                "UPDATE approvals SET state=?, reviewer=?, reason=?, decided_ns=? WHERE id=?",
                (APPROVED if approve else REJECTED, reviewer, reason, time.time_ns(), approval_id),
            )
            self.store.events.emit(
                session_id, "approval.approved" if approve else "approval.rejected",
                actor=reviewer, approval_id=approval_id, root_hash=apr.root_hash, reason=reason)
            return self._approval(session_id, approval_id, current)

    def approvals_for_commit(self, session_id: str, root: str) -> list[str]:
        """Approved approvals of exactly `root`, one per reviewer (the earliest).

        `minApprovals` counts people, not clicks: one reviewer approving two
        requests for the same state is still one approval.
        """
        rows = self.db.query(
            "SELECT MIN(id) FROM approvals WHERE session_id=? AND state=? AND root_hash=? "
            "GROUP BY reviewer ORDER BY MIN(id)",
            (session_id, APPROVED, root),
        )
        return [r[0] for r in rows]

    # ---- helpers
    def _open(self, session_id: str) -> SessionRecord:
        rec = self.store.session(session_id)
        if rec.state == ARCHIVED:
            raise FailedPrecondition(f"session {session_id} is archived (read-only)",
                                     session_id=session_id)
        return rec

    def _root(self, rec: SessionRecord) -> str:
        return self.sessions.snapshot(rec).root

    def _page(self, table: str, cols: str, session_id: str, where: str, args: tuple,
              page_size: int, page_token: str, *, newest_first: bool = False) -> list[tuple]:
        if page_token and not _TOKEN_RE.match(page_token):
            raise InvalidArgument(f"bad page_token {page_token!r}")
        op, order = ("<", "DESC") if newest_first else (">", "ASC")
        return self.db.query(
            f"SELECT {cols} FROM {table} WHERE session_id=? {where} AND (?='' OR id{op}?) "
            f"ORDER BY id {order} LIMIT ?",
            (session_id, *args, page_token, page_token, _limit(page_size) + 1),
        )


def _approval(row: tuple, current: str) -> ApprovalRecord:
    apr = ApprovalRecord(*row)
    if apr.state == APPROVED and apr.root_hash != current:
        apr.state = STALE
    return apr


def _state_name(state: int) -> str:
    return pb.ApprovalState(state).name.lower()


def _limit(page_size: int) -> int:
    return min(page_size or DEFAULT_PAGE, MAX_PAGE)


def _paged(items: list, page_size: int) -> tuple[list, str]:
    limit = _limit(page_size)
    more = len(items) > limit
    items = items[:limit]
    return items, (items[-1].id if more else "")


def _under(path: str) -> tuple[str, tuple]:
    """SQL for "at or below `path`" ('' = everywhere): a directory filter finds its files."""
    if not path:
        return "", ()
    return "AND (path=? OR (path>? AND path<?))", (path, path + "/", path + "0")


def _text(value: str, what: str, max_bytes: int, *, required: bool = False) -> None:
    if required and not value.strip():
        raise InvalidArgument(f"{what} is required")
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise InvalidArgument(f"{what} is {size} bytes; the limit is {max_bytes}",
                              field=what, limit=max_bytes)
