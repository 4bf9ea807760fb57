"""The session activity stream: writing events beside the changes they describe.

`emit` is called by every service *inside* the write transaction of the change,
so the event commits or rolls back with it, and it schedules a wake-up of live
followers for after the commit. Reading and following are in EventsReader.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import re
import time
from collections.abc import Iterator

from aether.errors import InvalidArgument
from aetherd.services.hub import Hub
from aetherd.store.db import Database

# The event types the daemon emits (documented in docs/api.md).
TYPES = (
    "session.created", "session.updated", "session.forked", "session.archived",
    "session.restored", "session.deleted",
    "file.written", "file.deleted", "file.patched", "dir.created", "dir.removed",
    "path.renamed", "path.copied", "symlink.created", "path.attributes_changed",
    "import.completed", "checkpoint.created", "checkpoint.deleted", "commit.created",
    "cache.written", "cache.deleted",
    "comment.created", "annotation.created", "annotation.deleted",
    "approval.requested", "approval.approved", "approval.rejected",
)


# The client-chosen name of where the current request comes from (the
# Aether-Origin header), recorded with each event it causes, so that a client
# can follow everyone's changes but its own. A label, not an identity: any
# caller may send any origin, and it only filters what that caller reads.
_ORIGIN: contextvars.ContextVar[str] = contextvars.ContextVar("aetherd_origin", default="")
_ORIGIN_FORM = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def check_origin(origin: str, what: str = "Aether-Origin") -> str:
    if origin and not _ORIGIN_FORM.fullmatch(origin):
        raise InvalidArgument(f"{what}: 1 to 64 characters of A-Z a-z 0-9 . _ : -",
                              parameter=what)
    return origin


@contextlib.contextmanager
def from_origin(origin: str) -> Iterator[None]:
    """Serve the calls inside as coming from `origin` (checked; "" for none)."""
    token = _ORIGIN.set(check_origin(origin))
    try:
        yield
    finally:
        _ORIGIN.reset(token)


class Events:
    def __init__(self, db: Database, hub: Hub) -> None:
        self.db = db
        self.hub = hub

    def emit(self, session_id: str, type_: str, path: str = "", actor: str = "",
             **attributes: object) -> int:
        """Append an event in the caller's write transaction; returns its cursor."""
        assert type_ in TYPES, type_
        row = self.db.one(
            "SELECT COALESCE(MAX(cursor), 0) + 1 FROM events WHERE session_id=?", (session_id,)
        )
        cursor = int(row[0]) if row else 1
        self.db.execute(
            "INSERT INTO events(session_id, cursor, type, path, actor, attributes, time_ns, "
            "origin) VALUES (?,?,?,?,?,?,?,?)",
            (session_id, cursor, type_, path, actor,
             json.dumps({k: str(v) for k, v in attributes.items()}), time.time_ns(),
             _ORIGIN.get()),
        )
        self.db.after_commit(lambda: self.hub.notify(session_id))
        return cursor
