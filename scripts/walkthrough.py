"""`make run`: a guided tour of AetherFS through the real `aether` command line,
ending in the TUI (`aether tui`) on the sessions the tour made.

Everything happens in a temporary data directory (AETHER_DATA_DIR), so your own
sessions are never touched. The first command starts a local daemon through
the CLI's autostart. On a terminal the tour then opens the TUI on that daemon
(ctrl+q leaves it; --no-tui skips it). It ends by stopping the daemon and
deleting the directory (--keep keeps both, to explore further).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
AETHER = BIN / "aether"

DEMO_FILES = {
    "README.md": "# demo\n\nA tiny project to show sessions off.\n",
    "app/main.py": 'def greet(name):\n    return f"hello {name}"\n\n\nprint(greet("world"))\n',
    "app/config.toml": '[server]\nport = 8080\nlog_level = "info"\n',
    "tests/test_main.py": "from app.main import greet\n\n\ndef test_greet():\n"
                          "    assert greet('x') == 'hello x'\n",
}

BOLD, DIM, CYAN, RESET = "\x1b[1m", "\x1b[2m", "\x1b[36m", "\x1b[0m"


class Tour:
    def __init__(self, env: dict[str, str], color: bool) -> None:
        self.env = env
        self.color = color

    def _c(self, code: str, text: str) -> str:
        return f"{code}{text}{RESET}" if self.color else text

    def say(self, text: str) -> None:
        print()
        print(self._c(BOLD, f"## {text}"))

    def run(self, *args: str, input: bytes | None = None, show: bool = True) -> str:
        """Run `aether ARGS`, echo the command and its output; stop the tour on failure."""
        print(self._c(CYAN, "$ aether " + " ".join(shlex.quote(a) for a in args)), flush=True)
        proc = subprocess.run([str(AETHER), *args], env=self.env, input=input,
                              capture_output=True)
        text = proc.stdout.decode(errors="replace")
        if show and text:
            print(text, end="" if text.endswith("\n") else "\n")
        if proc.stderr:
            sys.stdout.write(self._c(DIM, proc.stderr.decode(errors="replace")))
        if proc.returncode != 0:
            raise SystemExit(f"walkthrough: `aether {' '.join(args)}` failed "
                             f"(exit {proc.returncode})")
        return text.strip()


def write_demo(root: Path) -> None:
    for rel, text in DEMO_FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def stop_daemon(data_dir: Path) -> None:
    """SIGTERM the daemon the tour started (its pid file, else the autostart's record)."""
    for name in ("aetherd.pid", "aetherd.autostart.pid"):
        pid_file = data_dir / name
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            continue
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                print(f"stopped aetherd (pid {pid})")
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
        print(f"killed aetherd (pid {pid}): it did not stop within 10 s")
        return


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true",
                        help="keep the data directory and the daemon running afterwards")
    parser.add_argument("--no-tui", action="store_true",
                        help="do not open the TUI at the end (it opens only on a terminal)")
    opts = parser.parse_args()

    # Short path: unix socket paths are limited to ~107 bytes.
    data_dir = Path(tempfile.mkdtemp(prefix="aether-tour-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items()
           if k not in ("AETHER_SERVER", "AETHER_TOKEN", "AETHER_DATA_DIR")}
    env["AETHER_DATA_DIR"] = str(data_dir / "data")
    env.setdefault("COLUMNS", "100")
    color = sys.stdout.isatty() and "NO_COLOR" not in os.environ
    if color:
        env["FORCE_COLOR"] = "1"  # the commands' output is piped through this script
    tour = Tour(env, color=color)
    demo = data_dir / "demo"
    write_demo(demo)
    print(f"AETHER_DATA_DIR={env['AETHER_DATA_DIR']} (temporary; your data is untouched)")
    try:
        tour.say("Create a session from a directory (this starts the local daemon)")
        sid = tour.run("-q", "session", "create", "--from-dir", str(demo), "--name", "demo",
                       "--label", "team=tour", "--tag", "walkthrough")
        tour.run("session", "show", sid)

        tour.say("List sessions and files")
        tour.run("session", "ls", "--label", "team=tour")
        tour.run("fs", "ls", sid, "--recursive")
        tour.run("fs", "cat", sid, "app/main.py")

        tour.say("Checkpoint, then change things")
        ckp = tour.run("-q", "checkpoint", "create", sid, "-m", "as imported")
        print(f"checkpoint: {ckp}")
        tour.run("fs", "put", sid, "app/config.toml", "-",
                 input=b'[server]\nport = 9090\nlog_level = "debug"\n')
        tour.run("fs", "put", sid, "CHANGELOG.md", "-", input=b"- port is now 9090\n")
        tour.run("checkpoint", "ls", sid)

        tour.say("Fork: a parallel copy that costs nothing")
        fork = tour.run("-q", "session", "fork", sid, "--name", "demo-experiment")
        tour.run("fs", "put", fork, "app/main.py", "-",
                 input=b'def greet(name):\n    return f"hi {name}!"\n')
        tour.run("diff", fork, "--stat")

        tour.say("Diff the session against its checkpoint")
        tour.run("diff", sid, "--from", ckp, "--stat")
        tour.run("diff", sid, "--from", ckp)

        tour.say("Commit, then restore the checkpoint")
        tour.run("commit", "create", sid, "-m", "Move to port 9090", "--author", "walkthrough")
        tour.run("restore", sid, ckp)
        tour.run("fs", "cat", sid, "app/config.toml")

        tour.say("Export the fork as an archive")
        archive = data_dir / "demo-experiment.tar.gz"
        tour.run("export", fork, "-o", str(archive))
        print(f"{archive.name}: {archive.stat().st_size} bytes")

        tour.say("Coordinate: a cache entry, a bus message, a review")
        tour.run("cache", "set", fork, "build/status", "green")
        tour.run("bus", "publish", fork, "builds", "experiment built in 1.2 s")
        tour.run("review", "annotate", fork, "app/main.py", "2", "friendlier greeting?")
        tour.run("review", "request", fork, "-m", "ship the experiment")
        tour.run("review", "approvals", fork)

        if not opts.no_tui and sys.stdin.isatty() and sys.stdout.isatty():
            tour.say("The TUI on the same daemon (ctrl+q quits, ? lists the keys)")
            time.sleep(1.5)
            subprocess.run([str(AETHER), "tui"], env=env, check=False)
    finally:
        if opts.keep:
            print(f"\nkept: {data_dir} (daemon still running; "
                  f"export AETHER_DATA_DIR={env['AETHER_DATA_DIR']} to use it)")
        else:
            print()
            stop_daemon(data_dir / "data")
            shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
