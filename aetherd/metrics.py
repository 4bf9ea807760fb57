"""Prometheus metrics of one daemon: request counts and latencies of both
transports, and store gauges read at scrape time.

Each daemon has its own registry rather than prometheus_client's global one:
tests and tools open several daemons in one process, and two of them must not
share (or collide on) series.

Label values are bounded by construction: `route` is a route template
("GET /v1/sessions/{session_id}/files/{path}") or a gRPC method path from the
service mapping, never a raw request path; requests that match no route are
"unmatched". `code` is the HTTP status or the gRPC status name.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from aether import pb
from aetherd.services.state import Store
from aetherd.store.blobs import SqliteBlobStore

log = logging.getLogger("aetherd.metrics")

UNMATCHED = "unmatched"
# Local calls take well under a millisecond; the default buckets start at 5 ms.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                   1.0, 2.5, 5.0, 10.0, 30.0)

Runner = Callable[..., Any]

# `*_created` samples (one per series, the time it first appeared) double what
# Prometheus stores and nobody here graphs them. Process-wide by design of the
# library; the daemon's process is the only user.
disable_created_metrics()


class Metrics:
    def __init__(self, store: Store, run: Runner) -> None:
        self.run = run
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.requests = Counter(
            "aetherd_requests", "Requests served, by transport, route or RPC, and status code.",
            ("transport", "route", "code"), registry=self.registry)
        self.latency = Histogram(
            "aetherd_request_duration_seconds",
            "Time to serve a request, by transport, route or RPC, and status code. "
            "Live follows (server-sent events, gRPC Follow) are counted but not timed: "
            "their duration is how long the client listened.",
            ("transport", "route", "code"), buckets=LATENCY_BUCKETS, registry=self.registry)
        self.open_streams = Gauge(
            "aetherd_open_streams",
            "Live follows (server-sent events, gRPC Follow) being served, by transport.",
            ("transport",), registry=self.registry)
        self.registry.register(StoreCollector(store))

    def observe(self, transport: str, route: str, code: str, started: float, *,
                timed: bool = True) -> None:
        """Record one finished request; `started` is its time.perf_counter()."""
        self.requests.labels(transport, route, code).inc()
        if timed:
            self.latency.labels(transport, route, code).observe(time.perf_counter() - started)

    async def render(self, accept: str) -> tuple[bytes, str]:
        """(body, content type) of a scrape. Runs on the store's worker pool:
        the store gauges query SQLite, which must not stall the event loop."""
        encoder, content_type = choose_encoder(accept)
        return await self.run(encoder, self.registry), content_type


class StoreCollector:
    """Store-wide gauges, computed when scraped.

    Each is one aggregate query or a stat() call: sessions by state
    (O(sessions)), chunk, cache and bus row counts (O(rows): SQLite counts
    b-tree cells, it does not read large values), and database file sizes
    (O(1)). Scrape every 15 s or slower on stores with millions of chunks.
    A failing store does not fail the scrape: `aetherd_store_up` says 0.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    def describe(self) -> list[Metric]:
        # Registering must not query the store; the names are fixed anyway.
        return []

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("aetherd_store_up", "1 if the store answered this scrape.")
        try:
            gauges = list(self._gauges())
        except Exception:  # noqa: BLE001 - a scrape reports, never raises
            log.exception("store metrics failed")
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from gauges

    def _gauges(self) -> Iterator[Metric]:
        db, blobs = self.store.db, self.store.objects.blobs
        with db.read():
            by_state = dict(db.query("SELECT state, count(*) FROM sessions GROUP BY state"))
            cache = db.one("SELECT count(*) FROM cache")[0]
            bus = db.one("SELECT count(*) FROM bus")[0]
        sessions = GaugeMetricFamily("aetherd_sessions", "Sessions, by state.", labels=["state"])
        for state in (pb.SessionState.ACTIVE, pb.SessionState.ARCHIVED):
            sessions.add_metric([state.name.lower()], by_state.get(int(state), 0))
        yield sessions
        yield GaugeMetricFamily("aetherd_cache_entries",
                                "Knowledge-cache entries over all sessions (expired ones "
                                "not yet removed included).", value=cache)
        yield GaugeMetricFamily("aetherd_bus_messages",
                                "Bus messages retained over all sessions.", value=bus)
        if isinstance(blobs, SqliteBlobStore):  # a remote blob store would report its own
            yield GaugeMetricFamily("aetherd_blob_chunks", "Distinct chunks in the blob store.",
                                    value=blobs.db.one("SELECT count(*) FROM chunks")[0])
        files = GaugeMetricFamily("aetherd_store_file_bytes",
                                  "Size on disk of the store's database files (WAL included).",
                                  labels=["file"])
        for name in ("meta.db", "meta.db-wal", "blobs.db", "blobs.db-wal"):
            try:
                size = os.stat(self.store.data_dir / name).st_size
            except FileNotFoundError:
                size = 0
            files.add_metric([name], size)
        yield files
