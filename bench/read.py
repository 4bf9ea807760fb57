"""Batched file reads (fs:read) against one request per file.

    python bench/read.py [--files N] [--size BYTES] [--runs R]

What is measured
  A fresh `aetherd` (TCP loopback, its own data dir) and one HTTP/1.1
  keep-alive connection (httpx). One session holds N small files (default
  1,000 files of 1 KiB of random bytes, in 10 directories), written with
  fs:apply beforehand; the daemon's caches are warm after the first run.
  Each way reads all N back:

    single          one GET .../files/{path} per file (what `aether mount`
                    does today for each file a program opens)
    fs:read, 100    POST .../fs:read with 100 paths per request (10 requests)
    fs:read, N      POST .../fs:read with every path in one request

  plus, for reference, the same one request through the SDK's
  `AsyncClient.as_json()` (the mount's way: JSON dicts, data decoded from
  base64). Wall-clock time from the first request to the last answer,
  median of R runs, reported per file; the speed-up is against the single
  requests. Every answer is checked against the bytes written.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path

import httpx
from _harness import check, machine_note, median, new_daemon, timed
from rich.console import Console
from rich.table import Table

DIRS = 10


def paths(n: int) -> list[str]:
    return [f"d{i % DIRS}/f{i:05}.txt" for i in range(n)]


def fill(http: httpx.Client, files: dict[str, bytes]) -> str:
    sid = check(http.post("/v1/sessions", json={"name": "bench-read"}),
                "create session").json()["id"]
    items = list(files.items())
    for i in range(0, len(items), 1000):
        ops = [{"write": {"path": p, "data": base64.b64encode(d).decode("ascii"),
                          "createParents": True}} for p, d in items[i : i + 1000]]
        got = check(http.post(f"/v1/sessions/{sid}/fs:apply", json={"ops": ops}),
                    "fs:apply").json()["results"]
        if any(r["error"] is not None for r in got):
            raise RuntimeError("fs:apply failed while filling the session")
    return sid


def singles(http: httpx.Client, sid: str, files: dict[str, bytes]) -> None:
    for path, data in files.items():
        got = check(http.get(f"/v1/sessions/{sid}/files/{path}"), "GET").content
        if got != data:
            raise RuntimeError(f"GET {path}: wrong bytes")


def verify(files: dict[str, bytes], asked: list[str], answer: list[dict]) -> None:
    if len(answer) != len(asked):
        raise RuntimeError(f"fs:read: {len(answer)} entries for {len(asked)} paths")
    for path, e in zip(asked, answer, strict=True):
        if e["error"] is not None or e["truncated"]:
            raise RuntimeError(f"fs:read {path}: {e['error'] or 'truncated'}")
        if base64.b64decode(e["data"]) != files[path]:
            raise RuntimeError(f"fs:read {path}: wrong bytes")


def batched(size: int) -> Callable[..., None]:
    def run(http: httpx.Client, sid: str, files: dict[str, bytes]) -> None:
        asked = list(files)
        for i in range(0, len(asked), size):
            part = asked[i : i + size]
            answer = check(http.post(f"/v1/sessions/{sid}/fs:read", json={"paths": part}),
                           "fs:read").json()["files"]
            verify(files, part, answer)
    return run


def sdk_async_json(url: str, token: str) -> Callable[..., None]:
    from aether.client import AsyncClient

    def run(_http: httpx.Client, sid: str, files: dict[str, bytes]) -> None:
        async def go() -> None:
            async with AsyncClient(url, token=token) as ac:
                asked = list(files)
                answer = await ac.as_json().read_files(sid, asked)
                verify(files, asked, answer["files"])
        asyncio.run(go())
    return run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    n = args.files
    load_start = os.getloadavg()[0]

    with tempfile.TemporaryDirectory(prefix="aether-bench-read-") as tmp_s:
        daemon = new_daemon(Path(tmp_s) / "data", []).start()
        try:
            ways: list[tuple[str, Callable[..., None]]] = [
                (f"{n:,} single GET", singles),
                (f"fs:read, {n // 100:,} requests of 100 paths", batched(100)),
                (f"fs:read, one request of {n:,}", batched(n)),
                (f"fs:read, one request of {n:,} (AsyncClient.as_json)",
                 sdk_async_json(daemon.http_url, daemon.token)),
            ]
            ms: dict[str, list[float]] = {name: [] for name, _ in ways}
            with daemon.http(timeout=600) as http:
                files = {p: os.urandom(args.size) for p in paths(n)}
                sid = fill(http, files)
                for _run in range(args.runs):
                    for name, way in ways:  # in turn: a slow spell hits all
                        ms[name].append(timed(partial(way, http, sid, files))[0])
        finally:
            daemon.stop()

    table = Table(title=f"reading {n:,} files of {args.size:,} B: ms per file, "
                        f"median of {args.runs} runs")
    table.add_column("way")
    table.add_column("total ms", justify="right")
    table.add_column("ms/file", justify="right")
    table.add_column("speed-up", justify="right")
    base = median(ms[ways[0][0]])
    for name, _ in ways:
        total = median(ms[name])
        table.add_row(name, f"{total:.1f}", f"{total / n:.3f}", f"{base / total:.1f}x")
    Console(width=120).print(table)
    print(machine_note(load_start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
