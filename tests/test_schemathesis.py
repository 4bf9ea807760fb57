"""Schemathesis against a live daemon: every operation of `GET /v1/openapi.json`,
fuzzed with valid and invalid input, must never answer 5xx, and every answer
must be documented (status code, content type, headers) and match its schema.

The document is loaded from the daemon itself, so what is checked is what
clients download. Requests carry the daemon's admin token: an unauthenticated
run would only ever see 401s.

Coverage of real objects: a seeded session (files, a symlink, a checkpoint, a
commit, cache keys, bus messages, a comment, an annotation, an approval), a
template and a token. Path parameters are replaced by those ids in two cases
out of three, and state-naming query parameters (`at`, `from`, `to`, `since`) by
real states, so handlers run past their 404s. Operations that change what
they touch run against a fresh fork of the seeded session (and freshly minted
checkpoints, annotations, approvals, templates, tokens), so a `DELETE` or an
`:archive` early in the run cannot turn the rest of it into 404s and 412s.

Streaming routes, decided per route:
- `GET .../bus` and `GET .../events` are also fuzzed with `Accept:
  text/event-stream` (the live follow). Schemathesis reads a stream until
  `max-stream-events` events or the request timeout, and checks each event
  against the documented event schema; the seeded session has enough bus
  messages and events that a matching follow ends at once, a quiet one costs
  the (short) timeout of those two operations.
- `GET .../export` streams an archive (chunked): included; it ends by itself,
  and its content type must be one of the documented archive types.
- `GET .../files/{path}` answers raw bytes (200/206/304/416): included as is;
  the checks judge its status, content type and headers.
Nothing is excluded.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

if TYPE_CHECKING:
    from conftest import DaemonProc

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance]

# Bounded so the whole module stays around a minute on the 2-core CI machine
# (~70 operations); `database: none` keeps runs independent of earlier ones,
# and a fixed seed makes a failure reproduce on the next run.
MAX_EXAMPLES = int(os.environ.get("AETHER_FUZZ_EXAMPLES", "10"))
FOLLOW_OPERATIONS = ("BusService.Read", "EventService.ListEvents")
# Query parameters naming a state of a session (a checkpoint, a commit, `base`).
STATE_PARAMS = ("at", "from", "to", "since")
SEED = int(os.environ.get("AETHER_FUZZ_SEED", "20260117"))


@dataclass
class World:
    """The seeded objects, and fresh copies for operations that change them."""

    http: httpx.Client
    session_id: str = ""
    ids: dict[str, str] = field(default_factory=dict)
    paths: tuple[str, ...] = ("a.txt", "dir/b.txt", "dir", "link")
    counter: Iterator[int] = field(default_factory=itertools.count)

    def post(self, url: str, **kw: Any) -> dict[str, Any]:
        resp = self.http.post(url, **kw)
        assert resp.status_code in (200, 201), resp.text
        return resp.json()

    def seed(self) -> None:
        sid = self.session_id = self.post("/v1/sessions", json={"name": "fuzzed"})["id"]
        s = f"/v1/sessions/{sid}"
        for path, data in (("a.txt", b"one\ntwo\nthree\n"), ("dir/b.txt", b"bee\n")):
            assert self.http.put(f"{s}/files/{path}", content=data).status_code == 200
        self.post(f"{s}/fs:symlink", json={"path": "link", "target": "a.txt"})
        self.ids["checkpoint_id"] = self.post(f"{s}/checkpoints", json={"message": "c"})["id"]
        self.ids["commit_id"] = self.post(f"{s}/commits", json={"message": "m"})["id"]
        for key in ("k", "k2"):
            self.http.put(f"{s}/cache/{key}", json={"value": "dmFsdWU="}).raise_for_status()
        for n in range(4):  # more than max-stream-events, so a follow ends at once
            self.post(f"{s}/bus:publish", json={"topic": "t", "payload": "eA==", "sender": str(n)})
        self.post(f"{s}/comments", json={"body": "looks good", "path": "a.txt"})
        self.ids["annotation_id"] = self.annotation(sid)
        self.ids["approval_id"] = self.approval(sid)
        self.ids["name"] = self.template()
        self.ids["token_id"] = self.token()
        self.ids["key"] = "k"

    def annotation(self, sid: str) -> str:
        return self.post(f"/v1/sessions/{sid}/annotations", json={
            "path": "a.txt", "startLine": 1, "endLine": 2, "body": "why?"})["id"]

    def approval(self, sid: str) -> str:
        return self.post(f"/v1/sessions/{sid}/approvals", json={"title": "ship it"})["id"]

    def template(self) -> str:
        name = f"tpl-{next(self.counter)}"
        self.post("/v1/templates", json={"name": name, "sessionId": self.session_id})
        return name

    def token(self) -> str:
        return self.post("/v1/tokens", json={"principal": "fuzz"})["token"]["id"]

    def checkpoint(self, sid: str) -> str:
        return self.post(f"/v1/sessions/{sid}/checkpoints", json={})["id"]

    def fork(self) -> str:
        return self.post(f"/v1/sessions/{self.session_id}:fork", json={})["id"]

    def real_path_parameters(self, names: list[str]) -> st.SearchStrategy[dict[str, str]]:
        real: dict[str, st.SearchStrategy[str]] = {}
        for name in names:
            if name == "session_id":
                real[name] = st.just(self.session_id)
            elif name == "path":
                real[name] = st.sampled_from(self.paths)
            elif name in self.ids:
                real[name] = st.just(self.ids[name])
        return st.fixed_dictionaries(real)

    def states(self) -> st.SearchStrategy[str]:
        return st.sampled_from(["base", self.ids["checkpoint_id"], self.ids["commit_id"]])

    def isolate(self, case: schemathesis.Case) -> None:
        """Point a case that changes what it names at fresh objects."""
        if case.method.upper() in ("GET", "HEAD") or not case.path_parameters:
            return
        params = case.path_parameters
        if params.get("session_id") == self.session_id:
            sid = params["session_id"] = self.fork()
            # Forks share files and cache, not review items or checkpoints.
            minted = {"checkpoint_id": self.checkpoint, "annotation_id": self.annotation,
                      "approval_id": self.approval}
            for name, mint in minted.items():
                if params.get(name) == self.ids[name]:
                    params[name] = mint(sid)
        if params.get("name") == self.ids["name"]:
            params["name"] = self.template()
        if params.get("token_id") == self.ids["token_id"]:
            params["token_id"] = self.token()


@pytest.fixture(scope="module")
def world(daemon: DaemonProc) -> Iterator[World]:
    with daemon.http() as http:
        w = World(http)
        w.seed()
        yield w


@pytest.fixture(scope="module")
def api_schema(daemon: DaemonProc, world: World) -> schemathesis.BaseSchema:
    config = schemathesis.Config.from_dict({
        "seed": SEED,
        "headers": daemon.headers,
        "request-timeout": 20,
        "generation": {"max-examples": MAX_EXAMPLES, "database": "none"},
        # A follow with nothing to send stays open: it ends at the timeout, which
        # must still leave a loaded machine time for the headers (sent after 0.25 s).
        "operations": [{"include-operation-id": list(FOLLOW_OPERATIONS),
                        "request-timeout": 5, "max-stream-events": 3}],
    })
    schema = schemathesis.openapi.from_url(f"{daemon.http_url}/v1/openapi.json", config=config,
                                           headers=daemon.headers)

    @schema.hook
    def flatmap_path_parameters(context: schemathesis.HookContext,
                                path_parameters: dict[str, Any] | None) -> st.SearchStrategy:
        generated = path_parameters or {}
        if not generated:
            return st.just(path_parameters)
        real = world.real_path_parameters(list(generated)).map(lambda r: {**generated, **r})
        return mostly(real, generated)

    @schema.hook
    def flatmap_query(context: schemathesis.HookContext,
                      query: dict[str, Any] | None) -> st.SearchStrategy:
        named = [k for k in STATE_PARAMS if isinstance((query or {}).get(k), str)]
        if not named:
            return st.just(query)
        real = st.fixed_dictionaries({k: world.states() for k in named})
        return mostly(real.map(lambda r: {**query, **r}), query)

    @schema.hook
    def flatmap_headers(context: schemathesis.HookContext,
                        headers: dict[str, Any] | None) -> st.SearchStrategy:
        operation = context.operation
        if operation is None or operation.definition.raw.get("operationId") not in \
                FOLLOW_OPERATIONS:
            return st.just(headers)
        live = {**(headers or {}), "Accept": "text/event-stream"}
        return st.sampled_from([headers, live])

    return schema


def mostly(real: st.SearchStrategy, generated: Any) -> st.SearchStrategy:
    """Two cases in three use real objects: with ~10 examples an even split
    leaves too few that get past the lookup."""
    return st.sampled_from((True, True, False)).flatmap(
        lambda use_real: real if use_real else st.just(generated))


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(deadline=15_000, suppress_health_check=[HealthCheck.too_slow,
                                                   HealthCheck.filter_too_much])
def test_every_operation_conforms_and_never_fails(case: schemathesis.Case, world: World,
                                                   daemon: DaemonProc) -> None:
    world.isolate(case)
    case.call_and_validate(headers=daemon.headers, checks=CHECKS)


def test_the_daemon_logged_no_errors(daemon: DaemonProc) -> None:
    """A failure after the status line went out (an export cut off, a follow
    ending in an error event) is no 5xx: the log is where it shows."""
    log = daemon.log_path.read_text()
    assert " ERROR " not in log and "Traceback" not in log, log[-5000:]
