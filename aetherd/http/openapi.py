"""The OpenAPI 3.1 document, generated from the route table and the messages.

Schemas follow what actually goes over the wire, which is betterproto2's
proto3 JSON: lowerCamelCase names, enums by name, bytes as base64, Timestamps
as RFC 3339 strings, 64-bit integers as decimal strings, and - since replies
are rendered with every field present - `null` for an unset message field.
Field and message descriptions are the proto comments, read from the
generated module (dataclasses replace class docstrings, and field docstrings
never reach the runtime).
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import inspect
import re
import sys
from typing import Any

import betterproto2

from aether import pb
from aetherd.http.proto_json import (
    FLOAT_TYPES,
    INT_RANGES,
    OCTAL_FIELDS,
    enum_spellings,
    field_class,
    fields_of,
    is_timestamp,
    json_name,
    proto_name,
)
from aetherd.http.query import singular
from aetherd.http.routes import ROUTES, Route
from aetherd.http.rpcs import Rpc, rpc
from aetherd.http.streams import FOLLOWS

OPENAPI_PATH = "/v1/openapi.json"
SCHEMAS = "#/components/schemas/"

_ARCHIVE_TYPES = ("application/x-tar", "application/gzip", "application/zip")
_BINARY = {"type": "string", "format": "binary"}
_PARAM_DOCS = {
    "session_id": "Session id (ses_...).",
    "path": "Path inside the session. It is the rest of the URL: its slashes are path "
            "separators; percent-encode anything else that is not a plain URL character.",
    "key": "Cache key; percent-encode '/' in it. `keys` and `stats` are reserved names.",
}

_INTRO = """\
The HTTP/JSON API of aetherd. Every operation is also a gRPC method of the same
name (`operationId`), taking and returning the same messages.

* Bodies are the proto3 JSON mapping of the request message: lowerCamelCase
  (snake_case is accepted too), enums by name, bytes as base64, timestamps as
  RFC 3339, 64-bit integers as decimal strings. Unknown fields are refused.
* Query parameters set fields of the request message by their proto name (or
  JSON name); repeated fields repeat the key, map fields take `key=value`.
  Path parameters always win over query and body.
* Replies contain every field, unset message fields as `null`.
* Errors always have the shape of `ErrorResponse`; `error.code` is stable.
* Over TCP every operation except `GET /v1/health` needs
  `Authorization: Bearer <token>`; over the local unix socket none does.
"""


# betterproto2 appends an empty "Oneofs:" list to message docstrings; we say it better.
_GENERATED_ONEOF_NOTE = re.compile(r"\n*Oneofs:\n(\s+- \w+:.*\n?)*$")


def build_openapi() -> dict[str, Any]:
    builder = _Builder()
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = builder.operation(route)
    paths[OPENAPI_PATH] = {"get": {
        "operationId": "Http.GetOpenApi",
        "summary": "This document.",
        "tags": ["Http"],
        "responses": {
            "200": {"description": "The OpenAPI document.",
                    "content": {"application/json": {"schema": {"type": "object"}}}},
            "default": {"$ref": "#/components/responses/Error"},
        },
    }}
    error = builder.message_ref(pb.ErrorResponse)
    return {
        "openapi": "3.1.0",
        "info": {"title": "AetherFS API", "version": _version(), "description": _INTRO},
        "tags": [{"name": name} for name in sorted({_tag(rpc(r.service, r.rpc)) for r in ROUTES})]
        + [{"name": "Http", "description": "Served by the HTTP shim itself."}],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(builder.schemas.items())),
            "responses": {"Error": {
                "description": "Any failure: the one error shape, with a stable `code`.",
                "content": {"application/json": {"schema": error}},
            }},
            "securitySchemes": {"bearer": {
                "type": "http", "scheme": "bearer",
                "description": "The daemon's token; required on TCP listeners only.",
            }},
        },
        "security": [{"bearer": []}],
    }


def _tag(the_rpc: Rpc) -> str:
    return the_rpc.operation_id.split(".")[0]


def _version() -> str:
    try:
        return importlib.metadata.version("aetherfs")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


@functools.cache
def _docs(module_name: str) -> dict[tuple[str, str], str]:
    """(class, field) -> comment, and (class, "") -> class comment, from the source."""
    module = sys.modules[module_name]
    try:
        tree = ast.parse(inspect.getsource(module))
    except (OSError, TypeError):
        return {}
    docs: dict[tuple[str, str], str] = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        if doc := _GENERATED_ONEOF_NOTE.sub("", ast.get_docstring(node) or "").strip():
            docs[(node.name, "")] = doc
        previous = None
        for item in node.body:
            if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                previous = item.target.id
            elif (previous and isinstance(item, ast.Expr) and isinstance(item.value, ast.Constant)
                  and isinstance(item.value.value, str)):
                docs[(node.name, previous)] = inspect.cleandoc(item.value.value)
                previous = None
    return docs


def _doc(cls: type, field: str = "") -> str:
    return _docs(cls.__module__).get((cls.__name__, field), "")


class _Builder:
    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}
        self._owners: dict[str, type] = {}

    # ---- schemas

    def _register(self, cls: type) -> str | None:
        """The component name; None when the schema is already (being) built."""
        name = cls.__name__
        owner = self._owners.setdefault(name, cls)
        if owner is not cls:
            raise ValueError(f"two schemas named {name}: {owner} and {cls}")
        if name in self.schemas:
            return None
        self.schemas[name] = {}  # placeholder: recursion stops here
        return name

    def message_ref(self, cls: type[betterproto2.Message]) -> dict[str, Any]:
        name = self._register(cls)
        if name is not None:
            self.schemas[name] = self._message(cls)
        return {"$ref": SCHEMAS + cls.__name__}

    def enum_ref(self, cls: type[betterproto2.Enum]) -> dict[str, Any]:
        name = self._register(cls)
        if name is not None:
            schema: dict[str, Any] = {"type": "string",
                                      "enum": [m.proto_name or m.name for m in cls]}
            if doc := _doc(cls):
                schema["description"] = doc
            self.schemas[name] = schema
        return {"$ref": SCHEMAS + cls.__name__}

    def _message(self, cls: type[betterproto2.Message]) -> dict[str, Any]:
        properties = {}
        for name, meta in fields_of(cls).items():
            schema = self.field(cls, name, meta)
            if doc := _doc(cls, name):
                note = schema.get("description")
                schema = {**schema, "description": f"{doc}\n\n{note}" if note else doc}
            properties[json_name(name)] = schema
        schema: dict[str, Any] = {"type": "object", "properties": properties,
                                  "additionalProperties": False}
        description = _doc(cls)
        groups = cls._betterproto.oneof_field_by_group
        if groups:
            oneofs = {g: sorted(json_name(f.name) for f in fs) for g, fs in groups.items()}
            schema["x-oneof"] = oneofs
            notes = "; ".join(f"at most one of {', '.join(v)} (oneof `{g}`)"
                              for g, v in oneofs.items())
            description = f"{description}\n\n{notes}.".strip()
        if description:
            schema["description"] = description
        return schema

    def field(self, cls: type, name: str, meta: betterproto2.FieldMetadata) -> dict[str, Any]:
        if meta.proto_type == betterproto2.TYPE_MAP:
            assert meta.map_meta is not None
            value = self.single(meta.map_meta[1], field_class(cls, f"{name}.value"))
            return {"type": "object", "additionalProperties": value}
        item = self.single(meta, field_class(cls, name))
        if meta.repeated:
            return {"type": "array", "items": item}
        if meta.optional or (meta.proto_type == betterproto2.TYPE_MESSAGE and meta.group):
            return _nullable(item)  # proto3 `optional` scalars too: null when absent
        return item

    def single(self, meta: betterproto2.FieldMetadata, item_cls: type) -> dict[str, Any]:
        t = meta.proto_type
        if t == betterproto2.TYPE_MESSAGE:
            if is_timestamp(meta):
                return {"type": "string", "format": "date-time"}
            return self.message_ref(item_cls)
        if t == betterproto2.TYPE_ENUM:
            return self.enum_ref(item_cls)
        return scalar_schema(t)

    # ---- operations

    def operation(self, route: Route) -> dict[str, Any]:
        the_rpc = rpc(route.service, route.rpc)
        op: dict[str, Any] = {
            "operationId": the_rpc.operation_id,
            "summary": route.summary,
            "tags": [_tag(the_rpc)],
            "parameters": self.parameters(route, the_rpc),
            "responses": self.responses(route, the_rpc),
        }
        if doc := _doc(the_rpc.request):
            op["description"] = doc
        if body := self.request_body(route, the_rpc):
            op["requestBody"] = body
        if (route.method, route.path) == ("GET", "/v1/health"):
            op["security"] = []
        return op

    def parameters(self, route: Route, the_rpc: Rpc) -> list[dict[str, Any]]:
        params = []
        path_params = _path_params(route.path)
        for name in path_params:
            p = {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            if name in _PARAM_DOCS:
                p["description"] = _PARAM_DOCS[name]
            if name == "path":
                p["x-aether-rest-of-path"] = True
            params.append(p)
        params += self.query_params(route, the_rpc, skip=set(path_params))
        params += _header_params(route)
        return params

    def query_params(self, route: Route, the_rpc: Rpc, skip: set[str]) -> list[dict[str, Any]]:
        key = (route.service, route.rpc)
        if key == ("sessions", "create_session"):
            return _archive_upload_query()
        if route.body == "json":
            return []  # accepted, but the body is the way to set these
        skip = skip | {route.raw_field, "if_match"}
        cls = the_rpc.request
        aliases = {name: singular(name) for name in (*route.repeated_query, *route.map_query)}
        params = []
        for name, meta in fields_of(cls).items():
            if name in skip:
                continue
            if meta.proto_type == betterproto2.TYPE_MESSAGE and not is_timestamp(meta):
                continue
            param = self.query_param(cls, name, meta, aliases.get(name, proto_name(name)))
            if param is not None:
                params.append(param)
        if key == ("files", "write_file"):
            params = [p for p in params if p["name"] not in ("create_parents", "at_offset",
                                                             "offset", "chunks")]
            params.append({"name": "parents", "in": "query", "schema": {"type": "boolean",
                           "default": True}, "description": "Create missing parent directories."})
        if key == ("files", "patch_file"):
            params.append({"name": "offset", "in": "query",
                           "schema": scalar_query_schema(betterproto2.TYPE_UINT64),
                           "description": "Write the (application/octet-stream) body at this "
                                          "offset instead of applying a diff."})
        if key == ("persistence", "export"):
            for p in params:
                if p["name"] == "format":
                    p["description"] = "Archive format (default tar)."
        return params

    def query_param(self, cls: type, name: str, meta: betterproto2.FieldMetadata,
                    query_name: str) -> dict[str, Any] | None:
        doc = _doc(cls, name)
        if meta.proto_type == betterproto2.TYPE_MAP:
            schema = {"type": "array", "items": {"type": "string", "pattern": "^[^=]+=.*$"}}
            doc = f"{doc} Repeat as {query_name}=key=value.".strip()
            return {"name": query_name, "in": "query", "style": "form", "explode": True,
                    "schema": schema, "description": doc}
        if meta.proto_type == betterproto2.TYPE_ENUM:
            item = {"type": "string", "enum": enum_spellings(field_class(cls, name))}
        elif is_timestamp(meta):
            item = {"type": "string", "format": "date-time"}
        else:
            item = scalar_query_schema(meta.proto_type, octal=name in OCTAL_FIELDS)
        param: dict[str, Any] = {"name": query_name, "in": "query"}
        if meta.repeated:
            param.update(style="form", explode=True, schema={"type": "array", "items": item})
        else:
            param["schema"] = item
        if doc:
            param["description"] = doc
        return param

    def request_body(self, route: Route, the_rpc: Rpc) -> dict[str, Any] | None:
        key = (route.service, route.rpc)
        if route.body == "json":
            content = {"application/json": {"schema": self.message_ref(the_rpc.request)}}
            if key == ("sessions", "create_session"):
                for media in (*_ARCHIVE_TYPES, "application/octet-stream"):
                    content[media] = {"schema": _BINARY}
            return {"required": False, "content": content}
        if route.body != "raw":
            return None
        if key == ("files", "patch_file"):
            content = {"text/x-diff": {"schema": {"type": "string"}},
                       "application/octet-stream": {"schema": _BINARY}}
        elif key == ("persistence", "import_"):
            content = {m: {"schema": _BINARY} for m in (*_ARCHIVE_TYPES,
                                                        "application/octet-stream")}
        else:
            content = {"application/octet-stream": {"schema": _BINARY}}
        return {"required": True, "content": content}

    def responses(self, route: Route, the_rpc: Rpc) -> dict[str, Any]:
        error = {"$ref": "#/components/responses/Error"}
        status = str(route.success_status)
        reply = {"schema": self.message_ref(the_rpc.reply)}
        if route.kind == "raw_file":
            validators = {
                "ETag": _header("The content hash, quoted: a strong validator."),
                "X-Aether-Size": _header("Size of the whole file.", "integer"),
                "Accept-Ranges": _header("Always `bytes`."),
            }
            ranged = {**validators, "Content-Range": _header("bytes first-last/size")}
            return {
                "200": {"description": "The file.", "headers": validators,
                        "content": {"application/octet-stream": {"schema": _BINARY}}},
                "206": {"description": "The requested range.", "headers": ranged,
                        "content": {"application/octet-stream": {"schema": _BINARY}}},
                "304": {"description": "Not modified (If-None-Match).", "headers": validators},
                "416": {"description": "Range not satisfiable (code range_not_satisfiable).",
                        "content": {"application/json": {
                            "schema": self.message_ref(pb.ErrorResponse)}}},
                "default": error,
            }
        if route.kind == "stream_bytes":
            return {status: {
                "description": "The archive, streamed.",
                "headers": {"Content-Disposition": _header("attachment; filename=...")},
                "content": {m: {"schema": _BINARY} for m in _ARCHIVE_TYPES},
            }, "default": error}
        content: dict[str, Any] = {"application/json": reply}
        description = f"A {the_rpc.reply.__name__}."
        follow = FOLLOWS.get((route.service, route.rpc))
        if follow is not None or route.kind == "sse":
            item = rpc(route.service, follow).reply if follow else the_rpc.reply
            content["text/event-stream"] = {"schema": self.event_schema(item)}
            description += (" With `Accept: text/event-stream`, a live stream of server-sent "
                            "events instead: `id` is the cursor, `event` the topic or type, "
                            "`data` one item as JSON; resume with Last-Event-ID.")
        headers = {}
        if (route.service, route.rpc) in (("files", "write_file"), ("files", "patch_file"),
                                          ("files", "delete_file")):
            headers["ETag"] = _header("The new content hash, quoted.")
        ok: dict[str, Any] = {"description": description, "content": content}
        if headers:
            ok["headers"] = headers
        return {status: ok, "default": error}

    def event_schema(self, item: type[betterproto2.Message]) -> dict[str, Any]:
        """One server-sent event, by field, as streams.format_event writes it.

        In OpenAPI 3.1 the `schema` of text/event-stream describes each event
        (3.2 names this `itemSchema`); a plain string would say the stream is
        one opaque text, which tools that check streams event by event refute.
        """
        return {
            "type": "object",
            "description": "One server-sent event. A stream that fails after it started "
                           "ends with one event `error` whose data is an ErrorResponse.",
            "properties": {
                "id": {"type": "string", "pattern": "^[0-9]+$",
                       "description": "The item's cursor: send it as Last-Event-ID to resume."},
                "event": {"type": "string",
                          "description": "The bus topic or the event type; `error` at the end "
                                         "of a failed stream."},
                "data": {"type": "string", "contentMediaType": "application/json",
                         "contentSchema": {"anyOf": [self.message_ref(item),
                                                     self.message_ref(pb.ErrorResponse)]},
                         "description": f"One {item.__name__} as JSON, or the ErrorResponse."},
            },
            "required": ["event", "data"],
            "additionalProperties": False,
        }


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    return {**schema, "type": [schema["type"], "null"]}


def scalar_schema(proto_type: str) -> dict[str, Any]:
    """A scalar field in proto3 JSON as betterproto2 writes it."""
    if proto_type == betterproto2.TYPE_STRING:
        return {"type": "string"}
    if proto_type == betterproto2.TYPE_BOOL:
        return {"type": "boolean"}
    if proto_type in INT_RANGES:
        lo, hi = INT_RANGES[proto_type]
        fmt = ("u" if lo == 0 else "") + ("int64" if hi > 2**32 else "int32")
        if hi > 2**32:
            return {"type": "string", "format": fmt,
                    "pattern": "^[0-9]+$" if lo == 0 else "^-?[0-9]+$",
                    "description": "64-bit integer as a decimal string (JSON numbers are "
                                   "accepted in requests)."}
        return {"type": "integer", "format": fmt, "minimum": lo, "maximum": hi}
    if proto_type in FLOAT_TYPES:
        return {"anyOf": [{"type": "number"},
                          {"type": "string", "enum": ["NaN", "Infinity", "-Infinity"]}]}
    if proto_type == betterproto2.TYPE_BYTES:
        return {"type": "string", "contentEncoding": "base64"}
    raise ValueError(f"no schema for proto type {proto_type}")


def scalar_query_schema(proto_type: str, *, octal: bool = False) -> dict[str, Any]:
    """A scalar given as query text: integers are plain digits there."""
    if octal:
        return {"type": "string", "pattern": "^(0o)?[0-7]+$",
                "description": "Permission bits in octal, e.g. 0644."}
    if proto_type in INT_RANGES:
        lo, hi = INT_RANGES[proto_type]
        return {"type": "integer", "minimum": lo, "maximum": hi}
    if proto_type in FLOAT_TYPES:
        return {"type": "number"}
    return scalar_schema(proto_type)


def _path_params(template: str) -> list[str]:
    return re.findall(r"\{([a-z_]+)\}", template)


def _header(description: str, type_: str = "string") -> dict[str, Any]:
    return {"description": description, "schema": {"type": type_}}


def _header_params(route: Route) -> list[dict[str, Any]]:
    key = (route.service, route.rpc)

    def h(name: str, description: str) -> dict[str, Any]:
        return {"name": name, "in": "header", "schema": {"type": "string"},
                "description": description}

    if key == ("files", "read_file"):
        return [h("Range", "One range: bytes=first-last, bytes=first- or bytes=-suffix."),
                h("If-None-Match", "ETags the client has; a match answers 304."),
                h("If-Range", "Serve the Range only if the ETag still matches.")]
    if key == ("files", "write_file"):
        return [h("If-Match", "Write only if the current ETag matches; * = must exist."),
                h("If-None-Match", "`*`: write only if the file does not exist.")]
    if key in (("files", "delete_file"), ("files", "patch_file")):
        return [h("If-Match", "Only if the current ETag matches.")]
    if key in FOLLOWS:
        # The header sets the request's `after` field (streams.follow): same type.
        after = fields_of(rpc(*key).request)["after"]
        return [{**h("Last-Event-ID", "With text/event-stream: resume after this cursor."),
                 "schema": scalar_query_schema(after.proto_type)}]
    return []


def _archive_upload_query() -> list[dict[str, Any]]:
    def q(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
        return {"name": name, "in": "query", "schema": schema, "description": description,
                "style": "form", "explode": True}

    strings = {"type": "array", "items": {"type": "string"}}
    return [
        q("name", {"type": "string"}, "With an archive upload: the session's name."),
        q("label", strings, "With an archive upload: a label, as key=value (repeatable)."),
        q("tag", strings, "With an archive upload: a tag (repeatable)."),
    ]
