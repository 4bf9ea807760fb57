"""The blocking executor of `Operations`: `Client`, on aether.client.wire.

Every operation is defined once in `aether.client._base`; `AsyncClient` (in
`_async`) runs the same calls on httpx. This module imports neither httpx nor
the generated messages, so that an `aether` command starts quickly; messages
load when the first answer is decoded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from aether import __version__
from aether.client._base import (
    Call,
    Operations,
    Response,
    SseDecoder,
    Steps,
    json_body,
    raise_for_error,
    transport_error,
)
from aether.client.wire import Timeouts, TransportError, Wire
from aether.errors import AetherError

DEFAULT_TIMEOUT = Timeouts(connect=10.0, read=300.0)
CHUNK = 1 << 20
USER_AGENT = f"aether-client/{__version__}"


def base_headers(token: str | None, headers: dict[str, str] | None) -> dict[str, str]:
    out = {"user-agent": USER_AGENT, "accept": "application/json"}
    if token:
        out["authorization"] = f"Bearer {token}"
    out.update(headers or {})
    return out


def describe(base_url: str, uds: str | None) -> str:
    return f"unix:{uds}" if uds else base_url


def announced_length(resp: Response) -> int | None:
    length = resp.headers.get("content-length", "")
    return int(length) if length.isdigit() and "content-encoding" not in resp.headers else None


class Client(Operations):
    """Blocking AetherFS client. Use `aether.client.connect()` to build one from
    the environment (and start a local daemon when needed), or construct it
    directly with a base URL (and `uds=` for a unix socket)."""

    def __init__(
        self,
        base_url: str = "http://aetherd",
        *,
        token: str | None = None,
        uds: str | None = None,
        timeout: Any = DEFAULT_TIMEOUT,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.url = describe(base_url, uds)
        self._wire = Wire(base_url, uds=uds, headers=base_headers(token, headers),
                          timeout=timeout)

    def close(self) -> None:
        self._wire.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def as_json(self) -> Client:
        """This client (its connections shared) answering with the daemon's
        proto3 JSON instead of messages: dicts for messages, pages iterated
        item by item as dicts. For callers that print or forward the JSON, it
        skips building message objects and loading their classes (~60 ms of
        a CLI command's start). Operations that return bytes, streams or
        follows behave as on this client."""
        view = _JsonClient.__new__(_JsonClient)
        view.url = self.url
        view._wire = self._wire
        return view

    def _send(self, call: Call, stream: bool = False) -> Response:
        try:
            resp = self._wire.request(
                call.method, call.path, params=call.params, json=call.json,
                content=call.content, headers=call.headers, stream=stream)
        except TransportError as exc:
            raise transport_error(exc.kind, exc, self.url) from exc
        try:
            raise_for_error(resp)
        except BaseException:
            resp.close()
            raise
        return resp

    def _call(self, call: Call) -> Any:
        return call.result(self._send(call))

    def _paginate(self, make: Callable[[str], Call], items: str) -> Iterator[Any]:
        token = ""
        while True:
            page = self._call(make(token))
            yield from getattr(page, items)
            token = page.next_page_token
            if not token:
                return

    def _stream(self, call: Call) -> ByteStream:
        return ByteStream(self, call)

    def _cursor_pages(self, make: Callable[[int], Call], after: int, items: str) -> Iterator[Any]:
        while True:
            page = self._call(make(after))
            yield from getattr(page, items)
            if page.next_cursor <= after:
                return
            after = page.next_cursor

    def _follow(self, call: Call) -> FollowStream:
        return FollowStream(self, call)

    def _run_steps(self, steps: Steps) -> Any:
        try:
            call = next(steps)
            while True:
                try:
                    got = self._call(call)
                except AetherError as exc:
                    call = steps.throw(exc)
                else:
                    call = steps.send(got)
        except StopIteration as done:
            return done.value

    def _download(
        self, call: Call, file: BinaryIO, progress: Callable[[int, int | None], None] | None,
    ) -> int:
        done = 0
        with self._stream(call) as stream:
            for chunk in stream:
                file.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, stream.total)
        return done


class _JsonClient(Client):
    """See `Client.as_json`."""

    def close(self) -> None:
        pass  # the connections belong to the client this is a view of

    def __repr__(self) -> str:
        return f"Client({self.url!r}).as_json()"

    def _call(self, call: Call) -> Any:
        if call.decode is not None or call.response is None:
            return call.result(self._send(call))
        return json_body(self._send(call))

    def _paginate(self, make: Callable[[str], Call], items: str) -> Iterator[Any]:
        token = ""
        while True:
            page = self._call(make(token))
            yield from page.get(_camel(items), [])
            token = page.get("nextPageToken", "")
            if not token:
                return

    def _cursor_pages(self, make: Callable[[int], Call], after: int, items: str) -> Iterator[Any]:
        while True:
            page = self._call(make(after))
            yield from page.get(_camel(items), [])
            cursor = int(page.get("nextCursor") or 0)  # int64: a string in proto3 JSON
            if cursor <= after:
                return
            after = cursor


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.title() for part in rest)


class ByteStream:
    """Streamed bytes of an answer. Iterate it directly, or use it as a context
    manager to read `.total` (the announced length, or None) before iterating."""

    def __init__(self, client: Client, call: Call) -> None:
        self._client = client
        self._call = call
        self._resp: Response | None = None
        self.total: int | None = None

    def __enter__(self) -> ByteStream:
        self._resp = self._client._send(self._call, stream=True)
        self.total = announced_length(self._resp)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._resp is not None:
            self._resp.close()
            self._resp = None

    def __iter__(self) -> Iterator[bytes]:
        if self._resp is None:
            with self:
                yield from self._chunks()
        else:
            yield from self._chunks()

    def _chunks(self) -> Iterator[bytes]:
        assert self._resp is not None
        try:
            yield from self._resp.iter_bytes(CHUNK)
        except TransportError as exc:
            raise transport_error(exc.kind, exc, self._client.url) from exc


def _after(call: Call) -> int:
    for name, value in call.params:
        if name == "after" and value.isdigit():
            return int(value)
    return 0


class Follow:
    """What `FollowStream` and `AsyncFollowStream` share, none of it I/O: the call,
    the open response, and decoding its lines into items while keeping
    `.cursor` (the cursor of the last item seen; at first the `after` asked for)."""

    def __init__(self, client: Any, call: Call) -> None:
        self._client = client
        self._call = call
        self._resp: Any = None
        self._decoder: SseDecoder | None = None
        self.cursor = _after(call)

    def _opened(self, resp: Any) -> None:
        """Read `resp` from now on (a new response: a new decoder)."""
        self._resp = resp
        self._decoder = SseDecoder(self._call.message_class())

    def _item(self, line: str) -> Any:
        """The item `line` completes, or None; `.cursor` moves to the item."""
        assert self._decoder is not None
        item = self._decoder.line(line)
        if item is not None:
            self.cursor = getattr(item, "cursor", self.cursor)
        return item


class FollowStream(Follow):
    """A live follow (bus messages or events) as pb messages, in cursor order.

    Iterate it directly, or use it as a context manager: entering opens the
    stream (so an unknown session raises NotFound there), leaving closes it.
    Iterated directly, it opens the stream itself and closes it when the loop
    ends, by `break` too. Iteration waits for new items; it ends with NotFound
    when the session is deleted, Unavailable when the connection breaks, and
    without an error when the server ends the stream cleanly. `.cursor` is the
    cursor of the last item seen: follow again with `after=stream.cursor` to
    resume without gaps or repeats."""

    _client: Client

    def __enter__(self) -> FollowStream:
        self._opened(self._client._send(self._call, stream=True))
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._resp is not None:
            self._resp.close()
            self._resp = None

    def __iter__(self) -> Iterator[Any]:
        if self._resp is None:
            # Not entered: this generator owns the response. A loop that stops
            # early (break, an exception) drops the generator, which CPython
            # closes at once: the `with` then closes the response, not the GC.
            with self:
                yield from self._items()
        else:
            yield from self._items()

    def _items(self) -> Iterator[Any]:
        assert self._resp is not None
        try:
            for line in self._resp.iter_lines():
                item = self._item(line)
                if item is not None:
                    yield item
        except TransportError as exc:
            raise transport_error(exc.kind, exc, self._client.url) from exc
