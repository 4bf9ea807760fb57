"""Where the daemon is, and getting one running when it is local.

Remote: `AETHER_SERVER` (or `server=`) is `http://host:port`, `https://...`,
`unix:/path/to/http.sock` or the daemon's own `tcp:host:port`; `AETHER_TOKEN`
(or `token=`) is sent as `Authorization: Bearer`. Arguments win over the
environment, the environment over a profile of the config file
(`aether.client.config`: `profile=`, else AETHER_PROFILE, else its
`default_profile`).

Local (no server configured): the daemon of the current user, listening on
`<data_dir>/http.sock` where data_dir is `AETHER_DATA_DIR` or the platform's
user data directory. When nothing answers there, `connect()` starts
`python -m aetherd serve --data-dir DIR` detached (its output appended to
`<data_dir>/aetherd.log`) and waits for `GET /v1/health`. A lock file
serialises clients that race to start it: the losers reuse the winner's.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aether.client.config import ConfigError
from aether.errors import AetherError, from_code

AUTOSTART_TIMEOUT = 10.0
# The pid of a daemon started by autostart, for tools that want to stop it.
SPAWNED_PID_FILE = "aetherd.autostart.pid"
LOG_FILE = "aetherd.log"


def default_data_dir() -> Path:
    env = os.environ.get("AETHER_DATA_DIR")
    if env:
        # absolute: the autostarted daemon runs in the data dir, not our cwd
        return Path(env).expanduser().absolute()
    import platformdirs

    return Path(platformdirs.user_data_dir("aether"))


@dataclass(frozen=True)
class Target:
    """A resolved daemon address."""

    base_url: str  # what HTTP requests are made against
    uds: str | None = None  # unix socket path, when it is one
    token: str | None = None
    # Set in local mode: the daemon's data directory (autostart applies).
    data_dir: Path | None = None
    # The config-file profile it came from, if any.
    profile: str | None = None

    @property
    def local(self) -> bool:
        return self.data_dir is not None

    @property
    def same_host(self) -> bool:
        """Does the daemon see this machine's filesystem (unix socket)?"""
        return self.uds is not None

    def __str__(self) -> str:
        return f"unix:{self.uds}" if self.uds else self.base_url


def parse_server(server: str) -> tuple[str, str | None]:
    """A server string -> (base_url, unix socket path or None)."""
    server = server.strip()
    if server.startswith("unix:"):
        path = server[len("unix:"):]
        if path.startswith("//"):  # unix:///path
            path = path[2:]
        if not path:
            raise ConfigError(f"bad server {server!r}: unix: needs a path")
        return "http://aetherd", str(Path(path).expanduser())
    if server.startswith(("http://", "https://")):
        return server.rstrip("/"), None
    if server.startswith("tcp:"):
        server = server[len("tcp:"):]
    if server.startswith("/"):
        return "http://aetherd", server
    host, _, port = server.rpartition(":")
    if host and port.isdigit():
        return f"http://{server}", None
    raise ConfigError(
        f"bad server {server!r}: want http://host:port, https://host, or unix:/path/http.sock")


def resolve(
    server: str | None = None,
    token: str | None = None,
    data_dir: str | Path | None = None,
    profile: str | None = None,
) -> Target:
    """The daemon to talk to, first that applies (explicit arguments, which the
    CLI fills from its flags, beat the environment, which beats the file):

    1. `server` (or `data_dir`): with `token`, else AETHER_TOKEN unless
       AETHER_SERVER names another server
    2. the profile named `profile`
    3. AETHER_SERVER with AETHER_TOKEN; AETHER_DATA_DIR (the local daemon there)
    4. AETHER_PROFILE, else the config file's default_profile
    5. the local daemon in the user's data directory

    AETHER_TOKEN goes only where AETHER_SERVER points (or, with no AETHER_SERVER,
    to the server or local daemon chosen): a profile's daemon gets the `token`
    argument or the profile's own token, and `--server` naming some other
    daemon than AETHER_SERVER gets only `token`. A token exported for one
    daemon is never handed to whoever runs another.

    Raises `aether.client.config.ConfigError` for an unknown profile or a bad
    config file (the file is read only when steps 1-3 choose nothing, or a
    profile is named).
    """
    env_token = os.environ.get("AETHER_TOKEN") or None
    env_server = os.environ.get("AETHER_SERVER") or None
    if server:
        base_url, uds = parse_server(server)
        if env_server and not _same_server(env_server, base_url, uds):
            env_token = None  # exported for AETHER_SERVER, not for this one
        return Target(base_url=base_url, uds=uds, token=token or env_token)
    if data_dir:
        return _local(Path(data_dir), token or env_token)
    if profile:
        from aether.client import config

        return _from_profile(config.load().select(profile), token)
    if env_server:
        base_url, uds = parse_server(env_server)
        return Target(base_url=base_url, uds=uds, token=token or env_token)
    env_data_dir = os.environ.get("AETHER_DATA_DIR")
    if env_data_dir:
        return _local(Path(env_data_dir), token or env_token)
    from aether.client import config

    chosen = config.load().select(None)
    if chosen is not None:
        return _from_profile(chosen, token)
    return _local(default_data_dir(), token or env_token)


def _same_server(server: str, base_url: str, uds: str | None) -> bool:
    try:
        return parse_server(server) == (base_url, uds)
    except ConfigError:
        return False


def _local(data_dir: Path, token: str | None) -> Target:
    ddir = data_dir.expanduser().absolute()
    return Target(base_url="http://aetherd", uds=str(ddir / "http.sock"), token=token,
                  data_dir=ddir)


def _from_profile(chosen: Any, token: str | None) -> Target:
    token = token or chosen.resolve_token()
    if chosen.server:
        base_url, uds = parse_server(chosen.server)
        return Target(base_url=base_url, uds=uds, token=token, profile=chosen.name)
    target = _local(Path(chosen.data_dir or ""), token)
    return dataclasses.replace(target, profile=chosen.name)


def connect(
    server: str | None = None,
    token: str | None = None,
    *,
    profile: str | None = None,
    autostart: bool = True,
    timeout: float | None = None,
):
    """A `Client` for the configured daemon, starting the local one when needed."""
    from aether.client._client import DEFAULT_TIMEOUT, Client

    target = resolve(server, token, profile=profile)
    if target.local and autostart:
        ensure_local_daemon(target.data_dir)  # type: ignore[arg-type]
    return Client(target.base_url, token=target.token, uds=target.uds,
                  timeout=DEFAULT_TIMEOUT if timeout is None else timeout)


async def aconnect(
    server: str | None = None,
    token: str | None = None,
    *,
    profile: str | None = None,
    autostart: bool = True,
    timeout: float | None = None,
):
    """An `AsyncClient` for the configured daemon, starting the local one when needed."""
    import asyncio

    from aether.client._async import AsyncClient
    from aether.client._client import DEFAULT_TIMEOUT

    target = resolve(server, token, profile=profile)
    if target.local and autostart:
        await asyncio.to_thread(ensure_local_daemon, target.data_dir)
    return AsyncClient(target.base_url, token=target.token, uds=target.uds,
                       timeout=DEFAULT_TIMEOUT if timeout is None else timeout)


# ---- local daemon


def daemon_answers(sock: Path, timeout: float = 2.0) -> bool:
    """Does a daemon answer GET /v1/health on this unix socket?

    Any HTTP answer counts, "degraded" (503) included: a second daemon must
    never be started over a live one, whatever its health.
    """
    if not sock.exists():
        return False
    from aether.client.wire import TransportError, Wire

    wire = Wire("http://aetherd", uds=str(sock), timeout=timeout)
    try:
        wire.request("GET", "/v1/health")
        return True
    except TransportError as exc:
        # Nobody listens (or a stale socket file) -- or something does, and
        # just answers badly or slowly.
        return exc.kind != "connect"
    finally:
        wire.close()


_SPAWNED: list[subprocess.Popen] = []  # keep a reference: never reap (or warn about) it


def ensure_local_daemon(data_dir: Path, timeout: float = AUTOSTART_TIMEOUT) -> int | None:
    """Make sure the local daemon for `data_dir` answers; start it if not.

    Returns the pid of a daemon this call started, or None when one was running.
    """
    sock = data_dir / "http.sock"
    if daemon_answers(sock):
        return None
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    deadline = time.monotonic() + timeout
    with open(data_dir / "autostart.lock", "a") as lock:
        # Another client may be starting it right now: wait for its lock, then
        # look again before starting a second one.
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise _unavailable(data_dir, "another client is still starting it") from None
                time.sleep(0.05)
        try:
            if daemon_answers(sock):
                return None
            proc = _spawn(data_dir)
            delay = 0.02
            while True:
                if daemon_answers(sock, timeout=1.0):
                    return proc.pid
                if proc.poll() is not None:
                    # It exited: a daemon started by other means may own the socket.
                    if daemon_answers(sock):
                        return None
                    raise _unavailable(data_dir, f"it exited with status {proc.returncode}")
                if time.monotonic() > deadline:
                    raise _unavailable(data_dir, f"no answer after {timeout:g}s")
                time.sleep(delay)
                delay = min(delay * 2, 0.25)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _spawn(data_dir: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "aetherd", "serve", "--data-dir", str(data_dir)]
    env = {k: v for k, v in os.environ.items() if k not in ("AETHER_SERVER", "AETHER_TOKEN")}
    with open(data_dir / LOG_FILE, "ab") as log:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=data_dir, env=env,
            start_new_session=True, close_fds=True,
        )
    _SPAWNED.append(proc)
    try:
        (data_dir / SPAWNED_PID_FILE).write_text(f"{proc.pid}\n")
    except OSError:
        pass
    return proc


def _unavailable(data_dir: Path, why: str) -> AetherError:
    log = data_dir / LOG_FILE
    tail = ""
    try:
        lines = log.read_text(errors="replace").strip().splitlines()
        if lines:
            tail = f"; last log line: {lines[-1][:300]}"
    except OSError:
        pass
    return from_code(
        "unavailable", f"could not start the local aetherd ({why}); see {log}{tail}")
