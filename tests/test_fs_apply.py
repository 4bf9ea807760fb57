"""Batches of filesystem changes (Files.Apply, POST .../fs:apply) against a real
daemon, over HTTP, gRPC and the `aether fs apply` command.

A batch must leave the tree and the event log exactly as the same changes
made one call at a time would; a failed op changes nothing and does not stop
the ops after it; an atomic batch is all or nothing. The module's daemon
allows 100 ops and 64 KiB of payload per request, so the limits are cheap to
reach.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import blake3
import httpx
import pytest
from cli_helpers import aether, out
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from aether import pb
from aetherd.config import Config, Limits
from aetherd.testing import DaemonProcess

if TYPE_CHECKING:
    from conftest import DaemonProc

MAX_OPS = 100
MAX_BODY = 64 << 10


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProc]:
    """This module's daemon: small batch and payload limits (overrides conftest's)."""
    d = DaemonProcess(tmp_path_factory.mktemp("aetherd") / "data",
                      config={"max_batch_ops": MAX_OPS, "max_body_bytes": MAX_BODY}).start()
    yield d
    d.stop()


# ---- helpers


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def h(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def new_session(http: httpx.Client, **body: Any) -> str:
    r = http.post("/v1/sessions", json=body)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def apply(http: httpx.Client, sid: str, ops: list[dict], atomic: bool = False) -> httpx.Response:
    return http.post(f"/v1/sessions/{sid}/fs:apply", json={"ops": ops, "atomic": atomic})


def results(r: httpx.Response) -> list[dict]:
    assert r.status_code == 200, r.text
    got = r.json()["results"]
    for one in got:  # exactly one of the two
        assert (one["info"] is None) != (one["error"] is None), one
    return got


def codes(got: list[dict]) -> list[str]:
    return ["ok" if r["error"] is None else r["error"]["code"] for r in got]


def error_of(r: httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert (error["code"], error["status"]) == (code, status), error
    return error


def tree(http: httpx.Client, sid: str) -> dict[str, tuple]:
    """Every path with what a copy must keep (directory hashes hold times)."""
    r = http.get(f"/v1/sessions/{sid}/manifest", params={"page_size": 10_000})
    assert r.status_code == 200, r.text
    return {e["path"]: (e["kind"], e["mode"],
                        "" if e["kind"] == "ENTRY_KIND_DIRECTORY" else e["size"],
                        "" if e["kind"] == "ENTRY_KIND_DIRECTORY" else e["hash"],
                        e["symlinkTarget"])
            for e in r.json()["entries"]}


def events(http: httpx.Client, sid: str, after: int = 0) -> list[dict]:
    r = http.get(f"/v1/sessions/{sid}/events", params={"after": after, "limit": 1000})
    assert r.status_code == 200, r.text
    return r.json()["events"]


def last_cursor(http: httpx.Client, sid: str) -> int:
    seen = events(http, sid)
    return int(seen[-1]["cursor"]) if seen else 0


def seed(http: httpx.Client, sid: str) -> None:
    for path, data in (("old.txt", b"old\n"), ("gone/inner.txt", b"inner\n")):
        assert http.put(f"/v1/sessions/{sid}/files/{path}", content=data).status_code == 200
    assert http.delete(f"/v1/sessions/{sid}/files/gone/inner.txt").status_code == 200


# A batch of every kind of change, each depending on the ones before it.
MIXED = [
    {"mkdir": {"path": "src"}},
    {"write": {"path": "src/a.txt", "data": b64(b"alpha\n"), "mode": 0o600}},
    {"write": {"path": "deep/er/y.txt", "data": b64(b"why\n"), "createParents": True}},
    {"symlink": {"path": "link", "target": "src/b.txt"}},
    {"rename": {"fromPath": "src/a.txt", "toPath": "src/b.txt"}},
    {"delete": {"path": "old.txt"}},
    {"rmdir": {"path": "gone"}},
    {"mkdir": {"path": "made/deeper", "parents": True, "mode": 0o700}},
]


def singles(http: httpx.Client, sid: str) -> list[dict]:
    """MIXED, one call at a time (as the single routes take it)."""
    s = f"/v1/sessions/{sid}"
    calls = [
        http.post(f"{s}/fs:mkdir", json={"path": "src"}),
        http.put(f"{s}/files/src/a.txt", content=b"alpha\n", params={"mode": "0600"}),
        http.put(f"{s}/files/deep/er/y.txt", content=b"why\n"),
        http.post(f"{s}/fs:symlink", json={"path": "link", "target": "src/b.txt"}),
        http.post(f"{s}/fs:rename", json={"fromPath": "src/a.txt", "toPath": "src/b.txt"}),
        http.delete(f"{s}/files/old.txt"),
        http.post(f"{s}/fs:rmdir", json={"path": "gone"}),
        http.post(f"{s}/fs:mkdir", json={"path": "made/deeper", "parents": True, "mode": 0o700}),
    ]
    for r in calls:
        assert r.status_code == 200, r.text
    return [r.json() for r in calls]


def same_info(a: dict, b: dict) -> bool:
    keys = ("path", "kind", "mode", "size", "symlinkTarget")
    same = all(a[k] == b[k] for k in keys)
    if a["kind"] != "ENTRY_KIND_DIRECTORY":  # a directory's hash holds times
        same = same and a["hash"] == b["hash"]
    return same


# ---- what a batch does


def test_a_mixed_batch_leaves_what_the_single_calls_leave(http):
    batched, one_by_one = new_session(http), new_session(http)
    for sid in (batched, one_by_one):
        seed(http, sid)
    since = {sid: last_cursor(http, sid) for sid in (batched, one_by_one)}

    got = results(apply(http, batched, MIXED))
    replies = singles(http, one_by_one)

    assert codes(got) == ["ok"] * len(MIXED)
    for mine, theirs in zip(got, replies, strict=True):
        assert same_info(mine["info"], theirs), (mine["info"], theirs)
    assert tree(http, batched) == tree(http, one_by_one)
    assert tree(http, batched)["src/b.txt"] == ("ENTRY_KIND_FILE", 0o600, "6", h(b"alpha\n"), "")
    assert http.get(f"/v1/sessions/{batched}/files/deep/er/y.txt").content == b"why\n"

    def log(sid: str) -> list[tuple]:
        return [(e["type"], e["path"], e["attributes"]) for e in events(http, sid, since[sid])]
    assert log(batched) == log(one_by_one)
    assert [t for t, _, _ in log(batched)] == [
        "dir.created", "file.written", "file.written", "symlink.created", "path.renamed",
        "file.deleted", "dir.removed", "dir.created"]


def test_a_failed_op_changes_nothing_and_the_next_ops_see_the_earlier_ones(http):
    sid = new_session(http)
    assert http.put(f"/v1/sessions/{sid}/files/f", content=b"v1").status_code == 200
    got = results(apply(http, sid, [
        {"write": {"path": "f", "data": b64(b"lost"), "ifMatch": h(b"other")}},  # 0 conflict
        {"delete": {"path": "missing"}},                                        # 1 not found
        {"mkdir": {"path": "d"}},                                               # 2
        {"write": {"path": "d/x", "data": b64(b"x")}},                          # 3 d exists now
        {"rmdir": {"path": "d"}},                                               # 4 not empty
        {"rename": {"fromPath": "f", "toPath": "d/f"}},                         # 5
        {"write": {"path": "d/f", "data": b64(b"v2"), "ifMatch": "!"}},        # 6 it exists
        {"write": {"path": "d/f", "data": b64(b"v2"), "ifMatch": h(b"v1")}},   # 7
        {"write": {"path": "f", "data": b64(b"again"), "ifMatch": "*"}},       # 8 moved away
        {"write": {"path": "no/parent", "data": b64(b"p")}},                   # 9 no parents
        {"mkdir": {"path": "d"}},                                               # 10 exists
        {"rmdir": {"path": "d/f"}},                                             # 11 a file
        {"delete": {"path": "d"}},                                              # 12 a directory
    ]))
    assert codes(got) == [
        "conflict", "not_found", "ok", "ok", "failed_precondition", "ok", "conflict", "ok",
        "conflict", "not_found", "already_exists", "failed_precondition", "failed_precondition"]
    conflict = got[0]["error"]
    assert conflict["status"] == 409
    assert conflict["details"] == {"path": "f", "current_hash": h(b"v1")}
    assert (got[1]["error"]["status"], got[1]["error"]["details"]) == (404, {"path": "missing"})
    assert "not empty" in got[4]["error"]["message"]
    assert got[7]["info"]["hash"] == h(b"v2")
    assert tree(http, sid) == {
        "d": ("ENTRY_KIND_DIRECTORY", 0o755, "", "", ""),
        "d/f": ("ENTRY_KIND_FILE", 0o644, "2", h(b"v2"), ""),
        "d/x": ("ENTRY_KIND_FILE", 0o644, "1", h(b"x"), ""),
    }


def test_an_atomic_batch_is_all_or_nothing(http):
    sid = new_session(http)
    seed(http, sid)
    before, cursor = tree(http, sid), last_cursor(http, sid)
    failing = [
        {"mkdir": {"path": "new"}},
        {"write": {"path": "new/file", "data": b64(b"data")}},
        {"delete": {"path": "old.txt"}},
        {"rmdir": {"path": "gone", "recursive": True}},
        {"write": {"path": "old.txt", "data": b64(b"x"), "ifMatch": "*"}},  # deleted above
        {"delete": {"path": "never-reached"}},
    ]
    error = error_of(apply(http, sid, failing, atomic=True), 409, "conflict")
    assert error["details"] == {"path": "old.txt"}
    assert tree(http, sid) == before
    assert last_cursor(http, sid) == cursor  # no event either

    # An op refused before it runs (a bad path) fails an atomic batch at its place.
    refused = [{"mkdir": {"path": "first"}}, {"write": {"path": "a/../b", "data": ""}},
               {"delete": {"path": "missing"}}]
    error_of(apply(http, sid, refused, atomic=True), 400, "invalid_argument")
    assert tree(http, sid) == before

    got = results(apply(http, sid, failing[:4], atomic=True))
    assert codes(got) == ["ok"] * 4
    assert set(tree(http, sid)) == {"new", "new/file"}
    assert len(events(http, sid, cursor)) == 4


def test_events_come_in_op_order_one_per_op_that_succeeded(http):
    sid = new_session(http)
    cursor = last_cursor(http, sid)
    got = results(apply(http, sid, [
        {"write": {"path": "a", "data": b64(b"aa")}},
        {"delete": {"path": "missing"}},
        {"symlink": {"path": "l", "target": "a"}},
        {"symlink": {"path": "l", "target": "b"}},  # exists
        {"rename": {"fromPath": "a", "toPath": "b"}},
        {"mkdir": {"path": "d"}},
        {"rmdir": {"path": "d"}},
        {"delete": {"path": "l"}},
    ]))
    assert codes(got) == ["ok", "not_found", "ok", "already_exists", "ok", "ok", "ok", "ok"]
    seen = events(http, sid, cursor)
    assert [(e["type"], e["path"]) for e in seen] == [
        ("file.written", "a"), ("symlink.created", "l"), ("path.renamed", "b"),
        ("dir.created", "d"), ("dir.removed", "d"), ("file.deleted", "l")]
    assert seen[0]["attributes"] == {"size": "2", "hash": h(b"aa")}
    assert seen[2]["attributes"] == {"from_path": "a"}
    cursors = [int(e["cursor"]) for e in seen]
    assert cursors == list(range(cursor + 1, cursor + 7))  # no gaps from the failed ops


def test_quotas_refuse_the_ops_that_go_over_them(http):
    sid = new_session(http, policy={"maxFiles": "3", "maxBytes": "100"})
    got = results(apply(http, sid, [
        {"write": {"path": "a", "data": b64(b"1")}},
        {"write": {"path": "b", "data": b64(b"2")}},
        {"symlink": {"path": "c", "target": "a"}},
        {"write": {"path": "d", "data": b64(b"4")}},            # a fourth file
        {"symlink": {"path": "e", "target": "a"}},             # so is a symlink
        {"write": {"path": "a", "data": b64(b"x" * 90)}},      # overwriting keeps the count
        {"write": {"path": "b", "data": b64(b"y" * 20)}},      # 110 bytes
        {"delete": {"path": "c"}},
        {"write": {"path": "d", "data": b64(b"x" * 9)}},       # 100 bytes, 3 files
        {"write": {"path": "d", "data": b64(b"x" * 10)}},      # 101 bytes
    ]))
    assert codes(got) == ["ok", "ok", "ok", "resource_exhausted", "resource_exhausted", "ok",
                          "resource_exhausted", "ok", "ok", "resource_exhausted"]
    quotas = [r["error"]["details"]["quota"] for r in got if r["error"]]
    assert quotas == ["max_files", "max_files", "max_bytes", "max_bytes"]
    assert got[3]["error"]["status"] == 429
    assert got[3]["error"]["details"]["limit"] == "3"
    assert {p: v[2] for p, v in tree(http, sid).items()} == {"a": "90", "b": "1", "d": "9"}

    error = error_of(apply(http, sid, [{"delete": {"path": "b"}},
                                       {"write": {"path": "e", "data": b64(b"e")}},
                                       {"write": {"path": "f", "data": b64(b"f")}}],
                           atomic=True), 429, "resource_exhausted")
    assert error["details"]["quota"] == "max_files"
    assert set(tree(http, sid)) == {"a", "b", "d"}


BAD_PATHS = ["../escape", "a/../b", "a//b", "./a", "x/" + "n" * 256, "", "/", "a\x00b"]


def test_bad_paths_and_arguments_are_refused_per_op(http):
    sid = new_session(http)
    ops: list[dict] = [{"write": {"path": p, "data": b64(b"x")}} for p in BAD_PATHS]
    ops += [
        {"write": {"path": "ok.txt", "data": b64(b"fine")}},
        {"write": {"path": "ranged", "data": b64(b"x"), "atOffset": True, "offset": "3"}},
        {"write": {"path": "moded", "data": b64(b"x"), "mode": 0o170000}},
        {"mkdir": {"path": "../up"}},
        {"mkdir": {"path": "moded", "mode": 0o10000}},
        {"rmdir": {"path": ""}},
        {"delete": {"path": "../../etc/passwd"}},
        {"rename": {"fromPath": "ok.txt", "toPath": "../ok.txt"}},
        {"rename": {"fromPath": "ok.txt", "toPath": "/ok.txt"}},  # the same path
        {"symlink": {"path": "l", "target": ""}},
        {"symlink": {"path": "l/..", "target": "ok.txt"}},
        {"symlink": {"path": "l2", "target": "t" * 5000}},
    ]
    got = results(apply(http, sid, ops))
    ok = len(BAD_PATHS)
    assert codes(got) == ["invalid_argument"] * ok + ["ok"] + ["invalid_argument"] * (
        len(ops) - ok - 1)
    assert all(r["error"]["status"] == 400 for r in got if r["error"])
    assert "at_offset" in got[ok + 1]["error"]["message"]
    assert got[4]["error"]["details"]["setting"] == "max_name_bytes"
    assert tree(http, sid) == {"ok.txt": ("ENTRY_KIND_FILE", 0o644, "4", h(b"fine"), "")}


def test_request_level_problems_refuse_the_whole_request(http):
    sid = new_session(http)
    s = f"/v1/sessions/{sid}/fs:apply"
    write = {"write": {"path": "a", "data": b64(b"a")}}

    error = error_of(http.post(s, json={"ops": [write, {}]}), 400, "invalid_argument")
    assert error["details"] == {"field": "ops[1]"}
    error_of(http.post(s, json={"ops": [write, {"write": {"path": "b"}, "delete": {"path": "c"}}]}),
             400, "invalid_argument")
    error_of(http.post(s, json={"ops": [{"copy": {"fromPath": "a", "toPath": "b"}}]}),
             400, "invalid_argument")

    error = error_of(apply(http, sid, [write] * (MAX_OPS + 1)), 400, "invalid_argument")
    assert error["details"] == {"count": str(MAX_OPS + 1), "limit": str(MAX_OPS),
                                "setting": "max_batch_ops"}
    assert codes(results(apply(http, sid, [write] * MAX_OPS))) == ["ok"] * MAX_OPS

    # Over the payload limit: the HTTP body is refused before it is read.
    big = {"write": {"path": "big", "data": b64(b"b" * (MAX_BODY // 2))}}
    error_of(apply(http, sid, [big, big]), 413, "payload_too_large")
    assert set(tree(http, sid)) == {"a"}

    assert codes(results(apply(http, sid, []))) == []
    error_of(apply(http, "ses_" + "0" * 26, [write]), 404, "not_found")


def test_an_archived_session_refuses_the_whole_batch(http):
    """Not one failed_precondition per op: the session, not an op, is what is
    wrong, so the request fails as a whole (atomic or not) and nothing is stored."""
    sid = new_session(http)
    assert http.put(f"/v1/sessions/{sid}/files/keep", content=b"k").status_code == 200
    assert http.post(f"/v1/sessions/{sid}:archive").status_code == 200
    before = tree(http, sid)
    for atomic in (False, True):
        error = error_of(apply(http, sid, [{"write": {"path": "x", "data": b64(b"x")}},
                                           {"delete": {"path": "keep"}}], atomic=atomic),
                         412, "failed_precondition")
        assert error["details"] == {"session_id": sid}
        assert "archived" in error["message"]
    assert tree(http, sid) == before


def test_max_batch_ops_is_an_input_limit():
    assert Limits().max_batch_ops == 10_000
    assert Config(max_batch_ops=5).limits.max_batch_ops == 5
    with pytest.raises(ValueError, match="max_batch_ops"):
        Config(max_batch_ops=0)


# ---- gRPC


def grpc_ops(data: list[dict]) -> list[pb.FsOp]:
    return [pb.FsOp.from_dict(op) for op in data]


GRPC_BATCH = [
    {"mkdir": {"path": "d"}},
    {"write": {"path": "d/a", "data": b64(b"a")}},
    {"write": {"path": "d/a", "data": b64(b"b"), "ifMatch": h(b"zzz")}},
    {"write": {"path": "e/f", "data": b64(b"f")}},
    {"write": {"path": "e/f", "data": b64(b"f"), "createParents": True}},
    {"symlink": {"path": "d/l", "target": "a"}},
    {"rename": {"fromPath": "d/a", "toPath": "d/b"}},
    {"delete": {"path": "d/a"}},
    {"rmdir": {"path": "d"}},
    {"rmdir": {"path": "e", "recursive": True}},
    {"write": {"path": "../x", "data": ""}},
]


async def test_the_same_batch_over_grpc_gives_the_same_results(http, channel, md):
    over_http, over_grpc = new_session(http), new_session(http)
    want = results(apply(http, over_http, GRPC_BATCH))
    files = pb.FileServiceStub(channel, metadata=md)
    reply = await files.apply(pb.ApplyRequest(session_id=over_grpc, ops=grpc_ops(GRPC_BATCH)))
    got = [r.to_dict(include_default_values=True) for r in reply.results]
    assert codes(got) == codes(want) == [
        "ok", "ok", "conflict", "not_found", "ok", "ok", "ok", "not_found",
        "failed_precondition", "ok", "invalid_argument"]
    for mine, theirs in zip(got, want, strict=True):
        if theirs["error"]:
            assert mine["error"] == theirs["error"]
        else:
            assert same_info(mine["info"], theirs["info"])
    assert tree(http, over_grpc) == tree(http, over_http)


async def test_grpc_refusals_carry_the_codes_of_http(http, channel, md):
    sid = new_session(http)
    files = pb.FileServiceStub(channel, metadata=md)

    async def refused(req: pb.ApplyRequest) -> tuple[Status, str]:
        with pytest.raises(GRPCError) as err:
            await files.apply(req)
        return err.value.status, err.value.message or ""

    write = pb.FsOp(write=pb.WriteFileRequest(path="a", data=b"a"))
    status, _ = await refused(pb.ApplyRequest(session_id=sid, ops=[write, pb.FsOp()]))
    assert status == Status.INVALID_ARGUMENT
    both = pb.FsOp(write=pb.WriteFileRequest(path="b", data=b"b"))
    both.delete = pb.DeleteFileRequest(path="c")  # two changes in one op, on the wire
    status, message = await refused(pb.ApplyRequest(session_id=sid, ops=[both]))
    assert status == Status.INVALID_ARGUMENT and "more than one" in message
    status, _ = await refused(pb.ApplyRequest(session_id=sid, ops=[write] * (MAX_OPS + 1)))
    assert status == Status.INVALID_ARGUMENT
    status, _ = await refused(pb.ApplyRequest(session_id=sid, atomic=True, ops=[
        write, pb.FsOp(delete=pb.DeleteFileRequest(path="missing"))]))
    assert status == Status.NOT_FOUND
    # gRPC has no body limit of its own: the batch's data is held to max_body_bytes.
    half = pb.FsOp(write=pb.WriteFileRequest(path="big", data=b"b" * (MAX_BODY // 2 + 1)))
    status, _ = await refused(pb.ApplyRequest(session_id=sid, ops=[half, half]))
    assert status == Status.RESOURCE_EXHAUSTED
    assert tree(http, sid) == {}
    # An op's own session_id is ignored: the batch's session is the one changed.
    other = new_session(http)
    stray = pb.FsOp(write=pb.WriteFileRequest(session_id=other, path="here", data=b"h"))
    reply = await files.apply(pb.ApplyRequest(session_id=sid, ops=[stray]))
    assert reply.results[0].info.path == "here"
    assert set(tree(http, sid)) == {"here"} and tree(http, other) == {}


# ---- the SDK


def test_sdk_apply_sync_and_async(daemon, http):
    import asyncio

    from aether.client import AsyncClient, Client
    from aether.errors import Conflict

    sid = new_session(http)
    ops = [pb.FsOp(mkdir=pb.MkdirRequest(path="d")),
           pb.FsOp(write=pb.WriteFileRequest(path="d/bin", data=bytes(range(256)))),
           pb.FsOp(delete=pb.DeleteFileRequest(path="missing"))]
    with Client(daemon.http_url, token=daemon.token) as c:
        got = c.apply(sid, ops)
        assert isinstance(got, pb.ApplyResponse)
        assert [r.info.path if r.info else r.error.code for r in got.results] == [
            "d", "d/bin", "not_found"]
        assert got.results[2].error.status == 404
        assert c.read_file(sid, "d/bin").data == bytes(range(256))
        with pytest.raises(Conflict) as err:
            c.apply(sid, [pb.FsOp(symlink=pb.SymlinkRequest(path="l", target="d")),
                          pb.FsOp(write=pb.WriteFileRequest(path="d/bin", if_match="!"))],
                    atomic=True)
        assert err.value.details == {"path": "d/bin"}
        assert c.as_json().apply(sid, [])["results"] == []

    async def run() -> pb.ApplyResponse:
        async with AsyncClient(daemon.http_url, token=daemon.token) as ac:
            return await ac.apply(sid, [pb.FsOp(rename=pb.RenameRequest(
                from_path="d/bin", to_path="bin"))], atomic=True)
    got = asyncio.run(run())
    assert got.results[0].info.path == "bin"
    assert set(tree(http, sid)) == {"d", "bin"}

    async def run_json() -> dict:
        # ops already in proto3 JSON, answers as JSON: no message objects either way
        async with AsyncClient(daemon.http_url, token=daemon.token) as ac:
            return await ac.as_json().apply(sid, [
                {"write": {"path": "j.txt", "data": b64(b"json"), "ifMatch": "!"}},
                {"delete": {"path": "missing"}}])
    answer = asyncio.run(run_json())
    assert answer["results"][0]["info"]["hash"] == h(b"json")
    assert answer["results"][1]["error"]["code"] == "not_found"


# ---- the command line


def test_cli_applies_a_file_and_stdin(http, env, tmp_path):
    sid = new_session(http)
    batch = tmp_path / "batch.json"
    batch.write_text(json.dumps({"ops": [
        {"mkdir": {"path": "docs"}},
        {"write": {"path": "docs/readme.md", "text": "# hello\n"}},
        {"write": {"path": "bin/tool", "data": b64(b"\x00\x01"), "mode": 0o755,
                   "createParents": True}},
        {"symlink": {"path": "latest", "target": "docs/readme.md"}},
    ]}))
    done = aether(env, "fs", "apply", sid, str(batch), text=True)
    lines = out(done).splitlines()
    assert lines[0].split() == ["#", "RESULT", "OP", "PATH", "ERROR"]
    rows = [line.split() for line in lines[1:] if line.strip() and not line.startswith("─")]
    assert rows == [["0", "ok", "mkdir", "docs"], ["1", "ok", "write", "docs/readme.md"],
                    ["2", "ok", "write", "bin/tool"],
                    ["3", "ok", "symlink", "latest", "->", "docs/readme.md"]]
    assert http.get(f"/v1/sessions/{sid}/files/docs/readme.md").content == b"# hello\n"
    assert tree(http, sid)["bin/tool"][1] == 0o755

    # JSON lines on stdin, --json: the ApplyResponse.
    lines_in = "\n".join(json.dumps(op) for op in (
        {"rename": {"fromPath": "docs/readme.md", "toPath": "docs/index.md"}},
        {"delete": {"path": "latest"}},
    )) + "\n"
    done = aether(env, "fs", "apply", sid, "-", "--json", input=lines_in, text=True)
    got = json.loads(out(done))
    assert [r["info"]["path"] for r in got["results"]] == ["docs/index.md", "latest"]
    assert set(tree(http, sid)) == {"docs", "docs/index.md", "bin", "bin/tool"}

    # A JSON array, one op of it failing: the others are done, the exit status is the
    # failure's (3 for not_found) and the table names it.
    ops = [{"delete": {"path": "nope"}}, {"write": {"path": "docs/new.txt", "text": "n"}}]
    failed = aether(env, "fs", "apply", sid, "-", input=json.dumps(ops), text=True, check=3)
    assert "not_found" in out(failed) and "1 of 2 changes failed" in failed.stderr
    assert "docs/new.txt" in tree(http, sid)


def test_cli_atomic_failure_changes_nothing(http, env):
    sid = new_session(http)
    ops = [{"write": {"path": "a", "text": "a"}},
           {"write": {"path": "b", "text": "b", "ifMatch": "*"}}]
    failed = aether(env, "fs", "apply", sid, "-", "--atomic", input=json.dumps(ops),
                    text=True, check=4)  # conflict
    assert failed.stderr.startswith("error: conflict: ")
    assert tree(http, sid) == {}
    done = aether(env, "--json", "fs", "apply", sid, "-", "--atomic",
                  input=json.dumps(ops[:1]), text=True)
    assert json.loads(out(done))["results"][0]["info"]["path"] == "a"


@pytest.mark.parametrize(("text", "why"), [
    ("", "no changes"),
    ("[]", "no changes"),
    ('{"ops": [], "atomic": true}', "command line"),
    ('[{"copy": {"fromPath": "a"}}]', "one key of"),
    ('[{"write": {"path": "a", "text": "t", "data": "dA=="}}]', "not both"),
    ('[{"write": {"path": "a", "data": "%%%"}}]', "base64"),
    ('[{"write": {"path": "a", "colour": "red"}}]', "colour"),
    ('{"write": {}}\nnot json\n', "line 2"),
])
def test_cli_refuses_bad_input_before_sending(http, env, text, why):
    sid = new_session(http)
    failed = aether(env, "fs", "apply", sid, "-", input=text, text=True, check=2)
    assert why in failed.stderr


# ---- batch ids: a repeat of a request is answered, not applied twice


def apply_once(http: httpx.Client, sid: str, ops: list[dict], batch_id: str,
               atomic: bool = False) -> httpx.Response:
    return http.post(f"/v1/sessions/{sid}/fs:apply",
                     json={"ops": ops, "atomic": atomic, "batchId": batch_id})


# Not idempotent on its own: applied twice, the rename would fail (not_found)
# and the symlink already exist.
ONCE = [{"write": {"path": "a", "data": b64(b"a\n")}},
        {"rename": {"fromPath": "a", "toPath": "b"}},
        {"symlink": {"path": "l", "target": "b"}},
        {"delete": {"path": "missing"}}]


def test_a_repeated_batch_id_answers_what_it_answered_and_applies_nothing(http):
    sid = new_session(http)
    first = results(apply_once(http, sid, ONCE, "m1-1"))
    assert codes(first) == ["ok", "ok", "ok", "not_found"]
    after, cursor = tree(http, sid), last_cursor(http, sid)
    again = results(apply_once(http, sid, ONCE, "m1-1"))
    assert again == first
    assert tree(http, sid) == after and last_cursor(http, sid) == cursor
    # Without the id the same request is simply applied again.
    assert codes(results(apply(http, sid, ONCE))) == [
        "ok", "already_exists", "already_exists", "not_found"]


def test_a_batch_id_names_one_request(http):
    sid = new_session(http)
    results(apply_once(http, sid, ONCE[:1], "id-1"))
    before = tree(http, sid)
    error = error_of(apply_once(http, sid, ONCE[:2], "id-1"), 412, "failed_precondition")
    assert "other changes" in error["message"]
    assert tree(http, sid) == before
    # ids are per session
    other = new_session(http)
    assert codes(results(apply_once(http, other, ONCE[:1], "id-1"))) == ["ok"]


@pytest.mark.parametrize("bad", ["", "has space", "x" * 129, "ünïcode", "a/b"])
def test_bad_batch_ids_are_refused(http, bad):
    sid = new_session(http)
    r = apply_once(http, sid, ONCE[:1], bad)
    if bad == "":
        assert codes(results(r)) == ["ok"]  # no id: an ordinary batch
        return
    error_of(r, 400, "invalid_argument")
    assert tree(http, sid) == {}


def test_a_failed_atomic_batch_is_not_recorded(http):
    sid = new_session(http)
    ops = [{"write": {"path": "n", "data": b64(b"n"), "ifMatch": "*"}}]  # n must exist
    error_of(apply_once(http, sid, ops, "atomic-1", atomic=True), 409, "conflict")
    assert http.put(f"/v1/sessions/{sid}/files/n", content=b"old").status_code == 200
    assert codes(results(apply_once(http, sid, ops, "atomic-1", atomic=True))) == ["ok"]
    assert http.get(f"/v1/sessions/{sid}/files/n").content == b"n"


def test_the_newest_batch_ids_are_remembered(http):
    from aetherd.services.batch_records import KEPT

    sid = new_session(http)
    for i in range(KEPT + 1):
        results(apply_once(http, sid, [{"mkdir": {"path": f"d{i}"}}], f"b{i}"))
    # the newest KEPT answer from their record; the oldest is forgotten and
    # applied again (its directory exists now)
    assert codes(results(apply_once(http, sid, [{"mkdir": {"path": "d1"}}], "b1"))) == ["ok"]
    assert codes(results(apply_once(http, sid, [{"mkdir": {"path": "d0"}}], "b0"))) == [
        "already_exists"]


def test_a_batch_applied_before_a_crash_is_answered_after_it(tmp_path):
    """The record is written in the batch's transaction: what a client sees
    when the daemon died after committing and before answering."""
    d = DaemonProcess(tmp_path / "data").start()
    try:
        with d.http() as http:
            sid = new_session(http)
            first = results(apply_once(http, sid, ONCE, "crash-1"))
        d.kill()
        d.start()
        with d.http() as http:
            assert results(apply_once(http, sid, ONCE, "crash-1")) == first
            assert set(tree(http, sid)) == {"b", "l"}
    finally:
        d.stop()


async def test_grpc_repeats_are_answered_from_the_record_too(http, channel, md):
    sid = new_session(http)
    first = results(apply_once(http, sid, ONCE, "g-1"))
    files = pb.FileServiceStub(channel, metadata=md)
    reply = await files.apply(pb.ApplyRequest(session_id=sid, ops=grpc_ops(ONCE),
                                              batch_id="g-1"))
    assert [r.to_dict(include_default_values=True) for r in reply.results] == first


def test_cli_batch_id(http, env):
    sid = new_session(http)
    ops = json.dumps(ONCE[:2])
    aether(env, "fs", "apply", sid, "-", "--batch-id", "cli-1", input=ops, text=True)
    again = aether(env, "--json", "fs", "apply", sid, "-", "--batch-id", "cli-1", input=ops,
                   text=True)
    assert codes(json.loads(out(again))["results"]) == ["ok", "ok"]
