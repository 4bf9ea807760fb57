"""The one place where the mount (trio, pyfuse3) talks to the daemon.

Everything else in aether/mount calls `Bridge` methods and gets plain values
back, or a `RemoteError` (an OSError carrying the errno the FUSE handler should
answer). The SDK's `AsyncClient` runs here unchanged: it is built on httpx,
whose transport (httpcore over anyio) runs on trio as well as on asyncio, and
the client itself has no asyncio-only code path. (`aconnect()` does use
asyncio to start a local daemon; the mount never autostarts one, so it builds
the client directly from a resolved `Target`.)

The session's event stream is read here too, as server-sent events over httpx.

Requests that never reached the daemon (connection refused: it is restarting)
are retried for `RETRY_SECONDS`, so a daemon restart looks like a pause to the
programs using the mount. Anything else fails the one operation with an errno.
"""

from __future__ import annotations

import base64
import errno
import itertools
import json
import logging
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import trio

from aether import pb
from aether.client import AsyncClient, Target, resolve
from aether.client._base import error_from_response, seg
from aether.errors import AetherError, Conflict, RangeNotSatisfiable
from aether.mount.fileio import pwrite_all

log = logging.getLogger("aether.mount.bridge")

RETRY_SECONDS = 15.0
# Large files are downloaded as ranged reads of DOWNLOAD_PIECE (also what the
# mount holds in memory at once; uploads go by 1 MiB chunks, handles.py). Each
# `Bridge` may be given its own; the environment override exists so tests can
# run the multi-piece path with small pieces.
DOWNLOAD_PIECE = int(os.environ.get("AETHER_MOUNT_DOWNLOAD_PIECE") or 16 << 20)
EMPTY_HASH = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
_KINDS = {pb.EntryKind.FILE: "file", pb.EntryKind.DIRECTORY: "dir", pb.EntryKind.SYMLINK: "symlink"}


class RemoteError(OSError):
    """A daemon error, with the errno a filesystem call should fail with."""

    def __init__(self, err: int, cause: AetherError) -> None:
        super().__init__(err, f"{cause.code}: {cause.message}")
        self.code = cause.code
        self.details = dict(getattr(cause, "details", None) or {})
        self.ambiguous = False  # sent, but no answer: maybe applied


class ConflictError(RemoteError):
    """A conditional write lost: the file changed (or appeared, or vanished)
    since the mount last saw it. `current_hash` is "" when it is gone."""

    def __init__(self, cause: AetherError) -> None:
        super().__init__(errno.EEXIST, cause)
        self.current_hash = self.details.get("current_hash", "")


def errno_for(exc: AetherError) -> int:
    code = exc.code
    msg = exc.message.lower()
    if code == "not_found":
        return errno.ENOENT
    if code == "already_exists":
        return errno.EEXIST
    if code in ("permission_denied", "unauthenticated"):
        return errno.EACCES
    if code == "failed_precondition":
        if "not empty" in msg:
            return errno.ENOTEMPTY
        if "not a directory" in msg:
            return errno.ENOTDIR
        if "is a directory" in msg:
            return errno.EISDIR
        if "archived" in msg or "read-only" in msg:
            return errno.EROFS
        return errno.EPERM
    if code == "invalid_argument":
        if "255" in msg or "too long" in msg or "4096" in msg:
            return errno.ENAMETOOLONG
        return errno.EINVAL
    if code in ("resource_exhausted", "payload_too_large"):
        return errno.ENOSPC
    if code == "conflict":
        return errno.EEXIST
    return errno.EIO


@dataclass
class Entry:
    """A directory entry as the daemon reports it."""

    name: str
    kind: str  # "file" | "dir" | "symlink"
    mode: int
    size: int
    hash: str
    target: str
    mtime_ns: int
    # user.* extended attributes (names as the kernel passes them)
    xattrs: dict[bytes, bytes] = field(default_factory=dict)

    @classmethod
    def from_info(cls, info: pb.FileInfo) -> Entry:
        return cls(
            name=info.path.rsplit("/", 1)[-1], kind=_KINDS.get(info.kind, "file"),
            # rwx bits only (nosuid as well): no setuid/setgid/sticky from a session
            mode=info.mode & 0o777, size=info.size, hash=info.hash,
            target=info.symlink_target, mtime_ns=_ns(info.mtime),
            xattrs={k.encode(): v for k, v in info.xattrs.items()},
        )


def file_entry(path: str, info: dict[str, Any]) -> Entry:
    """The Entry of a file from its FileInfo in proto3 JSON (uint64 sizes come
    as strings, times as RFC 3339)."""
    mtime = info.get("mtime")
    ns = _ns(datetime.fromisoformat(mtime)) if mtime else 0
    xattrs = {k.encode(): base64.b64decode(v) for k, v in (info.get("xattrs") or {}).items()}
    return Entry(path.rpartition("/")[2], "file", int(info.get("mode") or 0) & 0o777,
                 int(info.get("size") or 0), str(info.get("hash") or ""), "", ns, xattrs)


def _ns(ts: datetime | None) -> int:
    if ts is None:
        return 0
    return int(ts.timestamp()) * 1_000_000_000 + ts.microsecond * 1000


@dataclass
class Event:
    cursor: int
    type: str
    path: str
    attributes: dict[str, str] = field(default_factory=dict)


class Bridge:
    """The daemon, as the mount needs it: paths in, plain values out."""

    @classmethod
    def from_environment(cls, session_id: str, at: str = "") -> Bridge:
        """The daemon named by AETHER_SERVER / AETHER_TOKEN (what `aether mount`
        passes to the mount process), else the local one."""
        target = resolve(os.environ.get("AETHER_SERVER") or None,
                         os.environ.get("AETHER_TOKEN") or None)
        return cls(target, session_id, at)

    def __init__(self, target: Target, session_id: str, at: str = "", *,
                 download_piece: int = 0) -> None:
        self.target = target
        self.session_id = session_id
        self.at = at
        self.download_piece = download_piece or DOWNLOAD_PIECE
        # What this mount's requests call themselves (Aether-Origin): the
        # events of its own changes are left out of the stream it follows.
        self.origin = f"mount-{secrets.token_hex(8)}"
        self.client = AsyncClient(
            target.base_url, token=target.token, uds=target.uds,
            timeout=httpx.Timeout(120.0, connect=5.0, pool=30.0),
            headers={"aether-origin": self.origin},
        )
        self.json = self.client.as_json()
        self.requests = 0
        self._batches = itertools.count(1)  # batch ids: the origin and a counter

    def new_batch_id(self) -> str:
        """An id for one batch of changes, to send with every attempt of it."""
        return f"{self.origin}-{next(self._batches)}"

    async def aclose(self) -> None:
        await self.client.aclose()

    async def _run(self, fn: Any, *args: Any, read: bool = False, **kwargs: Any) -> Any:
        """Call one SDK method; map its errors to errnos; retry while the daemon
        cannot be reached at all (and, for reads, after any transport failure:
        a read can be sent twice)."""
        deadline = trio.current_time() + RETRY_SECONDS
        delay = 0.05
        while True:
            self.requests += 1
            try:
                return await fn(*args, **kwargs)
            except Conflict as exc:
                raise ConflictError(exc) from None
            except AetherError as exc:
                transport = exc.code == "unavailable" and isinstance(
                    exc.__cause__, httpx.TransportError)
                unreachable = transport and (read or isinstance(
                    exc.__cause__, httpx.ConnectError | httpx.ConnectTimeout))
                if unreachable and trio.current_time() < deadline:
                    log.warning("aetherd unreachable (%s); retrying", exc.message)
                    await trio.sleep(delay)
                    delay = min(delay * 2, 1.0)
                    continue
                err = RemoteError(errno_for(exc), exc)
                # A change whose request may have reached the daemon: whether it
                # was applied is unknown, so it must not simply be sent again.
                err.ambiguous = transport and not read and not isinstance(
                    exc.__cause__, httpx.ConnectError | httpx.ConnectTimeout)
                raise err from None

    # ---- reads

    async def session(self) -> pb.Session:
        return await self._run(self.client.get_session, self.session_id, read=True)

    async def list_dir(self, path: str) -> list[Entry]:
        """Every entry of a directory, with its attributes (one listing, paged)."""
        out: list[Entry] = []
        token = ""
        while True:
            page = await self._run(self.client.list_tree, self.session_id, path, at=self.at,
                                   page_size=1000, page_token=token, read=True)
            out.extend(Entry.from_info(i) for i in page.entries)
            token = page.next_page_token
            if not token:
                return out

    async def missing_chunks(self, hashes: list[str]) -> set[str]:
        """Which of these chunk hashes the daemon does not hold."""
        got = await self._run(self.json.missing_chunks, self.session_id, hashes, read=True)
        return set(got.get("missing") or [])

    async def put_chunks(self, data: bytes) -> list[str]:
        """Store consecutive 1 MiB chunks (the last may be shorter); their hashes.
        (Sent again after a transport failure: storing a chunk twice is harmless.)"""
        got = await self._run(self.json.put_chunks, self.session_id, data, read=True)
        return [str(h) for h in got.get("hashes") or []]

    async def write_chunks(self, path: str, chunks: list[str], if_match: str,
                           mode: int, batch_id: str) -> Entry:
        """Make `path` the file made of these stored chunks (conditional, like
        write_file): one op of an atomic batch, so errors come back as errors.
        `batch_id` names this write (the same id for the same write sent
        again): a repeat after a lost answer gets the answer, not a conflict
        with itself."""
        op: dict[str, Any] = {"path": path, "chunks": chunks, "mode": mode}
        if if_match:
            op["ifMatch"] = if_match
        got = await self._run(self.json.apply, self.session_id, [{"write": op}], atomic=True,
                              batch_id=batch_id, read=True)
        return file_entry(path, (got.get("results") or [{}])[0].get("info") or {})

    async def read_files(self, paths: list[str]) -> list[tuple[str, bytes, str]]:
        """Many small files in one request (`fs:read`, one consistent view):
        (path, content, hash) of each that came back whole; failed and
        left-out ones are missing (the caller reads those by themselves)."""
        got = await self._run(self.json.read_files, self.session_id, paths, at=self.at,
                              read=True)
        out = []
        for f in got.get("files") or []:
            if f.get("error") or f.get("truncated"):
                continue
            out.append((str(f.get("path", "")), base64.b64decode(f.get("data") or ""),
                        str(f.get("hash") or "")))
        return out

    async def stat(self, path: str) -> pb.FileInfo:
        return await self._run(self.client.stat, self.session_id, path, at=self.at, read=True)

    async def download(self, path: str, fd: int) -> tuple[str, int]:
        """Write a file's whole content into `fd`; returns (hash, size) of what was
        written. Large files come in pieces; if the file changes meanwhile, start over."""
        for _attempt in range(5):
            r = await self._first_piece(path)
            content_hash, size = r.hash, r.size
            await trio.to_thread.run_sync(pwrite_all, fd, r.data, 0)
            offset = len(r.data)
            changed = False
            while offset < size:
                p = await self._run(self.client.read_file, self.session_id, path, at=self.at,
                                    offset=offset,
                                    length=min(self.download_piece, size - offset),
                                    read=True)
                if p.hash != content_hash or not p.data:
                    changed = True
                    break
                await trio.to_thread.run_sync(pwrite_all, fd, p.data, offset)
                offset += len(p.data)
            if not changed:
                os.ftruncate(fd, size)
                return content_hash, size
            log.info("%s changed while downloading; starting over", path)
        raise OSError(errno.EIO, f"{path} keeps changing; could not read it")

    async def _first_piece(self, path: str) -> pb.ReadFileResponse:
        try:
            return await self._run(self.client.read_file, self.session_id, path, at=self.at,
                                   offset=0, length=self.download_piece, read=True)
        except RemoteError as exc:
            if exc.code != RangeNotSatisfiable.code:
                raise
            # an empty file: no byte range of it exists
            return await self._run(self.client.read_file, self.session_id, path, at=self.at,
                                   read=True)

    # ---- writes

    async def write_file(self, path: str, data: bytes, if_match: str, mode: int) -> Entry:
        """Replace a file's content in one request, conditionally (`if_match`: a
        hash, "*" for "must exist", "!" for "must not exist"). ConflictError when
        the condition fails. (For files of up to one chunk: larger ones go by
        chunks, `write_chunks`.)"""
        info = await self._run(self.client.write_file, self.session_id, path, data,
                               if_match=if_match, mode=mode, create_parents=False)
        return Entry.from_info(info)

    async def apply(self, ops: list[dict[str, Any]], batch_id: str) -> dict[str, Any]:
        """Many changes (`FsOp`s as proto3 JSON) in one request and one daemon
        transaction, in order; each op answers for itself, in the answer's
        `results` (the journal's batches). JSON both ways: building and
        reading messages would cost the mount more CPU than the daemon spends.
        With its `batch_id` a batch can be sent again whatever became of the
        first attempt (the daemon applies it once), so it is retried like a
        read."""
        return await self._run(self.json.apply, self.session_id, ops, batch_id=batch_id,
                               read=True)

    # ---- events

    def _events_url(self) -> str:
        return f"/v1/sessions/{seg(self.session_id)}/events"

    def _raw_http(self, read_timeout: float | None) -> httpx.AsyncClient:
        headers = {"accept": "application/json", "aether-origin": self.origin}
        if self.target.token:
            headers["authorization"] = f"Bearer {self.target.token}"
        transport = httpx.AsyncHTTPTransport(uds=self.target.uds) if self.target.uds else None
        return httpx.AsyncClient(base_url=self.target.base_url, headers=headers,
                                 transport=transport,
                                 timeout=httpx.Timeout(read_timeout, connect=5.0))

    async def head_cursor(self) -> int:
        """The newest event cursor of the session (follow from there)."""
        async with self._raw_http(30.0) as http:
            # A filter on a type a live session never has makes the page empty and
            # its next cursor the newest one.
            r = await http.get(self._events_url(),
                               params={"types": "session.deleted", "limit": "1"})
            if r.status_code >= 400:
                raise RemoteError(errno.EIO, error_from_response(r))
            return int(r.json().get("nextCursor") or 0)

    async def follow_events(self, after: int) -> AsyncIterator[Event]:
        """Events after a cursor, live, until the connection ends (the caller
        reconnects from the last cursor it handled). Failures are OSErrors."""
        try:
            async for ev in self._follow(after):
                yield ev
        except httpx.HTTPError as exc:
            raise OSError(errno.EIO, f"event stream: {exc}") from exc

    async def _follow(self, after: int) -> AsyncIterator[Event]:
        async with self._raw_http(60.0) as http:
            headers = {"accept": "text/event-stream", "last-event-id": str(after)}
            async with http.stream("GET", self._events_url(), headers=headers,
                                   params={"exclude_origin": self.origin}) as r:
                if r.status_code >= 400:
                    await r.aread()
                    raise RemoteError(errno.EIO, error_from_response(r))
                fields: dict[str, str] = {}
                async for line in r.aiter_lines():
                    if line.startswith(":"):
                        continue  # keepalive
                    if line:
                        name, _, value = line.partition(":")
                        fields[name] = value.removeprefix(" ")
                        continue
                    if fields.get("event") == "error":
                        raise OSError(errno.EIO, f"event stream error: {fields.get('data')}")
                    if "data" in fields:
                        data = json.loads(fields["data"])
                        yield Event(int(data.get("cursor") or fields.get("id") or 0),
                                    data.get("type", ""), data.get("path", ""),
                                    dict(data.get("attributes") or {}))
                    fields = {}


__all__ = ["Bridge", "ConflictError", "EMPTY_HASH", "Entry", "Event", "RemoteError",
           "errno_for", "file_entry"]
