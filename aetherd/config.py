"""Daemon configuration: one dataclass, read from a TOML file and/or flags."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

import platformdirs


def default_data_dir() -> Path:
    env = os.environ.get("AETHER_DATA_DIR")
    return Path(env) if env else Path(platformdirs.user_data_dir("aether"))


@dataclass
class Config:
    data_dir: Path = field(default_factory=default_data_dir)
    # Listen addresses: "unix:/path/to.sock" or "tcp:HOST:PORT". Empty = default
    # unix sockets inside data_dir (http.sock, grpc.sock).
    http_listen: str = ""
    grpc_listen: str = ""
    # Bearer token required on TCP listeners (both HTTP and gRPC). Unix-socket
    # callers are trusted as the socket owner (the socket is mode 0600).
    token: str = ""
    # Host directories that sessions may be created from (directory sources and
    # local git repositories). Empty means: any directory the daemon user can
    # read when every listener is a unix socket (local mode), and none at all
    # when a TCP listener is configured (a remote caller must not read the host).
    import_roots: list[str] = field(default_factory=list)
    # Largest request body accepted over HTTP (bytes).
    max_body_bytes: int = 1 << 30
    log_level: str = "info"

    @property
    def http_address(self) -> str:
        return self.http_listen or f"unix:{self.data_dir / 'http.sock'}"

    @property
    def grpc_address(self) -> str:
        return self.grpc_listen or f"unix:{self.data_dir / 'grpc.sock'}"

    @property
    def has_tcp_listener(self) -> bool:
        return self.http_address.startswith("tcp:") or self.grpc_address.startswith("tcp:")

    @classmethod
    def load(cls, path: Path | None, **overrides: object) -> Config:
        values: dict[str, object] = {}
        if path is not None:
            with open(path, "rb") as fh:
                values.update(tomllib.load(fh).get("aetherd", {}))
        values.update({k: v for k, v in overrides.items() if v not in (None, "")})
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        if "data_dir" in values:
            values["data_dir"] = Path(str(values["data_dir"])).expanduser()
        return cls(**values)  # type: ignore[arg-type]


def parse_address(address: str) -> tuple[str, str, int]:
    """'unix:/p' -> ('unix', '/p', 0); 'tcp:host:port' -> ('tcp', host, port)."""
    kind, _, rest = address.partition(":")
    if kind == "unix" and rest:
        return "unix", rest, 0
    if kind == "tcp":
        host, _, port = rest.rpartition(":")
        if host and port.isdigit():
            return "tcp", host.strip("[]"), int(port)
    raise ValueError(f"bad listen address {address!r}: want unix:/path or tcp:host:port")
