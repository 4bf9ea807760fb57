"""Templates end to end on a real daemon: HTTP, gRPC, the SDK and the installed
`aether` binary. A template is a named pointer to a tree: it is made from a
session's state, a checkpoint or a commit, outlives its source, keeps its
content from gc, and seeds sessions without copying."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from urllib.parse import quote

import httpx
import pytest
from cli_helpers import err_line, run
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from aether import pb
from aether.client import Client, source
from aether.errors import AlreadyExists, InvalidArgument, NotFound
from aetherd.store.objects import open_store

FILES = {"README.md": b"# starter\n", "src/main.py": b"print('hi')\n"}


# ---------------------------------------------------------------- helpers


def ok(resp: httpx.Response, status: int = 200) -> dict:
    assert resp.status_code == status, resp.text
    return resp.json()


def error(resp: httpx.Response, status: int, code: str) -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()["error"]
    assert body["code"] == code, body
    return body["message"]


def new_session(http: httpx.Client, files: dict[str, bytes] | None = None, **body) -> str:
    sid = ok(http.post("/v1/sessions", json=body), 201)["id"]
    for path, data in (files or {}).items():
        ok(http.put(f"/v1/sessions/{sid}/files/{path}", content=data))
    return sid


def read(http: httpx.Client, sid: str, path: str) -> tuple[int, bytes]:
    resp = http.get(f"/v1/sessions/{sid}/files/{path}")
    return resp.status_code, resp.content


def make_template(http: httpx.Client, status: int = 201, **body) -> dict:
    return ok(http.post("/v1/templates", json=body), status)


def from_template(http: httpx.Client, template: str, **body) -> dict:
    return ok(http.post("/v1/sessions", json={"source": {"template": {"name": template}},
                                              **body}), 201)


def aetherd(daemon, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aetherd", *args, "--data-dir",
                           str(daemon.data_dir)], capture_output=True, text=True, timeout=120)


# ---------------------------------------------------------------- HTTP


def test_template_from_a_session_seeds_sessions_without_copying(http):
    sid = new_session(http, FILES, name="starter")
    # Uncheckpointed changes are part of the working state the template names.
    made = make_template(http, name="starter", sessionId=sid, description="A starter project",
                         labels={"lang": "python"})
    assert (made["name"], made["sourceKind"], made["sourceRef"], made["sourceSessionId"]) == (
        "starter", "session", sid, sid)
    assert (made["description"], made["labels"]) == ("A starter project", {"lang": "python"})
    assert (made["fileCount"], made["totalBytes"]) == ("2", str(sum(map(len, FILES.values()))))
    assert made["createTime"]
    src = ok(http.get(f"/v1/sessions/{sid}"))
    assert made["rootHash"] == src["rootHash"]

    child = from_template(http, "starter", name="child")
    assert (child["sourceKind"], child["sourceRef"], child["parentSessionId"]) == (
        "template", "starter", "")
    # O(1): the new session points at the template's tree, nothing is rebuilt.
    assert child["baseRoot"] == child["rootHash"] == made["rootHash"]
    for path, data in FILES.items():
        assert read(http, child["id"], path) == (200, data)

    # Changing the child or the source leaves the template alone.
    ok(http.put(f"/v1/sessions/{child['id']}/files/README.md", content=b"changed\n"))
    ok(http.put(f"/v1/sessions/{sid}/files/new.txt", content=b"new\n"))
    assert ok(http.get("/v1/templates/starter"))["rootHash"] == made["rootHash"]
    again = from_template(http, "starter")
    assert read(http, again["id"], "README.md") == (200, FILES["README.md"])
    assert read(http, again["id"], "new.txt")[0] == 404


def test_template_from_a_state_checkpoint_or_commit(http):
    sid = new_session(http, {"v.txt": b"one\n"})
    ckp = ok(http.post(f"/v1/sessions/{sid}/checkpoints", json={"message": "one"}), 201)
    ok(http.put(f"/v1/sessions/{sid}/files/v.txt", content=b"two\n"))
    cmt = ok(http.post(f"/v1/sessions/{sid}/commits", json={"message": "two"}), 201)
    ok(http.put(f"/v1/sessions/{sid}/files/v.txt", content=b"three\n"))

    cases = {
        "t-at-ckp": ({"sessionId": sid, "at": ckp["id"]}, ("session", sid, ckp["id"]), b"one\n"),
        "t-at-base": ({"sessionId": sid, "at": "base"}, ("session", sid, "base"), None),
        "t-ckp": ({"checkpointId": ckp["id"]}, ("checkpoint", ckp["id"], ""), b"one\n"),
        "t-cmt": ({"commitId": cmt["id"]}, ("commit", cmt["id"], ""), b"two\n"),
        "t-working": ({"sessionId": sid}, ("session", sid, ""), b"three\n"),
    }
    for name, (body, (kind, ref, at), content) in cases.items():
        made = make_template(http, name=name, **body)
        assert (made["sourceKind"], made["sourceRef"], made["sourceAt"],
                made["sourceSessionId"]) == (kind, ref, at, sid), name
        child = from_template(http, name)
        if content is None:  # the base of a blank session: empty
            assert child["fileCount"] == "0"
            assert read(http, child["id"], "v.txt")[0] == 404
        else:
            assert read(http, child["id"], "v.txt") == (200, content), name
    assert make_template(http, name="t-cmt2", commitId=cmt["id"])["rootHash"] == cmt["rootHash"]
    assert make_template(http, name="t-ckp2", checkpointId=ckp["id"])["rootHash"] == \
        ckp["rootHash"]


def test_template_outlives_its_source_session(http):
    sid = new_session(http, FILES)
    cmt = ok(http.post(f"/v1/sessions/{sid}/commits", json={"message": "m"}), 201)
    made = make_template(http, name="survivor", sessionId=sid)
    ok(http.delete(f"/v1/sessions/{sid}"))
    error(http.get(f"/v1/sessions/{sid}"), 404, "not_found")

    got = ok(http.get("/v1/templates/survivor"))
    assert (got["rootHash"], got["sourceSessionId"], got["fileCount"]) == (
        made["rootHash"], sid, "2")
    child = from_template(http, "survivor")
    for path, data in FILES.items():
        assert read(http, child["id"], path) == (200, data)
    # A commit whose session is gone is still a source.
    assert make_template(http, name="from-orphan-commit",
                         commitId=cmt["id"])["sourceSessionId"] == sid
    # Deleting a template leaves the sessions made from it alone.
    ok(http.delete("/v1/templates/survivor"))
    assert read(http, child["id"], "README.md") == (200, FILES["README.md"])


def test_gc_keeps_what_a_template_names(daemon, http):
    kept, dropped = os.urandom(200_000), os.urandom(200_000)
    a = new_session(http, {"kept.bin": kept})
    make_template(http, name="gc-root", sessionId=a)
    b = new_session(http, {"dropped.bin": dropped})
    for sid in (a, b):
        ok(http.delete(f"/v1/sessions/{sid}"))

    # Grace 0 beside the live daemon is safe here: no write is in flight.
    proc = aetherd(daemon, "gc", "--grace-seconds", "0", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["chunks_freed"] >= 1  # b's content went
    fsck = aetherd(daemon, "fsck", "--json")
    assert fsck.returncode == 0 and json.loads(fsck.stdout)["ok"], fsck.stdout

    # The template kept a's content, though no session references it any more.
    child = from_template(http, "gc-root")
    assert read(http, child["id"], "kept.bin") == (200, kept)

    # Only the template was holding it: with the template and its child gone, gc frees it.
    ok(http.delete(f"/v1/sessions/{child['id']}"))
    ok(http.delete("/v1/templates/gc-root"))
    proc = aetherd(daemon, "gc", "--grace-seconds", "0", "--json")
    assert json.loads(proc.stdout)["chunks_freed"] >= 1
    db, objects = open_store(daemon.data_dir)
    try:
        assert db.one("SELECT count(*) FROM templates WHERE name='gc-root'")[0] == 0
    finally:
        objects.blobs.close()
        db.close()


@pytest.mark.parametrize("bad", ["Upper", "-dash", ".dot", "_under", "a/b", "a b", "a" * 64,
                                 "é", "a:b"])
def test_bad_names_are_invalid_argument_and_never_found(http, bad):
    sid = new_session(http)
    error(http.post("/v1/templates", json={"name": bad, "sessionId": sid}), 400,
          "invalid_argument")
    url = "/v1/templates/" + quote(bad, safe="")
    if "/" in bad or ":" in bad:  # the HTTP shim refuses these in any path parameter
        error(http.get(url), 400, "invalid_argument")
    else:
        error(http.get(url), 404, "not_found")
    err = http.post("/v1/sessions", json={"source": {"template": {"name": bad}}})
    error(err, 404, "not_found")


def test_names_codes_and_replace(http):
    sid = new_session(http, {"f": b"1"})
    for name in ("a", "0", "x" * 63, "team.web_app-2"):
        assert make_template(http, name=name, sessionId=sid)["name"] == name
        assert ok(http.get(f"/v1/templates/{name}"))["name"] == name

    first = make_template(http, name="dup", sessionId=sid, description="first")
    error(http.post("/v1/templates", json={"name": "dup", "sessionId": sid}), 409,
          "already_exists")
    ok(http.put(f"/v1/sessions/{sid}/files/f", content=b"2"))
    replaced = make_template(http, name="dup", sessionId=sid, description="second",
                             replace=True)
    assert replaced["description"] == "second" and replaced["rootHash"] != first["rootHash"]
    assert read(http, from_template(http, "dup")["id"], "f") == (200, b"2")

    error(http.post("/v1/templates", json={"sessionId": sid}), 400, "invalid_argument")
    error(http.post("/v1/templates", json={"name": "none"}), 400, "invalid_argument")
    error(http.post("/v1/templates", json={"name": "two", "sessionId": sid,
                                           "commitId": "cmt_x"}), 400, "invalid_argument")
    error(http.post("/v1/templates", json={"name": "at", "commitId": "cmt_x", "at": "base"}),
          400, "invalid_argument")
    error(http.post("/v1/templates", json={"name": "bad-at", "sessionId": sid, "at": "yesterday"}),
          400, "invalid_argument")
    error(http.post("/v1/templates", json={"name": "bad-label", "sessionId": sid,
                                           "labels": {"a=b": "c"}}), 400, "invalid_argument")
    for body in ({"sessionId": "ses_nope"}, {"checkpointId": "ckp_nope"},
                 {"commitId": "cmt_nope"}, {"sessionId": sid, "at": "ckp_nope"}):
        error(http.post("/v1/templates", json={"name": "missing", **body}), 404, "not_found")
    error(http.get("/v1/templates/missing"), 404, "not_found")
    error(http.delete("/v1/templates/missing"), 404, "not_found")
    error(http.post("/v1/sessions", json={"source": {"template": {"name": "missing"}}}), 404,
          "not_found")
    error(http.post("/v1/sessions", json={"source": {"template": {}}}), 400, "invalid_argument")


def test_list_filters_and_pages(http):
    sid = new_session(http)
    names = [f"ls-{i}" for i in range(5)]
    for i, name in enumerate(names):
        make_template(http, name=name, sessionId=sid, labels={"parity": str(i % 2)})
    make_template(http, name="other-ls", sessionId=sid)

    listed = ok(http.get("/v1/templates", params={"prefix": "ls-"}))
    assert [t["name"] for t in listed["templates"]] == names
    assert listed["nextPageToken"] == ""
    odd = ok(http.get("/v1/templates", params={"prefix": "ls-", "label": "parity=1"}))
    assert [t["name"] for t in odd["templates"]] == ["ls-1", "ls-3"]

    seen, token = [], ""
    while True:
        page = ok(http.get("/v1/templates", params={"prefix": "ls-", "page_size": 2,
                                                    "page_token": token}))
        assert len(page["templates"]) <= 2
        seen += [t["name"] for t in page["templates"]]
        token = page["nextPageToken"]
        if not token:
            break
    assert seen == names
    every = [t["name"] for t in ok(http.get("/v1/templates"))["templates"]]
    assert every == sorted(every) and "other-ls" in every


def test_an_existing_data_dir_gains_the_table(tmp_path):
    """CREATE TABLE IF NOT EXISTS is the migration: a meta.db from before
    templates gets the table when the store opens it."""
    db, objects = open_store(tmp_path)
    db.execute("DROP TABLE templates")
    objects.blobs.close()
    db.close()
    db, objects = open_store(tmp_path)
    try:
        assert db.one("SELECT count(*) FROM templates")[0] == 0
    finally:
        objects.blobs.close()
        db.close()


# ---------------------------------------------------------------- gRPC


async def test_templates_over_grpc(channel, md):
    sessions = pb.SessionServiceStub(channel, metadata=md)
    files = pb.FileServiceStub(channel, metadata=md)
    templates = pb.TemplateServiceStub(channel, metadata=md)

    s = await sessions.create_session(pb.CreateSessionRequest(name="grpc-src"))
    await files.write_file(pb.WriteFileRequest(session_id=s.id, path="g.txt", data=b"grpc\n"))
    made = await templates.create_template(pb.CreateTemplateRequest(
        name="grpc-tpl", session_id=s.id, labels={"via": "grpc"}))
    assert (made.source_kind, made.file_count) == ("session", 1)
    got = await templates.get_template(pb.GetTemplateRequest(name="grpc-tpl"))
    assert got.root_hash == made.root_hash and got.labels == {"via": "grpc"}
    listed = await templates.list_templates(pb.ListTemplatesRequest(labels={"via": "grpc"}))
    assert [t.name for t in listed.templates] == ["grpc-tpl"]

    await sessions.delete_session(pb.DeleteSessionRequest(session_id=s.id))
    child = await sessions.create_session(pb.CreateSessionRequest(
        source=pb.SessionSource(template=pb.TemplateSource(name="grpc-tpl"))))
    assert (child.source_kind, child.source_ref, child.base_root) == (
        "template", "grpc-tpl", made.root_hash)
    data = await files.read_file(pb.ReadFileRequest(session_id=child.id, path="g.txt"))
    assert data.data == b"grpc\n"

    calls = [
        (templates.create_template(pb.CreateTemplateRequest(name="grpc-tpl",
                                                            session_id=child.id)),
         Status.ALREADY_EXISTS),
        (templates.create_template(pb.CreateTemplateRequest(name="Bad", session_id=child.id)),
         Status.INVALID_ARGUMENT),
        (templates.get_template(pb.GetTemplateRequest(name="nope")), Status.NOT_FOUND),
        (sessions.create_session(pb.CreateSessionRequest(
            source=pb.SessionSource(template=pb.TemplateSource(name="nope")))),
         Status.NOT_FOUND),
    ]
    for call, status in calls:
        with pytest.raises(GRPCError) as err:
            await call
        assert err.value.status == status

    gone = await templates.delete_template(pb.DeleteTemplateRequest(name="grpc-tpl"))
    assert gone.name == "grpc-tpl"
    with pytest.raises(GRPCError) as err:
        await templates.delete_template(pb.DeleteTemplateRequest(name="grpc-tpl"))
    assert err.value.status == Status.NOT_FOUND


# ---------------------------------------------------------------- SDK


def test_sdk_template_ops(daemon):
    with Client(daemon.http_url, token=daemon.token) as c:
        s = c.create_session(name="sdk-src")
        c.write_file(s.id, "s.txt", b"sdk\n")
        ckp = c.create_checkpoint(s.id)
        t = c.create_template("sdk-tpl", checkpoint_id=ckp.id, description="d",
                              labels={"via": "sdk"})
        assert (t.source_kind, t.source_ref) == ("checkpoint", ckp.id)
        with pytest.raises(AlreadyExists):
            c.create_template("sdk-tpl", session_id=s.id)
        assert c.create_template("sdk-tpl", session_id=s.id, replace=True).source_kind == \
            "session"
        with pytest.raises(InvalidArgument):
            c.create_template("Nope", session_id=s.id)
        assert [x.name for x in c.iter_templates(labels={"via": "sdk"})] == []  # replaced
        assert [x.name for x in c.iter_templates(prefix="sdk-", page_size=1)] == ["sdk-tpl"]
        child = c.create_session(source.template("sdk-tpl"))
        assert c.read_file(child.id, "s.txt").data == b"sdk\n"
        assert c.get_template("sdk-tpl").name == "sdk-tpl"
        assert c.list_templates(prefix="sdk-").templates[0].name == "sdk-tpl"
        assert c.delete_template("sdk-tpl").name == "sdk-tpl"
        with pytest.raises(NotFound):
            c.get_template("sdk-tpl")


# ---------------------------------------------------------------- CLI


def aether(env: dict[str, str], *args: str, check: int | None = 0) -> subprocess.CompletedProcess:
    """`aether ARGS...` in `env` (conftest.py), its output as text."""
    return run(*args, env=env, check=check, text=True)


def test_cli_template_lifecycle(env, http):
    sid = aether(env, "-q", "session", "create", "--name", "cli-src").stdout.strip()
    ok(http.put(f"/v1/sessions/{sid}/files/app/run.sh", content=b"#!/bin/sh\n"))
    ckp = ok(http.post(f"/v1/sessions/{sid}/checkpoints", json={}), 201)["id"]
    ok(http.put(f"/v1/sessions/{sid}/files/later.txt", content=b"later\n"))

    human = aether(env, "template", "create", "cli-tpl", "--from-session", sid, "-d",
                   "CLI starter", "-l", "team=cli").stdout
    assert "cli-tpl" in human and "CLI starter" in human and f"session {sid}" in human
    assert "team=cli" in human

    made = json.loads(aether(env, "template", "create", "cli-at", "--from-session", sid,
                             "--at", ckp, "--json").stdout)
    assert (made["name"], made["sourceKind"], made["sourceAt"], made["fileCount"]) == (
        "cli-at", "session", ckp, "1")
    cmt = ok(http.post(f"/v1/sessions/{sid}/commits", json={"message": "m"}), 201)["id"]
    assert aether(env, "-q", "template", "create", "cli-cmt", "--from-commit",
                  cmt).stdout == "cli-cmt\n"
    assert aether(env, "-q", "template", "create", "cli-ckp", "--from-checkpoint",
                  ckp).stdout == "cli-ckp\n"

    table = aether(env, "template", "ls", "--prefix", "cli-").stdout
    assert "NAME" in table and all(n in table for n in ("cli-tpl", "cli-at", "cli-cmt"))
    listed = json.loads(aether(env, "template", "ls", "--label", "team=cli", "--json").stdout)
    assert [t["name"] for t in listed] == ["cli-tpl"]
    assert aether(env, "-q", "template", "ls", "--prefix", "cli-").stdout.split() == [
        "cli-at", "cli-ckp", "cli-cmt", "cli-tpl"]
    shown = json.loads(aether(env, "--json", "template", "show", "cli-tpl").stdout)
    assert (shown["description"], shown["labels"]) == ("CLI starter", {"team": "cli"})
    assert "CLI starter" in aether(env, "template", "show", "cli-tpl").stdout

    child = json.loads(aether(env, "session", "create", "--from-template", "cli-tpl",
                              "--name", "kid", "--json").stdout)
    assert (child["sourceKind"], child["sourceRef"]) == ("template", "cli-tpl")
    assert read(http, child["id"], "later.txt") == (200, b"later\n")
    assert "template cli-tpl" in aether(env, "session", "show", child["id"]).stdout
    at_ckp = aether(env, "-q", "session", "create", "--from-template", "cli-at").stdout.strip()
    assert read(http, at_ckp, "later.txt")[0] == 404

    assert aether(env, "template", "rm", "cli-at", "--yes").stdout.strip() == \
        "Deleted template cli-at."
    gone = json.loads(aether(env, "template", "rm", "cli-cmt", "--json").stdout)
    assert gone["name"] == "cli-cmt"
    assert aether(env, "-q", "template", "rm", "cli-ckp").stdout == "cli-ckp\n"


def test_cli_exit_codes(env):
    sid = aether(env, "-q", "session", "create").stdout.strip()
    aether(env, "template", "create", "cli-codes", "--from-session", sid)

    proc = aether(env, "template", "show", "cli-nope", check=3)
    assert err_line(proc).startswith("error: not_found:")
    aether(env, "template", "rm", "cli-nope", check=3)
    aether(env, "session", "create", "--from-template", "cli-nope", check=3)
    proc = aether(env, "template", "create", "cli-codes", "--from-session", sid, check=4)
    assert err_line(proc).startswith("error: already_exists:")
    aether(env, "template", "create", "cli-codes", "--from-session", sid, "--replace")
    proc = aether(env, "template", "create", "Bad Name", "--from-session", sid, check=1)
    assert err_line(proc).startswith("error: invalid_argument:")
    aether(env, "template", "create", "cli-x", "--from-session", "ses_nope", check=3)

    # usage errors (exit 2) never reach the daemon
    proc = aether(env, "template", "create", "cli-x", check=2)
    assert "--from-session" in proc.stderr
    proc = aether(env, "template", "create", "cli-x", "--from-session", sid, "--from-commit",
                  "cmt_x", check=2)
    assert "choose one source" in proc.stderr
    aether(env, "template", "create", "cli-x", "--from-commit", "cmt_x", "--at", "base", check=2)
    aether(env, "template", "ls", "--label", "novalue", check=2)
    aether(env, "template", "show", check=2)
    proc = aether(env, "session", "create", "--from-template", "a", "--from-session", sid,
                  check=2)
    assert "choose one source" in proc.stderr
    assert "template" in aether(env, "--help").stdout
