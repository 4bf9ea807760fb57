"""One definition of every HTTP operation, shared by the sync and async clients.

Each public method of `Operations` builds a `Call` (method, path, query, body,
how to decode the answer) and hands it to `self._call(call)`. `Client` runs it
and returns the result; `AsyncClient` returns a coroutine with the same result.
Pagination and streaming differ between the two only in how they loop, so
they get `self._paginate(...)` / `self._stream(...)` with the same split.

Paths and query names follow `aetherd/http/routes.py` (the route table); request
and response bodies are the proto3 JSON mapping of the `aether.pb` messages.
"""

from __future__ import annotations

import datetime
import json as _json
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol
from urllib.parse import quote

from aether import pb
from aether.errors import CODES, AetherError, from_code

if TYPE_CHECKING:
    from email.message import Message


class Response(Protocol):
    """What this module reads of an answer: the part of its interface that
    Response (AsyncClient) and aether.client.wire.Response (Client) share."""

    status_code: int
    reason_phrase: str
    headers: Message | Mapping[str, str]
    is_closed: bool

    @property
    def content(self) -> bytes: ...
    @property
    def text(self) -> str: ...
    def json(self) -> Any: ...

# Archive formats: the names the HTTP API and the CLI use -> ArchiveFormat
# member names. Members are looked up when needed: aether.pb loads lazily.
FORMAT_NAMES: dict[str, str] = {"tar": "TAR", "tar.gz": "TAR_GZ", "zip": "ZIP"}
_FORMAT_CONTENT_TYPES: dict[str, str] = {
    "TAR": "application/x-tar",
    "TAR_GZ": "application/gzip",
    "ZIP": "application/zip",
}
_STATE_NAMES: dict[str, str] = {"active": "ACTIVE", "archived": "ARCHIVED"}


def _content_type(fmt: pb.ArchiveFormat) -> str:
    """The content type naming `fmt` (octet-stream: the daemon detects it)."""
    return _FORMAT_CONTENT_TYPES.get(fmt.name or "", "application/octet-stream")


def archive_format(value: str | pb.ArchiveFormat | None) -> pb.ArchiveFormat:
    """'tar' | 'tar.gz' | 'tgz' | 'zip' | ArchiveFormat | None -> ArchiveFormat."""
    if value is None or value == "":
        return pb.ArchiveFormat.UNSPECIFIED
    if isinstance(value, pb.ArchiveFormat):
        return value
    name = value.lower().lstrip(".")
    if name == "tgz":
        name = "tar.gz"
    try:
        return pb.ArchiveFormat[FORMAT_NAMES[name]]
    except KeyError:
        raise from_code(
            "invalid_argument", f"unknown archive format {value!r}: want tar, tar.gz or zip"
        ) from None


def format_name(value: pb.ArchiveFormat) -> str:
    for name, member in FORMAT_NAMES.items():
        if member == value.name:
            return name
    return ""


def session_state(value: str | pb.SessionState | None) -> pb.SessionState:
    if value is None or value == "":
        return pb.SessionState.UNSPECIFIED
    if isinstance(value, pb.SessionState):
        return value
    try:
        return pb.SessionState[_STATE_NAMES[value.lower()]]
    except KeyError:
        raise from_code(
            "invalid_argument", f"unknown session state {value!r}: want active or archived"
        ) from None


# ---- URL building


def seg(value: str) -> str:
    """One path segment (an id, a key): everything but unreserved characters encoded."""
    if not value:
        raise from_code("invalid_argument", "an identifier must not be empty")
    return _dot_safe(quote(value, safe=""))


def file_path(path: str) -> str:
    """A session path for `.../files/{path}`: each segment encoded, "/" kept.

    "." and ".." segments are sent encoded (%2E) so that no HTTP library
    normalises them away: the daemon sees them and refuses them.
    """
    path = path.lstrip("/")
    if not path:
        raise from_code("invalid_argument", "a file path must not be empty")
    return "/".join(_dot_safe(quote(part, safe="")) for part in path.split("/"))


# Words the cache routes use after /cache/: the daemon matches them only when
# spelled plainly, so a key that equals one travels with its first letter encoded.
_CACHE_WORDS = frozenset({"keys", "stats", "batch-get", "batch-set", "batch-delete",
                          "delete-by-prefix"})


def cache_key(key: str) -> str:
    """A cache key as one path segment: "/" and everything else reserved encoded."""
    part = seg(key)
    if part in _CACHE_WORDS:
        part = f"%{ord(part[0]):02X}{part[1:]}"
    return part


def _dot_safe(part: str) -> str:
    return part.replace(".", "%2E") if part in (".", "..") else part


def session_url(session_id: str) -> str:
    return f"/v1/sessions/{seg(session_id)}"


Query = list[tuple[str, str]]


def query(**params: Any) -> Query:
    """Query pairs: None/""/0/False/empty are left out (the proto defaults),
    lists repeat the name, mappings become repeated "k=v", enums their proto name."""
    out: Query = []
    for name, value in params.items():
        name = name.rstrip("_")  # from_ -> from
        if value is None or value == "" or value is False:
            continue
        if isinstance(value, Mapping):
            out.extend((name, f"{k}={v}") for k, v in value.items())
        elif isinstance(value, list | tuple | set | frozenset):
            out.extend((name, str(v)) for v in value)
        elif hasattr(value, "proto_name"):  # a proto enum (never 0: the default)
            if int(value) != 0:
                is_format = isinstance(value, pb.ArchiveFormat)
                out.append((name, format_name(value) if is_format else value.proto_name))
        elif value is True:
            out.append((name, "true"))
        elif isinstance(value, int):
            if value != 0:
                out.append((name, str(value)))
        else:
            out.append((name, str(value)))
    return out


# ---- calls


@dataclass
class Call:
    """One HTTP exchange, fully described. `decode` turns a successful answer into
    the result; by default the body is parsed as the proto3 JSON of the message
    named `response` (a name, resolved in aether.pb only when an answer is
    decoded into a message: `Client.as_json()` never loads the classes)."""

    method: str
    path: str
    params: Query = field(default_factory=list)
    json: dict[str, Any] | None = None
    content: bytes | Iterable[bytes] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    response: str | None = None
    decode: Callable[[Response], Any] | None = None

    def message_class(self) -> Any:
        return getattr(pb, self.response) if self.response else None

    def result(self, resp: Response) -> Any:
        if self.decode is not None:
            return self.decode(resp)
        if self.response is None:
            return None
        return self.message_class().from_dict(json_body(resp, self.path),
                                              ignore_unknown_fields=True)


def json_body(resp: Response, path: str = "") -> Any:
    """The answer's JSON ({} for an empty body)."""
    try:
        return resp.json() if resp.content else {}
    except ValueError:
        where = path or getattr(resp, "path", "") or "a request"
        raise from_code("internal", f"the server answered {where} with non-JSON content") from None


def raise_for_error(resp: Response) -> None:
    """Turn an error answer into the typed AetherError the daemon raised."""
    if resp.status_code < 400:
        return
    if not resp.is_closed:  # a streamed answer: its body holds the error
        resp.read()
    raise error_from_response(resp)


async def araise_for_error(resp: Response) -> None:
    if resp.status_code < 400:
        return
    if not resp.is_closed:
        await resp.aread()
    raise error_from_response(resp)


def error_from_response(resp: Response) -> AetherError:
    detail: Any = None
    try:
        detail = _json.loads(resp.content).get("error")
    except (ValueError, AttributeError):
        pass
    if isinstance(detail, dict) and detail.get("code"):
        err = from_code(str(detail["code"]), str(detail.get("message") or detail["code"]))
        details = detail.get("details")
        if isinstance(details, dict):
            err.details = {str(k): str(v) for k, v in details.items()}
        return err
    code = _code_for_status(resp.status_code)
    text = resp.text.strip().splitlines()[0][:200] if resp.text.strip() else ""
    message = f"HTTP {resp.status_code} {resp.reason_phrase}" + (f": {text}" if text else "")
    return from_code(code, message)


def _code_for_status(status: int) -> str:
    for code, (http_status, _) in CODES.items():
        if http_status == status:
            return code
    return "unavailable" if status in (502, 504) else "internal"


def transport_error(kind: str, exc: BaseException, where: str) -> AetherError:
    """No usable answer from the daemon, as `unavailable`. `kind` is how the
    client's HTTP layer classed the failure: "connect", "timeout" or "broken"."""
    if kind == "timeout":
        return from_code("unavailable", f"timed out talking to aetherd at {where}")
    if kind == "connect":
        return from_code("unavailable", f"cannot reach aetherd at {where}: {exc}")
    return from_code("unavailable", f"the connection to aetherd at {where} broke: {exc}")


def _etag(resp: Response) -> str:
    tag = resp.headers.get("etag", "")
    if tag.startswith("W/"):
        tag = tag[2:]
    return tag.strip('"')


def _read_file_result(resp: Response) -> pb.ReadFileResponse:
    size = len(resp.content)
    total = resp.headers.get("x-aether-size", "")
    if not total.isdigit():  # a plain HTTP server: Content-Range "bytes a-b/total"
        total = resp.headers.get("content-range", "").rpartition("/")[2]
    if total.isdigit():
        size = int(total)
    return pb.ReadFileResponse(data=resp.content, hash=_etag(resp), size=size)


def _precondition(if_match: str) -> dict[str, str]:
    """The header for an `if_match` value: a content hash or "*" -> If-Match;
    "!" (must not exist) -> If-None-Match: *."""
    if not if_match:
        return {}
    if if_match == "!":
        return {"if-none-match": "*"}
    if if_match == "*":
        return {"if-match": "*"}
    tag = if_match.strip('"')
    return {"if-match": f'"{tag}"'}


def _dict(msg: Any) -> dict[str, Any]:
    return msg.to_dict()


# ---- writes by chunks (Operations.write_file_chunked)

# The daemon cuts content into chunks of this size (aetherd.store.objects.CHUNK_SIZE);
# a chunk's hash is the BLAKE3 (hex) of its bytes.
CHUNK_SIZE = 1 << 20
# Chunk bytes sent per PutChunks request, and hashes asked per MissingChunks one.
PUT_CHUNKS_BYTES = 64 << 20
MISSING_QUERY = 10_000
Steps = Generator["Call", Any, Any]


@dataclass
class ChunkedUpload:
    """What a `write_file_chunked` moved: `size` bytes in `chunks` chunks, of
    which `uploaded_bytes` were sent (in `put_requests` requests) and
    `skipped_bytes` the daemon already held."""

    size: int = 0
    chunks: int = 0
    uploaded_bytes: int = 0
    skipped_bytes: int = 0
    put_requests: int = 0


def chunk_hashes(data: bytes | memoryview) -> list[str]:
    """The daemon's chunk hashes of some content: BLAKE3 hex of each 1 MiB piece."""
    import blake3

    view = memoryview(data)
    return [blake3.blake3(view[i : i + CHUNK_SIZE]).hexdigest()
            for i in range(0, len(view), CHUNK_SIZE)]


def _field(reply: Any, name: str) -> Any:
    """A field of a reply, whether a message or its proto3 JSON (`as_json`)."""
    return reply.get(name, []) if isinstance(reply, dict) else getattr(reply, name)


class _Content:
    """The content of a chunked write: bytes, or a file read chunk by chunk
    (seekable: read again for the missing chunks; else read whole first)."""

    def __init__(self, source: bytes | BinaryIO) -> None:
        self.file: BinaryIO | None = None
        self.data = b""
        if isinstance(source, (bytes, bytearray, memoryview)):
            self.data = bytes(source)
        elif getattr(source, "seekable", lambda: False)():
            self.file, self.start = source, source.tell()
        else:
            self.data = source.read()

    def hashes(self) -> tuple[list[str], int]:
        """(chunk hashes, size)."""
        import blake3

        if self.file is None:
            return chunk_hashes(self.data), len(self.data)
        self.file.seek(self.start)
        out, size = [], 0
        while piece := self._read(CHUNK_SIZE):
            out.append(blake3.blake3(piece).hexdigest())
            size += len(piece)
            if len(piece) < CHUNK_SIZE:
                break
        return out, size

    def read(self, first: int, count: int) -> bytes:
        """Chunks first..first+count-1."""
        if self.file is None:
            return self.data[first * CHUNK_SIZE : (first + count) * CHUNK_SIZE]
        self.file.seek(self.start + first * CHUNK_SIZE)
        return self._read(count * CHUNK_SIZE)

    def _read(self, n: int) -> bytes:
        """`n` bytes, fewer only at the end of the file (a raw file may return less)."""
        assert self.file is not None
        got = self.file.read(n)
        if len(got) in (0, n):
            return got
        parts = [got]
        while (have := sum(map(len, parts))) < n and (more := self.file.read(n - have)):
            parts.append(more)
        return b"".join(parts)


def _chunked_steps(ops: Operations, session_id: str, path: str, source: bytes | BinaryIO,
                   if_match: str, mode: int, create_parents: bool,
                   report: ChunkedUpload) -> Steps:
    content = _Content(source)
    hashes, report.size = content.hashes()
    report.chunks = len(hashes)
    write: dict[str, Any] = {"path": path, "chunks": hashes, "createParents": create_parents}
    if if_match:
        write["ifMatch"] = if_match
    if mode:
        write["mode"] = mode
    body = {"ops": [{"write": write}], "atomic": True}
    for attempt in range(3):
        unique = list(dict.fromkeys(hashes))
        missing: set[str] = set()
        for i in range(0, len(unique), MISSING_QUERY):
            reply = yield ops._missing_call(session_id, unique[i : i + MISSING_QUERY])
            missing.update(_field(reply, "missing"))
        # Runs of consecutive chunks to send, each chunk once, up to 64 MiB a request.
        runs: list[tuple[int, int]] = []
        for i, h in enumerate(hashes):
            if h not in missing:
                continue
            missing.discard(h)
            if runs and runs[-1][0] + runs[-1][1] == i and (runs[-1][1] + 1) * CHUNK_SIZE <= \
                    PUT_CHUNKS_BYTES:
                runs[-1] = (runs[-1][0], runs[-1][1] + 1)
            else:
                runs.append((i, 1))
        for first, count in runs:
            data = content.read(first, count)
            reply = yield ops._put_call(session_id, data)
            got = list(_field(reply, "hashes"))
            if got != hashes[first : first + count]:
                raise from_code("failed_precondition", f"{path!r}: the content changed "
                                "while it was uploaded (its chunks hash differently now)")
            report.put_requests += 1
            report.uploaded_bytes += len(data)
        try:
            reply = yield Call("POST", f"{session_url(session_id)}/fs:apply", json=body,
                               response="ApplyResponse")
        except AetherError as exc:
            if exc.code != "failed_precondition" or "missing_chunk" not in exc.details \
                    or attempt == 2:
                raise
            continue  # gc freed a chunk in between: ask again, upload what is missing
        report.skipped_bytes = max(0, report.size - report.uploaded_bytes)
        return _field(reply, "results")[0]["info"] if isinstance(reply, dict) \
            else reply.results[0].info
    raise AssertionError("unreachable")  # pragma: no cover


# ---- the operations


class Operations:
    """Every operation of the AetherFS HTTP API (sessions, files, persistence,
    knowledge cache, bus, events, review, observability).

    Sync `Client` methods return the result; `AsyncClient` methods return an
    awaitable of the same result. `iter_*` methods page through a listing
    (an iterator, or an async iterator); `export` streams bytes; `follow_bus`
    and `follow_events` stream live messages/events (server-sent events).
    """

    def _call(self, call: Call) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _paginate(self, make: Callable[[str], Call], items: str) -> Any:  # pragma: no cover
        raise NotImplementedError

    def _stream(self, call: Call) -> Any:  # pragma: no cover
        raise NotImplementedError

    def _download(
        self, call: Call, file: BinaryIO, progress: Callable[[int, int | None], None] | None,
    ) -> Any:  # pragma: no cover
        raise NotImplementedError

    def _cursor_pages(self, make: Callable[[int], Call], after: int, items: str) -> Any:
        """Like `_paginate`, for logs read "after a cursor" (bus, events)."""
        raise NotImplementedError  # pragma: no cover

    def _run_steps(self, steps: Steps) -> Any:  # pragma: no cover - abstract
        """Run an operation of several requests: send each Call `steps` yields,
        send its result back in (or throw its AetherError in); the generator's
        return value is the result."""
        raise NotImplementedError

    def _follow(self, call: Call) -> Any:  # pragma: no cover
        """A live follow (server-sent events) yielding `call.response` messages."""
        raise NotImplementedError

    # -- observability

    def health(self) -> pb.HealthResponse:
        return self._call(Call("GET", "/v1/health", response="HealthResponse"))

    # -- sessions

    def create_session(
        self,
        source: pb.SessionSource | None = None,
        *,
        name: str = "",
        labels: Mapping[str, str] | None = None,
        tags: Iterable[str] = (),
        metadata: Mapping[str, str] | None = None,
        owner: str = "",
        policy: pb.SessionPolicy | None = None,
    ) -> pb.Session:
        """Create a session from `source` (see `aether.client.source`; blank by default).

        An archive source is uploaded as the raw request body (not base64 JSON).
        """
        source = source or pb.SessionSource(blank=pb.BlankSource())
        archive = source.archive if _which(source) == "archive" else None
        if archive is not None:
            if metadata or owner or policy is not None:
                raise from_code(
                    "invalid_argument",
                    "metadata, owner and policy cannot be set on an archive upload; "
                    "update the session after creating it",
                )
            fmt = archive_format(archive.format)
            return self._call(Call(
                "POST", "/v1/sessions",
                # the content type names the format (octet-stream: detect it)
                params=query(name=name, label=dict(labels or {}), tag=list(tags)),
                content=bytes(archive.data),
                headers={"content-type": _content_type(fmt)},
                response="Session",
            ))
        req = pb.CreateSessionRequest(
            name=name, source=source, labels=dict(labels or {}), tags=list(tags),
            metadata=dict(metadata or {}), owner=owner, policy=policy,
        )
        return self._call(Call("POST", "/v1/sessions", json=_dict(req), response="Session"))

    def _list_sessions_call(
        self, labels: Mapping[str, str] | None, tags: Iterable[str],
        state: str | pb.SessionState | None, page_size: int, page_token: str,
    ) -> Call:
        return Call("GET", "/v1/sessions", params=query(
            labels=dict(labels or {}), tags=list(tags),
            state=session_state(state) if state else None,
            page_size=page_size, page_token=page_token,
        ), response="ListSessionsResponse")

    def list_sessions(
        self,
        *,
        labels: Mapping[str, str] | None = None,
        tags: Iterable[str] = (),
        state: str | pb.SessionState | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> pb.ListSessionsResponse:
        """One page of sessions matching every label and tag given (and the state)."""
        return self._call(self._list_sessions_call(labels, tags, state, page_size, page_token))

    def iter_sessions(
        self,
        *,
        labels: Mapping[str, str] | None = None,
        tags: Iterable[str] = (),
        state: str | pb.SessionState | None = None,
        page_size: int = 0,
    ) -> Any:
        """Every matching session, page after page (Iterator / AsyncIterator[pb.Session])."""
        tags = list(tags)
        return self._paginate(
            lambda token: self._list_sessions_call(labels, tags, state, page_size, token),
            "sessions",
        )

    def _tombstones_call(self, owner: str, page_size: int, page_token: str) -> Call:
        return Call("GET", "/v1/tombstones", params=query(
            owner=owner, page_size=page_size, page_token=page_token),
            response="ListTombstonesResponse")

    def list_tombstones(
        self, *, owner: str = "", page_size: int = 0, page_token: str = "",
    ) -> pb.ListTombstonesResponse:
        """One page of audit records of deleted sessions, newest first (admins)."""
        return self._call(self._tombstones_call(owner, page_size, page_token))

    def iter_tombstones(self, *, owner: str = "", page_size: int = 0) -> Any:
        """Every tombstone still kept (Iterator / AsyncIterator[pb.Tombstone])."""
        return self._paginate(
            lambda token: self._tombstones_call(owner, page_size, token), "tombstones")

    def get_tombstone(self, session_id: str) -> pb.Tombstone:
        """The audit record of a deleted session (admins)."""
        return self._call(Call("GET", f"/v1/tombstones/{seg(session_id)}",
                               response="Tombstone"))

    def get_session(self, session_id: str) -> pb.Session:
        return self._call(Call("GET", session_url(session_id), response="Session"))

    def update_session(
        self,
        session_id: str,
        *,
        name: str | None = None,
        labels: Mapping[str, str] | None = None,
        tags: Iterable[str] | None = None,
        metadata: Mapping[str, str] | None = None,
        policy: pb.SessionPolicy | None = None,
    ) -> pb.Session:
        """Replace the fields given (and only those; None leaves a field alone)."""
        mask: list[str] = []
        req = pb.UpdateSessionRequest()
        if name is not None:
            req.name = name
            mask.append("name")
        if labels is not None:
            req.labels = dict(labels)
            mask.append("labels")
        if tags is not None:
            req.tags = list(tags)
            mask.append("tags")
        if metadata is not None:
            req.metadata = dict(metadata)
            mask.append("metadata")
        if policy is not None:
            req.policy = policy
            mask.append("policy")
        req.update_mask = mask
        return self._call(Call(
            "PATCH", session_url(session_id), json=_dict(req), response="Session"))

    def delete_session(self, session_id: str) -> pb.Session:
        return self._call(Call("DELETE", session_url(session_id), response="Session"))

    def fork_session(
        self,
        session_id: str,
        *,
        name: str = "",
        labels: Mapping[str, str] | None = None,
        tags: Iterable[str] = (),
        at: str = "",
    ) -> pb.Session:
        """A new session sharing this one's state (or the state `at` a checkpoint/commit)."""
        req = pb.ForkSessionRequest(name=name, labels=dict(labels or {}), tags=list(tags), at=at)
        return self._call(Call(
            "POST", session_url(session_id) + ":fork", json=_dict(req), response="Session"))

    def archive_session(self, session_id: str) -> pb.Session:
        return self._call(Call("POST", session_url(session_id) + ":archive", response="Session"))

    def restore_session(self, session_id: str, checkpoint_id: str) -> pb.Session:
        """Reset the working state to a checkpoint (ckp_...), a commit (cmt_...) or "base"."""
        req = pb.RestoreSessionRequest(checkpoint_id=checkpoint_id)
        return self._call(Call(
            "POST", session_url(session_id) + ":restore", json=_dict(req), response="Session"))

    # -- files

    def _tree_call(
        self, session_id: str, path: str, depth: int, recursive: bool, at: str, page_size: int,
        page_token: str,
    ) -> Call:
        return Call("GET", session_url(session_id) + "/tree", params=query(
            path=path.strip("/"), depth=depth, recursive=recursive, at=at, page_size=page_size,
            page_token=page_token,
        ), response="ListTreeResponse")

    def list_tree(
        self,
        session_id: str,
        path: str = "",
        *,
        depth: int = 1,
        recursive: bool = False,
        at: str = "",
        page_size: int = 0,
        page_token: str = "",
    ) -> pb.ListTreeResponse:
        """Entries under `path` ("" = root): `depth` levels (1 = children), or
        everything below with `recursive`."""
        return self._call(self._tree_call(
            session_id, path, depth, recursive, at, page_size, page_token))

    def iter_tree(
        self, session_id: str, path: str = "", *, depth: int = 1, recursive: bool = False,
        at: str = "", page_size: int = 0,
    ) -> Any:
        """Every entry under `path` (Iterator / AsyncIterator[pb.FileInfo])."""
        return self._paginate(
            lambda token: self._tree_call(
                session_id, path, depth, recursive, at, page_size, token),
            "entries",
        )

    def _file_url(self, session_id: str, path: str, kind: str = "files") -> str:
        return f"{session_url(session_id)}/{kind}/{file_path(path)}"

    def read_file(
        self, session_id: str, path: str, *, offset: int = 0, length: int = 0, at: str = "",
    ) -> pb.ReadFileResponse:
        """File bytes (`length` 0 = to the end) with the content hash and full size."""
        return self._call(self._read_call(session_id, path, offset, length, at))

    def _read_call(self, session_id: str, path: str, offset: int, length: int, at: str) -> Call:
        if offset < 0 or length < 0:
            raise from_code("invalid_argument", "offset and length must not be negative")
        headers = {}
        if offset or length:
            end = str(offset + length - 1) if length else ""
            headers["range"] = f"bytes={offset}-{end}"
        return Call("GET", self._file_url(session_id, path), params=query(at=at),
                    headers=headers, decode=_read_file_result)

    def read_files(
        self, session_id: str, paths: list[str], *, at: str = "", max_bytes: int = 0,
    ) -> pb.ReadFilesResponse:
        """Many whole files of one state in one request (`POST …/fs:read`), all
        read from one consistent view. One entry per path, in order: `data`,
        `hash`, `size` and `mode`; or `error` (an ErrorDetail: not_found,
        failed_precondition for a directory or a symlink, ...); or `truncated`
        (no data: the answer was full, ask again for it; a file over the
        daemon's limit always is, read it with `read_file` in ranges).
        `max_bytes`: stop adding content once the answer holds that much
        (0 = the daemon's limit, which also caps it)."""
        body: dict[str, Any] = {"paths": list(paths)}
        if at:
            body["at"] = at
        if max_bytes:
            body["maxBytes"] = str(max_bytes)  # uint64: a string in proto3 JSON
        return self._call(Call("POST", f"{session_url(session_id)}/fs:read", json=body,
                               response="ReadFilesResponse"))

    def stream_file(
        self, session_id: str, path: str, *, offset: int = 0, length: int = 0, at: str = "",
    ) -> Any:
        """File bytes as a stream, for files too big to hold in memory: a `ByteStream`
        (sync) or `AsyncByteStream` (async); iterate it for chunks."""
        call = self._read_call(session_id, path, offset, length, at)
        call.decode = None
        return self._stream(call)

    def write_file(
        self,
        session_id: str,
        path: str,
        data: bytes,
        *,
        if_match: str = "",
        mode: int = 0,
        create_parents: bool = True,
    ) -> pb.FileInfo:
        """Replace a file's content. `if_match`: the expected content hash, "*"
        (must exist) or "!" (must not exist); a mismatch raises Conflict."""
        headers = {"content-type": "application/octet-stream", **_precondition(if_match)}
        params: Query = [("mode", f"{mode:04o}")] if mode else []  # octal, like chmod
        if not create_parents:
            params.append(("create_parents", "false"))
        return self._call(Call(
            "PUT", self._file_url(session_id, path), params=params, content=bytes(data),
            headers=headers, response="FileInfo",
        ))

    def write_range(
        self, session_id: str, path: str, data: bytes, offset: int, *, if_match: str = "",
    ) -> pb.FileInfo:
        """Write `data` at `offset` inside a file (extending it if needed)."""
        headers = {"content-type": "application/octet-stream", **_precondition(if_match)}
        return self._call(Call(
            "PATCH", self._file_url(session_id, path), params=[("offset", str(offset))],
            content=bytes(data), headers=headers, response="FileInfo",
        ))

    def patch_file(
        self, session_id: str, path: str, unified_diff: str, *, if_match: str = "",
    ) -> pb.FileInfo:
        """Apply a unified diff of this one file."""
        headers = {"content-type": "text/x-diff; charset=utf-8", **_precondition(if_match)}
        return self._call(Call(
            "PATCH", self._file_url(session_id, path), content=unified_diff.encode(),
            headers=headers, response="FileInfo",
        ))

    def delete_file(self, session_id: str, path: str, *, if_match: str = "") -> pb.FileInfo:
        return self._call(Call(
            "DELETE", self._file_url(session_id, path), headers=_precondition(if_match),
            response="FileInfo"))

    def stat(self, session_id: str, path: str, *, at: str = "") -> pb.FileInfo:
        """Kind, mode, size, times, hash and extents of a path."""
        return self._call(Call(
            "GET", self._file_url(session_id, path, "stat"), params=query(at=at),
            response="FileInfo",
        ))

    def _fs(self, session_id: str, op: str, req: Any) -> Call:
        return Call("POST", f"{session_url(session_id)}/fs:{op}", json=_dict(req),
                    response="FileInfo")

    def mkdir(
        self, session_id: str, path: str, *, parents: bool = False, mode: int = 0,
    ) -> pb.FileInfo:
        return self._call(self._fs(session_id, "mkdir", pb.MkdirRequest(
            path=path, parents=parents, mode=mode)))

    def rmdir(self, session_id: str, path: str, *, recursive: bool = False) -> pb.FileInfo:
        return self._call(self._fs(session_id, "rmdir", pb.RmdirRequest(
            path=path, recursive=recursive)))

    def rename(
        self, session_id: str, from_path: str, to_path: str, *, overwrite: bool = False,
    ) -> pb.FileInfo:
        return self._call(self._fs(session_id, "rename", pb.RenameRequest(
            from_path=from_path, to_path=to_path, overwrite=overwrite)))

    def symlink(self, session_id: str, path: str, target: str) -> pb.FileInfo:
        return self._call(self._fs(session_id, "symlink", pb.SymlinkRequest(
            path=path, target=target)))

    def set_attributes(
        self, session_id: str, path: str, *, mode: int | None = None,
        mtime: datetime.datetime | None = None, set_xattrs: Mapping[str, bytes] | None = None,
        remove_xattrs: Iterable[str] = (), replace_xattrs: bool = False, if_match: str = "",
    ) -> pb.FileInfo:
        """chmod, utimes and user.* extended attributes; the content is kept.
        None leaves mode and mtime as they are (mtime has microsecond precision)."""
        return self._call(self._fs(session_id, "setattr", pb.SetAttributesRequest(
            path=path, mode=mode, mtime=mtime, set_xattrs=dict(set_xattrs or {}),
            remove_xattrs=list(remove_xattrs), replace_xattrs=replace_xattrs,
            if_match=if_match)))

    def copy(
        self, session_id: str, from_path: str, to_path: str, *, overwrite: bool = False,
        at: str = "",
    ) -> pb.FileInfo:
        """Copy a file or directory, optionally out of another state (`at`)."""
        return self._call(self._fs(session_id, "copy", pb.CopyRequest(
            from_path=from_path, to_path=to_path, overwrite=overwrite, at=at)))

    def apply(
        self, session_id: str, ops: list[pb.FsOp] | list[dict[str, Any]], *,
        atomic: bool = False, batch_id: str = "",
    ) -> pb.ApplyResponse:
        """Apply many changes (`FsOp`: write, delete, mkdir, rmdir, rename,
        symlink, set_attributes) in order, in one request and one transaction.
        Each op gets a result: `info` if it succeeded, `error` (an ErrorDetail)
        if not; a failed op changes nothing and the ops after it still run.
        `atomic`: all or nothing, the first failure is raised and nothing is
        changed. `batch_id`: makes sending the same request again safe (after
        a lost answer): a batch applied before is answered from the daemon's
        record instead of being applied twice."""
        ops = list(ops)
        if ops and isinstance(ops[0], dict):  # already proto3 JSON (bytes as base64)
            body: dict[str, Any] = {"ops": ops, "atomic": atomic}
            if batch_id:
                body["batchId"] = batch_id
        else:
            body = _dict(pb.ApplyRequest(ops=ops, atomic=atomic, batch_id=batch_id))
        return self._call(Call("POST", f"{session_url(session_id)}/fs:apply", json=body,
                               response="ApplyResponse"))

    # -- large files: upload only the chunks the daemon lacks

    def missing_chunks(self, session_id: str, hashes: Iterable[str]) -> pb.MissingChunksResponse:
        """Those of these chunk hashes (`chunk_hashes`) the daemon does not hold,
        in the order asked, without duplicates. The ones it holds are kept from
        gc for its grace period from now."""
        return self._call(self._missing_call(session_id, list(hashes)))

    def put_chunks(self, session_id: str, data: bytes) -> pb.PutChunksResponse:
        """Store consecutive chunks of a file (`data` is cut at 1 MiB boundaries
        by the daemon); the hash of each, in order. Nothing names them until a
        write by chunks does (`write_file_chunked`, or an fs:apply write op
        with "chunks")."""
        return self._call(self._put_call(session_id, data))

    def write_file_chunked(
        self, session_id: str, path: str, source: bytes | BinaryIO, *, if_match: str = "",
        mode: int = 0, create_parents: bool = True, report: ChunkedUpload | None = None,
    ) -> pb.FileInfo:
        """Replace a file's content, uploading only the 1 MiB chunks the daemon
        lacks: hash the content's chunks here, ask which are missing
        (`missing_chunks`), upload those (`put_chunks`, up to 64 MiB a
        request), then write the file as its list of chunks (one fs:apply
        write op, atomic). `source`: bytes, or a binary file (read twice when
        it can seek, so a large file is never held whole). `if_match`, `mode`,
        `create_parents`: as `write_file`. `report`, if given, is filled in
        with what moved. A chunk gc freed in between is uploaded again."""
        return self._run_steps(_chunked_steps(self, session_id, path, source, if_match, mode,
                                              create_parents, report or ChunkedUpload()))

    def _missing_call(self, session_id: str, hashes: list[str]) -> Call:
        return Call("POST", f"{session_url(session_id)}/chunks:missing",
                    json={"hashes": hashes}, response="MissingChunksResponse")

    def _put_call(self, session_id: str, data: bytes) -> Call:
        return Call("POST", f"{session_url(session_id)}/chunks", content=bytes(data),
                    headers={"content-type": "application/octet-stream"},
                    response="PutChunksResponse")

    def _manifest_call(self, session_id: str, at: str, page_size: int, page_token: str) -> Call:
        return Call("GET", session_url(session_id) + "/manifest", params=query(
            at=at, page_size=page_size, page_token=page_token,
        ), response="ManifestResponse")

    def get_manifest(
        self, session_id: str, *, at: str = "", page_size: int = 0, page_token: str = "",
    ) -> pb.ManifestResponse:
        """Every path with kind, mode, size and hash (one page)."""
        return self._call(self._manifest_call(session_id, at, page_size, page_token))

    def iter_manifest(self, session_id: str, *, at: str = "", page_size: int = 0) -> Any:
        return self._paginate(
            lambda token: self._manifest_call(session_id, at, page_size, token), "entries")

    def list_changes(self, session_id: str, *, since: str = "") -> pb.ListChangesResponse:
        """Changed paths since "base" (default), a checkpoint or a commit."""
        return self._call(Call(
            "GET", session_url(session_id) + "/changes", params=query(since=since),
            response="ListChangesResponse",
        ))

    # -- persistence

    def create_checkpoint(
        self, session_id: str, *, message: str = "", labels: Mapping[str, str] | None = None,
    ) -> pb.Checkpoint:
        req = pb.CreateCheckpointRequest(message=message, labels=dict(labels or {}))
        return self._call(Call(
            "POST", session_url(session_id) + "/checkpoints", json=_dict(req),
            response="Checkpoint",
        ))

    def _checkpoints_call(self, session_id: str, page_size: int, page_token: str) -> Call:
        return Call("GET", session_url(session_id) + "/checkpoints", params=query(
            page_size=page_size, page_token=page_token), response="ListCheckpointsResponse")

    def list_checkpoints(
        self, session_id: str, *, page_size: int = 0, page_token: str = "",
    ) -> pb.ListCheckpointsResponse:
        return self._call(self._checkpoints_call(session_id, page_size, page_token))

    def iter_checkpoints(self, session_id: str, *, page_size: int = 0) -> Any:
        return self._paginate(
            lambda token: self._checkpoints_call(session_id, page_size, token), "checkpoints")

    def get_checkpoint(self, session_id: str, checkpoint_id: str) -> pb.Checkpoint:
        return self._call(Call(
            "GET", f"{session_url(session_id)}/checkpoints/{seg(checkpoint_id)}",
            response="Checkpoint",
        ))

    def delete_checkpoint(self, session_id: str, checkpoint_id: str) -> pb.Checkpoint:
        return self._call(Call(
            "DELETE", f"{session_url(session_id)}/checkpoints/{seg(checkpoint_id)}",
            response="Checkpoint",
        ))

    def create_commit(self, session_id: str, *, message: str, author: str = "") -> pb.Commit:
        """Commit the working state (FailedPrecondition when an approval is missing)."""
        req = pb.CreateCommitRequest(message=message, author=author)
        return self._call(Call(
            "POST", session_url(session_id) + "/commits", json=_dict(req), response="Commit"))

    def _commits_call(self, session_id: str, page_size: int, page_token: str) -> Call:
        return Call("GET", session_url(session_id) + "/commits", params=query(
            page_size=page_size, page_token=page_token), response="ListCommitsResponse")

    def list_commits(
        self, session_id: str, *, page_size: int = 0, page_token: str = "",
    ) -> pb.ListCommitsResponse:
        return self._call(self._commits_call(session_id, page_size, page_token))

    def iter_commits(self, session_id: str, *, page_size: int = 0) -> Any:
        return self._paginate(
            lambda token: self._commits_call(session_id, page_size, token), "commits")

    def get_commit(self, commit_id: str) -> pb.Commit:
        """A commit by id, whether or not its session still exists."""
        return self._call(Call("GET", f"/v1/commits/{seg(commit_id)}", response="Commit"))

    def diff(
        self,
        session_id: str,
        *,
        from_: str = "",
        to: str = "",
        context_lines: int = 0,
        paths: Iterable[str] = (),
        name_only: bool = False,
    ) -> pb.DiffResponse:
        """Diff two states: "" (working), "base", ckp_..., cmt_... (defaults: base -> working)."""
        return self._call(Call("GET", session_url(session_id) + "/diff", params=query(
            from_=from_, to=to, context_lines=context_lines, paths=list(paths),
            name_only=name_only,
        ), response="DiffResponse"))

    def _export_call(
        self, session_id: str, format: str | pb.ArchiveFormat | None, at: str, path: str,
    ) -> Call:
        return Call("GET", session_url(session_id) + "/export", params=query(
            format=archive_format(format), at=at, path=path.strip("/")))

    def export(
        self,
        session_id: str,
        *,
        format: str | pb.ArchiveFormat | None = "tar.gz",
        at: str = "",
        path: str = "",
    ) -> Any:
        """Stream a state (`at`) of the session, or a subtree (`path`), as an archive.

        Sync: a context manager yielding a `ByteStream` (iterate for bytes;
        `.total` is the length when the server announced it). Async: the same
        as an async context manager / async iterator.
        """
        return self._stream(self._export_call(session_id, format, at, path))

    def export_to(
        self,
        session_id: str,
        file: BinaryIO,
        *,
        format: str | pb.ArchiveFormat | None = "tar.gz",
        at: str = "",
        path: str = "",
        progress: Callable[[int, int | None], None] | None = None,
    ) -> int:
        """Stream an export into a binary file object; returns the bytes written.

        `progress(done, total)` is called after every chunk (`total` is None when
        the server did not announce a length).
        """
        return self._download(self._export_call(session_id, format, at, path), file, progress)

    def import_archive(
        self,
        session_id: str,
        data: bytes | Iterable[bytes],
        *,
        path: str = "",
        format: str | pb.ArchiveFormat | None = None,
    ) -> pb.ImportResponse:
        """Unpack an archive (tar, tar.gz, zip; detected when `format` is None) into `path`."""
        fmt = archive_format(format)
        return self._call(Call(
            "POST", session_url(session_id) + "/import",
            params=query(path=path.strip("/"), format=fmt),
            content=bytes(data) if isinstance(data, bytearray | memoryview) else data,
            headers={"content-type": _content_type(fmt)},
            response="ImportResponse",
        ))

    def upload_file(
        self, session_id: str, path: str, chunks: Iterable[bytes], *, if_match: str = "",
        mode: int = 0,
    ) -> pb.FileInfo:
        """`write_file` with the content streamed from an iterable of chunks (large
        files, progress reporting) instead of held in memory as one bytes object."""
        headers = {"content-type": "application/octet-stream", **_precondition(if_match)}
        params: Query = [("mode", f"{mode:04o}")] if mode else []
        return self._call(Call(
            "PUT", self._file_url(session_id, path), params=params, content=chunks,
            headers=headers, response="FileInfo",
        ))

    # -- templates (global, like commits)

    def create_template(
        self,
        name: str,
        *,
        session_id: str = "",
        at: str = "",
        checkpoint_id: str = "",
        commit_id: str = "",
        description: str = "",
        labels: Mapping[str, str] | None = None,
        replace: bool = False,
    ) -> pb.Template:
        """Name a state as a template: a session's working state (or the state `at`
        names in it), a checkpoint or a commit. Exactly one of session_id,
        checkpoint_id and commit_id. AlreadyExists for a taken name unless `replace`."""
        req = pb.CreateTemplateRequest(
            name=name, session_id=session_id, at=at, checkpoint_id=checkpoint_id,
            commit_id=commit_id, description=description, labels=dict(labels or {}),
            replace=replace,
        )
        return self._call(Call("POST", "/v1/templates", json=_dict(req), response="Template"))

    def _templates_call(
        self, labels: Mapping[str, str] | None, prefix: str, page_size: int, page_token: str,
    ) -> Call:
        return Call("GET", "/v1/templates", params=query(
            labels=dict(labels or {}), prefix=prefix, page_size=page_size,
            page_token=page_token), response="ListTemplatesResponse")

    def list_templates(
        self, *, labels: Mapping[str, str] | None = None, prefix: str = "", page_size: int = 0,
        page_token: str = "",
    ) -> pb.ListTemplatesResponse:
        """One page of templates, by name."""
        return self._call(self._templates_call(labels, prefix, page_size, page_token))

    def iter_templates(
        self, *, labels: Mapping[str, str] | None = None, prefix: str = "", page_size: int = 0,
    ) -> Any:
        """Every matching template, page after page (Iterator / AsyncIterator[pb.Template])."""
        return self._paginate(
            lambda token: self._templates_call(labels, prefix, page_size, token), "templates")

    def get_template(self, name: str) -> pb.Template:
        return self._call(Call("GET", f"/v1/templates/{seg(name)}", response="Template"))

    def delete_template(self, name: str) -> pb.Template:
        """Delete a template; sessions created from it keep their content."""
        return self._call(Call("DELETE", f"/v1/templates/{seg(name)}", response="Template"))

    # -- identity: API tokens (admins) and the caller itself

    def create_token(
        self, principal: str, *, scopes: Iterable[str] = (), description: str = "",
        ttl_seconds: int = 0,
    ) -> pb.CreatedToken:
        """A new API token; `.secret` is the bearer string, shown only here.
        Scopes: "admin", "create", or "<session id>:<reader|reviewer|writer|owner>"."""
        req = pb.CreateTokenRequest(principal=principal, scopes=list(scopes),
                                    description=description, ttl_seconds=ttl_seconds)
        return self._call(Call("POST", "/v1/tokens", json=_dict(req), response="CreatedToken"))

    def _tokens_call(self, principal: str, include_inactive: bool, page_size: int,
                     page_token: str) -> Call:
        return Call("GET", "/v1/tokens", params=query(
            principal=principal, include_inactive=include_inactive, page_size=page_size,
            page_token=page_token), response="ListTokensResponse")

    def list_tokens(
        self, *, principal: str = "", include_inactive: bool = False, page_size: int = 0,
        page_token: str = "",
    ) -> pb.ListTokensResponse:
        """One page of tokens (never their secrets), in creation order."""
        return self._call(self._tokens_call(principal, include_inactive, page_size, page_token))

    def iter_tokens(
        self, *, principal: str = "", include_inactive: bool = False, page_size: int = 0,
    ) -> Any:
        """Every matching token (Iterator / AsyncIterator[pb.Token])."""
        return self._paginate(lambda token: self._tokens_call(
            principal, include_inactive, page_size, token), "tokens")

    def revoke_token(self, token_id: str) -> pb.Token:
        """Revoke a token: refused from this moment on."""
        return self._call(Call("POST", f"/v1/tokens/{seg(token_id)}:revoke", response="Token"))

    def who_am_i(self) -> pb.Principal:
        """The caller as the daemon sees it: principal, how authenticated, scopes."""
        return self._call(Call("GET", "/v1/whoami", response="Principal"))

    # -- knowledge cache (values are bytes with a content type; each key has a
    #    version for compare-and-set, an optional TTL, created/updated times)

    def _cache_url(self, session_id: str, rest: str) -> str:
        return session_url(session_id) + "/cache" + rest

    def _cache_key_url(self, session_id: str, key: str, rest: str = "") -> str:
        if not key:
            raise from_code("invalid_argument", "a cache key must not be empty")
        return f"{session_url(session_id)}/cache/{cache_key(key)}{rest}"

    def cache_get(self, session_id: str, key: str) -> pb.CacheEntry:
        """The value and metadata of a key (NotFound when absent or expired)."""
        return self._call(Call("GET", self._cache_key_url(session_id, key), response="CacheEntry"))

    def cache_put(
        self, session_id: str, key: str, value: bytes | str, *, content_type: str = "",
        ttl_seconds: int = 0,
    ) -> pb.CacheEntryMetadata:
        """Set a key (str values are stored as UTF-8). `ttl_seconds` 0 = no expiry."""
        req = pb.CachePutRequest(value=_bytes(value), content_type=content_type,
                                 ttl_seconds=ttl_seconds)
        return self._call(Call("PUT", self._cache_key_url(session_id, key), json=_dict(req),
                               response="CacheEntryMetadata"))

    def cache_delete(self, session_id: str, key: str) -> pb.CacheDeleteResponse:
        """Delete a key; `deleted` is 0 when it was not there (not an error)."""
        return self._call(Call("DELETE", self._cache_key_url(session_id, key),
                               response="CacheDeleteResponse"))

    def cache_exists(self, session_id: str, key: str) -> bool:
        return self._call(Call(
            "GET", self._cache_key_url(session_id, key, "/exists"),
            decode=lambda r: bool(json_body(r).get("exists"))))

    def cache_metadata(self, session_id: str, key: str) -> pb.CacheEntryMetadata:
        """Version, size, content type and times of a key, without its value."""
        return self._call(Call("GET", self._cache_key_url(session_id, key, "/metadata"),
                               response="CacheEntryMetadata"))

    def cache_compare_and_set(
        self,
        session_id: str,
        key: str,
        value: bytes | str,
        *,
        expected_version: int = 0,
        expect_absent: bool = False,
        content_type: str = "",
        ttl_seconds: int = 0,
    ) -> pb.CompareAndSetResponse:
        """Set `key` only if its version is `expected_version` (or, with
        `expect_absent` / version 0, only if it does not exist). Losing is an
        answer, not an error: `swapped` is False and `metadata` is the current one."""
        req = pb.CompareAndSetRequest(
            expected_version=expected_version, expect_absent=expect_absent,
            value=_bytes(value), content_type=content_type, ttl_seconds=ttl_seconds)
        return self._call(Call(
            "POST", self._cache_key_url(session_id, key, "/compare-and-set"), json=_dict(req),
            response="CompareAndSetResponse"))

    def _cache_keys_call(
        self, session_id: str, prefix: str, page_size: int, page_token: str,
    ) -> Call:
        return Call("GET", self._cache_url(session_id, "/keys"), params=query(
            prefix=prefix, page_size=page_size, page_token=page_token,
        ), response="CacheListKeysResponse")

    def list_cache_keys(
        self, session_id: str, *, prefix: str = "", page_size: int = 0, page_token: str = "",
    ) -> pb.CacheListKeysResponse:
        """One page of keys (with their metadata) starting with `prefix`, in key order."""
        return self._call(self._cache_keys_call(session_id, prefix, page_size, page_token))

    def iter_cache_keys(self, session_id: str, *, prefix: str = "", page_size: int = 0) -> Any:
        """Every key with `prefix` (Iterator / AsyncIterator[pb.CacheEntryMetadata])."""
        return self._paginate(
            lambda token: self._cache_keys_call(session_id, prefix, page_size, token), "keys")

    def cache_stats(self, session_id: str) -> pb.CacheStats:
        """Keys, bytes, hits and misses of a session's cache."""
        return self._call(Call("GET", self._cache_url(session_id, "/stats"),
                               response="CacheStats"))

    def cache_batch_get(self, session_id: str, keys: Iterable[str]) -> pb.CacheBatchGetResponse:
        """Many keys at once: `entries` for those present, `missing` for the rest."""
        req = pb.CacheBatchGetRequest(keys=list(keys))
        return self._call(Call("POST", self._cache_url(session_id, "/batch-get"),
                               json=_dict(req), response="CacheBatchGetResponse"))

    def cache_batch_set(
        self,
        session_id: str,
        items: Iterable[pb.CacheBatchSetItem] | Mapping[str, bytes | str],
    ) -> pb.CacheBatchSetResponse:
        """Set many keys atomically (all or none): `CacheBatchSetItem`s, or a
        mapping of key -> value."""
        if isinstance(items, Mapping):
            items = [pb.CacheBatchSetItem(key=k, value=_bytes(v)) for k, v in items.items()]
        req = pb.CacheBatchSetRequest(items=list(items))
        return self._call(Call("POST", self._cache_url(session_id, "/batch-set"),
                               json=_dict(req), response="CacheBatchSetResponse"))

    def cache_batch_delete(self, session_id: str, keys: Iterable[str]) -> pb.CacheDeleteResponse:
        req = pb.CacheBatchDeleteRequest(keys=list(keys))
        return self._call(Call("POST", self._cache_url(session_id, "/batch-delete"),
                               json=_dict(req), response="CacheDeleteResponse"))

    def cache_delete_by_prefix(self, session_id: str, prefix: str) -> pb.CacheDeleteResponse:
        """Delete every key starting with `prefix` (which must not be empty)."""
        req = pb.CacheDeleteByPrefixRequest(prefix=prefix)
        return self._call(Call("POST", self._cache_url(session_id, "/delete-by-prefix"),
                               json=_dict(req), response="CacheDeleteResponse"))

    # -- bus: per-session messages, each with a strictly increasing cursor

    def publish(
        self, session_id: str, topic: str, payload: bytes | str = b"", *,
        content_type: str = "", sender: str = "",
    ) -> pb.BusMessage:
        """Publish on the session bus; the answer carries the message's cursor."""
        req = pb.PublishRequest(topic=topic, payload=_bytes(payload),
                                content_type=content_type, sender=sender)
        return self._call(Call("POST", session_url(session_id) + "/bus:publish",
                               json=_dict(req), response="BusMessage"))

    def _bus_call(self, session_id: str, after: int, topics: list[str], limit: int) -> Call:
        return Call("GET", session_url(session_id) + "/bus", params=query(
            after=after, topics=topics, limit=limit), response="ReadBusResponse")

    def read_bus(
        self, session_id: str, *, after: int = 0, topics: Iterable[str] = (), limit: int = 0,
    ) -> pb.ReadBusResponse:
        """One page of messages with a cursor greater than `after` (only `topics`,
        when given). Read on from `next_cursor`."""
        return self._call(self._bus_call(session_id, after, list(topics), limit))

    def iter_bus(
        self, session_id: str, *, after: int = 0, topics: Iterable[str] = (), limit: int = 0,
    ) -> Any:
        """Every message after `after` that is there now (Iterator /
        AsyncIterator[pb.BusMessage]); `follow_bus` also waits for new ones."""
        topics = list(topics)
        return self._cursor_pages(
            lambda a: self._bus_call(session_id, a, topics, limit), after, "messages")

    def follow_bus(
        self, session_id: str, *, after: int = 0, topics: Iterable[str] = (),
    ) -> Any:
        """Messages after `after`, then live ones as they are published (server-sent
        events). Sync: a `FollowStream` (iterate it; a context manager to stop
        early); async: an `AsyncFollowStream`. The stream raises NotFound when the
        session is deleted; `.cursor` is the last cursor seen, to resume from."""
        return self._follow(Call(
            "GET", session_url(session_id) + "/bus",
            params=query(after=after, topics=list(topics)),
            headers={"accept": "text/event-stream"}, response="BusMessage"))

    # -- events: the session's activity log (file changes, checkpoints, reviews, ...)

    def _events_call(self, session_id: str, after: int, types: list[str], limit: int,
                     exclude_origin: str = "") -> Call:
        return Call("GET", session_url(session_id) + "/events", params=query(
            after=after, types=types, limit=limit, exclude_origin=exclude_origin),
            response="ListEventsResponse")

    def list_events(
        self, session_id: str, *, after: int = 0, types: Iterable[str] = (), limit: int = 0,
        exclude_origin: str = "",
    ) -> pb.ListEventsResponse:
        """One page of events with a cursor greater than `after` (of `types`, when
        given, e.g. "file.written"). Read on from `next_cursor`. `exclude_origin`
        leaves out the events of changes sent with that `Aether-Origin` header
        (a client's own: pass `headers={"Aether-Origin": ...}` to the client)."""
        return self._call(self._events_call(session_id, after, list(types), limit,
                                            exclude_origin))

    def iter_events(
        self, session_id: str, *, after: int = 0, types: Iterable[str] = (), limit: int = 0,
        exclude_origin: str = "",
    ) -> Any:
        """Every event after `after` that is there now (Iterator / AsyncIterator[pb.Event])."""
        types = list(types)
        return self._cursor_pages(
            lambda a: self._events_call(session_id, a, types, limit, exclude_origin), after,
            "events")

    def follow_events(
        self, session_id: str, *, after: int = 0, types: Iterable[str] = (),
        exclude_origin: str = "",
    ) -> Any:
        """Events after `after`, then live ones (server-sent events); see
        `follow_bus`. `exclude_origin` as for `list_events`."""
        return self._follow(Call(
            "GET", session_url(session_id) + "/events",
            params=query(after=after, types=list(types), exclude_origin=exclude_origin),
            headers={"accept": "text/event-stream"}, response="Event"))

    # -- review: comments, annotations, approvals bound to a state

    def create_comment(
        self, session_id: str, body: str, *, path: str = "", parent_id: str = "",
        author: str = "",
    ) -> pb.Comment:
        """Comment on the session, or on `path`; a reply (`parent_id`) joins its thread."""
        req = pb.CreateCommentRequest(body=body, path=path, parent_id=parent_id, author=author)
        return self._call(Call("POST", session_url(session_id) + "/comments", json=_dict(req),
                               response="Comment"))

    def _comments_call(
        self, session_id: str, path: str, page_size: int, page_token: str,
    ) -> Call:
        return Call("GET", session_url(session_id) + "/comments", params=query(
            path=path, page_size=page_size, page_token=page_token),
            response="ListCommentsResponse")

    def list_comments(
        self, session_id: str, *, path: str = "", page_size: int = 0, page_token: str = "",
    ) -> pb.ListCommentsResponse:
        """Comments, oldest first (on `path` and below, when given)."""
        return self._call(self._comments_call(session_id, path, page_size, page_token))

    def iter_comments(self, session_id: str, *, path: str = "", page_size: int = 0) -> Any:
        return self._paginate(
            lambda token: self._comments_call(session_id, path, page_size, token), "comments")

    def create_annotation(
        self, session_id: str, path: str, start_line: int, end_line: int, body: str, *,
        severity: str = "", author: str = "",
    ) -> pb.Annotation:
        """Anchor a note to lines `start_line`..`end_line` (1-based, inclusive) of a
        file; it keeps the file's content hash at that moment."""
        req = pb.CreateAnnotationRequest(path=path, start_line=start_line, end_line=end_line,
                                         body=body, severity=severity, author=author)
        return self._call(Call("POST", session_url(session_id) + "/annotations",
                               json=_dict(req), response="Annotation"))

    def _annotations_call(
        self, session_id: str, path: str, page_size: int, page_token: str,
    ) -> Call:
        return Call("GET", session_url(session_id) + "/annotations", params=query(
            path=path, page_size=page_size, page_token=page_token),
            response="ListAnnotationsResponse")

    def list_annotations(
        self, session_id: str, *, path: str = "", page_size: int = 0, page_token: str = "",
    ) -> pb.ListAnnotationsResponse:
        return self._call(self._annotations_call(session_id, path, page_size, page_token))

    def iter_annotations(self, session_id: str, *, path: str = "", page_size: int = 0) -> Any:
        return self._paginate(
            lambda token: self._annotations_call(session_id, path, page_size, token),
            "annotations")

    def delete_annotation(self, session_id: str, annotation_id: str) -> pb.Annotation:
        return self._call(Call(
            "DELETE", f"{session_url(session_id)}/annotations/{seg(annotation_id)}",
            response="Annotation"))

    def request_approval(
        self, session_id: str, *, title: str = "", requester: str = "",
    ) -> pb.Approval:
        """Ask for approval of the session's current state (its root hash)."""
        req = pb.RequestApprovalRequest(title=title, requester=requester)
        return self._call(Call("POST", session_url(session_id) + "/approvals",
                               json=_dict(req), response="Approval"))

    def _approvals_call(
        self, session_id: str, state: str | pb.ApprovalState | None, page_size: int,
        page_token: str,
    ) -> Call:
        return Call("GET", session_url(session_id) + "/approvals", params=query(
            state=approval_state(state), page_size=page_size, page_token=page_token),
            response="ListApprovalsResponse")

    def list_approvals(
        self, session_id: str, *, state: str | pb.ApprovalState | None = None,
        page_size: int = 0, page_token: str = "",
    ) -> pb.ListApprovalsResponse:
        """Approvals, newest first; `state`: pending, approved, rejected or stale."""
        return self._call(self._approvals_call(session_id, state, page_size, page_token))

    def iter_approvals(
        self, session_id: str, *, state: str | pb.ApprovalState | None = None,
        page_size: int = 0,
    ) -> Any:
        return self._paginate(
            lambda token: self._approvals_call(session_id, state, page_size, token),
            "approvals")

    def _decide(self, session_id: str, approval_id: str, verb: str, reviewer: str,
                reason: str) -> Call:
        req = pb.DecideApprovalRequest(reviewer=reviewer, reason=reason)
        return Call("POST", f"{session_url(session_id)}/approvals/{seg(approval_id)}:{verb}",
                    json=_dict(req), response="Approval")

    def approve(
        self, session_id: str, approval_id: str, *, reviewer: str, reason: str = "",
    ) -> pb.Approval:
        """Approve (FailedPrecondition when the state changed since the request)."""
        return self._call(self._decide(session_id, approval_id, "approve", reviewer, reason))

    def reject(
        self, session_id: str, approval_id: str, *, reviewer: str, reason: str,
    ) -> pb.Approval:
        """Reject; a reason is required."""
        return self._call(self._decide(session_id, approval_id, "reject", reviewer, reason))

    # -- observability (daemon `health` is at the top)

    def session_health(self, session_id: str) -> pb.SessionHealth:
        return self._call(Call("GET", session_url(session_id) + "/health",
                               response="SessionHealth"))

    def get_usage(self, session_id: str) -> pb.SessionUsage:
        """Files, bytes, dedup, cache and bus usage of a session."""
        return self._call(Call("GET", session_url(session_id) + "/usage",
                               response="SessionUsage"))

    def get_analytics(self, session_id: str, *, window_seconds: int = 0) -> pb.SessionAnalytics:
        """Operation counts in aligned windows of `window_seconds` (default 3600)."""
        return self._call(Call("GET", session_url(session_id) + "/analytics",
                               params=query(window_seconds=window_seconds),
                               response="SessionAnalytics"))


def _which(source: pb.SessionSource) -> str:
    import betterproto2

    return betterproto2.which_one_of(source, "kind")[0]


def _bytes(value: bytes | str) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


_APPROVAL_STATES = frozenset({"pending", "approved", "rejected", "stale"})


def approval_state(value: str | pb.ApprovalState | None) -> pb.ApprovalState:
    """'pending' | 'approved' | 'rejected' | 'stale' | ApprovalState | None -> ApprovalState."""
    if value is None or value == "":
        return pb.ApprovalState.UNSPECIFIED
    if isinstance(value, pb.ApprovalState):
        return value
    if value.lower() in _APPROVAL_STATES:
        return pb.ApprovalState[value.upper()]
    raise from_code(
        "invalid_argument",
        f"unknown approval state {value!r}: want pending, approved, rejected or stale",
    )


# ---- live follows (server-sent events)


class SseDecoder:
    """Turns the lines of a follow (server-sent events, see aetherd/http/streams.py)
    into `cls` messages: feed it each line without its line break; it returns a
    message when one is complete. An `error` event raises the AetherError it
    carries (e.g. NotFound once the session is deleted)."""

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self._event = ""
        self._data: list[str] = []

    def line(self, line: str) -> Any:
        if not line:
            return self._dispatch()
        if line.startswith(":"):  # a keepalive comment
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None

    def _dispatch(self) -> Any:
        event, data = self._event, "\n".join(self._data)
        self._event, self._data = "", []
        if not data:
            return None
        try:
            body = _json.loads(data)
        except ValueError:
            raise from_code("internal", "the server sent an event that is not JSON") from None
        if event == "error":
            detail = body.get("error") if isinstance(body, dict) else None
            if not isinstance(detail, dict) or not detail.get("code"):
                raise from_code("internal", f"the stream failed: {data[:200]}")
            raise from_code(str(detail["code"]), str(detail.get("message") or detail["code"]))
        return self.cls.from_dict(body, ignore_unknown_fields=True)
