"""The client SDK's coordination operations (cache, bus, events, review,
observability) with the sync and async clients against a real daemon. No mock:
every request the SDK builds is served (or refused) by the real daemon."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from aether import pb
from aether.client import AsyncClient, Client
from aether.client._base import SseDecoder, approval_state, cache_key
from aether.errors import FailedPrecondition, InvalidArgument, NotFound

MISSING = "ses_" + "0" * 26
WAIT = 10


@pytest.fixture
def client(daemon) -> Iterator[Client]:
    with Client(daemon.http_url, token=daemon.token) as c:
        yield c


@pytest.fixture
def sid(client: Client) -> str:
    return client.create_session(name="coord").id


# ---------------------------------------------------------------- pure helpers


def test_cache_keys_are_one_segment_and_never_a_route_word():
    assert cache_key("notes/today") == "notes%2Ftoday"
    assert cache_key("keys") == "%6Beys" and cache_key("stats") == "%73tats"
    assert cache_key("batch-get") == "%62atch-get"
    assert cache_key("keys2") == "keys2"
    with pytest.raises(InvalidArgument):
        cache_key("")


def test_approval_state_names():
    assert approval_state("Stale") == pb.ApprovalState.STALE
    assert approval_state(None) == pb.ApprovalState.UNSPECIFIED
    with pytest.raises(InvalidArgument):
        approval_state("maybe")


def test_sse_decoder_yields_messages_and_raises_error_events():
    d = SseDecoder(pb.BusMessage)
    assert d.line(": keepalive") is None and d.line("") is None
    assert d.line("id: 3") is None and d.line("event: t") is None
    assert d.line('data: {"cursor": "3", "topic": "t", "payload": "aGk="}') is None
    m = d.line("")
    assert (m.cursor, m.topic, m.payload) == (3, "t", b"hi")
    d.line("event: error")
    d.line('data: {"error": {"code": "not_found", "message": "session gone"}}')
    with pytest.raises(NotFound, match="session gone"):
        d.line("")


# ---------------------------------------------------------------- cache


def test_cache_single_keys(client: Client, sid: str):
    m = client.cache_put(sid, "notes/today", b"\x00\xffhello", content_type="application/x-bin")
    assert (m.key, m.size, m.content_type, m.expire_time) == (
        "notes/today", 7, "application/x-bin", None)
    got = client.cache_get(sid, "notes/today")
    assert got.value == b"\x00\xffhello" and got.metadata == m
    assert client.cache_exists(sid, "notes/today") is True
    assert client.cache_metadata(sid, "notes/today") == m

    again = client.cache_put(sid, "notes/today", "text", ttl_seconds=60)
    assert again.version > m.version and again.expire_time is not None
    assert client.cache_get(sid, "notes/today").value == b"text"

    # route words and odd characters are keys like any other
    for key in ("keys", "stats", "batch-get", "sp ace?#%"):
        client.cache_put(sid, key, key)
        assert client.cache_get(sid, key).value == key.encode()
        assert client.cache_exists(sid, key)

    assert client.cache_delete(sid, "notes/today").deleted == 1
    assert client.cache_delete(sid, "notes/today").deleted == 0
    assert client.cache_exists(sid, "notes/today") is False
    with pytest.raises(NotFound):
        client.cache_get(sid, "notes/today")
    with pytest.raises(NotFound):
        client.cache_metadata(sid, "notes/today")
    with pytest.raises(InvalidArgument):
        client.cache_get(sid, "")
    with pytest.raises(InvalidArgument):
        client.cache_put(sid, "k\x00", b"")
    with pytest.raises(NotFound):
        client.cache_put(MISSING, "k", b"v")


def test_cache_compare_and_set(client: Client, sid: str):
    first = client.cache_compare_and_set(sid, "lock", b"me", expect_absent=True)
    assert first.swapped and first.metadata.version > 0
    lost = client.cache_compare_and_set(sid, "lock", b"you", expect_absent=True)
    assert not lost.swapped and lost.metadata == first.metadata
    won = client.cache_compare_and_set(sid, "lock", "me2",
                                       expected_version=first.metadata.version,
                                       content_type="text/plain", ttl_seconds=30)
    assert won.swapped and won.metadata.version > first.metadata.version
    assert won.metadata.content_type == "text/plain" and won.metadata.expire_time is not None
    stale = client.cache_compare_and_set(sid, "lock", b"x",
                                         expected_version=first.metadata.version)
    assert not stale.swapped and stale.metadata == won.metadata
    absent = client.cache_compare_and_set(sid, "nokey", b"x", expected_version=7)
    assert not absent.swapped and absent.metadata is None
    with pytest.raises(InvalidArgument):
        client.cache_compare_and_set(sid, "lock", b"x", expected_version=3, expect_absent=True)


def test_cache_listing_stats_batches(client: Client, sid: str):
    made = client.cache_batch_set(sid, {"a/1": b"one", "a/2": "two", "a/3": b"3", "b/1": b""})
    assert [m.key for m in made.entries] == ["a/1", "a/2", "a/3", "b/1"]
    client.cache_batch_set(sid, [pb.CacheBatchSetItem(key="c", value=b"{}",
                                                      content_type="application/json",
                                                      ttl_seconds=100)])
    page = client.list_cache_keys(sid, prefix="a/", page_size=2)
    assert [k.key for k in page.keys] == ["a/1", "a/2"] and page.next_page_token
    assert [k.key for k in client.iter_cache_keys(sid, prefix="a/", page_size=2)] == [
        "a/1", "a/2", "a/3"]
    assert [k.key for k in client.iter_cache_keys(sid)] == ["a/1", "a/2", "a/3", "b/1", "c"]

    got = client.cache_batch_get(sid, ["a/2", "nope", "c"])
    assert [(e.metadata.key, e.value) for e in got.entries] == [("a/2", b"two"), ("c", b"{}")]
    assert got.missing == ["nope"]
    assert got.entries[1].metadata.content_type == "application/json"

    stats = client.cache_stats(sid)
    assert stats.keys == 5 and stats.bytes == len(b"onetwo3{}") and stats.hits >= 2
    assert stats.misses >= 1

    assert client.cache_batch_delete(sid, ["a/3", "nope"]).deleted == 1
    assert client.cache_delete_by_prefix(sid, "a/").deleted == 2
    assert [k.key for k in client.iter_cache_keys(sid)] == ["b/1", "c"]
    with pytest.raises(InvalidArgument):
        client.cache_delete_by_prefix(sid, "")
    with pytest.raises(InvalidArgument):  # all or nothing: a duplicate refuses the batch
        client.cache_batch_set(sid, [pb.CacheBatchSetItem(key="d"),
                                     pb.CacheBatchSetItem(key="d")])
    assert not client.cache_exists(sid, "d")
    with pytest.raises(NotFound):
        client.cache_stats(MISSING)


# ---------------------------------------------------------------- bus


def test_bus_publish_read_iter(client: Client, sid: str):
    sent = [("a", b"one"), ("b", "two"), ("a", b"\x00\xff"), ("c", b"")]
    for i, (topic, payload) in enumerate(sent, 1):
        m = client.publish(sid, topic, payload, content_type="text/plain", sender="sdk")
        assert (m.cursor, m.topic, m.sender, m.session_id) == (i, topic, "sdk", sid)
        assert m.publish_time is not None
    r = client.read_bus(sid)
    assert [m.cursor for m in r.messages] == [1, 2, 3, 4] and r.next_cursor == 4
    assert r.messages[1].payload == b"two" and r.messages[2].payload == b"\x00\xff"
    assert [m.cursor for m in client.read_bus(sid, after=2).messages] == [3, 4]
    only_a = client.read_bus(sid, topics=["a"])
    assert [m.cursor for m in only_a.messages] == [1, 3] and only_a.next_cursor == 4
    assert [m.cursor for m in client.iter_bus(sid, limit=1)] == [1, 2, 3, 4]
    assert [m.cursor for m in client.iter_bus(sid, after=1, topics=["a", "c"], limit=1)] == [
        3, 4]
    assert list(client.iter_bus(sid, after=4)) == []
    with pytest.raises(InvalidArgument):
        client.publish(sid, "", b"x")
    with pytest.raises(InvalidArgument):  # a cursor past the newest
        client.read_bus(sid, after=99)
    with pytest.raises(NotFound):
        client.publish(MISSING, "t", b"x")


def _publish_later(daemon, sid: str, payloads: list[bytes], topic: str = "live") -> threading.Thread:
    def run() -> None:
        with Client(daemon.http_url, token=daemon.token) as c:
            for p in payloads:
                time.sleep(0.05)
                c.publish(sid, topic, p)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_bus_follow_sees_backlog_then_live_and_ends_on_delete(client: Client, sid: str,
                                                              daemon):
    client.publish(sid, "old", b"0")
    got: list[pb.BusMessage] = []
    with client.follow_bus(sid) as stream:
        for m in stream:
            got.append(m)
            if len(got) == 1:
                writer = _publish_later(daemon, sid, [b"1", b"2", b"3"])
            if len(got) == 4:
                break
        assert stream.cursor == 4
    writer.join(WAIT)
    assert [(m.cursor, m.topic, m.payload) for m in got] == [
        (1, "old", b"0"), (2, "live", b"1"), (3, "live", b"2"), (4, "live", b"3")]

    # without `with`, leaving the loop early closes the response there and then
    stream = client.follow_bus(sid)
    for _ in stream:
        break
    assert stream._resp is None

    # resume after a cursor, with a topic filter (iterated without `with`); then
    # the session goes away while the follow is live
    client.publish(sid, "other", b"x")
    client.publish(sid, "live", b"4")
    payloads = []
    with pytest.raises(NotFound):
        for m in client.follow_bus(sid, after=3, topics=["live"]):
            payloads.append(m.payload)
            if len(payloads) == 2:
                with Client(daemon.http_url, token=daemon.token) as other:
                    other.delete_session(sid)
    assert payloads == [b"3", b"4"]

    with pytest.raises(NotFound):  # a follow that cannot start fails on entry
        with client.follow_bus(MISSING):
            pass


# ---------------------------------------------------------------- events


def test_events_list_iter_follow(client: Client, sid: str, daemon):
    client.write_file(sid, "a.txt", b"1")
    client.write_file(sid, "b.txt", b"2")
    client.create_checkpoint(sid, message="c")
    r = client.list_events(sid)
    assert [(e.cursor, e.type, e.path) for e in r.events] == [
        (1, "session.created", ""), (2, "file.written", "a.txt"), (3, "file.written", "b.txt"),
        (4, "checkpoint.created", "")]
    assert r.next_cursor == 4 and r.events[1].attributes["size"] == "1"
    assert [e.cursor for e in client.list_events(sid, after=2, limit=1).events] == [3]
    assert [e.cursor for e in client.iter_events(sid, types=["file.written"], limit=1)] == [2, 3]
    with pytest.raises(InvalidArgument):
        client.list_events(sid, types=["file.writen"])

    got = []
    with client.follow_events(sid, after=3, types=["file.written", "checkpoint.created"]) as s:
        for e in s:
            got.append((e.cursor, e.type, e.path))
            if len(got) == 1:  # the follow is live: a write now is seen next
                with Client(daemon.http_url, token=daemon.token) as other:
                    other.write_file(sid, "c.txt", b"3")
            if len(got) == 2:
                break
    assert got == [(4, "checkpoint.created", ""), (5, "file.written", "c.txt")]
    with pytest.raises(NotFound):
        client.list_events(MISSING)


# ---------------------------------------------------------------- review


def test_comments_and_annotations(client: Client, sid: str):
    f = client.write_file(sid, "src/a.py", b"one\ntwo\nthree\n")
    top = client.create_comment(sid, "why?", path="/src/a.py", author="ann")
    assert top.id.startswith("cmn_") and top.path == "src/a.py" and top.author == "ann"
    reply = client.create_comment(sid, "because", parent_id=top.id)
    assert reply.parent_id == top.id and reply.path == "src/a.py"
    general = client.create_comment(sid, "overall fine")
    assert [c.id for c in client.list_comments(sid).comments] == [top.id, reply.id, general.id]
    assert [c.id for c in client.iter_comments(sid, path="src", page_size=1)] == [
        top.id, reply.id]
    with pytest.raises(InvalidArgument):
        client.create_comment(sid, "   ")
    with pytest.raises(NotFound):
        client.create_comment(sid, "x", parent_id="cmn_nope")

    a = client.create_annotation(sid, "src/a.py", 2, 3, "shadowed", severity="warning",
                                 author="lint")
    assert (a.path, a.start_line, a.end_line, a.severity, a.author) == (
        "src/a.py", 2, 3, "warning", "lint")
    assert a.file_hash == f.hash and a.id.startswith("ann_")
    b = client.create_annotation(sid, "src/a.py", 1, 1, "ok")
    assert [x.id for x in client.list_annotations(sid, path="src/a.py").annotations] == [
        a.id, b.id]
    assert [x.id for x in client.iter_annotations(sid, page_size=1)] == [a.id, b.id]
    assert client.delete_annotation(sid, a.id).id == a.id
    with pytest.raises(NotFound):
        client.delete_annotation(sid, a.id)
    with pytest.raises(InvalidArgument):
        client.create_annotation(sid, "src/a.py", 3, 2, "backwards")
    with pytest.raises(NotFound):
        client.create_annotation(sid, "src/missing.py", 1, 1, "x")


def test_approvals(client: Client, sid: str):
    client.update_session(sid, policy=pb.SessionPolicy(commit_requires_approval=True))
    client.write_file(sid, "app.py", b"v1\n")
    with pytest.raises(FailedPrecondition):
        client.create_commit(sid, message="ship")
    first = client.request_approval(sid, title="release", requester="agent")
    assert first.state == pb.ApprovalState.PENDING and first.title == "release"
    assert first.root_hash == client.get_session(sid).root_hash
    ok = client.approve(sid, first.id, reviewer="rev", reason="lgtm")
    assert (ok.state, ok.reviewer, ok.reason) == (pb.ApprovalState.APPROVED, "rev", "lgtm")
    assert client.create_commit(sid, message="ship").approval_ids == [first.id]

    client.write_file(sid, "app.py", b"v2\n")
    assert [x.id for x in client.list_approvals(sid, state="stale").approvals] == [first.id]
    second = client.request_approval(sid)
    with pytest.raises(InvalidArgument):
        client.reject(sid, second.id, reviewer="rev", reason=" ")
    no = client.reject(sid, second.id, reviewer="rev", reason="tests missing")
    assert (no.state, no.reason) == (pb.ApprovalState.REJECTED, "tests missing")
    with pytest.raises(FailedPrecondition):
        client.approve(sid, second.id, reviewer="rev")
    assert [x.id for x in client.iter_approvals(sid, page_size=1)] == [second.id, first.id]
    assert [x.id for x in client.iter_approvals(sid, state=pb.ApprovalState.REJECTED)] == [
        second.id]
    with pytest.raises(NotFound):
        client.approve(sid, "apr_" + "0" * 26, reviewer="rev")


# ---------------------------------------------------------------- observability


def test_session_health_usage_analytics(client: Client, sid: str):
    client.write_file(sid, "a/b.txt", b"hello")
    client.cache_put(sid, "k", b"vv")
    client.publish(sid, "t", b"m")
    h = client.session_health(sid)
    assert h.session_id == sid and h.status == "ok" and h.checks["state"] == "active"
    u = client.get_usage(sid)
    assert (u.session_id, u.files, u.bytes, u.cache_keys, u.cache_bytes, u.bus_backlog) == (
        sid, 1, 5, 1, 2, 1)
    an = client.get_analytics(sid, window_seconds=60)
    assert an.session_id == sid and len(an.windows) == 24
    counts = {op.operation: op.count for w in an.windows for op in w.operations}
    assert counts["file.written"] == 1
    for call in (client.session_health, client.get_usage, client.get_analytics):
        with pytest.raises(NotFound):
            call(MISSING)
    with pytest.raises(InvalidArgument):
        client.get_analytics(sid, window_seconds=10**9)


# ---------------------------------------------------------------- async


async def test_async_coordination(daemon):
    async with AsyncClient(daemon.http_url, token=daemon.token) as c:
        s = await c.create_session(name="async-coord")
        await c.cache_put(s.id, "k", b"v")
        assert (await c.cache_get(s.id, "k")).value == b"v"
        assert await c.cache_exists(s.id, "k")
        cas = await c.cache_compare_and_set(s.id, "k", b"w", expect_absent=True)
        assert not cas.swapped
        await c.cache_batch_set(s.id, {"p/1": b"1", "p/2": b"2"})
        assert [k.key async for k in c.iter_cache_keys(s.id, prefix="p/", page_size=1)] == [
            "p/1", "p/2"]
        assert (await c.cache_delete_by_prefix(s.id, "p/")).deleted == 2

        await c.publish(s.id, "t", b"0")
        assert [m.cursor async for m in c.iter_bus(s.id, limit=1)] == [1]
        got = []
        async with asyncio.timeout(WAIT):
            async with c.follow_bus(s.id) as stream:
                async for m in stream:
                    got.append(m.payload)
                    if len(got) == 1:
                        await c.publish(s.id, "t", b"1")
                    if len(got) == 2:
                        break
                assert stream.cursor == 2
        assert got == [b"0", b"1"]

        types = []
        async with asyncio.timeout(WAIT):
            async for e in c.follow_events(s.id):
                types.append(e.type)
                if len(types) == 2:
                    break
        assert types == ["session.created", "cache.written"]
        assert [e.cursor async for e in c.iter_events(s.id, limit=2)][:2] == [1, 2]

        cm = await c.create_comment(s.id, "hi")
        assert [x.id async for x in c.iter_comments(s.id)] == [cm.id]
        apr = await c.request_approval(s.id)
        assert (await c.approve(s.id, apr.id, reviewer="r")).state == pb.ApprovalState.APPROVED
        assert (await c.get_usage(s.id)).cache_keys == 1
        assert (await c.session_health(s.id)).status == "ok"

        # the session goes away while the follow is live (iterated without `with`)
        got_types = []
        with pytest.raises(NotFound):
            async with asyncio.timeout(WAIT):
                async for e in c.follow_events(s.id, after=1):
                    got_types.append(e.type)
                    if len(got_types) == 1:
                        await c.delete_session(s.id)
        assert "cache.written" in got_types
