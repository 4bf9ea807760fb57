"""Run the daemon: gRPC and HTTP in one asyncio process.

Unix sockets by default (mode 0600 inside the data dir: the socket owner is the
caller), TCP when configured, and then a bearer token is mandatory.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import ssl
from pathlib import Path

from aiohttp import web

from aetherd.app import Daemon, open_daemon
from aetherd.config import Config, parse_address
from aetherd.grpc.server import make_server

log = logging.getLogger("aetherd")


async def serve(config: Config, *, ready: asyncio.Event | None = None) -> None:
    from aetherd.http.app import make_app

    try:
        http_kind, http_host, http_port = parse_address(config.http_address)
        grpc_kind, grpc_host, grpc_port = parse_address(config.grpc_address)
    except ValueError as e:
        raise SystemExit(f"aetherd: {e}") from None
    for kind in (http_kind, grpc_kind):
        if kind == "tcp" and not config.token:
            raise SystemExit("aetherd: a TCP listener needs a token (config `token` or --token)")
    http_tls, grpc_tls = _tls_contexts(config)
    for kind, host in ((http_kind, http_host), (grpc_kind, grpc_host)):
        if kind == "tcp" and http_tls is None and host not in ("127.0.0.1", "::1", "localhost"):
            log.warning("TCP listener on %s without TLS: bearer tokens cross the network in "
                        "the clear (set tls_cert_file and tls_key_file)", host)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(config.data_dir, 0o700)
    lock = _lock_data_dir(config.data_dir)

    daemon = open_daemon(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async with contextlib.AsyncExitStack() as stack:
        stack.callback(lock.close)
        stack.callback(daemon.close)

        grpc_server = make_server(daemon.api, daemon.authenticator,
                                  require_token=grpc_kind == "tcp")
        if grpc_kind == "unix":
            _unlink_stale(grpc_host)
            await grpc_server.start(path=grpc_host)
            os.chmod(grpc_host, 0o600)
        else:
            await grpc_server.start(grpc_host, grpc_port, ssl=grpc_tls)
        stack.push_async_callback(grpc_server.wait_closed)
        stack.callback(grpc_server.close)

        app = make_app(daemon.api, config, daemon.authenticator,
                       require_token=http_kind == "tcp")
        # handler_cancellation: a live follow whose client went away ends at
        # once instead of at its next heartbeat write (and so does shutdown).
        # Unary handlers cancelled this way lose only their reply: store work
        # runs on worker threads and commits or rolls back whole.
        # max_line_size: a path at max_path_bytes of multibyte names is ~3x as
        # long percent-encoded; aiohttp's default (8190) would refuse it first.
        runner = web.AppRunner(app, access_log=None, handle_signals=False,
                               handler_cancellation=True,
                               max_line_size=3 * config.max_path_bytes + 2048)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        if http_kind == "unix":
            _unlink_stale(http_host)
            site: web.BaseSite = web.UnixSite(runner, http_host)
        else:
            site = web.TCPSite(runner, http_host, http_port, ssl_context=http_tls)
        await site.start()
        if http_kind == "unix":
            os.chmod(http_host, 0o600)

        retiring = asyncio.create_task(_retire_forever(daemon, config.retire_interval_seconds))
        stack.callback(retiring.cancel)

        pid_file = config.data_dir / "aetherd.pid"
        pid_file.write_text(f"{os.getpid()}\n")
        stack.callback(lambda: pid_file.unlink(missing_ok=True))
        # Runs first on the way out: live follows end (with `unavailable`, so
        # clients resume elsewhere or later) instead of holding the shutdown.
        stack.callback(daemon.store.hub.close)
        log.info("aetherd ready http=%s grpc=%s data=%s", config.http_address,
                 config.grpc_address, config.data_dir)
        print(f"aetherd ready http={config.http_address} grpc={config.grpc_address}", flush=True)
        if ready is not None:
            ready.set()
        await stop.wait()
        log.info("aetherd stopping")


def _lock_data_dir(data_dir: Path):
    """Hold an exclusive lock on the data dir for the daemon's lifetime.

    Two daemons on one data dir would steal each other's sockets and pid file.
    The lock dies with the process, so a SIGKILLed daemon never blocks a restart.
    """
    fh = open(data_dir / "aetherd.lock", "a+")  # noqa: SIM115 - held until exit
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = (data_dir / "aetherd.pid").read_text().strip() if (data_dir / "aetherd.pid").exists() else "?"
        fh.close()
        raise SystemExit(f"aetherd: another daemon (pid {pid}) is serving {data_dir}") from None
    return fh


def _unlink_stale(path: str) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.exists() or p.is_socket():
        p.unlink()


async def _retire_forever(daemon: Daemon, interval: float) -> None:
    """Sessions' ttl_idle / ttl_archived policies and tombstone expiry, applied
    every `interval` seconds; a failed sweep is logged and tried again."""
    while True:
        await asyncio.sleep(interval)
        try:
            await daemon.runner(daemon.retention.sweep)
        except Exception:
            log.exception("retention sweep failed")


def _tls_contexts(config: Config) -> tuple[ssl.SSLContext | None, ssl.SSLContext | None]:
    """Server TLS contexts for HTTP (HTTP/1.1) and gRPC (HTTP/2, which needs
    ALPN "h2"), or (None, None) without a certificate. Both or neither of the
    two files must be set; a bad file stops the daemon at start, not at the
    first connection."""
    if not config.tls_cert_file and not config.tls_key_file:
        return None, None
    if not (config.tls_cert_file and config.tls_key_file):
        raise SystemExit("aetherd: TLS needs both tls_cert_file and tls_key_file")
    contexts = []
    for alpn in (["http/1.1"], ["h2"]):
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(config.tls_cert_file, config.tls_key_file)
        except (OSError, ssl.SSLError) as e:
            raise SystemExit(f"aetherd: cannot load the TLS certificate or key: {e}") from None
        ctx.set_alpn_protocols(alpn)
        contexts.append(ctx)
    return contexts[0], contexts[1]
