"""A thin apsw wrapper: one connection per thread, WAL, explicit transactions.

The daemon runs store work on a small thread pool (SQLite calls would stall the
event loop), so every thread gets its own connection. WAL lets readers run
next to the single writer; writers take the lock up front (BEGIN IMMEDIATE) so
two of them never deadlock upgrading from a read lock.

A write that fails because the disk is full, or because it would commit a
reference to an object gc has freed, rolls back whole and surfaces as a typed
error (StorageFull, Unavailable) rather than an anonymous 500.
"""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import apsw

from aether.errors import AetherError, StorageFull, Unavailable
from aetherd.store.schema import DANGLING_REFERENCE

BUSY_TIMEOUT_MS = 30_000
# With background checkpoints: a commit still checkpoints by itself past this
# many WAL pages (a backstop for when the checkpointer cannot keep up), and
# the WAL file is cut back to this size when it restarts.
BACKSTOP_PAGES = 16_384
WAL_KEEP_BYTES = 64 << 20

log = logging.getLogger("aetherd.store")


class Database:
    def __init__(self, path: Path, schema: str, *, synchronous: str = "FULL",
                 page_size: int = 0, background_checkpoints: bool = False) -> None:
        """`page_size` applies to a database file made now (an existing one
        keeps its own). `background_checkpoints`: copying the WAL into the
        database (and its fsync) happens on a thread of its own after commits,
        instead of inside the commit that crosses SQLite's threshold; commits
        are as durable (the WAL is fsynced), only their latency changes."""
        self.path = path
        self._synchronous = synchronous
        self._page_size = page_size
        self._local = threading.local()
        self._all: list[apsw.Connection] = []
        self._lock = threading.Lock()
        self._checkpointer = _Checkpointer(self) if background_checkpoints else None
        conn = self.connection()
        conn.execute(schema)

    def connection(self) -> apsw.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = apsw.Connection(str(self.path))
            conn.setbusytimeout(BUSY_TIMEOUT_MS)
            if self._page_size:  # before WAL mode: it only takes on a new file
                conn.execute(f"PRAGMA page_size={self._page_size}")
            conn.execute("PRAGMA journal_mode=WAL")
            if self._checkpointer is not None:
                conn.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")
                conn.execute(f"PRAGMA journal_size_limit={WAL_KEEP_BYTES}")
            # FULL: a commit is fsynced before it is acknowledged, so an
            # acknowledged write survives a crash of the daemon or the host.
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA cache_size=-65536")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def write(self) -> Iterator[apsw.Connection]:
        """A write transaction; nested use joins the outer one."""
        conn = self.connection()
        if not conn.getautocommit():
            with conn:  # savepoint inside the running transaction
                yield conn
            return
        conn.execute("BEGIN IMMEDIATE")
        self._local.after = []
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            # SQLite may already have rolled back by itself (SQLITE_FULL and
            # I/O errors can do that, also on COMMIT).
            if not conn.getautocommit():
                conn.execute("ROLLBACK")
            self._local.after = []
            typed = self._typed(conn, exc)
            if typed is None:
                raise
            raise typed from exc
        callbacks, self._local.after = self._local.after, []
        for fn in callbacks:
            fn()
        if self._checkpointer is not None:
            self._checkpointer.poke()

    def _typed(self, conn: apsw.Connection, exc: BaseException) -> AetherError | None:
        """The API error a failed write transaction means, if it is one we expect."""
        if isinstance(exc, apsw.FullError) or (
                isinstance(exc, apsw.IOError) and conn.system_errno == errno.ENOSPC):
            return StorageFull(
                f"no space left on the disk of the data directory ({self.path.name} could not "
                "grow): the request changed nothing; free some space and retry",
                database=self.path.name, reason="disk_full")
        if isinstance(exc, apsw.ConstraintError) and DANGLING_REFERENCE in str(exc):
            # Raised by the reference triggers of the schema: the request stored
            # its objects, then a concurrent `aetherd gc` freed them before the
            # row naming them could commit. Retrying stores them again.
            return Unavailable(
                "content this request stored was freed by a concurrent `aetherd gc` before "
                "the request could commit; nothing was changed, retry the request "
                "(a longer gc grace period avoids this)", reason="gc_race")
        return None

    def after_commit(self, fn: Callable[[], Any]) -> None:
        """Run fn once the current write transaction has committed (never on rollback).

        Live followers are woken this way: a follower woken before the commit
        would look, find nothing yet, and sleep through the change.
        """
        after = getattr(self._local, "after", None)
        if after is None or self.connection().getautocommit():
            fn()
        else:
            after.append(fn)

    @contextmanager
    def read(self) -> Iterator[apsw.Connection]:
        """A consistent snapshot for several reads (joins a running transaction)."""
        conn = self.connection()
        if not conn.getautocommit():
            yield conn
            return
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def query(self, sql: str, params: Any = ()) -> list[tuple]:
        return list(self.connection().execute(sql, params))

    def one(self, sql: str, params: Any = ()) -> tuple | None:
        for row in self.connection().execute(sql, params):
            return row
        return None

    def execute(self, sql: str, params: Any = ()) -> None:
        self.connection().execute(sql, params)

    def executemany(self, sql: str, rows: Any) -> None:
        self.connection().executemany(sql, rows)

    def run(self, fn: Callable[[apsw.Connection], Any]) -> Any:
        with self.write() as conn:
            return fn(conn)

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
        with self._lock:
            for conn in self._all:
                try:
                    conn.close()
                except apsw.Error:
                    pass
            self._all.clear()
        self._local = threading.local()


class _Checkpointer:
    """Checkpoints a database's WAL between commits, on a thread of its own.

    PASSIVE: it copies what no reader still needs and never waits for (or
    blocks) readers and writers. A failure is logged and retried at the next
    commit; the WAL keeps the data either way."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def poke(self) -> None:
        if self._thread is None:
            with self._start_lock:
                if self._thread is None and not self._stopping:
                    self._thread = threading.Thread(
                        target=self._run, name=f"checkpoint-{self.db.path.name}", daemon=True)
                    self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            try:
                self.db.connection().execute("PRAGMA wal_checkpoint(PASSIVE)")
            except apsw.Error as exc:
                log.warning("checkpoint of %s failed (%s); the next commit tries again",
                            self.db.path.name, exc)

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
