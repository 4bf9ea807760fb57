"""Batch reads (Files.ReadFiles, POST .../fs:read) against a real daemon, over
HTTP, gRPC, the SDK and `aether fs cat` with several paths.

A batch read must answer for each path what a single read of it answers (the
same bytes, hash, size, and the mode stat gives), read every path from one
view of the chosen state, report a path it cannot read without stopping the
others, and cut the answer at its byte budget without ever stalling. The
module's daemon allows 50 paths and 64 KiB of content per answer, so the
limits are cheap to reach.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
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

MAX_PATHS = 50
MAX_BYTES = 64 << 10


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProc]:
    """This module's daemon: small batch-read limits (overrides conftest's)."""
    d = DaemonProcess(tmp_path_factory.mktemp("aetherd") / "data",
                      config={"max_batch_read_paths": MAX_PATHS,
                              "max_batch_read_bytes": MAX_BYTES}).start()
    yield d
    d.stop()


# ---- helpers


def h(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def new_session(http: httpx.Client, files: dict[str, bytes] | None = None) -> str:
    r = http.post("/v1/sessions", json={})
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    for path, data in (files or {}).items():
        put(http, sid, path, data)
    return sid


def put(http: httpx.Client, sid: str, path: str, data: bytes, mode: str = "") -> None:
    r = http.put(f"/v1/sessions/{sid}/files/{path}", content=data,
                 params={"mode": mode} if mode else None)
    assert r.status_code == 200, r.text


def read(http: httpx.Client, sid: str, paths: list[str], **body: Any) -> httpx.Response:
    return http.post(f"/v1/sessions/{sid}/fs:read", json={"paths": paths, **body})


def entries(r: httpx.Response) -> list[dict]:
    assert r.status_code == 200, r.text
    got = r.json()["files"]
    for e in got:
        if e["error"] is not None:  # an error carries nothing else
            assert (e["data"], e["hash"], e["size"], e["truncated"]) == ("", "", "0", False), e
        if e["truncated"]:
            assert e["data"] == "" and e["hash"], e
    return got


def data_of(e: dict) -> bytes:
    return base64.b64decode(e["data"])


def shape(e: dict) -> str:
    """ok, truncated or the error code."""
    if e["error"] is not None:
        return e["error"]["code"]
    return "truncated" if e["truncated"] else "ok"


def error_of(r: httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert (error["code"], error["status"]) == (code, status), error
    return error


def events(http: httpx.Client, sid: str) -> list[dict]:
    r = http.get(f"/v1/sessions/{sid}/events", params={"limit": 1000})
    assert r.status_code == 200, r.text
    return r.json()["events"]


FILES = {
    "a.txt": b"alpha\n",
    "src/main.py": b"print('hi')\n",
    "src/lib/deep/util.py": b"x = 1\n" * 50,
    "bin/blob": bytes(range(256)) * 8,
    "empty": b"",
    "caf\u00e9 \u65e5\u672c.txt": b"unicode name\n",
}


# ---- HTTP


def test_many_files_in_one_call_equal_single_reads(http):
    sid = new_session(http, FILES)
    put(http, sid, "bin/tool", b"#!/bin/sh\n", mode="0755")
    asked = [*FILES, "bin/tool"]
    got = entries(read(http, sid, asked))
    assert [e["path"] for e in got] == asked
    for path, e in zip(asked, got, strict=True):
        single = http.get(f"/v1/sessions/{sid}/files/{path}")
        assert single.status_code == 200, single.text
        stat = http.get(f"/v1/sessions/{sid}/stat/{path}").json()
        assert shape(e) == "ok"
        assert data_of(e) == single.content
        assert e["hash"] == single.headers["etag"].strip('"') == stat["hash"] == h(single.content)
        assert e["size"] == single.headers["x-aether-size"] == stat["size"]
        assert e["mode"] == stat["mode"]
    assert got[asked.index("bin/tool")]["mode"] == 0o755
    assert got[asked.index("a.txt")]["mode"] == 0o644


def test_per_path_errors_do_not_stop_the_others(http):
    sid = new_session(http, {"a.txt": b"a\n", "d/b.txt": b"b\n"})
    assert http.post(f"/v1/sessions/{sid}/fs:symlink",
                     json={"path": "link", "target": "a.txt"}).status_code == 200
    asked = ["a.txt", "missing", "d", "link", "../x", "", "a.txt/under", "/d/b.txt/",
             "a.txt", "d/../a.txt"]
    got = entries(read(http, sid, asked))
    assert [shape(e) for e in got] == [
        "ok", "not_found", "failed_precondition", "failed_precondition", "invalid_argument",
        "invalid_argument", "failed_precondition", "ok", "ok", "invalid_argument"]
    # Paths come back normalized, or as asked when they are not paths at all.
    assert [e["path"] for e in got] == [
        "a.txt", "missing", "d", "link", "../x", "", "a.txt/under", "d/b.txt", "a.txt",
        "d/../a.txt"]
    assert data_of(got[7]) == b"b\n" and data_of(got[0]) == data_of(got[8]) == b"a\n"
    missing, folder, link = got[1]["error"], got[2]["error"], got[3]["error"]
    assert (missing["status"], missing["details"]) == (404, {"path": "missing"})
    assert (folder["status"], folder["details"]) == (412, {"path": "d"})
    assert "is a directory" in folder["message"]
    assert "is a symlink" in link["message"] and link["details"] == {"path": "link"}
    assert got[4]["error"]["status"] == 400
    # The single read gives the same codes.
    for path, want in (("missing", 404), ("d", 412)):
        assert http.get(f"/v1/sessions/{sid}/files/{path}").status_code == want


def test_at_reads_that_state_while_the_working_state_moved_on(http):
    sid = new_session(http, {"keep": b"keep\n", "change": b"v1\n", "gone": b"gone\n"})
    ckp = http.post(f"/v1/sessions/{sid}/checkpoints", json={}).json()["id"]
    put(http, sid, "change", b"v2\n")
    put(http, sid, "new", b"new\n")
    assert http.delete(f"/v1/sessions/{sid}/files/gone").status_code == 200
    cmt = http.post(f"/v1/sessions/{sid}/commits", json={"message": "m"}).json()["id"]
    put(http, sid, "change", b"v3\n")
    asked = ["keep", "change", "gone", "new"]

    def state(at: str) -> list[Any]:
        return [data_of(e) if shape(e) == "ok" else shape(e)
                for e in entries(read(http, sid, asked, at=at))]

    assert state(ckp) == [b"keep\n", b"v1\n", b"gone\n", "not_found"]
    assert state(cmt) == [b"keep\n", b"v2\n", "not_found", b"new\n"]
    assert state("") == [b"keep\n", b"v3\n", "not_found", b"new\n"]
    assert state("base") == ["not_found"] * 4  # the session started empty
    # The same as a single read at that state.
    assert http.get(f"/v1/sessions/{sid}/files/change", params={"at": ckp}).content == b"v1\n"


def test_every_path_comes_from_one_view_of_the_session(http):
    """A writer changes two files together (an atomic fs:apply) while batch
    reads run: every answer holds both from the same version."""
    sid = new_session(http, {"one": b"0", "two": b"0"})
    stop = threading.Event()
    errors: list[str] = []

    def writer(client: httpx.Client) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            v = base64.b64encode(str(n).encode()).decode()
            r = client.post(f"/v1/sessions/{sid}/fs:apply", json={"atomic": True, "ops": [
                {"write": {"path": "one", "data": v}}, {"write": {"path": "two", "data": v}}]})
            if r.status_code != 200:
                errors.append(r.text)
                return

    with httpx.Client(base_url=http.base_url, headers=http.headers, timeout=60) as other:
        t = threading.Thread(target=writer, args=(other,))
        t.start()
        try:
            versions = set()
            for _ in range(150):
                one, two = entries(read(http, sid, ["one", "two"]))
                assert data_of(one) == data_of(two), (one, two)
                versions.add(data_of(one))
        finally:
            stop.set()
            t.join()
    assert not errors, errors
    assert len(versions) > 1  # the writer really ran meanwhile


def test_max_bytes_cuts_the_answer_and_the_rest_comes_back_truncated(http):
    files = {f"f{i}": bytes([65 + i]) * 1000 for i in range(6)}
    sid = new_session(http, files)
    asked = ["f0", "f1", "missing", "f2", "f3", "f4", "f5"]
    got = entries(read(http, sid, asked, maxBytes=2500))
    # Two files fit in 2,500 bytes; after the third that does not, every file
    # is left out (its entry still has hash, size and mode), errors are still reported.
    assert [shape(e) for e in got] == ["ok", "ok", "not_found", "truncated", "truncated",
                                       "truncated", "truncated"]
    for e in got[3:]:
        assert (e["hash"], e["size"], e["mode"]) == (h(files[e["path"]]), "1000", 0o644)
    # Asking again for what was left out makes progress each time.
    rest = [e["path"] for e in got if e["truncated"]]
    again = entries(read(http, sid, rest, maxBytes=2500))
    assert [shape(e) for e in again] == ["ok", "ok", "truncated", "truncated"]
    # The first file is always included, however small max_bytes is.
    tiny = entries(read(http, sid, ["f0", "f1"], maxBytes=1))
    assert [shape(e) for e in tiny] == ["ok", "truncated"]
    assert data_of(tiny[0]) == files["f0"]
    # An empty file holds no data: the next one is still "the first".
    put(http, sid, "zero", b"")
    assert [shape(e) for e in entries(read(http, sid, ["zero", "f0", "f1"], maxBytes=1))] == [
        "ok", "ok", "truncated"]
    # No limit asked: the daemon's.
    assert [shape(e) for e in entries(read(http, sid, asked))] == [
        "ok", "ok", "not_found", "ok", "ok", "ok", "ok"]


def test_the_daemons_limit_caps_the_answer_and_a_file_over_it_is_left_out_alone(http):
    third = MAX_BYTES * 4 // 10  # two fit in the daemon's limit, three do not
    sid = new_session(http, {"huge": b"h" * (MAX_BYTES + 1), "s1": b"1" * third,
                             "s2": b"2" * third, "s3": b"3" * third})
    # max_bytes over the daemon's limit is held to it.
    got = entries(read(http, sid, ["s1", "s2", "s3"], maxBytes=str(1 << 40)))
    assert [shape(e) for e in got] == ["ok", "ok", "truncated"]
    # A file over the limit never fits: it is truncated even first, and does not
    # end the answer (asking again would not help: read it with a ranged GET).
    got = entries(read(http, sid, ["huge", "s1", "huge", "s2"]))
    assert [shape(e) for e in got] == ["truncated", "ok", "truncated", "ok"]
    assert got[0]["size"] == str(MAX_BYTES + 1) and got[0]["hash"] == h(b"h" * (MAX_BYTES + 1))
    assert len(http.get(f"/v1/sessions/{sid}/files/huge").content) == MAX_BYTES + 1


def test_request_level_problems_refuse_the_whole_request(http):
    sid = new_session(http, {"a": b"a"})
    error = error_of(read(http, sid, ["a"] * (MAX_PATHS + 1)), 400, "invalid_argument")
    assert error["details"] == {"count": str(MAX_PATHS + 1), "limit": str(MAX_PATHS),
                                "setting": "max_batch_read_paths"}
    assert [shape(e) for e in entries(read(http, sid, ["a"] * MAX_PATHS))] == ["ok"] * MAX_PATHS
    assert entries(read(http, sid, [])) == []
    error_of(read(http, "ses_" + "0" * 26, ["a"]), 404, "not_found")
    error_of(read(http, sid, ["a"], at="yesterday"), 400, "invalid_argument")
    error_of(read(http, sid, ["a"], at="ckp_" + "0" * 26), 404, "not_found")
    error_of(http.post(f"/v1/sessions/{sid}/fs:read", json={"paths": "a"}), 400,
             "invalid_argument")
    error_of(read(http, sid, ["a"], maxBytes=-1), 400, "invalid_argument")


def test_reads_work_on_archived_sessions_and_make_no_events(http):
    sid = new_session(http, {"a": b"a"})
    before = events(http, sid)
    assert http.post(f"/v1/sessions/{sid}:archive").status_code == 200
    after_archive = events(http, sid)
    assert [shape(e) for e in entries(read(http, sid, ["a", "b"]))] == ["ok", "not_found"]
    assert events(http, sid) == after_archive and len(after_archive) >= len(before)


def test_limits_are_input_limits():
    assert (Limits().max_batch_read_paths, Limits().max_batch_read_bytes) == (10_000, 64 << 20)
    assert Config(max_batch_read_bytes=5).limits.max_batch_read_bytes == 5
    for key in ("max_batch_read_paths", "max_batch_read_bytes"):
        with pytest.raises(ValueError, match=key):
            Config(**{key: 0})


# ---- gRPC


async def test_grpc_gives_the_same_answers(http, channel, md):
    sid = new_session(http, {**FILES, "big": b"b" * (MAX_BYTES + 1)})
    asked = [*FILES, "missing", "src", "../x", "big"]
    files = pb.FileServiceStub(channel, metadata=md)
    reply = await files.read_files(pb.ReadFilesRequest(session_id=sid, paths=asked))
    over_grpc = [e.to_dict(include_default_values=True) for e in reply.files]
    assert over_grpc == entries(read(http, sid, asked))
    assert reply.files[0].data == FILES["a.txt"] and reply.files[-1].truncated

    cut = await files.read_files(pb.ReadFilesRequest(session_id=sid, paths=["a.txt", "bin/blob"],
                                                     max_bytes=1))
    assert [(e.data != b"", e.truncated) for e in cut.files] == [(True, False), (False, True)]

    async def refused(req: pb.ReadFilesRequest) -> Status:
        with pytest.raises(GRPCError) as err:
            await files.read_files(req)
        return err.value.status

    assert await refused(pb.ReadFilesRequest(session_id=sid, paths=["a"] * (MAX_PATHS + 1))) \
        == Status.INVALID_ARGUMENT
    assert await refused(pb.ReadFilesRequest(session_id="ses_" + "0" * 26, paths=["a"])) \
        == Status.NOT_FOUND
    assert await refused(pb.ReadFilesRequest(session_id=sid, paths=["a"], at="nope")) \
        == Status.INVALID_ARGUMENT


# ---- the SDK


def test_sdk_read_files_sync_and_async(daemon, http):
    from aether.client import AsyncClient, Client
    from aether.errors import InvalidArgument

    sid = new_session(http, FILES)
    ckp = http.post(f"/v1/sessions/{sid}/checkpoints", json={}).json()["id"]
    put(http, sid, "a.txt", b"changed\n")
    with Client(daemon.http_url, token=daemon.token) as c:
        got = c.read_files(sid, ["a.txt", "bin/blob", "missing"])
        assert isinstance(got, pb.ReadFilesResponse)
        assert [e.data for e in got.files[:2]] == [b"changed\n", FILES["bin/blob"]]
        assert (got.files[2].error.code, got.files[2].error.status) == ("not_found", 404)
        assert c.read_files(sid, ["a.txt"], at=ckp).files[0].data == FILES["a.txt"]
        cut = c.read_files(sid, ["a.txt", "bin/blob"], max_bytes=1)
        assert [e.truncated for e in cut.files] == [False, True]
        assert cut.files[1].size == len(FILES["bin/blob"])
        assert c.as_json().read_files(sid, [])["files"] == []
        with pytest.raises(InvalidArgument):
            c.read_files(sid, ["a"] * (MAX_PATHS + 1))

    async def run() -> tuple[pb.ReadFilesResponse, dict]:
        async with AsyncClient(daemon.http_url, token=daemon.token) as ac:
            as_msg = await ac.read_files(sid, ["src/main.py"])
            # What the mount uses: the daemon's JSON, data in base64.
            as_json = await ac.as_json().read_files(sid, ["src/main.py", "src"], at=ckp,
                                                    max_bytes=1 << 20)
            return as_msg, as_json

    as_msg, as_json = asyncio.run(run())
    assert as_msg.files[0].data == FILES["src/main.py"]
    first, second = as_json["files"]
    assert base64.b64decode(first["data"]) == FILES["src/main.py"]
    assert (first["hash"], first["size"]) == (h(FILES["src/main.py"]),
                                              str(len(FILES["src/main.py"])))
    assert second["error"]["code"] == "failed_precondition"


# ---- the command line


def test_cli_cat_of_several_paths_is_one_after_another(http, env):
    sid = new_session(http, FILES)
    paths = ["a.txt", "src/main.py", "bin/blob", "empty", "src/lib/deep/util.py"]
    done = aether(env, "fs", "cat", sid, *paths)
    assert done.stdout == b"".join(FILES[p] for p in paths)
    assert done.stderr == b""
    # One path: the single read as before (ranges included).
    assert aether(env, "fs", "cat", sid, "a.txt").stdout == FILES["a.txt"]
    assert aether(env, "fs", "cat", sid, "a.txt", "--offset", "2", "--length", "2").stdout == b"ph"
    failed = aether(env, "fs", "cat", sid, "a.txt", "src/main.py", "--offset", "1", check=2)
    assert b"one PATH" in failed.stderr


def test_cli_cat_goes_on_past_a_missing_path_and_fails_at_the_end(http, env):
    sid = new_session(http, FILES)
    failed = aether(env, "fs", "cat", sid, "a.txt", "missing", "src", "src/main.py", check=3)
    assert failed.stdout == FILES["a.txt"] + FILES["src/main.py"]
    lines = failed.stderr.decode().splitlines()
    assert lines == ["error: not_found: no such file or directory: 'missing'",
                     "error: failed_precondition: is a directory: 'src'"]


def test_cli_cat_json_prints_the_response(http, env):
    sid = new_session(http, FILES)
    done = aether(env, "fs", "cat", sid, "a.txt", "bin/blob", "--json", text=True)
    got = json.loads(out(done))
    assert [base64.b64decode(e["data"]) for e in got["files"]] == [FILES["a.txt"],
                                                                   FILES["bin/blob"]]
    assert got["files"][0]["hash"] == h(FILES["a.txt"])
    failed = aether(env, "--json", "fs", "cat", sid, "a.txt", "missing", text=True, check=3)
    got = json.loads(out(failed))
    assert [shape(e) for e in got["files"]] == ["ok", "not_found"]


def test_cli_cat_follows_truncated_entries(http, env):
    """More than one answer holds: the rest is asked for again, and a file over
    the daemon's limit is streamed with a single read, all in order."""
    third = MAX_BYTES * 4 // 10
    files = {f"s{i}": bytes([48 + i]) * third for i in range(5)}
    files["huge"] = b"H" * (MAX_BYTES * 2)
    sid = new_session(http, files)
    order = ["s0", "huge", "s1", "s2", "missing", "s3", "huge", "s4"]
    failed = aether(env, "fs", "cat", sid, *order, check=3)
    assert failed.stdout == b"".join(files.get(p, b"") for p in order)
    assert failed.stderr.decode().count("error: not_found") == 1
    # --json: every file that fits an answer has its data; one over the limit
    # stays truncated (its hash and size say what it is).
    got = json.loads(out(aether(env, "fs", "cat", sid, "huge", "s0", "s1", "s2", "--json")))
    assert [shape(e) for e in got["files"]] == ["truncated", "ok", "ok", "ok"]
    assert got["files"][0]["size"] == str(MAX_BYTES * 2)
    assert [base64.b64decode(e["data"]) for e in got["files"][1:]] == [
        files["s0"], files["s1"], files["s2"]]
