"""Fork, checkpoint, restore and diff through the AetherFS HTTP API vs cp -a and git.

What is measured
  For each size (default 1k, 10k and 100k files) a deterministic source tree is
  generated under a temporary directory: src/pkgNNN/subN/ leaf directories of
  100 files each (.py/.md/.json/.txt text, 200 B to ~4 KiB). A fresh `aetherd`
  (TCP loopback, its own data dir) gets a session created from that directory
  (directory source). A copy of the tree is made into a git repository and
  committed once (untimed). Then, on the same tree in the same run:

    checkpoint  10 files changed with PUT (untimed), then POST .../checkpoints
                (timed)               vs  the same 10 edits, then
                                          `git add -A` + `git commit` (timed)
    diff        10 files changed (untimed) since the last checkpoint, then
                GET .../diff?from=<checkpoint> (timed, unified text included)
                                      vs  the same 10 edits, then
                                          `git diff HEAD` (timed)
    fork        10 files changed with PUT (untimed), then POST .../{id}:fork
                (timed)               vs  `cp -a` of the source directory and
                                          `git worktree add --detach` of the
                                          repository
    restore     10 files changed with PUT (untimed), then
                POST .../{id}:restore to the checkpoint (timed)
                                      vs  the same 10 edits, then
                                          `git reset --hard` (timed)

  Every repetition of diff, fork, checkpoint and restore starts from fresh
  edits, because the daemon folds a changed working state (overlay -> trees)
  on the first operation that needs it; timing a repeated call on an
  already-folded state would leave that cost out.

  AetherFS times are the client-side wall clock of one HTTP request (httpx on
  a keep-alive connection, until the whole response is read; for diff and
  fork the script's JSON decode of the answer is inside the timing too).
  Alternative times are the wall clock of the subprocess(es), including
  process start-up, which is what a script calling them pays. Each number is
  the median of --reps repetitions; alternatives that are slow stop repeating
  once they have used --budget seconds (at least one sample is always taken).
  Untimed clean-up between repetitions (removing a copy or a worktree) is not
  counted. Each measurement starts with one untimed warm-up run (except the
  slow cp -a and worktree ones), and os.sync() runs untimed before every timed
  run so that earlier work's dirty pages are not flushed inside it. The page
  cache is warm for everybody.

  The target checked at the end (issue 2): fork, checkpoint, restore and diff
  stay flat (at every size, at most 2x the smallest size's time), and each is
  under 20 ms at 100k files.

Run
  /work/main/.venv/bin/python bench/fork_checkpoint.py             # 1k, 10k, 100k
  /work/main/.venv/bin/python bench/fork_checkpoint.py --quick     # 1k, 10k
  /work/main/.venv/bin/python bench/fork_checkpoint.py --sizes 1000,50000 --reps 9
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import _harness as h
import httpx
from rich.console import Console
from rich.table import Table

FILES_PER_DIR = 100
SUBDIRS_PER_PKG = 10
CHANGED = 10
TARGET_MS = 20.0
TARGET_FLAT = 2.0

# ---- the generated tree

_WORDS = ("alpha beta gamma delta session tree blob chunk hash overlay fork checkpoint "
          "restore diff commit export import cache event bus review approval manifest "
          "extent offset length digest root parent child value key index").split()


def _line(rng: random.Random, ext: str) -> str:
    a, b, c = rng.choice(_WORDS), rng.choice(_WORDS), rng.randrange(10_000)
    if ext == ".py":
        return rng.choice((
            f"def {a}_{b}(x, y={c}):\n    return x + y * {c % 97}\n",
            f"    {a} = {b}.get({c!r}, None)  # {rng.choice(_WORDS)}\n",
            f"class {a.title()}{b.title()}:\n    size = {c}\n",
            f"import {a}\n",
        ))
    if ext == ".json":
        return f'  "{a}_{c}": ["{b}", {c % 101}],\n'
    if ext == ".md":
        return f"- The {a} of the {b} is {c}; see [{rng.choice(_WORDS)}](#{a}).\n"
    return f"{a} {b} {c} {rng.choice(_WORDS)} {rng.choice(_WORDS)}\n"


def rel_path(i: int) -> str:
    """The relative path of file number i (deterministic layout)."""
    leaf, n = divmod(i, FILES_PER_DIR)
    pkg, sub = divmod(leaf, SUBDIRS_PER_PKG)
    ext = (".py", ".py", ".md", ".json", ".txt")[n % 5]
    return f"src/pkg{pkg:03d}/sub{sub}/file_{n:03d}{ext}"


def file_content(i: int) -> bytes:
    rng = random.Random(i * 7919 + 17)
    path = rel_path(i)
    ext = path[path.rfind("."):]
    target = int(rng.triangular(200, 4096, 900))
    parts = [f"# {path}\n"]
    size = len(parts[0])
    while size < target:
        line = _line(rng, ext)
        parts.append(line)
        size += len(line)
    return "".join(parts).encode()


def make_tree(root: Path, n: int) -> None:
    made: set[Path] = set()
    for i in range(n):
        p = root / rel_path(i)
        if p.parent not in made:
            p.parent.mkdir(parents=True, exist_ok=True)
            made.add(p.parent)
        p.write_bytes(file_content(i))
    (root / "README.md").write_text(f"# generated tree of {n} files\n")


def changed_indices(n: int) -> list[int]:
    """CHANGED files spread over the whole tree (different directories)."""
    return [(k * n) // CHANGED + 7 for k in range(CHANGED)]


def edited(i: int, tag: str) -> bytes:
    """File i with a line changed in the middle and a line appended."""
    lines = file_content(i).decode().splitlines(keepends=True)
    mid = len(lines) // 2
    lines[mid] = f"# edited ({tag}) {lines[mid]}"
    lines.append(f"# {tag}\n")
    return "".join(lines).encode()


# ---- measuring


def sample(fn: Callable[[], object], reps: int, budget_s: float,
           setup: Callable[[], object] | None = None,
           teardown: Callable[[], object] | None = None,
           warmup: int = 0) -> list[float]:
    """Up to `reps` timed runs of fn (ms), after `warmup` untimed ones.

    Around each run: untimed setup, then os.sync() so that dirty pages left by
    earlier work are not written back inside the timed call, then the timed
    call, then untimed teardown. Stops early once the timed total passes
    budget_s (never before one timed run).
    """
    out: list[float] = []
    spent = 0.0
    for k in range(warmup + reps):
        if setup:
            setup()
        os.sync()
        ms, _ = h.timed(fn)
        if teardown:
            teardown()
        if k < warmup:
            continue
        out.append(ms)
        spent += ms / 1000.0
        if spent > budget_s:
            break
    return out


def _fmt(samples: list[float]) -> str:
    return " ".join(f"{x:.1f}" for x in samples)


@dataclass
class Row:
    op: str
    size: int
    aether_ms: float
    alt: str
    alt_ms: float
    aether_n: int
    alt_n: int


def bench_size(n: int, work: Path, client: httpx.Client, reps: int, budget: float,
               log: Callable[[str], None]) -> tuple[list[Row], dict[str, float]]:
    tree = work / f"tree-{n}"
    repo = work / f"repo-{n}"
    t0 = time.perf_counter()
    make_tree(tree, n)
    log(f"[{n}] generated {n} files in {time.perf_counter() - t0:.1f}s")

    # the session (creation timed once, for information)
    create_ms, resp = h.timed(lambda: h.check(client.post(
        "/v1/sessions", json={"name": f"bench-{n}", "source": {"directory": {"path": str(tree)}}}),
        "create session"))
    session = resp.json()
    sid = session["id"]
    files_in_session = int(session.get("fileCount", 0))
    log(f"[{n}] session {sid} created from directory in {create_ms / 1000:.2f}s "
        f"({files_in_session} files)")
    if files_in_session != n + 1:
        log(f"[{n}] WARNING: session reports {files_in_session} files, expected {n + 1}")
    S = f"/v1/sessions/{quote(sid, safe='')}"

    # the git repository (copy + init + add + commit, untimed except for information)
    h.run(["cp", "-a", str(tree), str(repo)])
    t0 = time.perf_counter()
    h.git(repo, "init", "-q")
    h.git(repo, "add", "-A")
    h.git(repo, "commit", "-q", "-m", "import")
    git_import_ms = (time.perf_counter() - t0) * 1000
    log(f"[{n}] git init+add+commit of the copy in {git_import_ms / 1000:.2f}s")

    idx = changed_indices(n)

    def api_edit(tag: str) -> None:
        for i in idx:
            h.check(client.put(f"{S}/files/{rel_path(i)}", content=edited(i, tag)), "PUT")

    def git_edit(tag: str) -> None:
        for i in idx:
            (repo / rel_path(i)).write_bytes(edited(i, tag))

    # warm the connection and the session's metadata
    for _ in range(3):
        h.check(client.get(S), "get session")

    rows: list[Row] = []

    # -- checkpoint after 10 changes
    ckpt_ids: list[str] = []
    tags = iter(range(10_000))
    last_tag = [""]

    def api_ckpt_setup() -> None:
        last_tag[0] = f"ckpt{next(tags)}"
        api_edit(last_tag[0])

    def api_ckpt() -> None:
        r = h.check(client.post(f"{S}/checkpoints", json={"message": "bench"}), "checkpoint")
        ckpt_ids.append(r.json()["id"])

    a = sample(api_ckpt, reps, budget, setup=api_ckpt_setup, warmup=1)

    def git_commit() -> None:
        h.git(repo, "add", "-A")
        h.git(repo, "commit", "-q", "-m", "bench")

    tags = iter(range(10_000))
    g = sample(git_commit, reps, budget, setup=lambda: git_edit(f"ckpt{next(tags)}"),
               warmup=1)
    log(f"[{n}] checkpoint samples ms: api {_fmt(a)} | git {_fmt(g)}")
    rows.append(Row("checkpoint", n, h.median(a), "git add -A && git commit",
                    h.median(g), len(a), len(g)))
    ckpt = ckpt_ids[-1]
    ckpt_tag = last_tag[0]

    # -- diff of 10 fresh changes against the checkpoint. Each repetition makes
    # its own 10 edits first (untimed): the daemon folds a changed working
    # state when it is read, and that fold is part of what a diff costs.
    counter = iter(range(1_000_000))
    diff_files: list[int] = []

    def api_diff() -> None:
        r = h.check(client.get(f"{S}/diff", params={"from": ckpt}), "diff")
        diff_files.append(len(r.json().get("files", [])))

    a = sample(api_diff, reps, budget, warmup=1,
               setup=lambda: api_edit(f"diff{next(counter)}"))
    if set(diff_files) != {CHANGED}:
        log(f"[{n}] WARNING: diff returned {sorted(set(diff_files))} files, expected {CHANGED}")
    g = sample(lambda: h.git(repo, "diff", "HEAD"), reps, budget, warmup=1,
               setup=lambda: git_edit(f"diff{next(counter)}"))
    git_changed = len(h.git(repo, "diff", "HEAD", "--name-only").stdout.splitlines())
    if git_changed != CHANGED:
        log(f"[{n}] WARNING: git diff shows {git_changed} files, expected {CHANGED}")
    log(f"[{n}] diff samples ms: api {_fmt(a)} | git {_fmt(g)}")
    rows.append(Row("diff", n, h.median(a), "git diff HEAD", h.median(g), len(a), len(g)))

    # -- fork of the session with 10 fresh uncommitted changes (made untimed
    # before each fork, as for diff) vs cp -a / git worktree add
    fork_ids: list[str] = []

    def api_fork() -> None:
        r = h.check(client.post(f"{S}:fork", json={}), "fork")
        fork_ids.append(r.json()["id"])

    a = sample(api_fork, reps, budget, warmup=1,
               setup=lambda: api_edit(f"fork{next(counter)}"))
    if fork_ids:
        forked = h.check(client.get(f"/v1/sessions/{quote(fork_ids[-1], safe='')}"), "get fork")
        if forked.json().get("rootHash") != h.check(client.get(S), "get").json().get("rootHash"):
            log(f"[{n}] WARNING: the fork's root hash differs from its parent's")
    copy_dst = work / f"copy-{n}"
    g = sample(lambda: h.run(["cp", "-a", str(tree), str(copy_dst)]), reps, budget,
               teardown=lambda: h.rmtree(copy_dst))
    log(f"[{n}] fork samples ms: api {_fmt(a)} | cp -a {_fmt(g)}")
    rows.append(Row("fork", n, h.median(a), "cp -a", h.median(g), len(a), len(g)))
    wt = work / f"worktree-{n}"

    def wt_remove() -> None:
        h.rmtree(wt)
        h.git(repo, "worktree", "prune")

    g = sample(lambda: h.git(repo, "worktree", "add", "-q", "--detach", str(wt)), reps, budget,
               teardown=wt_remove)
    log(f"[{n}] git worktree add samples ms: {_fmt(g)}")
    rows.append(Row("fork", n, h.median(a), "git worktree add", h.median(g), len(a), len(g)))

    # -- restore to the checkpoint, with 10 changes to undo each time
    first = [True]

    def api_undo_setup() -> None:
        if not first[0]:  # the first time, the "work" edits are still there
            api_edit(f"restore{time.perf_counter_ns()}")
        first[0] = False

    a = sample(lambda: h.check(client.post(f"{S}:restore", json={"checkpointId": ckpt}),
                               "restore"), reps, budget, setup=api_undo_setup, warmup=1)
    # the restore must really have undone the changes
    got = client.get(f"{S}/files/{rel_path(idx[0])}").content
    if got != edited(idx[0], ckpt_tag):
        log(f"[{n}] WARNING: after restore, {rel_path(idx[0])} is not the checkpoint's content")
    left = h.check(client.get(f"{S}/diff", params={"from": ckpt, "nameOnly": "true"}),
                   "diff").json().get("files", [])
    if left:
        log(f"[{n}] WARNING: after restore, {len(left)} files still differ from the checkpoint")
    first = [True]

    def git_undo_setup() -> None:
        if not first[0]:
            git_edit(f"restore{time.perf_counter_ns()}")
        first[0] = False

    g = sample(lambda: h.git(repo, "reset", "-q", "--hard"), reps, budget,
               setup=git_undo_setup, warmup=1)
    log(f"[{n}] restore samples ms: api {_fmt(a)} | git {_fmt(g)}")
    rows.append(Row("restore", n, h.median(a), "git reset --hard", h.median(g), len(a), len(g)))

    rows.append(Row("create (import)", n, create_ms, "git init+add+commit", git_import_ms, 1, 1))

    # free disk for the next size (the session data stays in the daemon)
    h.rmtree(repo)
    h.rmtree(tree)
    return rows, {"create_ms": create_ms}


# ---- reporting


def fmt_ms(ms: float) -> str:
    return f"{ms:,.1f}" if ms < 1000 else f"{ms:,.0f}"


def print_table(console: Console, rows: list[Row], reps: int) -> None:
    order = ["fork", "checkpoint", "restore", "diff", "create (import)"]
    table = Table(title=f"AetherFS (HTTP API) vs cp -a / git — median of up to {reps} runs, ms",
                  title_justify="left")
    table.add_column("operation")
    table.add_column("files", justify="right")
    table.add_column("AetherFS ms", justify="right")
    table.add_column("alternative")
    table.add_column("alt ms", justify="right")
    table.add_column("ratio alt/AetherFS", justify="right")
    rows = sorted(rows, key=lambda r: (order.index(r.op), r.size))
    prev = None
    for r in rows:
        if prev is not None and r.op != prev:
            table.add_section()
        prev = r.op
        ratio = r.alt_ms / r.aether_ms if r.aether_ms > 0 else float("inf")
        table.add_row(r.op, f"{r.size:,}", fmt_ms(r.aether_ms), r.alt, fmt_ms(r.alt_ms),
                      f"{ratio:,.2f}x")
    console.print(table)
    console.print("ratio > 1: AetherFS is faster. 'create (import)' is one sample each, "
                  "for information.")


def print_target(console: Console, rows: list[Row], sizes: list[int]) -> bool:
    """Flat: at every size the time is at most TARGET_FLAT x the smallest size's.
    Fast: under TARGET_MS at 100k files (when that size was run)."""
    small, large = min(sizes), max(sizes)
    ok_all = True
    console.print(f"\nTarget: fork/checkpoint/restore/diff flat within {TARGET_FLAT:g}x from "
                  f"{small:,} to {large:,} files (every size <= {TARGET_FLAT:g} x the "
                  f"{small:,}-file time), each < {TARGET_MS:g} ms at 100,000 files")
    for op in ("fork", "checkpoint", "restore", "diff"):
        by = {r.size: r.aether_ms for r in rows if r.op == op}
        growth = max(by.values()) / by[small] if by[small] > 0 else float("inf")
        flat = growth <= TARGET_FLAT
        if 100_000 in by:
            fast = by[100_000] < TARGET_MS
            fast_s = f"{by[100_000]:.1f} ms at 100k {'<' if fast else '>='} {TARGET_MS:g} ms"
        else:
            fast = True
            fast_s = f"(100k not run; {by[large]:.1f} ms at {large:,})"
        ok = flat and fast
        ok_all &= ok
        series = " -> ".join(f"{by[s]:.1f}" for s in sorted(by))
        console.print(f"  {op:<10} {'PASS' if ok else 'FAIL'}  ms by size: {series}  "
                      f"(max/smallest {growth:.2f}x: {'flat' if flat else 'NOT flat'});  "
                      f"{fast_s}")
    if 100_000 not in sizes:
        console.print("  (the < 20 ms check needs the 100k size; run without --quick)")
    console.print(f"Target {'HOLDS' if ok_all else 'DOES NOT HOLD'}")
    return ok_all


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="See the module docstring for the method.")
    ap.add_argument("--sizes", default="1000,10000,100000",
                    help="comma-separated file counts (default 1000,10000,100000)")
    ap.add_argument("--quick", action="store_true", help="sizes 1000,10000 only")
    ap.add_argument("--reps", type=int, default=9, help="repetitions per measurement (median)")
    ap.add_argument("--budget", type=float, default=15.0,
                    help="seconds of timed work after which a measurement stops repeating")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (prints its path)")
    args = ap.parse_args(argv)
    sizes = [1000, 10000] if args.quick else [int(s) for s in args.sizes.split(",") if s.strip()]
    if any(s < CHANGED * 2 for s in sizes):
        ap.error(f"sizes must be at least {CHANGED * 2}")

    console = Console() if sys.stdout.isatty() else Console(width=160)
    err = Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=200)
    work = Path(tempfile.mkdtemp(prefix="aether-bench-fork-"))
    daemon = h.new_daemon(work / "data", [work])
    rows: list[Row] = []
    load_start = os.getloadavg()[0]
    try:
        daemon.start()
        err.print(f"aetherd on {daemon.http_url}, data in {daemon.data_dir}, log {daemon.log_path}")
        with daemon.http(timeout=3600) as client:
            for n in sizes:
                size_rows, _ = bench_size(n, work, client, args.reps, args.budget,
                                          lambda m: err.print(m, highlight=False, markup=False))
                rows.extend(size_rows)
        print_table(console, rows, args.reps)
        print_target(console, rows, sizes)
        console.print(h.machine_note(load_start))
        return 0
    finally:
        daemon.stop()
        if args.keep:
            err.print(f"kept {work}")
        else:
            h.rmtree(work)


if __name__ == "__main__":
    sys.exit(main())
