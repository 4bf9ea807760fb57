"""Helpers of the mount tests: run the installed `aether`, track and clean up mounts."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

AETHER = str(Path(sys.executable).with_name("aether"))
LIVE_SECONDS = 1.0  # how soon an API change must show in a mount


def mount_env(daemon, base: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "AETHER_SERVER": daemon.http_url,
        "AETHER_TOKEN": daemon.token,
        "AETHER_DATA_DIR": str(base / "data"),
        "AETHER_MOUNT_STATE_DIR": str(base / "state"),
        "AETHER_MOUNT_CACHE_DIR": str(base / "cache"),
    })
    return env


def run_aether(env: dict[str, str], *args: str, check: bool = True,
               timeout: float = 120) -> subprocess.CompletedProcess:
    r = subprocess.run([AETHER, *args], env=env, capture_output=True, text=True,
                       timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"aether {' '.join(args)} -> {r.returncode}\n"
                             f"stdout: {r.stdout}\nstderr: {r.stderr}")
    return r


def settle(mnt: Path) -> None:
    """Wait until the daemon has every change made through the mount so far:
    an fsync of its root directory is the write-back barrier (journal.py)."""
    fd = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def settled(sdk, *mnts: Path):
    """`sdk`, once the daemon has every change made through these mounts."""
    for mnt in mnts:
        settle(mnt)
    return sdk


def is_mounted(path: Path) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == str(path) for line in f)


@dataclass
class Mounts:
    """Mounts made by a test (or module), all unmounted at the end."""

    env: dict[str, str]
    base: Path
    made: list[Path] = field(default_factory=list)

    def mount(self, session: str, name: str = "mnt", *args: str) -> Path:
        mnt = self.base / name
        mnt.mkdir(exist_ok=True)
        run_aether(self.env, "mount", session, str(mnt), "--log-level", "debug", *args)
        self.made.append(mnt)
        assert is_mounted(mnt)
        return mnt

    def umount(self, mnt: Path, *args: str) -> subprocess.CompletedProcess:
        return run_aether(self.env, "umount", str(mnt), *args)

    def log(self, mnt: Path) -> str:
        from aether.mount import state

        old = os.environ.get("AETHER_MOUNT_STATE_DIR")
        os.environ["AETHER_MOUNT_STATE_DIR"] = self.env["AETHER_MOUNT_STATE_DIR"]
        try:
            p = state.log_path(mnt)
        finally:
            if old is None:
                del os.environ["AETHER_MOUNT_STATE_DIR"]
            else:
                os.environ["AETHER_MOUNT_STATE_DIR"] = old
        return p.read_text() if p.exists() else ""

    def cleanup(self) -> None:
        for mnt in self.made:
            if is_mounted(mnt):
                r = subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True)
                if r.returncode != 0:
                    subprocess.run(["fusermount3", "-u", "-z", str(mnt)], capture_output=True)
        # The mount processes write back and exit; make sure none is left.
        state_dir = Path(self.env["AETHER_MOUNT_STATE_DIR"])
        deadline = time.monotonic() + 30
        for f in state_dir.glob("*.json") if state_dir.exists() else []:
            import json

            try:
                pid = json.loads(f.read_text())["pid"]
            except (OSError, ValueError, KeyError):
                continue
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.05)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False




def wait_for(pred, timeout: float = LIVE_SECONDS, interval: float = 0.02):
    """Poll until pred() is truthy; returns (value, seconds it took)."""
    start = time.monotonic()
    last = None
    while True:
        try:
            last = pred()
        except OSError:
            last = None
        if last:
            return last, time.monotonic() - start
        if time.monotonic() - start > timeout:
            return last, time.monotonic() - start
        time.sleep(interval)


def have(tool: str) -> bool:
    return shutil.which(tool) is not None
