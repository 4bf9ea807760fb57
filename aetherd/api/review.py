"""Proto adapter for the review service: comments, annotations, approvals."""

from __future__ import annotations

from aether import pb
from aetherd.api.convert import ts
from aetherd.api.core import Runner
from aetherd.auth.principal import acting_name
from aetherd.services.review import AnnotationRecord, ApprovalRecord, CommentRecord, Review
from aetherd.services.state import Store


class ReviewApi(pb.ReviewServiceBase):
    def __init__(self, store: Store, run: Runner) -> None:
        self.store, self.run = store, run
        self.r = Review(store)

    async def create_comment(self, message: pb.CreateCommentRequest) -> pb.Comment:
        rec = await self.run(self.r.create_comment, message.session_id, message.parent_id,
                             acting_name(message.author), message.body, message.path)
        return _comment(rec)

    async def list_comments(self, message: pb.ListCommentsRequest) -> pb.ListCommentsResponse:
        recs, token = await self.run(self.r.list_comments, message.session_id, message.path,
                                     message.page_size, message.page_token)
        return pb.ListCommentsResponse(comments=[_comment(r) for r in recs],
                                       next_page_token=token)

    async def create_annotation(self, message: pb.CreateAnnotationRequest) -> pb.Annotation:
        rec = await self.run(self.r.create_annotation, message.session_id, message.path,
                             message.start_line, message.end_line, acting_name(message.author), message.body,
                             message.severity)
        return _annotation(rec)

    async def list_annotations(
        self, message: pb.ListAnnotationsRequest
    ) -> pb.ListAnnotationsResponse:
        recs, token = await self.run(self.r.list_annotations, message.session_id, message.path,
                                     message.page_size, message.page_token)
        return pb.ListAnnotationsResponse(annotations=[_annotation(r) for r in recs],
                                          next_page_token=token)

    async def delete_annotation(self, message: pb.DeleteAnnotationRequest) -> pb.Annotation:
        rec = await self.run(self.r.delete_annotation, message.session_id,
                             message.annotation_id)
        return _annotation(rec)

    async def request_approval(self, message: pb.RequestApprovalRequest) -> pb.Approval:
        rec = await self.run(self.r.request_approval, message.session_id,
                             acting_name(message.requester), message.title)
        return _approval(rec)

    async def list_approvals(self, message: pb.ListApprovalsRequest) -> pb.ListApprovalsResponse:
        recs, token = await self.run(self.r.list_approvals, message.session_id,
                                     int(message.state), message.page_size, message.page_token)
        return pb.ListApprovalsResponse(approvals=[_approval(r) for r in recs],
                                        next_page_token=token)

    async def approve(self, message: pb.DecideApprovalRequest) -> pb.Approval:
        return await self._decide(message, approve=True)

    async def reject(self, message: pb.DecideApprovalRequest) -> pb.Approval:
        return await self._decide(message, approve=False)

    async def _decide(self, message: pb.DecideApprovalRequest, *, approve: bool) -> pb.Approval:
        rec = await self.run(self.r.decide, message.session_id, message.approval_id,
                             acting_name(message.reviewer), message.reason, approve=approve)
        return _approval(rec)


def _comment(rec: CommentRecord) -> pb.Comment:
    return pb.Comment(id=rec.id, session_id=rec.session_id, parent_id=rec.parent_id,
                      author=rec.author, body=rec.body, path=rec.path,
                      create_time=ts(rec.created_ns))


def _annotation(rec: AnnotationRecord) -> pb.Annotation:
    return pb.Annotation(id=rec.id, session_id=rec.session_id, path=rec.path,
                         start_line=rec.start_line, end_line=rec.end_line, author=rec.author,
                         body=rec.body, severity=rec.severity, file_hash=rec.file_hash,
                         create_time=ts(rec.created_ns))


def _approval(rec: ApprovalRecord) -> pb.Approval:
    return pb.Approval(id=rec.id, session_id=rec.session_id, root_hash=rec.root_hash,
                       requester=rec.requester, reviewer=rec.reviewer,
                       state=pb.ApprovalState(rec.state), reason=rec.reason, title=rec.title,
                       create_time=ts(rec.created_ns), decide_time=ts(rec.decided_ns))
