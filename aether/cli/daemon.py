"""`aether daemon ...`: start, stop, inspect and read the log of the local aetherd.

These act on the daemon of a data directory on this machine: `--data-dir DIR`,
else the local target (AETHER_DATA_DIR, a profile's `data_dir`, else the user's
data directory). With a remote target (--server, AETHER_SERVER or a profile
with a `server`), only `status` works: it asks the remote daemon's health.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from aether.cli.options import JsonOpt, QuietOpt, group, output, state
from aether.procs import pid_alive

if TYPE_CHECKING:
    from aether.client import Target

app = group("The local aetherd: start, stop, status, logs (status also for --server).")

# `status` exits with this when the daemon does not answer (like `systemctl status`).
EXIT_NOT_RUNNING = 3

DataDirOpt = Annotated[Path | None, typer.Option(
    "--data-dir", metavar="DIR",
    help="Data directory of the local daemon (default: AETHER_DATA_DIR, the profile's "
    "data_dir, else the user data directory).", show_default=False)]


# ---- where, and which process


def _local_target(data_dir: Path) -> Target:
    from aether.client import Target

    d = data_dir.expanduser().absolute()
    return Target(base_url="http://aetherd", uds=str(d / "http.sock"), data_dir=d)


def _target(ctx: typer.Context, data_dir: Path | None) -> Target:
    return _local_target(data_dir) if data_dir else state(ctx).target()


def _origin(target: Target) -> str:
    return f"profile {target.profile!r}" if target.profile else "--server/AETHER_SERVER"


def _local_dir(ctx: typer.Context, data_dir: Path | None, action: str) -> Path:
    target = _target(ctx, data_dir)
    if target.data_dir is None:
        from aether.errors import from_code

        raise from_code(
            "failed_precondition",
            f"`aether daemon {action}` acts on a daemon on this machine, but the target is "
            f"{target} (from {_origin(target)}); pass --data-dir DIR for a local one")
    return target.data_dir


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None  # no /proc here: trust the pid file
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def daemon_pid(data_dir: Path) -> int | None:
    """The pid of the aetherd serving `data_dir`, from its pid file (written when
    it is ready) or, while it starts, the pid autostart recorded."""
    from aether.client.connect import SPAWNED_PID_FILE

    for name in ("aetherd.pid", SPAWNED_PID_FILE):
        try:
            pid = int((data_dir / name).read_text().strip())
        except (OSError, ValueError):
            continue
        if pid <= 0 or not pid_alive(pid):
            continue
        cmd = _cmdline(pid)
        if cmd is None:
            return pid
        # Guard against a recycled pid: it must be an aetherd (of this data dir,
        # for the autostart file, which outlives its daemon).
        if any("aetherd" in part for part in cmd) and (
                name == "aetherd.pid" or str(data_dir) in cmd):
            return pid
    return None


def _where(d: Path, pid: int | None) -> dict[str, Any]:
    from aether.client.connect import LOG_FILE

    return {"pid": pid, "dataDir": str(d), "http": f"unix:{d / 'http.sock'}",
            "grpc": f"unix:{d / 'grpc.sock'}", "log": str(d / LOG_FILE)}


_WHERE_FIELDS = [
    ("PID", lambda i: str(i["pid"] or "-")),
    ("Data dir", lambda i: i["dataDir"]),
    ("HTTP", lambda i: i["http"]),
    ("gRPC", lambda i: i["grpc"]),
    ("Log", lambda i: i["log"]),
]


# ---- commands


@app.command("start")
def start(
    ctx: typer.Context,
    data_dir: DataDirOpt = None,
    foreground: Annotated[bool, typer.Option(
        "--foreground", help="Run in this terminal (log to stderr) until Ctrl-C or SIGTERM, "
        "instead of detached.")] = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Start the local daemon (detached, logging to <data_dir>/aetherd.log) unless it
    is already running; print its pid and where it listens. -q prints the pid."""
    from aether.client.connect import daemon_answers, ensure_local_daemon

    d = _local_dir(ctx, data_dir, "start")
    out = output(ctx, json_, quiet)
    running = daemon_answers(d / "http.sock")
    if foreground:
        if running:
            from aether.errors import from_code

            raise from_code("already_exists", f"aetherd is already running for {d} "
                                              f"(pid {daemon_pid(d) or '?'})")
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        env = {k: v for k, v in os.environ.items() if k not in ("AETHER_SERVER", "AETHER_TOKEN")}
        sys.stdout.flush()
        os.execve(sys.executable, [sys.executable, "-m", "aetherd", "serve", "--data-dir",
                                   str(d)], env)
    started = False
    if not running:
        with out.status(f"Starting aetherd for {d}..."):
            started = ensure_local_daemon(d) is not None
    info = {"started": started, **_where(d, daemon_pid(d))}
    title = (f"Started aetherd (pid {info['pid']})" if started
             else f"aetherd is already running (pid {info['pid'] or '?'})")
    out.item(info, _WHERE_FIELDS, lambda i: str(i["pid"] or ""), title=title)


@app.command("stop")
def stop(
    ctx: typer.Context,
    data_dir: DataDirOpt = None,
    timeout: Annotated[float, typer.Option(
        "--timeout", metavar="SECONDS", help="How long to wait for it to exit.")] = 30.0,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Stop the local daemon gracefully (SIGTERM) and wait until it has exited.
    Not running is not an error (exit 0); not exiting in time is (exit 1)."""
    d = _local_dir(ctx, data_dir, "stop")
    out = output(ctx, json_, quiet)
    pid = daemon_pid(d)
    if pid is None:
        out.done(f"aetherd is not running (data dir {d})",
                 {"stopped": False, "pid": None, "dataDir": str(d)})
        return
    began = time.monotonic()
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    except PermissionError:
        from aether.errors import from_code

        raise from_code("permission_denied",
                        f"not allowed to signal aetherd (pid {pid}) of {d}") from None
    delay = 0.01
    while pid_alive(pid):
        if time.monotonic() - began > timeout:
            from aether.cli.output import fail

            raise typer.Exit(fail(
                "timeout", f"aetherd (pid {pid}) did not exit within {timeout:g}s after "
                f"SIGTERM; `kill -9 {pid}` forces it (acknowledged writes survive)"))
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
    secs = time.monotonic() - began
    out.done(f"Stopped aetherd (pid {pid}) in {secs:.1f}s",
             {"stopped": True, "pid": pid, "dataDir": str(d), "seconds": round(secs, 3)},
             ident=str(pid))


def _uptime(secs: int | None) -> str:
    if secs is None:
        return "-"
    parts, rest = [], int(secs)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if rest >= size or parts:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    parts.append(f"{rest}s")
    return " ".join(parts)


_STATUS_FIELDS = [
    ("State", lambda i: "running" if i["running"] else "not running"),
    ("Target", lambda i: i["target"] + (f" (profile {i['profile']})" if i["profile"] else "")),
    ("PID", lambda i: str(i["pid"] or "-")),
    ("Data dir", lambda i: i["dataDir"] or "-"),
    ("HTTP", lambda i: i["http"] or "-"),
    ("gRPC", lambda i: i["grpc"] or "-"),
    ("Version", lambda i: i["version"] or "-"),
    ("Health", lambda i: i["status"] or "-"),
    ("Uptime", lambda i: _uptime(i["uptimeSeconds"])),
    ("Sessions", lambda i: "-" if i["sessions"] is None else str(i["sessions"])),
    ("Log", lambda i: i["log"] or "-"),
]


@app.command("status")
def status(
    ctx: typer.Context,
    data_dir: DataDirOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Is the daemon running? Its pid, data dir, sockets, version, uptime and
    session count. Exit 0 when it answers, 3 when it does not (not running,
    or unreachable). -q prints the pid (or nothing) and only sets the exit code."""
    from aether.client._client import Client
    from aether.errors import AetherError

    target = _target(ctx, data_dir)
    out = output(ctx, json_, quiet)
    d = target.data_dir
    info: dict[str, Any] = {
        "running": False, "target": str(target), "local": d is not None,
        "profile": target.profile, "pid": None, "dataDir": None, "http": str(target),
        "grpc": None, "log": None, "version": None, "status": None, "uptimeSeconds": None,
        "sessions": None, "error": None,
    }
    if d is not None:
        info.update(_where(d, daemon_pid(d)))
        if not (d / "http.sock").exists():
            info["error"] = f"no socket at {d / 'http.sock'}"
    if info["error"] is None:
        with Client(target.base_url, token=target.token, uds=target.uds, timeout=5.0) as c:
            try:
                health = c.health()
            except AetherError as e:
                info["error"] = f"{e.code}: {e.message}"
            else:
                info.update(running=True, version=health.version or None, status=health.status,
                            uptimeSeconds=int(health.uptime_seconds))
                try:
                    info["sessions"] = sum(1 for _ in c.iter_sessions(page_size=1000))
                except AetherError as e:  # e.g. health needs no token, listing does
                    info["error"] = f"sessions: {e.code}: {e.message}"
    if out.mode == "quiet":
        if info["pid"]:
            print(info["pid"])
    else:
        fields = list(_STATUS_FIELDS)
        if info["error"]:
            fields.append(("Error", lambda i: i["error"]))
        out.item(info, fields, lambda i: str(i["pid"] or ""))
    if not info["running"]:
        raise typer.Exit(EXIT_NOT_RUNNING)


def _tail(path: Path, lines: int | None) -> tuple[bytes, int]:
    """The last `lines` lines of the file (all of it for None) and its size."""
    with open(path, "rb") as fh:
        end = fh.seek(0, os.SEEK_END)
        if lines is None:
            fh.seek(0)
            return fh.read(end), end
        if lines <= 0:
            return b"", end
        data, pos = b"", end
        while pos > 0 and data.count(b"\n") <= lines:
            step = min(1 << 16, pos)
            pos -= step
            fh.seek(pos)
            data = fh.read(step) + data
        return b"".join(data.splitlines(keepends=True)[-lines:]), end


@app.command("logs")
def logs(
    ctx: typer.Context,
    data_dir: DataDirOpt = None,
    follow: Annotated[bool, typer.Option(
        "--follow", "-f", help="Keep printing what is appended, until Ctrl-C.")] = False,
    lines: Annotated[int | None, typer.Option(
        "--lines", "-n", metavar="N", min=0,
        help="Only the last N lines (default: all; 10 with -f).", show_default=False)] = None,
) -> None:
    """Print the local daemon's log, <data_dir>/aetherd.log (the output of daemons
    started by `aether`; `aetherd serve` run by hand logs to its stderr)."""
    from aether.client.connect import LOG_FILE

    d = _local_dir(ctx, data_dir, "logs")
    path = d / LOG_FILE
    if lines is None and follow:
        lines = 10
    write = sys.stdout.buffer
    pos, ino = 0, None
    try:
        data, pos = _tail(path, lines)
        ino = path.stat().st_ino
        write.write(data)
        write.flush()
    except FileNotFoundError:
        if not follow:
            from aether.errors import from_code

            raise from_code("not_found", f"no daemon log at {path} (no daemon was started "
                                         "there by aether)") from None
    if not follow:
        return
    try:
        while True:
            time.sleep(0.2)
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            if st.st_ino != ino or st.st_size < pos:  # replaced or truncated: start over
                ino, pos = st.st_ino, 0
            if st.st_size > pos:
                with open(path, "rb") as fh:
                    fh.seek(pos)
                    chunk = fh.read(st.st_size - pos)
                pos += len(chunk)
                write.write(chunk)
                write.flush()
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
