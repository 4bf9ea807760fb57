"""The asyncio executor of `Operations`: `AsyncClient`, on httpx.

The same operations as `Client` (defined once in `aether.client._base`), each
returning an awaitable. httpx is imported only here: the blocking client, and
so every CLI command's start, does without it (see aether/client/wire.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, BinaryIO

import httpx

from aether.client._base import (
    Call,
    Operations,
    Steps,
    araise_for_error,
    json_body,
    transport_error,
)
from aether.client._client import (
    CHUNK,
    DEFAULT_TIMEOUT,
    Follow,
    _camel,
    announced_length,
    base_headers,
    describe,
)
from aether.client.wire import Timeouts
from aether.errors import AetherError


def _request_kwargs(call: Call) -> dict[str, Any]:
    return {
        "params": call.params or None,
        "json": call.json,
        "content": call.content,
        "headers": call.headers or None,
    }


def _verify(base_url: str) -> bool:
    """Certificate checks for https URLs; none to set up for plain http."""
    return base_url.lower().startswith("https:")


def _transport_error(exc: httpx.HTTPError, where: str) -> Any:
    if isinstance(exc, httpx.TimeoutException):
        kind = "timeout"
    elif isinstance(exc, httpx.ConnectError):
        kind = "connect"
    else:
        kind = "broken"  # e.g. an export cut off mid-stream
    return transport_error(kind, exc, where)


class AsyncClient(Operations):
    """The asyncio twin of `Client`: the same methods, each returning an awaitable
    (`iter_*` return async iterators; `export` an async context manager/iterator)."""

    def __init__(
        self,
        base_url: str = "http://aetherd",
        *,
        token: str | None = None,
        uds: str | None = None,
        timeout: httpx.Timeout | float | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.url = describe(base_url, uds)
        if timeout is None:
            timeout = httpx.Timeout(DEFAULT_TIMEOUT.read, connect=DEFAULT_TIMEOUT.connect, pool=10.0)
        elif isinstance(timeout, Timeouts):
            timeout = httpx.Timeout(timeout.read, connect=timeout.connect, pool=10.0)
        if transport is None and uds:
            transport = httpx.AsyncHTTPTransport(uds=uds, verify=False)  # no TLS on a unix socket
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=base_headers(token, headers), timeout=timeout,
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

    def as_json(self) -> AsyncClient:
        """This client (its connections shared) answering with the daemon's
        proto3 JSON instead of messages, as `Client.as_json`: for callers that
        forward or pick from the JSON, building message objects is often the
        larger part of a call's CPU cost (the mount's write-back batches)."""
        view = _AsyncJsonClient.__new__(_AsyncJsonClient)
        view.url = self.url
        view._http = self._http
        return view

    async def _send(self, call: Call, stream: bool = False) -> httpx.Response:
        try:
            request = self._http.build_request(call.method, call.path, **_request_kwargs(call))
            resp = await self._http.send(request, stream=stream)
        except httpx.HTTPError as exc:
            raise _transport_error(exc, self.url) from exc
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

    async def _run_steps(self, steps: Steps) -> Any:
        try:
            call = next(steps)
            while True:
                try:
                    got = await self._call(call)
                except AetherError as exc:
                    call = steps.throw(exc)
                else:
                    call = steps.send(got)
        except StopIteration as done:
            return done.value

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
        self.total = announced_length(self._resp)
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
            raise _transport_error(exc, self._client.url) from exc


class AsyncFollowStream(Follow):
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
            raise _transport_error(exc, self._client.url) from exc


class _AsyncJsonClient(AsyncClient):
    """See `AsyncClient.as_json`."""

    async def aclose(self) -> None:
        pass  # the connections belong to the client this is a view of

    def __repr__(self) -> str:
        return f"AsyncClient({self.url!r}).as_json()"

    async def _call(self, call: Call) -> Any:
        if call.decode is not None or call.response is None:
            return call.result(await self._send(call))
        return json_body(await self._send(call))

    async def _paginate(self, make: Callable[[str], Call], items: str) -> AsyncIterator[Any]:
        token = ""
        while True:
            page = await self._call(make(token))
            for item in page.get(_camel(items), []):
                yield item
            token = page.get("nextPageToken", "")
            if not token:
                return

    async def _cursor_pages(
        self, make: Callable[[int], Call], after: int, items: str,
    ) -> AsyncIterator[Any]:
        while True:
            page = await self._call(make(after))
            for item in page.get(_camel(items), []):
                yield item
            cursor = int(page.get("nextCursor") or 0)  # int64: a string in proto3 JSON
            if cursor <= after:
                return
            after = cursor
