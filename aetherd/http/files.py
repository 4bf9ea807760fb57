"""Raw file bytes over HTTP: GET/HEAD with ETag, Range and If-None-Match;
PUT, PATCH and DELETE with If-Match."""

from __future__ import annotations

import betterproto2
from aiohttp import web

from aether import pb
from aether.errors import Conflict, InvalidArgument, RangeNotSatisfiable
from aetherd.http.call import Call, json_reply
from aetherd.http.conditional import (
    ByteRange,
    etag,
    if_match_value,
    none_match,
    parse_range,
)
from aetherd.http.errors import describe, error_response
from aetherd.http.proto_json import scalar_from_text

OCTET_STREAM = "application/octet-stream"
# A suffix range needs the size before the read; when the file keeps changing
# between the two reads we give up after this many tries rather than serve a
# range computed from a stale size.
SUFFIX_RANGE_TRIES = 3


async def read_file(call: Call) -> web.StreamResponse:
    req: pb.ReadFileRequest = await call.build()
    headers = call.request.headers
    head = call.request.method == "HEAD"
    rng = parse_range(headers.get("Range"))
    if rng is None and (req.offset or req.length):
        # ?offset=&length= is a range given in the query: answer it as one.
        rng = ByteRange(first=req.offset,
                        last=req.offset + req.length - 1 if req.length else None)

    if rng is not None:
        try:
            reply, offset = await _read_range(call, req, rng)
        except RangeNotSatisfiable as exc:
            return _unsatisfiable(call, exc)
        if none_match(headers.get("If-None-Match"), reply.hash):
            return _not_modified(reply)
        if_range = headers.get("If-Range")
        if if_range is None or _if_range_holds(if_range, reply.hash):
            end = offset + len(reply.data) - 1
            return _bytes(206, reply, None if head else reply.data, len(reply.data),
                          {"Content-Range": f"bytes {offset}-{end}/{reply.size}"})

    # The whole file. A HEAD reads one byte: enough to learn hash and size.
    req.offset, req.length = 0, 1 if head else 0
    reply = await call.method()(req)
    if none_match(headers.get("If-None-Match"), reply.hash):
        return _not_modified(reply)
    return _bytes(200, reply, None if head else reply.data, reply.size)


async def _read_range(call: Call, req: pb.ReadFileRequest,
                      rng: ByteRange) -> tuple[pb.ReadFileResponse, int]:
    read = call.method()
    if rng.suffix is None:
        req.offset = rng.first
        req.length = 0 if rng.last is None else min(rng.last - rng.first + 1, 2**64 - 1)
        reply = await read(req)
        rng.resolve(reply.size)
        return reply, rng.first
    for _ in range(SUFFIX_RANGE_TRIES):
        req.offset, req.length = 0, 1
        probe = await read(req)
        req.offset, req.length = rng.resolve(probe.size)
        reply = await read(req)
        if reply.hash == probe.hash:
            return reply, req.offset
    raise Conflict("the file kept changing while its tail was read; retry")


def _if_range_holds(if_range: str, content_hash: str) -> bool:
    """If-Range compares strongly with our ETag; a date never matches (no Last-Modified)."""
    return bool(content_hash) and if_range.strip() == etag(content_hash)


def _validators(reply: pb.ReadFileResponse) -> dict[str, str]:
    headers = {"Accept-Ranges": "bytes", "X-Aether-Size": str(reply.size)}
    if reply.hash:  # symlinks have none
        headers["ETag"] = etag(reply.hash)
    return headers


def _bytes(status: int, reply: pb.ReadFileResponse, body: bytes | None, length: int,
           extra: dict[str, str] | None = None) -> web.Response:
    headers = {**_validators(reply), "Content-Length": str(length), **(extra or {})}
    return web.Response(status=status, body=body, headers=headers, content_type=OCTET_STREAM)


def _not_modified(reply: pb.ReadFileResponse) -> web.Response:
    return web.Response(status=304, headers=_validators(reply))


def _unsatisfiable(call: Call, exc: RangeNotSatisfiable) -> web.Response:
    status, body, headers = describe(exc, call.request, "")
    size = exc.details.get("size")
    if size is not None:
        headers["Content-Range"] = f"bytes */{size}"
    return error_response(status, body, headers)


def _preconditions(call: Call, msg: pb.WriteFileRequest | pb.DeleteFileRequest
                   | pb.PatchFileRequest, *, none_match_allowed: bool) -> None:
    headers = call.request.headers
    inm = headers.get("If-None-Match") if none_match_allowed else None
    if "If-Match" in headers or inm is not None:
        msg.if_match = if_match_value(headers.get("If-Match"), inm)


def _with_etag(reply: pb.FileInfo) -> dict[str, str]:
    return {"ETag": etag(reply.hash)} if reply.hash else {}


async def write_file(call: Call) -> web.Response:
    parents = call.take_one("parents")
    explicit = call.has_query("create_parents")
    msg: pb.WriteFileRequest = await call.build()
    if msg.chunks:
        raise InvalidArgument("a PUT writes its body's bytes; a write by chunks is a write "
                              "op of fs:apply", parameter="chunks")
    if parents is not None:
        msg.create_parents = scalar_from_text(betterproto2.TYPE_BOOL, bool, parents, "parents")
    elif not explicit:
        msg.create_parents = True
    _preconditions(call, msg, none_match_allowed=True)
    reply = await call.method()(msg)
    return json_reply(reply, call.route.success_status, _with_etag(reply))


async def delete_file(call: Call) -> web.Response:
    msg: pb.DeleteFileRequest = await call.build()
    _preconditions(call, msg, none_match_allowed=False)
    reply = await call.method()(msg)
    return json_reply(reply, call.route.success_status, _with_etag(reply))


async def patch_file(call: Call) -> web.Response:
    """A unified diff, or (octet-stream body / ?offset=) bytes written at an offset."""
    offset = call.take_one("offset")
    is_bytes = ("Content-Type" in call.request.headers
                and call.request.content_type == OCTET_STREAM)
    if is_bytes or offset is not None:
        if offset is None:
            raise InvalidArgument("a byte-range PATCH needs ?offset=N", parameter="offset")
        write = pb.WriteFileRequest(
            data=await call.body(), at_offset=True,
            offset=scalar_from_text(betterproto2.TYPE_UINT64, int, offset, "offset"))
        msg = await call.build(body=write)
        msg.at_offset = True
        _preconditions(call, msg, none_match_allowed=False)
        reply = await call.method("write_file")(msg)
    else:
        try:
            diff = (await call.body()).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidArgument("the patch is not valid UTF-8") from None
        msg = await call.build(body=pb.PatchFileRequest(unified_diff=diff))
        _preconditions(call, msg, none_match_allowed=False)
        reply = await call.method()(msg)
    return json_reply(reply, call.route.success_status, _with_etag(reply))
