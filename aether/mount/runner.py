"""The mount process: mount, serve until unmounted, write back, exit.

`aether mount` starts `python -m aether.mount.runner --config JSON` detached
(or calls `run()` in its own process with --foreground). The daemon's address
and token come from AETHER_SERVER / AETHER_TOKEN in the environment, never on
the command line. Lifecycle:

1. check the session (and the state, with --at), read the newest event cursor,
   list the root: any failure here ends the process before anything is mounted;
2. `pyfuse3.init` with `default_permissions,allow_other` (allow_other only
   where the system allows it), `ro` for read-only mounts;
3. serve: pyfuse3's loop, the event follower (coherence.py), a state-file
   reporter, and SIGTERM/SIGINT handling (they end the loop like an unmount);
4. when the loop ends (`fusermount3 -u`, or a signal): write back anything
   still dirty, `pyfuse3.close()` in a finally, remove the state file, exit.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys

import pyfuse3
import trio

from aether.mount import state as mount_state
from aether.mount.bridge import Bridge
from aether.mount.cache import BlobCache
from aether.mount.coherence import Coherence
from aether.mount.config import MountConfig
from aether.mount.ops import Operations

log = logging.getLogger("aether.mount")

STATE_REPORT_SECONDS = 2.0


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO), stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpcore").setLevel(logging.WARNING)  # per-byte noise, even for debug
    if level.lower() != "debug":
        logging.getLogger("httpx").setLevel(logging.WARNING)


def fuse_options(cfg: MountConfig, session_id: str, read_only: bool) -> set[str]:
    opts = set(pyfuse3.default_options)  # default_permissions
    # nosuid, nodev: a session's content comes from whoever may write to it
    # over the API; it must never become a setuid program or a device node
    # on this host (other users see the mount through allow_other).
    opts |= {f"fsname=aether:{session_id}", "subtype=aether", "default_permissions",
             "nosuid", "nodev"}
    if _allow_other_permitted():
        opts.add("allow_other")
    else:
        log.warning("allow_other is not permitted here (add user_allow_other to "
                    "/etc/fuse.conf): only you can enter the mount")
    if read_only:
        opts.add("ro")
    return opts


def _allow_other_permitted() -> bool:
    if os.getuid() == 0:
        return True
    try:
        with open("/etc/fuse.conf") as f:
            return any(line.strip() == "user_allow_other" for line in f)
    except OSError:
        return False


def run(cfg: MountConfig) -> int:
    """Mount, serve until unmounted, and return an exit status."""
    setup_logging(cfg.log_level)
    st = mount_state.MountState(
        mountpoint=mount_state.real_mountpoint(cfg.mountpoint), session=cfg.session, pid=os.getpid(),
        at=cfg.at, read_only=cfg.read_only or bool(cfg.at), server=cfg.server,
        cache_dir=cfg.cache_dir, cache_size=cfg.cache_size,
        log=str(mount_state.log_path(cfg.mountpoint)),
    )
    st.write()
    try:
        return trio.run(_serve, cfg, st)
    except Exception as exc:
        log.exception("mount failed")
        st.state = "failed"
        # "code: message" for daemon errors (the CLI shows the code), else the text
        st.error = (exc.strerror if isinstance(exc, OSError) and exc.strerror else
                    str(exc)) or type(exc).__name__
        st.write()
        return 1
    finally:
        if st.state != "failed":
            st.remove()


async def _serve(cfg: MountConfig, st: mount_state.MountState) -> int:
    bridge = Bridge.from_environment(cfg.session, cfg.at)
    try:
        session = await bridge.session()
        archived = session.state.name == "ARCHIVED" if session.state else False
        read_only = cfg.read_only or bool(cfg.at) or archived
        cursor = 0 if cfg.at else await bridge.head_cursor()
        cache = BlobCache(_path(cfg.cache_dir), cfg.cache_size).open()
        await cache.reap()
        label = f"{cfg.session}@{cfg.at}" if cfg.at else cfg.session
        tag = f"{socket.gethostname().split('.')[0]}-{os.getpid()}"
        ops = Operations(bridge, cache, session_label=label, read_only=read_only,
                         fixed_state=bool(cfg.at), conflict_tag=tag, sync_close=cfg.sync_close)
        await ops.load_dir(ops.table.root)  # fails here for an unknown --at
        pyfuse3.init(ops, st.mountpoint, fuse_options(cfg, cfg.session, read_only))
        try:
            st.state = "mounted"
            st.read_only = read_only
            st.write()
            log.info("mounted session %s at %s (%s)", label, st.mountpoint,
                     "read-only" if read_only else "read-write")
            async with trio.open_nursery() as nursery:
                if not cfg.at:
                    coherence = Coherence(bridge, ops.table, ops.notifier, cursor,
                                          ops.journal)
                    ops.journal.relist = coherence.request_refresh
                    nursery.start_soon(coherence.run)
                if not read_only:
                    nursery.start_soon(ops.journal.run)
                nursery.start_soon(_signals)
                nursery.start_soon(_report, ops, cache, st)
                nursery.start_soon(cache.reaper)
                await pyfuse3.main()
                nursery.cancel_scope.cancel()
            st.state = "unmounting"
            st.write()
            log.info("unmounted; writing back what is still dirty")
            await ops.files.flush_all()
            await cache.reap()
        finally:
            ops.notifier.stop()
            ops.files.close_all()
            pyfuse3.close(unmount=True)
        log.info("done")
        return 0
    finally:
        await bridge.aclose()


def _path(p: str):
    from pathlib import Path

    return Path(p).expanduser()


async def _signals() -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async for signum in signals:
            log.info("signal %d: unmounting", signum)
            pyfuse3.terminate()
            return


async def _report(ops: Operations, cache: BlobCache, st: mount_state.MountState) -> None:
    while True:
        await trio.sleep(STATE_REPORT_SECONDS)
        st.cache_used = cache.used
        st.cache_entries = len(cache)
        st.dirty = len(ops.table.dirty_nodes())
        st.open_files = len(ops.files.handles)
        st.requests = ops.requests
        st.conflicts = ops.files.conflicts
        st.chunk_bytes_sent = ops.files.chunk_bytes_sent
        st.chunk_bytes_skipped = ops.files.chunk_bytes_skipped
        try:
            st.write()
        except Exception as exc:  # a full disk must not end the mount
            log.debug("could not write the state file: %s", exc)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m aether.mount.runner")
    p.add_argument("--config", required=True, help="MountConfig as JSON")
    args = p.parse_args(argv)
    sys.exit(run(MountConfig.from_json(args.config)))


if __name__ == "__main__":
    main()
