"""Proto adapter for the bus service."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aether import pb
from aetherd.api.convert import ts
from aetherd.api.core import Runner
from aetherd.api.events import follow
from aetherd.services.bus import Bus, BusRecord
from aetherd.services.event_log import MAX_LIMIT, Page
from aetherd.services.state import Store


def bus_message(rec: BusRecord) -> pb.BusMessage:
    return pb.BusMessage(cursor=rec.cursor, session_id=rec.session_id, topic=rec.topic,
                         payload=rec.payload, content_type=rec.content_type, sender=rec.sender,
                         publish_time=ts(rec.time_ns))


class BusApi(pb.BusServiceBase):
    def __init__(self, store: Store, run: Runner) -> None:
        self.store, self.run = store, run
        self.bus = Bus(store)

    async def publish(self, message: pb.PublishRequest) -> pb.BusMessage:
        rec = await self.run(self.bus.publish, message.session_id, message.topic, message.payload,
                             message.content_type, message.sender)
        return bus_message(rec)

    async def read(self, message: pb.ReadBusRequest) -> pb.ReadBusResponse:
        recs, page = await self.run(self.bus.read, message.session_id, message.after,
                                    list(message.topics), message.limit)
        return pb.ReadBusResponse(messages=[bus_message(r) for r in recs],
                                  next_cursor=page.next_cursor)

    def follow(self, message: pb.ReadBusRequest) -> AsyncIterator[pb.BusMessage]:
        # Returns the generator itself (see EventsApi.follow). `limit` does not
        # apply: a follow pages internally until the client goes away.
        sid, topics = message.session_id, list(message.topics)

        async def read(after: int) -> tuple[list[pb.BusMessage], Page]:
            recs, page = await self.run(self.bus.read, sid, after, topics, MAX_LIMIT)
            return [bus_message(r) for r in recs], page

        return follow(self.store, sid, message.after, read)
