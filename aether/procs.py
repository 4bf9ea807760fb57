"""Processes on this machine: the local daemon and mount processes the CLI
starts, stops and lists."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """Is `pid` a running process? A zombie (exited, not reaped yet) or a dead
    one is not; one we may not signal (another user's) is."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rpartition(")")[2].split()[:1]
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return state not in (["Z"], ["X"])
