"""Batched filesystem changes (fs:apply) against one request per change.

    python bench/apply.py [--files N] [--size BYTES] [--runs R]

What is measured
  A fresh `aetherd` (TCP loopback, its own data dir, durable commits as
  always: synchronous=FULL) and one HTTP/1.1 keep-alive connection (httpx).
  For N small files (default 1,000 files of 100 random bytes, in 10
  directories made beforehand), each way of writing them into a fresh
  session, then of deleting them all:

    single          one PUT .../files/{path} (or DELETE) per file: one request,
                    one write transaction and one fsynced commit each
    apply, 100      POST .../fs:apply with 100 ops per request
    apply, N        POST .../fs:apply with every op in one request

  and, for reference, one batch of N writes into a session whose policy has
  a max_files quota (each write then recounts the working state, as a single
  write does). Wall-clock time from the first request to the last answer,
  median of R runs (each on new sessions), reported per change; the speed-up
  is against the single requests. Every answer is checked: a failed op fails
  the run.
"""

from __future__ import annotations

import argparse
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


def new_session(http: httpx.Client, **policy: str) -> str:
    body = {"name": "bench-apply", **({"policy": policy} if policy else {})}
    sid = check(http.post("/v1/sessions", json=body), "create session").json()["id"]
    ops = [{"mkdir": {"path": f"d{i}"}} for i in range(DIRS)]
    apply(http, sid, ops)
    return sid


def paths(n: int) -> list[str]:
    return [f"d{i % DIRS}/f{i:05}.txt" for i in range(n)]


def apply(http: httpx.Client, sid: str, ops: list[dict]) -> None:
    got = check(http.post(f"/v1/sessions/{sid}/fs:apply", json={"ops": ops}),
                "fs:apply").json()["results"]
    failed = [r["error"] for r in got if r["error"] is not None]
    if len(got) != len(ops) or failed:
        raise RuntimeError(f"fs:apply: {len(failed)} of {len(ops)} ops failed: {failed[:3]}")


def singles_write(http: httpx.Client, sid: str, files: dict[str, bytes]) -> None:
    for path, data in files.items():
        check(http.put(f"/v1/sessions/{sid}/files/{path}", content=data), "PUT")


def singles_delete(http: httpx.Client, sid: str, files: dict[str, bytes]) -> None:
    for path in files:
        check(http.delete(f"/v1/sessions/{sid}/files/{path}"), "DELETE")


def batched(size: int, make: Callable[[str, bytes], dict]) -> Callable[..., None]:
    def run(http: httpx.Client, sid: str, files: dict[str, bytes]) -> None:
        items = list(files.items())
        for i in range(0, len(items), size):
            apply(http, sid, [make(p, d) for p, d in items[i : i + size]])
    return run


def write_op(path: str, data: bytes) -> dict:
    return {"write": {"path": path, "data": base64.b64encode(data).decode("ascii")}}


def delete_op(path: str, _data: bytes) -> dict:
    return {"delete": {"path": path}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    n = args.files
    load_start = os.getloadavg()[0]
    ways = [
        (f"{n:,} single PUT / DELETE", singles_write, singles_delete, {}),
        ("fs:apply, batches of 100", batched(100, write_op), batched(100, delete_op), {}),
        (f"fs:apply, one batch of {n:,}", batched(n, write_op), batched(n, delete_op), {}),
        (f"fs:apply, one batch of {n:,}, max_files quota", batched(n, write_op),
         batched(n, delete_op), {"maxFiles": str(10 * n)}),
    ]
    write_ms: dict[str, list[float]] = {w[0]: [] for w in ways}
    delete_ms: dict[str, list[float]] = {w[0]: [] for w in ways}

    with tempfile.TemporaryDirectory(prefix="aether-bench-apply-") as tmp_s:
        daemon = new_daemon(Path(tmp_s) / "data", []).start()
        try:
            with daemon.http(timeout=600) as http:
                for _run in range(args.runs):
                    for name, write, delete, policy in ways:  # in turn: a slow spell hits all
                        files = {p: os.urandom(args.size) for p in paths(n)}
                        sid = new_session(http, **policy)
                        write_ms[name].append(timed(partial(write, http, sid, files))[0])
                        manifest = check(http.get(f"/v1/sessions/{sid}/manifest",
                                                  params={"page_size": 10_000}), "manifest")
                        got = sum(1 for e in manifest.json()["entries"]
                                  if e["kind"] == "ENTRY_KIND_FILE")
                        if got != n:
                            raise RuntimeError(f"{name}: {got} files after the writes, not {n}")
                        delete_ms[name].append(timed(partial(delete, http, sid, files))[0])
        finally:
            daemon.stop()

    table = Table(title=f"{n:,} files of {args.size} B: ms per file, median of {args.runs} runs")
    table.add_column("way")
    table.add_column("write ms/file", justify="right")
    table.add_column("speed-up", justify="right")
    table.add_column("delete ms/file", justify="right")
    table.add_column("speed-up", justify="right")
    base_w = median(write_ms[ways[0][0]]) / n
    base_d = median(delete_ms[ways[0][0]]) / n
    for name, *_ in ways:
        w, d = median(write_ms[name]) / n, median(delete_ms[name]) / n
        table.add_row(name, f"{w:.3f}", f"{base_w / w:.1f}x", f"{d:.3f}", f"{base_d / d:.1f}x")
    Console(width=120).print(table)
    print(machine_note(load_start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
