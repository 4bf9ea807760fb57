"""Fixtures that start a real `aetherd` in a subprocess and talk to it for real."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from cli_helpers import cli_env
from grpclib.client import Channel

from aetherd.testing import DaemonProcess

DaemonProc = DaemonProcess

# No test may touch the real user's daemon, data or config: the default
# locations (platformdirs: XDG_DATA_HOME, XDG_CONFIG_HOME) point into a
# throwaway directory for the whole run, which every `aether` subprocess
# inherits. A command that autostarts "the local daemon" by mistake starts
# it there, and pytest_sessionfinish stops it.
_SANDBOX = Path(tempfile.mkdtemp(prefix="aether-home-", dir="/tmp"))  # short: socket paths
os.environ["XDG_DATA_HOME"] = str(_SANDBOX / "data")
os.environ["XDG_CONFIG_HOME"] = str(_SANDBOX / "config")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for pid_file in _SANDBOX.glob("data/*/aetherd.pid"):
        with contextlib.suppress(ValueError, OSError):
            os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
    shutil.rmtree(_SANDBOX, ignore_errors=True)


def make_daemon(tmp: Path) -> DaemonProc:
    return DaemonProcess(tmp / "data", import_roots=[tempfile.gettempdir()])


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProc]:
    """One daemon per test module (tests create their own sessions)."""
    d = make_daemon(tmp_path_factory.mktemp("aetherd")).start()
    yield d
    d.stop()


@pytest.fixture
def fresh_daemon(tmp_path: Path) -> Iterator[DaemonProc]:
    """A daemon of the test's own, for tests that kill or restart it."""
    d = make_daemon(tmp_path)
    yield d
    d.stop()


@pytest.fixture
async def channel(daemon: DaemonProc) -> AsyncIterator[Channel]:
    """A grpclib channel to the module's daemon (pass `md` as call metadata)."""
    ch = Channel(daemon.grpc_host, daemon.grpc_port)
    yield ch
    ch.close()


@pytest.fixture
def md(daemon: DaemonProc) -> dict[str, str]:
    return {"authorization": f"Bearer {daemon.token}"}


@pytest.fixture
def http(daemon: DaemonProc) -> Iterator[httpx.Client]:
    with daemon.http() as client:
        yield client


@pytest.fixture(scope="module")
def env(daemon: DaemonProc) -> dict[str, str]:
    """The environment of an `aether` run against the module's daemon (no other
    AETHER_* setting; 200 columns, no colour): pass it to cli_helpers.run."""
    return cli_env(AETHER_SERVER=daemon.http_url, AETHER_TOKEN=daemon.token)
