"""The HTTP shim: the route table against the generated services, the OpenAPI
document against the spec and against what the wire really carries, and the
app's routing, request building, errors, auth and file semantics against the
real daemon stack (open_daemon: store, services and Api in-process), judged by
what the replies and the store show afterwards. No fake or stubbed Api."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import functools
import io
import json
import random
import tarfile
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import betterproto2
import blake3
import jsonschema
import pytest
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate

from aether import pb
from aetherd.api import Api
from aetherd.app import Daemon, open_daemon
from aetherd.auth.authenticate import local_user
from aetherd.config import Config
from aetherd.http import streams
from aetherd.http.app import make_app
from aetherd.http.openapi import OPENAPI_PATH, build_openapi
from aetherd.http.proto_json import (
    INT_RANGES,
    field_class,
    fields_of,
    is_timestamp,
    json_name,
    message_from_json,
)
from aetherd.http.query import route_aliases
from aetherd.http.routes import GRPC_ONLY, ROUTES, Route
from aetherd.http.routing import Router, compile_template
from aetherd.http.rpcs import all_rpcs, rpc, service_classes
from aetherd.ids import new_id
from aetherd.services.bus import MAX_PAYLOAD_BYTES
from aetherd.store.objects import CHUNK_SIZE

TOKEN = "s3cret-token"
SAMPLE_PARAMS = {
    "session_id": "ses_1",
    "path": "dir/sub/file.txt",
    "key": "k1",
    "checkpoint_id": "ckp_1",
    "commit_id": "cmt_1",
    "annotation_id": "ann_1",
    "approval_id": "apr_1",
    "name": "tpl-1",
    "token_id": "tok_1",
}


def sample_url(route: Route, **values: str) -> str:
    url = route.path
    for name, value in {**SAMPLE_PARAMS, **values}.items():
        url = url.replace("{" + name + "}", value)
    assert "{" not in url, f"add a sample value for {url}"
    return url


@functools.cache
def openapi_document() -> dict[str, Any]:
    return build_openapi()


# ---------------------------------------------------------------- route table


def test_every_rpc_has_exactly_one_http_route_or_is_grpc_only() -> None:
    rpcs = all_rpcs()
    routed = [(r.service, r.rpc) for r in ROUTES]
    assert len(routed) == len(set(routed)), "an RPC is routed twice"
    for key in routed:
        assert key in rpcs, f"route names a missing RPC {key}"
    for key in GRPC_ONLY:
        assert key in rpcs, f"GRPC_ONLY names a missing RPC {key}"
        assert key not in routed, f"{key} is both routed and GRPC_ONLY"
    missing = sorted(k for k in rpcs if k not in routed and k not in GRPC_ONLY)
    assert not missing, f"RPCs with no HTTP route (add to ROUTES or GRPC_ONLY): {missing}"


def test_every_generated_service_is_served_by_the_api() -> None:
    bases = {getattr(pb, n) for n in dir(pb) if n.endswith("ServiceBase")}
    assert bases == set(service_classes().values())


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_route_agrees_with_its_rpc(route: Route) -> None:
    the_rpc = rpc(route.service, route.rpc)
    streaming = route.kind in ("stream_bytes", "sse")
    assert the_rpc.server_streaming == streaming, "route kind vs RPC cardinality"
    assert the_rpc.cardinality.client_streaming is False
    metas = fields_of(the_rpc.request)
    for name in compile_template(route.path)[1]:
        assert metas[name].proto_type == betterproto2.TYPE_STRING, f"path param {name}"
    if route.body == "raw":
        assert route.raw_field in metas
    for name in route.repeated_query:
        assert metas[name].repeated, name
    for name in route.map_query:
        assert metas[name].proto_type == betterproto2.TYPE_MAP, name
    for alias, name in route_aliases(route).items():
        assert alias == name or alias not in metas, f"alias {alias} shadows a field"
    assert route.method in ("GET", "POST", "PUT", "PATCH", "DELETE")
    assert route.kind in ("message", "raw_file", "stream_bytes", "sse")
    assert route.body in ("json", "none", "raw")


def test_event_stream_follows_take_the_same_request_as_their_route() -> None:
    for (service, unary), follow in streams.FOLLOWS.items():
        assert (service, follow) in GRPC_ONLY
        assert rpc(service, unary).request is rpc(service, follow).request
        assert rpc(service, follow).server_streaming


def test_python_field_names_survive_from_dict() -> None:
    # proto_json hands Python field names to from_dict, which snake-cases keys.
    from betterproto2.casing import safe_snake_case

    for cls in _all_messages():
        for name in fields_of(cls):
            assert safe_snake_case(name) == name, (cls, name)


# ---------------------------------------------------------------- OpenAPI


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return openapi_document()


def test_openapi_document_is_valid_openapi_31(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    validate(document)
    json.dumps(document)


def test_every_ref_resolves(document: dict[str, Any]) -> None:
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    assert refs
    for ref in refs:
        assert ref.startswith("#/"), ref
        target: Any = document
        for part in ref[2:].split("/"):
            assert part in target, f"dangling $ref {ref}"
            target = target[part]


def test_every_route_is_documented(document: dict[str, Any]) -> None:
    ids = set()
    for route in ROUTES:
        op = document["paths"][route.path][route.method.lower()]
        assert op["operationId"] not in ids
        ids.add(op["operationId"])
        path_params = {p["name"] for p in op["parameters"] if p["in"] == "path"}
        assert path_params == set(compile_template(route.path)[1])
        assert str(route.success_status) in op["responses"]
        assert "default" in op["responses"]
    assert document["paths"]["/v1/health"]["get"]["security"] == []
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    error = document["components"]["schemas"]["ErrorResponse"]
    assert error["properties"]["error"]["anyOf"][0]["$ref"].endswith("/ErrorDetail")


def _all_messages() -> list[type[betterproto2.Message]]:
    return [obj for name in dir(pb) if isinstance(obj := getattr(pb, name), type)
            and issubclass(obj, betterproto2.Message) and obj is not pb.Timestamp]


def _sample_single(meta: betterproto2.FieldMetadata, item_cls: type) -> Any:
    t = meta.proto_type
    if t == betterproto2.TYPE_MESSAGE:
        if is_timestamp(meta):
            return datetime.datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=datetime.UTC)
        return sample_message(item_cls)
    if t == betterproto2.TYPE_ENUM:
        return list(item_cls)[-1]
    if t == betterproto2.TYPE_STRING:
        return "text é/ü"
    if t == betterproto2.TYPE_BOOL:
        return True
    if t in INT_RANGES:
        return INT_RANGES[t][1]  # the largest: 64-bit ones must survive JSON exactly
    if t in (betterproto2.TYPE_FLOAT, betterproto2.TYPE_DOUBLE):
        return 1.5
    if t == betterproto2.TYPE_BYTES:
        return b"\x00\xff\xfebytes"
    raise AssertionError(t)


def sample_message(cls: type[betterproto2.Message]) -> betterproto2.Message:
    """Every field set to a non-default value (one member per oneof)."""
    kwargs: dict[str, Any] = {}
    groups: set[str] = set()
    for name, meta in fields_of(cls).items():
        if meta.group:
            if meta.group in groups:
                continue
            groups.add(meta.group)
        if meta.proto_type == betterproto2.TYPE_MAP:
            assert meta.map_meta is not None
            kwargs[name] = {"k": _sample_single(meta.map_meta[1],
                                                field_class(cls, f"{name}.value"))}
        elif meta.repeated:
            kwargs[name] = [_sample_single(meta, field_class(cls, name))] * 2
        else:
            kwargs[name] = _sample_single(meta, field_class(cls, name))
    return cls(**kwargs)


@pytest.mark.parametrize("cls", _all_messages(), ids=lambda c: c.__name__)
def test_requests_accept_what_replies_emit(cls: type) -> None:
    for msg in (sample_message(cls), cls()):
        wire = json.loads(json.dumps(msg.to_dict(include_default_values=True)))
        assert message_from_json(cls, wire) == msg
        assert message_from_json(cls, msg.to_dict()) == msg


@pytest.mark.parametrize("cls", _all_messages(), ids=lambda c: c.__name__)
def test_schemas_describe_what_betterproto2_emits(document: dict[str, Any], cls: type) -> None:
    """Replies are `to_dict(include_default_values=True)`: check real ones, full and
    empty, against the published schema."""
    if cls.__name__ not in document["components"]["schemas"]:
        pytest.skip("only reachable through query parameters")
    root = {"$ref": f"#/components/schemas/{cls.__name__}", "components": document["components"]}
    validator = jsonschema.Draft202012Validator(root)
    for msg in (sample_message(cls), cls()):
        validator.validate(json.loads(json.dumps(msg.to_dict(include_default_values=True))))


def test_64_bit_integers_are_strings_on_the_wire(document: dict[str, Any]) -> None:
    wire = pb.Session(file_count=2**64 - 1).to_dict(include_default_values=True)
    assert wire["fileCount"] == str(2**64 - 1)
    schema = document["components"]["schemas"]["Session"]["properties"]["fileCount"]
    assert schema["type"] == "string"


def test_json_name_matches_to_dict() -> None:
    wire = pb.DiffRequest(from_="a", context_lines=1).to_dict()
    assert set(wire) == {json_name("from_"), json_name("context_lines")}


# ---------------------------------------------------------------- the app on the real stack


@dataclass
class Stack:
    """The HTTP app in front of a real in-process daemon (store, services, Api)."""

    client: TestClient
    daemon: Daemon

    async def json(self, method: str, url: str, status: int = 200, **kw: Any) -> Any:
        resp = await self.client.request(method, url, **kw)
        assert resp.status == status, f"{method} {url}: {resp.status} {await resp.text()}"
        assert resp.content_type == "application/json"
        return await resp.json()

    async def new_session(self, **body: Any) -> str:
        return (await self.json("POST", "/v1/sessions", 201, json=body))["id"]

    async def put(self, sid: str, path: str, data: bytes) -> dict[str, Any]:
        return await self.json("PUT", f"/v1/sessions/{sid}/files/{path}", data=data)

    async def read(self, sid: str, path: str, **kw: Any) -> tuple[int, bytes]:
        resp = await self.client.get(f"/v1/sessions/{sid}/files/{path}", **kw)
        return resp.status, await resp.read()

    async def checkpoint(self, sid: str, message: str = "") -> str:
        url = f"/v1/sessions/{sid}/checkpoints"
        return (await self.json("POST", url, 201, json={"message": message}))["id"]


@contextlib.asynccontextmanager
async def serve(tmp_path: Path, *, require_token: bool = False,
                **config: Any) -> AsyncIterator[Stack]:
    settings: dict[str, Any] = {"data_dir": tmp_path / "data", "token": TOKEN,
                                "import_roots": [str(tmp_path / "imports")], **config}
    daemon = open_daemon(Config(**settings))
    try:
        app = make_app(daemon.api, daemon.config, daemon.authenticator,
                       require_token=require_token)
        async with TestClient(TestServer(app)) as client:
            yield Stack(client, daemon)
    finally:
        daemon.close()


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with serve(tmp_path) as s:
        yield s


async def raw_request(client: TestClient, method: str, target: str,
                      headers: dict[str, str] | None = None,
                      body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """One request with the target sent byte for byte (client libraries
    normalise "..", which is exactly what must not happen on the way in)."""
    server = client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    head = [f"{method} {target} HTTP/1.1", "Host: test", "Connection: close",
            f"Content-Length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
    data = await reader.read()
    writer.close()
    head_bytes, _, payload = data.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, hdrs, payload


def validate_error_body(body: Any) -> None:
    root = {"$ref": "#/components/schemas/ErrorResponse",
            "components": openapi_document()["components"]}
    jsonschema.Draft202012Validator(root).validate(body)


async def assert_error(resp, status: int, code: str) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    body = await resp.json()
    validate_error_body(body)
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["status"] == status
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def etag_of(data: bytes) -> str:
    return f'"{blake3.blake3(data).hexdigest()}"'


def make_tar(files: dict[str, bytes], *, gz: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def make_zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(zipfile.ZipInfo(name, (2024, 1, 2, 3, 4, 6)), data)
    return buf.getvalue()


ARCHIVES: dict[str, Callable[[dict[str, bytes]], bytes]] = {
    "tar": make_tar,
    "tar.gz": functools.partial(make_tar, gz=True),
    "tgz": functools.partial(make_tar, gz=True),
    "zip": make_zip,
}


def archive_members(fmt: str, data: bytes) -> dict[str, bytes]:
    """Regular files of an exported archive, name -> bytes."""
    if fmt == "zip":
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return {n: zf.read(n) for n in zf.namelist() if not n.endswith("/")}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}  # type: ignore[union-attr]


# ---- one route, one RPC: the effect each route has on a real daemon


@dataclass
class World:
    """A session with files, a checkpoint and a commit of them, then one more file."""

    stack: Stack
    sid: str
    ckp: str
    cmt: str

    def s(self, suffix: str = "") -> str:
        return f"/v1/sessions/{self.sid}{suffix}"

    async def json(self, method: str, suffix: str, status: int = 200, **kw: Any) -> Any:
        return await self.stack.json(method, self.s(suffix), status, **kw)

    async def read(self, path: str, sid: str = "") -> tuple[int, bytes]:
        return await self.stack.read(sid or self.sid, path)

    async def stat(self, path: str) -> dict[str, Any]:
        return await self.json("GET", f"/stat/{path}")


WORLD_FILES = {"dir/sub/file.txt": b"hello\n", "top.txt": b"top\n"}
LATER = b"later\n"  # written after the checkpoint and the commit


async def make_world(stack: Stack) -> World:
    sid = await stack.new_session(name="world", labels={"team": "infra"})
    for path, data in WORLD_FILES.items():
        await stack.put(sid, path, data)
    ckp = await stack.checkpoint(sid, "one")
    cmt = (await stack.json("POST", f"/v1/sessions/{sid}/commits", 201,
                            json={"message": "first"}))["id"]
    await stack.put(sid, "later.txt", LATER)
    return World(stack, sid, ckp, cmt)


Effect = Callable[[World], Awaitable[Any]]
EFFECTS: dict[tuple[str, str], Effect] = {}


def effect(service: str, name: str) -> Callable[[Effect], Effect]:
    """Register how to call one route and what must be true afterwards. The
    check returns the route's JSON reply (None for non-JSON routes) so it can
    also be held against the published schema."""
    def register(fn: Effect) -> Effect:
        EFFECTS[(service, name)] = fn
        return fn
    return register


@effect("sessions", "create_session")
async def _create_session(w: World) -> Any:
    made = await w.stack.json("POST", "/v1/sessions", 201,
                              json={"name": "made", "labels": {"k": "v"}})
    assert made["id"] != w.sid
    got = await w.stack.json("GET", f"/v1/sessions/{made['id']}")
    assert (got["name"], got["labels"], got["fileCount"]) == ("made", {"k": "v"}, "0")
    return made


@effect("sessions", "list_sessions")
async def _list_sessions(w: World) -> Any:
    other = await w.stack.new_session(name="other")
    listed = await w.stack.json("GET", "/v1/sessions")
    assert [s["id"] for s in listed["sessions"]] == [w.sid, other]
    return listed


@effect("sessions", "get_session")
async def _get_session(w: World) -> Any:
    got = await w.json("GET", "")
    total = sum(map(len, WORLD_FILES.values())) + len(LATER)
    assert (got["id"], got["name"], got["fileCount"], got["totalBytes"]) == (
        w.sid, "world", "3", str(total))
    return got


@effect("sessions", "update_session")
async def _update_session(w: World) -> Any:
    updated = await w.json("PATCH", "", json={"name": "renamed", "tags": ["t"]})
    got = await w.json("GET", "")
    # Only what the request set changes: labels stay.
    assert (got["name"], got["tags"], got["labels"]) == ("renamed", ["t"], {"team": "infra"})
    return updated


@effect("sessions", "delete_session")
async def _delete_session(w: World) -> Any:
    deleted = await w.json("DELETE", "")
    assert deleted["id"] == w.sid
    await assert_error(await w.stack.client.get(w.s()), 404, "not_found")
    return deleted


@effect("sessions", "list_tombstones")
async def _list_tombstones(w: World) -> Any:
    other = await w.stack.new_session(name="other")
    for sid in (w.sid, other):
        await w.stack.json("DELETE", f"/v1/sessions/{sid}")
    listed = await w.stack.json("GET", "/v1/tombstones")
    assert [t["sessionId"] for t in listed["tombstones"]] == [other, w.sid]  # newest first
    return listed


@effect("sessions", "get_tombstone")
async def _get_tombstone(w: World) -> Any:
    root = (await w.json("GET", ""))["rootHash"]
    await w.json("DELETE", "")
    tomb = await w.stack.json("GET", f"/v1/tombstones/{w.sid}")
    assert (tomb["sessionId"], tomb["finalRootHash"], tomb["reason"]) == (w.sid, root, "deleted")
    assert tomb["deletedBy"] == local_user()
    return tomb


@effect("sessions", "fork_session")
async def _fork_session(w: World) -> Any:
    child = await w.json("POST", ":fork", 201, json={"name": "child"})
    assert child["id"] != w.sid
    assert (child["parentSessionId"], child["name"]) == (w.sid, "child")
    assert await w.read("later.txt", child["id"]) == (200, LATER)
    await w.stack.put(child["id"], "only-in-child.txt", b"c")
    assert (await w.read("only-in-child.txt"))[0] == 404
    return child


@effect("sessions", "archive_session")
async def _archive_session(w: World) -> Any:
    archived = await w.json("POST", ":archive")
    assert archived["state"] == "SESSION_STATE_ARCHIVED"
    resp = await w.stack.client.put(w.s("/files/x"), data=b"x")
    await assert_error(resp, 412, "failed_precondition")
    return archived


@effect("sessions", "restore_session")
async def _restore_session(w: World) -> Any:
    restored = await w.json("POST", ":restore", json={"checkpointId": w.ckp})
    assert (await w.read("later.txt"))[0] == 404
    assert await w.read("top.txt") == (200, b"top\n")
    return restored


@effect("files", "get_manifest")
async def _get_manifest(w: World) -> Any:
    manifest = await w.json("GET", "/manifest")
    files = {e["path"] for e in manifest["entries"] if e["kind"] == "ENTRY_KIND_FILE"}
    assert files == {*WORLD_FILES, "later.txt"}
    assert manifest["rootHash"] == (await w.json("GET", ""))["rootHash"]
    return manifest


@effect("files", "list_changes")
async def _list_changes(w: World) -> Any:
    changes = await w.json("GET", f"/changes?since={w.ckp}")
    assert [(c["path"], c["kind"]) for c in changes["changes"]] == [
        ("later.txt", "CHANGE_KIND_ADDED")]
    return changes


@effect("persistence", "diff")
async def _diff(w: World) -> Any:
    diff = await w.json("GET", f"/diff?from={w.ckp}")
    assert [f["change"]["path"] for f in diff["files"]] == ["later.txt"]
    assert "+later" in diff["unified"]
    return diff


@effect("files", "list_tree")
async def _list_tree(w: World) -> Any:
    tree = await w.json("GET", "/tree")
    assert {e["path"] for e in tree["entries"]} == {"dir", "top.txt", "later.txt"}
    return tree


@effect("files", "read_file")
async def _read_file(w: World) -> None:
    resp = await w.stack.client.get(w.s("/files/dir/sub/file.txt"))
    assert (resp.status, await resp.read()) == (200, b"hello\n")
    assert resp.headers["ETag"] == etag_of(b"hello\n")


@effect("files", "read_files")
async def _read_files(w: World) -> Any:
    got = await w.json("POST", "/fs:read", json={"paths": ["top.txt", "later.txt", "dir",
                                                           "missing.txt"]})
    top, later, folder, missing = got["files"]
    assert (base64.b64decode(top["data"]), top["hash"], top["size"], top["mode"]) == (
        b"top\n", etag_of(b"top\n").strip('"'), "4", 0o644)
    assert base64.b64decode(later["data"]) == LATER
    assert (folder["error"]["code"], missing["error"]["code"]) == (
        "failed_precondition", "not_found")
    # `at`: the checkpoint, taken before later.txt was written
    at = await w.json("POST", "/fs:read", json={"paths": ["dir/sub/file.txt", "later.txt"],
                                                "at": w.ckp})
    assert base64.b64decode(at["files"][0]["data"]) == b"hello\n"
    assert at["files"][1]["error"]["code"] == "not_found"
    return got


@effect("files", "write_file")
async def _write_file(w: World) -> Any:
    written = await w.json("PUT", "/files/new/deep.txt", data=b"raw-bytes")
    assert (written["path"], written["size"]) == ("new/deep.txt", "9")
    assert await w.read("new/deep.txt") == (200, b"raw-bytes")
    return written


@effect("files", "delete_file")
async def _delete_file(w: World) -> Any:
    deleted = await w.json("DELETE", "/files/top.txt")
    assert deleted["path"] == "top.txt"
    assert (await w.read("top.txt"))[0] == 404
    return deleted


@effect("files", "patch_file")
async def _patch_file(w: World) -> Any:
    diff = b"--- a/top.txt\n+++ b/top.txt\n@@ -1 +1 @@\n-top\n+TOP\n"
    patched = await w.json("PATCH", "/files/top.txt", data=diff,
                           headers={"Content-Type": "text/x-diff"})
    assert await w.read("top.txt") == (200, b"TOP\n")
    return patched


@effect("files", "stat")
async def _stat(w: World) -> Any:
    info = await w.stat("dir/sub/file.txt")
    assert (info["path"], info["kind"], info["size"]) == ("dir/sub/file.txt", "ENTRY_KIND_FILE", "6")
    return info


@effect("files", "rename")
async def _rename(w: World) -> Any:
    moved = await w.json("POST", "/fs:rename", json={"fromPath": "top.txt",
                                                     "toPath": "dir/moved.txt"})
    assert moved["path"] == "dir/moved.txt"
    assert (await w.read("top.txt"))[0] == 404
    assert await w.read("dir/moved.txt") == (200, b"top\n")
    return moved


@effect("files", "mkdir")
async def _mkdir(w: World) -> Any:
    made = await w.json("POST", "/fs:mkdir", json={"path": "made/deep", "parents": True})
    assert (await w.stat("made/deep"))["kind"] == "ENTRY_KIND_DIRECTORY"
    return made


@effect("files", "rmdir")
async def _rmdir(w: World) -> Any:
    removed = await w.json("POST", "/fs:rmdir", json={"path": "dir", "recursive": True})
    assert (await w.read("dir/sub/file.txt"))[0] == 404
    return removed


@effect("files", "symlink")
async def _symlink(w: World) -> Any:
    link = await w.json("POST", "/fs:symlink", json={"path": "link", "target": "top.txt"})
    info = await w.stat("link")
    assert (info["kind"], info["symlinkTarget"]) == ("ENTRY_KIND_SYMLINK", "top.txt")
    return link


@effect("files", "set_attributes")
async def _set_attributes(w: World) -> Any:
    changed = await w.json("POST", "/fs:setattr", json={
        "path": "top.txt", "mode": 0o600, "mtime": "2001-02-03T04:05:06Z",
        "setXattrs": {"user.origin": base64.b64encode(b"\x00bin").decode()}})
    info = await w.stat("top.txt")
    assert (info["mode"], info["mtime"], info["xattrs"]) == (
        0o600, "2001-02-03T04:05:06Z", {"user.origin": "AGJpbg=="})
    assert await w.read("top.txt") == (200, b"top\n")
    return changed


@effect("files", "copy")
async def _copy(w: World) -> Any:
    copied = await w.json("POST", "/fs:copy", json={"fromPath": "dir", "toPath": "dir2"})
    assert await w.read("dir2/sub/file.txt") == (200, b"hello\n")
    assert await w.read("dir/sub/file.txt") == (200, b"hello\n")
    return copied


@effect("files", "apply")
async def _apply(w: World) -> Any:
    data = base64.b64encode(b"batched\n").decode()
    applied = await w.json("POST", "/fs:apply", json={"ops": [
        {"mkdir": {"path": "batch"}},
        {"write": {"path": "batch/one.txt", "data": data}},
        {"rename": {"fromPath": "top.txt", "toPath": "batch/top.txt"}},
        {"delete": {"path": "missing.txt"}},
    ]})
    assert [r["info"]["path"] if r["info"] else r["error"]["code"]
            for r in applied["results"]] == ["batch", "batch/one.txt", "batch/top.txt",
                                             "not_found"]
    assert await w.read("batch/one.txt") == (200, b"batched\n")
    assert await w.read("batch/top.txt") == (200, b"top\n")
    return applied


@effect("files", "put_chunks")
async def _put_chunks(w: World) -> Any:
    data = bytes(range(256)) * (CHUNK_SIZE // 256) + b"tail"
    put = await w.json("POST", "/chunks", data=data,
                       headers={"Content-Type": "application/octet-stream"})
    want = [blake3.blake3(data[:CHUNK_SIZE]).hexdigest(),
            blake3.blake3(data[CHUNK_SIZE:]).hexdigest()]
    assert put["hashes"] == want
    # Nothing names them yet; a write by chunks makes them a file.
    applied = await w.json("POST", "/fs:apply", json={"ops": [
        {"write": {"path": "chunked.bin", "chunks": want}}], "atomic": True})
    assert applied["results"][0]["info"]["hash"] == blake3.blake3(data).hexdigest()
    assert await w.read("chunked.bin") == (200, data)
    return put


@effect("files", "missing_chunks")
async def _missing_chunks(w: World) -> Any:
    held = blake3.blake3(b"top\n").hexdigest()  # top.txt's one chunk
    absent = blake3.blake3(b"no such content").hexdigest()
    got = await w.json("POST", "/chunks:missing", json={"hashes": [absent, held, absent]})
    assert got == {"missing": [absent]}
    return got


@effect("persistence", "create_checkpoint")
async def _create_checkpoint(w: World) -> Any:
    made = await w.json("POST", "/checkpoints", 201, json={"message": "two", "labels": {"a": "b"}})
    got = await w.json("GET", f"/checkpoints/{made['id']}")
    assert (got["message"], got["labels"], got["fileCount"]) == ("two", {"a": "b"}, "3")
    return made


@effect("persistence", "list_checkpoints")
async def _list_checkpoints(w: World) -> Any:
    listed = await w.json("GET", "/checkpoints")
    assert [c["id"] for c in listed["checkpoints"]] == [w.ckp]
    return listed


@effect("persistence", "get_checkpoint")
async def _get_checkpoint(w: World) -> Any:
    got = await w.json("GET", f"/checkpoints/{w.ckp}")
    assert (got["id"], got["sessionId"], got["message"], got["fileCount"]) == (
        w.ckp, w.sid, "one", "2")
    return got


@effect("persistence", "delete_checkpoint")
async def _delete_checkpoint(w: World) -> Any:
    deleted = await w.json("DELETE", f"/checkpoints/{w.ckp}")
    assert deleted["id"] == w.ckp
    await assert_error(await w.stack.client.get(w.s(f"/checkpoints/{w.ckp}")), 404, "not_found")
    return deleted


@effect("persistence", "create_commit")
async def _create_commit(w: World) -> Any:
    made = await w.json("POST", "/commits", 201, json={"message": "second", "author": "me"})
    assert (made["parentCommitId"], made["author"], made["fileCount"]) == (w.cmt, "me", "3")
    return made


@effect("persistence", "list_commits")
async def _list_commits(w: World) -> Any:
    listed = await w.json("GET", "/commits")
    assert [c["id"] for c in listed["commits"]] == [w.cmt]
    return listed


@effect("persistence", "get_commit")
async def _get_commit(w: World) -> Any:
    got = await w.stack.json("GET", f"/v1/commits/{w.cmt}")
    assert (got["sessionId"], got["message"], got["fileCount"]) == (w.sid, "first", "2")
    return got


@effect("persistence", "export")
async def _export(w: World) -> None:
    resp = await w.stack.client.get(w.s("/export"))
    assert resp.status == 200
    assert archive_members("tar", await resp.read()) == {**WORLD_FILES, "later.txt": LATER}


@effect("persistence", "import_")
async def _import(w: World) -> Any:
    imported = await w.json("POST", "/import?path=imp", data=make_tar({"x.txt": b"imported"}))
    assert imported["files"] == "1"
    assert await w.read("imp/x.txt") == (200, b"imported")
    return imported


@effect("observability", "health")
async def _health(w: World) -> Any:
    health = await w.stack.json("GET", "/v1/health")
    assert (health["status"], health["checks"]) == ("ok", {"metadata": "ok", "blobs": "ok"})
    return health


# ---- knowledge cache


async def cache_put(w: World, key: str, value: bytes, **fields: Any) -> dict[str, Any]:
    return await w.json("PUT", f"/cache/{key}", json={"value": b64(value), **fields})


async def cache_keys(w: World) -> list[str]:
    return [k["key"] for k in (await w.json("GET", "/cache/keys"))["keys"]]


@effect("cache", "put")
async def _cache_put(w: World) -> Any:
    meta = await cache_put(w, "notes%2Ftoday", b"hello", contentType="text/plain")
    assert (meta["key"], meta["size"], meta["contentType"]) == ("notes/today", "5", "text/plain")
    got = await w.json("GET", "/cache/notes%2Ftoday")
    assert (base64.b64decode(got["value"]), got["metadata"]) == (b"hello", meta)
    return meta


@effect("cache", "get")
async def _cache_get(w: World) -> Any:
    meta = await cache_put(w, "k1", b"\x00\xffvalue")
    got = await w.json("GET", "/cache/k1")
    assert (base64.b64decode(got["value"]), got["metadata"]) == (b"\x00\xffvalue", meta)
    await assert_error(await w.stack.client.get(w.s("/cache/absent")), 404, "not_found")
    return got


@effect("cache", "delete")
async def _cache_delete(w: World) -> Any:
    await cache_put(w, "k1", b"v")
    gone = await w.json("DELETE", "/cache/k1")
    assert gone == {"deleted": "1"}
    await assert_error(await w.stack.client.get(w.s("/cache/k1")), 404, "not_found")
    assert await w.json("DELETE", "/cache/k1") == {"deleted": "0"}
    return gone


@effect("cache", "exists")
async def _cache_exists(w: World) -> Any:
    assert await w.json("GET", "/cache/k1/exists") == {"exists": False}
    await cache_put(w, "k1", b"v")
    there = await w.json("GET", "/cache/k1/exists")
    assert there == {"exists": True}
    return there


@effect("cache", "get_metadata")
async def _cache_get_metadata(w: World) -> Any:
    meta = await cache_put(w, "k1", b"abc", contentType="text/plain")
    got = await w.json("GET", "/cache/k1/metadata")
    assert got == meta
    assert (got["key"], got["size"], got["contentType"]) == ("k1", "3", "text/plain")
    return got


@effect("cache", "compare_and_set")
async def _cache_compare_and_set(w: World) -> Any:
    url = "/cache/lock/compare-and-set"
    made = await w.json("POST", url, json={"expectAbsent": True, "value": b64(b"me")})
    assert made["swapped"] is True
    lost = await w.json("POST", url, json={"expectAbsent": True, "value": b64(b"you")})
    assert lost == {"swapped": False, "metadata": made["metadata"]}
    won = await w.json("POST", url, json={"expectedVersion": made["metadata"]["version"],
                                          "value": b64(b"me2")})
    assert won["swapped"] and int(won["metadata"]["version"]) > int(made["metadata"]["version"])
    assert base64.b64decode((await w.json("GET", "/cache/lock"))["value"]) == b"me2"
    return won


@effect("cache", "list_keys")
async def _cache_list_keys(w: World) -> Any:
    for key in ("p%2F2", "p%2F1", "q", "pp"):
        await cache_put(w, key, b"v")
    listed = await w.json("GET", "/cache/keys?prefix=p/")
    assert ([k["key"] for k in listed["keys"]], listed["nextPageToken"]) == (["p/1", "p/2"], "")
    assert await cache_keys(w) == ["p/1", "p/2", "pp", "q"]
    return listed


@effect("cache", "stats")
async def _cache_stats(w: World) -> Any:
    await cache_put(w, "a", b"abc")
    await cache_put(w, "b", b"defgh")
    await w.json("GET", "/cache/a")
    await assert_error(await w.stack.client.get(w.s("/cache/nope")), 404, "not_found")
    stats = await w.json("GET", "/cache/stats")
    assert stats == {"keys": "2", "bytes": "8", "hits": "1", "misses": "1"}
    return stats


@effect("cache", "batch_get")
async def _cache_batch_get(w: World) -> Any:
    await cache_put(w, "a", b"one")
    await cache_put(w, "b", b"two")
    got = await w.json("POST", "/cache/batch-get", json={"keys": ["b", "missing", "a"]})
    assert [(e["metadata"]["key"], base64.b64decode(e["value"])) for e in got["entries"]] == [
        ("b", b"two"), ("a", b"one")]
    assert got["missing"] == ["missing"]
    return got


@effect("cache", "batch_set")
async def _cache_batch_set(w: World) -> Any:
    made = await w.json("POST", "/cache/batch-set", json={"items": [
        {"key": "x/1", "value": b64(b"one"), "contentType": "text/plain"},
        {"key": "y", "value": b64(b"why"), "ttlSeconds": "3600"}]})
    assert [(m["key"], m["size"]) for m in made["entries"]] == [("x/1", "3"), ("y", "3")]
    assert len({m["version"] for m in made["entries"]}) == 1  # one transaction
    assert made["entries"][1]["expireTime"] and made["entries"][0]["expireTime"] is None
    assert base64.b64decode((await w.json("GET", "/cache/y"))["value"]) == b"why"
    return made


@effect("cache", "batch_delete")
async def _cache_batch_delete(w: World) -> Any:
    for key in ("a", "b", "c"):
        await cache_put(w, key, b"v")
    gone = await w.json("POST", "/cache/batch-delete", json={"keys": ["a", "c", "nope"]})
    assert gone == {"deleted": "2"}
    assert await cache_keys(w) == ["b"]
    return gone


@effect("cache", "delete_by_prefix")
async def _cache_delete_by_prefix(w: World) -> Any:
    for key in ("a", "a%2F", "a%2F1", "a%2F2%2Fdeep", "a0", "b"):
        await cache_put(w, key, b"v")
    gone = await w.json("POST", "/cache/delete-by-prefix", json={"prefix": "a/"})
    assert gone == {"deleted": "3"}
    assert await cache_keys(w) == ["a", "a0", "b"]
    return gone


# ---- bus and events


@effect("bus", "publish")
async def _bus_publish(w: World) -> Any:
    sent = await w.json("POST", "/bus:publish", json={
        "topic": "build", "payload": b64(b"\x00done"), "contentType": "text/x", "sender": "me"})
    assert (sent["cursor"], sent["sessionId"], sent["topic"], sent["sender"]) == (
        "1", w.sid, "build", "me")
    read = await w.json("GET", "/bus")
    assert read["messages"] == [sent]
    assert base64.b64decode(read["messages"][0]["payload"]) == b"\x00done"
    return sent


@effect("bus", "read")
async def _bus_read(w: World) -> Any:
    for topic, data in (("a", b"1"), ("b", b"2"), ("a", b"3")):
        await w.json("POST", "/bus:publish", json={"topic": topic, "payload": b64(data)})
    every = await w.json("GET", "/bus")
    assert [(m["cursor"], base64.b64decode(m["payload"])) for m in every["messages"]] == [
        ("1", b"1"), ("2", b"2"), ("3", b"3")]
    read = await w.json("GET", "/bus?after=1&topic=a")
    assert ([m["cursor"] for m in read["messages"]], read["nextCursor"]) == (["3"], "3")
    return read


WORLD_EVENTS = [
    ("session.created", ""), ("file.written", "dir/sub/file.txt"), ("file.written", "top.txt"),
    ("checkpoint.created", ""), ("commit.created", ""), ("file.written", "later.txt"),
]


@effect("events", "list_events")
async def _list_events(w: World) -> Any:
    every = await w.json("GET", "/events")
    assert [(e["type"], e["path"]) for e in every["events"]] == WORLD_EVENTS
    assert [e["cursor"] for e in every["events"]] == [str(i) for i in range(1, 7)]
    assert every["events"][3]["attributes"]["checkpoint_id"] == w.ckp
    written = await w.json("GET", "/events?type=file.written&after=2")
    assert [(e["cursor"], e["path"]) for e in written["events"]] == [
        ("3", "top.txt"), ("6", "later.txt")]
    return written


# ---- observability (health: above)


@effect("observability", "get_session_health")
async def _get_session_health(w: World) -> Any:
    health = await w.json("GET", "/health")
    assert (health["sessionId"], health["status"]) == (w.sid, "ok")
    checks = health["checks"]
    assert (checks["session"], checks["state"], checks["checkpoints"]) == (
        "ok", "active", "ok: 1 checkpoints")
    await assert_error(await w.stack.client.get(f"/v1/sessions/{new_id('ses')}/health"), 404,
                       "not_found")
    return health


@effect("observability", "get_usage")
async def _get_usage(w: World) -> Any:
    await cache_put(w, "k", b"x" * 10)
    await w.json("POST", "/bus:publish", json={"topic": "t", "payload": b64(b"p")})
    usage = await w.json("GET", "/usage")
    total = sum(map(len, WORLD_FILES.values())) + len(LATER)
    assert {k: v for k, v in usage.items() if k != "dedupRatio"} == {
        "sessionId": w.sid, "files": "3", "directories": "2", "bytes": str(total),
        "uniqueBlobBytes": str(total), "cacheKeys": "1", "cacheBytes": "10",
        "busBacklog": "1", "checkpoints": "1", "commits": "1"}
    assert usage["dedupRatio"] == pytest.approx(1.0)
    return usage


@effect("observability", "get_analytics")
async def _get_analytics(w: World) -> Any:
    got = await w.json("GET", "/analytics?window_seconds=60")
    assert got["sessionId"] == w.sid
    windows = got["windows"]
    assert len(windows) == 24
    start, end = (datetime.datetime.fromisoformat(windows[i][k].replace("Z", "+00:00"))
                  for i, k in ((0, "startTime"), (-1, "endTime")))
    assert (end - start).total_seconds() == 24 * 60
    totals: dict[str, int] = {}
    for window in windows:
        for op in window["operations"]:
            totals[op["operation"]] = totals.get(op["operation"], 0) + int(op["count"])
    assert totals == {"session.created": 1, "file.written": 3, "checkpoint.created": 1,
                      "commit.created": 1}
    return got


# ---- review
@effect("review", "create_comment")
async def _create_comment(w: World) -> Any:
    top = await w.json("POST", "/comments", 201, json={"body": "why?", "path": "/top.txt"})
    reply = await w.json("POST", "/comments", 201, json={"body": "because", "parentId": top["id"]})
    assert (reply["parentId"], reply["path"]) == (top["id"], "top.txt")
    return reply


@effect("review", "list_comments")
async def _list_comments(w: World) -> Any:
    made = await w.json("POST", "/comments", 201, json={"body": "b", "path": "dir/sub/file.txt"})
    await w.json("POST", "/comments", 201, json={"body": "elsewhere"})
    listed = await w.json("GET", "/comments?path=dir")
    assert [c["id"] for c in listed["comments"]] == [made["id"]]
    return listed


@effect("review", "create_annotation")
async def _create_annotation(w: World) -> Any:
    ann = await w.json("POST", "/annotations", 201, json={
        "path": "dir/sub/file.txt", "startLine": 1, "endLine": 1, "body": "b"})
    assert ann["fileHash"] == etag_of(WORLD_FILES["dir/sub/file.txt"]).strip('"')
    return ann


@effect("review", "list_annotations")
async def _list_annotations(w: World) -> Any:
    ann = await w.json("POST", "/annotations", 201, json={
        "path": "top.txt", "startLine": 1, "endLine": 1, "body": "b"})
    listed = await w.json("GET", "/annotations?path=top.txt")
    assert [a["id"] for a in listed["annotations"]] == [ann["id"]]
    return listed


@effect("review", "delete_annotation")
async def _delete_annotation(w: World) -> Any:
    ann = await w.json("POST", "/annotations", 201, json={
        "path": "top.txt", "startLine": 1, "endLine": 1, "body": "b"})
    gone = await w.json("DELETE", f"/annotations/{ann['id']}")
    assert gone["id"] == ann["id"]
    assert (await w.json("GET", "/annotations")).get("annotations", []) == []
    return gone


@effect("review", "request_approval")
async def _request_approval(w: World) -> Any:
    apr = await w.json("POST", "/approvals", 201, json={"requester": "me", "title": "t"})
    root = (await w.stack.json("GET", w.s()))["rootHash"]
    assert (apr["state"], apr["rootHash"]) == ("APPROVAL_STATE_PENDING", root)
    return apr


@effect("review", "list_approvals")
async def _list_approvals(w: World) -> Any:
    apr = await w.json("POST", "/approvals", 201, json={})
    listed = await w.json("GET", "/approvals?state=APPROVAL_STATE_PENDING")
    assert [a["id"] for a in listed["approvals"]] == [apr["id"]]
    return listed


@effect("review", "approve")
async def _approve(w: World) -> Any:
    apr = await w.json("POST", "/approvals", 201, json={})
    done = await w.json("POST", f"/approvals/{apr['id']}:approve", json={"reviewer": "r"})
    assert (done["state"], done["reviewer"]) == ("APPROVAL_STATE_APPROVED", "r")
    return done


@effect("review", "reject")
async def _reject(w: World) -> Any:
    apr = await w.json("POST", "/approvals", 201, json={})
    done = await w.json("POST", f"/approvals/{apr['id']}:reject",
                        json={"reviewer": "r", "reason": "no"})
    assert (done["state"], done["reason"]) == ("APPROVAL_STATE_REJECTED", "no")
    return done


@effect("templates", "create_template")
async def _create_template(w: World) -> Any:
    made = await w.stack.json("POST", "/v1/templates", 201,
                              json={"name": "tpl-1", "sessionId": w.sid, "description": "d"})
    assert (made["name"], made["sourceKind"], made["fileCount"]) == ("tpl-1", "session", "3")
    s = await w.stack.new_session(source={"template": {"name": "tpl-1"}})
    assert await w.read("later.txt", s) == (200, LATER)
    return made


@effect("templates", "list_templates")
async def _list_templates(w: World) -> Any:
    for name in ("b-tpl", "a-tpl"):
        await w.stack.json("POST", "/v1/templates", 201, json={"name": name, "commitId": w.cmt})
    listed = await w.stack.json("GET", "/v1/templates")
    assert [t["name"] for t in listed["templates"]] == ["a-tpl", "b-tpl"]
    return listed


@effect("templates", "get_template")
async def _get_template(w: World) -> Any:
    await w.stack.json("POST", "/v1/templates", 201, json={"name": "tpl-1", "commitId": w.cmt})
    got = await w.stack.json("GET", "/v1/templates/tpl-1")
    assert (got["sourceKind"], got["sourceRef"], got["fileCount"]) == ("commit", w.cmt, "2")
    return got


@effect("templates", "delete_template")
async def _delete_template(w: World) -> Any:
    await w.stack.json("POST", "/v1/templates", 201,
                       json={"name": "tpl-1", "checkpointId": w.ckp})
    gone = await w.stack.json("DELETE", "/v1/templates/tpl-1")
    assert gone["name"] == "tpl-1"
    await assert_error(await w.stack.client.get("/v1/templates/tpl-1"), 404, "not_found")
    return gone


@effect("identity", "create_token")
async def _create_token(w: World) -> Any:
    made = await w.stack.json("POST", "/v1/tokens", 201,
                              json={"principal": "alice", "scopes": ["create"]})
    assert made["secret"].startswith(made["token"]["id"] + ".")
    assert (made["token"]["principal"], made["token"]["scopes"]) == ("alice", ["create"])
    listed = await w.stack.json("GET", "/v1/tokens")
    assert [t["id"] for t in listed["tokens"]] == [made["token"]["id"]]
    assert "secret" not in json.dumps(listed)
    return made


@effect("identity", "list_tokens")
async def _list_tokens(w: World) -> Any:
    ids = [(await w.stack.json("POST", "/v1/tokens", 201, json={"principal": p}))["token"]["id"]
           for p in ("a", "b", "a")]
    listed = await w.stack.json("GET", "/v1/tokens?principal=a")
    assert [t["id"] for t in listed["tokens"]] == [ids[0], ids[2]]
    return listed


@effect("identity", "revoke_token")
async def _revoke_token(w: World) -> Any:
    made = await w.stack.json("POST", "/v1/tokens", 201, json={"principal": "gone"})
    tid = made["token"]["id"]
    revoked = await w.stack.json("POST", f"/v1/tokens/{tid}:revoke")
    assert revoked["revokeTime"]
    assert (await w.stack.json("GET", "/v1/tokens"))["tokens"] == []
    listed = await w.stack.json("GET", "/v1/tokens?include_inactive=true")
    assert [t["id"] for t in listed["tokens"]] == [tid]
    return revoked


@effect("identity", "who_am_i")
async def _who_am_i(w: World) -> Any:
    me = await w.stack.json("GET", "/v1/whoami")
    assert (me["name"], me["authenticatedBy"]) == (local_user(), "unix")
    return me


def served_by_generated_base(api: Api, service: str, name: str) -> bool:
    """True while the daemon serves this RPC with the generated base (UNIMPLEMENTED)."""
    return getattr(type(getattr(api, service)), name) is getattr(service_classes()[service], name)


def _body_for(route: Route) -> tuple[bytes | None, dict[str, str]]:
    if route.body == "json":
        return b"{}", {"Content-Type": "application/json"}
    if route.body == "raw":
        return b"raw-bytes", {"Content-Type": "application/octet-stream"}
    return None, {}


def test_effect_checks_name_routed_rpcs() -> None:
    routed = {(r.service, r.rpc) for r in ROUTES}
    assert set(EFFECTS) <= routed, set(EFFECTS) - routed


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
async def test_each_route_reaches_its_rpc(stack: Stack, route: Route) -> None:
    """Every route, on the real daemon: an implemented RPC must show its effect
    (and its reply must match the published schema); one the daemon does not
    implement yet (none today) must answer the 501 JSON error."""
    w = await make_world(stack)
    check = EFFECTS.get((route.service, route.rpc))
    if check is None:
        assert served_by_generated_base(stack.daemon.api, route.service, route.rpc), (
            f"{route.service}.{route.rpc} is implemented now: add an @effect check for it")
        body, headers = _body_for(route)
        url = sample_url(route, session_id=w.sid, checkpoint_id=w.ckp, commit_id=w.cmt)
        resp = await stack.client.request(route.method, url, data=body, headers=headers)
        await assert_error(resp, 501, "unimplemented")
        return
    reply = await check(w)
    if route.kind == "message":
        content = openapi_document()["paths"][route.path][route.method.lower()]["responses"][
            str(route.success_status)]["content"]["application/json"]
        root = {**content["schema"], "components": openapi_document()["components"]}
        jsonschema.Draft202012Validator(root).validate(reply)
    else:
        assert reply is None


# ---- routing


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_router_resolves_each_sample_url_to_its_route(route: Route) -> None:
    match = Router(ROUTES).resolve(route.method, sample_url(route))
    assert match.route is route
    assert match.params == {p: SAMPLE_PARAMS[p] for p in match.params}


@pytest.mark.parametrize(("method", "url", "rpc_name", "params"), [
    ("POST", "/v1/sessions/ses_1:fork", "fork_session", {"session_id": "ses_1"}),
    ("POST", "/v1/sessions/ses_1:archive", "archive_session", {"session_id": "ses_1"}),
    ("GET", "/v1/sessions/ses_1/cache/keys", "list_keys", {"session_id": "ses_1"}),
    ("GET", "/v1/sessions/ses_1/cache/stats", "stats", {"session_id": "ses_1"}),
    ("GET", "/v1/sessions/ses_1/cache/keysx", "get", {"key": "keysx"}),
    ("GET", "/v1/sessions/ses_1/cache/a%2Fb", "get", {"key": "a/b"}),
    ("GET", "/v1/sessions/ses_1/cache/a%2Fb/exists", "exists", {"key": "a/b"}),
    ("POST", "/v1/sessions/ses_1/cache/batch-get", "batch_get", {}),
    ("POST", "/v1/sessions/ses_1/approvals/apr_1:approve", "approve",
     {"approval_id": "apr_1"}),
    ("GET", "/v1/sessions/ses_1/files/a:b/c%20d", "read_file", {"path": "a:b/c d"}),
    ("GET", "/v1/sessions/ses_1/files/a%2Fb", "read_file", {"path": "a/b"}),
    ("HEAD", "/v1/sessions/ses_1/files/a", "read_file", {"path": "a"}),
    ("GET", "/v1/sessions/ses_1/stat/", "stat", {"path": ""}),
    ("POST", "/v1/sessions/ses_1/fs:rename", "rename", {}),
])
def test_tricky_paths_pick_the_right_route(method, url, rpc_name, params) -> None:
    match = Router(ROUTES).resolve(method, url)
    assert match.route.rpc == rpc_name
    for k, v in params.items():
        assert match.params[k] == v


async def test_tricky_paths_reach_the_right_files(stack: Stack) -> None:
    sid = await stack.new_session()
    s = f"/v1/sessions/{sid}"
    cases = (("a:b/c%20d", "a:b/c d", b"colon and space"), ("a%2Fb", "a/b", b"nested"))
    for target, _, data in cases:
        status, _, body = await raw_request(stack.client, "PUT", f"{s}/files/{target}", body=data)
        assert status == 200, body
    for target, path, data in cases:
        status, _, body = await raw_request(stack.client, "GET", f"{s}/files/{target}")
        assert (status, body) == (200, data)
        status, _, body = await raw_request(stack.client, "GET", f"{s}/stat/{target}")
        assert (status, json.loads(body)["path"]) == (200, path)
    status, headers, body = await raw_request(stack.client, "HEAD", f"{s}/files/a%2Fb")
    assert (status, headers["content-length"], body) == (200, "6", b"")
    root = await stack.json("GET", f"{s}/stat/")
    assert (root["path"], root["kind"]) == ("", "ENTRY_KIND_DIRECTORY")
    tree = await stack.json("GET", f"{s}/tree?recursive=true")
    assert {e["path"] for e in tree["entries"]} == {"a:b", "a:b/c d", "a", "a/b"}
    # The literal "keys" is the listing, never the key "keys"; encoded, "keys" is a key
    # (raw_request: a client library would decode %6B back to "k").
    status, _, body = await raw_request(stack.client, "PUT", f"{s}/cache/%6Beys",
                                        headers={"Content-Type": "application/json"},
                                        body=json.dumps({"value": b64(b"v")}).encode())
    assert (status, json.loads(body)["key"]) == (200, "keys"), body
    status, _, body = await raw_request(stack.client, "PUT", f"{s}/cache/a%2Fb",
                                        headers={"Content-Type": "application/json"},
                                        body=json.dumps({"value": b64(b"slash")}).encode())
    assert (status, json.loads(body)["key"]) == (200, "a/b"), body
    listed = await stack.json("GET", f"{s}/cache/keys")
    assert ([k["key"] for k in listed["keys"]], listed["nextPageToken"]) == (["a/b", "keys"], "")
    status, _, body = await raw_request(stack.client, "GET", f"{s}/cache/%6Beys")
    assert (status, base64.b64decode(json.loads(body)["value"])) == (200, b"v")
    status, _, body = await raw_request(stack.client, "GET", f"{s}/cache/a%2Fb/exists")
    assert (status, json.loads(body)) == (200, {"exists": True})
    assert (await stack.json("GET", f"{s}/cache/stats"))["keys"] == "2"


@pytest.mark.parametrize(("method", "url", "status", "code"), [
    ("GET", "/v1/nope", 404, "not_found"),
    ("GET", "/", 404, "not_found"),
    ("GET", "/v1/sessions/ses_1:bogus", 404, "not_found"),
    ("GET", "/v1/sessions/ses_1/files", 404, "not_found"),
    ("PUT", "/v1/sessions/ses_1/cache/keys", 405, "invalid_argument"),
    ("POST", "/v1/sessions/ses_1", 405, "invalid_argument"),
    ("DELETE", "/v1/health", 405, "invalid_argument"),
    ("GET", "/v1/sessions/ses%3A1", 400, "invalid_argument"),
    ("GET", "/v1/sessions/ses%2F1/manifest", 400, "invalid_argument"),
])
async def test_unknown_routes_and_methods_are_json_errors(stack: Stack, method, url, status,
                                                          code) -> None:
    got, headers, body = await raw_request(stack.client, method, url)
    assert got == status, body
    assert headers["content-type"].startswith("application/json")
    validate_error_body(json.loads(body))
    error = json.loads(body)["error"]
    assert (error["code"], error["status"]) == (code, status)
    if status == 405:
        assert "allow" in headers


async def test_raw_path_decoding_is_strict_and_keeps_dot_segments(stack: Stack) -> None:
    sid = await stack.new_session()
    await stack.put(sid, "café", b"c")
    base = f"/v1/sessions/{sid}/stat/"
    for bad in ("a/%FF", "a%00b", "a/%C3", "a/%zz"):
        status, _, body = await raw_request(stack.client, "GET", base + bad)
        assert status == 400, bad
        error = json.loads(body)["error"]
        # Refused while decoding the URL: the error names the parameter, not a path.
        assert (error["code"], error["details"]) == ("invalid_argument", {"parameter": "path"})
    for raw, decoded in (("../etc/passwd", "../etc/passwd"), ("a/./b/../c", "a/./b/../c"),
                         ("a//b", "a//b"), ("%2E%2E/x", "../x")):
        status, _, body = await raw_request(stack.client, "GET", base + raw)
        assert status == 400, raw
        error = json.loads(body)["error"]
        # Refused by the service, which saw the path exactly as sent (decoded, not normalised).
        assert (error["code"], error["details"]) == ("invalid_argument", {"path": decoded})
    status, _, body = await raw_request(stack.client, "GET", base + "caf%C3%A9")
    assert (status, json.loads(body)["path"]) == (200, "café")


async def test_query_parameters_are_decoded_strictly(stack: Stack) -> None:
    sid = await stack.new_session()
    await stack.put(sid, "a b/c/f.txt", b"f")
    await stack.put(sid, "a+b/c/g.txt", b"g")
    tree = f"/v1/sessions/{sid}/tree"
    status, _, body = await raw_request(stack.client, "GET", tree + "?path=%FF")
    assert status == 400
    assert json.loads(body)["error"]["details"] == {"parameter": "path"}
    for query, listed in (("a+b%2Fc", "a b/c/f.txt"), ("a%2Bb/c", "a+b/c/g.txt")):
        status, _, body = await raw_request(stack.client, "GET", f"{tree}?path={query}")
        assert status == 200, body
        assert [e["path"] for e in json.loads(body)["entries"]] == [listed]


async def test_query_params_filter_and_paginate_the_session_list(stack: Stack) -> None:
    async def make(env: str, tags: list[str], team: str = "infra") -> str:
        return await stack.new_session(labels={"team": team, "env": env}, tags=tags)

    s1 = await make("prod", ["a", "b"])
    s2 = await make("prod", ["a"])
    s3 = await make("dev", ["a", "b"])
    s4 = await make("prod", ["b", "a"])
    await stack.json("POST", f"/v1/sessions/{s4}:archive")
    await make("prod", ["a", "b"], team="web")

    async def ids(query: str) -> list[str]:
        return [s["id"] for s in (await stack.json("GET", f"/v1/sessions?{query}"))["sessions"]]

    wanted = "label=team=infra&label=env=prod&tag=a&tags=b"
    assert await ids(wanted) == [s1, s4]
    assert await ids(wanted + "&state=active") == [s1]
    assert await ids(wanted + "&state=SESSION_STATE_ARCHIVED") == [s4]
    first = await stack.json("GET", "/v1/sessions?label=team=infra&page_size=3")
    assert [s["id"] for s in first["sessions"]] == [s1, s2, s3]
    assert first["nextPageToken"]
    rest = await stack.json(
        "GET", f"/v1/sessions?label=team=infra&pageSize=3&pageToken={first['nextPageToken']}")
    assert ([s["id"] for s in rest["sessions"]], rest["nextPageToken"]) == ([s4], "")


async def test_query_params_select_state_depth_and_paths(stack: Stack) -> None:
    w = await make_world(stack)
    await stack.put(w.sid, "dir/other.txt", b"o")

    async def paths(suffix: str) -> list[str]:
        return [e["path"] for e in (await w.json("GET", suffix))["entries"]]

    assert await paths(f"/tree?recursive=true&at={w.ckp}") == [
        "dir", "dir/sub", "dir/sub/file.txt", "top.txt"]
    assert await paths("/tree?path=dir") == ["dir/other.txt", "dir/sub"]
    assert await paths("/tree?path=dir&depth=2") == ["dir/other.txt", "dir/sub",
                                                     "dir/sub/file.txt"]
    diff = await w.json("GET", f"/diff?from=base&to={w.ckp}&path=dir/sub&path=top.txt"
                        "&name_only=true")
    assert {f["change"]["path"] for f in diff["files"]} == {"dir/sub/file.txt", "top.txt"}
    assert all(f["unified"] == "" for f in diff["files"])
    full = await w.json("GET", f"/diff?from={w.ckp}&path=dir")
    assert [f["change"]["path"] for f in full["files"]] == ["dir/other.txt"]
    assert "+o" in full["files"][0]["unified"]


@pytest.mark.parametrize("query", [
    "events?after=x", "events?limit=-1", "events?after=1&after=2", "bus?limit=abc",
    "approvals?state=bogus", "comments?page_size=-1",
])
async def test_badly_typed_query_values_stop_at_the_shim(stack: Stack, query) -> None:
    sid = await stack.new_session()
    resp = await stack.client.get(f"/v1/sessions/{sid}/{query}")
    await assert_error(resp, 400, "invalid_argument")


async def test_well_typed_query_values_reach_the_service(stack: Stack) -> None:
    w = await make_world(stack)
    page = await w.json("GET", "/events?after=2&type=file.written&limit=1")
    assert [(e["cursor"], e["path"]) for e in page["events"]] == [("3", "top.txt")]
    assert page["nextCursor"] == "3"
    page = await w.json("GET", "/events?after=3&types=file.written&types=commit.created")
    assert [(e["cursor"], e["type"]) for e in page["events"]] == [
        ("5", "commit.created"), ("6", "file.written")]
    pending = await w.json("POST", "/approvals", 201, json={"title": "p"})
    decided = await w.json("POST", "/approvals", 201, json={"title": "d"})
    await w.json("POST", f"/approvals/{decided['id']}:approve", json={"reviewer": "r"})

    async def approvals(query: str) -> list[str]:
        return [a["id"] for a in (await w.json("GET", f"/approvals?{query}"))["approvals"]]

    assert await approvals("state=APPROVAL_STATE_PENDING") == [pending["id"]]
    assert await approvals("state=APPROVAL_STATE_APPROVED") == [decided["id"]]
    assert sorted(await approvals("")) == sorted([pending["id"], decided["id"]])
    await w.json("POST", "/bus:publish", json={"topic": "a", "payload": b64(b"1")})
    await w.json("POST", "/bus:publish", json={"topic": "b", "payload": b64(b"2")})
    read = await w.json("GET", "/bus?topics=b&limit=5")
    assert [(m["cursor"], m["topic"]) for m in read["messages"]] == [("2", "b")]


@pytest.mark.parametrize("query", [
    "page_size=-1", "page_size=abc", "page_size=4294967296", "state=bogus",
    "nope=1", "page_size=1&page_size=2", "label=novalue", "label==v",
])
async def test_bad_query_values_are_invalid_argument(stack: Stack, query) -> None:
    await assert_error(await stack.client.get(f"/v1/sessions?{query}"), 400, "invalid_argument")


async def test_path_params_win_over_body_and_query(stack: Stack) -> None:
    a, b, c = [await stack.new_session(name=n) for n in "abc"]
    await stack.put(a, "only-in-a.txt", b"a")
    child = await stack.json("POST", f"/v1/sessions/{a}:fork?session_id={b}", 201,
                             json={"sessionId": c, "name": "n", "labels": {"x": "y"}})
    assert (child["parentSessionId"], child["name"], child["labels"]) == (a, "n", {"x": "y"})
    assert await stack.read(child["id"], "only-in-a.txt") == (200, b"a")
    await stack.json("PUT", f"/v1/sessions/{a}/files/x.txt?path=y.txt&session_id={b}", data=b"x")
    assert await stack.read(a, "x.txt") == (200, b"x")
    assert (await stack.read(a, "y.txt"))[0] == 404
    assert (await stack.read(b, "x.txt"))[0] == 404


@pytest.mark.parametrize("body", [
    b'{"nope": 1}', b"[1]", b"{", b'{"name": 5}', b'{"labels": []}', b'"x"',
    b'{"policy": {"maxBytes": "-1"}}', b'{"policy": {"readOnly": "yes"}}',
    b'{"source": {"blank": {}, "git": {"url": "u"}}}', b'\xff\xfe{',
    b'{"source": {"archive": {"data": "not base64!"}}}',
])
async def test_bad_json_bodies_are_invalid_argument(stack: Stack, body) -> None:
    resp = await stack.client.post("/v1/sessions", data=body,
                                   headers={"Content-Type": "application/json"})
    await assert_error(resp, 400, "invalid_argument")
    assert (await stack.json("GET", "/v1/sessions"))["sessions"] == []


def urlsafe_zip() -> tuple[bytes, str]:
    """A zip whose unpadded URL-safe base64 uses the URL-safe letters."""
    for i in range(1000):
        data = make_zip({"z/one.txt": f"zip {i}".encode()})
        text = base64.urlsafe_b64encode(data).decode().rstrip("=")
        if ("-" in text or "_" in text) and len(data) % 3:
            return data, text
    raise AssertionError("no sample found")


async def test_json_body_accepts_the_proto3_json_mapping(stack: Stack) -> None:
    data, text = urlsafe_zip()
    made = await stack.json("POST", "/v1/sessions", 201, json={
        "name": "n", "source": {"archive": {"data": text, "format": "ARCHIVE_FORMAT_ZIP"}},
        "policy": {"max_bytes": "10", "maxFiles": 3, "readOnly": True},
        "tags": ["t"], "owner": None,
    })
    assert (made["sourceKind"], made["sourceRef"]) == ("archive", f"{len(data)} bytes")
    assert await stack.read(made["id"], "z/one.txt") == (200, zipfile.ZipFile(
        io.BytesIO(data)).read("z/one.txt"))
    policy = made["policy"]
    assert (policy["maxBytes"], policy["maxFiles"], policy["readOnly"]) == ("10", "3", True)
    assert (made["tags"], made["owner"]) == (["t"], local_user())  # the creator
    resp = await stack.client.put(f"/v1/sessions/{made['id']}/files/x", data=b"x")
    await assert_error(resp, 412, "failed_precondition")  # readOnly really arrived


async def test_response_is_proto3_json_with_defaults(stack: Stack) -> None:
    sid = await stack.new_session()
    await stack.put(sid, "f", b"12345")
    body = await stack.json("GET", f"/v1/sessions/{sid}")
    assert (body["fileCount"], body["totalBytes"]) == ("1", "5")  # 64-bit: strings
    assert body["state"] == "SESSION_STATE_ACTIVE"
    assert (body["labels"], body["tags"], body["archiveTime"]) == ({}, [], None)
    assert body["owner"] == local_user()  # the creator: here the unix socket's owner
    assert (body["policy"]["maxBytes"], body["policy"]["readOnly"]) == ("0", False)
    datetime.datetime.fromisoformat(body["createTime"])


@pytest.mark.parametrize(("ctype", "fmt"), [
    ("application/x-tar", "tar"), ("application/gzip", "tar.gz"),
    ("application/zip", "zip"), ("application/octet-stream", "zip"),  # sniffed
])
async def test_archive_upload_creates_a_session(stack: Stack, ctype, fmt) -> None:
    archive = ARCHIVES[fmt]({"up/f.txt": b"uploaded"})
    made = await stack.json("POST", "/v1/sessions?name=up&label=a=1&label=b=2&tag=x&tag=y",
                            201, data=archive, headers={"Content-Type": ctype})
    assert (made["name"], made["labels"], made["tags"]) == ("up", {"a": "1", "b": "2"},
                                                            ["x", "y"])
    assert (made["sourceKind"], made["fileCount"]) == ("archive", "1")
    assert await stack.read(made["id"], "up/f.txt") == (200, b"uploaded")


async def test_import_takes_the_raw_body(stack: Stack) -> None:
    sid = await stack.new_session()
    for i, fmt in enumerate(("tar.gz", "tgz", "zip", "tar")):
        data = f"via {fmt}".encode()
        reply = await stack.json("POST", f"/v1/sessions/{sid}/import?path=sub{i}&format={fmt}",
                                 data=ARCHIVES[fmt]({"in/f.txt": data}))
        assert reply["files"] == "1"
        assert await stack.read(sid, f"sub{i}/in/f.txt") == (200, data)
    resp = await stack.client.post(f"/v1/sessions/{sid}/import?format=rar", data=b"x")
    await assert_error(resp, 400, "invalid_argument")


# ---- errors


async def _resource_exhausted(stack: Stack, sid: str):
    size, limit = str(MAX_PAYLOAD_BYTES + 1), str(MAX_PAYLOAD_BYTES)
    resp = await stack.client.post(f"/v1/sessions/{sid}/bus:publish", json={
        "topic": "t", "payload": b64(b"x" * (MAX_PAYLOAD_BYTES + 1))})
    return resp, {"size": size, "limit": limit}


async def _not_found(stack: Stack, sid: str):
    ghost = new_id("ses")
    return await stack.client.get(f"/v1/sessions/{ghost}"), {"session_id": ghost}


async def _conflict(stack: Stack, sid: str):
    resp = await stack.client.put(f"/v1/sessions/{sid}/files/f", data=b"new",
                                  headers={"If-Match": '"0000"'})
    current = blake3.blake3(b"old").hexdigest()
    return resp, {"path": "f", "current_hash": current}


async def _already_exists(stack: Stack, sid: str):
    await stack.json("POST", f"/v1/sessions/{sid}/fs:mkdir", json={"path": "d"})
    return (await stack.client.post(f"/v1/sessions/{sid}/fs:mkdir", json={"path": "d"}),
            {"path": "d"})


async def _failed_precondition(stack: Stack, sid: str):
    await stack.json("POST", f"/v1/sessions/{sid}:archive")
    return await stack.client.delete(f"/v1/sessions/{sid}/files/f"), {"session_id": sid}


async def _permission_denied(stack: Stack, sid: str):
    outside = stack.daemon.config.data_dir  # a real directory, not under import_roots
    resp = await stack.client.post("/v1/sessions",
                                   json={"source": {"directory": {"path": str(outside)}}})
    return resp, {}


async def _invalid_argument(stack: Stack, sid: str):
    resp = await stack.client.post(f"/v1/sessions/{sid}/fs:mkdir", json={"path": "../x"})
    return resp, {"path": "../x"}


@pytest.mark.parametrize(("make", "status", "code"), [
    (_resource_exhausted, 429, "resource_exhausted"),
    (_not_found, 404, "not_found"),
    (_conflict, 409, "conflict"),
    (_already_exists, 409, "already_exists"),
    (_failed_precondition, 412, "failed_precondition"),
    (_permission_denied, 403, "permission_denied"),
    (_invalid_argument, 400, "invalid_argument"),
], ids=lambda v: v.__name__.strip("_") if callable(v) else str(v))
async def test_service_errors_become_the_error_shape(stack: Stack, make, status, code) -> None:
    sid = await stack.new_session()
    await stack.put(sid, "f", b"old")
    resp, details = await make(stack, sid)
    error = await assert_error(resp, status, code)
    assert error["details"] == details
    assert resp.headers["X-Request-Id"]


async def test_a_real_fault_is_internal_logged_and_not_leaked(stack: Stack, caplog) -> None:
    sid = await stack.new_session()
    await stack.put(sid, "f.txt", b"content")
    # A checkpoint folds the overlay, so the root tree is stored (and can be lost).
    root = (await stack.json("POST", f"/v1/sessions/{sid}/checkpoints", 201, json={}))["rootHash"]
    stack.daemon.store.db.execute("DELETE FROM trees WHERE hash=?", (root,))

    resp = await stack.client.get(f"/v1/sessions/{sid}", headers={"X-Request-Id": "req-42"})
    error = await assert_error(resp, 500, "internal")
    assert (error["message"], error["details"]) == ("internal error", {"request_id": "req-42"})
    assert resp.headers["X-Request-Id"] == "req-42"
    leaked = json.dumps(error)
    assert root not in leaked and "missing" not in leaked and "KeyError" not in leaked
    assert f"tree {root} is missing" in caplog.text  # logged, with its traceback
    assert "Traceback" in caplog.text and "[request req-42]" in caplog.text

    caplog.clear()
    resp = await stack.client.get(f"/v1/sessions/{sid}")  # no id given: one is made up
    error = await assert_error(resp, 500, "internal")
    request_id = error["details"]["request_id"]
    assert request_id == resp.headers["X-Request-Id"] and len(request_id) == 16
    assert f"[request {request_id}]" in caplog.text
    # A fault in one session is not a broken daemon.
    other = await stack.new_session()
    assert (await stack.json("GET", f"/v1/sessions/{other}"))["id"] == other


async def test_body_over_the_limit_is_413(tmp_path: Path) -> None:
    async with serve(tmp_path, max_body_bytes=4096) as stack:
        sid = await stack.new_session()
        url = f"/v1/sessions/{sid}/files/big"
        await assert_error(await stack.client.put(url, data=b"x" * 4097), 413,
                           "payload_too_large")

        async def chunks():
            for _ in range(5):
                yield b"x" * 1000

        await assert_error(await stack.client.put(url, data=chunks()), 413, "payload_too_large")
        assert (await stack.read(sid, "big"))[0] == 404  # nothing was written
        await stack.put(sid, "big", b"x" * 4096)  # the limit itself is allowed
        assert await stack.read(sid, "big") == (200, b"x" * 4096)


# ---- auth


async def test_tcp_listener_requires_the_token(tmp_path: Path, caplog) -> None:
    async with serve(tmp_path, require_token=True) as stack:
        client = stack.client
        assert (await client.get("/v1/health")).status == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                        {"Authorization": "Bearer"}, {"Authorization": "Bearer ünïcode"}):
            resp = await client.get("/v1/sessions", headers=headers)
            await assert_error(resp, 401, "unauthenticated")
            assert resp.headers["WWW-Authenticate"] == "Bearer"
            resp = await client.post("/v1/sessions", json={"name": "sneaky"}, headers=headers)
            await assert_error(resp, 401, "unauthenticated")
        await assert_error(await client.get("/v1/nope"), 401, "unauthenticated")
        await assert_error(await client.get(OPENAPI_PATH), 401, "unauthenticated")
        good = {"Authorization": f"bearer {TOKEN}"}
        listed = await stack.json("GET", "/v1/sessions", headers=good)
        assert listed["sessions"] == []  # no refused request created anything
        assert (await stack.json("POST", "/v1/sessions", 201, headers=good, json={}))["id"]
    assert TOKEN not in caplog.text


async def test_token_required_but_not_configured_fails_closed(tmp_path: Path) -> None:
    async with serve(tmp_path, require_token=True, token="") as stack:
        assert (await stack.client.get("/v1/health")).status == 200
        for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer x"}):
            await assert_error(await stack.client.get("/v1/sessions", headers=headers), 401,
                               "unauthenticated")


async def test_unix_socket_app_needs_no_token(stack: Stack) -> None:
    assert (await stack.json("GET", "/v1/sessions"))["sessions"] == []


async def test_openapi_is_served(stack: Stack) -> None:
    resp = await stack.client.get(OPENAPI_PATH)
    assert resp.status == 200
    assert await resp.json() == json.loads(json.dumps(openapi_document()))
    await assert_error(await stack.client.post(OPENAPI_PATH), 405, "invalid_argument")


# ---- files: a real multi-chunk file


BIG = random.Random(7).randbytes(2 * CHUNK_SIZE + 12345)  # three extents
N = len(BIG)
CHANGED = b"changed since the checkpoint"


@dataclass
class BigFile:
    stack: Stack
    sid: str
    ckp: str

    @property
    def url(self) -> str:
        """The file as it was at the checkpoint: BIG."""
        return f"/v1/sessions/{self.sid}/files/big.bin?at={self.ckp}"


@pytest.fixture
async def big(stack: Stack) -> BigFile:
    sid = await stack.new_session()
    await stack.put(sid, "big.bin", BIG)
    ckp = await stack.checkpoint(sid)
    await stack.put(sid, "big.bin", CHANGED)
    return BigFile(stack, sid, ckp)


async def test_big_file_has_several_extents(big: BigFile) -> None:
    info = await big.stack.json("GET", f"/v1/sessions/{big.sid}/stat/big.bin?at={big.ckp}")
    assert [(e["offset"], e["length"]) for e in info["extents"]] == [
        ("0", str(CHUNK_SIZE)), (str(CHUNK_SIZE), str(CHUNK_SIZE)), (str(2 * CHUNK_SIZE), "12345")]
    assert info["hash"] == blake3.blake3(BIG).hexdigest()
    # without at=, the working state: the later write
    assert await big.stack.read(big.sid, "big.bin") == (200, CHANGED)


C = CHUNK_SIZE


@pytest.mark.parametrize(("range_header", "status", "part"), [
    (None, 200, slice(None)),
    ("bytes=0-3", 206, slice(0, 4)),
    (f"bytes={C - 5}-{C + 4}", 206, slice(C - 5, C + 5)),  # across the first extent boundary
    (f"bytes=0-{C}", 206, slice(0, C + 1)),
    (f"bytes={2 * C}-", 206, slice(2 * C, N)),  # the last extent, open-ended
    (f"bytes={C + 7}-{2 * C + 7}", 206, slice(C + 7, 2 * C + 8)),
    ("bytes=-3", 206, slice(N - 3, N)),
    (f"bytes=-{N + 30}", 206, slice(0, N)),
    (f"bytes={N - 2}-{N + 100}", 206, slice(N - 2, N)),
    ("bytes=0-0,5-6", 200, slice(None)),  # several ranges: the whole file is allowed
    ("items=0-1", 200, slice(None)),  # unknown unit: ignored
], ids=str)
async def test_read_file_ranges(big: BigFile, range_header, status, part) -> None:
    headers = {"Range": range_header} if range_header else {}
    resp = await big.stack.client.get(big.url, headers=headers)
    body = BIG[part]
    assert resp.status == status
    assert await resp.read() == body
    assert resp.headers["ETag"] == etag_of(BIG)
    assert resp.headers["Accept-Ranges"] == "bytes"
    assert resp.headers["X-Aether-Size"] == str(N)
    assert resp.headers["Content-Length"] == str(len(body))
    if status == 206:
        start = part.start
        assert resp.headers["Content-Range"] == f"bytes {start}-{start + len(body) - 1}/{N}"
    else:
        assert "Content-Range" not in resp.headers


async def test_offset_and_length_in_the_query_are_a_range(big: BigFile) -> None:
    for offset, length in ((5, 3), (C - 1, 2), (2 * C, 0)):
        resp = await big.stack.client.get(f"{big.url}&offset={offset}&length={length}")
        body = BIG[offset:offset + length] if length else BIG[offset:]
        assert (resp.status, await resp.read()) == (206, body)
        assert resp.headers["Content-Range"] == f"bytes {offset}-{offset + len(body) - 1}/{N}"


@pytest.mark.parametrize(("range_header", "size_known"), [
    (f"bytes={N}-", True), (f"bytes={N + 10}-{N + 20}", True), ("bytes=-0", True),
    ("bytes=5-2", False), ("bytes=x-1", False),
])
async def test_unsatisfiable_range_is_416(big: BigFile, range_header, size_known) -> None:
    resp = await big.stack.client.get(big.url, headers={"Range": range_header})
    await assert_error(resp, 416, "range_not_satisfiable")
    if size_known:
        assert resp.headers["Content-Range"] == f"bytes */{N}"


async def test_if_none_match_and_if_range(big: BigFile) -> None:
    client, tag = big.stack.client, etag_of(BIG)
    for inm in (tag, f"W/{tag}", f'"zzz", {tag}', "*"):
        resp = await client.get(big.url, headers={"If-None-Match": inm})
        assert resp.status == 304, inm
        assert resp.headers["ETag"] == tag
        assert await resp.read() == b""
    resp = await client.get(big.url, headers={"If-None-Match": etag_of(CHANGED)})
    assert (resp.status, await resp.read()) == (200, BIG)
    resp = await client.get(big.url, headers={"Range": f"bytes={C}-{C + 9}", "If-Range": tag})
    assert (resp.status, await resp.read()) == (206, BIG[C:C + 10])
    resp = await client.get(big.url, headers={"Range": "bytes=0-1", "If-Range": etag_of(CHANGED)})
    assert (resp.status, await resp.read()) == (200, BIG)


async def test_head_file(big: BigFile) -> None:
    resp = await big.stack.client.head(big.url)
    assert resp.status == 200
    assert (resp.headers["Content-Length"], resp.headers["ETag"]) == (str(N), etag_of(BIG))
    assert await resp.read() == b""
    resp = await big.stack.client.head(f"/v1/sessions/{big.sid}/files/big.bin")
    assert (resp.headers["Content-Length"], resp.headers["ETag"]) == (str(len(CHANGED)),
                                                                      etag_of(CHANGED))
    resp = await big.stack.client.head(big.url, headers={"Range": "bytes=1-4"})
    assert (resp.status, resp.headers["Content-Range"]) == (206, f"bytes 1-4/{N}")


async def test_put_file(stack: Stack) -> None:
    sid = await stack.new_session()
    client, url = stack.client, f"/v1/sessions/{sid}/files/a/b"
    resp = await client.put(f"{url}?mode=0755", data=b"abc")
    assert resp.status == 200
    assert resp.headers["ETag"] == etag_of(b"abc")
    body = await resp.json()
    assert (body["hash"], body["mode"], body["size"]) == (blake3.blake3(b"abc").hexdigest(),
                                                          0o755, "3")
    assert (await stack.json("GET", f"/v1/sessions/{sid}/stat/a"))["kind"] == "ENTRY_KIND_DIRECTORY"

    async def put(data: bytes, status: int, target: str = url, **headers: str) -> None:
        resp = await client.put(target, data=data, headers=headers)
        assert resp.status == status, (headers, await resp.text())

    await put(b"lost", 409, **{"If-Match": '"0000"'})
    assert await stack.read(sid, "a/b") == (200, b"abc")
    await put(b"def", 200, **{"If-Match": etag_of(b"abc")})
    await put(b"ghi", 200, **{"If-Match": f"W/{etag_of(b'def')}"})  # weak tags compare too
    await put(b"", 200, **{"If-Match": "*"})
    assert await stack.read(sid, "a/b") == (200, b"")
    assert (await stack.json("GET", f"/v1/sessions/{sid}/stat/a/b"))["mode"] == 0o755  # kept
    await put(b"x", 409, **{"If-None-Match": "*"})  # exists
    await put(b"fresh", 200, f"/v1/sessions/{sid}/files/new", **{"If-None-Match": "*"})
    await put(b"x", 409, f"/v1/sessions/{sid}/files/absent", **{"If-Match": "*"})
    assert (await stack.read(sid, "absent"))[0] == 404
    await put(b"x", 404, f"/v1/sessions/{sid}/files/nodir/f?parents=false")
    await put(b"x", 200, f"/v1/sessions/{sid}/files/nodir/f?parents=true")
    for bad in ("mode=9", "parents=maybe"):
        resp = await client.put(f"/v1/sessions/{sid}/files/a?{bad}", data=b"x")
        await assert_error(resp, 400, "invalid_argument")


async def test_delete_file_if_match(stack: Stack) -> None:
    sid = await stack.new_session()
    await stack.put(sid, "a/b", b"data")
    url = f"/v1/sessions/{sid}/files/a/b"
    resp = await stack.client.delete(url, headers={"If-Match": etag_of(b"other")})
    await assert_error(resp, 409, "conflict")
    assert await stack.read(sid, "a/b") == (200, b"data")
    deleted = await stack.json("DELETE", url, headers={"If-Match": etag_of(b"data")})
    assert (deleted["path"], deleted["hash"]) == ("a/b", blake3.blake3(b"data").hexdigest())
    assert (await stack.read(sid, "a/b"))[0] == 404
    await assert_error(await stack.client.delete(url), 404, "not_found")


async def test_patch_file_diff_or_byte_range(stack: Stack) -> None:
    sid = await stack.new_session()
    await stack.put(sid, "f", b"x\n")
    url = f"/v1/sessions/{sid}/files/f"
    diff = b"--- a/f\n+++ b/f\n@@ -1 +1 @@\n-x\n+y\n"
    as_diff = {"Content-Type": "text/x-diff"}
    stale = await stack.client.patch(url, data=diff, headers={**as_diff, "If-Match": '"0000"'})
    await assert_error(stale, 409, "conflict")
    patched = await stack.json("PATCH", url, data=diff,
                               headers={**as_diff, "If-Match": etag_of(b"x\n")})
    assert patched["hash"] == blake3.blake3(b"y\n").hexdigest()
    assert await stack.read(sid, "f") == (200, b"y\n")
    await assert_error(await stack.client.patch(url, data=diff, headers=as_diff), 409, "conflict")

    octets = {"Content-Type": "application/octet-stream"}
    await stack.json("PATCH", f"{url}?offset=4", data=b"\x00\x01", headers=octets)
    assert await stack.read(sid, "f") == (200, b"y\n\x00\x00\x00\x01")  # gap zero-filled
    await stack.json("PATCH", f"{url}?offset=0", data=b"Y", headers=octets)
    assert await stack.read(sid, "f") == (200, b"Y\n\x00\x00\x00\x01")

    resp = await stack.client.patch(url, data=b"\x00", headers=octets)
    await assert_error(resp, 400, "invalid_argument")
    resp = await stack.client.patch(url, data=b"\xff\xfe", headers=as_diff)
    await assert_error(resp, 400, "invalid_argument")
    assert await stack.read(sid, "f") == (200, b"Y\n\x00\x00\x00\x01")


async def test_byte_range_patch_of_a_multi_chunk_file(big: BigFile) -> None:
    url = f"/v1/sessions/{big.sid}/files/big2.bin"
    await big.stack.put(big.sid, "big2.bin", BIG)
    await big.stack.json("PATCH", f"{url}?offset={C - 2}", data=b"WXYZ",
                         headers={"Content-Type": "application/octet-stream",
                                  "If-Match": etag_of(BIG)})
    expected = BIG[:C - 2] + b"WXYZ" + BIG[C + 2:]
    resp = await big.stack.client.get(url, headers={"Range": f"bytes={C - 4}-{C + 3}"})
    assert (resp.status, await resp.read()) == (206, expected[C - 4:C + 4])
    assert resp.headers["ETag"] == etag_of(expected)


# ---- streams


@pytest.mark.parametrize(("fmt", "ctype", "ext"), [
    ("tar", "application/x-tar", ".tar"),
    ("tar.gz", "application/gzip", ".tar.gz"),
    ("tgz", "application/gzip", ".tar.gz"),
    ("zip", "application/zip", ".zip"),
    (None, "application/x-tar", ".tar"),
])
async def test_export_streams_the_archive(stack: Stack, fmt, ctype, ext) -> None:
    w = await make_world(stack)
    url = w.s(f"/export?at={w.ckp}") + (f"&format={fmt}" if fmt else "")
    resp = await stack.client.get(url)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == ctype
    assert resp.headers["Content-Disposition"] == f'attachment; filename="{w.sid}{ext}"'
    data = await resp.read()
    if ctype == "application/gzip":
        assert data[:2] == b"\x1f\x8b"
    assert archive_members(fmt or "tar", data) == WORLD_FILES  # at the checkpoint: no later.txt
    resp = await stack.client.get(w.s("/export?path=dir/sub") + (f"&format={fmt}" if fmt else ""))
    assert archive_members(fmt or "tar", await resp.read()) == {"file.txt": b"hello\n"}


async def test_export_error_before_first_chunk_is_json(stack: Stack) -> None:
    sid = await stack.new_session()
    resp = await stack.client.get(f"/v1/sessions/{sid}/export?at={new_id('ckp')}")
    await assert_error(resp, 404, "not_found")
    await assert_error(await stack.client.get(f"/v1/sessions/{sid}/export?path=nope"), 404,
                       "not_found")
    await assert_error(await stack.client.get(f"/v1/sessions/{sid}/export?format=rar"), 400,
                       "invalid_argument")
    await assert_error(await stack.client.get(f"/v1/sessions/{new_id('ses')}/export"), 404,
                       "not_found")


async def test_export_error_mid_stream_cuts_the_response(stack: Stack, caplog) -> None:
    sid = await stack.new_session()
    rng = random.Random(3)
    await stack.put(sid, "a.bin", rng.randbytes(256 << 10))  # fills tar's buffer: sent first
    await stack.put(sid, "b.bin", rng.randbytes(1000))
    info = await stack.json("GET", f"/v1/sessions/{sid}/stat/b.bin")
    # A real fault: b.bin's only chunk vanishes from the blob store.
    stack.daemon.store.objects.blobs.db.execute("DELETE FROM chunks WHERE hash=?",
                                                (info["extents"][0]["hash"],))
    status, headers, body = await raw_request(stack.client, "GET", f"/v1/sessions/{sid}/export")
    assert status == 200
    assert headers["transfer-encoding"] == "chunked"
    assert len(body) > 100 << 10  # a.bin went out...
    assert not body.endswith(b"0\r\n\r\n")  # ...but no last-chunk: the client sees a broken transfer
    assert "failed mid-stream" in caplog.text


SSE = {"Accept": "text/event-stream"}


async def next_events(resp, n: int) -> list[dict[str, str]]:
    """The next `n` server-sent events of an open stream, as their fields
    (keepalive comments skipped)."""
    events: list[dict[str, str]] = []
    fields: dict[str, str] = {}
    while len(events) < n:
        raw = await resp.content.readline()
        assert raw, f"the stream ended after {events}"
        line = raw.decode().rstrip("\r\n")
        if line.startswith(":"):
            continue
        if not line:
            if fields:
                events.append(fields)
            fields = {}
            continue
        name, _, value = line.partition(":")
        fields[name] = value.removeprefix(" ")
    return events


async def test_bus_follows_live_over_sse_and_resumes_after_last_event_id(stack: Stack) -> None:
    sid = await stack.new_session()
    url = f"/v1/sessions/{sid}/bus"

    async def publish(payload: bytes, topic: str = "build") -> dict[str, Any]:
        return await stack.json("POST", f"{url}:publish",
                                json={"topic": topic, "payload": b64(payload)})

    async with asyncio.timeout(5):
        resp = await stack.client.get(url, headers=SSE)
        try:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            sent = await publish(b"first")  # after the stream opened: it arrives live
            [ev] = await next_events(resp, 1)
            assert (ev["id"], ev["event"], json.loads(ev["data"])) == ("1", "build", sent)
            more = [await publish(b"second", "other"), await publish(b"third")]
            evs = await next_events(resp, 2)
            assert [(e["id"], e["event"]) for e in evs] == [("2", "other"), ("3", "build")]
            assert [json.loads(e["data"]) for e in evs] == more
        finally:
            resp.close()
        # A reconnect with Last-Event-ID resumes after that cursor: nothing seen is resent.
        resp = await stack.client.get(url, headers={**SSE, "Last-Event-ID": "2"})
        try:
            assert resp.status == 200
            [ev] = await next_events(resp, 1)
            assert ev["id"] == "3"
            assert base64.b64decode(json.loads(ev["data"])["payload"]) == b"third"
            later = await publish(b"fourth")
            [ev] = await next_events(resp, 1)
            assert (ev["id"], json.loads(ev["data"])) == ("4", later)
        finally:
            resp.close()
        # Without Accept: text/event-stream the same route is a plain JSON read.
        read = await stack.json("GET", f"{url}?after=3")
        assert [m["cursor"] for m in read["messages"]] == ["4"]


async def test_events_follow_over_sse_and_resume_after_last_event_id(stack: Stack) -> None:
    w = await make_world(stack)
    url = w.s("/events?type=file.written")
    async with asyncio.timeout(5):
        resp = await stack.client.get(url, headers={**SSE, "Last-Event-ID": "3"})
        try:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            [ev] = await next_events(resp, 1)  # already recorded, after cursor 3
            assert (ev["id"], ev["event"], json.loads(ev["data"])["path"]) == (
                "6", "file.written", "later.txt")
            await stack.put(w.sid, "live.txt", b"live")
            [ev] = await next_events(resp, 1)
            data = json.loads(ev["data"])
            assert (ev["id"], data["type"], data["path"]) == ("7", "file.written", "live.txt")
        finally:
            resp.close()


async def test_bad_last_event_id_is_invalid_argument(stack: Stack) -> None:
    sid = await stack.new_session()
    resp = await stack.client.get(f"/v1/sessions/{sid}/events",
                                  headers={"Accept": "text/event-stream", "Last-Event-ID": "x"})
    await assert_error(resp, 400, "invalid_argument")



# ---- found by tests/test_schemathesis.py


def _event_stream_schema(document: dict[str, Any], path: str) -> dict[str, Any]:
    ok = document["paths"][path]["get"]["responses"]["200"]
    return ok["content"]["text/event-stream"]["schema"]


@pytest.mark.parametrize("tail", ["/bus", "/events"])
async def test_each_sse_event_matches_the_documented_event_schema(stack: Stack,
                                                                  tail: str) -> None:
    """In OpenAPI 3.1 the text/event-stream schema describes one event; it said
    `type: string`, which no event (an id/event/data object) is. The data is
    the item as JSON, or the ErrorResponse of a stream that failed."""
    document = openapi_document()
    schema = _event_stream_schema(document, "/v1/sessions/{session_id}" + tail)
    validator = jsonschema.Draft202012Validator({**schema, "components": document["components"]})
    content = jsonschema.Draft202012Validator(
        {**schema["properties"]["data"]["contentSchema"], "components": document["components"]})
    sid = await stack.new_session()
    await stack.put(sid, "a.txt", b"a")  # an event besides session.created
    for n in range(2):
        await stack.json("POST", f"/v1/sessions/{sid}/bus:publish",
                         json={"topic": "t", "payload": b64(b"x"), "sender": str(n)})
    async with asyncio.timeout(5):
        resp = await stack.client.get(f"/v1/sessions/{sid}{tail}", headers=SSE)
        try:
            assert resp.status == 200
            events = await next_events(resp, 2)
            await stack.json("DELETE", f"/v1/sessions/{sid}")  # ends the stream with an error
            events += await next_events(resp, 1)
        finally:
            resp.close()
    assert events[-1]["event"] == "error"
    for event in events:
        validator.validate(event)
        content.validate(json.loads(event["data"]))


def test_last_event_id_is_documented_as_the_cursor_it_sets(document: dict[str, Any]) -> None:
    """It said any string; the daemon reads it into the uint64 `after` and
    refuses anything else (test_bad_last_event_id_is_invalid_argument)."""
    for tail in ("/bus", "/events"):
        op = document["paths"]["/v1/sessions/{session_id}" + tail]["get"]
        [header] = [p for p in op["parameters"] if p["in"] == "header"]
        assert header["name"] == "Last-Event-ID"
        validator = jsonschema.Draft202012Validator(header["schema"])
        assert validator.is_valid(0) and validator.is_valid(2**64 - 1)
        assert not validator.is_valid("Z") and not validator.is_valid(-1)
        assert not validator.is_valid(2**64)
