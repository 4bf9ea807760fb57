"""Proto adapter for the events service, and the live-follow loop the bus shares."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TypeVar

from aether import pb
from aetherd.api.convert import ts
from aetherd.api.core import Runner
from aetherd.services.event_log import MAX_LIMIT, EventLog, EventRecord, Page
from aetherd.services.events import check_origin
from aetherd.services.state import Store

T = TypeVar("T")

# A follower re-reads at least this often even without a wake-up. The hub
# carries no data, so this bounds what a lost wake-up can cost: latency, never
# a message.
RECHECK_SECONDS = 15.0


async def follow(store: Store, session_id: str, after: int,
                 read: Callable[[int], Awaitable[tuple[Iterable[T], Page]]]) -> AsyncIterator[T]:
    """Everything after `after`, then whatever commits next, each item once, in order.

    `read(after)` returns one page. The wake-up is armed before each read: a
    commit that lands between our read and our wait then still wakes us
    instead of sleeping until the recheck. Ends with the read's error (e.g.
    not_found once the session is gone); closing the generator stops it.
    """
    while True:
        wake = asyncio.ensure_future(store.hub.wait(session_id, RECHECK_SECONDS))
        try:
            await asyncio.sleep(0)  # let `wake` register with the hub before we read
            while True:
                items, page = await read(after)
                for item in items:
                    yield item
                after = page.next_cursor
                if not page.more:
                    break
            await wake
        finally:
            wake.cancel()


def event(rec: EventRecord) -> pb.Event:
    return pb.Event(cursor=rec.cursor, session_id=rec.session_id, type=rec.type, path=rec.path,
                    actor=rec.actor, attributes=rec.attributes, time=ts(rec.time_ns),
                    origin=rec.origin)


class EventsApi(pb.EventServiceBase):
    def __init__(self, store: Store, run: Runner) -> None:
        self.store, self.run = store, run
        self.log = EventLog(store)

    async def list_events(self, message: pb.ListEventsRequest) -> pb.ListEventsResponse:
        recs, page = await self.run(self.log.list, message.session_id, message.after,
                                    list(message.types), message.limit,
                                    check_origin(message.exclude_origin, "exclude_origin"))
        return pb.ListEventsResponse(events=[event(r) for r in recs],
                                     next_cursor=page.next_cursor)

    def follow(self, message: pb.ListEventsRequest) -> AsyncIterator[pb.Event]:
        # A plain function returning the generator (both transports accept
        # that), so closing the stream closes `follow` itself, not a wrapper.
        sid, types = message.session_id, list(message.types)
        exclude = check_origin(message.exclude_origin, "exclude_origin")

        async def read(after: int) -> tuple[list[pb.Event], Page]:
            recs, page = await self.run(self.log.list, sid, after, types, MAX_LIMIT, exclude)
            return [event(r) for r in recs], page

        return follow(self.store, sid, message.after, read)
