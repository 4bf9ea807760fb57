"""Importing a real source tree: AetherFS directory source vs git init + add + commit.

What is measured
  The tree (default: this project's venv site-packages; --tree to choose) is
  first copied with `cp -a` into a temporary directory (untimed), so that git's
  .git never lands in the source and both sides read a warm page cache.

    AetherFS  a fresh `aetherd` (TCP loopback, empty data dir) is started;
              the timed part is one POST /v1/sessions with
              {"source": {"directory": {"path": TREE}}}, wall clock on the
              client side, until the session is returned.
    git       on the copy: `git init`, `git add -A`, `git commit`, each a
              subprocess; the timed part is all three back to back.

  os.sync() runs (untimed) before each timed part, so neither side pays for
  the other's dirty pages. With --reps N each repetition uses a fresh daemon
  and data dir and a fresh .git (so AetherFS's dedup never sees the tree
  twice); the table shows the median.

  Sizes: data-dir size is everything under the daemon's data dir after the
  import, and .git size everything under .git after the commit, measured after
  the daemon has stopped (SQLite WAL checkpointed) and git has finished; both
  as allocated bytes on disk (du) and apparent bytes (du -b).

  A session's file count and git's `ls-files` count are checked against the
  regular files in the tree (symlinks are imported by both, counted apart).

Run
  /work/main/.venv/bin/python bench/import.py
  /work/main/.venv/bin/python bench/import.py --tree /usr/lib/python3/dist-packages --reps 3
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import _harness as h
from rich.console import Console
from rich.table import Table

DEFAULT_TREE = h.ROOT / ".venv" / "lib" / "python3.11" / "site-packages"


def count_symlinks(root: Path) -> int:
    n = 0
    for dirpath, dirs, names in os.walk(root):
        for name in [*names, *dirs]:
            if os.path.islink(os.path.join(dirpath, name)):
                n += 1
    return n


def one_rep(tree: Path, work: Path, rep: int, log) -> dict[str, float | int]:
    rep_dir = work / f"rep{rep}"
    rep_dir.mkdir()
    copy = rep_dir / "copy"
    h.run(["cp", "-a", str(tree), str(copy)])  # untimed; warms the page cache too

    # -- AetherFS
    daemon = h.new_daemon(rep_dir / "data", [tree])
    try:
        daemon.start()
        with daemon.http(timeout=3600) as client:
            h.check(client.get("/v1/health"), "health")
            os.sync()
            ms, resp = h.timed(lambda: h.check(client.post(
                "/v1/sessions",
                json={"name": "import-bench", "source": {"directory": {"path": str(tree)}}}),
                "create session"))
            session = resp.json()
    finally:
        daemon.stop()
    aether_s = ms / 1000.0
    log(f"[rep {rep}] AetherFS import {aether_s:.2f}s: session {session.get('id')} "
        f"{session.get('fileCount')} files, {session.get('totalBytes')} bytes")
    data_apparent, data_alloc = h.disk_usage(daemon.data_dir)

    # -- git, on the same copy (the daemon only read it)
    os.sync()
    t0 = time.perf_counter()
    h.git(copy, "init", "-q")
    h.git(copy, "add", "-A")
    h.git(copy, "commit", "-q", "-m", "import")
    git_s = time.perf_counter() - t0
    git_files = len(h.git(copy, "ls-files", "-z").stdout.split(b"\0")) - 1
    log(f"[rep {rep}] git init+add+commit {git_s:.2f}s: {git_files} paths in the index")
    git_apparent, git_alloc = h.disk_usage(copy / ".git")
    log(f"[rep {rep}] data dir {data_alloc} bytes on disk ({data_apparent} apparent); "
        f".git {git_alloc} bytes on disk ({git_apparent} apparent)")
    h.rmtree(rep_dir)
    return {
        "aether_s": aether_s, "git_s": git_s,
        "session_files": int(session.get("fileCount", 0)),
        "session_bytes": int(session.get("totalBytes", 0)),
        "git_files": git_files,
        "data_apparent": data_apparent, "data_alloc": data_alloc,
        "git_apparent": git_apparent, "git_alloc": git_alloc,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="See the module docstring for the method.")
    ap.add_argument("--tree", type=Path, default=DEFAULT_TREE,
                    help=f"directory to import (default {DEFAULT_TREE})")
    ap.add_argument("--reps", type=int, default=1,
                    help="repetitions, each on a fresh daemon and a fresh .git (median)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (prints its path)")
    args = ap.parse_args(argv)
    tree = args.tree.resolve()
    if not tree.is_dir():
        ap.error(f"not a directory: {tree}")

    console = Console() if sys.stdout.isatty() else Console(width=160)
    err = Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=200)
    files, size = h.tree_stats(tree)
    links = count_symlinks(tree)
    err.print(f"tree {tree}: {files} files, {size} bytes, {links} symlinks", highlight=False)

    load_start = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="aether-bench-import-"))
    results = []
    try:
        for rep in range(args.reps):
            results.append(one_rep(tree, work, rep, lambda m: err.print(m, highlight=False, markup=False)))
    finally:
        if args.keep:
            err.print(f"kept {work}")
        else:
            h.rmtree(work)

    med = {k: h.median([float(r[k]) for r in results]) for k in results[0]}
    table = Table(title=f"Import of {tree} — AetherFS directory source vs git init+add+commit"
                  f" (median of {args.reps})", title_justify="left")
    for name, just in (("files", "right"), ("bytes", "right"), ("AetherFS s", "right"),
                       ("git s", "right"), ("ratio git/AetherFS", "right"),
                       ("data dir (du)", "right"), (".git (du)", "right"),
                       ("data dir / .git", "right")):
        table.add_column(name, justify=just)
    ratio = med["git_s"] / med["aether_s"] if med["aether_s"] else float("inf")
    table.add_row(
        f"{files:,}", f"{size:,} ({h.human_bytes(size)})", f"{med['aether_s']:.2f}",
        f"{med['git_s']:.2f}", f"{ratio:.2f}x",
        f"{h.human_bytes(med['data_alloc'])} ({h.human_bytes(med['data_apparent'])} apparent)",
        f"{h.human_bytes(med['git_alloc'])} ({h.human_bytes(med['git_apparent'])} apparent)",
        f"{med['data_alloc'] / med['git_alloc']:.2f}x" if med["git_alloc"] else "-",
    )
    console.print(table)
    console.print("ratio > 1: AetherFS is faster. Target (issue 2): AetherFS not slower than git "
                  f"-> {'HOLDS' if ratio >= 1 else 'DOES NOT HOLD'}")
    r0 = results[0]
    console.print(f"checks: tree has {files} regular files + {links} symlinks; session reports "
                  f"{r0['session_files']} files / {r0['session_bytes']:,} bytes; git index has "
                  f"{r0['git_files']} paths")
    if r0["session_files"] != files or r0["session_bytes"] != size:
        console.print("WARNING: the session's file count or byte total differs from the tree's")
    if r0["git_files"] != files + links:
        console.print("WARNING: git's index does not hold every file and symlink of the tree")
    console.print(h.machine_note(load_start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
