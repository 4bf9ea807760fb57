"""Wakes live followers (bus and event streams) when a session gets new rows.

Writers run on the store's worker threads; followers are asyncio tasks. A
writer calls `notify(session_id)` after its transaction commits
(Database.after_commit); every follower of that session waiting in `wait()`
wakes up and reads what is new from the database. The database stays the one
source of truth: the hub carries no data, so a missed wake-up costs at most
one `wait()` timeout, never a message.
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict

from aether.errors import Unavailable

SHUTTING_DOWN = "the daemon is shutting down; follow again from your last cursor"


class Hub:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._lock = threading.Lock()
        self._closed = False

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def notify(self, session_id: str) -> None:
        """Thread-safe; call after the change is committed."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with self._lock:
            events = list(self._waiters.get(session_id, ()))
        for ev in events:
            loop.call_soon_threadsafe(ev.set)

    async def wait(self, session_id: str, timeout: float) -> None:
        """Return when the session may have new rows, or after `timeout` seconds.
        Raises Unavailable once the hub is closed (the daemon is stopping), so
        live followers end promptly instead of holding up the shutdown."""
        ev = asyncio.Event()
        with self._lock:
            if self._closed:
                raise Unavailable(SHUTTING_DOWN)
            self._waiters[session_id].add(ev)
        try:
            await asyncio.wait_for(ev.wait(), timeout)
        except TimeoutError:
            pass
        finally:
            with self._lock:
                self._waiters[session_id].discard(ev)
                if not self._waiters[session_id]:
                    del self._waiters[session_id]
        if self._closed:
            raise Unavailable(SHUTTING_DOWN)

    def close(self) -> None:
        """End every follower: each waiting one wakes and raises Unavailable."""
        with self._lock:
            self._closed = True
            events = [ev for evs in self._waiters.values() for ev in evs]
        for ev in events:
            ev.set()  # called on the loop that owns the waiters
