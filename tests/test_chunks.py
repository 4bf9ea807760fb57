"""Large files by chunks (Files.MissingChunks, Files.PutChunks, writes with
`chunks`) against a real daemon, over HTTP, gRPC, the SDK and `aether fs put
--chunked`.

A write by chunks must be the same write as one with data: same hash (the
daemon's own, computed from the chunks it reads back), extents, If-Match,
quota and events. Only the chunks the daemon lacks move. A chunk that is not
there makes the write fail with failed_precondition `missing_chunk` and change
nothing; after a re-upload it succeeds. The module's daemon allows 16 MiB of
body and 50 hashes per query, so those limits are cheap to reach.
"""

from __future__ import annotations

import base64
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import blake3
import httpx
import pytest
from cli_helpers import aether, out
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from aether import pb
from aether.client import AsyncClient, ChunkedUpload, Client, chunk_hashes
from aether.errors import FailedPrecondition, InvalidArgument
from aetherd import maintenance
from aetherd.store.blobs import chunk_hash
from aetherd.store.objects import CHUNK_SIZE
from aetherd.testing import DaemonProcess

if TYPE_CHECKING:
    from conftest import DaemonProc

MAX_BODY = 16 << 20
MAX_QUERY = 50
MiB = 1 << 20


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProc]:
    """This module's daemon: small body and query limits (overrides conftest's)."""
    d = DaemonProcess(tmp_path_factory.mktemp("aetherd") / "data",
                      config={"max_body_bytes": MAX_BODY, "max_chunk_query": MAX_QUERY}).start()
    yield d
    d.stop()


@pytest.fixture
def client(daemon: DaemonProc) -> Iterator[Client]:
    with Client(daemon.http_url, token=daemon.token) as c:
        yield c


# ---- helpers


def h(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def new_session(http: httpx.Client, **body: Any) -> str:
    r = http.post("/v1/sessions", json=body)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def put_chunks(http: httpx.Client, sid: str, data: bytes) -> httpx.Response:
    return http.post(f"/v1/sessions/{sid}/chunks", content=data,
                     headers={"Content-Type": "application/octet-stream"})


def missing(http: httpx.Client, sid: str, hashes: list[str]) -> httpx.Response:
    return http.post(f"/v1/sessions/{sid}/chunks:missing", json={"hashes": hashes})


def write_op(path: str, chunks: list[str], **extra: Any) -> dict:
    return {"write": {"path": path, "chunks": chunks, "createParents": True, **extra}}


def apply(http: httpx.Client, sid: str, ops: list[dict], atomic: bool = False) -> httpx.Response:
    return http.post(f"/v1/sessions/{sid}/fs:apply", json={"ops": ops, "atomic": atomic})


def error_of(r: httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code, error
    return error


def content(size: int, seed: int = 0) -> bytes:
    """`size` bytes that differ per 1 MiB chunk and per seed (cheap, deterministic)."""
    out = bytearray()
    n = 0
    while len(out) < size:
        out += blake3.blake3(f"{seed}:{n}".encode()).digest(length=min(MiB, size - len(out)))
        n += 1
    return bytes(out)


def events(http: httpx.Client, sid: str) -> list[dict]:
    r = http.get(f"/v1/sessions/{sid}/events", params={"after": 0, "limit": 1000})
    assert r.status_code == 200, r.text
    return r.json()["events"]


def read(http: httpx.Client, sid: str, path: str) -> bytes:
    r = http.get(f"/v1/sessions/{sid}/files/{path}")
    assert r.status_code == 200, r.text
    return r.content


# ---- round trip


def test_the_chunk_hash_is_blake3_of_the_chunk():
    """What docs/api.md tells clients to compute is what the daemon computes."""
    data = content(2 * MiB + 5)
    assert chunk_hashes(data) == [h(data[:MiB]), h(data[MiB : 2 * MiB]), h(data[2 * MiB :])]
    assert chunk_hashes(data) == [chunk_hash(data[i : i + CHUNK_SIZE])
                                  for i in range(0, len(data), CHUNK_SIZE)]
    assert CHUNK_SIZE == MiB


def test_round_trip_equals_a_data_write(http):
    sid = new_session(http)
    data = content(2 * MiB + MiB // 2, seed=1)
    hashes = chunk_hashes(data)
    r = missing(http, sid, [*hashes, hashes[0]])
    assert r.status_code == 200, r.text
    assert r.json()["missing"] == hashes  # in order, once each
    r = put_chunks(http, sid, data)
    assert r.status_code == 200, r.text
    assert r.json()["hashes"] == hashes
    assert missing(http, sid, hashes).json()["missing"] == []
    r = apply(http, sid, [write_op("big/by-chunks.bin", hashes)], atomic=True)
    assert r.status_code == 200, r.text
    info = r.json()["results"][0]["info"]
    assert (info["hash"], info["size"]) == (h(data), str(len(data)))
    assert read(http, sid, "big/by-chunks.bin") == data
    plain = http.put(f"/v1/sessions/{sid}/files/plain.bin", content=data).json()
    assert plain["hash"] == info["hash"]
    by_chunks = http.get(f"/v1/sessions/{sid}/stat/big/by-chunks.bin").json()
    by_data = http.get(f"/v1/sessions/{sid}/stat/plain.bin").json()
    assert by_chunks["extents"] == by_data["extents"]
    assert [e["hash"] for e in by_chunks["extents"]] == hashes


def test_put_chunks_cuts_at_one_mib_and_an_empty_body_is_refused(http):
    sid = new_session(http)
    data = content(3 * MiB, seed=2)
    assert put_chunks(http, sid, data).json()["hashes"] == chunk_hashes(data)
    error_of(put_chunks(http, sid, b""), 400, "invalid_argument")
    # The body limit applies, refused before it is read.
    error_of(put_chunks(http, sid, bytes(MAX_BODY + 1)), 413, "payload_too_large")


def test_an_empty_list_of_chunks_writes_an_empty_file(http):
    sid = new_session(http)
    r = apply(http, sid, [{"write": {"path": "empty", "chunks": []}}], atomic=True)
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["info"]["hash"] == h(b"")
    assert read(http, sid, "empty") == b""


def test_an_edit_uploads_only_the_changed_chunk(client):
    sid = client.create_session(name="edit").id
    data = content(5 * MiB, seed=3)
    first = ChunkedUpload()
    f = client.write_file_chunked(sid, "big.bin", data, report=first)
    assert (f.hash, f.size) == (h(data), len(data))
    assert (first.uploaded_bytes, first.skipped_bytes, first.chunks) == (5 * MiB, 0, 5)
    edited = bytearray(data)
    edited[2 * MiB + 100 : 2 * MiB + 100 + 4096] = b"e" * 4096
    again = ChunkedUpload()
    g = client.write_file_chunked(sid, "big.bin", bytes(edited), if_match=f.hash, report=again)
    assert g.hash == h(bytes(edited))
    assert (again.uploaded_bytes, again.skipped_bytes, again.put_requests) == (MiB, 4 * MiB, 1)
    assert client.read_file(sid, "big.bin").data == bytes(edited)
    # The same content once more: nothing moves.
    same = ChunkedUpload()
    client.write_file_chunked(sid, "copy.bin", bytes(edited), report=same)
    assert (same.uploaded_bytes, same.put_requests) == (0, 0)


def test_a_sparse_file_of_zeros_moves_one_chunk(client, tmp_path):
    sid = client.create_session(name="zeros").id
    path = tmp_path / "sparse"
    with open(path, "wb") as fh:
        fh.truncate(20 * MiB)
    report = ChunkedUpload()
    with open(path, "rb") as fh:  # a file: read chunk by chunk, twice
        f = client.write_file_chunked(sid, "zeros", fh, report=report)
    assert (f.size, f.hash) == (20 * MiB, h(bytes(20 * MiB)))
    assert report.uploaded_bytes <= MiB and report.put_requests <= 1


def test_runs_of_missing_chunks_go_in_requests_under_the_body_limit(client):
    """Only the missing chunks are read and sent, consecutive ones together."""
    sid = client.create_session(name="runs").id
    data = content(6 * MiB, seed=4)
    client.put_chunks(sid, data[MiB : 2 * MiB])  # held: chunk 1 and chunk 4
    client.put_chunks(sid, data[4 * MiB : 5 * MiB])
    report = ChunkedUpload()
    f = client.write_file_chunked(sid, "runs.bin", data, report=report)
    assert f.hash == h(data)
    assert (report.uploaded_bytes, report.put_requests) == (4 * MiB, 3)  # [0], [2,3], [5]


# ---- refusals


def test_a_missing_chunk_fails_the_write_and_changes_nothing(http):
    sid = new_session(http)
    http.put(f"/v1/sessions/{sid}/files/keep.bin", content=b"old").raise_for_status()
    before = events(http, sid)
    data = content(2 * MiB, seed=5)
    hashes = chunk_hashes(data)
    put_chunks(http, sid, data[:MiB]).raise_for_status()  # only the first
    error = error_of(apply(http, sid, [write_op("keep.bin", hashes)], atomic=True), 412,
                     "failed_precondition")
    assert error["details"]["missing_chunk"] == hashes[1]
    got = apply(http, sid, [write_op("keep.bin", hashes), {"mkdir": {"path": "d"}}]).json()
    assert got["results"][0]["error"]["code"] == "failed_precondition"
    assert got["results"][0]["error"]["details"]["missing_chunk"] == hashes[1]
    assert got["results"][1]["info"]["path"] == "d"
    assert read(http, sid, "keep.bin") == b"old"
    assert [e["type"] for e in events(http, sid)[len(before):]] == ["dir.created"]
    # Uploaded, the same write succeeds.
    put_chunks(http, sid, data[MiB:]).raise_for_status()
    r = apply(http, sid, [write_op("keep.bin", hashes)], atomic=True)
    assert r.status_code == 200, r.text
    assert read(http, sid, "keep.bin") == data


def test_wrong_chunk_sizes_are_invalid(http):
    sid = new_session(http)
    full, short = content(MiB, seed=6), b"short chunk"
    (h_full,) = put_chunks(http, sid, full).json()["hashes"]
    (h_short,) = put_chunks(http, sid, short).json()["hashes"]
    for chunks in ([h_short, h_full], [h_short, h_short], [h_full, h_short, h_full]):
        error = error_of(apply(http, sid, [write_op("x", chunks)], atomic=True), 400,
                         "invalid_argument")
        assert error["details"]["field"].startswith("chunks[")
    r = apply(http, sid, [write_op("x", [h_full, h_full, h_short])], atomic=True)
    assert r.status_code == 200, r.text
    assert read(http, sid, "x") == full + full + short


def test_data_and_chunks_together_or_bad_hashes_are_invalid(http):
    sid = new_session(http)
    (one,) = put_chunks(http, sid, b"one").json()["hashes"]
    both = {"write": {"path": "x", "chunks": [one], "data": base64.b64encode(b"x").decode()}}
    error_of(apply(http, sid, [both], atomic=True), 400, "invalid_argument")
    for bad in ("abc", one.upper(), one[:-1], one + "0", "g" * 64):
        error_of(apply(http, sid, [write_op("x", [bad])], atomic=True), 400, "invalid_argument")
        error_of(missing(http, sid, [one, bad]), 400, "invalid_argument")
    # The raw PUT route writes its body, never chunks.
    r = http.put(f"/v1/sessions/{sid}/files/x", params={"chunks": one}, content=b"")
    error_of(r, 400, "invalid_argument")
    assert http.get(f"/v1/sessions/{sid}/stat/x").status_code == 404


def test_too_many_hashes_in_one_query(http):
    sid = new_session(http)
    hashes = [h(str(i).encode()) for i in range(MAX_QUERY + 1)]
    error = error_of(missing(http, sid, hashes), 400, "invalid_argument")
    assert error["details"]["setting"] == "max_chunk_query"
    assert missing(http, sid, hashes[:MAX_QUERY]).json()["missing"] == hashes[:MAX_QUERY]


# ---- the same write as one with data


def test_if_match_and_events_as_for_a_data_write(http):
    sid = new_session(http)
    data = content(MiB + 10, seed=7)
    hashes = put_chunks(http, sid, data).json()["hashes"]
    r = apply(http, sid, [write_op("f.bin", hashes, ifMatch="!")], atomic=True)
    assert r.status_code == 200, r.text
    error_of(apply(http, sid, [write_op("f.bin", hashes, ifMatch="!")], atomic=True), 409,
             "conflict")
    error_of(apply(http, sid, [write_op("f.bin", hashes, ifMatch=h(b"other"))], atomic=True),
             409, "conflict")
    r = apply(http, sid, [write_op("f.bin", hashes, ifMatch=h(data), mode=0o600)], atomic=True)
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["info"]["mode"] == 0o600
    written = [e for e in events(http, sid) if e["type"] == "file.written"]
    assert len(written) == 2
    for e in written:
        assert e["path"] == "f.bin"
        assert e["attributes"]["size"] == str(len(data))
        assert e["attributes"]["hash"] == h(data)


def test_the_quota_counts_the_size(http):
    sid = new_session(http, policy={"maxBytes": str(2 * MiB)})
    data = content(3 * MiB, seed=8)
    hashes = put_chunks(http, sid, data).json()["hashes"]  # uploads are not the tree
    error = error_of(apply(http, sid, [write_op("big", hashes)], atomic=True), 429,
                     "resource_exhausted")
    assert error["details"]["quota"] == "max_bytes"
    r = apply(http, sid, [write_op("fits", hashes[:1])], atomic=True)
    assert r.status_code == 200, r.text


def test_chunks_in_a_batch_atomic_and_not(http):
    sid = new_session(http)
    a, b = content(MiB + 1, seed=9), content(2 * MiB, seed=10)
    ha, hb = put_chunks(http, sid, a).json()["hashes"], put_chunks(http, sid, b).json()["hashes"]
    gone = h(b"never uploaded")
    ops = [write_op("a", ha), write_op("bad", [gone]), write_op("b", hb),
           {"write": {"path": "c", "data": base64.b64encode(b"c").decode()}}]
    got = apply(http, sid, ops).json()["results"]
    assert ["ok" if r["error"] is None else r["error"]["code"] for r in got] == [
        "ok", "failed_precondition", "ok", "ok"]
    assert (read(http, sid, "a"), read(http, sid, "b"), read(http, sid, "c")) == (a, b, b"c")
    # Atomic: the missing chunk fails all of it.
    ops = [write_op("a2", ha), write_op("bad", [gone])]
    error_of(apply(http, sid, ops, atomic=True), 412, "failed_precondition")
    assert http.get(f"/v1/sessions/{sid}/stat/a2").status_code == 404


# ---- gc


def test_gc_frees_unnamed_uploads_only_after_its_grace(fresh_daemon):
    d = fresh_daemon.start()
    with d.http() as http:
        sid = new_session(http)
        data = content(2 * MiB, seed=11)
        hashes = put_chunks(http, sid, data).json()["hashes"]
        # At the default grace (15 min) an upload survives a gc ...
        assert maintenance.gc(d.data_dir)["chunks_freed"] == 0
        assert missing(http, sid, hashes).json()["missing"] == []
        # ... at grace 0 it is freed: the write fails cleanly, not with damage.
        assert maintenance.gc(d.data_dir, grace_seconds=0)["chunks_freed"] == 2
        error = error_of(apply(http, sid, [write_op("f", hashes)], atomic=True), 412,
                         "failed_precondition")
        assert error["details"]["missing_chunk"] == hashes[0]
        assert http.get(f"/v1/sessions/{sid}/stat/f").status_code == 404
        assert missing(http, sid, hashes).json()["missing"] == hashes
        put_chunks(http, sid, data).raise_for_status()
        r = apply(http, sid, [write_op("f", hashes)], atomic=True)
        assert r.status_code == 200, r.text
        assert read(http, sid, "f") == data
        # Named now: gc at grace 0 keeps them.
        maintenance.gc(d.data_dir, grace_seconds=0)
        assert read(http, sid, "f") == data


def test_the_sdk_uploads_again_what_gc_freed(fresh_daemon):
    """The helper's answer to missing_chunk: ask again, upload, retry."""
    d = fresh_daemon.start()
    data = content(2 * MiB, seed=12)
    with Client(d.http_url, token=d.token) as c:
        sid = c.create_session(name="gc").id
        c.put_chunks(sid, data)
        steps = c._run_steps  # free the chunks between the question and the write

        def gc_before_the_write(gen: Any) -> Any:
            def wrapped() -> Any:
                call = next(gen)
                while True:
                    if call.path.endswith("/fs:apply") and not freed:
                        freed.append(maintenance.gc(d.data_dir, grace_seconds=0))
                    try:
                        try:
                            got = yield call
                        except Exception as exc:
                            call = gen.throw(exc)
                        else:
                            call = gen.send(got)
                    except StopIteration as done:
                        return done.value
            return steps(wrapped())

        freed: list[dict] = []
        c._run_steps = gc_before_the_write  # type: ignore[method-assign]
        report = ChunkedUpload()
        f = c.write_file_chunked(sid, "f", data, report=report)
        assert freed and freed[0]["chunks_freed"] == 2
        assert f.hash == h(data)
        assert report.uploaded_bytes == 2 * MiB  # the second round
        assert c.read_file(sid, "f").data == data


def test_chunk_queries_off_reports_every_chunk_missing(tmp_path):
    d = DaemonProcess(tmp_path / "data", config={"chunk_queries": False}).start()
    try:
        with d.http() as http:
            sid = new_session(http)
            data = content(MiB + 3, seed=13)
            hashes = put_chunks(http, sid, data).json()["hashes"]
            assert missing(http, sid, [*hashes, hashes[0]]).json()["missing"] == hashes
            # Writes by chunks still work; uploads are never skipped.
            r = apply(http, sid, [write_op("f", hashes)], atomic=True)
            assert r.status_code == 200, r.text
        with Client(d.http_url, token=d.token) as c:
            report = ChunkedUpload()
            c.write_file_chunked(sid, "g", data, report=report)
            assert report.uploaded_bytes == len(data)
    finally:
        d.stop()


# ---- authorization, gRPC, async SDK, CLI


def test_writers_may_readers_and_reviewers_may_not(daemon, http):
    sid = new_session(http)
    hashes = chunk_hashes(b"auth")
    want = {"writer": (200, ""), "reviewer": (403, "permission_denied"),
            "reader": (403, "permission_denied"), None: (404, "not_found")}
    for role, (status, code) in want.items():
        scopes = [f"{sid}:{role}"] if role else []
        r = http.post("/v1/tokens", json={"principal": f"chunks-{role}", "scopes": scopes})
        assert r.status_code == 201, r.text
        with httpx.Client(base_url=daemon.http_url, timeout=30,
                          headers={"Authorization": f"Bearer {r.json()['secret']}"}) as c:
            for got in (put_chunks(c, sid, b"auth"), missing(c, sid, hashes)):
                assert got.status_code == status, (role, got.text)
                if code:
                    assert got.json()["error"]["code"] == code


async def test_grpc_write_file_with_chunks(daemon, channel: Channel, md):
    files = pb.FileServiceStub(channel, metadata=md)
    sessions = pb.SessionServiceStub(channel, metadata=md)
    sid = (await sessions.create_session(pb.CreateSessionRequest(name="grpc"))).id
    data = content(2 * MiB + 7, seed=14)
    hashes = chunk_hashes(data)
    got = await files.missing_chunks(pb.MissingChunksRequest(session_id=sid, hashes=hashes))
    assert got.missing == hashes
    put = await files.put_chunks(pb.PutChunksRequest(session_id=sid, data=data))
    assert put.hashes == hashes
    info = await files.write_file(pb.WriteFileRequest(session_id=sid, path="g.bin",
                                                      chunks=hashes, create_parents=True))
    assert (info.hash, info.size) == (h(data), len(data))
    read = await files.read_file(pb.ReadFileRequest(session_id=sid, path="g.bin"))
    assert read.data == data
    for bad in (pb.WriteFileRequest(session_id=sid, path="g.bin", chunks=hashes, data=b"x"),
                pb.WriteFileRequest(session_id=sid, path="g.bin", chunks=hashes,
                                    at_offset=True),
                pb.WriteFileRequest(session_id=sid, path="g.bin", chunks=hashes[::-1])):
        with pytest.raises(GRPCError) as err:
            await files.write_file(bad)
        assert err.value.status == Status.INVALID_ARGUMENT
    with pytest.raises(GRPCError) as err:
        await files.write_file(pb.WriteFileRequest(session_id=sid, path="g.bin",
                                                   chunks=[h(b"absent")]))
    assert err.value.status == Status.FAILED_PRECONDITION
    with pytest.raises(GRPCError) as err:
        await files.put_chunks(pb.PutChunksRequest(session_id=sid))
    assert err.value.status == Status.INVALID_ARGUMENT


async def test_async_client_and_its_json_view(daemon):
    async with AsyncClient(daemon.http_url, token=daemon.token) as c:
        sid = (await c.create_session(name="async")).id
        data = content(MiB + 9, seed=15)
        hashes = chunk_hashes(data)
        assert (await c.missing_chunks(sid, hashes)).missing == hashes
        raw = c.as_json()
        assert await raw.missing_chunks(sid, hashes) == {"missing": hashes}
        assert (await raw.put_chunks(sid, data))["hashes"] == hashes
        assert await raw.missing_chunks(sid, hashes) == {"missing": []}
        info = await raw.write_file_chunked(sid, "j.bin", data)
        assert info["hash"] == h(data)
        report = ChunkedUpload()
        info = await c.write_file_chunked(sid, "k.bin", data, report=report, mode=0o640)
        assert (info.hash, info.mode, report.uploaded_bytes) == (h(data), 0o640, 0)
        with pytest.raises(FailedPrecondition):
            await c.apply(sid, [{"write": {"path": "x", "chunks": [h(b"absent")]}}],
                          atomic=True)
        with pytest.raises(InvalidArgument):
            await c.missing_chunks(sid, ["nope"])


def test_cli_put_chunked_twice_uploads_nothing_the_second_time(env):
    sid = out(aether(env, "-q", "session", "create")).strip()
    data = content(3 * MiB, seed=16)
    with tempfile.NamedTemporaryFile(dir=os.environ.get("TMPDIR", "/tmp")) as fh:
        fh.write(data)
        fh.flush()
        first = out(aether(env, "fs", "put", sid, "big.bin", fh.name, "--chunked"))
        assert f"uploaded {3 * MiB} B in 1 request, skipped 0 B" in first, first
        second = out(aether(env, "fs", "put", sid, "big.bin", fh.name, "--chunked"))
        assert f"uploaded 0 B in 0 requests, skipped {3 * MiB} B" in second, second
        quiet = out(aether(env, "-q", "fs", "put", sid, "big.bin", fh.name, "--chunked"))
        assert quiet.strip() == h(data)
        got = aether(env, "fs", "cat", sid, "big.bin").stdout
    assert got == data
    bad = aether(env, "fs", "put", sid, "x", str(Path(fh.name)), "--chunked", "--offset", "1",
                 check=2)
    assert b"--chunked" in bad.stderr
