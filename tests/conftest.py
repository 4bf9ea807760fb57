"""Fixtures that start a real `aetherd` in a subprocess and talk to it for real."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class DaemonProc:
    data_dir: Path
    token: str
    http_port: int
    grpc_port: int
    # Host directories sessions may be created from (--import-root).
    import_roots: list[str] = field(default_factory=lambda: [tempfile.gettempdir()])
    proc: subprocess.Popen | None = None
    log_path: Path = field(default=Path())

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_host(self) -> str:
        return "127.0.0.1"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def http(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.http_url, headers=self.headers, timeout=60, **kw)

    def start(self) -> DaemonProc:
        self.log_path = self.data_dir.parent / f"aetherd-{self.http_port}.log"
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aetherd", "serve", "--data-dir", str(self.data_dir),
             "--http", f"tcp:127.0.0.1:{self.http_port}",
             "--grpc", f"tcp:127.0.0.1:{self.grpc_port}", "--token", self.token,
             *(arg for root in self.import_roots for arg in ("--import-root", root))],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"aetherd exited early:\n{self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.http_url}/v1/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"aetherd did not become healthy:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def make_daemon(tmp: Path) -> DaemonProc:
    return DaemonProc(tmp / "data", secrets.token_urlsafe(16), free_port(), free_port())


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
def http(daemon: DaemonProc) -> Iterator[httpx.Client]:
    with daemon.http() as client:
        yield client
