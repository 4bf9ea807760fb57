"""Time to first paint of a 50,000-file session in `aether tui`, next to `ls -R | head`.

    python bench/tui.py [--files N] [--runs N]

Sessions made from generated directories through the SDK: "small" (10
files), "nested" (N files, default 50,000, in directories of 1,000) and
"flat" (N files in one directory). For each, the TUI is started headless at
80x24 on the session (`AetherApp(session_id=...)`, real daemon, real HTTP)
and timed from app start to the file tree showing its first rows, median of
N runs. The tree lists a directory only when it is opened, a page of 500
entries at a time (requested and added in batches of 250), so first paint
should not grow with the session. "open dir" is the time from pressing enter
on the biggest directory to its first rows / to its whole first page, "next
page" from selecting its "… more" row to the next page's first rows / all of
them, and "max stall" the longest the UI's event loop was blocked meanwhile
(a 5 ms ticker measures it); "of it CPU" is the most CPU time the loop's
thread used between two ticks, which is the part our code is to blame for
when other processes compete for the CPU. The alternative is
`ls -R DIR | head -n 40` on the same directory: a terminal's first screenful.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import ROOT, machine_note, median, new_daemon
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(ROOT))

from aether.client import Client, source  # noqa: E402
from tui.app import AetherApp  # noqa: E402
from tui.screens.session import SessionScreen  # noqa: E402


def generate(root: Path, files: int, per_dir: int) -> None:
    for i in range(files):
        d = root / f"dir{i // per_dir:03d}" if per_dir < files else root / "all"
        if i % per_dir == 0 or i == 0:
            d.mkdir(parents=True, exist_ok=True)
        (d / f"file{i:06d}.txt").write_text(f"{i}\n")


async def wait(pilot, predicate, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the TUI did not get there in time")
        await asyncio.sleep(0.002)


async def measure(url: str, token: str, session_id: str, big_dir: str) -> dict[str, float]:
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    app = AetherApp(server=url, token=token, session_id=session_id)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait(pilot, lambda: isinstance(app.screen, SessionScreen))
        tree = app.screen.file_tree
        await wait(pilot, lambda: len(tree.root.children) > 0)
        await pilot.pause()  # one refresh: the rows are on screen
        out["first paint"] = (time.perf_counter() - t0) * 1000

        node = next(n for n in tree.root.children if n.data and n.data.path == big_dir)
        stall = cpu_stall = 0.0

        async def ticker() -> None:
            # Wall time between two ticks is what a user waits; the event loop
            # thread's CPU time between them is what our code blocked for (on a
            # busy machine the wall time also counts the time we were not
            # scheduled at all).
            nonlocal stall, cpu_stall
            last, last_cpu = time.perf_counter(), time.thread_time()
            while True:
                await asyncio.sleep(0.005)
                now, cpu = time.perf_counter(), time.thread_time()
                stall = max(stall, now - last - 0.005)
                cpu_stall = max(cpu_stall, cpu - last_cpu)
                last, last_cpu = now, cpu

        gc.collect()  # the garbage of app start is not collected inside the window
        tick = asyncio.create_task(ticker())
        t1 = time.perf_counter()
        tree.move_cursor(node)
        await pilot.press("enter")
        await wait(pilot, lambda: big_dir in tree.loaded_paths)
        await pilot.pause()
        out["open dir"] = (time.perf_counter() - t1) * 1000
        await wait(pilot, lambda: not tree.listing)
        await pilot.pause()
        out["open dir page"] = (time.perf_counter() - t1) * 1000
        out["next page"] = out["next page all"] = 0.0
        more = [n for n in node.children if n.data and n.data.more]
        if more:
            shown = len(node.children)
            t2 = time.perf_counter()
            tree.move_cursor(more[0])
            await pilot.press("enter")
            await wait(pilot, lambda: len(node.children) > shown)
            await pilot.pause()
            out["next page"] = (time.perf_counter() - t2) * 1000
            await wait(pilot, lambda: not tree.listing)
            await pilot.pause()
            out["next page all"] = (time.perf_counter() - t2) * 1000
        out["max stall"] = stall * 1000
        out["max stall cpu"] = cpu_stall * 1000
        out["rows"] = sum(1 for n in node.children if n.data and not n.data.more)
        tick.cancel()
    return out


def ls_head(path: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(f"ls -R {path} | head -n 40", shell=True, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return (time.perf_counter() - t0) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=50_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    load_start = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="aether-bench-tui-") as tmp_s:
        tmp = Path(tmp_s)
        daemon = new_daemon(tmp / "data", [tmp]).start()
        try:
            with Client(daemon.http_url, token=daemon.token) as sdk:
                shapes = (("small", 10, 10, "all"), ("nested", args.files, 1000, "dir000"),
                          ("flat", args.files, args.files, "all"))
                for shape, files, per_dir, big in shapes:
                    src = tmp / shape
                    generate(src, files, per_dir)
                    t0 = time.perf_counter()
                    s = sdk.create_session(source.directory(src), name=f"bench-{shape}")
                    import_s = time.perf_counter() - t0
                    samples = [asyncio.run(measure(daemon.http_url, daemon.token, s.id, big))
                               for _ in range(args.runs)]
                    ls_ms = median([ls_head(src) for _ in range(args.runs)])
                    med = {k: median([x[k] for x in samples]) for k in samples[0]}
                    rows.append((shape, s.file_count, import_s, med, ls_ms))
        finally:
            daemon.stop()

    table = Table(title=f"aether tui: time to first paint, median of {args.runs} runs, ms")
    for col in ("session", "files", "import s", "tui first paint", "ls -R | head",
                "open dir first/page", "next page first/all", "max stall", "of it CPU"):
        table.add_column(col, justify="left" if col == "session" else "right")
    for shape, files, import_s, med, ls_ms in rows:
        table.add_row(shape, f"{files:,}", f"{import_s:.1f}", f"{med['first paint']:.0f}",
                      f"{ls_ms:.0f}", f"{med['open dir']:.0f}/{med['open dir page']:.0f}",
                      f"{med['next page']:.0f}/{med['next page all']:.0f}"
                      if med["next page"] else "-",
                      f"{med['max stall']:.0f}", f"{med['max stall cpu']:.0f}")
    Console(width=120).print(table)
    print("first paint includes starting the Textual app, connecting and reading the "
          "session; open dir and next page are for the biggest directory (a page is "
          "500 rows, listed in batches of 250): to its first rows / to all of them; "
          "max stall is the longest the event loop was blocked meanwhile, and of it CPU "
          "the most CPU time the UI's thread spent between two ticks (what the code "
          "blocked for, without the time other processes took the CPU).")
    print(machine_note(load_start))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
