"""Per-session quotas from the policy, on a real daemon: max_files and
max_bytes of the working state (writes, copies, symlinks, imports),
max_cache_bytes, max_bus_backlog. A refused change leaves nothing behind."""

from __future__ import annotations

import base64
import io
import tarfile

import httpx
import pytest
from grpclib import GRPCError
from grpclib.client import Channel
from grpclib.const import Status

from aether import pb


def session(http: httpx.Client, **policy) -> str:
    r = http.post("/v1/sessions", json={"policy": policy})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def put(http: httpx.Client, sid: str, path: str, data: bytes) -> httpx.Response:
    return http.put(f"/v1/sessions/{sid}/files/{path}", content=data)


def refused(r: httpx.Response, quota: str) -> bool:
    body = r.json()
    return (r.status_code == 429 and body["error"]["code"] == "resource_exhausted"
            and body["error"]["details"]["quota"] == quota)


def paths(http: httpx.Client, sid: str) -> set[str]:
    return {e["path"] for e in http.get(f"/v1/sessions/{sid}/manifest").json()["entries"]}


def test_max_files_counts_files_and_symlinks(http):
    sid = session(http, maxFiles="3")
    for name in ("a", "b"):
        assert put(http, sid, name, b"x").status_code == 200
    r = http.post(f"/v1/sessions/{sid}/fs:symlink", json={"path": "c", "target": "a"})
    assert r.status_code == 200, r.text
    assert refused(put(http, sid, "d", b"x"), "max_files")
    assert refused(http.post(f"/v1/sessions/{sid}/fs:copy", json={"fromPath": "a", "toPath": "e"}),
                   "max_files")
    assert paths(http, sid) == {"a", "b", "c"}
    assert put(http, sid, "a", b"overwrite keeps the count").status_code == 200
    assert http.delete(f"/v1/sessions/{sid}/files/b").status_code == 200
    assert put(http, sid, "d", b"room again").status_code == 200


def test_max_bytes_refuses_growth_and_keeps_the_old_content(http):
    sid = session(http, maxBytes="100")
    assert put(http, sid, "big", b"x" * 60).status_code == 200
    assert refused(put(http, sid, "more", b"y" * 50), "max_bytes")
    assert refused(put(http, sid, "big", b"z" * 101), "max_bytes")
    assert http.get(f"/v1/sessions/{sid}/files/big").content == b"x" * 60
    assert "more" not in paths(http, sid)
    assert put(http, sid, "big", b"w" * 100).status_code == 200  # exactly at the quota


def test_an_import_over_the_quota_changes_nothing(http):
    sid = session(http, maxFiles="5")
    put(http, sid, "keep", b"k").raise_for_status()
    root = http.get(f"/v1/sessions/{sid}").json()["rootHash"]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for i in range(10):
            info = tarfile.TarInfo(f"m{i}.txt")
            info.size = 1
            tar.addfile(info, io.BytesIO(b"m"))
    r = http.post(f"/v1/sessions/{sid}/import", content=buf.getvalue(),
                  headers={"content-type": "application/x-tar"})
    assert refused(r, "max_files")
    assert http.get(f"/v1/sessions/{sid}").json()["rootHash"] == root


def test_a_quota_lowered_below_use_still_lets_you_clean_up(http):
    sid = session(http)
    for i in range(4):
        put(http, sid, f"f{i}", b"1234567890").raise_for_status()
    http.patch(f"/v1/sessions/{sid}", json={"policy": {"maxFiles": "2"}}).raise_for_status()
    assert refused(put(http, sid, "new", b"x"), "max_files")
    http.delete(f"/v1/sessions/{sid}/files/f0").raise_for_status()
    r = http.post(f"/v1/sessions/{sid}/fs:rename", json={"fromPath": "f1", "toPath": "g1"})
    assert r.status_code == 200, r.text
    http.delete(f"/v1/sessions/{sid}/files/f2").raise_for_status()
    assert refused(put(http, sid, "new", b"x"), "max_files")  # g1, f3 + new: still 3 > 2
    http.delete(f"/v1/sessions/{sid}/files/f3").raise_for_status()
    assert put(http, sid, "new", b"x").status_code == 200
    assert paths(http, sid) == {"g1", "new"}


def b64(n: int) -> str:
    return base64.b64encode(b"v" * n).decode()


def test_max_cache_bytes_counts_live_values(http):
    sid = session(http, maxCacheBytes="100")
    base = f"/v1/sessions/{sid}/cache"
    assert http.put(f"{base}/a", json={"value": b64(60)}).status_code == 200
    assert refused(http.put(f"{base}/b", json={"value": b64(50)}), "max_cache_bytes")
    assert http.get(f"{base}/b").status_code == 404
    batch = {"items": [{"key": "c", "value": b64(10)}, {"key": "d", "value": b64(35)}]}
    assert refused(http.post(f"{base}/batch-set", json=batch), "max_cache_bytes")
    assert http.get(f"{base}/c").status_code == 404  # all or nothing
    assert http.put(f"{base}/a", json={"value": b64(100)}).status_code == 200  # exactly: fits


def test_max_bus_backlog_keeps_the_newest(http):
    sid = session(http, maxBusBacklog="5")
    for _ in range(8):
        r = http.post(f"/v1/sessions/{sid}/bus:publish", json={"topic": "t", "payload": "eA=="})
        assert r.status_code == 200, r.text
    cursors = [int(m["cursor"]) for m in http.get(f"/v1/sessions/{sid}/bus").json()["messages"]]
    assert cursors == [4, 5, 6, 7, 8]


async def test_grpc_gets_resource_exhausted(daemon, http):
    sid = session(http, maxFiles="1")
    put(http, sid, "only", b"1").raise_for_status()
    channel = Channel(daemon.grpc_host, daemon.grpc_port)
    try:
        files = pb.FileServiceStub(channel,
                                   metadata={"authorization": f"Bearer {daemon.token}"})
        with pytest.raises(GRPCError) as err:
            await files.write_file(pb.WriteFileRequest(session_id=sid, path="two", data=b"2"))
        assert err.value.status == Status.RESOURCE_EXHAUSTED
    finally:
        channel.close()
