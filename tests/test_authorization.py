"""Identities and authorization against a real daemon over TCP: API tokens,
each role against each route, isolation between sessions, revocation, who
did what, separation of duties; and the same guard over gRPC.

The matrix is driven by the rule table (aetherd/auth/rules.py) and the route
table (aetherd/http/routes.py): a route added without a rule stops the daemon
from starting, and a route whose rule is not a session role must be listed in
NON_ROLE_ROUTES here, each with its own test below.
"""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest
from grpclib import GRPCError
from grpclib.client import Channel
from grpclib.const import Status

from aether import pb
from aetherd.auth.principal import Role
from aetherd.auth.rules import RULES
from aetherd.http.routes import ROUTES, Route
from aetherd.http.rpcs import all_rpcs

ORDER: list[Role | None] = [None, Role.READER, Role.REVIEWER, Role.WRITER, Role.OWNER]
NON_ROLE_ROUTES = {
    "sessions.create_session", "sessions.list_sessions", "sessions.fork_session",
    "persistence.get_commit", "templates.create_template", "templates.list_templates",
    "templates.get_template", "templates.delete_template", "observability.health",
    "identity.create_token", "identity.list_tokens", "identity.revoke_token",
    "identity.who_am_i", "sessions.list_tombstones", "sessions.get_tombstone",
}


def key(route: Route) -> str:
    return f"{route.service}.{route.rpc}"


def as_bearer(daemon, bearer: str) -> httpx.Client:
    return httpx.Client(base_url=daemon.http_url, timeout=30,
                        headers={"Authorization": f"Bearer {bearer}"})


def new_token(http: httpx.Client, principal: str, *scopes: str, **extra) -> str:
    r = http.post("/v1/tokens", json={"principal": principal, "scopes": list(scopes), **extra})
    assert r.status_code == 201, r.text
    return r.json()["secret"]


def new_session(http: httpx.Client, **body) -> str:
    r = http.post("/v1/sessions", json=body)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def code(r: httpx.Response) -> str:
    try:
        return r.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return ""


def outcome(r: httpx.Response, session_id: str) -> str:
    """"hidden" (the session looks absent), "denied", or "allowed" (the guard
    let it through; the call itself may still fail on its made-up ids)."""
    if r.status_code == 404 and code(r) == "not_found" and session_id in r.text:
        return "hidden"
    if r.status_code == 403 and code(r) == "permission_denied":
        return "denied"
    assert r.status_code != 401, r.text
    return "allowed"


def request(client: httpx.Client, route: Route, session_id: str) -> httpx.Response:
    values = {"session_id": session_id, "path": "f.txt", "key": "k", "checkpoint_id": "ckp_1",
              "commit_id": "cmt_1", "annotation_id": "ann_1", "approval_id": "apr_1",
              "name": "tpl", "token_id": "tok_1"}
    url = route.path
    for name, value in values.items():
        url = url.replace("{" + name + "}", value)
    kw: dict = {}
    if route.body == "json":
        kw["json"] = {}
    elif route.body == "raw":
        kw["content"] = b"x"
    return client.request(route.method, url, **kw)


def test_every_rpc_has_a_rule_and_every_rule_an_rpc():
    rpcs = {f"{s}.{n}" for s, n in all_rpcs()}
    assert set(RULES) == rpcs
    role_free = {key(r) for r in ROUTES if not isinstance(RULES[key(r)].need, Role)}
    assert role_free == NON_ROLE_ROUTES, "give the new route a test below and list it here"


SESSION_ROUTES = [r for r in ROUTES if isinstance(RULES[key(r)].need, Role)]


@pytest.mark.parametrize("route", SESSION_ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_each_role_against_each_session_route(daemon, http, route):
    sid = new_session(http)
    http.put(f"/v1/sessions/{sid}/files/f.txt", content=b"hello\n").raise_for_status()
    need = RULES[key(route)].need
    seen = []
    for role in ORDER:  # ascending, so an owner's delete comes last
        scopes = [f"{sid}:{role.name.lower()}"] if role else []
        with as_bearer(daemon, new_token(http, f"p-{role.name if role else 'none'}",
                                         *scopes)) as c:
            got = outcome(request(c, route, sid), sid)
        want = "hidden" if role is None else ("allowed" if role >= need else "denied")
        seen.append((role.name if role else None, got, want))
    assert [g for _, g, _ in seen] == [w for _, _, w in seen], seen


def test_a_batch_needs_a_writer_of_its_own_session(daemon, http):
    """fs:apply is one request: a writer's batch runs, a reviewer's is refused
    whole (not op by op), and the session its ops name is never looked at."""
    sid, other = new_session(http), new_session(http)
    ops = [{"write": {"path": "w.txt", "data": "dw==", "sessionId": other}},
           {"mkdir": {"path": "d"}}]
    for role, status in (("reviewer", 403), ("writer", 200)):
        with as_bearer(daemon, new_token(http, f"batch-{role}", f"{sid}:{role}")) as c:
            r = c.post(f"/v1/sessions/{sid}/fs:apply", json={"ops": ops})
        assert r.status_code == status, r.text
        if status == 403:
            assert code(r) == "permission_denied"
    assert [x["info"]["path"] for x in r.json()["results"]] == ["w.txt", "d"]
    with as_bearer(daemon, new_token(http, "batch-writer-elsewhere", f"{sid}:writer")) as c:
        r = c.post(f"/v1/sessions/{other}/fs:apply", json={"ops": ops})
    assert outcome(r, other) == "hidden"
    names = {e["path"] for e in http.get(f"/v1/sessions/{other}/manifest").json()["entries"]}
    assert names == set()


def test_follows_need_a_reader(daemon, http):
    sid = new_session(http)
    reader = new_token(http, "follower", f"{sid}:reader")
    nobody = new_token(http, "stranger")
    for path in ("bus", "events"):
        with as_bearer(daemon, nobody) as c:
            r = c.get(f"/v1/sessions/{sid}/{path}", headers={"Accept": "text/event-stream"})
            assert outcome(r, sid) == "hidden"
        with as_bearer(daemon, reader) as c, c.stream(
                "GET", f"/v1/sessions/{sid}/{path}",
                headers={"Accept": "text/event-stream"}) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")


def test_listing_shows_only_what_the_caller_may_see(daemon, http):
    mine, shared, hidden = (new_session(http, name=n) for n in ("mine", "shared", "hidden"))
    creator = new_token(http, "lister", "create", f"{shared}:reader")
    with as_bearer(daemon, creator) as c:
        own = c.post("/v1/sessions", json={"name": "own"}).json()
        assert own["owner"] == "lister"
        seen = {s["id"] for s in c.get("/v1/sessions").json()["sessions"]}
        assert seen == {shared, own["id"]}
        assert outcome(c.get(f"/v1/sessions/{hidden}"), hidden) == "hidden"
        assert outcome(c.get(f"/v1/sessions/{mine}/files/x"), mine) == "hidden"
        # the owner may do everything with what it created, delete included
        assert c.delete(f"/v1/sessions/{own['id']}").status_code == 200
        # and may not create a session in someone else's name
        r = c.post("/v1/sessions", json={"owner": "somebody-else"})
        assert (r.status_code, code(r)) == (403, "permission_denied")
    admin_seen = {s["id"] for s in http.get("/v1/sessions").json()["sessions"]}
    assert {mine, shared, hidden} <= admin_seen


def test_create_fork_and_templates_need_create_and_read_access(daemon, http):
    src = new_session(http)
    http.put(f"/v1/sessions/{src}/files/a", content=b"a").raise_for_status()
    ckp = http.post(f"/v1/sessions/{src}/checkpoints", json={}).json()["id"]
    plain = new_token(http, "plain", f"{src}:owner")
    creator = new_token(http, "maker", "create")
    both = new_token(http, "maker2", "create", f"{src}:reader")
    with as_bearer(daemon, plain) as c:  # owner of src, but no "create"
        for r in (c.post("/v1/sessions", json={}), c.post(f"/v1/sessions/{src}:fork", json={}),
                  c.post("/v1/templates", json={"name": "t1", "sessionId": src})):
            assert (r.status_code, code(r)) == (403, "permission_denied"), r.text
    with as_bearer(daemon, creator) as c:  # may create, may not read src
        assert c.post("/v1/sessions", json={}).status_code == 201
        for r in (c.post(f"/v1/sessions/{src}:fork", json={}),
                  c.post("/v1/sessions", json={"source": {"checkpoint": {"checkpointId": ckp}}}),
                  c.post("/v1/templates", json={"name": "t2", "checkpointId": ckp})):
            assert outcome(r, src) == "hidden", r.text
        r = c.post("/v1/sessions", json={"source": {"directory": {"path": "/tmp"}}})
        assert (r.status_code, code(r)) == (403, "permission_denied")
    with as_bearer(daemon, both) as c:
        fork = c.post(f"/v1/sessions/{src}:fork", json={}).json()
        assert fork["owner"] == "maker2"
        assert c.get(f"/v1/sessions/{fork['id']}/files/a").content == b"a"
        assert c.post("/v1/templates", json={"name": "t3", "sessionId": src}).status_code == 201
        assert c.get("/v1/templates/t3").status_code == 200
        assert "t3" in {t["name"] for t in c.get("/v1/templates").json()["templates"]}
        r = c.delete("/v1/templates/t3")
        assert (r.status_code, code(r)) == (403, "permission_denied")
    assert http.delete("/v1/templates/t3").status_code == 200


def test_a_commit_of_another_session_is_hidden_in_selectors(daemon, http):
    secret = new_session(http)
    http.put(f"/v1/sessions/{secret}/files/key", content=b"hunter2").raise_for_status()
    cmt = http.post(f"/v1/sessions/{secret}/commits", json={"message": "m"}).json()["id"]
    mine = new_session(http)
    writer = new_token(http, "snoop", f"{mine}:writer")
    with as_bearer(daemon, writer) as c:
        assert outcome(c.get(f"/v1/commits/{cmt}"), secret) == "hidden"
        for r in (c.get(f"/v1/sessions/{mine}/files/key", params={"at": cmt}),
                  c.get(f"/v1/sessions/{mine}/diff", params={"from": cmt}),
                  c.post(f"/v1/sessions/{mine}/fs:read", json={"paths": ["key"], "at": cmt})):
            assert outcome(r, secret) == "hidden", r.text
            assert b"hunter2" not in r.content


def test_a_batch_read_is_checked_like_a_single_read(daemon, http):
    """fs:read needs a reader of its session; a checkpoint or commit in `at` is
    checked against the session it belongs to, exactly as for a single read."""
    secret = new_session(http)
    http.put(f"/v1/sessions/{secret}/files/key", content=b"hunter2").raise_for_status()
    ckp = http.post(f"/v1/sessions/{secret}/checkpoints", json={}).json()["id"]
    mine = new_session(http)
    http.put(f"/v1/sessions/{mine}/files/mine", content=b"ok").raise_for_status()
    reader = new_token(http, "batch-reader", f"{mine}:reader")
    with as_bearer(daemon, reader) as c:
        r = c.post(f"/v1/sessions/{mine}/fs:read", json={"paths": ["mine", "key"]})
        assert r.status_code == 200, r.text
        assert [(f["data"], f["error"] and f["error"]["code"]) for f in r.json()["files"]] == [
            ("b2s=", None), ("", "not_found")]
        for at in (ckp, secret):
            single = c.get(f"/v1/sessions/{mine}/files/key", params={"at": at})
            batch = c.post(f"/v1/sessions/{mine}/fs:read", json={"paths": ["key"], "at": at})
            assert outcome(single, secret) == outcome(batch, secret) == "hidden", batch.text
            assert b"hunter2" not in batch.content
        assert outcome(c.post(f"/v1/sessions/{secret}/fs:read", json={"paths": ["key"]}),
                       secret) == "hidden"
    # A reader of both sessions: the checkpoint is not one of this session's
    # states, so it is not found, as for the single read.
    both = new_token(http, "batch-both", f"{mine}:reader", f"{secret}:reader")
    with as_bearer(daemon, both) as c:
        single = c.get(f"/v1/sessions/{mine}/files/key", params={"at": ckp})
        batch = c.post(f"/v1/sessions/{mine}/fs:read", json={"paths": ["key"], "at": ckp})
        assert (single.status_code, code(single)) == (batch.status_code, code(batch)) == (
            404, "not_found")
        assert b"hunter2" not in batch.content


def test_admin_routes_and_whoami(daemon, http):
    nobody = new_token(http, "nobody")
    adm = new_token(http, "root-ish", "admin")
    with as_bearer(daemon, nobody) as c:
        me = c.get("/v1/whoami").json()
        assert (me["name"], me["authenticatedBy"], me["scopes"]) == ("nobody", "token", [])
        for r in (c.post("/v1/tokens", json={"principal": "x"}), c.get("/v1/tokens"),
                  c.post("/v1/tokens/tok_1:revoke")):
            assert (r.status_code, code(r)) == (403, "permission_denied")
        assert c.get("/v1/health").status_code == 200
    with httpx.Client(base_url=daemon.http_url) as anonymous:
        assert anonymous.get("/v1/health").status_code == 200
        assert code(anonymous.get("/v1/whoami")) == "unauthenticated"
    with as_bearer(daemon, adm) as c:
        assert c.get("/v1/whoami").json()["scopes"] == ["admin"]
        assert c.post("/v1/tokens", json={"principal": "y"}).status_code == 201
    me = http.get("/v1/whoami").json()
    assert (me["name"], me["authenticatedBy"]) == ("admin", "admin_token")


def test_revoked_and_expired_tokens_are_refused_at_once(daemon, http):
    sid = new_session(http)
    bearer = new_token(http, "short", f"{sid}:reader")
    tid = bearer.split(".")[0]
    with as_bearer(daemon, bearer) as c:
        assert c.get(f"/v1/sessions/{sid}").status_code == 200
        http.post(f"/v1/tokens/{tid}:revoke").raise_for_status()
        r = c.get(f"/v1/sessions/{sid}")
        assert (r.status_code, code(r)) == (401, "unauthenticated")
    expiring = new_token(http, "brief", f"{sid}:reader", ttlSeconds=1)
    with as_bearer(daemon, expiring) as c:
        assert c.get(f"/v1/sessions/{sid}").status_code == 200
        time.sleep(1.2)
        assert code(c.get(f"/v1/sessions/{sid}")) == "unauthenticated"
    # a wrong secret with a real id, a made-up id, garbage: all the same answer
    for bad in (tid + ".wrong", "tok_00000000000000000000000000.x", "x" * 5000, "ünï"):
        r = httpx.get(f"{daemon.http_url}/v1/sessions", headers={"Authorization": f"Bearer {bad}"}
                      if bad.isascii() else {"Authorization": b"Bearer " + bad.encode()})
        assert (r.status_code, code(r)) == (401, "unauthenticated")


def test_aetherd_token_revoke_reaches_the_running_daemon(daemon, http):
    sid = new_session(http)
    out = subprocess.run(
        [sys.executable, "-m", "aetherd", "token", "create", "--principal", "ops-made",
         "--scope", f"{sid}:reader", "--data-dir", str(daemon.data_dir), "--json"],
        check=True, capture_output=True, text=True).stdout
    import json
    made = json.loads(out)
    with as_bearer(daemon, made["secret"]) as c:
        assert c.get(f"/v1/sessions/{sid}").status_code == 200
        subprocess.run([sys.executable, "-m", "aetherd", "token", "revoke", made["token"]["id"],
                        "--data-dir", str(daemon.data_dir)], check=True, capture_output=True)
        assert code(c.get(f"/v1/sessions/{sid}")) == "unauthenticated"
    listed = subprocess.run(
        [sys.executable, "-m", "aetherd", "token", "list", "--all", "--data-dir",
         str(daemon.data_dir)], check=True, capture_output=True, text=True).stdout
    assert f"{made['token']['id']}  ops-made  revoked" in listed
    # the secret never reaches the daemon's log
    assert made["secret"].split(".")[1] not in daemon.log_path.read_text()


def test_who_did_it_is_recorded_and_separation_of_duties_holds(daemon, http):
    sid = new_session(http, policy={"commitRequiresApproval": True, "separationOfDuties": True})
    alice = new_token(http, "alice", f"{sid}:writer")
    bob = new_token(http, "bob", f"{sid}:reviewer")
    with as_bearer(daemon, alice) as a, as_bearer(daemon, bob) as b:
        a.put(f"/v1/sessions/{sid}/files/x", content=b"x").raise_for_status()
        # a token caller is who it is, whatever name it puts in the request
        apr = a.post(f"/v1/sessions/{sid}/approvals", json={"requester": "mallory"}).json()
        assert apr["requester"] == "alice"
        r = a.post(f"/v1/sessions/{sid}/approvals/{apr['id']}:approve", json={})
        assert (r.status_code, code(r)) == (403, "permission_denied")
        assert "separation_of_duties" in r.text
        r = b.post(f"/v1/sessions/{sid}/commits", json={"message": "m"})
        assert (r.status_code, code(r)) == (403, "permission_denied")  # reviewers do not commit
        done = b.post(f"/v1/sessions/{sid}/approvals/{apr['id']}:approve",
                      json={"reviewer": "alice"}).json()
        assert (done["reviewer"], done["state"]) == ("bob", "APPROVAL_STATE_APPROVED")
        cmt = a.post(f"/v1/sessions/{sid}/commits", json={"message": "m", "author": "x"}).json()
        assert (cmt["author"], cmt["committedBy"]) == ("alice", "alice")
        comment = b.post(f"/v1/sessions/{sid}/comments", json={"body": "ok"}).json()
        assert comment["author"] == "bob"


async def test_grpc_uses_the_same_guard(daemon, http):
    sid = new_session(http)
    reader = new_token(http, "grpc-reader", f"{sid}:reader")
    channel = Channel(daemon.grpc_host, daemon.grpc_port)
    md = {"authorization": f"Bearer {reader}"}
    try:
        files = pb.FileServiceStub(channel, metadata=md)
        await files.list_tree(pb.ListTreeRequest(session_id=sid))
        with pytest.raises(GRPCError) as err:
            await files.write_file(pb.WriteFileRequest(session_id=sid, path="x", data=b"x"))
        assert err.value.status == Status.PERMISSION_DENIED
        got = await files.read_files(pb.ReadFilesRequest(session_id=sid, paths=["x"]))
        assert got.files[0].error.code == "not_found"  # a reader may read, several at once
        # A batch is checked against its own session; its ops' session_id is ignored.
        with pytest.raises(GRPCError) as err:
            await files.apply(pb.ApplyRequest(session_id=sid, ops=[
                pb.FsOp(write=pb.WriteFileRequest(session_id=sid, path="x", data=b"x"))]))
        assert err.value.status == Status.PERMISSION_DENIED
        sessions = pb.SessionServiceStub(channel, metadata=md)
        listed = await sessions.list_sessions(pb.ListSessionsRequest())
        assert [s.id for s in listed.sessions] == [sid]
        me = await pb.IdentityServiceStub(channel, metadata=md).who_am_i(pb.WhoAmIRequest())
        assert me.name == "grpc-reader"
        with pytest.raises(GRPCError) as err:
            await pb.IdentityServiceStub(channel, metadata={"authorization": "Bearer nope"}) \
                .who_am_i(pb.WhoAmIRequest())
        assert err.value.status == Status.UNAUTHENTICATED
    finally:
        channel.close()


def test_rate_limits_hold_per_token_and_spare_operators(tmp_path):
    from aetherd.testing import DaemonProcess

    d = DaemonProcess(tmp_path / "data",
                      config={"rate_limit_per_second": 5, "rate_limit_burst": 5}).start()
    try:
        with d.http() as admin:
            fast, calm = new_token(admin, "fast"), new_token(admin, "calm")
            with as_bearer(d, fast) as c:
                answers = [c.get("/v1/whoami") for _ in range(15)]
            statuses = [r.status_code for r in answers]
            assert statuses[:5] == [200] * 5 and 429 in statuses, statuses
            refused = next(r for r in answers if r.status_code == 429)
            assert code(refused) == "resource_exhausted"
            assert int(refused.headers["Retry-After"]) >= 1
            with as_bearer(d, calm) as c:  # another token has its own allowance
                assert c.get("/v1/whoami").status_code == 200
            assert all(admin.get("/v1/whoami").status_code == 200 for _ in range(30))
            time.sleep(1.2)  # refilled
            with as_bearer(d, fast) as c:
                assert c.get("/v1/whoami").status_code == 200
    finally:
        d.stop()
