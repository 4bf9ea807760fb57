"""Knowledge cache and message bus through the AetherFS HTTP and gRPC APIs, next to Redis.

What is measured
  A fresh `aetherd` (TCP loopback, its own data dir, one session per
  transport) and a fresh `redis-server` (apt package `redis-server`, started
  here on a loopback port with `--save "" --appendonly no`, stopped at the
  end) do the same work, driven from one asyncio client process:

    cache set         PUT .../cache/{key}  | CacheService.Put       | SET
    cache get         GET .../cache/{key}  | CacheService.Get       | GET
    cache batch-set   POST .../batch-set   | CacheService.BatchSet  | MSET
    cache batch-get   POST .../batch-get   | CacheService.BatchGet  | MGET
    bus publish       POST .../bus:publish | BusService.Publish     | PUBLISH (and XADD)
    bus follow        GET .../bus, SSE     | BusService.Follow      | SUBSCRIBE (and XREAD BLOCK)

  Single operations are issued one after the other (one client, each call
  awaited before the next), so ops/s is 1 / round-trip time. Batched rows
  count keys per second, --batch keys per call. Keys are fresh for every set;
  gets read keys that exist (and check the value). Values are --value-size
  random bytes; bus payloads are 12 bytes.

  Bus latency: one follower is subscribed, then --messages messages are
  published one at a time; each sample is the time from calling publish to
  the follower having that message (so it includes the publish round trip).
  p50 and p99 of those samples. Throughput: one publisher publishes
  --messages messages back to back (each publish awaited) while the follower
  drains them; messages / (first publish -> last message received).

  Redis runs the bus both ways: PUBLISH/SUBSCRIBE (fire and forget: a
  subscriber that is away misses messages) and Streams, XADD/XREAD BLOCK
  (kept, ordered, resumable by id: what the AetherFS bus offers). Cells show
  "pub/sub / streams".

  Not like for like, on purpose, and worth knowing when reading the table:
  every AetherFS write is a committed, fsynced SQLite transaction that also
  records an event (it survives kill -9); this Redis never touches the disk.
  Redis is the in-memory reference point, not a competitor on durability.

Run
  /work/main/.venv/bin/python bench/coordination.py            # 2,000 ops, 1,000 messages
  /work/main/.venv/bin/python bench/coordination.py --quick
  /work/main/.venv/bin/python bench/coordination.py --ops 5000 --batch 500 --value-size 1024
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import _harness as h
import httpx
import redis.asyncio as aioredis
from grpclib.client import Channel
from redis.exceptions import ConnectionError as RedisConnectionError
from rich.console import Console
from rich.table import Table

from aether import pb
from aetherd.testing import free_port

TOPIC = "bench"


# ---- what is measured, per system


class System:
    """One system under test: the cache calls and the bus, in bytes."""

    name = ""

    async def set(self, key: str, value: bytes) -> None: ...
    async def get(self, key: str) -> bytes: ...
    async def batch_set(self, items: list[tuple[str, bytes]]) -> None: ...
    async def batch_get(self, keys: list[str]) -> list[bytes]: ...
    async def publish(self, payload: bytes) -> None: ...

    def follow(self) -> AsyncIterator[bytes]:
        """Every message from the first one published on, live."""
        raise NotImplementedError


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Http(System):
    name = "AetherFS HTTP"

    def __init__(self, client: httpx.AsyncClient, sid: str) -> None:
        self.c, self.base = client, f"/v1/sessions/{sid}"

    async def _ok(self, resp: Awaitable[httpx.Response]) -> httpx.Response:
        return h.check(await resp, "aetherd")

    async def set(self, key: str, value: bytes) -> None:
        await self._ok(self.c.put(f"{self.base}/cache/{key}", json={"value": _b64(value)}))

    async def get(self, key: str) -> bytes:
        r = await self._ok(self.c.get(f"{self.base}/cache/{key}"))
        return base64.b64decode(r.json()["value"])

    async def batch_set(self, items: list[tuple[str, bytes]]) -> None:
        body = {"items": [{"key": k, "value": _b64(v)} for k, v in items]}
        await self._ok(self.c.post(f"{self.base}/cache/batch-set", json=body))

    async def batch_get(self, keys: list[str]) -> list[bytes]:
        r = await self._ok(self.c.post(f"{self.base}/cache/batch-get", json={"keys": keys}))
        return [base64.b64decode(e["value"]) for e in r.json()["entries"]]

    async def publish(self, payload: bytes) -> None:
        await self._ok(self.c.post(f"{self.base}/bus:publish",
                                   json={"topic": TOPIC, "payload": _b64(payload)}))

    async def follow(self) -> AsyncIterator[bytes]:
        async with self.c.stream("GET", f"{self.base}/bus",
                                 headers={"Accept": "text/event-stream"}, timeout=None) as r:
            h.check(r, "aetherd follow")
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    yield base64.b64decode(json.loads(line[6:])["payload"])


class Grpc(System):
    name = "AetherFS gRPC"

    def __init__(self, channel: Channel, token: str, sid: str) -> None:
        md = {"authorization": f"Bearer {token}"}
        self.cache = pb.CacheServiceStub(channel, metadata=md)
        self.bus = pb.BusServiceStub(channel, metadata=md)
        self.sid = sid

    async def set(self, key: str, value: bytes) -> None:
        await self.cache.put(pb.CachePutRequest(session_id=self.sid, key=key, value=value))

    async def get(self, key: str) -> bytes:
        return (await self.cache.get(pb.CacheKeyRequest(session_id=self.sid, key=key))).value

    async def batch_set(self, items: list[tuple[str, bytes]]) -> None:
        await self.cache.batch_set(pb.CacheBatchSetRequest(
            session_id=self.sid, items=[pb.CacheBatchSetItem(key=k, value=v) for k, v in items]))

    async def batch_get(self, keys: list[str]) -> list[bytes]:
        got = await self.cache.batch_get(pb.CacheBatchGetRequest(session_id=self.sid, keys=keys))
        return [e.value for e in got.entries]

    async def publish(self, payload: bytes) -> None:
        await self.bus.publish(pb.PublishRequest(session_id=self.sid, topic=TOPIC, payload=payload))

    async def follow(self) -> AsyncIterator[bytes]:
        async for msg in self.bus.follow(pb.ReadBusRequest(session_id=self.sid)):
            yield msg.payload


class Redis(System):
    """Cache on plain keys; bus on PUBLISH/SUBSCRIBE."""

    name = "Redis"

    def __init__(self, r: aioredis.Redis) -> None:
        self.r = r

    async def set(self, key: str, value: bytes) -> None:
        await self.r.set(key, value)

    async def get(self, key: str) -> bytes:
        return await self.r.get(key)

    async def batch_set(self, items: list[tuple[str, bytes]]) -> None:
        await self.r.mset(dict(items))

    async def batch_get(self, keys: list[str]) -> list[bytes]:
        return await self.r.mget(keys)

    async def publish(self, payload: bytes) -> None:
        await self.r.publish(TOPIC, payload)

    async def follow(self) -> AsyncIterator[bytes]:
        async with self.r.pubsub() as ps:
            await ps.subscribe(TOPIC)
            async for m in ps.listen():
                if m["type"] == "message":
                    yield m["data"]


class RedisStreams(Redis):
    """The bus on a stream (XADD / XREAD BLOCK): kept and resumable, like ours."""

    name = "Redis streams"
    STREAM = "bench-stream"

    async def publish(self, payload: bytes) -> None:
        await self.r.xadd(self.STREAM, {"p": payload}, maxlen=10_000, approximate=True)

    async def follow(self) -> AsyncIterator[bytes]:
        last = "0"
        while True:
            for _stream, entries in await self.r.xread({self.STREAM: last}, block=0):
                for entry_id, fields in entries:
                    last = entry_id
                    yield fields[b"p"]


# ---- measurements


async def ops_per_second(calls: list[Callable[[], Awaitable[object]]], per_call: int = 1) -> float:
    for call in calls[: max(1, len(calls) // 20)]:  # warm-up: connections, caches
        await call()
    t0 = time.perf_counter()
    for call in calls:
        await call()
    return len(calls) * per_call / (time.perf_counter() - t0)


@dataclass
class BusResult:
    latencies_ms: list[float] = field(default_factory=list)
    throughput: float = 0.0


async def bus(system: System, messages: int) -> BusResult:
    """Latency then throughput, over one follower that stays subscribed."""
    inbox: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def follower() -> None:
        async for payload in system.follow():
            inbox.put_nowait((time.perf_counter(), payload))

    task = asyncio.create_task(follower())
    try:
        # The follower is live once it has a message: publish until one arrives
        # (pub/sub drops what is published before the subscription is made).
        while True:
            await system.publish(b"prime")
            try:
                _, got = await asyncio.wait_for(inbox.get(), 0.5)
            except TimeoutError:
                continue
            if got == b"prime":
                break
        await asyncio.sleep(0.2)
        while not inbox.empty():
            inbox.get_nowait()  # late primes

        out = BusResult()
        for i in range(messages):
            payload = b"lat-%08d" % i
            t0 = time.perf_counter()
            await system.publish(payload)
            t1, got = await inbox.get()
            if got != payload:
                raise RuntimeError(f"{system.name}: follower got {got!r}, wanted {payload!r}")
            out.latencies_ms.append((t1 - t0) * 1000)

        t0 = time.perf_counter()
        for i in range(messages):
            await system.publish(b"thr-%08d" % i)
        for i in range(messages):
            _, got = await inbox.get()
            if got != b"thr-%08d" % i:
                raise RuntimeError(f"{system.name}: message {i} out of order: {got!r}")
        out.throughput = messages / (time.perf_counter() - t0)
        return out
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@dataclass
class Row:
    label: str
    unit: str
    cells: dict[str, str]


async def cache_numbers(s: System, ops: int, batch: int, batches: int,
                        value_size: int) -> tuple[float, float, float, float]:
    """(set ops/s, get ops/s, batch-set keys/s, batch-get keys/s) of one system."""
    value = os.urandom(value_size)
    keys = [f"k{i:07d}" for i in range(ops)]
    groups = [[f"b{j:05d}-{i:05d}" for i in range(batch)] for j in range(batches)]

    async def get(k: str) -> None:
        if await s.get(k) != value:
            raise RuntimeError(f"{s.name}: wrong value for {k}")

    async def batch_get(g: list[str]) -> None:
        if len(await s.batch_get(g)) != len(g):
            raise RuntimeError(f"{s.name}: batch-get lost keys")

    return (
        await ops_per_second([lambda k=k: s.set(k, value) for k in keys]),
        await ops_per_second([lambda k=k: get(k) for k in keys]),
        await ops_per_second([lambda g=g: s.batch_set([(k, value) for k in g]) for g in groups],
                             per_call=batch),
        await ops_per_second([lambda g=g: batch_get(g) for g in groups], per_call=batch),
    )


async def cache_rows(systems: list[System], ops: int, batch: int, batches: int,
                     value_size: int) -> list[Row]:
    numbers = {s.name: await cache_numbers(s, ops, batch, batches, value_size) for s in systems}

    def cells(i: int) -> dict[str, str]:
        return {name: f"{n[i]:,.0f}" for name, n in numbers.items()}

    return [
        Row("cache set (1 key per call)", "ops/s", cells(0)),
        Row("cache get (1 key per call)", "ops/s", cells(1)),
        Row(f"cache batch-set ({batch} keys per call)", "keys/s", cells(2)),
        Row(f"cache batch-get ({batch} keys per call)", "keys/s", cells(3)),
    ]


def _pct(samples: list[float], p: float) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[int(p) - 1]


def bus_rows(results: dict[str, BusResult], messages: int) -> list[Row]:
    def cells(fn: Callable[[BusResult], str]) -> dict[str, str]:
        out = {k: fn(v) for k, v in results.items() if k != RedisStreams.name}
        if RedisStreams.name in results:
            out[Redis.name] = f"{out[Redis.name]} / {fn(results[RedisStreams.name])}"
        return out

    return [
        Row("bus publish -> follower, p50", "ms", cells(lambda r: f"{_pct(r.latencies_ms, 50):.2f}")),
        Row("bus publish -> follower, p99", "ms", cells(lambda r: f"{_pct(r.latencies_ms, 99):.2f}")),
        Row(f"bus throughput ({messages:,} msgs, 1 publisher, 1 follower)", "msgs/s",
            cells(lambda r: f"{r.throughput:,.0f}")),
    ]


# ---- the servers


class RedisServer:
    def __init__(self, work: Path) -> None:
        self.port = free_port()
        self.dir = work / "redis"
        self.proc: subprocess.Popen | None = None

    def start(self) -> RedisServer:
        exe = shutil.which("redis-server")
        if exe is None:
            raise SystemExit("bench/coordination.py needs redis-server: apt-get install redis-server")
        self.dir.mkdir(parents=True)
        self.proc = subprocess.Popen(
            [exe, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", str(self.dir), "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        return self

    async def ready(self, client: aioredis.Redis, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                await client.ping()
                return
            except RedisConnectionError:
                if time.monotonic() > deadline or (self.proc and self.proc.poll() is not None):
                    raise
                await asyncio.sleep(0.05)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def run(args: argparse.Namespace, work: Path) -> list[Row]:
    daemon = h.new_daemon(work / "data", []).start()
    redis_server = RedisServer(work).start()
    try:
        http = httpx.AsyncClient(base_url=daemon.http_url, headers=daemon.headers,
                                 timeout=httpx.Timeout(60, connect=10))
        channel = Channel(daemon.grpc_host, daemon.grpc_port)
        r = aioredis.Redis(host="127.0.0.1", port=redis_server.port)
        try:
            await redis_server.ready(r)

            async def session() -> str:
                return h.check(await http.post("/v1/sessions", json={"name": "bench"}),
                               "create session").json()["id"]

            systems: list[System] = [Http(http, await session()),
                                     Grpc(channel, daemon.token, await session()), Redis(r)]
            rows = await cache_rows(systems, args.ops, args.batch, args.batches, args.value_size)
            # Fresh sessions: the bus numbers must not share a session with the cache work.
            bus_systems = [Http(http, await session()), Grpc(channel, daemon.token, await session()),
                           Redis(r), RedisStreams(r)]
            results = {s.name: await bus(s, args.messages) for s in bus_systems}
            return rows + bus_rows(results, args.messages)
        finally:
            await http.aclose()
            channel.close()
            await r.aclose()
    finally:
        daemon.stop()
        redis_server.stop()


def print_table(console: Console, rows: list[Row], args: argparse.Namespace) -> None:
    table = Table(title=f"Cache and bus: AetherFS (HTTP, gRPC) vs Redis — {args.value_size}-byte "
                  "values, one client, sequential calls")
    table.add_column("operation")
    table.add_column("unit")
    for name in (Http.name, Grpc.name, Redis.name):
        table.add_column(name, justify="right")
    for i, row in enumerate(rows):
        if i == 4:
            table.add_section()
        table.add_row(row.label, row.unit,
                      *(row.cells.get(n, "—") for n in (Http.name, Grpc.name, Redis.name)))
    console.print(table)
    console.print("Higher is better except for latency. Redis bus cells: pub/sub / streams. "
                  "Every AetherFS write is an fsynced SQLite commit with an event row; this "
                  "Redis keeps nothing on disk (--save \"\" --appendonly no).")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ops", type=int, default=2000, help="single cache calls per row")
    ap.add_argument("--batch", type=int, default=100, help="keys per batch call")
    ap.add_argument("--batches", type=int, default=50, help="batch calls per row")
    ap.add_argument("--messages", type=int, default=1000, help="bus messages per measurement")
    ap.add_argument("--value-size", type=int, default=100, help="cache value and payload bytes")
    ap.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    args = ap.parse_args()
    if args.quick:
        args.ops, args.batches, args.messages = 300, 10, 200
    console = Console(width=160)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="aether-bench-coord-") as tmp:
        rows = asyncio.run(run(args, Path(tmp)))
    print_table(console, rows, args)
    console.print(h.machine_note(load))


if __name__ == "__main__":
    main()
