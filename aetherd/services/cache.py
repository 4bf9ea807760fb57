"""The knowledge cache: bytes by key in each session, versioned for compare-and-set.

Decisions (docs/api.md, "Knowledge cache", says the same to users):

- Versions come from a per-session revision counter (`counters.cache_revision`):
  each write transaction takes the next revision and every key it writes gets
  it as its version. A key's version therefore only grows and is never reused
  in the session, not even after a delete and re-create, so a compare-and-set
  holding a stale version can never hit a newer incarnation of the key (no ABA).
  Versions are not consecutive. Version 0 means "absent".
- A failed compare-and-set is an answer, not an error: `swapped=false` plus the
  current metadata (none when the key is absent), so a client retries with no
  second round trip and `conflict` stays reserved for requests that cannot be
  answered.
- An entry whose `expires_ns <= now` is absent for every operation. Its row is
  removed when its key is written or deleted, by delete-by-prefix, and by a
  sweep of the session's expired rows that a write transaction runs when one is
  due (`counters.cache_sweep_ns`, at most once per SWEEP_INTERVAL_NS, because
  the sweep scans the session's cache). Expiry emits no event.
- Hits and misses are counted by get and batch-get only (exists and metadata
  are probes). Counts gather in memory (`HitTally`, one per store) and reach
  the `counters` table TALLY_FLUSH_SECONDS after the first unstored count, and
  when the daemon closes: a get never waits for a write transaction (an
  fsync, ~4 ms), and stats add what is pending. A daemon that is killed loses
  at most the last second of counts, never an entry.
- Delete of an absent key answers `deleted: 0`; delete-by-prefix refuses the
  empty prefix, because proto3 cannot tell it from a forgotten field.
- Fork (`copy_for_fork`) copies the parent's live rows into the child with one
  INSERT ... SELECT in the fork's transaction: O(cache rows and bytes), unlike
  the file tree's O(1) fork. Sharing rows copy-on-write would need a base plus
  overlay like the file tree; for a cache of at most a few thousand small
  values the copy is cheaper than that machinery. Hit/miss counts start at
  zero in the child; versions carry over.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from aether.errors import InvalidArgument, NotFound, ResourceExhausted
from aetherd.services import quota
from aetherd.services.state import Store
from aetherd.store.db import Database

# Limits, part of the API (docs/api.md).
MAX_KEY_BYTES = 1024  # UTF-8 bytes; keys are 1..1024 bytes, no NUL
MAX_VALUE_BYTES = 16 << 20  # one value
MAX_BATCH_ITEMS = 1000  # keys or items in one batch call
MAX_BATCH_BYTES = 64 << 20  # values in one batch-set request or batch-get reply
MAX_CONTENT_TYPE_BYTES = 256
MAX_TTL_SECONDS = 10 * 365 * 24 * 3600
DEFAULT_PAGE, MAX_PAGE = 1000, 10_000
DEFAULT_CONTENT_TYPE = "application/octet-stream"
SWEEP_INTERVAL_NS = 1_000_000_000
TALLY_FLUSH_SECONDS = 1.0

REVISION, SWEEP = "cache_revision", "cache_sweep_ns"
HITS, MISSES = "cache_hits", "cache_misses"

_META = "key, version, length(value), content_type, created_ns, updated_ns, expires_ns"
_LIVE = "(expires_ns = 0 OR expires_ns > ?)"


@dataclass(frozen=True)
class EntryMeta:
    key: str
    version: int
    size: int
    content_type: str
    created_ns: int
    updated_ns: int
    expires_ns: int  # 0 = never


@dataclass(frozen=True)
class NewValue:
    """A validated value to write (put, compare-and-set, one batch-set item)."""

    key: str
    value: bytes
    content_type: str
    ttl_seconds: int


# ---- validation (before any transaction, so a bad batch writes nothing)


def check_key(key: str, what: str = "key") -> str:
    _check_text(key, what)
    if not key:
        raise InvalidArgument(f"{what} must not be empty", parameter=what)
    return key


def check_prefix(prefix: str, what: str = "prefix") -> str:
    _check_text(prefix, what)
    return prefix


def _check_text(text: str, what: str) -> None:
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidArgument(f"{what} is not valid UTF-8", parameter=what) from None
    if size > MAX_KEY_BYTES:
        raise InvalidArgument(f"{what} is {size} bytes; the limit is {MAX_KEY_BYTES}",
                              parameter=what, limit=str(MAX_KEY_BYTES))
    if "\x00" in text:
        raise InvalidArgument(f"{what} must not contain NUL", parameter=what)


def new_value(key: str, value: bytes, content_type: str, ttl_seconds: int,
              where: str = "") -> NewValue:
    """Validate one write; `where` prefixes field names in errors ("items[3].")."""
    check_key(key, f"{where}key")
    if len(value) > MAX_VALUE_BYTES:
        raise ResourceExhausted(
            f"{where}value is {len(value)} bytes; the limit is {MAX_VALUE_BYTES}",
            key=key, limit=str(MAX_VALUE_BYTES))
    content_type = content_type or DEFAULT_CONTENT_TYPE
    if (len(content_type) > MAX_CONTENT_TYPE_BYTES
            or not all(" " <= c <= "~" for c in content_type)):
        raise InvalidArgument(
            f"{where}content_type must be printable ASCII of at most "
            f"{MAX_CONTENT_TYPE_BYTES} bytes", parameter=f"{where}content_type")
    if ttl_seconds > MAX_TTL_SECONDS:
        raise InvalidArgument(
            f"{where}ttl_seconds is {ttl_seconds}; the limit is {MAX_TTL_SECONDS} (0 = no expiry)",
            parameter=f"{where}ttl_seconds")
    return NewValue(key, bytes(value), content_type, ttl_seconds)


def _check_batch(n: int, what: str) -> None:
    if n > MAX_BATCH_ITEMS:
        raise InvalidArgument(f"{n} {what} in one batch; the limit is {MAX_BATCH_ITEMS}",
                              limit=str(MAX_BATCH_ITEMS))


def _unique(keys: list[str]) -> list[str]:
    _check_batch(len(keys), "keys")
    return list(dict.fromkeys(check_key(k, f"keys[{i}]") for i, k in enumerate(keys)))


def _prefix_end(prefix: str) -> str | None:
    """The least string above every string starting with `prefix` (None: no bound).

    Keys compare as UTF-8 bytes, which is code point order, so bumping the last
    code point bounds the range and the primary key index serves prefix scans.
    """
    while prefix:
        last = ord(prefix[-1]) + 1
        if last == 0xD800:
            last = 0xE000  # surrogates cannot occur in a key
        if last <= 0x10FFFF:
            return prefix[:-1] + chr(last)
        prefix = prefix[:-1]
    return None


def _meta(row: tuple) -> EntryMeta:
    return EntryMeta(row[0], row[1], row[2], row[3], row[4], row[5], row[6])


def _current(db: Database, session_id: str, key: str, now: int) -> EntryMeta | None:
    row = db.one(f"SELECT {_META} FROM cache WHERE session_id=? AND key=? AND {_LIVE}",
                 (session_id, key, now))
    return _meta(row) if row else None


class _Write:
    """One cache write transaction of one session (made by Cache._writing)."""

    def __init__(self, store: Store, session_id: str, now: int) -> None:
        self.db, self.events = store.db, store.events
        self.sid, self.now = session_id, now
        self._revision = 0

    def current(self, key: str) -> EntryMeta | None:
        return _current(self.db, self.sid, key, self.now)

    def revision(self) -> int:
        # One revision per transaction: a batch's keys share it, like etcd's.
        if not self._revision:
            self._revision = self._bump(REVISION, 1, "value + excluded.value")
        return self._revision

    def set(self, v: NewValue, op: str) -> EntryMeta:
        expires = self.now + v.ttl_seconds * 1_000_000_000 if v.ttl_seconds else 0
        version = self.revision()
        # A key that had expired is a new key: it gets a fresh created time.
        (created,) = self.db.query(
            "INSERT INTO cache(session_id, key, value, content_type, version, created_ns,"
            " updated_ns, expires_ns) VALUES (?,?,?,?,?,?,?,?) "
            "ON CONFLICT(session_id, key) DO UPDATE SET value=excluded.value,"
            " content_type=excluded.content_type, version=excluded.version,"
            " updated_ns=excluded.updated_ns, expires_ns=excluded.expires_ns,"
            " created_ns=CASE WHEN cache.expires_ns = 0 OR cache.expires_ns > excluded.updated_ns"
            " THEN cache.created_ns ELSE excluded.created_ns END "
            "RETURNING created_ns",
            (self.sid, v.key, v.value, v.content_type, version, self.now, self.now, expires),
        )[0]
        if expires:
            # Never earlier than a sweep interval from now: bounds sweeps to one
            # per interval however many short-lived keys are written.
            due = max(expires, self.now + SWEEP_INTERVAL_NS)
            self._bump(SWEEP, due, "CASE WHEN value = 0 THEN excluded.value"
                                   " ELSE MIN(value, excluded.value) END")
        self.events.emit(self.sid, "cache.written", v.key, op=op, version=version,
                         size=len(v.value), content_type=v.content_type)
        return EntryMeta(v.key, version, len(v.value), v.content_type, created, self.now,
                         expires)

    def remove(self, key: str) -> bool:
        """Delete a key's row; True if it was live (expired rows go silently)."""
        rows = self.db.query("DELETE FROM cache WHERE session_id=? AND key=? RETURNING expires_ns",
                             (self.sid, key))
        live = bool(rows) and (rows[0][0] == 0 or rows[0][0] > self.now)
        if live:
            self.events.emit(self.sid, "cache.deleted", key)
        return live

    def sweep_if_due(self) -> None:
        row = self.db.one("SELECT value FROM counters WHERE session_id=? AND name=?",
                          (self.sid, SWEEP))
        if row is None or row[0] == 0 or row[0] > self.now:
            return
        self.db.execute("DELETE FROM cache WHERE session_id=? AND expires_ns BETWEEN 1 AND ?",
                        (self.sid, self.now))
        (nxt,) = self.db.one(
            "SELECT MIN(expires_ns) FROM cache WHERE session_id=? AND expires_ns > 0", (self.sid,))
        due = max(nxt, self.now + SWEEP_INTERVAL_NS) if nxt else 0
        self.db.execute("UPDATE counters SET value=? WHERE session_id=? AND name=?",
                        (due, self.sid, SWEEP))

    def _bump(self, name: str, value: int, update: str) -> int:
        (out,) = self.db.query(
            "INSERT INTO counters(session_id, name, value) VALUES (?,?,?) "
            f"ON CONFLICT(session_id, name) DO UPDATE SET value = {update} RETURNING value",
            (self.sid, name, value),
        )[0]
        return out


class HitTally:
    """Hit and miss counts not yet in the database, for every session of a store.

    The first count after a flush arms a timer that flushes TALLY_FLUSH_SECONDS
    later on its own thread, so gets never wait for a commit. `flush` holds
    `_flushing` from its snapshot until the snapshot is committed and
    subtracted, and `totals` takes it too, so a reader sees each count exactly
    once: still pending or already stored.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._lock = threading.Lock()  # guards _pending and _timer; never held across I/O
        self._flushing = threading.Lock()
        self._pending: dict[str, list[int]] = {}
        self._timer: threading.Timer | None = None

    @classmethod
    def of(cls, store: Store) -> HitTally:
        """The store's one tally (Cache objects come and go; counts must not)."""
        tally = getattr(store, "_cache_tally", None)
        if tally is None:
            tally = store._cache_tally = cls(store.db)  # type: ignore[attr-defined]
            store.before_close.append(tally.close)
        return tally

    def add(self, session_id: str, hits: int, misses: int) -> None:
        with self._lock:
            counts = self._pending.setdefault(session_id, [0, 0])
            counts[0] += hits
            counts[1] += misses
            if self._timer is None:
                self._timer = threading.Timer(TALLY_FLUSH_SECONDS, self.flush)
                self._timer.daemon = True
                self._timer.start()

    def flush(self) -> None:
        """Store every pending count in one transaction."""
        with self._flushing:
            with self._lock:
                self._timer = None
                snapshot = {sid: tuple(c) for sid, c in self._pending.items()}
            if not snapshot:
                return
            with self.db.write():
                for sid, (hits, misses) in snapshot.items():
                    for name, n in ((HITS, hits), (MISSES, misses)):
                        if n:
                            # WHERE EXISTS: the session may have been deleted since.
                            self.db.execute(
                                "INSERT INTO counters(session_id, name, value) SELECT ?, ?, ? "
                                "WHERE EXISTS (SELECT 1 FROM sessions WHERE id=?) "
                                "ON CONFLICT(session_id, name) "
                                "DO UPDATE SET value = value + excluded.value",
                                (sid, name, n, sid),
                            )
            with self._lock:
                for sid, (hits, misses) in snapshot.items():
                    counts = self._pending[sid]
                    counts[0] -= hits
                    counts[1] -= misses
                    if counts == [0, 0]:
                        del self._pending[sid]

    def close(self) -> None:
        with self._lock:
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        self.flush()

    def totals(self, session_id: str) -> tuple[int, int]:
        """(hits, misses) of a session, stored plus pending."""
        with self._flushing:
            with self.db.read():
                stored = dict(self.db.query(
                    "SELECT name, value FROM counters WHERE session_id=? AND name IN (?,?)",
                    (session_id, HITS, MISSES)))
            with self._lock:
                hits, misses = self._pending.get(session_id, (0, 0))
        return stored.get(HITS, 0) + hits, stored.get(MISSES, 0) + misses


class Cache:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.db = store.db
        self.tally = HitTally.of(store)

    @contextmanager
    def _writing(self, session_id: str) -> Iterator[_Write]:
        with self.db.write():
            rec, _ = self.store.writable(session_id)  # archived or read-only: failed_precondition
            w = _Write(self.store, session_id, time.time_ns())
            w.sweep_if_due()
            yield w
            quota.check_cache(self.db, rec, _LIVE, w.now)

    def _count(self, session_id: str, hits: int, misses: int) -> None:
        if hits or misses:
            self.tally.add(session_id, hits, misses)

    def _read(self, session_id: str, key: str, now: int) -> tuple[EntryMeta, bytes] | None:
        row = self.db.one(
            f"SELECT {_META}, value FROM cache WHERE session_id=? AND key=? AND {_LIVE}",
            (session_id, key, now))
        return (_meta(row), bytes(row[7])) if row else None

    # ---- single keys
    def get(self, session_id: str, key: str) -> tuple[EntryMeta, bytes]:
        check_key(key)
        self.store.session(session_id)
        found = self._read(session_id, key, time.time_ns())
        self._count(session_id, hits=int(found is not None), misses=int(found is None))
        if found is None:
            raise NotFound(f"no cache key {key!r}", key=key)
        return found

    def metadata(self, session_id: str, key: str) -> EntryMeta:
        check_key(key)
        self.store.session(session_id)
        found = _current(self.db, session_id, key, time.time_ns())
        if found is None:
            raise NotFound(f"no cache key {key!r}", key=key)
        return found

    def exists(self, session_id: str, key: str) -> bool:
        check_key(key)
        self.store.session(session_id)
        return self.db.one(f"SELECT 1 FROM cache WHERE session_id=? AND key=? AND {_LIVE}",
                           (session_id, key, time.time_ns())) is not None

    def put(self, session_id: str, key: str, value: bytes, content_type: str = "",
            ttl_seconds: int = 0) -> EntryMeta:
        v = new_value(key, value, content_type, ttl_seconds)
        with self._writing(session_id) as w:
            return w.set(v, "put")

    def delete(self, session_id: str, key: str) -> int:
        check_key(key)
        with self._writing(session_id) as w:
            return int(w.remove(key))

    def compare_and_set(self, session_id: str, key: str, expected_version: int,
                        expect_absent: bool, value: bytes, content_type: str = "",
                        ttl_seconds: int = 0) -> tuple[bool, EntryMeta | None]:
        """(swapped, metadata): the new entry's, or on a mismatch the current one's."""
        if expect_absent and expected_version:
            raise InvalidArgument("expect_absent and a non-zero expected_version contradict "
                                  "each other", parameter="expected_version")
        v = new_value(key, value, content_type, ttl_seconds)
        self.store.writable(session_id)  # an archived session refuses even a losing CAS
        # Versions never come back, so a mismatch seen in a read snapshot is final:
        # losers answer without queueing for the write lock.
        cur = _current(self.db, session_id, v.key, time.time_ns())
        if (cur.version if cur else 0) != expected_version:
            return False, cur
        with self._writing(session_id) as w:
            cur = w.current(v.key)
            if (cur.version if cur else 0) != expected_version:
                return False, cur
            return True, w.set(v, "compare_and_set")

    # ---- listing and stats
    def list_keys(self, session_id: str, prefix: str, page_size: int,
                  page_token: str) -> tuple[list[EntryMeta], str]:
        check_prefix(prefix)
        check_prefix(page_token, "page_token")
        self.store.session(session_id)
        limit = min(page_size or DEFAULT_PAGE, MAX_PAGE)
        end = _prefix_end(prefix)
        sql = (f"SELECT {_META} FROM cache WHERE session_id=? AND key>=? AND key>? AND {_LIVE}"
               + (" AND key<?" if end is not None else "") + " ORDER BY key LIMIT ?")
        args = (session_id, prefix, page_token, time.time_ns(),
                *((end,) if end is not None else ()), limit + 1)
        rows = [_meta(r) for r in self.db.query(sql, args)]
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, (rows[-1].key if more else "")

    def stats(self, session_id: str) -> tuple[int, int, int, int]:
        """(live keys, their value bytes, hits, misses)."""
        self.store.session(session_id)
        with self.db.read():
            keys, size = self.db.one(
                f"SELECT COUNT(*), COALESCE(SUM(length(value)), 0) FROM cache "
                f"WHERE session_id=? AND {_LIVE}", (session_id, time.time_ns()))
        hits, misses = self.tally.totals(session_id)
        return keys, size, hits, misses

    # ---- batches
    def batch_get(self, session_id: str,
                  keys: list[str]) -> tuple[list[tuple[EntryMeta, bytes]], list[str]]:
        """(entries found, keys missing), each in request order, duplicates once."""
        keys = _unique(keys)
        self.store.session(session_id)
        now = time.time_ns()
        found, missing, total = [], [], 0
        with self.db.read():
            for key in keys:
                got = self._read(session_id, key, now)
                if got is None:
                    missing.append(key)
                    continue
                total += got[0].size
                if total > MAX_BATCH_BYTES:
                    raise ResourceExhausted(
                        f"the values of this batch exceed {MAX_BATCH_BYTES} bytes; "
                        "ask for fewer keys", limit=str(MAX_BATCH_BYTES))
                found.append(got)
        self._count(session_id, hits=len(found), misses=len(missing))
        return found, missing

    def batch_set(self, session_id: str,
                  items: list[tuple[str, bytes, str, int]]) -> list[EntryMeta]:
        """All or nothing: every (key, value, content type, ttl seconds) is checked
        first, then all are written in one transaction."""
        _check_batch(len(items), "items")
        values = [new_value(*item, where=f"items[{i}].") for i, item in enumerate(items)]
        seen: set[str] = set()
        total = 0
        for i, v in enumerate(values):
            if v.key in seen:
                raise InvalidArgument(f"items[{i}].key {v.key!r} appears twice in the batch",
                                      parameter=f"items[{i}].key")
            seen.add(v.key)
            total += len(v.value)
        if total > MAX_BATCH_BYTES:
            raise ResourceExhausted(f"the values of this batch are {total} bytes; the limit is "
                                    f"{MAX_BATCH_BYTES}", limit=str(MAX_BATCH_BYTES))
        with self._writing(session_id) as w:
            return [w.set(v, "batch_set") for v in values]

    def batch_delete(self, session_id: str, keys: list[str]) -> int:
        keys = _unique(keys)
        with self._writing(session_id) as w:
            return sum(w.remove(k) for k in keys)

    def delete_by_prefix(self, session_id: str, prefix: str) -> int:
        check_prefix(prefix)
        if not prefix:
            raise InvalidArgument("prefix must not be empty (delete-by-prefix with no prefix "
                                  "would empty the whole cache)", parameter="prefix")
        end = _prefix_end(prefix)
        where = "session_id=? AND key>=?" + (" AND key<?" if end is not None else "")
        args = (prefix, *((end,) if end is not None else ()))
        with self._writing(session_id) as w:
            (n,) = self.db.one(f"SELECT COUNT(*) FROM cache WHERE {where} AND {_LIVE}",
                               (session_id, *args, w.now))
            self.db.execute(f"DELETE FROM cache WHERE {where}", (session_id, *args))
            if n:
                self.store.events.emit(session_id, "cache.deleted", "", prefix=prefix, deleted=n)
        return n

    # ---- fork
    def copy_for_fork(self, parent_id: str, child_id: str) -> None:
        """Copy the parent's live entries (and revision and sweep counters) into a new
        child; call inside the fork's write transaction (joined if open)."""
        with self.db.write():
            self.db.execute(
                "INSERT INTO cache(session_id, key, value, content_type, version, created_ns,"
                " updated_ns, expires_ns) SELECT ?, key, value, content_type, version,"
                f" created_ns, updated_ns, expires_ns FROM cache WHERE session_id=? AND {_LIVE}",
                (child_id, parent_id, time.time_ns()),
            )
            self.db.execute(
                "INSERT INTO counters(session_id, name, value) SELECT ?, name, value "
                "FROM counters WHERE session_id=? AND name IN (?,?)",
                (child_id, parent_id, REVISION, SWEEP),
            )
