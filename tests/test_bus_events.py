"""The message bus and the event stream over real HTTP (JSON and SSE) and gRPC."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from aether import pb
from aetherd.services.bus import MAX_PAYLOAD_BYTES, RETENTION, Bus
from aetherd.services.sessions import NewSession, Sessions
from aetherd.services.state import Store

WAIT = 10  # seconds any one live step may take before the test fails


@pytest.fixture
async def ahttp(daemon) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=daemon.http_url, headers=daemon.headers,
                                 timeout=httpx.Timeout(WAIT, connect=5)) as client:
        yield client


def new_session(http) -> str:
    r = http.post("/v1/sessions", json={})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def publish(http, sid: str, topic: str, payload: bytes, **extra):
    body = {"topic": topic, "payload": base64.b64encode(payload).decode(), **extra}
    return http.post(f"/v1/sessions/{sid}/bus:publish", json=body)


def error_code(r) -> str:
    return r.json()["error"]["code"]


def cursors(items) -> list[int]:
    return [int(m["cursor"]) for m in items]


async def sse(client: httpx.AsyncClient, url: str, last_id: int | None = None,
              **params) -> AsyncIterator[dict]:
    """Server-sent events as dicts of their fields (`data` decoded from JSON)."""
    headers = {"Accept": "text/event-stream"}
    if last_id is not None:
        headers["Last-Event-ID"] = str(last_id)
    async with client.stream("GET", url, headers=headers, params=params) as r:
        assert r.status_code == 200, await r.aread()
        assert r.headers["content-type"].startswith("text/event-stream")
        fields: dict = {}
        async for line in r.aiter_lines():
            if line.startswith(":"):
                continue  # keepalive comment
            if not line:
                if fields:
                    fields["data"] = json.loads(fields["data"])
                    yield fields
                fields = {}
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


async def expect_grpc_error(coro, status: Status) -> None:
    with pytest.raises(GRPCError) as info:
        await coro
    assert info.value.status == status, info.value


# ---- publish and read


def test_publish_and_read_http(http):
    sid = new_session(http)
    sent = [("a", b"one"), ("b", b"two"), ("a", b"\x00\xffbin"), ("c", b""), ("b", b"five")]
    for i, (topic, data) in enumerate(sent, 1):
        r = publish(http, sid, topic, data, contentType="application/x-test", sender="t1")
        assert r.status_code == 200, r.text
        m = r.json()
        assert int(m["cursor"]) == i and m["topic"] == topic and m["sessionId"] == sid
        assert m["contentType"] == "application/x-test" and m["sender"] == "t1"
        assert m["publishTime"]

    r = http.get(f"/v1/sessions/{sid}/bus")
    assert r.status_code == 200, r.text
    body = r.json()
    assert cursors(body["messages"]) == [1, 2, 3, 4, 5]
    assert [(m["topic"], base64.b64decode(m["payload"])) for m in body["messages"]] == sent
    assert int(body["nextCursor"]) == 5

    after = http.get(f"/v1/sessions/{sid}/bus", params={"after": 2}).json()
    assert cursors(after["messages"]) == [3, 4, 5]
    # A filtered read moves the cursor past what did not match, so the next
    # read does not scan it again.
    only_a = http.get(f"/v1/sessions/{sid}/bus", params={"topic": "a"}).json()
    assert cursors(only_a["messages"]) == [1, 3] and int(only_a["nextCursor"]) == 5
    two = http.get(f"/v1/sessions/{sid}/bus", params=[("topics", "a"), ("topics", "c")]).json()
    assert cursors(two["messages"]) == [1, 3, 4]
    # Paging by limit: next_cursor is the last message returned.
    seen, after_c = [], 0
    while True:
        page = http.get(f"/v1/sessions/{sid}/bus", params={"after": after_c, "limit": 2}).json()
        seen += cursors(page.get("messages", []))
        if int(page["nextCursor"]) == after_c:
            break
        after_c = int(page["nextCursor"])
    assert seen == [1, 2, 3, 4, 5]
    empty = http.get(f"/v1/sessions/{sid}/bus", params={"after": 5}).json()
    assert empty.get("messages", []) == [] and int(empty["nextCursor"]) == 5


async def test_publish_and_read_grpc(channel, md, http):
    sid = new_session(http)
    bus = pb.BusServiceStub(channel, metadata=md)
    for i in range(1, 4):
        m = await bus.publish(pb.PublishRequest(session_id=sid, topic=f"t{i % 2}",
                                                payload=bytes([i]) * i, sender="g"))
        assert m.cursor == i and m.publish_time is not None
    r = await bus.read(pb.ReadBusRequest(session_id=sid, after=1))
    assert [(m.cursor, m.topic, m.payload) for m in r.messages] == [
        (2, "t0", b"\x02\x02"), (3, "t1", b"\x03\x03\x03")]
    assert r.next_cursor == 3
    r = await bus.read(pb.ReadBusRequest(session_id=sid, topics=["t0"]))
    assert [m.cursor for m in r.messages] == [2] and r.next_cursor == 3
    # Both transports read the same rows.
    assert cursors(http.get(f"/v1/sessions/{sid}/bus").json()["messages"]) == [1, 2, 3]


@pytest.mark.parametrize(("topic", "ok"), [
    ("", False), ("x" * 256, True), ("x" * 257, False), ("é" * 128, True), ("é" * 129, False),
    ("line\nbreak", False), ("nul\x00", False), ("agents/planner.v2", True),
])
def test_topic_rules(http, topic, ok):
    sid = new_session(http)
    r = publish(http, sid, topic, b"p")
    if ok:
        assert r.status_code == 200, r.text
    else:
        assert r.status_code == 400 and error_code(r) == "invalid_argument", r.text


async def test_bad_input_has_stable_codes(http, channel, md):
    sid = new_session(http)
    assert publish(http, sid, "big", b"x" * MAX_PAYLOAD_BYTES).status_code == 200
    r = publish(http, sid, "big", b"x" * (MAX_PAYLOAD_BYTES + 1))
    assert r.status_code == 429 and error_code(r) == "resource_exhausted", r.text
    assert r.json()["error"]["details"]["limit"] == str(MAX_PAYLOAD_BYTES)
    bus = pb.BusServiceStub(channel, metadata=md)
    await expect_grpc_error(bus.publish(pb.PublishRequest(
        session_id=sid, topic="big", payload=b"x" * (MAX_PAYLOAD_BYTES + 1))),
        Status.RESOURCE_EXHAUSTED)
    await expect_grpc_error(bus.publish(pb.PublishRequest(session_id=sid, topic="")),
                            Status.INVALID_ARGUMENT)
    await expect_grpc_error(bus.publish(pb.PublishRequest(session_id="ses_nope", topic="t")),
                            Status.NOT_FOUND)

    # A cursor past the newest did not come from this session.
    r = http.get(f"/v1/sessions/{sid}/bus", params={"after": 99})
    assert r.status_code == 400 and error_code(r) == "invalid_argument"
    r = http.get(f"/v1/sessions/{sid}/events", params={"after": 10_000})
    assert r.status_code == 400 and error_code(r) == "invalid_argument"
    r = http.get(f"/v1/sessions/{sid}/events", params={"type": "file.writen"})
    assert r.status_code == 400 and error_code(r) == "invalid_argument"
    assert "file.written" in r.json()["error"]["details"]["allowed"]
    r = http.get(f"/v1/sessions/{sid}/bus", params={"after": "-1"})
    assert r.status_code == 400 and error_code(r) == "invalid_argument"
    r = publish(http, sid, "t", b"", sender="x" * 257)
    assert r.status_code == 400 and error_code(r) == "invalid_argument"
    for path in ("bus", "events"):
        r = http.get(f"/v1/sessions/ses_nope/{path}")
        assert r.status_code == 404 and error_code(r) == "not_found"
        # A follow that cannot start is a JSON error, not an event stream.
        r = http.get(f"/v1/sessions/ses_nope/{path}", headers={"Accept": "text/event-stream"})
        assert r.status_code == 404 and error_code(r) == "not_found"
    with pytest.raises(GRPCError) as info:
        async for _ in bus.follow(pb.ReadBusRequest(session_id="ses_nope")):
            pass
    assert info.value.status == Status.NOT_FOUND


def test_archived_session_refuses_publish_but_reads(http):
    sid = new_session(http)
    assert publish(http, sid, "t", b"before").status_code == 200
    assert http.post(f"/v1/sessions/{sid}:archive").status_code == 200
    r = publish(http, sid, "t", b"after")
    assert r.status_code == 412 and error_code(r) == "failed_precondition", r.text
    got = http.get(f"/v1/sessions/{sid}/bus").json()["messages"]
    assert [base64.b64decode(m["payload"]) for m in got] == [b"before"]


# ---- live follow


async def publish_many(channel, md, sid: str, n: int, topic: str = "t") -> None:
    bus = pb.BusServiceStub(channel, metadata=md)
    for i in range(n):
        await bus.publish(pb.PublishRequest(session_id=sid, topic=topic,
                                            payload=str(i).encode()))


async def test_grpc_follow_sees_live_messages(channel, md, http):
    sid = new_session(http)
    await publish_many(channel, md, sid, 3, topic="old")
    bus = pb.BusServiceStub(channel, metadata=md)
    got: list[pb.BusMessage] = []
    stream = bus.follow(pb.ReadBusRequest(session_id=sid))
    async with asyncio.timeout(WAIT):
        async for m in stream:
            got.append(m)
            if len(got) == 3:
                # Live from here: published after the follower caught up.
                asyncio.create_task(publish_many(channel, md, sid, 20, topic="new"))
            if len(got) == 23:
                break
        await stream.aclose()
    assert [m.cursor for m in got] == list(range(1, 24))
    assert [m.topic for m in got] == ["old"] * 3 + ["new"] * 20
    assert [m.payload for m in got[3:]] == [str(i).encode() for i in range(20)]


async def test_grpc_follow_with_topic_filter(channel, md, http):
    sid = new_session(http)
    bus = pb.BusServiceStub(channel, metadata=md)
    stream = bus.follow(pb.ReadBusRequest(session_id=sid, topics=["keep"]))
    publisher = asyncio.create_task(_alternate(bus, sid, 10))
    got = []
    async with asyncio.timeout(WAIT):
        async for m in stream:
            got.append((m.cursor, m.topic))
            if len(got) == 5:
                break
        await stream.aclose()
    await publisher
    assert got == [(c, "keep") for c in (1, 3, 5, 7, 9)]


async def _alternate(bus, sid: str, n: int) -> None:
    for i in range(n):
        await bus.publish(pb.PublishRequest(session_id=sid, topic="keep" if i % 2 == 0 else "drop"))


async def test_http_sse_follow_sees_live_messages(ahttp, channel, md, http):
    sid = new_session(http)
    await publish_many(channel, md, sid, 2)
    got = []
    async with asyncio.timeout(WAIT):
        async for ev in sse(ahttp, f"/v1/sessions/{sid}/bus"):
            got.append(ev)
            if len(got) == 2:
                asyncio.create_task(publish_many(channel, md, sid, 10, topic="live"))
            if len(got) == 12:
                break
    assert [int(ev["id"]) for ev in got] == list(range(1, 13))
    assert [int(ev["data"]["cursor"]) for ev in got] == list(range(1, 13))
    assert [ev["event"] for ev in got] == ["t"] * 2 + ["live"] * 10
    assert base64.b64decode(got[-1]["data"]["payload"]) == b"9"


async def test_followers_end_when_the_session_is_deleted(ahttp, channel, md, http):
    sid = new_session(http)
    assert publish(http, sid, "t", b"1").status_code == 200
    bus = pb.BusServiceStub(channel, metadata=md)
    grpc_stream = bus.follow(pb.ReadBusRequest(session_id=sid))
    sse_stream = sse(ahttp, f"/v1/sessions/{sid}/events")
    # Short on purpose: deletion wakes followers, they do not wait for a recheck.
    async with asyncio.timeout(3):
        assert (await anext(grpc_stream)).cursor == 1
        assert (await anext(sse_stream))["event"] == "session.created"
        assert http.delete(f"/v1/sessions/{sid}").status_code == 200
        with pytest.raises(GRPCError) as info:
            await anext(grpc_stream)
        assert info.value.status == Status.NOT_FOUND
        last = [ev async for ev in sse_stream]
    assert [ev["event"] for ev in last] == ["error"]
    assert last[0]["data"]["error"]["code"] == "not_found"


class Publisher:
    """Publishes `n` messages in the background, so a follower can wait for
    progress (instead of sleeping) while it is disconnected."""

    def __init__(self, channel, md, sid: str, n: int) -> None:
        self.bus = pb.BusServiceStub(channel, metadata=md)
        self.sid, self.n, self.sent = sid, n, 0
        self.progress = asyncio.Condition()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        for i in range(self.n):
            await self.bus.publish(pb.PublishRequest(session_id=self.sid, topic="r",
                                                     payload=str(i).encode()))
            async with self.progress:
                self.sent += 1
                self.progress.notify_all()

    async def wait_for(self, count: int) -> None:
        async with self.progress:
            await self.progress.wait_for(lambda: self.sent >= min(count, self.n))


N_RESUME = 300


async def test_grpc_follower_resumes_exactly_once(channel, md, http):
    sid = new_session(http)
    pub = Publisher(channel, md, sid, N_RESUME)
    bus = pb.BusServiceStub(channel, metadata=md)
    seen: list[int] = []
    reconnects = 0
    async with asyncio.timeout(4 * WAIT):
        while len(seen) < N_RESUME:
            after = seen[-1] if seen else 0
            stream = bus.follow(pb.ReadBusRequest(session_id=sid, after=after))
            async for m in stream:
                seen.append(m.cursor)
                if len(seen) % 37 == 0 or len(seen) == N_RESUME:
                    break  # drop the connection mid-stream
            await stream.aclose()
            reconnects += 1
            # Stay away while more is published.
            await pub.wait_for(len(seen) + 25)
        await pub.task
    assert seen == list(range(1, N_RESUME + 1))
    assert reconnects >= 8


async def test_http_follower_resumes_with_last_event_id(ahttp, channel, md, http):
    sid = new_session(http)
    pub = Publisher(channel, md, sid, N_RESUME)
    seen: list[int] = []
    payloads: list[bytes] = []
    reconnects = 0
    async with asyncio.timeout(4 * WAIT):
        while len(seen) < N_RESUME:
            last = seen[-1] if seen else None
            async for ev in sse(ahttp, f"/v1/sessions/{sid}/bus", last_id=last):
                seen.append(int(ev["id"]))
                payloads.append(base64.b64decode(ev["data"]["payload"]))
                if len(seen) % 41 == 0 or len(seen) == N_RESUME:
                    break
            reconnects += 1
            await pub.wait_for(len(seen) + 25)
        await pub.task
    assert seen == list(range(1, N_RESUME + 1))
    assert payloads == [str(i).encode() for i in range(N_RESUME)]
    assert reconnects >= 7
    # Last-Event-ID and ?after= name the same resume point.
    tail = http.get(f"/v1/sessions/{sid}/bus", params={"after": N_RESUME - 1}).json()
    assert cursors(tail["messages"]) == [N_RESUME]


async def test_many_followers_each_get_every_message(channel, md, http):
    sid = new_session(http)
    bus = pb.BusServiceStub(channel, metadata=md)

    async def follower() -> list[int]:
        out = []
        stream = bus.follow(pb.ReadBusRequest(session_id=sid))
        async for m in stream:
            out.append(m.cursor)
            if len(out) == 50:
                break
        await stream.aclose()
        return out

    tasks = [asyncio.create_task(follower()) for _ in range(5)]
    await publish_many(channel, md, sid, 50)
    async with asyncio.timeout(WAIT):
        results = await asyncio.gather(*tasks)
    assert all(r == list(range(1, 51)) for r in results)


# ---- events


def event_list(http, sid: str, **params) -> list[dict]:
    r = http.get(f"/v1/sessions/{sid}/events", params=params)
    assert r.status_code == 200, r.text
    return r.json().get("events", [])


def test_events_record_changes_in_order(http):
    sid = new_session(http)
    r = http.put(f"/v1/sessions/{sid}/files/a.txt", content=b"one")
    assert r.status_code in (200, 201), r.text
    etag = r.headers["ETag"]
    # Refused by If-Match: nothing changed, so no event either.
    r = http.put(f"/v1/sessions/{sid}/files/a.txt", content=b"x",
                 headers={"If-Match": '"' + "0" * 64 + '"'})
    assert r.status_code == 409, r.text
    assert http.put(f"/v1/sessions/{sid}/files/a.txt", content=b"two",
                    headers={"If-Match": etag}).status_code in (200, 201)
    assert http.put(f"/v1/sessions/{sid}/files/d/b.txt", content=b"b").status_code in (200, 201)
    ck = http.post(f"/v1/sessions/{sid}/checkpoints", json={"message": "c1"})
    assert ck.status_code in (200, 201), ck.text
    assert http.delete(f"/v1/sessions/{sid}/files/a.txt").status_code == 200
    fork = http.post(f"/v1/sessions/{sid}:fork", json={})
    assert fork.status_code in (200, 201), fork.text
    assert http.post(f"/v1/sessions/{sid}:restore",
                     json={"checkpointId": ck.json()["id"]}).status_code == 200
    assert http.post(f"/v1/sessions/{sid}/commits",
                     json={"message": "m", "author": "me"}).status_code in (200, 201)
    assert http.post(f"/v1/sessions/{sid}:archive").status_code == 200

    evs = event_list(http, sid)
    assert [(e["type"], e["path"]) for e in evs] == [
        ("session.created", ""), ("file.written", "a.txt"), ("file.written", "a.txt"),
        ("file.written", "d/b.txt"), ("checkpoint.created", ""), ("file.deleted", "a.txt"),
        ("session.forked", ""), ("session.restored", ""), ("commit.created", ""),
        ("session.archived", ""),
    ]
    assert cursors(evs) == list(range(1, len(evs) + 1))
    assert evs[6]["attributes"]["child"] == fork.json()["id"]
    assert evs[4]["attributes"]["checkpoint_id"] == ck.json()["id"]
    assert all(e["sessionId"] == sid and e["time"] for e in evs)
    # The fork has its own stream, starting at 1.
    child = event_list(http, fork.json()["id"])
    assert [(int(e["cursor"]), e["type"]) for e in child] == [(1, "session.created")]

    files = event_list(http, sid, type="file.written")
    assert cursors(files) == [2, 3, 4]
    page = http.get(f"/v1/sessions/{sid}/events", params={"after": 3, "limit": 2}).json()
    assert cursors(page["events"]) == [4, 5] and int(page["nextCursor"]) == 5


async def test_events_over_grpc_match_http(channel, md, http):
    sid = new_session(http)
    http.put(f"/v1/sessions/{sid}/files/x", content=b"1")
    ev = pb.EventServiceStub(channel, metadata=md)
    r = await ev.list_events(pb.ListEventsRequest(session_id=sid))
    assert [(e.cursor, e.type, e.path) for e in r.events] == [
        (1, "session.created", ""), (2, "file.written", "x")]
    assert r.next_cursor == 2 and r.events[1].attributes["size"] == "1"
    r = await ev.list_events(pb.ListEventsRequest(session_id=sid, types=["file.written"]))
    assert [e.cursor for e in r.events] == [2]
    await expect_grpc_error(
        ev.list_events(pb.ListEventsRequest(session_id=sid, types=["nope"])),
        Status.INVALID_ARGUMENT)


async def test_events_follow_live_grpc(channel, md, http, ahttp):
    sid = new_session(http)
    ev = pb.EventServiceStub(channel, metadata=md)
    got = []
    stream = ev.follow(pb.ListEventsRequest(session_id=sid, types=["file.written"]))
    async with asyncio.timeout(WAIT):
        writer = asyncio.create_task(_write_files(ahttp, sid, 5))
        async for e in stream:
            got.append((e.cursor, e.type, e.path))
            if len(got) == 5:
                break
        await stream.aclose()
        await writer
    assert got == [(i + 2, "file.written", f"f{i}") for i in range(5)]


async def _write_files(ahttp: httpx.AsyncClient, sid: str, n: int) -> None:
    for i in range(n):
        r = await ahttp.put(f"/v1/sessions/{sid}/files/f{i}", content=b"x")
        assert r.status_code in (200, 201), r.text


async def test_events_follow_live_sse_resumes(ahttp, http):
    sid = new_session(http)
    seen = []
    async with asyncio.timeout(WAIT):
        writer = asyncio.create_task(_write_files(ahttp, sid, 6))
        async for e in sse(ahttp, f"/v1/sessions/{sid}/events"):
            seen.append((int(e["id"]), e["event"]))
            if len(seen) == 4:
                break
        async for e in sse(ahttp, f"/v1/sessions/{sid}/events", last_id=seen[-1][0]):
            seen.append((int(e["id"]), e["event"]))
            if len(seen) == 7:
                break
        await writer
    assert seen == [(1, "session.created")] + [(i, "file.written") for i in range(2, 8)]


def test_events_record_their_origin_and_followers_can_leave_theirs_out(http):
    sid = new_session(http)
    for origin, path in (("agent-1", "a"), ("", "b"), ("mount-x", "c"), ("agent-1", "d")):
        headers = {"Aether-Origin": origin} if origin else {}
        r = http.put(f"/v1/sessions/{sid}/files/{path}", content=b"x", headers=headers)
        assert r.status_code in (200, 201), r.text
    r = http.get(f"/v1/sessions/{sid}/events", params={"types": "file.written"})
    assert [(e["path"], e["origin"]) for e in r.json()["events"]] == [
        ("a", "agent-1"), ("b", ""), ("c", "mount-x"), ("d", "agent-1")]
    r = http.get(f"/v1/sessions/{sid}/events", params={"exclude_origin": "agent-1"})
    body = r.json()
    assert [e["path"] for e in body["events"]] == ["", "b", "c"]  # session.created too
    assert body["nextCursor"] == "5"  # past the left-out ones
    r = http.put(f"/v1/sessions/{sid}/files/e", content=b"x",
                 headers={"Aether-Origin": "bad origin"})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_argument")
    r = http.get(f"/v1/sessions/{sid}/events", params={"exclude_origin": "x" * 65})
    assert r.json()["error"]["code"] == "invalid_argument"


def test_cli_shows_origins_and_leaves_one_out(http, env):
    from cli_helpers import aether, out

    sid = new_session(http)
    http.put(f"/v1/sessions/{sid}/files/a", content=b"x", headers={"Aether-Origin": "bot-7"})
    http.put(f"/v1/sessions/{sid}/files/b", content=b"x")
    shown = out(aether(env, "events", "tail", sid, text=True))
    assert "from bot-7" in shown
    left = out(aether(env, "-q", "events", "ls", sid, "--exclude-origin", "bot-7", text=True))
    assert left.split() == ["1", "3"]


async def test_origin_over_grpc_and_followers_without_their_own(channel, md, http, ahttp):
    sid = new_session(http)
    files = pb.FileServiceStub(channel, metadata={**md, "aether-origin": "grpc-client"})
    await files.write_file(pb.WriteFileRequest(session_id=sid, path="mine", data=b"1"))
    ev = pb.EventServiceStub(channel, metadata=md)
    r = await ev.list_events(pb.ListEventsRequest(session_id=sid, types=["file.written"]))
    assert [(e.path, e.origin) for e in r.events] == [("mine", "grpc-client")]
    # A live follower leaving out its own changes sees only the others'.
    got = []
    stream = ev.follow(pb.ListEventsRequest(session_id=sid, types=["file.written"],
                                            exclude_origin="grpc-client"))
    async with asyncio.timeout(WAIT):
        await files.write_file(pb.WriteFileRequest(session_id=sid, path="mine2", data=b"2"))
        writer = asyncio.create_task(_write_files(ahttp, sid, 2))
        async for e in stream:
            got.append(e.path)
            if len(got) == 2:
                break
        await stream.aclose()
        await writer
    assert got == ["f0", "f1"]


# ---- in-process: retention and deletion, on a real Store


@pytest.fixture
def store(tmp_path: Path):
    s = Store(tmp_path / "data")
    yield s
    s.close()


def test_retention_keeps_the_newest(store):
    assert Bus(store).retention == RETENTION == 10_000
    sid = Sessions(store, []).create(NewSession("r"), None).id
    bus = Bus(store, retention=5)
    for i in range(12):
        bus.publish(sid, "t", str(i).encode())
    msgs, page = bus.read(sid, 0, [], 0)
    assert [m.cursor for m in msgs] == [8, 9, 10, 11, 12]
    assert [m.payload for m in msgs] == [str(i).encode() for i in range(7, 12)]
    assert page.next_cursor == 12
    # A reader behind the retained window resumes at the oldest kept message:
    # the jump in cursors (3 -> 8) tells it what was dropped.
    assert [m.cursor for m in bus.read(sid, 3, [], 0)[0]] == [8, 9, 10, 11, 12]
    # Cursors keep counting after pruning.
    assert bus.publish(sid, "t", b"new").cursor == 13
    count = store.db.one("SELECT COUNT(*) FROM bus WHERE session_id=?", (sid,))
    assert count[0] == 5


def test_large_messages_page_by_bytes(store):
    sid = Sessions(store, []).create(NewSession("b"), None).id
    bus = Bus(store)
    for _ in range(5):
        bus.publish(sid, "big", b"x" * MAX_PAYLOAD_BYTES)
    msgs, page = bus.read(sid, 0, [], 1000)
    assert [m.cursor for m in msgs] == [1, 2, 3] and page.next_cursor == 3 and page.more
    msgs, page = bus.read(sid, 3, [], 1000)
    assert [m.cursor for m in msgs] == [4, 5] and not page.more


def open_streams(http) -> dict[str, float]:
    """aetherd_open_streams by transport, from the daemon's /metrics page."""
    found = {}
    for line in http.get("/metrics").text.splitlines():
        if line.startswith("aetherd_open_streams{"):
            transport = line.split('transport="', 1)[1].split('"', 1)[0]
            found[transport] = float(line.rsplit(" ", 1)[1])
    return found


async def wait_streams(http, transport: str, want: float, within: float) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while open_streams(http).get(transport, 0.0) != want:
        assert asyncio.get_running_loop().time() < deadline, (transport, open_streams(http))
        await asyncio.sleep(0.05)


async def test_followers_end_soon_after_their_client_goes_away(channel, md, http, daemon):
    """Not at the next 15 s heartbeat: the handler ends when the client does."""
    sid = new_session(http)
    before_http = open_streams(http).get("http", 0.0)
    before_grpc = open_streams(http).get("grpc", 0.0)
    async with httpx.AsyncClient(base_url=daemon.http_url, headers=daemon.headers) as client:
        async with client.stream("GET", f"/v1/sessions/{sid}/events",
                                 headers={"Accept": "text/event-stream"}) as resp:
            assert resp.status_code == 200
            await wait_streams(http, "http", before_http + 1, within=5)
    await wait_streams(http, "http", before_http, within=2)

    ch = Channel(daemon.grpc_host, daemon.grpc_port)  # its own, closed to end the call
    try:
        stream = pb.BusServiceStub(ch, metadata=md).follow(pb.ReadBusRequest(session_id=sid))
        publish(http, sid, "t", b"1")
        async with asyncio.timeout(WAIT):
            assert (await anext(stream)).cursor == 1
        await wait_streams(http, "grpc", before_grpc + 1, within=5)
    finally:
        ch.close()
    await wait_streams(http, "grpc", before_grpc, within=2)


async def test_stopping_the_daemon_ends_live_follows_with_unavailable(fresh_daemon):
    """A graceful stop must not wait for followers to leave: each gets an
    `unavailable` error (so it can resume from its cursor) and the daemon exits."""
    d = fresh_daemon.start()
    with d.http() as http:
        sid = new_session(http)
    got: list[dict] = []
    async with httpx.AsyncClient(base_url=d.http_url, headers=d.headers) as client:
        stream = sse(client, f"/v1/sessions/{sid}/events")
        async with asyncio.timeout(WAIT):
            got.append(await anext(stream))  # session.created: the follow is live
        started = asyncio.get_running_loop().time()
        stopping = asyncio.get_running_loop().run_in_executor(None, d.stop)
        async with asyncio.timeout(WAIT):
            got += [ev async for ev in stream]
            await stopping
        took = asyncio.get_running_loop().time() - started
    assert [ev["event"] for ev in got] == ["session.created", "error"]
    assert got[-1]["data"]["error"]["code"] == "unavailable"
    assert d.proc is not None and d.proc.returncode == 0
    assert took < WAIT  # not the 60 s aiohttp would wait for handlers to finish
