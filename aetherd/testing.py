"""A real `aetherd` in a subprocess on loopback TCP, for tests and benchmarks.

Both need the same thing: a throwaway daemon with its own data dir, ports and
token, started for real (so they measure and test what users run) and
stopped reliably. Kept in the package so tests/ and bench/ share one copy.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class DaemonProcess:
    data_dir: Path
    token: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    http_port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    # Host directories sessions may be created from (a TCP daemon allows none otherwise).
    import_roots: list[str] = field(default_factory=list)
    # Extra `[aetherd]` settings (e.g. low limits), passed in a --config file.
    config: dict[str, int | str | bool] = field(default_factory=dict)
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

    def http(self, timeout: float = 60, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.http_url, headers=self.headers,
                            timeout=httpx.Timeout(timeout, connect=10.0), **kw)

    def start(self, timeout: float = 30) -> DaemonProcess:
        self.log_path = self.data_dir.parent / f"aetherd-{self.http_port}.log"
        config_args: list[str] = []
        if self.config:
            config_file = self.data_dir.parent / f"aetherd-{self.http_port}.toml"
            # JSON's strings, integers and booleans are valid TOML values.
            config_file.write_text("[aetherd]\n" + "".join(
                f"{key} = {json.dumps(value)}\n" for key, value in self.config.items()))
            config_args = ["--config", str(config_file)]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "aetherd", "serve", "--data-dir", str(self.data_dir),
                 "--http", f"tcp:127.0.0.1:{self.http_port}",
                 "--grpc", f"tcp:127.0.0.1:{self.grpc_port}", "--token", self.token,
                 *config_args,
                 *(arg for root in self.import_roots for arg in ("--import-root", str(root)))],
                stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
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

    def stop(self, timeout: float = 30) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        """SIGKILL: what a crash looks like to the data on disk."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
