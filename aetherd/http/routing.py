"""Matching raw request paths against the route table.

We match the raw (still percent-encoded) path, so an encoded "/" or ":" can
never change which route is taken, then decode each parameter strictly.
Templates are tried most specific first: fewer parameters win, so
`.../cache/keys` is the key listing and never the key "keys"; the rest-of-path
`{path}` comes last. The path decides the route; a method the route does not
have is a 405, never a fall-through to a less specific route.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aether.errors import InvalidArgument, NotFound
from aetherd.http.errors import MethodNotAllowed
from aetherd.http.routes import Route
from aetherd.http.urls import decode

_PARAM = re.compile(r"\{([a-z_]+)\}")

# How much of the raw path each parameter may take. Identifiers stop at "/"
# and at ":" (so "{session_id}:fork" splits); a cache key only at "/"; `path`
# is the rest of the URL, slashes included.
_PARAM_PATTERNS = {"path": r".*", "key": r"[^/]+"}
_ID_PATTERN = r"[^/:]+"


@dataclass(frozen=True)
class Match:
    route: Route
    params: dict[str, str]


@dataclass(frozen=True)
class _Template:
    text: str
    regex: re.Pattern[str]
    params: tuple[str, ...]
    routes: dict[str, Route]  # method -> route

    @property
    def rank(self) -> tuple[int, int, int]:
        literal = len(_PARAM.sub("", self.text))
        return ("path" in self.params, len(self.params), -literal)


def compile_template(template: str) -> tuple[re.Pattern[str], tuple[str, ...]]:
    pattern, params, pos = "", [], 0
    for m in _PARAM.finditer(template):
        name = m.group(1)
        pattern += re.escape(template[pos:m.start()])
        pattern += f"(?P<{name}>{_PARAM_PATTERNS.get(name, _ID_PATTERN)})"
        params.append(name)
        pos = m.end()
    pattern += re.escape(template[pos:])
    return re.compile(pattern, re.DOTALL), tuple(params)


class Router:
    def __init__(self, routes: tuple[Route, ...]) -> None:
        by_text: dict[str, dict[str, Route]] = {}
        for route in routes:
            methods = by_text.setdefault(route.path, {})
            if route.method in methods:
                raise ValueError(f"duplicate route {route.method} {route.path}")
            methods[route.method] = route
        templates = []
        for text, methods in by_text.items():
            regex, params = compile_template(text)
            templates.append(_Template(text, regex, params, methods))
        self._templates = sorted(templates, key=lambda t: t.rank)

    def resolve(self, method: str, raw_path: str) -> Match:
        for template in self._templates:
            m = template.regex.fullmatch(raw_path)
            if m is None:
                continue
            route = template.routes.get(method)
            if route is None and method == "HEAD":
                route = template.routes.get("GET")
            if route is None:
                allowed = sorted(template.routes)
                if "GET" in allowed:
                    allowed.append("HEAD")
                raise MethodNotAllowed(method, allowed)
            return Match(route, {k: _decode_param(k, v) for k, v in m.groupdict().items()})
        raise NotFound(f"no such route: {raw_path}")


def _decode_param(name: str, raw: str) -> str:
    value = decode(raw, name)
    if name not in _PARAM_PATTERNS and ("/" in value or ":" in value):
        raise InvalidArgument(f"{name} must not contain '/' or ':'", parameter=name)
    return value
