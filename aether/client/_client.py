"""The two executors of `Operations`: `Client` (blocking) and `AsyncClient` (asyncio).

They differ only in how a `Call` is sent; every operation is defined once in
`aether.client._base`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, BinaryIO

import httpx

from aether.client._base import (
    Call,
    Operations,
    SseDecoder,
    araise_for_error,
    raise_for_error,
    transport_error,
)

DEFAULT_TIMEOUT = httpx.Timeout(300.0, connect=10.0, pool=10.0)
CHUNK = 1 << 20

try:
    from importlib.metadata import version as _version

    USER_AGENT = f"aether-client/{_version('aetherfs')}"
except Exception:  # pragma: no cover - running from a source tree without metadata
    USER_AGENT = "aether-client"


def _base_headers(token: str | None, headers: dict[str, str] | None) -> dict[str, str]:
    out = {"user-agent": USER_AGENT, "accept": "application/json"}
    if token:
        out["authorization"] = f"Bearer {token}"
    out.update(headers or {})
    return out


def _describe(base_url: str, uds: str | None) -> str:
    return f"unix:{uds}" if uds else base_url


def _request_kwargs(call: Call) -> dict[str, Any]:
    return {
        "params": call.params or None,
        "json": call.json,
        "content": call.content,
        "headers": call.headers or None,
    }


def _total(resp: httpx.Response) -> int | None:
    length = resp.headers.get("content-length", "")
    return int(length) if length.isdigit() and "content-encoding" not in resp.headers else None


def _verify(base_url: str) -> bool:
    """Certificate checks for https URLs; none to set up for plain http, where
    loading the CA bundle would cost ~40 ms of every command's start."""
    return base_url.lower().startswith("https:")


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
        timeout: httpx.Timeout | float | None = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.url = _describe(base_url, uds)
        if transport is None and uds:
            transport = httpx.HTTPTransport(uds=uds, verify=False)  # no TLS on a unix socket
        self._http = httpx.Client(
            base_url=base_url, headers=_base_headers(token, headers), timeout=timeout,
            transport=transport, verify=_verify(base_url),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def _send(self, call: Call, stream: bool = False) -> httpx.Response:
        try:
            request = self._http.build_request(call.method, call.path, **_request_kwargs(call))
            resp = self._http.send(request, stream=stream)
        except httpx.HTTPError as exc:
            raise transport_error(exc, self.url) from exc
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


class ByteStream:
    """Streamed bytes of an answer. Iterate it directly, or use it as a context
    manager to read `.total` (the announced length, or None) before iterating."""

    def __init__(self, client: Client, call: Call) -> None:
        self._client = client
        self._call = call
        self._resp: httpx.Response | None = None
        self.total: int | None = None

    def __enter__(self) -> ByteStream:
        self._resp = self._client._send(self._call, stream=True)
        self.total = _total(self._resp)
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
        except httpx.HTTPError as exc:
            raise transport_error(exc, self._client.url) from exc


def _after(call: Call) -> int:
    for name, value in call.params:
        if name == "after" and value.isdigit():
            return int(value)
    return 0


class _Follow:
    """What `FollowStream` and `AsyncFollowStream` share, none of it I/O: the call,
    the open response, and decoding its lines into items while keeping
    `.cursor` (the cursor of the last item seen; at first the `after` asked for)."""

    def __init__(self, client: Client | AsyncClient, call: Call) -> None:
        self._client = client
        self._call = call
        self._resp: httpx.Response | None = None
        self._decoder: SseDecoder | None = None
        self.cursor = _after(call)

    def _opened(self, resp: httpx.Response) -> None:
        """Read `resp` from now on (a new response: a new decoder)."""
        self._resp = resp
        self._decoder = SseDecoder(self._call.response)  # type: ignore[arg-type]

    def _item(self, line: str) -> Any:
        """The item `line` completes, or None; `.cursor` moves to the item."""
        assert self._decoder is not None
        item = self._decoder.line(line)
        if item is not None:
            self.cursor = getattr(item, "cursor", self.cursor)
        return item


class FollowStream(_Follow):
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
        except httpx.HTTPError as exc:
            raise transport_error(exc, self._client.url) from exc


class AsyncClient(Operations):
    """The asyncio twin of `Client`: the same methods, each returning an awaitable
    (`iter_*` return async iterators; `export` an async context manager/iterator)."""

    def __init__(
        self,
        base_url: str = "http://aetherd",
        *,
        token: str | None = None,
        uds: str | None = None,
        timeout: httpx.Timeout | float | None = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.url = _describe(base_url, uds)
        if transport is None and uds:
            transport = httpx.AsyncHTTPTransport(uds=uds, verify=False)  # no TLS on a unix socket
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=_base_headers(token, headers), timeout=timeout,
            transport=transport, verify=_verify(base_url),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AsyncClient({self.url!r})"

    async def _send(self, call: Call, stream: bool = False) -> httpx.Response:
        try:
            request = self._http.build_request(call.method, call.path, **_request_kwargs(call))
            resp = await self._http.send(request, stream=stream)
        except httpx.HTTPError as exc:
            raise transport_error(exc, self.url) from exc
        try:
            await araise_for_error(resp)
        except BaseException:
            await resp.aclose()
            raise
        return resp

    async def _call(self, call: Call) -> Any:
        return call.result(await self._send(call))

    async def _paginate(self, make: Callable[[str], Call], items: str) -> AsyncIterator[Any]:
        token = ""
        while True:
            page = await self._call(make(token))
            for item in getattr(page, items):
                yield item
            token = page.next_page_token
            if not token:
                return

    def _stream(self, call: Call) -> AsyncByteStream:
        return AsyncByteStream(self, call)

    async def _cursor_pages(
        self, make: Callable[[int], Call], after: int, items: str,
    ) -> AsyncIterator[Any]:
        while True:
            page = await self._call(make(after))
            for item in getattr(page, items):
                yield item
            if page.next_cursor <= after:
                return
            after = page.next_cursor

    def _follow(self, call: Call) -> AsyncFollowStream:
        return AsyncFollowStream(self, call)

    async def _download(
        self, call: Call, file: BinaryIO, progress: Callable[[int, int | None], None] | None,
    ) -> int:
        done = 0
        async with self._stream(call) as stream:
            async for chunk in stream:
                file.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, stream.total)
        return done


class AsyncByteStream:
    """`ByteStream` for `AsyncClient`: `async with` and/or `async for`."""

    def __init__(self, client: AsyncClient, call: Call) -> None:
        self._client = client
        self._call = call
        self._resp: httpx.Response | None = None
        self.total: int | None = None

    async def __aenter__(self) -> AsyncByteStream:
        self._resp = await self._client._send(self._call, stream=True)
        self.total = _total(self._resp)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._resp is not None:
            await self._resp.aclose()
            self._resp = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._resp is None:
            async with self:
                async for chunk in self._chunks():
                    yield chunk
        else:
            async for chunk in self._chunks():
                yield chunk

    async def _chunks(self) -> AsyncIterator[bytes]:
        assert self._resp is not None
        try:
            async for chunk in self._resp.aiter_bytes(CHUNK):
                yield chunk
        except httpx.HTTPError as exc:
            raise transport_error(exc, self._client.url) from exc


class AsyncFollowStream(_Follow):
    """`FollowStream` for `AsyncClient`: `async with` and/or `async for`. Leaving
    an `async for` over a stream not entered (break included) closes the
    response only when asyncio finalizes the dropped generator, soon after
    rather than at once: use `async with` to close it at a known point."""

    _client: AsyncClient

    async def __aenter__(self) -> AsyncFollowStream:
        self._opened(await self._client._send(self._call, stream=True))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._resp is not None:
            await self._resp.aclose()
            self._resp = None

    async def __aiter__(self) -> AsyncIterator[Any]:
        if self._resp is None:
            async with self:
                async for item in self._items():
                    yield item
        else:
            async for item in self._items():
                yield item

    async def _items(self) -> AsyncIterator[Any]:
        assert self._resp is not None
        try:
            async for line in self._resp.aiter_lines():
                item = self._item(line)
                if item is not None:
                    yield item
        except httpx.HTTPError as exc:
            raise transport_error(exc, self._client.url) from exc
