"""`aether mount`, `aether umount`, `aether mounts`: sessions as local directories.

The mount itself runs in its own process (`python -m aether.mount.runner`),
detached unless --foreground. This module only starts, stops and lists those
processes: pyfuse3 and trio are imported by the mount process alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from aether.cli.options import JsonOpt, QuietOpt, SessionArg, output, state

READY_TIMEOUT = 60.0
EXIT_TIMEOUT = 120.0
DEFAULT_CACHE_SIZE = "2G"

DirArg = Annotated[Path, typer.Argument(metavar="DIR", help="Mount point (an existing directory).",
                                        show_default=False)]


def _default_cache_dir() -> str:
    env = os.environ.get("AETHER_MOUNT_CACHE_DIR")
    if env:
        return env
    import platformdirs

    return str(Path(platformdirs.user_cache_dir("aether")) / "mount")


def _fail(code: str, message: str) -> typer.Exit:
    from aether.cli.output import fail

    return typer.Exit(fail(code, message))


def mount(
    ctx: typer.Context,
    session: SessionArg,
    directory: DirArg,
    read_only: Annotated[bool, typer.Option("--read-only", help="Refuse every change.")] = False,
    at: Annotated[str, typer.Option(
        "--at", metavar="STATE",
        help="Mount a checkpoint (ckp_...), a commit (cmt_...) or base, read-only.")] = "",
    cache_dir: Annotated[str, typer.Option(
        "--cache-dir", metavar="DIR", help="Local content cache (default: the user cache "
        "directory; shared by mounts).", show_default=False)] = "",
    cache_size: Annotated[str, typer.Option(
        "--cache-size", metavar="SIZE", help="Cache limit, e.g. 512M, 2G.")] = DEFAULT_CACHE_SIZE,
    log_level: Annotated[str, typer.Option(
        "--log-level", metavar="LEVEL", help="debug, info, warning or error.")] = "info",
    foreground: Annotated[bool, typer.Option(
        "--foreground", "-f", help="Stay attached; log to stderr; Ctrl-C unmounts.")] = False,
    sync_close: Annotated[bool, typer.Option(
        "--sync-close", help="close() waits until the daemon has the file (slower; by "
        "default changes are sent in batches right after, and fsync waits).")] = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Mount a session as a local directory (FUSE).

    The mount runs in a process of its own (detached unless --foreground) and
    `aether mount` returns once the directory is mounted. -q prints the mount
    point. See docs/mount.md for the semantics.
    """
    from aether.mount import state as ms
    from aether.mount.cache import parse_size

    out = output(ctx, json_, quiet)
    if log_level.lower() not in ("debug", "info", "warning", "error"):
        raise typer.BadParameter(f"{log_level!r}: want debug, info, warning or error",
                                 param_hint="'--log-level'")
    try:
        limit = parse_size(cache_size)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--cache-size'") from None
    mnt = Path(ms.real_mountpoint(directory.expanduser()))
    if not mnt.is_dir():
        raise _fail("not_found", f"{directory}: not a directory")
    if ms.fuse_mounted(mnt):
        raise _fail("already_exists", f"{mnt} is already a mount point (aether umount {mnt})")
    if not os.path.exists("/dev/fuse"):
        raise _fail("failed_precondition", "/dev/fuse is missing: FUSE is not available here")
    import importlib.util

    if importlib.util.find_spec("pyfuse3") is None or importlib.util.find_spec("trio") is None:
        raise _fail("failed_precondition", "mounting needs pyfuse3 and trio: "
                    "pip install 'aetherfs[mount]' (with libfuse3-dev installed)")

    app = state(ctx)
    target = app.target()
    client = app.client()  # starts the local daemon when needed
    client.get_session(session)  # not_found now, rather than in the mount's log

    from aether.mount.config import MountConfig

    cfg = MountConfig(session=session, mountpoint=str(mnt),
                      cache_dir=cache_dir or _default_cache_dir(), cache_size=limit,
                      read_only=read_only, at=at, log_level=log_level.lower(),
                      server=str(target), sync_close=sync_close)
    env = dict(os.environ)
    env["AETHER_SERVER"] = f"unix:{target.uds}" if target.uds else target.base_url
    if target.token:
        env["AETHER_TOKEN"] = target.token
    if foreground:
        os.environ.update(env)
        from aether.mount.runner import run

        raise typer.Exit(run(cfg))
    ms.state_dir().mkdir(parents=True, exist_ok=True, mode=0o700)
    log = ms.log_path(mnt)
    with open(log, "ab") as logf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "aether.mount.runner", "--config", cfg.to_json()],
            stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, env=env,
            start_new_session=True, close_fds=True, cwd="/",
        )
    st = _wait_ready(proc, mnt)
    if st is None or st.state != "mounted":
        why = (st.error if st is not None and st.error else _log_tail(log)) or "it exited"
        if st is not None:
            st.remove()
        code, message = _split_error(why)
        raise _fail(code, f"mount failed: {message}")
    if out.mode == "json":
        out.json(_as_json(st))
    elif out.mode == "quiet":
        print(st.mountpoint)
    else:
        mode = "read-only" if st.read_only else "read-write"
        out.done(f"Mounted {st.session}{'@' + st.at if st.at else ''} at {st.mountpoint} "
                 f"({mode}; pid {st.pid}). Unmount with: aether umount {st.mountpoint}")


def _split_error(why: str) -> tuple[str, str]:
    """The mount process's error -> (code, message): daemon errors come as
    "code: message"."""
    from aether.errors import CODES

    code, sep, rest = why.partition(": ")
    if sep and code in CODES:
        return code, rest
    return "internal", why


def _wait_ready(proc: subprocess.Popen, mnt: Path):
    from aether.mount import state as ms

    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        st = ms.for_mountpoint(mnt)
        if st is not None and st.pid == proc.pid and st.state in ("mounted", "failed"):
            return st
        if proc.poll() is not None:
            return ms.for_mountpoint(mnt)
        time.sleep(0.02)
    proc.terminate()
    return None


def _log_tail(log: Path) -> str:
    try:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def umount(
    ctx: typer.Context,
    directory: DirArg,
    lazy: Annotated[bool, typer.Option(
        "--lazy", "-z", help="Detach now even if files are open; the mount process writes "
        "back and exits when the last one closes.")] = False,
    timeout: Annotated[float, typer.Option(
        "--timeout", metavar="SECONDS", help="How long to wait for the write-back.")] = EXIT_TIMEOUT,
    json_: JsonOpt = False,
) -> None:
    """Unmount a session mount (waits for its write-back to finish)."""
    from aether.mount import state as ms

    out = output(ctx, json_)
    mnt = Path(ms.real_mountpoint(directory.expanduser()))
    st = ms.for_mountpoint(mnt)
    mounted = ms.fuse_mounted(mnt)
    if not mounted and (st is None or not st.alive):
        if st is not None:
            st.remove()
        raise _fail("not_found", f"{mnt} is not mounted")
    if mounted:
        cmd = ["fusermount3", "-u", *(["-z"] if lazy else []), str(mnt)]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True)
        except FileNotFoundError:
            r = subprocess.run(["umount", *(["-l"] if lazy else []), str(mnt)],
                               capture_output=True, text=True)
        if r.returncode != 0:
            msg = (r.stderr or r.stdout).strip().splitlines()
            text = msg[-1] if msg else f"exit status {r.returncode}"
            if "busy" in text.lower():
                raise _fail("failed_precondition",
                            f"{mnt} is busy: files are open or a process works in it "
                            "(close them, or use --lazy)")
            raise _fail("internal", f"unmounting {mnt}: {text}")
    if st is not None and not st.alive:
        st.remove()
    elif st is not None and not lazy:
        deadline = time.monotonic() + timeout
        while st.alive and time.monotonic() < deadline:
            time.sleep(0.02)
        if st.alive:
            raise _fail("unavailable", f"the mount process {st.pid} is still writing back "
                        f"after {timeout:g}s; see {st.log}")
    if out.mode == "json":
        out.json({"mountpoint": str(mnt), "unmounted": True, "lazy": lazy})
    elif out.mode == "human":
        out.done(f"Unmounted {mnt}" + (" (lazily: it finishes when its files close)"
                                       if lazy else ""))


def _as_json(st) -> dict:
    from dataclasses import asdict

    return asdict(st)


def mounts(
    ctx: typer.Context,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """List this machine's session mounts."""
    from aether.cli import output as fmt
    from aether.mount import state as ms
    from aether.mount.cache import format_size

    out = output(ctx, json_, quiet)
    items = ms.all_mounts()
    if out.mode == "json":
        out.json([_as_json(s) for s in items])
        return
    out.table(items, [
        fmt.Column("DIR", lambda s: s.mountpoint, wrap=True),
        fmt.Column("SESSION", lambda s: s.session + (f"@{s.at}" if s.at else "")),
        fmt.Column("STATE", lambda s: s.state + (" (ro)" if s.read_only else "")),
        fmt.Column("CACHE", lambda s: f"{format_size(s.cache_used)} / "
                                      f"{format_size(s.cache_size)}", drop=2),
        fmt.Column("DIRTY", lambda s: str(s.dirty), justify="right", drop=3),
        fmt.Column("PID", lambda s: str(s.pid), justify="right", drop=4),
    ], lambda s: s.mountpoint, empty="No mounts.")
