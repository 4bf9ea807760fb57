"""Request rate limits per API token: a token bucket each.

A token may send `rate` requests a second on average and `burst` at once;
beyond that a request is refused with `resource_exhausted` (HTTP 429 with
Retry-After) before any work is done. Operators (the socket owner, the
configured token) are not limited: they own the daemon. Buckets live in
memory: a restart forgives everyone, which is fine for a limit meant to keep
one runaway client from starving the rest.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from aether.errors import ResourceExhausted

_MAX_BUCKETS = 10_000


class RateLimiter:
    def __init__(self, rate: float, burst: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, key: str) -> None:
        """Spend one request of `key`'s allowance, or raise ResourceExhausted."""
        if not self.enabled:
            return
        now = self.clock()
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            wait = (1.0 - tokens) / self.rate
            raise ResourceExhausted(
                f"rate limit: at most {self.rate:g} requests a second (bursts of "
                f"{self.burst}) per token; retry in {wait:.2f}s",
                retry_after_seconds=str(max(1, math.ceil(wait))))
        self._buckets[key] = (tokens - 1.0, now)
        if len(self._buckets) > _MAX_BUCKETS:
            self._forget_full(now)

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have refilled: forgetting them changes nothing."""
        full = [k for k, (t, at) in self._buckets.items()
                if t + (now - at) * self.rate >= self.burst]
        for k in full:
            del self._buckets[k]
