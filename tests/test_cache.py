"""The knowledge cache over real HTTP and real gRPC against a real daemon."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import threading
import time

import apsw
import httpx
import pytest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from aether import pb

MIB = 1 << 20


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


def new_session(http: httpx.Client) -> str:
    r = http.post("/v1/sessions", json={})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def cache_url(sid: str, rest: str = "") -> str:
    return f"/v1/sessions/{sid}/cache{rest}"


def put(http: httpx.Client, sid: str, enc_key: str, value: bytes, **fields) -> httpx.Response:
    return http.put(cache_url(sid, f"/{enc_key}"), json={"value": b64(value), **fields})


def ok(r: httpx.Response) -> dict:
    assert r.status_code == 200, r.text
    return r.json()


def error_code(r: httpx.Response) -> str:
    return r.json()["error"]["code"]


def when(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture
async def grpc_cache(daemon):
    channel = Channel(daemon.grpc_host, daemon.grpc_port)
    yield pb.CacheServiceStub(channel, metadata={"authorization": f"Bearer {daemon.token}"})
    channel.close()


async def grpc_status(call) -> Status:
    with pytest.raises(GRPCError) as err:
        await call
    return err.value.status


# ---- single keys


def test_put_get_exists_metadata_delete_over_http(http):
    sid = new_session(http)
    # "notes/today" travels percent-encoded: the slash is part of the key.
    first = ok(put(http, sid, "notes%2Ftoday", b"hello", contentType="text/plain"))
    assert (first["key"], first["size"], first["contentType"]) == ("notes/today", "5",
                                                                   "text/plain")
    assert first["expireTime"] is None
    got = ok(http.get(cache_url(sid, "/notes%2Ftoday")))
    assert unb64(got["value"]) == b"hello" and got["metadata"] == first
    assert ok(http.get(cache_url(sid, "/notes%2Ftoday/exists"))) == {"exists": True}
    assert ok(http.get(cache_url(sid, "/notes%2Ftoday/metadata"))) == first

    time.sleep(0.01)
    second = ok(put(http, sid, "notes%2Ftoday", b"bye"))
    assert int(second["version"]) > int(first["version"])
    assert second["createTime"] == first["createTime"]
    assert when(second["updateTime"]) > when(first["updateTime"])
    assert second["contentType"] == "application/octet-stream"  # the default

    assert ok(http.delete(cache_url(sid, "/notes%2Ftoday"))) == {"deleted": "1"}
    assert ok(http.delete(cache_url(sid, "/notes%2Ftoday"))) == {"deleted": "0"}  # idempotent
    assert ok(http.get(cache_url(sid, "/notes%2Ftoday/exists"))) == {"exists": False}
    for suffix in ("", "/metadata"):
        r = http.get(cache_url(sid, f"/notes%2Ftoday{suffix}"))
        assert (r.status_code, error_code(r)) == (404, "not_found")
    # An unencoded slash is a different route, never a key with a slash in it.
    assert http.get(cache_url(sid, "/notes/today")).status_code == 404


def test_reserved_words_are_reachable_as_keys_when_encoded(http):
    sid = new_session(http)
    ok(put(http, sid, "%6Beys", b"k"))  # "keys": the bare word is the listing route
    ok(put(http, sid, "%73tats", b"s"))  # "stats"
    assert unb64(ok(http.get(cache_url(sid, "/%6Beys")))["value"]) == b"k"
    listed = ok(http.get(cache_url(sid, "/keys")))
    assert [k["key"] for k in listed["keys"]] == ["keys", "stats"]


async def test_single_keys_over_grpc(http, grpc_cache):
    sid = new_session(http)
    m = await grpc_cache.put(pb.CachePutRequest(session_id=sid, key="a/b", value=b"\x00\xff",
                                                content_type="application/x-bin"))
    assert (m.key, m.size, m.content_type, m.expire_time) == ("a/b", 2, "application/x-bin",
                                                              None)
    got = await grpc_cache.get(pb.CacheKeyRequest(session_id=sid, key="a/b"))
    assert got.value == b"\x00\xff" and got.metadata == m
    assert (await grpc_cache.exists(pb.CacheKeyRequest(session_id=sid, key="a/b"))).exists
    assert await grpc_cache.get_metadata(pb.CacheKeyRequest(session_id=sid, key="a/b")) == m
    # Same store behind both transports.
    assert unb64(ok(http.get(cache_url(sid, "/a%2Fb")))["value"]) == b"\x00\xff"
    gone = await grpc_cache.delete(pb.CacheKeyRequest(session_id=sid, key="a/b"))
    assert gone.deleted == 1
    assert not (await grpc_cache.exists(pb.CacheKeyRequest(session_id=sid, key="a/b"))).exists
    for call in (grpc_cache.get, grpc_cache.get_metadata):
        assert await grpc_status(call(pb.CacheKeyRequest(session_id=sid, key="a/b"))) == \
            Status.NOT_FOUND


def test_unknown_and_malformed_sessions(http):
    r = http.get(cache_url("ses_00000000000000000000000000", "/k"))
    assert (r.status_code, error_code(r)) == (404, "not_found")
    r = http.get(cache_url("nope", "/stats"))
    assert (r.status_code, error_code(r)) == (404, "not_found")


def test_archived_session_is_read_only(http):
    sid = new_session(http)
    ok(put(http, sid, "k", b"v"))
    assert http.post(f"/v1/sessions/{sid}:archive").status_code == 200
    for r in (put(http, sid, "k", b"w"), http.delete(cache_url(sid, "/k")),
              http.post(cache_url(sid, "/k/compare-and-set"),
                        json={"expectedVersion": "1", "value": b64(b"x")}),
              http.post(cache_url(sid, "/batch-set"), json={"items": [{"key": "n"}]}),
              http.post(cache_url(sid, "/delete-by-prefix"), json={"prefix": "k"})):
        assert (r.status_code, error_code(r)) == (412, "failed_precondition"), r.text
    assert unb64(ok(http.get(cache_url(sid, "/k")))["value"]) == b"v"


# ---- compare-and-set


def cas(http, sid, enc_key, value: bytes, **fields) -> dict:
    return ok(http.post(cache_url(sid, f"/{enc_key}/compare-and-set"),
                        json={"value": b64(value), **fields}))


def test_compare_and_set_semantics(http):
    sid = new_session(http)
    created = cas(http, sid, "lock", b"me", expectAbsent=True)
    assert created["swapped"] is True
    v1 = int(created["metadata"]["version"])
    # A lost race is an answer (200, swapped false) carrying the current metadata.
    lost = cas(http, sid, "lock", b"you", expectAbsent=True)
    assert lost == {"swapped": False, "metadata": created["metadata"]}
    assert cas(http, sid, "lock", b"you", expectedVersion="0") == lost  # 0 also means absent
    won = cas(http, sid, "lock", b"me2", expectedVersion=str(v1), contentType="text/plain")
    assert won["swapped"] and int(won["metadata"]["version"]) > v1
    stale = cas(http, sid, "lock", b"old", expectedVersion=str(v1))
    assert stale == {"swapped": False, "metadata": won["metadata"]}
    # Absent key, expected a version: not swapped, no metadata.
    assert cas(http, sid, "nokey", b"x", expectedVersion="7") == {"swapped": False,
                                                                  "metadata": None}
    # No ABA: a deleted and re-created key never reuses a version.
    v2 = int(won["metadata"]["version"])
    ok(http.delete(cache_url(sid, "/lock")))
    again = cas(http, sid, "lock", b"new", expectAbsent=True)
    assert again["swapped"] and int(again["metadata"]["version"]) > v2
    assert cas(http, sid, "lock", b"late", expectedVersion=str(v2))["swapped"] is False
    r = http.post(cache_url(sid, "/lock/compare-and-set"),
                  json={"expectAbsent": True, "expectedVersion": "3", "value": ""})
    assert (r.status_code, error_code(r)) == (400, "invalid_argument")
    assert unb64(ok(http.get(cache_url(sid, "/lock")))["value"]) == b"new"


async def test_compare_and_set_over_grpc(http, grpc_cache):
    sid = new_session(http)
    req = pb.CompareAndSetRequest(session_id=sid, key="c", expect_absent=True, value=b"1")
    first = await grpc_cache.compare_and_set(req)
    assert first.swapped and first.metadata.version > 0
    lost = await grpc_cache.compare_and_set(req)
    assert not lost.swapped and lost.metadata == first.metadata
    won = await grpc_cache.compare_and_set(pb.CompareAndSetRequest(
        session_id=sid, key="c", expected_version=first.metadata.version, value=b"2"))
    assert won.swapped and won.metadata.version > first.metadata.version
    bad = pb.CompareAndSetRequest(session_id=sid, key="c", expected_version=1, expect_absent=True)
    assert await grpc_status(grpc_cache.compare_and_set(bad)) == Status.INVALID_ARGUMENT


CLIENTS, INCREMENTS = 16, 10


def _increment_over_http(daemon, sid: str, errors: list[BaseException]) -> None:
    try:
        with daemon.http() as http:
            for _ in range(INCREMENTS):
                while True:
                    got = ok(http.get(cache_url(sid, "/counter")))
                    n = int(unb64(got["value"]))
                    res = cas(http, sid, "counter", str(n + 1).encode(),
                              expectedVersion=got["metadata"]["version"])
                    if res.get("swapped"):
                        break
    except BaseException as e:  # surfaced by the test thread
        errors.append(e)


def test_concurrent_cas_increments_over_http_are_exact(daemon, http):
    sid = new_session(http)
    ok(put(http, sid, "counter", b"0"))
    errors: list[BaseException] = []
    threads = [threading.Thread(target=_increment_over_http, args=(daemon, sid, errors))
               for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert unb64(ok(http.get(cache_url(sid, "/counter")))["value"]) == \
        str(CLIENTS * INCREMENTS).encode()


async def test_concurrent_cas_increments_over_grpc_are_exact(daemon, http):
    sid = new_session(http)
    ok(put(http, sid, "counter", b"0"))
    md = {"authorization": f"Bearer {daemon.token}"}

    async def client() -> None:
        channel = Channel(daemon.grpc_host, daemon.grpc_port)  # one connection per client
        try:
            stub = pb.CacheServiceStub(channel, metadata=md)
            for _ in range(INCREMENTS):
                while True:
                    got = await stub.get(pb.CacheKeyRequest(session_id=sid, key="counter"))
                    res = await stub.compare_and_set(pb.CompareAndSetRequest(
                        session_id=sid, key="counter", expected_version=got.metadata.version,
                        value=str(int(got.value) + 1).encode()))
                    if res.swapped:
                        break
        finally:
            channel.close()

    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    assert unb64(ok(http.get(cache_url(sid, "/counter")))["value"]) == \
        str(CLIENTS * INCREMENTS).encode()


# ---- listing, stats, batches


def test_list_keys_by_prefix_with_pagination(http):
    sid = new_session(http)
    keys = [f"p/{i:02d}" for i in range(25)]
    ok(http.post(cache_url(sid, "/batch-set"),
                 json={"items": [{"key": k, "value": b64(k.encode())} for k in keys]
                       + [{"key": "p"}, {"key": "q/1"}, {"key": "o"}]}))
    seen, token, pages = [], "", 0
    while True:
        page = ok(http.get(cache_url(sid, "/keys"),
                           params={"prefix": "p/", "page_size": 10, "page_token": token}))
        seen += [k["key"] for k in page["keys"]]
        pages += 1
        token = page.get("nextPageToken", "")
        if not token:
            break
    assert (seen, pages) == (keys, 3)
    assert ok(http.get(cache_url(sid, "/keys"), params={"prefix": "p/07"}))["keys"] == [
        ok(http.get(cache_url(sid, "/p%2F07/metadata")))]
    everything = ok(http.get(cache_url(sid, "/keys")))
    assert [k["key"] for k in everything["keys"]] == ["o", "p", *keys, "q/1"]
    assert ok(http.get(cache_url(sid, "/keys"), params={"prefix": "zz"})) == {
        "keys": [], "nextPageToken": ""}


async def test_list_keys_over_grpc_and_prefix_edges(http, grpc_cache):
    sid = new_session(http)
    top = "\U0010ffff"  # the last code point: its prefix range has no simple upper bound
    names = ["a", f"a{top}", f"a{top}z", f"a{top}{top}", "b", "é/1", "é/2"]
    await grpc_cache.batch_set(pb.CacheBatchSetRequest(
        session_id=sid, items=[pb.CacheBatchSetItem(key=k) for k in names]))

    async def listed(prefix: str, page_size: int = 0) -> list[str]:
        out, token = [], ""
        while True:
            resp = await grpc_cache.list_keys(pb.CacheListKeysRequest(
                session_id=sid, prefix=prefix, page_size=page_size, page_token=token))
            out += [m.key for m in resp.keys]
            token = resp.next_page_token
            if not token:
                return out

    assert await listed(f"a{top}") == [f"a{top}", f"a{top}z", f"a{top}{top}"]
    assert await listed("a", page_size=1) == names[:4]
    assert await listed("é/") == ["é/1", "é/2"]
    assert await listed("") == sorted(names, key=lambda k: k.encode())


def test_stats_count_keys_bytes_hits_and_misses(http):
    sid = new_session(http)
    assert ok(http.get(cache_url(sid, "/stats"))) == {"keys": "0", "bytes": "0", "hits": "0",
                                                      "misses": "0"}
    ok(put(http, sid, "a", b"abc"))
    ok(put(http, sid, "b", b"defgh"))
    ok(http.get(cache_url(sid, "/a")))
    ok(http.get(cache_url(sid, "/b")))
    assert http.get(cache_url(sid, "/nope")).status_code == 404
    got = ok(http.post(cache_url(sid, "/batch-get"), json={"keys": ["a", "missing"]}))
    assert [e["metadata"]["key"] for e in got["entries"]] == ["a"] and got["missing"] == ["missing"]
    # Probes are not reads of the value: exists and metadata do not count.
    ok(http.get(cache_url(sid, "/a/exists")))
    ok(http.get(cache_url(sid, "/nope/exists")))
    ok(http.get(cache_url(sid, "/a/metadata")))
    assert ok(http.get(cache_url(sid, "/stats"))) == {"keys": "2", "bytes": "8", "hits": "3",
                                                      "misses": "2"}


def test_hit_counts_are_stored_within_a_second_and_at_shutdown(fresh_daemon):
    """Gets count in memory (no write per get); the counts reach the database a
    second later, and a graceful stop stores what is still pending."""
    d = fresh_daemon.start()
    with d.http() as http:
        sid = new_session(http)
        ok(put(http, sid, "a", b"1"))
        ok(http.get(cache_url(sid, "/a")))
        assert http.get(cache_url(sid, "/nope")).status_code == 404
        db = apsw.Connection(str(d.data_dir / "meta.db"), flags=apsw.SQLITE_OPEN_READONLY)

        def stored() -> dict[str, int]:
            return dict(db.execute("SELECT name, value FROM counters WHERE session_id=? "
                                   "AND name IN ('cache_hits', 'cache_misses')", (sid,)))

        deadline = time.monotonic() + 10
        while stored() != {"cache_hits": 1, "cache_misses": 1}:
            assert time.monotonic() < deadline, stored()
            time.sleep(0.05)
        for _ in range(5):
            ok(http.get(cache_url(sid, "/a")))
        assert ok(http.get(cache_url(sid, "/stats")))["hits"] == "6"  # pending included
    d.stop()  # SIGTERM within the flush delay: the close flushes
    assert stored()["cache_hits"] == 6
    db.close()
    d.start()
    with d.http() as http:
        assert ok(http.get(cache_url(sid, "/stats")))["hits"] == "6"


async def test_stats_and_batches_over_grpc(http, grpc_cache):
    sid = new_session(http)
    items = [pb.CacheBatchSetItem(key=f"k{i}", value=b"x" * i, content_type="text/plain")
             for i in range(1, 4)]
    metas = (await grpc_cache.batch_set(pb.CacheBatchSetRequest(session_id=sid,
                                                                 items=items))).entries
    assert [m.key for m in metas] == ["k1", "k2", "k3"]
    assert len({m.version for m in metas}) == 1  # one transaction, one revision
    got = await grpc_cache.batch_get(pb.CacheBatchGetRequest(
        session_id=sid, keys=["k3", "zz", "k1", "k3"]))
    assert [(e.metadata.key, e.value) for e in got.entries] == [("k3", b"xxx"), ("k1", b"x")]
    assert got.missing == ["zz"]
    stats = await grpc_cache.stats(pb.CacheStatsRequest(session_id=sid))
    assert (stats.keys, stats.bytes, stats.hits, stats.misses) == (3, 6, 2, 1)
    deleted = await grpc_cache.batch_delete(pb.CacheBatchDeleteRequest(
        session_id=sid, keys=["k1", "k2", "nothing"]))
    assert deleted.deleted == 2
    gone = await grpc_cache.delete_by_prefix(pb.CacheDeleteByPrefixRequest(session_id=sid,
                                                                          prefix="k"))
    assert gone.deleted == 1
    stats = await grpc_cache.stats(pb.CacheStatsRequest(session_id=sid))
    assert (stats.keys, stats.bytes) == (0, 0)
    empty = pb.CacheDeleteByPrefixRequest(session_id=sid, prefix="")
    assert await grpc_status(grpc_cache.delete_by_prefix(empty)) == Status.INVALID_ARGUMENT


def test_batch_routes_over_http(http):
    sid = new_session(http)
    set_ = ok(http.post(cache_url(sid, "/batch-set"), json={"items": [
        {"key": "x/1", "value": b64(b"one"), "contentType": "text/plain"},
        {"key": "x/2", "value": b64(b"two"), "ttlSeconds": "3600"},
        {"key": "y", "value": b64(b"why")},
    ]}))
    assert [(m["key"], m["size"]) for m in set_["entries"]] == [("x/1", "3"), ("x/2", "3"),
                                                               ("y", "3")]
    assert set_["entries"][1]["expireTime"] and set_["entries"][0]["expireTime"] is None
    got = ok(http.post(cache_url(sid, "/batch-get"), json={"keys": ["y", "x/1"]}))
    assert [unb64(e["value"]) for e in got["entries"]] == [b"why", b"one"]
    assert ok(http.post(cache_url(sid, "/batch-delete"), json={"keys": ["y", "nope"]})) == {
        "deleted": "1"}
    assert ok(http.post(cache_url(sid, "/delete-by-prefix"), json={"prefix": "x/"})) == {
        "deleted": "2"}
    assert ok(http.get(cache_url(sid, "/keys")))["keys"] == []
    r = http.post(cache_url(sid, "/delete-by-prefix"), json={})
    assert (r.status_code, error_code(r)) == (400, "invalid_argument")


def test_delete_by_prefix_keeps_its_neighbours(http):
    sid = new_session(http)
    ok(http.post(cache_url(sid, "/batch-set"), json={"items": [
        {"key": k} for k in ("a", "a/", "a/1", "a/2/deep", "a0", "ab", "b")]}))
    assert ok(http.post(cache_url(sid, "/delete-by-prefix"), json={"prefix": "a/"})) == {
        "deleted": "3"}
    assert [k["key"] for k in ok(http.get(cache_url(sid, "/keys")))["keys"]] == [
        "a", "a0", "ab", "b"]


@pytest.mark.parametrize(("bad_item", "status", "code"), [
    ({"key": "c", "value": b64(b"x" * (16 * MIB + 1))}, 429, "resource_exhausted"),
    ({"key": ""}, 400, "invalid_argument"),
    ({"key": "k" * 1025}, 400, "invalid_argument"),
    ({"key": "a"}, 400, "invalid_argument"),  # a duplicate of the first item
    ({"key": "c", "contentType": "text/plâin"}, 400, "invalid_argument"),
    ({"key": "c", "ttlSeconds": str(11 * 365 * 24 * 3600)}, 400, "invalid_argument"),
], ids=["oversized", "empty-key", "long-key", "duplicate", "content-type", "ttl"])
def test_batch_set_is_all_or_nothing(http, bad_item, status, code):
    sid = new_session(http)
    ok(put(http, sid, "a", b"before"))
    r = http.post(cache_url(sid, "/batch-set"), json={"items": [
        {"key": "a", "value": b64(b"after")}, {"key": "b", "value": b64(b"new")}, bad_item]})
    assert (r.status_code, error_code(r)) == (status, code), r.text
    assert unb64(ok(http.get(cache_url(sid, "/a")))["value"]) == b"before"
    assert ok(http.get(cache_url(sid, "/b/exists"))) == {"exists": False}


# ---- limits and bad input


def test_value_size_limit_over_http(http):
    sid = new_session(http)
    big = ok(put(http, sid, "big", b"\x01" * (16 * MIB)))  # exactly the limit is fine
    assert big["size"] == str(16 * MIB)
    r = put(http, sid, "big", b"\x02" * (16 * MIB + 1))
    assert (r.status_code, error_code(r)) == (429, "resource_exhausted")
    r = http.post(cache_url(sid, "/c/compare-and-set"),
                  json={"expectAbsent": True, "value": b64(b"\x02" * (16 * MIB + 1))})
    assert (r.status_code, error_code(r)) == (429, "resource_exhausted")
    assert ok(http.get(cache_url(sid, "/big/metadata")))["version"] == big["version"]
    # Not left in the shared daemon: in today's WITHOUT ROWID cache table a 16 MiB row
    # makes every b-tree seek that compares against it read all 16 MiB.
    ok(http.delete(cache_url(sid, "/big")))


async def test_limits_over_grpc(http, grpc_cache):
    sid = new_session(http)
    too_big = pb.CachePutRequest(session_id=sid, key="k", value=b"\x00" * (16 * MIB + 1))
    assert await grpc_status(grpc_cache.put(too_big)) == Status.RESOURCE_EXHAUSTED
    for key in ("", "k\x00ey", "é" * 513):
        req = pb.CachePutRequest(session_id=sid, key=key, value=b"v")
        assert await grpc_status(grpc_cache.put(req)) == Status.INVALID_ARGUMENT, key
    longest = "é" * 512  # 1024 bytes of UTF-8: the limit counts bytes, not characters
    assert (await grpc_cache.put(pb.CachePutRequest(session_id=sid, key=longest))).key == longest
    many = pb.CacheBatchGetRequest(session_id=sid, keys=[f"k{i}" for i in range(1001)])
    assert await grpc_status(grpc_cache.batch_get(many)) == Status.INVALID_ARGUMENT
    ok_many = pb.CacheBatchDeleteRequest(session_id=sid, keys=[f"k{i}" for i in range(1000)])
    assert (await grpc_cache.batch_delete(ok_many)).deleted == 0


@pytest.mark.parametrize(("method", "rest", "body"), [
    ("GET", "/" + "k" * 1025, None),
    ("PUT", "/" + "%C3%A9" * 513, {}),
    ("GET", "/bad%00key", None),
    ("GET", "/%FF/exists", None),
    ("POST", "/batch-get", '{"keys": ["ok", "\\ud800"]}'),  # a lone surrogate is no UTF-8
    ("POST", "/batch-delete", {"keys": ["x"] * 1001}),
    ("GET", "/keys?prefix=" + "p" * 1025, None),
])
def test_bad_keys_are_invalid_argument_over_http(http, method, rest, body):
    sid = new_session(http)
    if isinstance(body, str):
        r = http.request(method, cache_url(sid, rest), content=body,
                         headers={"Content-Type": "application/json"})
    else:
        r = http.request(method, cache_url(sid, rest), json=body)
    assert (r.status_code, error_code(r)) == (400, "invalid_argument"), r.text


# ---- expiry


def stored_keys(daemon, sid: str) -> list[str]:
    """Rows in the daemon's metadata database, expired or not (read beside the daemon)."""
    conn = apsw.Connection(str(daemon.data_dir / "meta.db"))
    try:
        return [k for (k,) in conn.execute(
            "SELECT key FROM cache WHERE session_id=? ORDER BY key", (sid,))]
    finally:
        conn.close()


async def test_ttl_expiry_on_both_transports(daemon, http, grpc_cache):
    sid = new_session(http)
    t0 = time.monotonic()
    short = ok(put(http, sid, "short", b"s", ttlSeconds="1"))
    assert (when(short["expireTime"]) - when(short["createTime"])).total_seconds() == \
        pytest.approx(1, abs=0.01)
    await grpc_cache.put(pb.CachePutRequest(session_id=sid, key="short2", value=b"t",
                                            ttl_seconds=1))
    ok(http.post(cache_url(sid, "/batch-set"),
                 json={"items": [{"key": "short3", "ttlSeconds": "1"}]}))
    ok(put(http, sid, "long", b"forever"))
    assert ok(http.get(cache_url(sid, "/stats")))["keys"] == "4"

    await asyncio.sleep(max(0.0, 1.2 - (time.monotonic() - t0)))
    for key in ("short", "short2", "short3"):
        r = http.get(cache_url(sid, f"/{key}"))
        assert (r.status_code, error_code(r)) == (404, "not_found")
        assert http.get(cache_url(sid, f"/{key}/metadata")).status_code == 404
        assert ok(http.get(cache_url(sid, f"/{key}/exists"))) == {"exists": False}
    assert await grpc_status(grpc_cache.get(pb.CacheKeyRequest(session_id=sid, key="short2"))) \
        == Status.NOT_FOUND
    assert [k["key"] for k in ok(http.get(cache_url(sid, "/keys")))["keys"]] == ["long"]
    stats = ok(http.get(cache_url(sid, "/stats")))
    assert (stats["keys"], stats["bytes"]) == ("1", "7")
    got = ok(http.post(cache_url(sid, "/batch-get"), json={"keys": ["short", "long"]}))
    assert got["missing"] == ["short"]
    assert stored_keys(daemon, sid) == ["long", "short", "short2", "short3"]  # reads never delete
    # An expired key is absent to compare-and-set, and comes back as a new key.
    again = cas(http, sid, "short", b"back", expectAbsent=True)
    # That write was the first a second after the TTL puts: it swept the expired rows.
    assert stored_keys(daemon, sid) == ["long", "short"]
    assert again["swapped"] and when(again["metadata"]["createTime"]) > when(short["createTime"])
    assert again["metadata"]["expireTime"] is None  # no TTL given: it no longer expires
    assert int(again["metadata"]["version"]) > int(short["version"])
    # Expired keys are not counted as deleted.
    assert ok(http.post(cache_url(sid, "/batch-delete"), json={"keys": ["short2"]})) == {
        "deleted": "0"}
    assert ok(http.post(cache_url(sid, "/delete-by-prefix"), json={"prefix": "short"})) == {
        "deleted": "1"}


# ---- events and fork


def test_writes_and_deletes_are_events(http):
    sid = new_session(http)
    ok(put(http, sid, "e", b"1"))
    ok(http.delete(cache_url(sid, "/e")))
    ok(http.post(cache_url(sid, "/batch-set"), json={"items": [{"key": "p1"}, {"key": "p2"}]}))
    ok(http.post(cache_url(sid, "/delete-by-prefix"), json={"prefix": "p"}))
    r = http.get(f"/v1/sessions/{sid}/events", params={"types": ["cache.written",
                                                                   "cache.deleted"]})
    if r.status_code == 501:
        pytest.skip("the events API is not served yet")
    events = [(e["type"], e.get("path", ""), e.get("attributes", {}))
              for e in ok(r)["events"]]
    assert [(t, p) for t, p, _ in events] == [
        ("cache.written", "e"), ("cache.deleted", "e"), ("cache.written", "p1"),
        ("cache.written", "p2"), ("cache.deleted", "")]
    assert events[-1][2] == {"prefix": "p", "deleted": "2"}


def test_fork_copies_the_cache(http):
    sid = new_session(http)
    ok(put(http, sid, "kept", b"parent value", contentType="text/plain"))
    ok(put(http, sid, "gone", b"x"))
    ok(http.delete(cache_url(sid, "/gone")))
    ok(http.get(cache_url(sid, "/kept")))  # a hit in the parent
    parent_meta = ok(http.get(cache_url(sid, "/kept/metadata")))

    fork = http.post(f"/v1/sessions/{sid}:fork", json={})
    assert fork.status_code == 201, fork.text
    child = fork.json()["id"]
    assert ok(http.get(cache_url(child, "/kept/metadata"))) == parent_meta
    assert [k["key"] for k in ok(http.get(cache_url(child, "/keys")))["keys"]] == ["kept"]
    assert ok(http.get(cache_url(child, "/stats"))) == {"keys": "1", "bytes": "12", "hits": "0",
                                                        "misses": "0"}

    # Independent from here on, and versions keep growing in the child.
    changed = ok(put(http, child, "kept", b"child value"))
    assert int(changed["version"]) > int(parent_meta["version"])
    assert unb64(ok(http.get(cache_url(sid, "/kept")))["value"]) == b"parent value"
    ok(http.delete(cache_url(sid, "/kept")))
    assert unb64(ok(http.get(cache_url(child, "/kept")))["value"]) == b"child value"
