"""State files of running mounts, for `aether mounts` and `aether umount`.

Each mount process keeps one small JSON file under
`<data dir>/mounts/<key>.json` (the key is derived from the mount point) and
rewrites it every few seconds with its cache use and counters. A file whose
process is gone is stale and pruned when listed. This module is imported by
the CLI, so it stays light: no pyfuse3, no trio.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from aether.procs import pid_alive


def state_dir() -> Path:
    env = os.environ.get("AETHER_MOUNT_STATE_DIR")
    if env:
        return Path(env).expanduser()
    from aether.client.connect import default_data_dir

    return default_data_dir() / "mounts"


def real_mountpoint(mountpoint: str | Path) -> str:
    """The canonical path of a mount point, without stat'ing the mount point itself
    (a hung or not-yet-serving mount would block the caller)."""
    path = os.path.abspath(os.fspath(mountpoint))
    head, tail = os.path.split(path.rstrip("/") or "/")
    return os.path.join(os.path.realpath(head), tail) if tail else head


def key(mountpoint: str | Path) -> str:
    return hashlib.sha256(real_mountpoint(mountpoint).encode()).hexdigest()[:16]


def state_path(mountpoint: str | Path) -> Path:
    return state_dir() / f"{key(mountpoint)}.json"


def log_path(mountpoint: str | Path) -> Path:
    return state_dir() / f"{key(mountpoint)}.log"


@dataclass
class MountState:
    mountpoint: str
    session: str
    pid: int
    state: str = "starting"  # starting | mounted | unmounting | failed
    at: str = ""
    read_only: bool = False
    server: str = ""
    cache_dir: str = ""
    cache_size: int = 0
    cache_used: int = 0
    cache_entries: int = 0
    dirty: int = 0
    open_files: int = 0
    requests: int = 0
    conflicts: int = 0
    # Bytes of large files uploaded by chunks, and those not sent because the
    # daemon had the chunks already.
    chunk_bytes_sent: int = 0
    chunk_bytes_skipped: int = 0
    log: str = ""
    error: str = ""
    started: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        self._path = state_path(self.mountpoint)

    def write(self) -> None:
        self.updated = time.time()
        p = self._path
        p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = p.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        os.replace(tmp, p)

    def remove(self) -> None:
        try:
            self._path.unlink()
        except FileNotFoundError:
            pass

    @classmethod
    def load(cls, path: Path) -> MountState | None:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError:
            return None

    @property
    def alive(self) -> bool:
        return pid_alive(self.pid)


def for_mountpoint(mountpoint: str | Path) -> MountState | None:
    return MountState.load(state_path(mountpoint))


def all_mounts(prune: bool = True) -> list[MountState]:
    """Mounts whose process still runs, and mounts left behind by a process that
    died (state "dead": `aether umount` clears them). Other stale state files
    are removed."""
    d = state_dir()
    out: list[MountState] = []
    if not d.is_dir():
        return out
    for p in sorted(d.glob("*.json")):
        st = MountState.load(p)
        if st is None:
            continue
        if not st.alive:
            if fuse_mounted(st.mountpoint):
                st.state = "dead"
                out.append(st)
            elif prune:
                p.unlink(missing_ok=True)
            continue
        out.append(st)
    return out


def fuse_mounted(mountpoint: str | Path) -> bool:
    """Is there a FUSE filesystem mounted exactly at this path?"""
    real = real_mountpoint(mountpoint)
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                parts = line.split(" - ", 1)
                left = parts[0].split()
                if len(left) > 4 and _unescape(left[4]) == real:
                    fstype = parts[1].split()[0] if len(parts) > 1 else ""
                    if fstype.startswith("fuse"):
                        return True
    except OSError:
        pass
    return False


def _unescape(field_: str) -> str:
    return field_.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n") \
        .replace("\\134", "\\")
