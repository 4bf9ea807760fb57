"""Streamed responses: archive export (chunked bytes) and live follows
(server-sent events).

Both pull from a server-streaming RPC. Until the first item (or error) arrives
nothing has been sent, so a failure is still a proper JSON error with its
status. After that the status line is gone: an export that fails is cut off
(the chunked body never ends, so no client mistakes it for a whole archive),
and a follow that fails sends one `error` event carrying the JSON error shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import betterproto2
from aiohttp import web

from aether import pb
from aether.errors import InvalidArgument
from aetherd.http.call import Call
from aetherd.http.errors import describe
from aetherd.http.proto_json import message_to_json, scalar_from_text

log = logging.getLogger("aetherd.http")

ARCHIVES: dict[pb.ArchiveFormat, tuple[str, str]] = {
    pb.ArchiveFormat.TAR: ("application/x-tar", ".tar"),
    pb.ArchiveFormat.TAR_GZ: ("application/gzip", ".tar.gz"),
    pb.ArchiveFormat.ZIP: ("application/zip", ".zip"),
}

# Unary "read after a cursor" RPCs whose live counterpart answers
# `Accept: text/event-stream` on the same route.
FOLLOWS: dict[tuple[str, str], str] = {
    ("bus", "read"): "follow",
    ("events", "list_events"): "follow",
}

# Proxies and load balancers drop idle connections; a comment line keeps the
# stream alive and lets the server notice a client that went away.
HEARTBEAT_SECONDS = 15.0
# How long a follow may take to fail before the 200 goes out. Errors a service
# raises up front (unknown session, UNIMPLEMENTED) arrive well within it and
# become proper JSON errors; a quiet stream just starts a little later.
FIRST_ITEM_GRACE_SECONDS = 0.25

# Where a streamed handler leaves its response once prepared, so a request
# whose client goes away mid-stream is still counted under the status it got.
STARTED_RESPONSE = web.RequestKey("aether_started_response", web.StreamResponse)

_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]")


async def _open(method: Callable[..., Any], msg: betterproto2.Message) -> AsyncIterator[Any]:
    """A server-streaming API method as an async iterator, whether it is an
    async generator function or a coroutine returning an iterator."""
    result = method(msg)
    if inspect.isawaitable(result):
        result = await result
    return aiter(result)


async def _close(stream: AsyncIterator[Any]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()


# ---- export


async def export(call: Call) -> web.StreamResponse:
    msg: pb.ExportRequest = await call.build()
    if msg.format == pb.ArchiveFormat.UNSPECIFIED:
        msg.format = pb.ArchiveFormat.TAR
    content_type, ext = ARCHIVES[msg.format]
    stream = await _open(call.method(), msg)
    try:
        try:
            first: pb.ExportChunk | None = await anext(stream)
        except StopAsyncIteration:
            first = None
        filename = _UNSAFE_FILENAME.sub("_", msg.session_id or "export") + ext
        response = web.StreamResponse(headers={
            "Content-Type": content_type,
            "Content-Disposition": f'attachment; filename="{filename}"',
            "X-Request-Id": call.request_id,
        })
        response.enable_chunked_encoding()
        await response.prepare(call.request)
        call.request[STARTED_RESPONSE] = response
        try:
            if first is not None:
                await response.write(first.data)
            async for chunk in stream:
                await response.write(chunk.data)
        except ConnectionError:
            return response  # the client went away; nothing left to tell it
        except Exception:
            log.exception("export of %s failed mid-stream; cutting the response off",
                          msg.session_id)
            _abort(call.request)
            return response
        await response.write_eof()
        return response
    finally:
        await _close(stream)


def _abort(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()


# ---- server-sent events


def wants_event_stream(request: web.Request) -> bool:
    for item in request.headers.getall("Accept", []):
        for part in item.split(","):
            media, *params = (p.strip().lower() for p in part.split(";"))
            if media == "text/event-stream" and "q=0" not in params:
                return True
    return False


def format_event(item: betterproto2.Message) -> bytes:
    """`id:` is the item's cursor (so Last-Event-ID resumes), `event:` its topic or type."""
    lines = []
    cursor = getattr(item, "cursor", None)
    if cursor:
        lines.append(f"id: {cursor}")
    name = getattr(item, "topic", "") or getattr(item, "type", "") or "message"
    lines.append(f"event: {_one_line(name)}")
    lines.append(f"data: {json.dumps(message_to_json(item))}")
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def _one_line(text: str) -> str:
    return re.sub(r"[\r\n]+", " ", text)


async def _next(stream: AsyncIterator[Any]) -> Any:
    return await anext(stream)


async def follow(call: Call, rpc_name: str) -> web.StreamResponse:
    msg = await call.build()
    last_id = call.request.headers.get("Last-Event-ID")
    if last_id is not None and last_id.strip():
        if not hasattr(msg, "after"):
            raise InvalidArgument("this stream cannot be resumed with Last-Event-ID")
        msg.after = scalar_from_text(betterproto2.TYPE_UINT64, int, last_id, "Last-Event-ID")
    stream = await _open(call.method(rpc_name), msg)
    pending = asyncio.ensure_future(_next(stream))
    try:
        await asyncio.wait({pending}, timeout=FIRST_ITEM_GRACE_SECONDS)
        if pending.done() and pending.exception() is not None:
            if not isinstance(pending.exception(), StopAsyncIteration):
                raise pending.exception()  # type: ignore[misc]
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
            "X-Request-Id": call.request_id,
        })
        await response.prepare(call.request)
        call.request[STARTED_RESPONSE] = response
        # The daemon runs aiohttp with handler cancellation, so a client that
        # goes away cancels this handler at once (not at the next heartbeat).
        open_streams = call.api.observability.metrics.open_streams.labels("http")  # type: ignore[attr-defined]
        open_streams.inc()
        try:
            while True:
                await asyncio.wait({pending}, timeout=HEARTBEAT_SECONDS)
                if not pending.done():
                    await response.write(b": keepalive\n\n")
                    continue
                try:
                    item = pending.result()
                except StopAsyncIteration:
                    break
                except Exception as exc:
                    await response.write(_error_event(call, exc))
                    break
                await response.write(format_event(item))
                pending = asyncio.ensure_future(_next(stream))
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away
        finally:
            open_streams.dec()
        return response
    finally:
        pending.cancel()
        await asyncio.wait({pending})
        if not pending.cancelled():
            pending.exception()  # retrieved, so asyncio does not log it as lost
        await _close(stream)


def _error_event(call: Call, exc: Exception) -> bytes:
    _, body, _ = describe(exc, call.request, call.request_id)
    return f"event: error\ndata: {json.dumps(body.to_dict(include_default_values=True))}\n\n"\
        .encode()
