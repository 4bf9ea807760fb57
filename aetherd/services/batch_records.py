"""Recorded answers of fs:apply batches sent with a batch id (exactly-once).

A client whose batch reached the daemon but whose answer was lost (the
connection broke, the daemon was restarted after the commit) cannot tell
whether the batch was applied, and sending it again could apply a rename or
a symlink twice. With a batch id the daemon records the answer in the
batch's own transaction; the same id again answers from the record and
applies nothing. An id sent with other changes is refused: it would
otherwise silently drop them.

Each session keeps its newest KEPT records. A client has one batch in
flight at a time and re-sends it before anything newer, so only a client
that re-sends a batch after KEPT newer batches of the same session (from
any client) have been applied can miss its record; its batch is then
applied again.
"""

from __future__ import annotations

import re
import time

import zstandard

from aether.errors import FailedPrecondition, InvalidArgument
from aetherd.store.db import Database

KEPT = 256
_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def check_id(batch_id: str) -> None:
    if not _ID.fullmatch(batch_id):
        raise InvalidArgument("batch_id: 1 to 128 characters of A-Z a-z 0-9 . _ : -",
                              field="batch_id")


def find(db: Database, session_id: str, batch_id: str, request_hash: str) -> bytes | None:
    """The recorded answer of this batch, if it was applied (call under the
    write lock, in the transaction that would apply it)."""
    row = db.one("SELECT request_hash, response FROM applied_batches "
                 "WHERE session_id=? AND batch_id=?", (session_id, batch_id))
    if row is None:
        return None
    if row[0] != request_hash:
        raise FailedPrecondition(f"batch id {batch_id!r} was already used for other changes",
                                 batch_id=batch_id)
    return zstandard.ZstdDecompressor().decompress(bytes(row[1]))


def record(db: Database, session_id: str, batch_id: str, request_hash: str,
           response: bytes) -> None:
    """Record a batch's answer (in its transaction) and forget the oldest past KEPT."""
    now = time.time_ns()
    db.execute("INSERT INTO applied_batches(session_id, batch_id, request_hash, response, "
               "created_ns) VALUES (?,?,?,?,?)",
               (session_id, batch_id, request_hash,
                zstandard.ZstdCompressor(level=3).compress(response), now))
    db.execute("DELETE FROM applied_batches WHERE session_id=? AND created_ns < ("
               "SELECT created_ns FROM applied_batches WHERE session_id=? "
               "ORDER BY created_ns DESC LIMIT 1 OFFSET ?)", (session_id, session_id, KEPT - 1))
