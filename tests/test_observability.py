"""Observability over real HTTP and gRPC: health, session health, usage (exact
numbers, dedup included), analytics windows, and the Prometheus /metrics page."""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections import Counter
from datetime import UTC, datetime

import apsw
import httpx
import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from prometheus_client.parser import text_string_to_metric_families

from aether import pb
from aetherd.http.routes import ROUTES

MIB = 1 << 20  # the store's chunk size
S = "/v1/sessions"
RPC_BASES = (pb.SessionServiceBase, pb.FileServiceBase, pb.PersistenceServiceBase,
             pb.CacheServiceBase, pb.BusServiceBase, pb.EventServiceBase, pb.ReviewServiceBase,
             pb.ObservabilityServiceBase)


@pytest.fixture
def obs(daemon, channel):
    return pb.ObservabilityServiceStub(
        channel, metadata={"authorization": f"Bearer {daemon.token}"})


def ok(resp: httpx.Response) -> dict:
    assert resp.status_code < 300, resp.text
    return resp.json() if resp.content else {}


def new_session(http: httpx.Client, **body) -> str:
    return ok(http.post(S, json=body))["id"]


def put(http: httpx.Client, sid: str, path: str, data: bytes) -> None:
    ok(http.put(f"{S}/{sid}/files/{path}", content=data))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# ---- health


async def test_daemon_health_on_both_transports(daemon, obs):
    # Liveness probes carry no token: /v1/health is the one public route.
    got = httpx.get(f"{daemon.http_url}/v1/health").json()
    assert got["status"] == "ok" and got["checks"] == {"metadata": "ok", "blobs": "ok"}
    reply = await obs.health(pb.HealthRequest())
    assert reply.status == "ok" and reply.checks == got["checks"] and reply.version


async def test_session_health_reports_state_overlay_and_checkpoints(http, obs):
    sid = new_session(http)
    put(http, sid, "a/b.txt", b"one\n")  # overlay rows: a, a/b.txt
    got = ok(http.get(f"{S}/{sid}/health"))
    assert got == {"sessionId": sid, "status": "ok", "checks": {
        "session": "ok", "state": "active", "root_tree": "ok", "base_tree": "ok",
        "overlay": "ok: 2 overlay rows", "checkpoints": "ok: 0 checkpoints"}}

    ok(http.post(f"{S}/{sid}/checkpoints", json={}))  # folds the overlay
    ok(http.post(f"{S}/{sid}:archive"))
    reply = await obs.get_session_health(pb.SessionHealthRequest(session_id=sid))
    assert reply.status == "ok"  # archived is a state, not a fault
    assert reply.checks == {
        "session": "ok", "state": "archived (read-only)", "root_tree": "ok", "base_tree": "ok",
        "overlay": "ok: 0 overlay rows", "checkpoints": "ok: 1 checkpoints"}

    assert http.get(f"{S}/ses_00000000000000000000000000/health").status_code == 404
    with pytest.raises(GRPCError) as err:
        await obs.get_session_health(
            pb.SessionHealthRequest(session_id="ses_00000000000000000000000000"))
    assert err.value.status == Status.NOT_FOUND


async def test_session_health_degrades_when_its_trees_are_lost(daemon, http, obs):
    sid = new_session(http)
    put(http, sid, "unique.bin", os.urandom(100))  # content no other session has
    ckp = ok(http.post(f"{S}/{sid}/checkpoints", json={}))
    put(http, sid, "later.txt", b"after the checkpoint\n")
    # Damage the real store the way a lost page would: the checkpointed root
    # (also the tree the overlay applies to) disappears.
    db = apsw.Connection(str(daemon.data_dir / "meta.db"))
    try:
        db.execute("DELETE FROM trees WHERE hash=?", (ckp["rootHash"],))
    finally:
        db.close()

    got = ok(http.get(f"{S}/{sid}/health"))
    assert got["status"] == "degraded"
    assert got["checks"]["root_tree"] == f"error: tree {ckp['rootHash']} is missing"
    assert got["checks"]["checkpoints"] == f"error: root tree missing for {ckp['id']}"
    assert got["checks"]["base_tree"] == "ok"  # a blank session's base is the empty tree
    reply = await obs.get_session_health(pb.SessionHealthRequest(session_id=sid))
    assert reply.status == "degraded" and reply.checks == got["checks"]


# ---- usage


def _usage_numbers(u: dict) -> dict:
    return {k: v for k, v in u.items() if k != "sessionId"}


async def test_usage_is_exact_and_counts_shared_chunks_once(daemon, http, obs):
    c1, c2, c3 = os.urandom(MIB), os.urandom(1000), os.urandom(500)
    x = os.urandom(3000)
    hello = f"hello {os.urandom(8).hex()}\n".encode()
    chunks_before = _scrape(http)[("aetherd_blob_chunks", ())]

    sid = new_session(http)
    put(http, sid, "big.bin", c1 + c2)  # two chunks: c1, c2
    put(http, sid, "src/big2.bin", c1 + c3)  # shares its first chunk with big.bin
    put(http, sid, "src/a.bin", x)
    put(http, sid, "src/deep/copy.bin", x)  # identical files: one chunk
    put(http, sid, "docs/x.bin", x)
    put(http, sid, "docs/readme.txt", hello)
    put(http, sid, "empty.txt", b"")  # no chunk at all
    ok(http.post(f"{S}/{sid}/fs:symlink", json={"path": "link", "target": "docs/readme.txt"}))
    ok(http.post(f"{S}/{sid}/fs:mkdir", json={"path": "emptydir"}))

    logical = (MIB + 1000) + (MIB + 500) + 3 * 3000 + len(hello)
    unique = MIB + 1000 + 500 + 3000 + len(hello)
    expected = {
        "files": "8",  # 7 files and a symlink, as Session.fileCount counts them
        "directories": "4",  # src, src/deep, docs, emptydir
        "bytes": str(logical), "uniqueBlobBytes": str(unique),
        "dedupRatio": pytest.approx(logical / unique),
        "cacheKeys": "0", "cacheBytes": "0", "busBacklog": "0",
        "checkpoints": "0", "commits": "0",
    }
    # Read while the changes are still overlay rows...
    assert _usage_numbers(ok(http.get(f"{S}/{sid}/usage"))) == expected
    session = ok(http.get(f"{S}/{sid}"))
    assert session["fileCount"] == "8" and session["totalBytes"] == str(logical)
    # ...and the same once they are folded into trees.
    ok(http.post(f"{S}/{sid}/checkpoints", json={}))
    ok(http.post(f"{S}/{sid}/commits", json={"message": "m", "author": "a"}))
    expected |= {"checkpoints": "1", "commits": "1"}
    assert _usage_numbers(ok(http.get(f"{S}/{sid}/usage"))) == expected
    # The store kept each distinct chunk once: c1, c2, c3, x, hello.
    assert _scrape(http)[("aetherd_blob_chunks", ())] == chunks_before + 5

    # A copied directory is more logical bytes for no new chunk.
    ok(http.post(f"{S}/{sid}/fs:copy", json={"fromPath": "src", "toPath": "src2"}))
    logical2 = logical + (MIB + 500) + 2 * 3000
    expected |= {"files": "11", "directories": "6", "bytes": str(logical2),
                 "dedupRatio": pytest.approx(logical2 / unique)}
    reply = await obs.get_usage(pb.SessionUsageRequest(session_id=sid))
    assert reply.files == 11 and reply.directories == 6 and reply.bytes == logical2
    assert reply.unique_blob_bytes == unique and reply.dedup_ratio == pytest.approx(logical2 / unique)
    assert (reply.checkpoints, reply.commits) == (1, 1)

    # A fork and an unrelated session with the same content: each reports the
    # chunks its own state needs; the store still holds them once.
    fork = ok(http.post(f"{S}/{sid}:fork", json={}))["id"]
    fork_usage = _usage_numbers(ok(http.get(f"{S}/{fork}/usage")))
    assert fork_usage == expected | {"checkpoints": "0", "commits": "0"}
    other = new_session(http)
    put(http, other, "again.bin", x)
    put(http, other, "again2.bin", c1 + c2)
    assert _usage_numbers(ok(http.get(f"{S}/{other}/usage")))["uniqueBlobBytes"] == str(
        3000 + MIB + 1000)
    assert _scrape(http)[("aetherd_blob_chunks", ())] == chunks_before + 5


async def test_usage_counts_live_cache_entries_and_bus_backlog(http, obs):
    sid = new_session(http)
    ok(http.put(f"{S}/{sid}/cache/k1", json={"value": b64(b"x" * 10)}))
    ok(http.put(f"{S}/{sid}/cache/k2", json={"value": b64(b"y" * 20)}))
    ok(http.put(f"{S}/{sid}/cache/gone", json={"value": b64(b"z" * 40), "ttlSeconds": 1}))
    for i in range(3):
        ok(http.post(f"{S}/{sid}/bus:publish", json={"topic": "t", "payload": b64(b"%d" % i)}))
    time.sleep(1.2)  # "gone" expires: usage counts what a reader can still get
    reply = await obs.get_usage(pb.SessionUsageRequest(session_id=sid))
    assert (reply.cache_keys, reply.cache_bytes, reply.bus_backlog) == (2, 30, 3)
    stats = ok(http.get(f"{S}/{sid}/cache/stats"))
    assert (stats["keys"], stats["bytes"]) == ("2", "30")  # the cache's own view agrees


async def test_usage_of_a_missing_session_is_not_found(http, obs):
    assert http.get(f"{S}/ses_00000000000000000000000000/usage").status_code == 404
    with pytest.raises(GRPCError) as err:
        await obs.get_usage(pb.SessionUsageRequest(session_id="ses_00000000000000000000000000"))
    assert err.value.status == Status.NOT_FOUND


# ---- analytics


def _totals(windows: list[dict]) -> Counter:
    out: Counter = Counter()
    for w in windows:
        for op in w["operations"]:
            out[op["operation"]] += int(op["count"])
    return out


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


async def test_analytics_counts_operations_in_aligned_windows(http, obs):
    sid = new_session(http)
    for name in ("a", "b", "c"):
        put(http, sid, name, name.encode())
    ok(http.delete(f"{S}/{sid}/files/b"))
    ok(http.post(f"{S}/{sid}/checkpoints", json={}))
    want = {"session.created": 1, "file.written": 3, "file.deleted": 1, "checkpoint.created": 1}

    got = ok(http.get(f"{S}/{sid}/analytics"))
    windows = got["windows"]
    assert len(windows) == 24
    starts = [_parse(w["startTime"]) for w in windows]
    ends = [_parse(w["endTime"]) for w in windows]
    assert all(s.timestamp() % 3600 == 0 for s in starts)  # hourly windows start on the hour
    assert all((e - s).total_seconds() == 3600 for s, e in zip(starts, ends, strict=True))
    assert all(ends[i] == starts[i + 1] for i in range(23))  # contiguous, oldest first
    assert starts[-1] <= datetime.now(UTC) < ends[-1]  # the last one is filling now
    assert _totals(windows) == want
    for w in windows:
        names = [op["operation"] for op in w["operations"]]
        assert names == sorted(names)

    reply = await obs.get_analytics(pb.SessionAnalyticsRequest(session_id=sid, window_seconds=60))
    assert len(reply.windows) == 24
    assert (reply.windows[-1].end_time - reply.windows[0].start_time).total_seconds() == 24 * 60
    grpc_totals: Counter = Counter()
    for w in reply.windows:
        for op in w.operations:
            grpc_totals[op.operation] += op.count
    assert grpc_totals == want


async def test_analytics_separates_operations_in_different_windows(http):
    sid = new_session(http)
    put(http, sid, "first", b"1")
    time.sleep(2.2)  # whatever the alignment, 2-second windows now differ
    put(http, sid, "second", b"2")
    put(http, sid, "third", b"3")
    windows = ok(http.get(f"{S}/{sid}/analytics", params={"window_seconds": 2}))["windows"]
    writes = [next((int(op["count"]) for op in w["operations"]
                    if op["operation"] == "file.written"), 0) for w in windows]
    nonzero = [(i, n) for i, n in enumerate(writes) if n]
    assert [n for _, n in nonzero] == [1, 2] and nonzero[0][0] < nonzero[1][0]


async def test_analytics_refuses_an_absurd_window(http, obs):
    sid = new_session(http)
    got = http.get(f"{S}/{sid}/analytics", params={"window_seconds": 10**9})
    assert got.status_code == 400 and got.json()["error"]["code"] == "invalid_argument"
    with pytest.raises(GRPCError) as err:
        await obs.get_analytics(pb.SessionAnalyticsRequest(session_id=sid, window_seconds=10**9))
    assert err.value.status == Status.INVALID_ARGUMENT


# ---- /metrics


def _scrape(http: httpx.Client) -> dict[tuple[str, tuple], float]:
    resp = http.get("/metrics")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _requests(scraped: dict, transport: str, route: str, code: str) -> float:
    key = ("aetherd_requests_total",
           (("code", code), ("route", route), ("transport", transport)))
    return scraped.get(key, 0.0)


def _timed(scraped: dict, transport: str, route: str, code: str) -> float:
    key = ("aetherd_request_duration_seconds_count",
           (("code", code), ("route", route), ("transport", transport)))
    return scraped.get(key, 0.0)


def test_metrics_needs_the_token_on_tcp(daemon):
    resp = httpx.get(f"{daemon.http_url}/metrics")
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "unauthenticated"


async def test_metrics_count_requests_of_both_transports_by_route_template(daemon, http, channel):
    sid = new_session(http)
    get_route = "GET /v1/sessions/{session_id}"
    rpc = "/aether.v1.SessionService/GetSession"
    before = _scrape(http)

    for _ in range(3):
        ok(http.get(f"{S}/{sid}"))
    assert http.get(f"{S}/ses_00000000000000000000000000").status_code == 404
    assert httpx.get(f"{daemon.http_url}{S}/{sid}").status_code == 401  # no token
    assert http.get("/v1/no/such/route").status_code == 404
    sessions = pb.SessionServiceStub(channel, metadata={"authorization": f"Bearer {daemon.token}"})
    for _ in range(2):
        await sessions.get_session(pb.GetSessionRequest(session_id=sid))
    with pytest.raises(GRPCError):
        await sessions.get_session(pb.GetSessionRequest(session_id="ses_00000000000000000000000000"))
    with pytest.raises(GRPCError):
        await pb.SessionServiceStub(channel).get_session(pb.GetSessionRequest(session_id=sid))

    after = _scrape(http)
    for transport, route, code, n in [
        ("http", get_route, "200", 3), ("http", get_route, "404", 1),
        ("http", get_route, "401", 1),  # refused before routing, labelled with its template
        ("http", "unmatched", "404", 1),
        ("grpc", rpc, "OK", 2), ("grpc", rpc, "NOT_FOUND", 1), ("grpc", rpc, "UNAUTHENTICATED", 1),
    ]:
        assert _requests(after, transport, route, code) - _requests(before, transport, route, code) \
            == n, (transport, route, code)
        assert _timed(after, transport, route, code) - _timed(before, transport, route, code) \
            == n, (transport, route, code)
    # The previous scrape itself was counted.
    assert _requests(after, "http", "GET /metrics", "200") >= 1

    # Labels are templates or RPC paths, never raw paths: no ids, bounded.
    templates = {f"{r.method} {r.path}" for r in ROUTES} | {
        "GET /metrics", "GET /v1/openapi.json", "unmatched"}
    rpcs = {name for base in RPC_BASES for name in base().__mapping__()}
    for name, labels in after:
        if name == "aetherd_requests_total":
            labels = dict(labels)
            assert labels["route"] in (templates if labels["transport"] == "http" else rpcs), labels


def test_metrics_gauges_reflect_the_store_at_scrape_time(http):
    before = _scrape(http)
    new_session(http)
    archived = new_session(http)
    ok(http.post(f"{S}/{archived}:archive"))
    after = _scrape(http)
    active_key = ("aetherd_sessions", (("state", "active"),))
    archived_key = ("aetherd_sessions", (("state", "archived"),))
    assert after[active_key] == before[active_key] + 1
    assert after[archived_key] == before[archived_key] + 1
    assert after[("aetherd_store_up", ())] == 1
    assert after[("aetherd_store_file_bytes", (("file", "meta.db"),))] > 0
    assert ("process_resident_memory_bytes", ()) in after


def test_metrics_speak_openmetrics_when_asked(http):
    resp = http.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/openmetrics-text")
    assert resp.text.rstrip().endswith("# EOF")


async def test_live_follows_are_counted_but_not_timed(daemon, http, channel):
    sid = new_session(http)
    rpc, route = "/aether.v1.EventService/Follow", "GET /v1/sessions/{session_id}/events"
    before = _scrape(http)

    events = pb.EventServiceStub(channel, metadata={"authorization": f"Bearer {daemon.token}"})
    follow = events.follow(pb.ListEventsRequest(session_id=sid))
    async for event in follow:
        assert event.type == "session.created"
        break
    await follow.aclose()  # cancels the call: that is how a follower stops
    with http.stream("GET", f"{S}/{sid}/events",
                     headers={"Accept": "text/event-stream"}) as sse:
        assert sse.status_code == 200
        next(sse.iter_lines())
    # No wake-up write needed: the daemon cancels a gone client's handler at once.

    deadline = time.monotonic() + 20
    while True:
        after = _scrape(http)
        counted = (_requests(after, "grpc", rpc, "CANCELLED")
                   - _requests(before, "grpc", rpc, "CANCELLED"),
                   _requests(after, "http", route, "200") - _requests(before, "http", route, "200"))
        if counted == (1, 1) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)  # lets the client's stream reset go out
    assert counted == (1, 1)
    assert _timed(after, "grpc", rpc, "CANCELLED") == _timed(before, "grpc", rpc, "CANCELLED")
    assert _timed(after, "http", route, "200") == _timed(before, "http", route, "200")
