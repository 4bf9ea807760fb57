"""Health (the rest of observability arrives with the coordination surfaces)."""

from __future__ import annotations

import time

from aether import pb
from aetherd.api.core import Runner
from aetherd.services.state import Store

VERSION = "0.1.0"


class ObservabilityApi(pb.ObservabilityServiceBase):
    def __init__(self, store: Store, run: Runner) -> None:
        self.store, self.run = store, run
        self.started = time.monotonic()

    async def health(self, message: pb.HealthRequest) -> pb.HealthResponse:
        def check() -> dict[str, str]:
            self.store.db.one("SELECT 1")
            self.store.objects.blobs.has(["0" * 64])
            return {"metadata": "ok", "blobs": "ok"}

        try:
            checks = await self.run(check)
            status = "ok"
        except Exception as e:  # noqa: BLE001 - health reports, never raises
            checks, status = {"store": f"error: {type(e).__name__}"}, "degraded"
        return pb.HealthResponse(status=status, version=VERSION,
                                 uptime_seconds=int(time.monotonic() - self.started),
                                 checks=checks)
