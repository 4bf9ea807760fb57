"""Cold start of the `aether` binary next to git's, in one run.

    python bench/cli.py [--runs N]

Each command is a fresh process (what a shell script pays per call), timed
wall-clock from spawn to exit, median of N runs after one warm-up run (so the
page cache is warm for every contender alike). The commands are run in turn,
round after round, so that a slow spell of the machine hits all of them.
`aether session ls` talks to a real daemon started here with 20 sessions;
`git status` runs in a repository of 1,000 committed files. `session ls` is
timed printing its table to a terminal (a pseudo-terminal here), to a pipe,
and as JSON. Target (issue 4):
`aether --help` and `aether session ls` under 300 ms.
"""

from __future__ import annotations

import argparse
import os
import pty
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import git, machine_note, median, new_daemon
from rich.console import Console
from rich.table import Table

AETHER = str(Path(sys.executable).with_name("aether"))
TARGET_MS = 300.0
LS_TTY = "aether session ls, 20 sessions, terminal"
LS_PIPE = "aether session ls, piped"
LS_JSON = "aether --json session ls"


def wall_ms(cmd: list[str], env: dict[str, str], cwd: Path | None = None,
            tty: bool = False) -> float:
    """Spawn to exit; with `tty`, stdout is a pseudo-terminal (what a person
    at a terminal sees: colours, widths measured), drained as it is written."""
    if not tty:
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        return (time.perf_counter() - t0) * 1000.0
    master, slave = pty.openpty()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env={**env, "TERM": "xterm-256color", "COLUMNS": "120"},
                            cwd=cwd, stdout=slave, stderr=subprocess.DEVNULL)
    os.close(slave)
    try:
        while os.read(master, 65536):
            pass
    except OSError:  # EIO: the child closed the terminal
        pass
    finally:
        os.close(master)
    if proc.wait() != 0:
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    return (time.perf_counter() - t0) * 1000.0


def sample_all(rows: list[tuple[str, list[str], Path | None, bool]], env: dict[str, str],
               runs: int) -> list[tuple[str, float]]:
    """Median per command, the commands taken in turn (one run of each, then
    the next round): a slow spell of a shared machine then lands on every
    command alike instead of on whichever ran during it."""
    for _name, cmd, cwd, tty in rows:
        wall_ms(cmd, env, cwd, tty)  # warm-up
    times: dict[str, list[float]] = {name: [] for name, *_ in rows}
    for _ in range(runs):
        for name, cmd, cwd, tty in rows:
            times[name].append(wall_ms(cmd, env, cwd, tty))
    return [(name, median(times[name])) for name, *_ in rows]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    load_start = os.getloadavg()[0]

    with tempfile.TemporaryDirectory(prefix="aether-bench-cli-") as tmp_s:
        tmp = Path(tmp_s)
        repo = tmp / "repo"
        repo.mkdir()
        for i in range(1000):
            d = repo / f"pkg{i % 20}"
            d.mkdir(exist_ok=True)
            (d / f"mod{i}.py").write_text(f"VALUE = {i}\n")
        git(repo, "init", "-q")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "init")

        daemon = new_daemon(tmp / "data", [tmp]).start()
        try:
            env = {k: v for k, v in os.environ.items() if not k.startswith("AETHER_")}
            env.update(AETHER_SERVER=daemon.http_url, AETHER_TOKEN=daemon.token)
            with daemon.http() as http:
                for i in range(20):
                    http.post("/v1/sessions", json={"name": f"bench-{i}"}).raise_for_status()
            rows = [
                ("python -c pass (interpreter floor)", [sys.executable, "-c", "pass"], None, False),
                ("aether --version", [AETHER, "--version"], None, False),
                ("aether --help", [AETHER, "--help"], None, False),
                ("aether session --help", [AETHER, "session", "--help"], None, False),
                (LS_TTY, [AETHER, "session", "ls"], None, True),
                (LS_PIPE, [AETHER, "session", "ls"], None, False),
                (LS_JSON, [AETHER, "--json", "session", "ls"], None, False),
                ("git --version", ["git", "--version"], None, False),
                ("git status (1,000 files)", ["git", "status", "--short"], repo, False),
            ]
            results = sample_all(rows, env, args.runs)
        finally:
            daemon.stop()

    git_version = dict(results)["git --version"]
    git_status = dict(results)["git status (1,000 files)"]
    table = Table(title=f"CLI cold start, median of {args.runs} runs, ms")
    table.add_column("command")
    table.add_column("ms", justify="right")
    table.add_column("vs git --version", justify="right")
    table.add_column("vs git status", justify="right")
    for name, ms in results:
        table.add_row(name, f"{ms:.1f}", f"{ms / git_version:.1f}x", f"{ms / git_status:.1f}x")
    Console(width=120).print(table)

    verdicts = []
    for name in ("aether --help", LS_TTY, LS_PIPE, LS_JSON):
        ms = dict(results)[name]
        ok = ms < TARGET_MS
        verdicts.append(ok)
        print(f"  {name:<42} {ms:7.1f} ms  {'PASS' if ok else 'FAIL'} (target < {TARGET_MS:.0f} ms)")
    print(f"Target {'HOLDS' if all(verdicts) else 'MISSED'}")
    print(machine_note(load_start))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
