"""Daemon configuration: one dataclass, read from a TOML file and/or flags."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

import platformdirs


@dataclass(frozen=True)
class Limits:
    """Bounds on what a request can make the daemon store, parse or walk.

    Every one is a key of the `[aetherd]` table (same name). The services read
    the daemon's limits through `limits()`, so HTTP and gRPC refuse the same
    input with the same code. docs/operations.md has the table and docs/decisions.md
    the reasons for each default.
    """

    # Largest request payload: an HTTP body, or the file data / archive of a gRPC call.
    max_body_bytes: int = 1 << 30
    # PATH_MAX and NAME_MAX of Linux, so a session fits on the disk it is exported to.
    max_path_bytes: int = 4096
    max_name_bytes: int = 255
    # Tree walks recurse once per level; this keeps them far from Python's
    # recursion limit (1000 frames) on every code path.
    max_path_depth: int = 256
    # Largest file any write, range write or import may produce.
    max_file_bytes: int = 16 << 30
    # What one import (archive, host directory, git) may create: entries are
    # members read plus the directories they imply; bytes are content after
    # decompression.
    max_import_entries: int = 1_000_000
    max_import_bytes: int = 16 << 30
    # An archive may expand to this many times its own size, once past the
    # floor: a small upload cannot buy a lot of work.
    max_archive_ratio: int = 100
    archive_ratio_floor_bytes: int = 64 << 20
    # Linux's MAXSYMLINKS: the longest symlink chain an archive may contain.
    max_symlink_hops: int = 40
    # Changes one fs:apply request may carry: they run in one write
    # transaction, which holds the session store's write lock.
    max_batch_ops: int = 10_000
    # Paths one fs:read request may name, and the file content one answer may
    # hold (it is built in memory, then base64 in JSON): a larger answer is
    # cut, the rest comes back `truncated` for the client to ask again.
    max_batch_read_paths: int = 10_000
    max_batch_read_bytes: int = 64 << 20
    # Hashes one MissingChunks request may ask about (64 hex digits each, and
    # the present ones get their age refreshed in one blob store transaction).
    max_chunk_query: int = 100_000


# Above these the daemon's own recursion (tree walks, symlink resolution) could
# hit Python's recursion limit, so no configuration may go there.
_CEILINGS = {"max_path_depth": 512, "max_symlink_hops": 255}
_DEFAULT_LIMITS = Limits()
_active_limits = _DEFAULT_LIMITS


def limits() -> Limits:
    """The limits of this daemon process (the defaults until `install_limits`)."""
    return _active_limits


def install_limits(new: Limits) -> None:
    global _active_limits
    _active_limits = new


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
    log_level: str = "info"
    # How often sessions are retired by policy (ttl_idle, ttl_archived), and
    # how long the audit tombstone of a deleted session is kept.
    retire_interval_seconds: float = 60.0
    tombstone_retention_seconds: int = 90 * 86400
    # TLS for the TCP listeners (HTTP and gRPC): a PEM certificate chain and
    # its private key. Unix sockets never use TLS.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    # Requests per second (on average) and at once per API token; 0: no limit.
    # Operators (unix socket, the configured token) are never limited.
    rate_limit_per_second: float = 100.0
    rate_limit_burst: int = 200
    # Input limits (see Limits for what each bounds).
    max_body_bytes: int = _DEFAULT_LIMITS.max_body_bytes
    max_path_bytes: int = _DEFAULT_LIMITS.max_path_bytes
    max_name_bytes: int = _DEFAULT_LIMITS.max_name_bytes
    max_path_depth: int = _DEFAULT_LIMITS.max_path_depth
    max_file_bytes: int = _DEFAULT_LIMITS.max_file_bytes
    max_import_entries: int = _DEFAULT_LIMITS.max_import_entries
    max_import_bytes: int = _DEFAULT_LIMITS.max_import_bytes
    max_archive_ratio: int = _DEFAULT_LIMITS.max_archive_ratio
    archive_ratio_floor_bytes: int = _DEFAULT_LIMITS.archive_ratio_floor_bytes
    max_symlink_hops: int = _DEFAULT_LIMITS.max_symlink_hops
    max_batch_ops: int = _DEFAULT_LIMITS.max_batch_ops
    max_batch_read_paths: int = _DEFAULT_LIMITS.max_batch_read_paths
    max_batch_read_bytes: int = _DEFAULT_LIMITS.max_batch_read_bytes
    max_chunk_query: int = _DEFAULT_LIMITS.max_chunk_query
    # Answer MissingChunks truthfully (content-addressed uploads skip the
    # chunks the daemon holds). False: every hash is reported missing, so a
    # writer cannot learn whether any session holds a given chunk, at the cost
    # of uploading every chunk (docs/access.md).
    chunk_queries: bool = True

    def __post_init__(self) -> None:
        for f in fields(Limits):
            value = getattr(self, f.name)
            if type(value) is not int or value < 1:
                raise ValueError(f"{f.name} must be a positive integer, not {value!r}")
            ceiling = _CEILINGS.get(f.name)
            if ceiling is not None and value > ceiling:
                raise ValueError(f"{f.name} must be at most {ceiling}, not {value}")
        if type(self.chunk_queries) is not bool:
            raise ValueError(f"chunk_queries must be true or false, not {self.chunk_queries!r}")
        if self.max_name_bytes > self.max_path_bytes:
            raise ValueError("max_name_bytes must not exceed max_path_bytes")

    @property
    def limits(self) -> Limits:
        return Limits(**{f.name: getattr(self, f.name) for f in fields(Limits)})

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
        cfg = cls(**values)  # type: ignore[arg-type]
        # Loading is how a daemon process gets its configuration, and the
        # services are built without one: this is where its limits take hold.
        install_limits(cfg.limits)
        return cfg


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
