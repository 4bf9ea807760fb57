"""Retirement by policy and audit tombstones, on a real daemon that sweeps
every 0.2 s: ttl_idle archives, ttl_archived deletes, a delete leaves a
tombstone (who, when, final root, what it held) kept for the configured time,
and gc then frees content nothing else references."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aetherd.testing import DaemonProcess

SWEEP = 0.2


def start(tmp: Path, **config) -> DaemonProcess:
    return DaemonProcess(tmp / "data", config={"retire_interval_seconds": SWEEP, **config}).start()


@pytest.fixture(scope="module")
def sweeping(tmp_path_factory) -> Iterator[DaemonProcess]:
    d = start(tmp_path_factory.mktemp("retention"))
    yield d
    d.stop()


def session(http: httpx.Client, **policy) -> str:
    r = http.post("/v1/sessions", json={"policy": policy})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def wait_for(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def state(http: httpx.Client, sid: str) -> str:
    r = http.get(f"/v1/sessions/{sid}")
    return "gone" if r.status_code == 404 else r.json()["state"]


def test_ttl_idle_archives_only_sessions_nobody_changes(sweeping):
    with sweeping.http() as http:
        idle = session(http, ttlIdleSeconds="1")
        busy = session(http, ttlIdleSeconds="1")
        forever = session(http)
        archived = "SESSION_STATE_ARCHIVED"
        t0 = time.monotonic()
        while time.monotonic() - t0 < 2.5:  # keep `busy` changing
            http.put(f"/v1/sessions/{busy}/files/tick", content=str(time.time()).encode())
            time.sleep(0.25)
        assert wait_for(lambda: state(http, idle) == archived)
        assert state(http, busy) == "SESSION_STATE_ACTIVE"
        assert state(http, forever) == "SESSION_STATE_ACTIVE"
        events = http.get(f"/v1/sessions/{idle}/events").json()["events"]
        assert [(e["type"], e["actor"]) for e in events][-1] == ("session.archived", "aetherd:ttl")
        # once it stops, `busy` goes the same way
        assert wait_for(lambda: state(http, busy) == archived)


def test_ttl_archived_deletes_and_leaves_a_tombstone(sweeping):
    with sweeping.http() as http:
        sid = session(http, ttlArchivedSeconds="1")
        http.put(f"/v1/sessions/{sid}/files/a.txt", content=b"a").raise_for_status()
        root = http.get(f"/v1/sessions/{sid}").json()["rootHash"]
        http.post(f"/v1/sessions/{sid}:archive").raise_for_status()
        time.sleep(0.5)
        assert state(http, sid) == "SESSION_STATE_ARCHIVED"  # not before its time
        assert wait_for(lambda: state(http, sid) == "gone")
        tomb = http.get(f"/v1/tombstones/{sid}").json()
        assert (tomb["reason"], tomb["deletedBy"], tomb["finalRootHash"]) == (
            "ttl_archived", "aetherd:ttl", root)
        assert tomb["fileCount"] == "1"
        assert tomb["eventCounts"]["session.archived"] == "1"


def test_a_delete_leaves_a_tombstone_of_who_when_and_what(sweeping):
    with sweeping.http() as http:
        owner = http.post("/v1/tokens", json={"principal": "carol", "scopes": ["create"]})
        bearer = owner.json()["secret"]
        with httpx.Client(base_url=sweeping.http_url,
                          headers={"Authorization": f"Bearer {bearer}"}) as carol:
            sid = carol.post("/v1/sessions", json={"name": "doomed", "labels": {"k": "v"}}) \
                .json()["id"]
            for i in range(3):
                carol.put(f"/v1/sessions/{sid}/files/f{i}", content=b"x" * (i + 1))
            carol.post(f"/v1/sessions/{sid}/checkpoints", json={}).raise_for_status()
            carol.post(f"/v1/sessions/{sid}/commits", json={"message": "m"}).raise_for_status()
            before = carol.get(f"/v1/sessions/{sid}").json()
            assert carol.delete(f"/v1/sessions/{sid}").status_code == 200
            r = carol.get(f"/v1/tombstones/{sid}")  # the owner is no admin
            assert r.json()["error"]["code"] == "permission_denied"
        tomb = http.get(f"/v1/tombstones/{sid}").json()
        assert (tomb["name"], tomb["owner"], tomb["labels"], tomb["deletedBy"], tomb["reason"]) \
            == ("doomed", "carol", {"k": "v"}, "carol", "deleted")
        assert (tomb["finalRootHash"], tomb["fileCount"], tomb["totalBytes"]) == (
            before["rootHash"], "3", "6")
        assert (tomb["checkpointCount"], tomb["commitCount"]) == (1, 1)
        assert tomb["eventCounts"]["file.written"] == "3"
        assert int(tomb["lastEventCursor"]) >= 5
        listed = http.get("/v1/tombstones", params={"owner": "carol"}).json()["tombstones"]
        assert [t["sessionId"] for t in listed] == [sid]
        newest = http.get("/v1/tombstones").json()["tombstones"][0]
        assert newest["sessionId"] == sid


def test_tombstones_expire_and_gc_frees_the_content(tmp_path):
    d = start(tmp_path, tombstone_retention_seconds=1)
    try:
        with d.http() as http:
            sid = session(http)
            unique = os.urandom(3 << 20)  # chunks no other session shares
            http.put(f"/v1/sessions/{sid}/files/big.bin", content=unique).raise_for_status()
            http.delete(f"/v1/sessions/{sid}").raise_for_status()
            assert http.get(f"/v1/tombstones/{sid}").status_code == 200
            assert wait_for(lambda: http.get(f"/v1/tombstones/{sid}").status_code == 404)
            out = subprocess.run(
                [sys.executable, "-m", "aetherd", "gc", "--data-dir", str(d.data_dir),
                 "--grace-seconds", "0", "--json"],
                check=True, capture_output=True, text=True).stdout
            assert json.loads(out)["chunks_freed"] >= 3
    finally:
        d.stop()
