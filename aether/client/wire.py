"""Blocking HTTP/1.1 for `Client`, on the standard library's http.client.

`AsyncClient` uses httpx. The blocking client does not: importing httpx and
httpcore costs ~75 ms, a quarter of the 300 ms an `aether` command may take to
start (bench/cli.py), and the daemon's API needs little of what they offer.
What it needs is all here: keep-alive connections over TCP, TLS (certificates
checked) or a unix socket; JSON, byte and streamed (chunked) request bodies;
answers read whole or streamed line by line or in blocks; connect and read
timeouts. No redirects, proxies, cookies or compression: the API uses none.

The `Response` here offers the part of httpx.Response's interface that
aether.client._base reads (status_code, reason_phrase, headers, content, text,
json()), so one decoding path serves both clients.
"""

from __future__ import annotations

import http.client
import json as _json
import select
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

# Methods that may be sent again when a kept-alive connection turns out to
# have been closed by the server just as the request went out.
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})
_MAX_IDLE = 4


class TransportError(Exception):
    """No usable answer. `kind`: "connect" (nobody listens there), "timeout",
    or "broken" (the connection failed during the exchange)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Timeouts:
    """Seconds to wait for a connection and for each read (None: forever)."""

    connect: float | None
    read: float | None


def timeouts(value: Any) -> Timeouts:
    """A number (both), None (no limit), a Timeouts, or anything with `.connect`
    and `.read` (an httpx.Timeout, which callers of the async client pass)."""
    if isinstance(value, Timeouts):
        return value
    if value is None or isinstance(value, int | float):
        return Timeouts(value, value)
    return Timeouts(value.connect, value.read)


class _TCP(http.client.HTTPConnection):
    def __init__(self, host: str, port: int | None, limits: Timeouts) -> None:
        super().__init__(host, port, timeout=limits.connect)
        self._read_timeout = limits.read

    def connect(self) -> None:
        super().connect()
        self.sock.settimeout(self._read_timeout)


class _TLS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int | None, limits: Timeouts) -> None:
        import ssl

        super().__init__(host, port, timeout=limits.connect,
                         context=ssl.create_default_context())
        self._read_timeout = limits.read

    def connect(self) -> None:
        super().connect()
        self.sock.settimeout(self._read_timeout)


class _Unix(http.client.HTTPConnection):
    def __init__(self, host: str, path: str, limits: Timeouts) -> None:
        super().__init__(host, timeout=limits.connect)
        self._path = path
        self._read_timeout = limits.read

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._path)
            sock.settimeout(self._read_timeout)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class Wire:
    """Connections to one server. Not thread-safe (one per thread, like
    `Client`). Requests may overlap: a streamed answer holds its connection
    until it is read or closed, and the next request takes another."""

    def __init__(
        self,
        base_url: str,
        *,
        uds: str | None = None,
        headers: dict[str, str] | None = None,
        timeout: Any = None,
    ) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https"):
            raise ValueError(f"want an http:// or https:// URL, not {base_url!r}")
        self._tls = url.scheme == "https" and not uds
        self._host = url.hostname or "localhost"
        self._port = url.port
        self._prefix = url.path.rstrip("/")
        self._uds = uds
        self._headers = dict(headers or {})
        self.timeouts = timeouts(timeout)
        self._idle: list[http.client.HTTPConnection] = []

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Iterable[tuple[str, str]] = (),
        json: Any = None,
        content: bytes | Iterable[bytes] | None = None,
        headers: dict[str, str] | None = None,
        stream: bool = False,
    ) -> Response:
        """Send one request; the answer is read whole unless `stream`."""
        target = self._prefix + path
        query = urlencode(list(params), quote_via=quote)
        if query:
            target += "?" + query
        all_headers = dict(self._headers)
        body: Any = content
        if json is not None:
            body = _json.dumps(json, ensure_ascii=False, separators=(",", ":")).encode()
            all_headers["content-type"] = "application/json"
        all_headers.update(headers or {})
        replayable = body is None or isinstance(body, bytes | bytearray | memoryview)
        if body is not None and not replayable:
            body = _nonempty(body)  # chunked: an empty chunk would end the body early

        # A body that can be read only once goes on a fresh connection, never
        # on a kept-alive one the server may have just closed.
        retry = replayable and method in _IDEMPOTENT
        while True:
            conn, reused = self._take(fresh=not replayable)
            try:
                conn.request(method, target, body=body, headers=all_headers)
                raw = conn.getresponse()
            except (http.client.RemoteDisconnected, ConnectionResetError,
                    BrokenPipeError) as exc:
                conn.close()
                if reused and retry:
                    retry = False
                    continue
                raise TransportError("broken", f"the connection broke: {exc}") from exc
            except TimeoutError as exc:
                conn.close()
                raise TransportError("timeout", "timed out waiting for an answer") from exc
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise TransportError("broken", f"{type(exc).__name__}: {exc}") from exc
            resp = Response(self, conn, raw, path)
            if not stream:
                resp.read()
            return resp

    def _take(self, fresh: bool) -> tuple[http.client.HTTPConnection, bool]:
        """A connected connection, and whether it was kept alive from before."""
        while self._idle and not fresh:
            conn = self._idle.pop()
            if _still_open(conn):
                return conn, True
            conn.close()
        conn = self._new()
        try:
            conn.connect()
        except TimeoutError as exc:
            conn.close()
            raise TransportError("connect", "timed out connecting") from exc
        except OSError as exc:
            conn.close()
            raise TransportError("connect", f"{exc.strerror or exc}") from exc
        return conn, False

    def _new(self) -> http.client.HTTPConnection:
        if self._uds:
            return _Unix(self._host, self._uds, self.timeouts)
        if self._tls:
            return _TLS(self._host, self._port, self.timeouts)
        return _TCP(self._host, self._port, self.timeouts)

    def _release(self, conn: http.client.HTTPConnection, reusable: bool) -> None:
        if reusable and len(self._idle) < _MAX_IDLE:
            self._idle.append(conn)
        else:
            conn.close()


def _still_open(conn: http.client.HTTPConnection) -> bool:
    """An idle HTTP/1.1 connection has nothing to read; if it has, the server
    closed it (end of file) or broke protocol: either way, not reusable."""
    sock = conn.sock
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


def _nonempty(chunks: Iterable[bytes]) -> Iterator[bytes]:
    for chunk in chunks:
        if chunk:
            yield bytes(chunk)


class Response:
    """An answer. Read whole (`content`, `text`, `json()`) or, when requested
    with `stream=True`, consumed with `iter_bytes` / `iter_lines`; `close()`
    gives the connection back (or drops it when the answer was not read to
    its end)."""

    def __init__(self, wire: Wire, conn: http.client.HTTPConnection,
                 raw: http.client.HTTPResponse, path: str) -> None:
        self._wire = wire
        self._conn: http.client.HTTPConnection | None = conn
        self._raw = raw
        self.path = path
        self.status_code = raw.status
        self.reason_phrase = raw.reason
        self.headers = raw.headers  # case-insensitive .get()
        self._content: bytes | None = None

    @property
    def is_closed(self) -> bool:
        return self._conn is None

    def read(self) -> bytes:
        if self._content is None:
            self._content = self._guarded(self._raw.read)
            self.close()
        return self._content

    @property
    def content(self) -> bytes:
        return self.read()

    @property
    def text(self) -> str:
        return self.content.decode(self.headers.get_content_charset() or "utf-8", "replace")

    def json(self) -> Any:
        return _json.loads(self.content)

    def iter_bytes(self, size: int) -> Iterator[bytes]:
        if self._content is not None:
            yield self._content
            return
        while True:
            chunk = self._guarded(self._raw.read, size)
            if not chunk:
                self.close()
                return
            yield chunk

    def iter_lines(self) -> Iterator[str]:
        """Lines as they arrive, without their line break."""
        while True:
            line = self._guarded(self._raw.readline)
            if not line:
                self.close()
                return
            yield line.decode("utf-8", "replace").rstrip("\r\n")

    def _guarded(self, read: Any, *args: Any) -> bytes:
        """`read(*args)`, its failures as TransportError (the connection dropped)."""
        try:
            return read(*args)
        except TimeoutError as exc:
            self.close()
            raise TransportError("timeout", "timed out reading the answer") from exc
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise TransportError("broken", f"the answer was cut off: {exc}") from exc

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        done = self._raw.isclosed()  # read to its end
        if not done:
            self._raw.close()
        self._wire._release(conn, reusable=done and not self._raw.will_close)
