"""Proto adapter for observability: daemon and session health, usage, analytics.

The service also owns the daemon's Prometheus metrics (`self.metrics`): it is
the one object both transports already receive, so the HTTP shim and the gRPC
server record into, and /metrics renders, the same registry.
"""

from __future__ import annotations

import time

from aether import pb
from aetherd.api.convert import ts
from aetherd.api.core import Runner
from aetherd.metrics import Metrics
from aetherd.services.sessions import Sessions
from aetherd.services.state import Store
from aetherd.services.usage import Usage

VERSION = "0.1.0"


class ObservabilityApi(pb.ObservabilityServiceBase):
    def __init__(self, store: Store, run: Runner) -> None:
        self.store, self.run = store, run
        self.started = time.monotonic()
        self.usage = Usage(store, Sessions(store))
        self.metrics = Metrics(store, run)

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

    async def get_session_health(self, message: pb.SessionHealthRequest) -> pb.SessionHealth:
        status, checks = await self.run(self.usage.health, message.session_id)
        return pb.SessionHealth(session_id=message.session_id, status=status, checks=checks)

    async def get_usage(self, message: pb.SessionUsageRequest) -> pb.SessionUsage:
        u = await self.run(self.usage.usage, message.session_id)
        return pb.SessionUsage(
            session_id=message.session_id, files=u.files, directories=u.directories,
            bytes=u.bytes, unique_blob_bytes=u.unique_blob_bytes, dedup_ratio=u.dedup_ratio,
            cache_keys=u.cache_keys, cache_bytes=u.cache_bytes, bus_backlog=u.bus_backlog,
            checkpoints=u.checkpoints, commits=u.commits,
        )

    async def get_analytics(self, message: pb.SessionAnalyticsRequest) -> pb.SessionAnalytics:
        windows = await self.run(self.usage.analytics, message.session_id,
                                 message.window_seconds)
        return pb.SessionAnalytics(session_id=message.session_id, windows=[
            pb.AnalyticsWindow(
                start_time=ts(w.start_ns), end_time=ts(w.end_ns),
                operations=[pb.OperationCount(operation=k, count=v)
                            for k, v in sorted(w.counts.items())])
            for w in windows
        ])
