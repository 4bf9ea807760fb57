"""The HTTP shim without a daemon: the route table against the generated
services, the OpenAPI document against the spec and against what the wire
really carries, and the app's routing and request building against a fake Api
that records what it is called with."""

from __future__ import annotations

import asyncio
import datetime
import json
from dataclasses import dataclass, field
from typing import Any
from unittest.mock import ANY

import betterproto2
import jsonschema
import pytest
from aiohttp.test_utils import TestClient, TestServer
from grpclib import GRPCError
from grpclib.const import Status
from openapi_spec_validator import validate

from aether import errors, pb
from aetherd.api import Api
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

TOKEN = "s3cret-token"
SAMPLE_PARAMS = {
    "session_id": "ses_1",
    "path": "dir/sub/file.txt",
    "key": "k1",
    "checkpoint_id": "ckp_1",
    "commit_id": "cmt_1",
    "annotation_id": "ann_1",
    "approval_id": "apr_1",
}


def sample_url(route: Route) -> str:
    url = route.path
    for name, value in SAMPLE_PARAMS.items():
        url = url.replace("{" + name + "}", value)
    assert "{" not in url, f"add a sample value for {url}"
    return url


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
    return build_openapi()


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


# ---------------------------------------------------------------- app with a fake Api


@dataclass
class Recorder:
    """What the fake Api was called with, and what it should answer."""

    calls: list[tuple[str, str, betterproto2.Message]] = field(default_factory=list)
    replies: dict[tuple[str, str], Any] = field(default_factory=dict)

    def last(self) -> tuple[str, str, Any]:
        assert self.calls, "the API was not called"
        return self.calls[-1]


def fake_api(rec: Recorder) -> Api:
    services = {}
    for attr, base in service_classes().items():
        methods: dict[str, Any] = {}
        for (service, name), the_rpc in all_rpcs().items():
            if service != attr:
                continue
            key = (service, name)
            if the_rpc.server_streaming:
                async def stream(self, msg, _key=key, _rpc=the_rpc):
                    rec.calls.append((*_key, msg))
                    answer = rec.replies.get(_key, [_rpc.reply()])
                    if callable(answer):
                        answer = answer(msg)
                    for item in answer:
                        if isinstance(item, BaseException):
                            raise item
                        if isinstance(item, (int, float)):
                            await asyncio.sleep(item)
                            continue
                        yield item
                methods[name] = stream
            else:
                async def unary(self, msg, _key=key, _rpc=the_rpc):
                    rec.calls.append((*_key, msg))
                    answer = rec.replies.get(_key)
                    if callable(answer):
                        answer = answer(msg)
                    if isinstance(answer, BaseException):
                        raise answer
                    return answer if answer is not None else _rpc.reply()
                methods[name] = unary
        services[attr] = type(f"Fake{base.__name__}", (base,), methods)()
    return Api(**services)


@pytest.fixture
async def shim(tmp_path):
    rec = Recorder()
    config = Config(data_dir=tmp_path, token=TOKEN, max_body_bytes=4096)
    app = make_app(fake_api(rec), config, require_token=False)
    async with TestClient(TestServer(app)) as client:
        yield client, rec


@pytest.fixture
async def tcp_shim(tmp_path):
    rec = Recorder()
    config = Config(data_dir=tmp_path, token=TOKEN)
    app = make_app(fake_api(rec), config, require_token=True)
    async with TestClient(TestServer(app)) as client:
        yield client, rec


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


async def assert_error(resp, status: int, code: str) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["status"] == status
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


def _body_for(route: Route) -> tuple[bytes | None, dict[str, str]]:
    if route.body == "json":
        return b"{}", {"Content-Type": "application/json"}
    if route.body == "raw":
        if route.rpc == "patch_file":
            return b"--- a\n+++ b\n", {"Content-Type": "text/x-diff"}
        return b"raw-bytes", {"Content-Type": "application/octet-stream"}
    return None, {}


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
async def test_app_routes_each_path_to_its_rpc(shim, route: Route) -> None:
    client, rec = shim
    if route.kind == "raw_file":
        rec.replies[("files", "read_file")] = pb.ReadFileResponse(data=b"x", hash="h", size=1)
    body, headers = _body_for(route)
    resp = await client.request(route.method, sample_url(route), data=body, headers=headers)
    assert resp.status == route.success_status, await resp.text()
    service, name, msg = rec.last()
    assert (service, name) == (route.service, route.rpc)
    assert isinstance(msg, rpc(route.service, route.rpc).request)
    for param in compile_template(route.path)[1]:
        assert getattr(msg, param) == SAMPLE_PARAMS[param]
    if route.body == "raw" and route.rpc != "patch_file":
        assert getattr(msg, route.raw_field) == b"raw-bytes"


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
    ("GET", "/v1/sessions/ses_1/stat/", "stat", {"path": ""}),
    ("POST", "/v1/sessions/ses_1/fs:rename", "rename", {}),
])
async def test_tricky_paths_pick_the_right_route(shim, method, url, rpc_name, params) -> None:
    client, rec = shim
    rec.replies[("files", "read_file")] = pb.ReadFileResponse(hash="h")
    resp = await client.request(method, url, data=b"{}" if method == "POST" else None)
    assert resp.status < 300, await resp.text()
    _, name, msg = rec.last()
    assert name == rpc_name
    for k, v in params.items():
        assert getattr(msg, k) == v


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
async def test_unknown_routes_and_methods_are_json_errors(shim, method, url, status,
                                                          code) -> None:
    client, rec = shim
    got, headers, body = await raw_request(client, method, url)
    assert got == status, body
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body)["error"] == {"code": code, "status": status, "details": ANY,
                                         "message": ANY}
    if status == 405:
        assert "allow" in headers
    assert not rec.calls


async def test_raw_path_decoding_is_strict_and_keeps_dot_segments(shim) -> None:
    client, rec = shim
    rec.replies[("files", "stat")] = pb.FileInfo(path="x")
    base = "/v1/sessions/ses_1/stat/"
    for bad in ("a/%FF", "a%00b", "a/%C3", "a/%zz"):
        status, _, body = await raw_request(client, "GET", base + bad)
        assert status == 400, bad
        assert json.loads(body)["error"]["code"] == "invalid_argument"
    assert not rec.calls
    for raw, decoded in (("../etc/passwd", "../etc/passwd"), ("a/./b/../c", "a/./b/../c"),
                         ("a//b", "a//b"), ("%2E%2E/x", "../x"), ("caf%C3%A9", "café")):
        status, _, _ = await raw_request(client, "GET", base + raw)
        assert status == 200, raw
        assert rec.last()[2].path == decoded


async def test_query_parameters_are_decoded_strictly(shim) -> None:
    client, rec = shim
    status, _, body = await raw_request(client, "GET", "/v1/sessions/ses_1/tree?path=%FF")
    assert status == 400
    status, _, _ = await raw_request(client, "GET", "/v1/sessions/ses_1/tree?path=a+b%2Fc")
    assert status == 200
    assert rec.last()[2].path == "a b/c"


async def test_query_params_fill_typed_fields(shim) -> None:
    client, rec = shim
    resp = await client.get("/v1/sessions?label=team=infra&label=env=prod&tag=a&tags=b"
                            "&state=active&page_size=5&pageToken=t")
    assert resp.status == 200, await resp.text()
    msg = rec.last()[2]
    assert msg.labels == {"team": "infra", "env": "prod"}
    assert msg.tags == ["a", "b"]
    assert msg.state == pb.SessionState.ACTIVE
    assert (msg.page_size, msg.page_token) == (5, "t")

    await client.get("/v1/sessions/ses_1/tree?depth=0&at=ckp_1")
    assert (rec.last()[2].depth, rec.last()[2].at) == (0, "ckp_1")
    await client.get("/v1/sessions/ses_1/diff?from=base&to=ckp_1&path=a&path=b&name_only=true")
    msg = rec.last()[2]
    assert (msg.from_, msg.to, msg.paths, msg.name_only) == ("base", "ckp_1", ["a", "b"], True)
    await client.get("/v1/sessions/ses_1/events?after=7&type=file.written&limit=3")
    msg = rec.last()[2]
    assert (msg.after, msg.types, msg.limit) == (7, ["file.written"], 3)
    await client.get("/v1/sessions/ses_1/approvals?state=APPROVAL_STATE_PENDING")
    assert rec.last()[2].state == pb.ApprovalState.PENDING


@pytest.mark.parametrize("query", [
    "page_size=-1", "page_size=abc", "page_size=4294967296", "state=bogus",
    "nope=1", "page_size=1&page_size=2", "label=novalue", "label==v",
])
async def test_bad_query_values_are_invalid_argument(shim, query) -> None:
    client, rec = shim
    await assert_error(await client.get(f"/v1/sessions?{query}"), 400, "invalid_argument")
    assert not rec.calls


async def test_path_params_win_over_body_and_query(shim) -> None:
    client, rec = shim
    resp = await client.post("/v1/sessions/ses_1:fork?session_id=other",
                             json={"sessionId": "body", "name": "n", "labels": {"a": "b"}})
    assert resp.status == 201
    msg = rec.last()[2]
    assert (msg.session_id, msg.name, msg.labels) == ("ses_1", "n", {"a": "b"})


@pytest.mark.parametrize("body", [
    b'{"nope": 1}', b"[1]", b"{", b'{"name": 5}', b'{"labels": []}', b'"x"',
    b'{"policy": {"maxBytes": "-1"}}', b'{"policy": {"readOnly": "yes"}}',
    b'{"source": {"blank": {}, "git": {"url": "u"}}}', b'\xff\xfe{',
    b'{"source": {"archive": {"data": "not base64!"}}}',
])
async def test_bad_json_bodies_are_invalid_argument(shim, body) -> None:
    client, rec = shim
    resp = await client.post("/v1/sessions", data=body,
                             headers={"Content-Type": "application/json"})
    await assert_error(resp, 400, "invalid_argument")
    assert not rec.calls


async def test_json_body_accepts_the_proto3_json_mapping(shim) -> None:
    client, rec = shim
    resp = await client.post("/v1/sessions", json={
        "name": "n", "source": {"archive": {"data": "AP-_", "format": "ARCHIVE_FORMAT_ZIP"}},
        "policy": {"max_bytes": "10", "maxFiles": 3, "readOnly": True},
        "tags": ["t"], "owner": None,
    })
    assert resp.status == 201, await resp.text()
    msg = rec.last()[2]
    assert msg.source.archive.data == b"\x00\xff\xbf"
    assert msg.source.archive.format == pb.ArchiveFormat.ZIP
    assert (msg.policy.max_bytes, msg.policy.max_files, msg.policy.read_only) == (10, 3, True)


async def test_response_is_proto3_json_with_defaults(shim) -> None:
    client, rec = shim
    rec.replies[("sessions", "get_session")] = pb.Session(id="ses_1", total_bytes=2**63)
    resp = await client.get("/v1/sessions/ses_1")
    body = await resp.json()
    assert body["id"] == "ses_1"
    assert body["totalBytes"] == str(2**63)
    assert body["state"] == "SESSION_STATE_UNSPECIFIED"
    assert body["labels"] == {} and body["policy"] is None


async def test_archive_upload_creates_a_session(shim) -> None:
    client, rec = shim
    for ctype, fmt in (("application/x-tar", pb.ArchiveFormat.TAR),
                       ("application/gzip", pb.ArchiveFormat.TAR_GZ),
                       ("application/zip", pb.ArchiveFormat.ZIP),
                       ("application/octet-stream", pb.ArchiveFormat.UNSPECIFIED)):
        resp = await client.post("/v1/sessions?name=up&label=a=1&label=b=2&tag=x&tag=y",
                                 data=b"ARCHIVE", headers={"Content-Type": ctype})
        assert resp.status == 201, await resp.text()
        msg = rec.last()[2]
        assert msg.source.archive.data == b"ARCHIVE"
        assert msg.source.archive.format == fmt
        assert (msg.name, msg.labels, msg.tags) == ("up", {"a": "1", "b": "2"}, ["x", "y"])


async def test_import_takes_the_raw_body(shim) -> None:
    client, rec = shim
    for fmt, expected in (("tar.gz", pb.ArchiveFormat.TAR_GZ), ("tgz", pb.ArchiveFormat.TAR_GZ),
                          ("zip", pb.ArchiveFormat.ZIP), ("tar", pb.ArchiveFormat.TAR)):
        resp = await client.post(f"/v1/sessions/ses_1/import?path=sub&format={fmt}",
                                 data=b"BYTES")
        assert resp.status == 200, await resp.text()
        msg = rec.last()[2]
        assert (msg.data, msg.path, msg.format) == (b"BYTES", "sub", expected)


# ---- errors


@pytest.mark.parametrize(("exc", "status", "code"), [
    (GRPCError(Status.UNIMPLEMENTED), 501, "unimplemented"),
    (GRPCError(Status.NOT_FOUND, "gone"), 404, "not_found"),
    (errors.NotFound("no session", session_id="ses_1"), 404, "not_found"),
    (errors.Conflict("lost"), 409, "conflict"),
    (errors.FailedPrecondition("archived"), 412, "failed_precondition"),
    (errors.ResourceExhausted("quota"), 429, "resource_exhausted"),
    (errors.Internal("secret internals"), 500, "internal"),
    (RuntimeError("secret internals /var/lib/x"), 500, "internal"),
])
async def test_exceptions_become_the_error_shape(shim, exc, status, code, caplog) -> None:
    client, rec = shim
    rec.replies[("sessions", "get_session")] = exc
    error = await assert_error(await client.get("/v1/sessions/ses_1"), status, code)
    if code == "internal":
        assert "secret" not in json.dumps(error)
        assert error["details"]["request_id"]
        assert "secret internals" in caplog.text  # logged with its traceback instead
    if isinstance(exc, errors.NotFound):
        assert error["details"] == {"session_id": "ses_1"}


async def test_the_generated_base_answers_501(tmp_path) -> None:
    api = Api(**{attr: cls() for attr, cls in service_classes().items()})
    app = make_app(api, Config(data_dir=tmp_path), require_token=False)
    async with TestClient(TestServer(app)) as client:
        await assert_error(await client.get("/v1/sessions/ses_1"), 501, "unimplemented")
        await assert_error(await client.get("/v1/sessions/ses_1/export"), 501, "unimplemented")
        resp = await client.get("/v1/sessions/ses_1/bus",
                                headers={"Accept": "text/event-stream"})
        await assert_error(resp, 501, "unimplemented")


async def test_body_over_the_limit_is_413(shim) -> None:
    client, rec = shim
    resp = await client.put("/v1/sessions/ses_1/files/big", data=b"x" * 5000)
    await assert_error(resp, 413, "payload_too_large")

    async def chunks():
        for _ in range(5):
            yield b"x" * 1000

    resp = await client.put("/v1/sessions/ses_1/files/big", data=chunks())
    await assert_error(resp, 413, "payload_too_large")
    assert not rec.calls


# ---- auth


async def test_tcp_listener_requires_the_token(tcp_shim, caplog) -> None:
    client, rec = tcp_shim
    assert (await client.get("/v1/health")).status == 200
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                    {"Authorization": "Bearer"}, {"Authorization": "Bearer ünïcode"}):
        resp = await client.get("/v1/sessions", headers=headers)
        await assert_error(resp, 401, "unauthenticated")
        assert resp.headers["WWW-Authenticate"] == "Bearer"
    await assert_error(await client.get("/v1/nope"), 401, "unauthenticated")
    await assert_error(await client.get(OPENAPI_PATH), 401, "unauthenticated")
    assert [c[:2] for c in rec.calls] == [("observability", "health")]
    resp = await client.get("/v1/sessions", headers={"Authorization": f"bearer {TOKEN}"})
    assert resp.status == 200
    assert TOKEN not in caplog.text


async def test_openapi_is_served(shim) -> None:
    client, _ = shim
    resp = await client.get(OPENAPI_PATH)
    assert resp.status == 200
    assert (await resp.json())["openapi"] == "3.1.0"
    await assert_error(await client.post(OPENAPI_PATH), 405, "invalid_argument")


# ---- files


CONTENT = b"0123456789"


def _file_reader(content: bytes = CONTENT, content_hash: str = "abc123"):
    def read(msg: pb.ReadFileRequest) -> pb.ReadFileResponse:
        end = len(content) if msg.length == 0 else msg.offset + msg.length
        return pb.ReadFileResponse(data=content[msg.offset:end], hash=content_hash,
                                   size=len(content))
    return read


@pytest.mark.parametrize(("range_header", "status", "body", "content_range"), [
    (None, 200, CONTENT, None),
    ("bytes=0-3", 206, b"0123", "bytes 0-3/10"),
    ("bytes=7-", 206, b"789", "bytes 7-9/10"),
    ("bytes=-3", 206, b"789", "bytes 7-9/10"),
    ("bytes=-30", 206, CONTENT, "bytes 0-9/10"),
    ("bytes=8-100", 206, b"89", "bytes 8-9/10"),
    ("bytes=0-0,5-6", 200, CONTENT, None),  # several ranges: whole file is allowed
    ("items=0-1", 200, CONTENT, None),  # unknown unit: ignored
])
async def test_read_file_ranges(shim, range_header, status, body, content_range) -> None:
    client, rec = shim
    rec.replies[("files", "read_file")] = _file_reader()
    headers = {"Range": range_header} if range_header else {}
    resp = await client.get("/v1/sessions/ses_1/files/a/b.txt?at=ckp_1", headers=headers)
    assert resp.status == status
    assert await resp.read() == body
    assert resp.headers["ETag"] == '"abc123"'
    assert resp.headers["Accept-Ranges"] == "bytes"
    assert resp.headers["X-Aether-Size"] == "10"
    assert resp.headers["Content-Length"] == str(len(body))
    assert resp.headers.get("Content-Range") == content_range
    assert rec.last()[2].at == "ckp_1"
    assert rec.last()[2].path == "a/b.txt"


async def test_read_file_range_is_read_by_the_service(shim) -> None:
    client, rec = shim
    rec.replies[("files", "read_file")] = _file_reader()
    await client.get("/v1/sessions/ses_1/files/f", headers={"Range": "bytes=2-5"})
    msg = rec.last()[2]
    assert (msg.offset, msg.length) == (2, 4)


@pytest.mark.parametrize("range_header", ["bytes=10-", "bytes=20-30", "bytes=-0", "bytes=5-2",
                                          "bytes=x-1"])
async def test_unsatisfiable_range_is_416(shim, range_header) -> None:
    client, rec = shim
    rec.replies[("files", "read_file")] = _file_reader()
    resp = await client.get("/v1/sessions/ses_1/files/f", headers={"Range": range_header})
    await assert_error(resp, 416, "range_not_satisfiable")


async def test_if_none_match_and_if_range(shim) -> None:
    client, rec = shim
    rec.replies[("files", "read_file")] = _file_reader()
    url = "/v1/sessions/ses_1/files/f"
    for inm in ('"abc123"', 'W/"abc123"', '"zzz", "abc123"', "*"):
        resp = await client.get(url, headers={"If-None-Match": inm})
        assert resp.status == 304, inm
        assert resp.headers["ETag"] == '"abc123"'
        assert await resp.read() == b""
    assert (await client.get(url, headers={"If-None-Match": '"other"'})).status == 200
    resp = await client.get(url, headers={"Range": "bytes=0-1", "If-Range": '"abc123"'})
    assert resp.status == 206
    resp = await client.get(url, headers={"Range": "bytes=0-1", "If-Range": '"old"'})
    assert (resp.status, await resp.read()) == (200, CONTENT)


async def test_head_file(shim) -> None:
    client, rec = shim
    rec.replies[("files", "read_file")] = _file_reader()
    resp = await client.head("/v1/sessions/ses_1/files/f")
    assert resp.status == 200
    assert resp.headers["Content-Length"] == "10"
    assert resp.headers["ETag"] == '"abc123"'
    assert rec.last()[2].length == 1  # only enough to learn hash and size


async def test_put_file(shim) -> None:
    client, rec = shim
    rec.replies[("files", "write_file")] = pb.FileInfo(path="a/b", hash="newhash", size=3)
    resp = await client.put("/v1/sessions/ses_1/files/a/b?mode=0755", data=b"abc",
                            headers={"If-Match": '"oldhash"'})
    assert resp.status == 200
    assert resp.headers["ETag"] == '"newhash"'
    assert (await resp.json())["hash"] == "newhash"
    msg = rec.last()[2]
    assert (msg.data, msg.path, msg.mode, msg.if_match, msg.create_parents) == (
        b"abc", "a/b", 0o755, "oldhash", True)

    await client.put("/v1/sessions/ses_1/files/a/b?parents=false", data=b"",
                     headers={"If-Match": "*"})
    msg = rec.last()[2]
    assert (msg.create_parents, msg.if_match, msg.data) == (False, "*", b"")
    await client.put("/v1/sessions/ses_1/files/a/b", data=b"x", headers={"If-None-Match": "*"})
    assert rec.last()[2].if_match == "!"
    await client.put("/v1/sessions/ses_1/files/a/b", data=b"x", headers={"If-Match": 'W/"h"'})
    assert rec.last()[2].if_match == "h"
    for bad in ("mode=9", "parents=maybe"):
        resp = await client.put(f"/v1/sessions/ses_1/files/a?{bad}", data=b"x")
        await assert_error(resp, 400, "invalid_argument")


async def test_delete_file_if_match(shim) -> None:
    client, rec = shim
    resp = await client.delete("/v1/sessions/ses_1/files/a/b", headers={"If-Match": '"h1"'})
    assert resp.status == 200
    assert (rec.last()[2].path, rec.last()[2].if_match) == ("a/b", "h1")


async def test_patch_file_diff_or_byte_range(shim) -> None:
    client, rec = shim
    diff = "--- a/f\n+++ b/f\n@@ -1 +1 @@\n-x\n+y\n"
    resp = await client.patch("/v1/sessions/ses_1/files/f", data=diff.encode(),
                              headers={"Content-Type": "text/x-diff", "If-Match": '"h"'})
    assert resp.status == 200
    _, name, msg = rec.last()
    assert (name, msg.unified_diff, msg.if_match, msg.path) == ("patch_file", diff, "h", "f")

    resp = await client.patch("/v1/sessions/ses_1/files/f?offset=4", data=b"\x00\x01",
                              headers={"Content-Type": "application/octet-stream"})
    assert resp.status == 200
    _, name, msg = rec.last()
    assert (name, msg.at_offset, msg.offset, msg.data, msg.path) == (
        "write_file", True, 4, b"\x00\x01", "f")

    resp = await client.patch("/v1/sessions/ses_1/files/f", data=b"\x00",
                              headers={"Content-Type": "application/octet-stream"})
    await assert_error(resp, 400, "invalid_argument")
    resp = await client.patch("/v1/sessions/ses_1/files/f", data=b"\xff\xfe",
                              headers={"Content-Type": "text/x-diff"})
    await assert_error(resp, 400, "invalid_argument")


# ---- streams


async def test_export_streams_chunks(shim) -> None:
    client, rec = shim
    rec.replies[("persistence", "export")] = [pb.ExportChunk(data=b"ab"),
                                              pb.ExportChunk(data=b"cd")]
    for fmt, ctype, ext in (("tar", "application/x-tar", ".tar"),
                            ("tar.gz", "application/gzip", ".tar.gz"),
                            ("tgz", "application/gzip", ".tar.gz"),
                            ("zip", "application/zip", ".zip"),
                            (None, "application/x-tar", ".tar")):
        url = "/v1/sessions/ses_1/export?at=ckp_1" + (f"&format={fmt}" if fmt else "")
        resp = await client.get(url)
        assert resp.status == 200
        assert resp.headers["Content-Type"] == ctype
        assert resp.headers["Content-Disposition"] == f'attachment; filename="ses_1{ext}"'
        assert await resp.read() == b"abcd"
        assert rec.last()[2].at == "ckp_1"


async def test_export_error_before_first_chunk_is_json(shim) -> None:
    client, rec = shim
    rec.replies[("persistence", "export")] = [errors.NotFound("no such checkpoint")]
    await assert_error(await client.get("/v1/sessions/ses_1/export"), 404, "not_found")
    await assert_error(await client.get("/v1/sessions/ses_1/export?format=rar"), 400,
                       "invalid_argument")


async def test_export_error_mid_stream_cuts_the_response(shim, caplog) -> None:
    client, rec = shim
    rec.replies[("persistence", "export")] = [pb.ExportChunk(data=b"ab"), RuntimeError("disk")]
    status, headers, body = await raw_request(client, "GET", "/v1/sessions/ses_1/export")
    assert status == 200
    assert headers["transfer-encoding"] == "chunked"
    assert not body.endswith(b"0\r\n\r\n")  # no last-chunk: the client sees a broken transfer
    assert "failed mid-stream" in caplog.text


async def test_bus_without_event_stream_is_the_json_read(shim) -> None:
    client, rec = shim
    resp = await client.get("/v1/sessions/ses_1/bus?after=3&topic=t")
    assert resp.status == 200
    _, name, msg = rec.last()
    assert (name, msg.after, msg.topics) == ("read", 3, ["t"])


async def test_bus_follow_as_server_sent_events(shim) -> None:
    client, rec = shim
    rec.replies[("bus", "follow")] = [
        pb.BusMessage(cursor=4, session_id="ses_1", topic="build", payload=b"hi"),
        pb.BusMessage(cursor=5, session_id="ses_1", topic="line\nbreak"),
    ]
    resp = await client.get("/v1/sessions/ses_1/bus?topic=build",
                            headers={"Accept": "text/event-stream", "Last-Event-ID": "3"})
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/event-stream"
    text = await resp.text()
    events = [e for e in text.split("\n\n") if e]
    assert events[0].split("\n")[:2] == ["id: 4", "event: build"]
    data = json.loads(events[0].split("\n")[2].removeprefix("data: "))
    assert data["payload"] == "aGk=" and data["cursor"] == "4"
    assert events[1].split("\n")[1] == "event: line break"
    _, name, msg = rec.last()
    assert (name, msg.after, msg.topics) == ("follow", 3, ["build"])


async def test_events_follow_heartbeats_and_late_errors(shim, monkeypatch) -> None:
    monkeypatch.setattr(streams, "HEARTBEAT_SECONDS", 0.05)
    client, rec = shim
    rec.replies[("events", "follow")] = [
        0.5,  # quiet: headers go out after the grace, then heartbeats
        pb.Event(cursor=9, type="file.written", path="a"),
        errors.NotFound("session deleted"),
    ]
    resp = await client.get("/v1/sessions/ses_1/events",
                            headers={"Accept": "text/event-stream"})
    assert resp.status == 200
    text = await resp.text()
    assert ": keepalive\n\n" in text
    assert "id: 9\nevent: file.written\n" in text
    error_event = text.rsplit("\n\n", 2)[-2]
    assert error_event.startswith("event: error\ndata: ")
    assert json.loads(error_event.split("data: ", 1)[1])["error"]["code"] == "not_found"


async def test_bad_last_event_id_is_invalid_argument(shim) -> None:
    client, _ = shim
    resp = await client.get("/v1/sessions/ses_1/events",
                            headers={"Accept": "text/event-stream", "Last-Event-ID": "x"})
    await assert_error(resp, 400, "invalid_argument")


def test_json_name_matches_to_dict() -> None:
    wire = pb.DiffRequest(from_="a", context_lines=1).to_dict()
    assert set(wire) == {json_name("from_"), json_name("context_lines")}
