"""Shared pieces of the benchmark scripts: a throwaway daemon, timing, git, sizes.

Not a benchmark itself. The scripts in this directory import it as `_harness`
(they are run as `python bench/<name>.py`, so this directory is on sys.path).
Nothing here imports from tests/.
"""

from __future__ import annotations

import os
import shutil
import stat
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from aetherd.testing import DaemonProcess

ROOT = Path(__file__).resolve().parent.parent

# Identity and behaviour for every git command the benchmarks run. gc.auto=0
# keeps a background `git gc --auto` from landing inside a timed command.
GIT = [
    "git",
    "-c", "user.email=bench@aetherfs.invalid",
    "-c", "user.name=AetherFS bench",
    "-c", "init.defaultBranch=main",
    "-c", "gc.auto=0",
    "-c", "commit.gpgsign=false",
    "-c", "core.hooksPath=/dev/null",
]


def new_daemon(data_dir: Path, import_roots: list[Path]) -> DaemonProcess:
    """A real aetherd (not yet started) on loopback that may create sessions from `import_roots`."""
    return DaemonProcess(data_dir, import_roots=[str(Path(r).resolve()) for r in import_roots])


def check(resp: httpx.Response, what: str) -> httpx.Response:
    """Fail loudly (with the daemon's error body) on a non-2xx answer."""
    if resp.status_code >= 300:
        raise RuntimeError(f"{what}: HTTP {resp.status_code}: {resp.text[:500]}")
    return resp


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """(wall-clock milliseconds, result) of one call."""
    t0 = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t0) * 1000.0, out


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def run(cmd: list[str], cwd: Path | None = None, capture: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, check=True,
                          stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                          stderr=subprocess.PIPE)


def git(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return run([*GIT, *args], cwd=cwd)


def tree_stats(root: Path) -> tuple[int, int]:
    """(regular files, bytes) under root; symlinks are not followed nor counted."""
    files = size = 0
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            st = os.lstat(os.path.join(dirpath, name))
            if stat.S_ISREG(st.st_mode):
                files += 1
                size += st.st_size
    return files, size


def disk_usage(root: Path) -> tuple[int, int]:
    """(apparent bytes, allocated bytes) of everything under root, like du -sb / du -s."""
    apparent = allocated = 0
    for dirpath, dirs, names in os.walk(root):
        for name in [*names, *dirs]:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            apparent += st.st_size
            allocated += st.st_blocks * 512
    return apparent, allocated


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def machine_note(load_start: float) -> str:
    """One line on how busy the machine was: other work skews every number."""
    return (f"machine: {os.cpu_count()} CPUs; 1-minute load average {load_start:.2f} at the "
            f"start, {os.getloadavg()[0]:.2f} at the end (this run itself adds about 1; "
            "much more means other work competed)")
