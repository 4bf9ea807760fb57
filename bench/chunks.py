"""Large files by chunks: upload only what the daemon lacks, against a plain PUT.

    python bench/chunks.py [--size-mib N] [--runs R]

What is measured
  A fresh `aetherd` (TCP loopback, its own data dir, durable commits as
  always: synchronous=FULL) and the SDK's blocking `Client` (one keep-alive
  connection). For a file of N MiB of random bytes (default 256), each run,
  in a fresh session:

    plain PUT             one PUT .../files/{path} of the whole file (other
                          random content, so nothing is deduplicated)
    chunked, first        write_file_chunked of new content: hash the chunks
                          here, ask which are missing (all), upload them in
                          requests of up to 64 MiB, write by chunks (fs:apply)
    chunked, 4 KiB edit   the same file with 4 KiB changed in its middle,
                          written again with write_file_chunked (If-Match):
                          one chunk moves
    write by chunks only  the fs:apply write alone of a file whose chunks are
                          all present (what the daemon does for a write by
                          chunks: read every chunk back, hash-checked, into
                          the whole-file BLAKE3)

  Wall clock per way, median of R runs; MiB/s is the file's size over that
  time; "moved" is the file content sent (JSON, headers and hashes not
  counted). Every write's hash is checked against the BLAKE3 of the content.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import blake3
from _harness import check, machine_note, median, new_daemon
from rich.console import Console
from rich.table import Table

from aether.client import ChunkedUpload, Client, chunk_hashes

MiB = 1 << 20


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    size = args.size_mib * MiB
    load_start = os.getloadavg()[0]
    ways = ["plain PUT", "chunked, first upload", "chunked, after a 4 KiB edit",
            "write by chunks only (all present)"]
    seconds: dict[str, list[float]] = {w: [] for w in ways}
    moved: dict[str, int] = dict.fromkeys(ways, 0)

    with tempfile.TemporaryDirectory(prefix="aether-bench-chunks-") as tmp_s:
        daemon = new_daemon(Path(tmp_s) / "data", []).start()
        try:
            with Client(daemon.http_url, token=daemon.token, timeout=600) as c, \
                    daemon.http(timeout=600) as http:
                for _run in range(args.runs):
                    sid = c.create_session(name="bench-chunks").id
                    plain, data = os.urandom(size), os.urandom(size)

                    t0 = time.perf_counter()
                    f = c.write_file(sid, "plain.bin", plain)
                    seconds[ways[0]].append(time.perf_counter() - t0)
                    moved[ways[0]] = size
                    _same(f.hash, plain)

                    first = ChunkedUpload()
                    t0 = time.perf_counter()
                    f = c.write_file_chunked(sid, "big.bin", data, report=first)
                    seconds[ways[1]].append(time.perf_counter() - t0)
                    moved[ways[1]] = first.uploaded_bytes
                    _same(f.hash, data)

                    edited = bytearray(data)
                    mid = size // 2
                    edited[mid : mid + 4096] = os.urandom(4096)
                    edited_b = bytes(edited)
                    again = ChunkedUpload()
                    t0 = time.perf_counter()
                    f = c.write_file_chunked(sid, "big.bin", edited_b, if_match=f.hash,
                                             report=again)
                    seconds[ways[2]].append(time.perf_counter() - t0)
                    moved[ways[2]] = again.uploaded_bytes
                    _same(f.hash, edited_b)

                    hashes = chunk_hashes(edited_b)
                    body = {"ops": [{"write": {"path": "again.bin", "chunks": hashes}}],
                            "atomic": True}
                    t0 = time.perf_counter()
                    r = check(http.post(f"/v1/sessions/{sid}/fs:apply", json=body), "fs:apply")
                    seconds[ways[3]].append(time.perf_counter() - t0)
                    _same(r.json()["results"][0]["info"]["hash"], edited_b)
        finally:
            daemon.stop()

    table = Table(title=f"a {args.size_mib} MiB file: median of {args.runs} runs")
    table.add_column("way")
    table.add_column("seconds", justify="right")
    table.add_column("MiB/s", justify="right")
    table.add_column("moved", justify="right")
    for way in ways:
        s = median(seconds[way])
        table.add_row(way, f"{s:.3f}", f"{args.size_mib / s:,.0f}",
                      f"{moved[way] / MiB:,.1f} MiB")
    Console(width=120).print(table)
    print(machine_note(load_start))
    return 0


def _same(got: str, data: bytes) -> None:
    want = blake3.blake3(data, max_threads=blake3.blake3.AUTO).hexdigest()
    if got != want:
        raise RuntimeError(f"the daemon's hash {got} is not the content's {want}")


if __name__ == "__main__":
    sys.exit(main())
