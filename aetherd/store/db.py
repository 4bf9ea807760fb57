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
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import apsw

from aether.errors import AetherError, StorageFull, Unavailable
from aetherd.store.schema import DANGLING_REFERENCE

BUSY_TIMEOUT_MS = 30_000


class Database:
    def __init__(self, path: Path, schema: str, *, synchronous: str = "FULL") -> None:
        self.path = path
        self._synchronous = synchronous
        self._local = threading.local()
        self._all: list[apsw.Connection] = []
        self._lock = threading.Lock()
        conn = self.connection()
        conn.execute(schema)

    def connection(self) -> apsw.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = apsw.Connection(str(self.path))
            conn.setbusytimeout(BUSY_TIMEOUT_MS)
            conn.execute("PRAGMA journal_mode=WAL")
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
        with self._lock:
            for conn in self._all:
                try:
                    conn.close()
                except apsw.Error:
                    pass
            self._all.clear()
        self._local = threading.local()
