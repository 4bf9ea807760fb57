"""Sustained mixed load on one aetherd: 32 concurrent clients, then a check that nothing was lost.

What is measured
  A fresh `aetherd` (TCP loopback, its own data dir) and --clients concurrent
  clients (asyncio tasks in this process, each with its own HTTP connection,
  httpx.AsyncClient) for --seconds. The clients share --sessions sessions
  (round robin), so writes to one session contend for its lock. Each client
  loops over a weighted random mix:

    file write      PUT .../files/c{n}/f{i}  a new path, If-None-Match: *
    file overwrite  PUT .../files/{own path} with If-Match: the ETag it last got
    file read       GET .../files/{own path} content and ETag must be what it last wrote
    cache put       PUT .../cache/c{n}-k{i}  one of its 32 keys
    cache get       GET .../cache/{own key}  value and version must be what it last put
    cache cas       POST .../cache/counter/compare-and-set  a counter all clients of a
                    session increment (read, then CAS on the version; a lost race
                    is retried, not an error)
    bus publish     POST .../bus:publish on its own topic
    bus read        GET .../bus?topic=c{n}&after=  exactly the messages it published
                    after that cursor, in order

  Weights: --mix (default: 10 write, 15 overwrite, 25 read, 10 cache put,
  15 cache get, 5 cas, 10 publish, 10 bus read). Values are --size random bytes.

  Per operation: count, ops/s over the run, p50 and p99 latency (one request
  each; a CAS is one read plus one CAS call, retries included), errors. An
  error is any failed request, unexpected status or a read that does not
  show the client's own last acknowledged write. Nothing else writes the
  paths, keys and topics a client owns, so every one of those is a real
  fault. The load generator runs on the same machine as the daemon.

  Lost writes, verified after the run: every acknowledged file write's final
  hash (the session manifest), every acknowledged cache key's version and
  value (batch-get), each session's counter against the number of
  acknowledged swaps, and every acknowledged bus message (cursor, topic,
  payload) must be on the daemon, with no message missing from any
  session's bus. Checked on the running daemon, and again after kill -9 and
  a restart: an acknowledged write must survive a crash.

  Exit status 1 on any error or lost write.

Run
  /work/main/.venv/bin/python bench/load.py               # 32 clients, 60 s
  /work/main/.venv/bin/python bench/load.py --quick       # 10 s
  /work/main/.venv/bin/python bench/load.py --clients 64 --seconds 120 --size 4096
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import _harness as h
import blake3
import httpx
from rich.console import Console
from rich.table import Table

from aetherd.testing import DaemonProcess

OPS = ("file write", "file overwrite", "file read", "cache put", "cache get", "cache cas",
       "bus publish", "bus read")
DEFAULT_MIX = "10,15,25,10,15,5,10,10"
KEYS_PER_CLIENT = 32
COUNTER = "counter"
# Per-session bus retention is 10,000 messages (docs/api.md); the run must stay
# under it for "every acknowledged message is still there" to be the test.
BUS_RETENTION = 10_000
PAGE = 1000


class Fault(Exception):
    """A request that failed, or an answer that contradicts an acknowledged write."""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


def etag(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


@dataclass
class Stats:
    latencies_ms: dict[str, list[float]] = field(default_factory=lambda: {op: [] for op in OPS})
    errors: Counter[str] = field(default_factory=Counter)
    messages: list[str] = field(default_factory=list)  # the first few, to show
    cas_retries: int = 0
    cpu: tuple[float, float] = (0.0, 0.0)  # CPU seconds of (the daemon, this load generator)

    def error(self, op: str, what: str) -> None:
        self.errors[op] += 1
        if len(self.messages) < 10:
            self.messages.append(f"{op}: {what}")


@dataclass
class Acked:
    """What the daemon acknowledged to one client: the truth to verify against."""

    files: dict[str, str] = field(default_factory=dict)  # path -> content hash
    contents: dict[str, bytes] = field(default_factory=dict)
    keys: dict[str, tuple[int, bytes]] = field(default_factory=dict)  # key -> (version, value)
    bus: list[tuple[int, bytes]] = field(default_factory=list)  # (cursor, payload), in order
    swaps: int = 0
    read_cursor: int = 0


class LoadClient:
    def __init__(self, n: int, sid: str, http: httpx.AsyncClient, stats: Stats,
                 rng: random.Random, size: int) -> None:
        self.n, self.sid, self.http, self.stats, self.rng, self.size = n, sid, http, stats, rng, size
        self.base = f"/v1/sessions/{sid}"
        self.acked = Acked()
        self.topic = f"c{n}"
        self.written = 0

    def payload(self) -> bytes:
        return self.rng.randbytes(self.size)

    async def call(self, method: str, url: str, expect: int = 200, **kw) -> httpx.Response:
        try:
            resp = await self.http.request(method, self.base + url, **kw)
        except httpx.HTTPError as exc:
            raise Fault(f"{method} {url}: {exc!r}") from None
        if resp.status_code != expect:
            raise Fault(f"{method} {url}: HTTP {resp.status_code} {resp.text[:200]}")
        return resp

    # ---- the operations

    async def file_write(self) -> None:
        path, data = f"c{self.n}/f{self.written:06d}", self.payload()
        self.written += 1
        resp = await self.call("PUT", f"/files/{path}", content=data,
                               headers={"If-None-Match": "*"})
        self._file_acked(path, data, resp)

    async def file_overwrite(self) -> None:
        if not self.acked.files:
            return await self.file_write()
        path, data = self.rng.choice(list(self.acked.files)), self.payload()
        resp = await self.call("PUT", f"/files/{path}", content=data,
                               headers={"If-Match": f'"{self.acked.files[path]}"'})
        self._file_acked(path, data, resp)

    def _file_acked(self, path: str, data: bytes, resp: httpx.Response) -> None:
        got = resp.json()["hash"]
        if got != etag(data) or resp.headers.get("ETag") != f'"{got}"':
            raise Fault(f"write {path}: hash {got}, ETag {resp.headers.get('ETag')}, "
                        f"content hashes to {etag(data)}")
        self.acked.files[path] = got
        self.acked.contents[path] = data

    async def file_read(self) -> None:
        if not self.acked.files:
            return await self.file_write()
        path = self.rng.choice(list(self.acked.files))
        resp = await self.call("GET", f"/files/{path}")
        if resp.content != self.acked.contents[path] or \
                resp.headers.get("ETag") != f'"{self.acked.files[path]}"':
            raise Fault(f"read {path}: not the last acknowledged write")

    async def cache_put(self) -> None:
        key, value = f"c{self.n}-k{self.rng.randrange(KEYS_PER_CLIENT)}", self.payload()
        resp = await self.call("PUT", f"/cache/{key}", json={"value": b64(value)})
        version = int(resp.json()["version"])
        previous = self.acked.keys.get(key, (0, b""))[0]
        if version <= previous:
            raise Fault(f"cache put {key}: version {version} after {previous}")
        self.acked.keys[key] = (version, value)

    async def cache_get(self) -> None:
        if not self.acked.keys:
            return await self.cache_put()
        key = self.rng.choice(list(self.acked.keys))
        entry = (await self.call("GET", f"/cache/{key}")).json()
        version, value = self.acked.keys[key]
        if int(entry["metadata"]["version"]) != version or unb64(entry["value"]) != value:
            raise Fault(f"cache get {key}: not the last acknowledged put")

    async def cache_cas(self) -> None:
        """Increment the session's shared counter: read, then swap on the version."""
        while True:
            resp = await self.http.get(f"{self.base}/cache/{COUNTER}")
            if resp.status_code == 404:
                body = {"expectAbsent": True, "value": b64(b"1")}
            elif resp.status_code == 200:
                entry = resp.json()
                count = int(unb64(entry["value"]))
                body = {"expectedVersion": entry["metadata"]["version"],
                        "value": b64(str(count + 1).encode())}
            else:
                raise Fault(f"GET /cache/{COUNTER}: HTTP {resp.status_code} {resp.text[:200]}")
            result = (await self.call("POST", f"/cache/{COUNTER}/compare-and-set",
                                      json=body)).json()
            if result["swapped"]:
                self.acked.swaps += 1
                return
            self.stats.cas_retries += 1

    async def bus_publish(self) -> None:
        data = self.payload()
        msg = (await self.call("POST", "/bus:publish",
                               json={"topic": self.topic, "payload": b64(data)})).json()
        cursor = int(msg["cursor"])
        if self.acked.bus and cursor <= self.acked.bus[-1][0]:
            raise Fault(f"publish: cursor {cursor} after {self.acked.bus[-1][0]}")
        self.acked.bus.append((cursor, data))

    async def bus_read(self) -> None:
        after = self.acked.read_cursor
        resp = await self.call("GET", "/bus", params={"topic": self.topic, "after": after,
                                                      "limit": 100})
        got = [(int(m["cursor"]), unb64(m["payload"])) for m in resp.json()["messages"]]
        want = [m for m in self.acked.bus if m[0] > after][:100]
        if got != want:
            raise Fault(f"bus read after {after}: {len(got)} messages, wanted {len(want)} "
                        "(its own, in order)")
        if got:
            self.acked.read_cursor = got[-1][0]

    async def run(self, until: float, weights: list[int]) -> None:
        ops = [self.file_write, self.file_overwrite, self.file_read, self.cache_put,
               self.cache_get, self.cache_cas, self.bus_publish, self.bus_read]
        while time.monotonic() < until:
            i = self.rng.choices(range(len(OPS)), weights)[0]
            t0 = time.perf_counter()
            try:
                await ops[i]()
            except Exception as exc:  # every failure is counted, and the run goes on
                self.stats.error(OPS[i], str(exc) if isinstance(exc, Fault) else repr(exc))
                continue
            self.stats.latencies_ms[OPS[i]].append((time.perf_counter() - t0) * 1000)


# ---- verification


@dataclass
class Check:
    what: str
    acked: int
    found: int
    notes: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return self.acked - self.found


async def verify(http: httpx.AsyncClient, sessions: list[str],
                 clients: list[LoadClient]) -> list[Check]:
    files = Check("file writes (final hash per path)", 0, 0)
    keys = Check("cache puts (final version and value per key)", 0, 0)
    counters = Check("cache CAS increments (counter value)", 0, 0)
    bus = Check("bus messages (cursor, topic, payload)", 0, 0)
    for sid in sessions:
        mine = [c for c in clients if c.sid == sid]
        base = f"/v1/sessions/{sid}"
        manifest: dict[str, str] = {}
        token = ""
        while True:
            page = h.check(await http.get(f"{base}/manifest", params={
                "page_size": PAGE, "page_token": token}), "manifest").json()
            manifest.update({e["path"]: e["hash"] for e in page["entries"]})
            if not (token := page["nextPageToken"]):
                break
        for c in mine:
            for path, hash_ in c.acked.files.items():
                files.acked += 1
                if manifest.get(path) == hash_:
                    files.found += 1
                elif len(files.notes) < 5:
                    files.notes.append(f"{sid} {path}: {manifest.get(path)} != {hash_}")

        owned = {k: v for c in mine for k, v in c.acked.keys.items()}
        for i in range(0, len(owned), PAGE):
            batch = list(owned)[i:i + PAGE]
            got = h.check(await http.post(f"{base}/cache/batch-get", json={"keys": batch}),
                          "batch-get").json()
            entries = {e["metadata"]["key"]: e for e in got["entries"]}
            for key in batch:
                keys.acked += 1
                e, (version, value) = entries.get(key), owned[key]
                if e and int(e["metadata"]["version"]) == version and unb64(e["value"]) == value:
                    keys.found += 1
                elif len(keys.notes) < 5:
                    keys.notes.append(f"{sid} {key}: not version {version}")

        swaps = sum(c.acked.swaps for c in mine)
        counters.acked += swaps
        resp = await http.get(f"{base}/cache/{COUNTER}")
        count = int(unb64(resp.json()["value"])) if resp.status_code == 200 else 0
        # A swap whose answer was lost counts on the daemon but not here: more is not a loss.
        counters.found += min(count, swaps)
        if count != swaps:
            counters.notes.append(f"{sid}: counter {count}, acknowledged swaps {swaps}")

        on_daemon: dict[int, tuple[str, bytes]] = {}
        after = 0
        while True:
            page = h.check(await http.get(f"{base}/bus", params={"after": after, "limit": PAGE}),
                           "bus").json()
            for m in page["messages"]:
                on_daemon[int(m["cursor"])] = (m["topic"], unb64(m["payload"]))
            if not page["messages"]:
                break
            after = int(page["messages"][-1]["cursor"])
        # Retention may have dropped the oldest on purpose; only those newer are owed.
        oldest_kept = max(on_daemon, default=0) - BUS_RETENTION
        for c in mine:
            for cursor, payload in c.acked.bus:
                if cursor <= oldest_kept:
                    continue
                bus.acked += 1
                if on_daemon.get(cursor) == (c.topic, payload):
                    bus.found += 1
                elif len(bus.notes) < 5:
                    bus.notes.append(f"{sid} cursor {cursor} of {c.topic}: missing or different")
        if on_daemon and sorted(on_daemon) != list(range(max(1, oldest_kept + 1),
                                                         max(on_daemon) + 1)):
            bus.notes.append(f"{sid}: gaps in the bus cursors")
    return [files, keys, counters, bus]


# ---- the run


@dataclass
class Result:
    seconds: float
    stats: Stats
    live: list[Check]
    after_crash: list[Check]
    setup: str


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load(daemon: DaemonProcess, args: argparse.Namespace,
               weights: list[int]) -> tuple[Stats, float, list[LoadClient], list[str]]:
    async with httpx.AsyncClient(base_url=daemon.http_url, headers=daemon.headers,
                                 timeout=60) as admin:
        sessions = [h.check(await admin.post("/v1/sessions", json={"name": f"load-{i}"}),
                            "create session").json()["id"] for i in range(args.sessions)]
    stats = Stats()
    rng = random.Random(args.seed)
    https = [httpx.AsyncClient(base_url=daemon.http_url, headers=daemon.headers,
                               timeout=httpx.Timeout(60, connect=10),
                               limits=httpx.Limits(max_connections=1))
             for _ in range(args.clients)]
    clients = [LoadClient(n, sessions[n % len(sessions)], https[n], stats,
                          random.Random(rng.random()), args.size) for n in range(args.clients)]
    assert daemon.proc is not None
    try:
        t0, cpu0, own0 = time.monotonic(), cpu_seconds(daemon.proc.pid), time.process_time()
        until = t0 + args.seconds
        await asyncio.gather(*(c.run(until, weights) for c in clients))
        elapsed = time.monotonic() - t0
        stats.cpu = (cpu_seconds(daemon.proc.pid) - cpu0, time.process_time() - own0)
    finally:
        for client in https:
            await client.aclose()
    return stats, elapsed, clients, sessions


async def checked(daemon: DaemonProcess, sessions: list[str],
                  clients: list[LoadClient]) -> list[Check]:
    async with httpx.AsyncClient(base_url=daemon.http_url, headers=daemon.headers,
                                 timeout=120) as http:
        return await verify(http, sessions, clients)


def run(args: argparse.Namespace, work: Path, weights: list[int]) -> Result:
    daemon = h.new_daemon(work / "data", []).start()
    try:
        stats, elapsed, clients, sessions = asyncio.run(load(daemon, args, weights))
        live = asyncio.run(checked(daemon, sessions, clients))
        daemon.kill()
        # Same data dir and ports: what a supervisor restarting it after a crash does.
        daemon.start()
        after_crash = asyncio.run(checked(daemon, sessions, clients))
    finally:
        daemon.stop()
    setup = (f"{args.clients} clients, {len(sessions)} sessions, {args.size}-byte values, "
             f"{elapsed:.1f} s, mix {args.mix}")
    return Result(elapsed, stats, live, after_crash, setup)


def pct(samples: list[float], p: int) -> str:
    if len(samples) < 2:
        return f"{samples[0]:.1f}" if samples else "—"
    return f"{statistics.quantiles(samples, n=100, method='inclusive')[p - 1]:.1f}"


def print_tables(console: Console, r: Result) -> bool:
    table = Table(title=f"Mixed load on one aetherd over HTTP — {r.setup}")
    table.add_column("operation")
    for col in ("ops", "ops/s", "p50 ms", "p99 ms", "errors"):
        table.add_column(col, justify="right")
    everything: list[float] = []
    for op in OPS:
        samples = r.stats.latencies_ms[op]
        everything += samples
        table.add_row(op, f"{len(samples):,}", f"{len(samples) / r.seconds:,.0f}",
                      pct(samples, 50), pct(samples, 99), str(r.stats.errors[op]))
    table.add_section()
    errors = sum(r.stats.errors.values())
    table.add_row("all", f"{len(everything):,}", f"{len(everything) / r.seconds:,.0f}",
                  pct(everything, 50), pct(everything, 99), str(errors))
    console.print(table)
    daemon_cpu, own_cpu = r.stats.cpu
    console.print(f"cache cas: {r.stats.cas_retries:,} lost races retried (not errors). "
                  f"CPU over the run: aetherd {daemon_cpu:.1f} s ({daemon_cpu / r.seconds:.0%} of a "
                  f"core), load generator {own_cpu:.1f} s ({own_cpu / r.seconds:.0%}), "
                  f"{os.cpu_count()} cores shared")
    for message in r.stats.messages:
        console.print(f"  error: {message}")

    verification = Table(title="Lost writes: acknowledged vs found on the daemon")
    verification.add_column("what")
    for col in ("acknowledged", "found (live)", "lost (live)", "found (after kill -9)",
                "lost (after kill -9)"):
        verification.add_column(col, justify="right")
    lost = 0
    for live, crash in zip(r.live, r.after_crash, strict=True):
        lost += live.lost + crash.lost + len(live.notes) + len(crash.notes)
        verification.add_row(live.what, f"{live.acked:,}", f"{live.found:,}", str(live.lost),
                             f"{crash.found:,}", str(crash.lost))
    console.print(verification)
    for check in (*r.live, *r.after_crash):
        for note in check.notes:
            console.print(f"  {check.what}: {note}")
    ok = errors == 0 and lost == 0
    console.print(f"Target: zero errors, zero lost writes -> {'HOLDS' if ok else 'FAILS'} "
                  f"({errors} errors, {lost} lost or inconsistent)")
    return ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=32, help="concurrent clients")
    ap.add_argument("--seconds", type=float, default=60, help="how long the load runs")
    ap.add_argument("--sessions", type=int, default=8, help="sessions the clients share")
    ap.add_argument("--size", type=int, default=1024, help="bytes per file, value and payload")
    ap.add_argument("--mix", default=DEFAULT_MIX, help=f"weights of {', '.join(OPS)}")
    ap.add_argument("--seed", type=int, default=1, help="of the random mix and contents")
    ap.add_argument("--quick", action="store_true", help="10 s, for a smoke run")
    args = ap.parse_args()
    if args.quick:
        args.seconds = 10
    weights = [int(w) for w in args.mix.split(",")]
    if len(weights) != len(OPS) or sum(weights) <= 0 or min(weights) < 0:
        ap.error(f"--mix needs {len(OPS)} non-negative weights")
    console = Console(width=160)
    load_avg = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="aether-bench-load-") as tmp:
        result = run(args, Path(tmp), weights)
    ok = print_tables(console, result)
    console.print(h.machine_note(load_avg))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
