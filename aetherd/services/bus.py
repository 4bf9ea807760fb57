"""The per-session message bus: publish, and read history after a cursor.

Messages are rows of the `bus` table, numbered per session from 1 under the
write lock, so every reader sees them in one order and can resume from the
last cursor it saw. Live delivery is a reader woken by the hub after commit
(see api/events.follow). The bus is its own stream: publishing emits no event.
"""

from __future__ import annotations

import time
import unicodedata
from dataclasses import dataclass

from aether.errors import FailedPrecondition, InvalidArgument, ResourceExhausted
from aetherd.services import quota
from aetherd.services.event_log import Page, read_after
from aetherd.services.state import ARCHIVED, Store

# Retention: the newest RETENTION messages of each session are kept; publishing
# deletes older ones in the same transaction. Bounds the table (10,000 x up to
# 1 MiB per session in the worst case) without a background job. A reader
# that falls further behind sees the jump in cursors.
RETENTION = 10_000
MAX_PAYLOAD_BYTES = 1 << 20
MAX_TOPIC_BYTES = 256
MAX_LABEL_CHARS = 256  # content type and sender
# Payload bytes per read page: with base64 over JSON a full page stays under
# the 4 MiB most gRPC clients accept by default; one message always fits.
READ_BUDGET_BYTES = 3 << 20

_COLUMNS = "cursor, topic, payload, content_type, sender, time_ns"


@dataclass
class BusRecord:
    cursor: int
    session_id: str
    topic: str
    payload: bytes
    content_type: str
    sender: str
    time_ns: int


def check_topic(topic: str, what: str = "topic") -> None:
    try:
        size = len(topic.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidArgument(f"{what} is not valid UTF-8", parameter=what) from None
    if not 1 <= size <= MAX_TOPIC_BYTES:
        raise InvalidArgument(f"{what} must be 1 to {MAX_TOPIC_BYTES} bytes of UTF-8, got {size}",
                              parameter=what, limit=str(MAX_TOPIC_BYTES))
    _no_control(topic, what)


def _check_label(value: str, what: str) -> None:
    if len(value) > MAX_LABEL_CHARS:
        raise InvalidArgument(f"{what} is longer than {MAX_LABEL_CHARS} characters",
                              parameter=what, limit=str(MAX_LABEL_CHARS))
    _no_control(value, what)


def _no_control(value: str, what: str) -> None:
    # Topics become SSE `event:` lines and show up in terminals and logs.
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in value):
        raise InvalidArgument(f"{what} contains a control character", parameter=what)


class Bus:
    def __init__(self, store: Store, retention: int = RETENTION) -> None:
        if retention < 1:
            raise ValueError("retention must keep at least one message")
        self.store = store
        self.retention = retention

    def publish(self, session_id: str, topic: str, payload: bytes, content_type: str = "",
                sender: str = "") -> BusRecord:
        check_topic(topic)
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise ResourceExhausted(
                f"payload is {len(payload)} bytes, over the limit of {MAX_PAYLOAD_BYTES}",
                size=str(len(payload)), limit=str(MAX_PAYLOAD_BYTES))
        _check_label(content_type, "content_type")
        _check_label(sender, "sender")
        db = self.store.db
        now = time.time_ns()
        with db.write():
            rec = self.store.session(session_id)
            if rec.state == ARCHIVED:
                raise FailedPrecondition(f"session {session_id} is archived: its bus is read-only",
                                         session_id=session_id)
            row = db.one("SELECT COALESCE(MAX(cursor), 0) + 1 FROM bus WHERE session_id=?",
                         (session_id,))
            cursor = int(row[0]) if row else 1
            db.execute(
                "INSERT INTO bus(session_id, cursor, topic, payload, content_type, sender, "
                "time_ns) VALUES (?,?,?,?,?,?,?)",
                (session_id, cursor, topic, payload, content_type, sender, now),
            )
            # Cursors have no gaps, so "older than the newest N" is one range.
            db.execute("DELETE FROM bus WHERE session_id=? AND cursor<=?",
                       (session_id, cursor - quota.bus_retention(rec, self.retention)))
            db.after_commit(lambda: self.store.hub.notify(session_id))
        return BusRecord(cursor, session_id, topic, payload, content_type, sender, now)

    def read(self, session_id: str, after: int, topics: list[str],
             limit: int) -> tuple[list[BusRecord], Page]:
        for t in topics:
            check_topic(t, "topics")
        db = self.store.db
        with db.read():
            self.store.session(session_id)
            page = read_after(db, "bus", _COLUMNS, session_id, after, "topic",
                              sorted(set(topics)), limit, budget_column=2,
                              budget=READ_BUDGET_BYTES)
        return [BusRecord(c, session_id, t, bytes(p), ct, s, ns)
                for c, t, p, ct, s, ns in page.rows], page
