"""What a mount is asked to do (light: the CLI builds it without loading FUSE)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass


@dataclass
class MountConfig:
    session: str
    mountpoint: str
    cache_dir: str
    cache_size: int
    read_only: bool = False
    at: str = ""
    log_level: str = "info"
    server: str = ""  # for display only; the address itself comes from the environment
    # close() waits for the daemon (NFS-like close-to-open) instead of
    # returning once the change is journalled (journal.py).
    sync_close: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> MountConfig:
        return cls(**json.loads(text))
