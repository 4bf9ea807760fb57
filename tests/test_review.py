"""Review over real HTTP and real gRPC: threads, annotations, approvals bound to state."""

from __future__ import annotations

import pytest
import sqlite_utils
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from aether import pb


def new_session(http, **body) -> str:
    r = http.post("/v1/sessions", json=body)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def put(http, sid: str, path: str, data: bytes) -> str:
    r = http.put(f"/v1/sessions/{sid}/files/{path}", content=data)
    assert r.status_code in (200, 201), r.text
    return r.headers["ETag"].strip('"')


def call(http, method: str, url: str, status: int, **kw) -> dict:
    r = http.request(method, url, **kw)
    assert r.status_code == status, r.text
    return r.json()


def refused(http, method: str, url: str, status: int, code: str, **kw) -> dict:
    body = call(http, method, url, status, **kw)
    assert body["error"]["code"] == code, body
    return body["error"]


def events(daemon, http, sid: str) -> list[dict]:
    """The session's events through the API, or straight from the store while
    the events service is still answering 501."""
    r = http.get(f"/v1/sessions/{sid}/events")
    if r.status_code != 501:
        assert r.status_code == 200, r.text
        return [{"type": e["type"], "path": e.get("path", ""), "actor": e.get("actor", ""),
                 "attributes": e.get("attributes", {})} for e in r.json().get("events", [])]
    import json

    db = sqlite_utils.Database(daemon.data_dir / "meta.db")
    try:
        rows = db["events"].rows_where("session_id = ?", [sid], order_by="cursor")
        return [{"type": e["type"], "path": e["path"], "actor": e["actor"],
                 "attributes": json.loads(e["attributes"])} for e in rows]
    finally:
        db.close()


def require_approval(http, sid: str, minimum: int = 0) -> None:
    policy: dict = {"commitRequiresApproval": True}
    if minimum:
        policy["minApprovals"] = minimum
    s = call(http, "PATCH", f"/v1/sessions/{sid}", 200, json={"policy": policy})
    assert s["policy"]["commitRequiresApproval"] is True


def commit(http, sid: str, status: int = 201) -> dict:
    return call(http, "POST", f"/v1/sessions/{sid}/commits", status, json={"message": "ship"})


def request(http, sid: str, **body) -> dict:
    return call(http, "POST", f"/v1/sessions/{sid}/approvals", 201,
                json={"requester": "agent", **body})


def decide(http, sid: str, aid: str, verb: str, status: int = 200, **body) -> dict:
    return call(http, "POST", f"/v1/sessions/{sid}/approvals/{aid}:{verb}", status, json=body)


def approvals(http, sid: str, query: str = "") -> dict[str, str]:
    listed = call(http, "GET", f"/v1/sessions/{sid}/approvals{query}", 200)
    return {a["id"]: a["state"] for a in listed.get("approvals", [])}


# ---- comments
def test_comment_threads(daemon, http):
    sid = new_session(http)
    base = f"/v1/sessions/{sid}/comments"
    top = call(http, "POST", base, 201, json={"author": "ann", "body": "why?", "path": "/src/a.py"})
    assert (top["path"], top.get("parentId", ""), top["author"]) == ("src/a.py", "", "ann")
    assert top["id"].startswith("cmn_") and top["createTime"]
    reply = call(http, "POST", base, 201, json={"parentId": top["id"], "body": "because"})
    deeper = call(http, "POST", base, 201, json={"parentId": reply["id"], "body": "ok",
                                                 "author": "bo", "path": "src/a.py"})
    # A reply joins its parent's thread and inherits its path.
    assert (reply["parentId"], reply["path"]) == (top["id"], "src/a.py")
    assert (deeper["parentId"], deeper["path"]) == (reply["id"], "src/a.py")
    general = call(http, "POST", base, 201, json={"body": "looks good overall"})
    assert general.get("path", "") == ""

    listed = call(http, "GET", base, 200)["comments"]
    assert [c["id"] for c in listed] == [top["id"], reply["id"], deeper["id"], general["id"]]
    assert [c["id"] for c in call(http, "GET", base + "?path=src", 200)["comments"]] == [
        top["id"], reply["id"], deeper["id"]]
    assert call(http, "GET", base + "?path=src/a", 200).get("comments", []) == []

    seen, token = [], ""
    while True:
        page = call(http, "GET", f"{base}?page_size=3&page_token={token}", 200)
        seen += [c["id"] for c in page["comments"]]
        token = page.get("nextPageToken", "")
        if not token:
            break
    assert seen == [c["id"] for c in listed]

    other = new_session(http)
    elsewhere = call(http, "POST", f"/v1/sessions/{other}/comments", 201, json={"body": "x"})
    # Decision: an unknown parent is not_found, whatever the reason (malformed id,
    # deleted, or a comment of another session) — ids are opaque.
    for parent in ("cmn_00000000000000000000000000", "nope", elsewhere["id"]):
        refused(http, "POST", base, 404, "not_found", json={"parentId": parent, "body": "x"})
    refused(http, "POST", base, 400, "invalid_argument",
            json={"parentId": top["id"], "body": "x", "path": "other.py"})
    refused(http, "POST", base, 400, "invalid_argument", json={"body": "   "})
    refused(http, "POST", base, 400, "invalid_argument", json={"body": "x", "path": "../up"})
    big = refused(http, "POST", base, 400, "invalid_argument", json={"body": "x" * (64 * 1024 + 1)})
    assert "65536" in big["message"]
    call(http, "POST", base, 201, json={"body": "x" * (64 * 1024)})
    refused(http, "GET", base + "?page_token=garbage", 400, "invalid_argument")
    refused(http, "POST", "/v1/sessions/ses_00000000000000000000000000/comments", 404,
            "not_found", json={"body": "x"})

    kinds = [(e["type"], e["path"], e["actor"]) for e in events(daemon, http, sid)
             if e["type"] == "comment.created"]
    assert kinds[:3] == [("comment.created", "src/a.py", "ann"), ("comment.created", "src/a.py", ""),
                         ("comment.created", "src/a.py", "bo")]


def test_review_writes_refused_on_archived_sessions(http):
    sid = new_session(http)
    put(http, sid, "f.txt", b"a\n")
    call(http, "POST", f"/v1/sessions/{sid}:archive", 200)
    refused(http, "POST", f"/v1/sessions/{sid}/comments", 412, "failed_precondition",
            json={"body": "x"})
    refused(http, "POST", f"/v1/sessions/{sid}/approvals", 412, "failed_precondition", json={})
    assert call(http, "GET", f"/v1/sessions/{sid}/comments", 200).get("comments", []) == []


def test_review_allowed_on_read_only_policy(http):
    sid = new_session(http, policy={"readOnly": True})
    call(http, "POST", f"/v1/sessions/{sid}/comments", 201, json={"body": "frozen, reviewable"})
    assert request(http, sid)["state"] == "APPROVAL_STATE_PENDING"


# ---- annotations
def test_annotations(daemon, http):
    sid = new_session(http)
    etag = put(http, sid, "src/a.py", b"one\ntwo\nthree")  # last line without newline
    put(http, sid, "src/b.py", b"x\n")
    put(http, sid, "empty", b"")
    base = f"/v1/sessions/{sid}/annotations"
    a = call(http, "POST", base, 201, json={"path": "/src/a.py", "startLine": 2, "endLine": 3,
                                            "author": "lint", "body": "shadowed", "severity": "warning"})
    assert (a["path"], a["startLine"], a["endLine"], a["severity"]) == ("src/a.py", 2, 3, "warning")
    assert a["fileHash"] == etag and a["id"].startswith("ann_")
    b = call(http, "POST", base, 201, json={"path": "src/b.py", "startLine": 1, "endLine": 1,
                                            "body": "ok"})

    for start, end in ((0, 1), (3, 2), (0, 0), (1, 4), (4, 4)):
        refused(http, "POST", base, 400, "invalid_argument",
                json={"path": "src/a.py", "startLine": start, "endLine": end, "body": "x"})
    refused(http, "POST", base, 400, "invalid_argument",
            json={"path": "empty", "startLine": 1, "endLine": 1, "body": "x"})
    refused(http, "POST", base, 404, "not_found",
            json={"path": "src/missing.py", "startLine": 1, "endLine": 1, "body": "x"})
    refused(http, "POST", base, 412, "failed_precondition",
            json={"path": "src", "startLine": 1, "endLine": 1, "body": "x"})
    refused(http, "POST", base, 400, "invalid_argument",
            json={"path": "", "startLine": 1, "endLine": 1, "body": "x"})
    refused(http, "POST", base, 400, "invalid_argument",
            json={"path": "src/a.py", "startLine": 1, "endLine": 1, "body": ""})

    assert [x["id"] for x in call(http, "GET", base, 200)["annotations"]] == [a["id"], b["id"]]
    only_a = call(http, "GET", base + "?path=src/a.py", 200)["annotations"]
    assert [x["id"] for x in only_a] == [a["id"]]
    page = call(http, "GET", base + "?page_size=1", 200)
    assert len(page["annotations"]) == 1 and page["nextPageToken"] == a["id"]

    # The annotation keeps the hash of the content it was made on: a client can
    # tell when the lines it points at have changed since.
    put(http, sid, "src/a.py", b"changed\n")
    assert call(http, "GET", base + "?path=src/a.py", 200)["annotations"][0]["fileHash"] == etag

    gone = call(http, "DELETE", f"{base}/{a['id']}", 200)
    assert gone["id"] == a["id"]
    refused(http, "DELETE", f"{base}/{a['id']}", 404, "not_found")
    refused(http, "DELETE", f"{base}/ann_nope", 404, "not_found")
    assert [x["id"] for x in call(http, "GET", base, 200)["annotations"]] == [b["id"]]

    seen = [(e["type"], e["path"], e["attributes"].get("annotation_id"))
            for e in events(daemon, http, sid) if e["type"].startswith("annotation.")]
    assert seen == [("annotation.created", "src/a.py", a["id"]),
                    ("annotation.created", "src/b.py", b["id"]),
                    ("annotation.deleted", "src/a.py", a["id"])]


# ---- approvals
def test_approval_is_bound_to_the_state(daemon, http):
    sid = new_session(http)
    require_approval(http, sid)
    put(http, sid, "app.py", b"v1\n")
    err = refused(http, "POST", f"/v1/sessions/{sid}/commits", 412, "failed_precondition",
                  json={"message": "ship"})
    assert "commit_requires_approval" in err["message"]

    ckp = call(http, "POST", f"/v1/sessions/{sid}/checkpoints", 201, json={})["id"]
    first = request(http, sid, title="release v1")
    root_v1 = call(http, "GET", f"/v1/sessions/{sid}", 200)["rootHash"]
    assert (first["state"], first["rootHash"], first["title"]) == (
        "APPROVAL_STATE_PENDING", root_v1, "release v1")
    commit(http, sid, 412)  # pending is not approved

    ok = decide(http, sid, first["id"], "approve", reviewer="rev", reason="lgtm")
    assert (ok["state"], ok["reviewer"], ok["reason"]) == ("APPROVAL_STATE_APPROVED", "rev", "lgtm")
    assert ok["decideTime"]

    put(http, sid, "app.py", b"v2\n")  # the approved state is gone
    assert approvals(http, sid) == {first["id"]: "APPROVAL_STATE_STALE"}
    assert list(approvals(http, sid, "?state=APPROVAL_STATE_STALE")) == [first["id"]]
    assert approvals(http, sid, "?state=APPROVAL_STATE_APPROVED") == {}
    refused(http, "POST", f"/v1/sessions/{sid}/commits", 412, "failed_precondition",
            json={"message": "ship"})
    # A stale approval is decided already: it cannot be approved again.
    decide(http, sid, first["id"], "approve", 412, reviewer="rev")

    second = request(http, sid)
    assert second["rootHash"] != first["rootHash"]
    decide(http, sid, second["id"], "approve", reviewer="rev")
    made = commit(http, sid)
    assert made["approvalIds"] == [second["id"]]
    assert call(http, "GET", f"/v1/commits/{made['id']}", 200)["approvalIds"] == [second["id"]]
    # Committing does not change the state, so the approval still holds.
    assert approvals(http, sid)[second["id"]] == "APPROVAL_STATE_APPROVED"

    # Staleness is derived, not stored: restore the first state exactly and its
    # approval counts again.
    put(http, sid, "app.py", b"v3\n")
    call(http, "POST", f"/v1/sessions/{sid}:restore", 200, json={"checkpointId": ckp})
    assert approvals(http, sid) == {first["id"]: "APPROVAL_STATE_APPROVED",
                                    second["id"]: "APPROVAL_STATE_STALE"}
    assert commit(http, sid)["approvalIds"] == [first["id"]]

    seen = [(e["type"], e["actor"], e["attributes"].get("approval_id"))
            for e in events(daemon, http, sid) if e["type"].startswith(("approval.", "commit."))]
    assert seen == [
        ("approval.requested", "agent", first["id"]), ("approval.approved", "rev", first["id"]),
        ("approval.requested", "agent", second["id"]), ("approval.approved", "rev", second["id"]),
        # no author given: the session's owner, who made it (the admin token)
        ("commit.created", "admin", None), ("commit.created", "admin", None),
    ]


def test_min_approvals_counts_distinct_reviewers(http):
    sid = new_session(http)
    require_approval(http, sid, minimum=2)
    put(http, sid, "f", b"x")
    a, b, c = (request(http, sid)["id"] for _ in range(3))
    decide(http, sid, a, "approve", reviewer="alice")
    assert "1 of the 2" in refused(http, "POST", f"/v1/sessions/{sid}/commits", 412,
                                   "failed_precondition", json={"message": "m"})["message"]
    decide(http, sid, b, "approve", reviewer="alice")  # the same person again
    commit(http, sid, 412)
    decide(http, sid, c, "approve", reviewer="bob")
    assert commit(http, sid)["approvalIds"] == [a, c]


def test_without_the_policy_commits_need_no_approval(http):
    sid = new_session(http)
    put(http, sid, "f", b"x")
    assert commit(http, sid).get("approvalIds", []) == []


def test_decisions(daemon, http):
    sid = new_session(http)
    put(http, sid, "f", b"x")
    aid = request(http, sid)["id"]
    refused(http, "POST", f"/v1/sessions/{sid}/approvals/{aid}:reject", 400, "invalid_argument",
            json={"reviewer": "rev"})
    refused(http, "POST", f"/v1/sessions/{sid}/approvals/{aid}:reject", 400, "invalid_argument",
            json={"reviewer": "rev", "reason": "  "})
    refused(http, "POST", f"/v1/sessions/{sid}/approvals/{aid}:approve", 400, "invalid_argument",
            json={"reason": "no reviewer"})
    no = decide(http, sid, aid, "reject", reviewer="rev", reason="tests missing")
    assert (no["state"], no["reason"]) == ("APPROVAL_STATE_REJECTED", "tests missing")
    for verb in ("reject", "approve"):
        err = refused(http, "POST", f"/v1/sessions/{sid}/approvals/{aid}:{verb}", 412,
                      "failed_precondition", json={"reviewer": "rev", "reason": "again"})
        assert "already rejected" in err["message"]

    # A request whose state moved on cannot be approved (the reviewer would be
    # blessing content they can no longer see), but it can be rejected.
    old = request(http, sid)["id"]
    put(http, sid, "f", b"y")
    err = refused(http, "POST", f"/v1/sessions/{sid}/approvals/{old}:approve", 412,
                  "failed_precondition", json={"reviewer": "rev"})
    assert "changed since" in err["message"]
    decide(http, sid, old, "reject", reviewer="rev", reason="outdated")

    refused(http, "POST", f"/v1/sessions/{sid}/approvals/apr_00000000000000000000000000:approve",
            404, "not_found", json={"reviewer": "rev"})
    assert approvals(http, sid, "?state=APPROVAL_STATE_REJECTED") == {
        old: "APPROVAL_STATE_REJECTED", aid: "APPROVAL_STATE_REJECTED"}
    listed = call(http, "GET", f"/v1/sessions/{sid}/approvals?page_size=1", 200)
    assert [x["id"] for x in listed["approvals"]] == [old]  # newest first
    rest = call(http, "GET", f"/v1/sessions/{sid}/approvals?page_token={listed['nextPageToken']}",
                200)
    assert [x["id"] for x in rest["approvals"]] == [aid] and not rest.get("nextPageToken")

    rejected = [e for e in events(daemon, http, sid) if e["type"] == "approval.rejected"]
    assert [(e["actor"], e["attributes"]["reason"]) for e in rejected] == [
        ("rev", "tests missing"), ("rev", "outdated")]


# ---- gRPC
async def test_review_over_grpc(channel, daemon):
    md = {"authorization": f"Bearer {daemon.token}"}
    sessions = pb.SessionServiceStub(channel, metadata=md)
    files = pb.FileServiceStub(channel, metadata=md)
    persistence = pb.PersistenceServiceStub(channel, metadata=md)
    review = pb.ReviewServiceStub(channel, metadata=md)

    s = await sessions.create_session(pb.CreateSessionRequest(
        policy=pb.SessionPolicy(commit_requires_approval=True)))
    sid = s.id
    f = await files.write_file(pb.WriteFileRequest(session_id=sid, path="a.txt", data=b"1\n2\n"))

    top = await review.create_comment(pb.CreateCommentRequest(session_id=sid, body="hm",
                                                              path="a.txt"))
    reply = await review.create_comment(pb.CreateCommentRequest(session_id=sid, body="yes",
                                                                parent_id=top.id))
    listed = await review.list_comments(pb.ListCommentsRequest(session_id=sid, path="a.txt"))
    assert [(c.id, c.parent_id) for c in listed.comments] == [(top.id, ""), (reply.id, top.id)]

    ann = await review.create_annotation(pb.CreateAnnotationRequest(
        session_id=sid, path="a.txt", start_line=1, end_line=2, body="b", severity="info"))
    assert ann.file_hash == f.hash
    anns = await review.list_annotations(pb.ListAnnotationsRequest(session_id=sid))
    assert [a.id for a in anns.annotations] == [ann.id]
    gone = await review.delete_annotation(pb.DeleteAnnotationRequest(session_id=sid,
                                                                     annotation_id=ann.id))
    assert gone.id == ann.id

    apr = await review.request_approval(pb.RequestApprovalRequest(session_id=sid, requester="a"))
    assert apr.state == pb.ApprovalState.PENDING
    assert apr.root_hash == (await sessions.get_session(pb.GetSessionRequest(session_id=sid))).root_hash
    done = await review.approve(pb.DecideApprovalRequest(session_id=sid, approval_id=apr.id,
                                                         reviewer="r"))
    assert done.state == pb.ApprovalState.APPROVED
    await files.write_file(pb.WriteFileRequest(session_id=sid, path="a.txt", data=b"3\n"))
    stale = await review.list_approvals(pb.ListApprovalsRequest(
        session_id=sid, state=pb.ApprovalState.STALE))
    assert [a.id for a in stale.approvals] == [apr.id]
    with pytest.raises(GRPCError) as err:
        await persistence.create_commit(pb.CreateCommitRequest(session_id=sid, message="m"))
    assert err.value.status == Status.FAILED_PRECONDITION

    fresh = await review.request_approval(pb.RequestApprovalRequest(session_id=sid))
    await review.approve(pb.DecideApprovalRequest(session_id=sid, approval_id=fresh.id,
                                                  reviewer="r"))
    made = await persistence.create_commit(pb.CreateCommitRequest(session_id=sid, message="m"))
    assert made.approval_ids == [fresh.id]

    with pytest.raises(GRPCError) as err:
        await review.reject(pb.DecideApprovalRequest(session_id=sid, approval_id=fresh.id,
                                                     reviewer="r", reason="late"))
    assert err.value.status == Status.FAILED_PRECONDITION
    with pytest.raises(GRPCError) as err:
        await review.reject(pb.DecideApprovalRequest(session_id=sid, approval_id=apr.id,
                                                     reviewer="r"))
    assert err.value.status == Status.INVALID_ARGUMENT
    with pytest.raises(GRPCError) as err:
        await review.create_annotation(pb.CreateAnnotationRequest(
            session_id=sid, path="a.txt", start_line=2, end_line=1, body="b"))
    assert err.value.status == Status.INVALID_ARGUMENT
    with pytest.raises(GRPCError) as err:
        await review.create_comment(pb.CreateCommentRequest(session_id=sid, body="x",
                                                            parent_id="cmn_missing"))
    assert err.value.status == Status.NOT_FOUND
