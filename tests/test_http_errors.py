"""The HTTP shim against a real daemon: the error shape, auth, strict raw path
decoding, and ETag / Range / If-None-Match / If-Match on files."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from conftest import DaemonProc


def raw_request(daemon: DaemonProc, method: str, target: str, *, token: str | None = "",
                headers: dict[str, str] | None = None,
                body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """One request with the target sent byte for byte: httpx (like every client
    library) would normalise "..", percent-escapes or both before sending."""
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close",
             f"Content-Length: {len(body)}"]
    token = daemon.token if token == "" else token
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    with socket.create_connection(("127.0.0.1", daemon.http_port), timeout=30) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    hdrs = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return int(status_line.split()[1]), hdrs, payload


def error_of(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert list(body) == ["error"]
    error = body["error"]
    assert set(error) == {"code", "message", "status", "details"}
    assert (error["code"], error["status"]) == (code, status)
    assert error["message"]
    return error


@pytest.fixture(scope="module")
def session(daemon: DaemonProc) -> str:
    with daemon.http() as http:
        resp = http.post("/v1/sessions", json={"name": "http-errors"})
        assert resp.status_code == 201, resp.text
        return resp.json()["id"]


@pytest.fixture(scope="module")
def file_url(daemon: DaemonProc, session: str) -> tuple[str, str]:
    """A 10-byte file and its content hash."""
    with daemon.http() as http:
        resp = http.put(f"/v1/sessions/{session}/files/dir/ten.txt", content=b"0123456789")
        assert resp.status_code == 200, resp.text
        return f"/v1/sessions/{session}/files/dir/ten.txt", resp.json()["hash"]


# ---- the error shape


def test_unknown_session_is_not_found(http: httpx.Client) -> None:
    resp = http.get("/v1/sessions/ses_doesnotexist")
    error_of(resp, 404, "not_found")
    assert resp.headers["x-request-id"]


def test_unknown_route_and_wrong_method(http: httpx.Client, session: str) -> None:
    error_of(http.get("/v1/no/such/route"), 404, "not_found")
    resp = http.post(f"/v1/sessions/{session}")
    error_of(resp, 405, "invalid_argument")
    assert set(resp.headers["allow"].replace(" ", "").split(",")) >= {"GET", "PATCH", "DELETE"}
    error_of(http.put(f"/v1/sessions/{session}/cache/keys", json={}), 405, "invalid_argument")


@pytest.mark.parametrize("body", [b"{", b"[]", b'{"noSuchField": 1}', b'{"name": 7}'])
def test_bad_json_body_is_invalid_argument(http: httpx.Client, body: bytes) -> None:
    resp = http.post("/v1/sessions", content=body, headers={"Content-Type": "application/json"})
    error_of(resp, 400, "invalid_argument")


@pytest.mark.parametrize("query", ["page_size=x", "state=bogus", "nope=1", "label=novalue"])
def test_bad_query_is_invalid_argument(http: httpx.Client, query: str) -> None:
    error_of(http.get(f"/v1/sessions?{query}"), 400, "invalid_argument")


def test_openapi_document_is_served(http: httpx.Client) -> None:
    resp = http.get("/v1/openapi.json")
    assert resp.status_code == 200
    doc = resp.json()
    assert doc["openapi"] == "3.1.0"
    assert "/v1/sessions/{session_id}/files/{path}" in doc["paths"]


# ---- auth


def test_health_needs_no_token(daemon: DaemonProc) -> None:
    assert httpx.get(f"{daemon.http_url}/v1/health").status_code == 200


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", "Basic abc", "Bearer"])
def test_everything_else_needs_the_token(daemon: DaemonProc, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    for path in ("/v1/sessions", "/v1/openapi.json", "/v1/no/such/route"):
        resp = httpx.get(f"{daemon.http_url}{path}", headers=headers)
        error_of(resp, 401, "unauthenticated")
        assert resp.headers["www-authenticate"] == "Bearer"


def test_token_never_reaches_the_log(daemon: DaemonProc, http: httpx.Client) -> None:
    http.get("/v1/sessions")
    httpx.get(f"{daemon.http_url}/v1/sessions", headers={"Authorization": "Bearer leak-me"})
    log = daemon.log_path.read_text(errors="replace")
    assert daemon.token not in log
    assert "leak-me" not in log


# ---- raw path decoding


@pytest.mark.parametrize("raw", ["bad%FFname", "a/%C3", "nul%00byte", "broken%G1"])
def test_undecodable_paths_are_invalid_argument(daemon: DaemonProc, session: str,
                                                raw: str) -> None:
    status, headers, body = raw_request(daemon, "GET", f"/v1/sessions/{session}/stat/{raw}")
    assert status == 400, body
    assert headers["content-type"].startswith("application/json")
    assert httpx.Response(status, content=body).json()["error"]["code"] == "invalid_argument"


@pytest.mark.parametrize(("raw", "arrived"), [
    ("dir/../ten.txt", "dir/../ten.txt"),
    ("../../etc/passwd", "../../etc/passwd"),
    ("%2E%2E/x", "../x"),
    ("dir/./ten.txt", "dir/./ten.txt"),
])
def test_dot_segments_reach_the_service_unchanged(daemon: DaemonProc, file_url, session: str,
                                                  raw: str, arrived: str) -> None:
    for method in ("GET", "PUT"):
        status, _, body = raw_request(daemon, method, f"/v1/sessions/{session}/files/{raw}",
                                      body=b"x" if method == "PUT" else b"")
        assert status == 400, body
        error = httpx.Response(status, content=body).json()["error"]
        assert error["code"] == "invalid_argument"
        assert error["details"].get("path") == arrived  # refused by the service, as sent


def test_percent_encoded_names_round_trip(http: httpx.Client, session: str) -> None:
    url = f"/v1/sessions/{session}/files/sp%20ace/caf%C3%A9%3F%23.txt"
    assert http.put(url, content=b"x").status_code == 200
    resp = http.get(f"/v1/sessions/{session}/tree?path=sp+ace")
    assert [e["path"] for e in resp.json()["entries"]] == ["sp ace/café?#.txt"]
    assert http.get(url).content == b"x"


# ---- ETag, Range, If-None-Match, If-Match


def test_etag_is_the_content_hash(http: httpx.Client, file_url) -> None:
    url, content_hash = file_url
    resp = http.get(url)
    assert resp.status_code == 200
    assert resp.content == b"0123456789"
    assert resp.headers["etag"] == f'"{content_hash}"'
    assert resp.headers["accept-ranges"] == "bytes"
    assert resp.headers["x-aether-size"] == "10"
    assert resp.headers["content-length"] == "10"


@pytest.mark.parametrize(("range_header", "body", "content_range"), [
    ("bytes=0-3", b"0123", "bytes 0-3/10"),
    ("bytes=6-", b"6789", "bytes 6-9/10"),
    ("bytes=-2", b"89", "bytes 8-9/10"),
    ("bytes=5-500", b"56789", "bytes 5-9/10"),
])
def test_range(http: httpx.Client, file_url, range_header: str, body: bytes,
               content_range: str) -> None:
    url, content_hash = file_url
    resp = http.get(url, headers={"Range": range_header})
    assert resp.status_code == 206
    assert resp.content == body
    assert resp.headers["content-range"] == content_range
    assert resp.headers["etag"] == f'"{content_hash}"'


@pytest.mark.parametrize("range_header", ["bytes=10-", "bytes=99-100", "bytes=4-1"])
def test_unsatisfiable_range(http: httpx.Client, file_url, range_header: str) -> None:
    url, _ = file_url
    resp = http.get(url, headers={"Range": range_header})
    error_of(resp, 416, "range_not_satisfiable")


def test_if_none_match(http: httpx.Client, file_url) -> None:
    url, content_hash = file_url
    resp = http.get(url, headers={"If-None-Match": f'"{content_hash}"'})
    assert resp.status_code == 304
    assert resp.content == b""
    assert resp.headers["etag"] == f'"{content_hash}"'
    assert http.get(url, headers={"If-None-Match": '"something-else"'}).status_code == 200


def test_head(http: httpx.Client, file_url) -> None:
    url, content_hash = file_url
    resp = http.head(url)
    assert resp.status_code == 200
    assert resp.headers["content-length"] == "10"
    assert resp.headers["etag"] == f'"{content_hash}"'


def test_if_match_guards_writes(http: httpx.Client, session: str) -> None:
    url = f"/v1/sessions/{session}/files/guarded.txt"
    first = http.put(url, content=b"v1", headers={"If-None-Match": "*"})
    assert first.status_code == 200, first.text
    etag = first.headers["etag"]
    assert etag == f'"{first.json()["hash"]}"'
    error_of(http.put(url, content=b"again", headers={"If-None-Match": "*"}), 409, "conflict")
    error_of(http.put(url, content=b"v2", headers={"If-Match": '"stale"'}), 409, "conflict")
    second = http.put(url, content=b"v2", headers={"If-Match": etag})
    assert second.status_code == 200
    error_of(http.delete(url, headers={"If-Match": etag}), 409, "conflict")
    assert http.delete(url, headers={"If-Match": second.headers["etag"]}).status_code == 200
    error_of(http.get(url), 404, "not_found")


def test_token_ttl_past_the_limit_is_invalid_argument(http: httpx.Client) -> None:
    """A ttl whose expiry in nanoseconds overflows SQLite's 64-bit integers was
    a 500 (found probing the 64-bit bounds the OpenAPI document allows)."""
    for ttl in (str(2**64 - 1), str(10 * 365 * 24 * 3600 + 1)):
        error = error_of(http.post("/v1/tokens", json={"principal": "ttl", "ttlSeconds": ttl}),
                         400, "invalid_argument")
        assert error["details"] == {"parameter": "ttl_seconds"}
    longest = http.post("/v1/tokens", json={"principal": "ttl", "ttlSeconds": 10 * 365 * 86400})
    assert longest.status_code == 201, longest.text
    assert longest.json()["token"]["expireTime"]


def test_mkdir_refuses_a_mode_beyond_permission_bits(http: httpx.Client, session: str) -> None:
    """Any 32-bit mode was stored, and a zip export of the session was then cut
    off mid-stream (found by tests/test_schemathesis.py)."""
    url = f"/v1/sessions/{session}/fs:mkdir"
    error_of(http.post(url, json={"path": "d", "mode": 4294967295}), 400, "invalid_argument")
    assert http.post(url, json={"path": "d", "mode": 0o750}).status_code == 200
