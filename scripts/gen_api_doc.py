"""Regenerate the generated sections of docs/api.md from the code.

    python scripts/gen_api_doc.py          rewrite the marked sections in place
    python scripts/gen_api_doc.py --check  exit 1 if docs/api.md is out of date

Sections are delimited by `<!-- BEGIN GENERATED: name -->` and
`<!-- END GENERATED: name -->`; everything between the two markers is replaced.

- `routes`: the HTTP route table, from `aetherd.http.routes.ROUTES` (plus the
  gRPC-only RPCs in `GRPC_ONLY`), one table per gRPC service. Whether an RPC is
  implemented is read from the daemon's own wiring (`aetherd.app.open_daemon`):
  an RPC its service object does not override answers `unimplemented`.
- `errors`: the error codes, from `aether.errors.CODES`.

tests/test_docs.py fails when the committed docs differ from a fresh render.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "api.md"
sys.path.insert(0, str(ROOT))

_SECTION = re.compile(
    r"(<!-- BEGIN GENERATED: (?P<name>[a-z_]+) -->\n)(?P<body>.*?)(<!-- END GENERATED: (?P=name) -->)",
    re.DOTALL,
)

# Order and headings of the per-service tables (Api attribute -> heading).
SERVICES = {
    "sessions": "SessionService",
    "files": "FileService",
    "persistence": "PersistenceService",
    "templates": "TemplateService",
    "cache": "CacheService",
    "bus": "BusService",
    "events": "EventService",
    "review": "ReviewService",
    "observability": "ObservabilityService",
    "identity": "IdentityService",
}


def _implemented() -> set[tuple[str, str]]:
    """(service, rpc) pairs the daemon really serves (the rest answer unimplemented)."""
    from aetherd.app import open_daemon
    from aetherd.config import Config
    from aetherd.http.rpcs import all_rpcs, service_classes

    bases = service_classes()
    with tempfile.TemporaryDirectory(prefix="aether-doc-") as tmp:
        daemon = open_daemon(Config(data_dir=Path(tmp)))
        try:
            done = set()
            for service, name in all_rpcs():
                impl = type(getattr(daemon.api, service))
                if getattr(impl, name) is not getattr(bases[service], name):
                    done.add((service, name))
            return done
        finally:
            daemon.close()


# Fields of a request message a route refuses: a write by chunks is a write op
# of fs:apply (or gRPC WriteFile), never the raw PUT.
_NOT_ON_ROUTE = {("files", "write_file"): {"chunks"}}


def _fields(route, request) -> str:
    """Request fields a client sets besides the path parameters (proto names)."""
    from aetherd.http.proto_json import fields_of, proto_name
    from aetherd.http.query import singular

    path_params = set(re.findall(r"\{([a-z_]+)\}", route.path))
    refused = _NOT_ON_ROUTE.get((route.service, route.rpc), set())
    out = []
    for name in fields_of(request):
        if name in path_params or name == route.raw_field or name in refused:
            continue
        shown = f"`{proto_name(name)}`"
        if name in route.map_query:
            shown += f" (`{singular(name)}=k=v`)"
        elif name in route.repeated_query:
            shown += f" (`{singular(name)}=`…)"
        out.append(shown)
    return ", ".join(out) or "—"


def _body(route, request) -> str:
    if route.body == "json":
        return f"JSON `{request.__name__}`"
    if route.body == "raw":
        return f"raw bytes → `{route.raw_field}`"
    return "—"


def _reply(route, reply) -> str:
    return {
        "message": f"`{reply.__name__}`",
        "raw_file": "file bytes",
        "stream_bytes": "archive bytes (chunked)",
        "sse": "`text/event-stream`",
    }[route.kind]


def render_routes() -> str:
    from aetherd.http.routes import GRPC_ONLY, ROUTES
    from aetherd.http.rpcs import rpc

    done = _implemented()
    unlisted = {r.service for r in ROUTES} - set(SERVICES)
    if unlisted:
        raise SystemExit(f"gen_api_doc.py: give {sorted(unlisted)} a heading in SERVICES")
    lines: list[str] = []
    for service, heading in SERVICES.items():
        routes = [r for r in ROUTES if r.service == service]
        if not routes:
            continue
        ready = [r for r in routes if (r.service, r.rpc) in done]
        lines.append(f"#### {heading}")
        lines.append("")
        if not ready:
            lines.append("Not implemented yet: every route below answers `501 unimplemented` "
                         "(gRPC `UNIMPLEMENTED`).")
            lines.append("")
        elif len(ready) < len(routes):
            lines.append("Rows marked **501** are not implemented yet and answer "
                         "`501 unimplemented` (gRPC `UNIMPLEMENTED`).")
            lines.append("")
        lines.append("| Method | Path | gRPC method | Fields (query or body) | Body | Reply | OK | Summary |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for r in routes:
            info = rpc(r.service, r.rpc)
            status = str(r.success_status)
            if (r.service, r.rpc) not in done and ready:
                status = "**501**"
            summary = r.summary.replace("|", "\\|")
            lines.append(
                f"| {r.method} | `{r.path}` | `{info.operation_id.split('.')[1]}` "
                f"| {_fields(r, info.request)} | {_body(r, info.request)} "
                f"| {_reply(r, info.reply)} | {status} | {summary} |"
            )
        lines.append("")
    lines.append("gRPC only (no HTTP route of their own):")
    lines.append("")
    for (service, name), why in sorted(GRPC_ONLY.items()):
        info = rpc(service, name)
        state = "" if (service, name) in done else " (not implemented yet)"
        lines.append(f"- `{info.grpc_path}`{state}: {why}.")
    lines.append("")
    return "\n".join(lines)


def render_errors() -> str:
    from aether.errors import CODES

    lines = ["| Code | HTTP status | gRPC status |", "|---|---|---|"]
    for code, (http, grpc) in CODES.items():
        lines.append(f"| `{code}` | {http} | `{grpc.name}` ({grpc.value}) |")
    lines.append("")
    return "\n".join(lines)


RENDERERS = {"routes": render_routes, "errors": render_errors}


def render(text: str) -> str:
    """`text` with every generated section replaced by a fresh rendering."""
    seen: set[str] = set()

    def replace(m: re.Match[str]) -> str:
        name = m.group("name")
        if name not in RENDERERS:
            raise SystemExit(f"docs/api.md: unknown generated section {name!r}")
        seen.add(name)
        return m.group(1) + RENDERERS[name]() + m.group(4)

    out = _SECTION.sub(replace, text)
    missing = set(RENDERERS) - seen
    if missing:
        raise SystemExit(f"docs/api.md: missing generated section(s) {sorted(missing)}")
    return out


def main(argv: list[str]) -> int:
    check = "--check" in argv
    current = DOC.read_text()
    fresh = render(current)
    if fresh == current:
        return 0
    if check:
        print("docs/api.md is out of date: run python scripts/gen_api_doc.py", file=sys.stderr)
        return 1
    DOC.write_text(fresh)
    print("rewrote docs/api.md")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
