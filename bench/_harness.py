"""Shared pieces of the benchmark scripts: a throwaway daemon, timing, git, sizes.

Not a benchmark itself. The scripts in this directory import it as `_harness`
(they are run as `python bench/<name>.py`, so this directory is on sys.path).
Nothing here imports from tests/.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import stat
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Daemon:
    """An `aetherd` subprocess on TCP loopback with its own data dir and token."""

    data_dir: Path
    token: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    http_port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    # Host directories the daemon may create sessions from (directory sources).
    # A TCP daemon allows none unless told, so the benchmarks pass a config file.
    import_roots: list[Path] = field(default_factory=list)
    proc: subprocess.Popen | None = None
    log_path: Path = field(default=Path())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=httpx.Timeout(3600.0, connect=10.0),
        )

    def start(self) -> Daemon:
        self.log_path = self.data_dir.parent / f"aetherd-{self.http_port}.log"
        config = self.data_dir.parent / f"aetherd-{self.http_port}.toml"
        roots = ", ".join(json.dumps(str(Path(r).resolve())) for r in self.import_roots)
        config.write_text(f"[aetherd]\nimport_roots = [{roots}]\n")
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aetherd", "serve", "--config", str(config),
             "--data-dir", str(self.data_dir),
             "--http", f"tcp:127.0.0.1:{self.http_port}",
             "--grpc", f"tcp:127.0.0.1:{self.grpc_port}", "--token", self.token],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
        )
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"aetherd exited early:\n{self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"aetherd did not become healthy:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


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
