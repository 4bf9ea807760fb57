"""Limits on every input, against a real daemon: paths and names, bodies,
archive bombs, too many members, hostile links, host directories and git.

Every refusal must carry its stable code and leave the session (or the list
of sessions) exactly as it was. The module's daemon runs with small byte and
count limits so bombs stay cheap to build; path limits keep their defaults,
which are what these tests pin.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import time
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError

from aether import pb
from aetherd.testing import DaemonProcess

if TYPE_CHECKING:
    from conftest import DaemonProc

KIB, MIB = 1 << 10, 1 << 20
LIMITS: dict[str, int | str | bool] = {
    "max_body_bytes": 4 * MIB,
    "max_file_bytes": 3 * MIB,
    "max_import_entries": 1000,
    "max_import_bytes": 2 * MIB,
    "max_archive_ratio": 20,
    "archive_ratio_floor_bytes": 256 * KIB,
}
# Defaults the tests below pin (config.Limits).
MAX_PATH, MAX_NAME, MAX_DEPTH, MAX_HOPS = 4096, 255, 256, 40


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProc]:
    """This module's daemon: small byte and count limits (overrides conftest's)."""
    import tempfile

    d = DaemonProcess(tmp_path_factory.mktemp("aetherd") / "data",
                      import_roots=[tempfile.gettempdir()], config=LIMITS).start()
    yield d
    d.stop()


# ---- helpers
def error_of(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert (r.status_code, r.headers["content-type"].split(";")[0]) == (
        status, "application/json"), r.text
    error = r.json()["error"]
    assert (error["code"], error["status"]) == (code, status), error
    assert error["message"]
    return error


def new_session(http: httpx.Client, **body: Any) -> str:
    r = http.post("/v1/sessions", json=body)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def seeded(http: httpx.Client) -> str:
    """A session with some content, so "unchanged" means something."""
    sid = new_session(http)
    assert http.put(f"/v1/sessions/{sid}/files/keep/me.txt", content=b"keep\n").status_code == 200
    assert http.post(f"/v1/sessions/{sid}/fs:symlink",
                     json={"path": "keep/link", "target": "me.txt"}).status_code == 200
    return sid


def state(http: httpx.Client, sid: str) -> tuple[str, list[tuple[str, str]]]:
    """(root hash, every path with its hash): what must not change."""
    root = http.get(f"/v1/sessions/{sid}").json()["rootHash"]
    entries = http.get(f"/v1/sessions/{sid}/manifest", params={"page_size": 10000}).json()
    return root, [(e["path"], e.get("hash", "")) for e in entries.get("entries", [])]


def names(http: httpx.Client) -> list[str]:
    listed = http.get("/v1/sessions", params={"page_size": 1000}).json()["sessions"]
    return [s.get("name", "") for s in listed]


def upload(http: httpx.Client, data: bytes, content_type: str, name: str) -> httpx.Response:
    return http.post("/v1/sessions", params={"name": name}, content=data,
                     headers={"Content-Type": content_type})


def refused_whole(http: httpx.Client, data: bytes, content_type: str, status: int,
                  code: str) -> dict[str, Any]:
    """Both ways in (a new session, an import) refuse the archive and change nothing."""
    name = f"refused-{time.monotonic_ns()}"
    error = error_of(upload(http, data, content_type, name), status, code)
    assert name not in names(http)
    sid = seeded(http)
    before = state(http, sid)
    imported = http.post(f"/v1/sessions/{sid}/import", params={"path": "keep"}, content=data)
    assert error_of(imported, status, code)["code"] == code
    assert state(http, sid) == before
    return error


def tar_bytes(members: list[tarfile.TarInfo | tuple[tarfile.TarInfo, bytes]], *,
              gz: bool = False, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w", format=fmt) as tar:
        for m in members:
            info, data = m if isinstance(m, tuple) else (m, None)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def file_member(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def link_member(name: str, target: str, *, hard: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname = target
    return info


def dir_member(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    return info


def zeros_gz_member(name: str, size: int, type_: bytes = tarfile.REGTYPE) -> bytes:
    """A tar.gz holding one member of `size` zero bytes, built without
    holding them: the gzip stream is fed block by block."""
    info = tarfile.TarInfo(name)
    info.size, info.type = size, type_
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip framing
    out = [comp.compress(info.tobuf(tarfile.GNU_FORMAT))]
    block = bytes(MIB)
    for _ in range(size // MIB):
        out.append(comp.compress(block))
    out.append(comp.compress(bytes(size % MIB + (-size % 512) + 1024)))
    out.append(comp.flush())
    return b"".join(out)


class RawMessage:
    """Bytes sent as a gRPC message as they are: a client that does not check UTF-8."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def SerializeToString(self) -> bytes:  # noqa: N802 - grpclib's codec calls this
        return self.data


async def grpc_call(daemon: DaemonProc, method: str, request: Any,
                    reply_type: type) -> tuple[Any, tuple[Status, str] | None]:
    """(reply, None) or (None, (status, the aether-error-code trailer))."""
    channel = Channel(daemon.grpc_host, daemon.grpc_port)
    try:
        async with channel.request(method, Cardinality.UNARY_UNARY, type(request), reply_type,
                                   metadata={"authorization": f"Bearer {daemon.token}"}) as st:
            await st.send_message(request, end=True)
            try:
                return await st.recv_message(), None
            except GRPCError as e:
                return None, (e.status, dict(st.trailing_metadata or {}).get("aether-error-code"))
    finally:
        channel.close()


WRITE_FILE = "/aether.v1.FileService/WriteFile"
CREATE_SESSION = "/aether.v1.SessionService/CreateSession"


# ---- paths and names
def long_path(size: int) -> str:
    """A path of exactly `size` bytes made of 200-byte names."""
    parts, left = [], size
    while left > 201:
        parts.append("p" * 200)
        left -= 201
    parts.append("q" * left)
    return "/".join(parts)


ACCEPTED = {
    "name at the limit": "n" * MAX_NAME,
    "multibyte name at the limit": "é" * 127 + "x",  # 255 bytes
    "path at the limit": long_path(MAX_PATH),
    "depth at the limit": "/".join(["d"] * MAX_DEPTH),
}
REFUSED = {
    "name over the limit": ("n" * (MAX_NAME + 1), "max_name_bytes"),
    "multibyte name over the limit": ("é" * 128, "max_name_bytes"),  # 256 bytes
    "path over the limit": (long_path(MAX_PATH + 1), "max_path_bytes"),
    "depth over the limit": ("/".join(["d"] * (MAX_DEPTH + 1)), "max_path_depth"),
}


@pytest.mark.parametrize("path", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_paths_at_the_limits_work_everywhere(http: httpx.Client, path: str) -> None:
    sid = new_session(http)
    r = http.put(f"/v1/sessions/{sid}/files/{path}", content=b"edge")
    assert r.status_code == 200, r.text
    assert http.get(f"/v1/sessions/{sid}/files/{path}").content == b"edge"
    # The deepest tree the limits allow must survive every walk over it.
    assert http.post(f"/v1/sessions/{sid}/checkpoints", json={}).status_code == 201
    manifest = http.get(f"/v1/sessions/{sid}/manifest", params={"page_size": 10000}).json()
    assert manifest["entries"][-1]["path"] == path
    exported = http.get(f"/v1/sessions/{sid}/export", params={"format": "tar"})
    assert exported.status_code == 200
    assert path in tarfile.open(fileobj=io.BytesIO(exported.content)).getnames()
    r = http.post("/v1/sessions", content=exported.content,
                  headers={"Content-Type": "application/x-tar"})
    assert r.status_code == 201, r.text
    assert http.get(f"/v1/sessions/{r.json()['id']}/files/{path}").content == b"edge"


@pytest.mark.parametrize(("path", "setting"), REFUSED.values(), ids=REFUSED.keys())
def test_paths_over_the_limits_are_invalid_argument(http: httpx.Client, path: str,
                                                    setting: str) -> None:
    sid = seeded(http)
    before = state(http, sid)
    error = error_of(http.put(f"/v1/sessions/{sid}/files/{path}", content=b"x"), 400,
                     "invalid_argument")
    assert error["details"]["setting"] == setting
    assert "too long" in error["message"]  # what the mount turns into ENAMETOOLONG
    for op, body in (("fs:mkdir", {"path": path, "parents": True}),
                     ("fs:symlink", {"path": path, "target": "keep"}),
                     ("fs:rename", {"fromPath": "keep/me.txt", "toPath": path}),
                     ("fs:copy", {"fromPath": "keep", "toPath": path})):
        r = http.post(f"/v1/sessions/{sid}/{op}", json=body)
        assert error_of(r, 400, "invalid_argument")["details"]["setting"] == setting, op
    assert state(http, sid) == before


def test_multibyte_path_at_the_limit_over_http(http: httpx.Client) -> None:
    sid = new_session(http)
    path = "/".join(["é" * 100] * 20)  # 4019 bytes, 3 characters each in the URL
    r = http.put(f"/v1/sessions/{sid}/files/{path}", content=b"x")
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(("path", "setting"), REFUSED.values(), ids=REFUSED.keys())
async def test_paths_over_the_limits_over_grpc(daemon: DaemonProc, http: httpx.Client,
                                               path: str, setting: str) -> None:
    sid = seeded(http)
    before = state(http, sid)
    req = pb.WriteFileRequest(session_id=sid, path=path, data=b"x", create_parents=True)
    _, error = await grpc_call(daemon, WRITE_FILE, req, pb.FileInfo)
    assert error == (Status.INVALID_ARGUMENT, "invalid_argument")
    assert state(http, sid) == before


def test_symlink_targets_are_bounded_and_utf8(http: httpx.Client) -> None:
    sid = seeded(http)
    before = state(http, sid)
    url = f"/v1/sessions/{sid}/fs:symlink"
    r = http.post(url, json={"path": "long", "target": "t" * (MAX_PATH + 1)})
    assert error_of(r, 400, "invalid_argument")["details"]["setting"] == "max_path_bytes"
    # A lone surrogate is legal JSON but no UTF-8 string.
    raw = json.dumps({"path": "bad", "target": "\udcff"})
    r = http.post(url, content=raw, headers={"Content-Type": "application/json"})
    error_of(r, 400, "invalid_argument")
    assert state(http, sid) == before
    r = http.post(url, json={"path": "edge", "target": "t" * MAX_PATH})
    assert r.status_code == 200, r.text


def test_invalid_utf8_names_over_http(http: httpx.Client) -> None:
    sid = seeded(http)
    before = state(http, sid)
    error_of(http.put(f"/v1/sessions/{sid}/files/bad%FFname", content=b"x"), 400,
             "invalid_argument")
    raw = json.dumps({"path": "bad\udcffdir", "parents": True})
    r = http.post(f"/v1/sessions/{sid}/fs:mkdir", content=raw,
                  headers={"Content-Type": "application/json"})
    error_of(r, 400, "invalid_argument")
    assert state(http, sid) == before


async def test_invalid_utf8_names_over_grpc(daemon: DaemonProc, http: httpx.Client) -> None:
    sid = seeded(http)
    before = state(http, sid)
    good = bytes(pb.WriteFileRequest(session_id=sid, path="PLACEHOLDER", data=b"x"))
    bad = good.replace(b"PLACEHOLDER", b"\xffLACEHOLDER")
    assert bad != good
    _, error = await grpc_call(daemon, WRITE_FILE, RawMessage(bad), pb.FileInfo)
    assert error == (Status.INVALID_ARGUMENT, "invalid_argument")
    assert state(http, sid) == before


def test_moving_a_tree_deeper_than_the_limit_is_refused(http: httpx.Client) -> None:
    sid = seeded(http)
    deep = "/".join(["d"] * (MAX_DEPTH - 5)) + "/leaf"  # its leaf is 252 levels deep
    assert http.put(f"/v1/sessions/{sid}/files/{deep}", content=b"x").status_code == 200
    assert http.post(f"/v1/sessions/{sid}/fs:mkdir",
                     json={"path": "a/b/c/e/f", "parents": True}).status_code == 200
    before = state(http, sid)
    for op in ("fs:rename", "fs:copy"):  # to 6 levels deep: the leaf would be at 257
        r = http.post(f"/v1/sessions/{sid}/{op}",
                      json={"fromPath": "d", "toPath": "a/b/c/e/f/d"})
        error = error_of(r, 400, "invalid_argument")
        assert error["details"]["setting"] == "max_path_depth", op
    assert state(http, sid) == before
    # One level up, the leaf lands exactly at the limit; moving up needs no look.
    r = http.post(f"/v1/sessions/{sid}/fs:copy", json={"fromPath": "d", "toPath": "a/b/c/e/d"})
    assert r.status_code == 200, r.text
    r = http.post(f"/v1/sessions/{sid}/fs:rename", json={"fromPath": "a/b/c/e/d", "toPath": "x"})
    assert r.status_code == 200, r.text


# ---- bodies and file sizes
def test_body_over_the_limit_is_payload_too_large(http: httpx.Client) -> None:
    sid = seeded(http)
    before = state(http, sid)
    over = bytes(LIMITS["max_body_bytes"] + 1)  # type: ignore[operator]
    url = f"/v1/sessions/{sid}/files/big"
    error_of(http.put(url, content=over), 413, "payload_too_large")

    def chunked() -> Iterator[bytes]:  # no Content-Length: refused while it streams
        for i in range(0, len(over), MIB):
            yield over[i:i + MIB]

    error_of(http.put(url, content=chunked()), 413, "payload_too_large")
    error_of(upload(http, over, "application/x-tar", "too-big-body"), 413, "payload_too_large")
    assert state(http, sid) == before


async def test_payload_over_the_limit_over_grpc(daemon: DaemonProc, http: httpx.Client) -> None:
    sid = seeded(http)
    before = state(http, sid)
    over = bytes(LIMITS["max_body_bytes"] + 1)  # type: ignore[operator]
    req = pb.WriteFileRequest(session_id=sid, path="big", data=over)
    _, error = await grpc_call(daemon, WRITE_FILE, req, pb.FileInfo)
    assert error == (Status.RESOURCE_EXHAUSTED, "payload_too_large")
    create = pb.CreateSessionRequest(name="grpc-too-big", source=pb.SessionSource(
        archive=pb.ArchiveSource(data=over, format=pb.ArchiveFormat.TAR)))
    _, error = await grpc_call(daemon, CREATE_SESSION, create, pb.Session)
    assert error == (Status.RESOURCE_EXHAUSTED, "payload_too_large")
    assert state(http, sid) == before
    assert "grpc-too-big" not in names(http)


def test_files_over_max_file_bytes(http: httpx.Client) -> None:
    sid = seeded(http)
    before = state(http, sid)
    url = f"/v1/sessions/{sid}/files/keep/me.txt"
    big = bytes(LIMITS["max_file_bytes"] + 1)  # type: ignore[operator]
    error = error_of(http.put(url, content=big), 429, "resource_exhausted")
    assert error["details"]["setting"] == "max_file_bytes"
    # A range write far past the end would zero-fill petabytes: refused at once.
    started = time.monotonic()
    r = http.patch(url, params={"offset": 10**15}, content=b"x",
                   headers={"Content-Type": "application/octet-stream"})
    assert error_of(r, 429, "resource_exhausted")["details"]["setting"] == "max_file_bytes"
    assert time.monotonic() - started < 5
    assert state(http, sid) == before


# ---- archive bombs
def test_zip_bomb_is_refused_before_inflating(http: httpx.Client) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        with zf.open("bomb.bin", "w", force_zip64=True) as out:
            for _ in range(64):
                out.write(bytes(MIB))
    data = buf.getvalue()
    assert len(data) < 200 * KIB
    started = time.monotonic()
    error = refused_whole(http, data, "application/zip", 429, "resource_exhausted")
    assert error["details"]["setting"] == "max_archive_ratio"
    assert time.monotonic() - started < 10


def test_zip_over_max_import_bytes(http: httpx.Client) -> None:
    """Incompressible content: within the ratio, over the absolute cap."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for i in range(3):
            zf.writestr(f"part{i}", os.urandom(MIB))
    error = refused_whole(http, buf.getvalue(), "application/zip", 429, "resource_exhausted")
    assert error["details"]["setting"] == "max_import_bytes"


def test_tar_gz_bomb_is_refused_at_the_member_header(http: httpx.Client) -> None:
    """Its header says how much it would inflate to: refused before a byte is."""
    data = zeros_gz_member("bomb.bin", 5 * MIB // 2)  # under max_file_bytes
    assert len(data) < 20 * KIB
    error = refused_whole(http, data, "application/gzip", 429, "resource_exhausted")
    assert error["details"]["setting"] == "max_archive_ratio"


def test_tar_gz_bomb_stops_while_inflating(http: httpx.Client) -> None:
    """A member of an unknown type carries data nobody reads: tarfile skips it
    by inflating it. The meter on the inflated stream stops that at the cap."""
    data = zeros_gz_member("skipped.bin", 64 * MIB, type_=b"Z")
    error = refused_whole(http, data, "application/gzip", 429, "resource_exhausted")
    assert error["details"]["setting"] == "max_archive_ratio"


def test_many_small_members_add_up(http: httpx.Client) -> None:
    members = [file_member(f"z{i:03}", bytes(64 * KIB)) for i in range(100)]
    error = refused_whole(http, tar_bytes(members, gz=True), "application/gzip", 429,
                          "resource_exhausted")
    assert error["details"]["setting"] == "max_archive_ratio"


def test_tar_header_bombs(http: httpx.Client) -> None:
    # A pax header is read whole into memory by tarfile: bounded at 1 MiB.
    info = tarfile.TarInfo("f")
    info.pax_headers = {"comment": "c" * (2 * MIB)}
    data = tar_bytes([info], gz=True)
    refused_whole(http, data, "application/gzip", 429, "resource_exhausted")
    # GNU long names nest one parse in the next: bounded at 32 in a row.
    blocks = []
    for _ in range(100):
        long = tarfile.TarInfo("././@LongLink")
        long.type, long.size = tarfile.GNUTYPE_LONGNAME, 513
        blocks += [long.tobuf(tarfile.GNU_FORMAT), b"n" * 512 + bytes(512)]
    blocks += [tarfile.TarInfo("f").tobuf(tarfile.GNU_FORMAT), bytes(1024)]
    refused_whole(http, b"".join(blocks), "application/x-tar", 400, "invalid_argument")


# ---- counts
def test_members_at_the_limit_pass_and_one_more_is_refused(http: httpx.Client) -> None:
    most = int(LIMITS["max_import_entries"])
    r = upload(http, tar_bytes([file_member(f"f{i}", b"") for i in range(most)]),
               "application/x-tar", "at-the-limit")
    assert r.status_code == 201 and r.json()["fileCount"] == str(most), r.text
    error = refused_whole(http, tar_bytes([file_member(f"f{i}", b"") for i in range(most + 1)]),
                          "application/x-tar", 429, "resource_exhausted")
    assert error["details"]["setting"] == "max_import_entries"


def test_zip_with_too_many_members(http: httpx.Client) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(int(LIMITS["max_import_entries"]) + 1):
            zf.writestr(f"f{i}", b"")
    error = refused_whole(http, buf.getvalue(), "application/zip", 429, "resource_exhausted")
    assert error["details"]["setting"] == "max_import_entries"


def test_implied_directories_count(http: httpx.Client) -> None:
    """Five members, each 250 directories deep on its own branch."""
    members = [file_member("/".join([f"b{i}"] + ["d"] * 249) + "/f", b"") for i in range(5)]
    error = refused_whole(http, tar_bytes(members), "application/x-tar", 429,
                          "resource_exhausted")
    assert error["details"]["setting"] == "max_import_entries"


# ---- links
def chain(n: int) -> list[Any]:
    """l0 -> l1 -> ... -> l{n-1} -> f: resolving l0 follows n links. The
    members come last link first, so a resolver that memoises must still count."""
    links = [link_member(f"l{i}", f"l{i + 1}" if i < n - 1 else "f") for i in range(n)]
    return [file_member("f", b"end"), *reversed(links)]


HOSTILE_TARS = {
    "symlink loop": ([link_member("a", "b"), link_member("b", "a")], None),
    "symlink to itself": ([link_member("a", "a")], None),
    "loop through a directory": ([dir_member("d"), link_member("d/x", "../y/x"),
                                  link_member("y", "d")], None),
    "chain over the limit": (chain(MAX_HOPS + 1), "max_symlink_hops"),
    "escape through another symlink": ([dir_member("x"), link_member("x/y", ".."),
                                        link_member("d", "x/y/..")], None),
    "hard link to an absolute path": ([link_member("h", "/etc/passwd", hard=True)], None),
    "hard link climbing out": ([link_member("h", "../outside", hard=True)], None),
    "hard link to a later member": ([link_member("h", "later", hard=True),
                                     file_member("later", b"x")], None),
    "hard link to a directory": ([dir_member("d"), link_member("h", "d", hard=True)], None),
    "absolute member": ([file_member("/etc/evil", b"x")], None),
    "dot-dot member": ([file_member("ok/../../evil", b"x")], None),
    "symlink target not UTF-8": ([link_member("l", "bad\udcfftarget")], None),
    "name too long": ([file_member("n" * (MAX_NAME + 1), b"x")], "max_name_bytes"),
    "too deep": ([file_member("/".join(["d"] * MAX_DEPTH) + "/f", b"x")], "max_path_depth"),
}


@pytest.mark.parametrize(("members", "setting"), HOSTILE_TARS.values(), ids=HOSTILE_TARS.keys())
def test_hostile_tars_are_refused_whole(http: httpx.Client, members: list[Any],
                                        setting: str | None) -> None:
    data = tar_bytes([file_member("fine.txt", b"fine"), *members])
    error = refused_whole(http, data, "application/x-tar", 400, "invalid_argument")
    if setting:
        assert error["details"]["setting"] == setting


def test_links_that_resolve_inside_are_kept(http: httpx.Client) -> None:
    members = [*chain(MAX_HOPS), dir_member("d"), link_member("d/here", "."),
               link_member("d/up", ".."), link_member("dangling", "nowhere/at/all"),
               file_member("d/orig", b"same"), link_member("d/hard", "d/orig", hard=True)]
    r = upload(http, tar_bytes(members), "application/x-tar", "good-links")
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    assert http.get(f"/v1/sessions/{sid}/files/d/hard").content == b"same"
    stat = http.get(f"/v1/sessions/{sid}/stat/l0").json()
    assert stat["symlinkTarget"] == "l1"


def test_out_of_range_times_are_not_an_error(http: httpx.Client) -> None:
    info = tarfile.TarInfo("f")
    info.pax_headers = {"mtime": "1e30"}
    r = upload(http, tar_bytes([info]), "application/x-tar", "odd-times")
    assert r.status_code == 201, r.text


def test_unsupported_zip_members_are_invalid_argument(http: httpx.Client) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("f", b"data")
    # Compression method 99 (AES) in the local and the central header.
    data = buf.getvalue()
    local = data.index(b"PK\x03\x04")
    central = data.index(b"PK\x01\x02")
    raw = bytearray(data)
    raw[local + 8:local + 10] = (99).to_bytes(2, "little")
    raw[central + 10:central + 12] = (99).to_bytes(2, "little")
    refused_whole(http, bytes(raw), "application/zip", 400, "invalid_argument")


# ---- host directories and git
def test_host_directory_with_symlink_loops_imports_them_as_links(http: httpx.Client,
                                                                 tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f").write_text("x")
    os.symlink("b", src / "a")
    os.symlink("a", src / "b")
    os.symlink("..", src / "sub" / "up")
    os.symlink(str(src), src / "sub" / "abs-up")
    started = time.monotonic()
    r = http.post("/v1/sessions", json={"source": {"directory": {"path": str(src)}}})
    assert r.status_code == 201, r.text
    assert time.monotonic() - started < 10
    sid = r.json()["id"]
    assert http.get(f"/v1/sessions/{sid}/stat/a").json()["symlinkTarget"] == "b"
    assert http.get(f"/v1/sessions/{sid}/stat/sub/up").json()["symlinkTarget"] == ".."


def test_host_directory_over_the_limits(http: httpx.Client, tmp_path: Path) -> None:
    deep = tmp_path / "deep"
    d = deep
    for _ in range(MAX_DEPTH + 40):
        d = d / "d"
    d.mkdir(parents=True)
    many = tmp_path / "many"
    many.mkdir()
    for i in range(int(LIMITS["max_import_entries"]) + 1):
        (many / f"f{i}").touch()
    big = tmp_path / "big"
    big.mkdir()
    (big / "f").write_bytes(bytes(LIMITS["max_import_bytes"] + 1))  # type: ignore[operator]
    for path, status, code, setting in (
        (deep, 400, "invalid_argument", "max_path_depth"),
        (many, 429, "resource_exhausted", "max_import_entries"),
        (big, 429, "resource_exhausted", "max_import_bytes"),
    ):
        before = names(http)
        r = http.post("/v1/sessions", json={"name": f"host-{setting}",
                                            "source": {"directory": {"path": str(path)}}})
        assert error_of(r, status, code)["details"]["setting"] == setting
        assert names(http) == before


def test_host_directory_that_is_a_symlink_loop(http: httpx.Client, tmp_path: Path) -> None:
    os.symlink("loop-b", tmp_path / "loop-a")
    os.symlink("loop-a", tmp_path / "loop-b")
    r = http.post("/v1/sessions",
                  json={"source": {"directory": {"path": str(tmp_path / "loop-a")}}})
    assert r.status_code in (400, 404), r.text


def git_repo(path: Path, files: dict[str, bytes], links: dict[str, str]) -> Path:
    git = ["git", "-C", str(path), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    for name, data in files.items():
        (path / name).write_bytes(data)
    for name, target in links.items():
        os.symlink(target, path / name)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "c"], check=True)
    return path


def test_git_repository_with_a_symlink_loop(http: httpx.Client, tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo", {"f": b"x"}, {"a": "b", "b": "a", "up": ".."})
    r = http.post("/v1/sessions", json={"source": {"git": {"url": str(repo)}}})
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    assert http.get(f"/v1/sessions/{sid}/stat/a").json()["symlinkTarget"] == "b"


def test_git_repository_over_max_import_bytes(http: httpx.Client, tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo", {f"part{i}": os.urandom(MIB) for i in range(3)}, {})
    before = names(http)
    r = http.post("/v1/sessions", json={"name": "git-too-big",
                                        "source": {"git": {"url": str(repo)}}})
    assert error_of(r, 429, "resource_exhausted")["details"]["setting"] == "max_import_bytes"
    assert names(http) == before


def test_git_url_too_long_for_the_os(http: httpx.Client) -> None:
    r = http.post("/v1/sessions", json={"source": {"git": {"url": "x" * 5000}}})
    error_of(r, 400, "invalid_argument")


# ---- configuration
@pytest.mark.parametrize("setting", [
    "max_path_depth = 100000",
    "max_import_entries = 0",
    "max_name_bytes = -1",
    'max_file_bytes = "big"',
    "max_name_bytes = 5000",
])
def test_bad_limits_stop_the_daemon(tmp_path: Path, setting: str) -> None:
    config = tmp_path / "aetherd.toml"
    config.write_text(f"[aetherd]\n{setting}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "aetherd", "serve", "--config", str(config),
         "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "bad configuration" in proc.stderr and setting.split()[0] in proc.stderr
