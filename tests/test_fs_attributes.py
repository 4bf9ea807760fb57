"""chmod, utimes and extended attributes of session paths (Files.SetAttributes,
POST .../fs:setattr) against a real daemon, over HTTP, gRPC, the SDK and
`aether fs setattr`.

Attributes belong to the path's entry, like its mode: they must survive
content writes, renames, copies, forks, checkpoints, restores and a tar
export/import (GNU tar's --xattrs records), show in every listing, count as a
change in diffs, and be refused with a stable code when they are not the
session's to store.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import io
import os
import subprocess
import tarfile
from typing import Any

import apsw
import httpx
import pytest
from cli_helpers import aether, out
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from aether import pb
from aether.client import Client
from aetherd.store.objects import FILE, Entry, decode_tree, encode_tree
from aetherd.testing import DaemonProcess


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def new_session(http: httpx.Client) -> str:
    r = http.post("/v1/sessions", json={})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def put(http: httpx.Client, sid: str, path: str, data: bytes) -> dict[str, Any]:
    r = http.put(f"/v1/sessions/{sid}/files/{path}", content=data)
    assert r.status_code in (200, 201), r.text
    return r.json()


def setattr_(http: httpx.Client, sid: str, path: str, **body: Any) -> httpx.Response:
    return http.post(f"/v1/sessions/{sid}/fs:setattr", json={"path": path, **body})


def ok(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    return r.json()


def stat(http: httpx.Client, sid: str, path: str, at: str = "") -> dict[str, Any]:
    return ok(http.get(f"/v1/sessions/{sid}/stat/{path}", params={"at": at} if at else {}))


def attrs(info: dict[str, Any]) -> tuple[int, str, dict[str, str]]:
    return info["mode"], info.get("mtime") or "", info.get("xattrs") or {}


def error_code(r: httpx.Response) -> str:
    return r.json()["error"]["code"]


def events(http: httpx.Client, sid: str) -> list[dict[str, Any]]:
    return ok(http.get(f"/v1/sessions/{sid}/events"))["events"]


T1 = "2001-02-03T04:05:06.789012Z"


def test_mode_mtime_and_xattrs_are_stored_and_listed(http):
    sid = new_session(http)
    before = put(http, sid, "src/a.txt", b"hello")
    info = ok(setattr_(http, sid, "src/a.txt", mode=0o600, mtime=T1,
                       setXattrs={"user.bin": b64(b"\x00\xff"), "user.text": b64(b"v")}))
    want = (0o600, T1, {"user.bin": b64(b"\x00\xff"), "user.text": b64(b"v")})
    assert attrs(info) == want
    assert info["hash"] == before["hash"] and info["size"] == "5"
    assert attrs(stat(http, sid, "src/a.txt")) == want
    listed = ok(http.get(f"/v1/sessions/{sid}/tree", params={"path": "src"}))["entries"]
    assert attrs(listed[0]) == want
    manifest = ok(http.get(f"/v1/sessions/{sid}/manifest"))["entries"]
    assert attrs(next(e for e in manifest if e["path"] == "src/a.txt")) == want
    assert http.get(f"/v1/sessions/{sid}/files/src/a.txt").content == b"hello"
    # One attribute at a time: the others stay.
    info = ok(setattr_(http, sid, "src/a.txt", removeXattrs=["user.bin", "user.absent"]))
    assert attrs(info) == (0o600, T1, {"user.text": b64(b"v")})
    info = ok(setattr_(http, sid, "src/a.txt", mode=0))  # chmod 000 is a mode, not "unset"
    assert attrs(info) == (0, T1, {"user.text": b64(b"v")})
    info = ok(setattr_(http, sid, "src/a.txt", replaceXattrs=True,
                       setXattrs={"user.only": b64(b"")}))
    assert info["xattrs"] == {"user.only": ""}


def test_directories_keep_attributes_over_changes_inside(http):
    sid = new_session(http)
    put(http, sid, "d/sub/f", b"1")
    ok(setattr_(http, sid, "d", mode=0o700, mtime=T1, setXattrs={"user.dir": b64(b"yes")}))
    put(http, sid, "d/g", b"2")
    http.delete(f"/v1/sessions/{sid}/files/d/sub/f")
    assert attrs(stat(http, sid, "d")) == (0o700, T1, {"user.dir": b64(b"yes")})
    # ... and over a fold (a checkpoint folds the overlay into trees).
    ckp = http.post(f"/v1/sessions/{sid}/checkpoints", json={}).json()["id"]
    assert attrs(stat(http, sid, "d")) == (0o700, T1, {"user.dir": b64(b"yes")})
    assert attrs(stat(http, sid, "d", at=ckp)) == (0o700, T1, {"user.dir": b64(b"yes")})
    root = ok(http.get(f"/v1/sessions/{sid}/tree"))["entries"]
    assert attrs(next(e for e in root if e["path"] == "d"))[2] == {"user.dir": b64(b"yes")}


def test_attributes_follow_the_entry(http):
    sid = new_session(http)
    put(http, sid, "a", b"one")
    ok(setattr_(http, sid, "a", mode=0o640, setXattrs={"user.k": b64(b"v")}))
    # New content, same file: mode and xattrs stay (as on an inode).
    put(http, sid, "a", b"two")
    assert attrs(stat(http, sid, "a"))[0] == 0o640
    assert attrs(stat(http, sid, "a"))[2] == {"user.k": b64(b"v")}
    # Renamed, copied, a directory renamed around it.
    ok(http.post(f"/v1/sessions/{sid}/fs:mkdir", json={"path": "d"}))
    ok(http.post(f"/v1/sessions/{sid}/fs:rename", json={"fromPath": "a", "toPath": "d/b"}))
    ok(http.post(f"/v1/sessions/{sid}/fs:copy", json={"fromPath": "d", "toPath": "e"}))
    ok(http.post(f"/v1/sessions/{sid}/fs:rename", json={"fromPath": "e", "toPath": "f"}))
    for path in ("d/b", "f/b"):
        assert attrs(stat(http, sid, path))[2] == {"user.k": b64(b"v")}, path
    # Forked: the fork has them; changing them there leaves the parent alone.
    fork = http.post(f"/v1/sessions/{sid}:fork", json={}).json()["id"]
    assert attrs(stat(http, fork, "d/b"))[2] == {"user.k": b64(b"v")}
    ok(setattr_(http, fork, "d/b", setXattrs={"user.k": b64(b"fork")}))
    assert attrs(stat(http, sid, "d/b"))[2] == {"user.k": b64(b"v")}
    # Deleted and made again: a new file has none.
    http.delete(f"/v1/sessions/{sid}/files/d/b")
    put(http, sid, "d/b", b"new")
    assert attrs(stat(http, sid, "d/b"))[2] == {}
    assert attrs(stat(http, sid, "d/b"))[0] == 0o644


def test_checkpoint_restore_and_diff_see_attribute_changes(http):
    sid = new_session(http)
    put(http, sid, "a.txt", b"same\n")
    ckp = http.post(f"/v1/sessions/{sid}/checkpoints", json={}).json()["id"]
    ok(setattr_(http, sid, "a.txt", setXattrs={"user.review": b64(b"ok")}))
    diff = ok(http.get(f"/v1/sessions/{sid}/diff", params={"from": ckp}))
    assert [(f["change"]["path"], f["change"]["kind"]) for f in diff["files"]] == [
        ("a.txt", "CHANGE_KIND_MODIFIED")]
    assert diff["unified"] == 'diff --aether a/a.txt b/a.txt\nxattr added user.review="ok"\n'
    ok(setattr_(http, sid, "a.txt", setXattrs={"user.review": b64(b"\xff")}))
    put(http, sid, "b.txt", b"new\n")
    ok(setattr_(http, sid, "b.txt", setXattrs={"user.new": b64(b"1")}))
    text = ok(http.get(f"/v1/sessions/{sid}/diff", params={"from": ckp}))["unified"]
    assert 'xattr added user.review=base64:/w==\n' in text
    assert 'new file mode 644\nxattr added user.new="1"\n' in text
    ok(setattr_(http, sid, "a.txt", removeXattrs=["user.review"]))
    ok(setattr_(http, sid, "b.txt", setXattrs={"user.new": b64(b"2")}))
    ckp_mid = http.post(f"/v1/sessions/{sid}/checkpoints", json={}).json()["id"]
    ok(setattr_(http, sid, "b.txt", setXattrs={"user.new": b64(b"3")}))
    text = ok(http.get(f"/v1/sessions/{sid}/diff", params={"from": ckp_mid}))["unified"]
    assert text == 'diff --aether a/b.txt b/b.txt\nxattr changed user.new="3"\n'
    ok(setattr_(http, sid, "b.txt", removeXattrs=["user.new"]))
    text = ok(http.get(f"/v1/sessions/{sid}/diff", params={"from": ckp_mid}))["unified"]
    assert text == 'diff --aether a/b.txt b/b.txt\nxattr removed user.new\n'
    ok(setattr_(http, sid, "a.txt", setXattrs={"user.review": b64(b"ok")}))
    ckp2 = http.post(f"/v1/sessions/{sid}/checkpoints", json={}).json()["id"]
    ok(http.post(f"/v1/sessions/{sid}:restore", json={"checkpointId": ckp}))
    assert attrs(stat(http, sid, "a.txt"))[2] == {}
    ok(http.post(f"/v1/sessions/{sid}:restore", json={"checkpointId": ckp2}))
    assert attrs(stat(http, sid, "a.txt"))[2] == {"user.review": b64(b"ok")}


def test_each_call_emits_one_event_naming_what_changed(http):
    sid = new_session(http)
    put(http, sid, "a", b"x")
    ok(setattr_(http, sid, "a", mode=0o600, setXattrs={"user.k": b64(b"v")}))
    ok(setattr_(http, sid, "a", mode=0o600, setXattrs={"user.k": b64(b"v")}))  # no change
    mine = [(e["path"], e["attributes"]["changed"]) for e in events(http, sid)
            if e["type"] == "path.attributes_changed"]
    assert mine == [("a", "mode,xattrs"), ("a", "")]


def test_symlinks_take_only_an_mtime(http):
    sid = new_session(http)
    ok(http.post(f"/v1/sessions/{sid}/fs:symlink", json={"path": "l", "target": "nowhere"}))
    assert attrs(ok(setattr_(http, sid, "l", mtime=T1)))[1] == T1
    for body in ({"mode": 0o600}, {"setXattrs": {"user.k": b64(b"v")}}):
        r = setattr_(http, sid, "l", **body)
        assert (r.status_code, error_code(r)) == (412, "failed_precondition"), body


@pytest.mark.parametrize(("body", "code"), [
    ({"setXattrs": {"security.selinux": ""}}, "invalid_argument"),
    ({"setXattrs": {"trusted.x": ""}}, "invalid_argument"),
    ({"setXattrs": {"user.": ""}}, "invalid_argument"),
    ({"setXattrs": {"user.aether.hash": ""}}, "invalid_argument"),
    ({"setXattrs": {"user." + "n" * 251: ""}}, "invalid_argument"),
    ({"setXattrs": {"user.big": b64(b"x" * (64 * 1024 + 1))}}, "invalid_argument"),
    ({"setXattrs": {"user.k": ""}, "removeXattrs": ["user.k"]}, "invalid_argument"),
    ({"removeXattrs": ["system.posix_acl_access"]}, "invalid_argument"),
    ({"mode": 0o10000}, "invalid_argument"),
    ({"ifMatch": "0" * 64, "mode": 0o600}, "conflict"),
])
def test_refusals_have_stable_codes_and_change_nothing(http, body, code):
    sid = new_session(http)
    put(http, sid, "a", b"x")
    before = stat(http, sid, "a")
    r = setattr_(http, sid, "a", **body)
    assert error_code(r) == code, r.text
    assert stat(http, sid, "a") == before


def test_total_size_per_path_is_bounded(http):
    sid = new_session(http)
    put(http, sid, "a", b"x")
    half = b64(b"x" * (32 * 1024))
    ok(setattr_(http, sid, "a", setXattrs={"user.one": half}))
    r = setattr_(http, sid, "a", setXattrs={"user.two": half})
    assert error_code(r) == "resource_exhausted"
    assert list(attrs(stat(http, sid, "a"))[2]) == ["user.one"]


def test_missing_paths_and_the_root(http):
    sid = new_session(http)
    r = setattr_(http, sid, "nope", mode=0o600)
    assert (r.status_code, error_code(r)) == (404, "not_found")
    r = setattr_(http, sid, "", mode=0o700)
    assert error_code(r) == "invalid_argument"
    r = setattr_(http, sid, "../etc/passwd", mode=0o600)
    assert error_code(r) == "invalid_argument"


def test_a_batch_orders_attributes_after_the_write_that_makes_the_file(http):
    """What a mount sends for `cp -p`: the file, then its times and xattrs."""
    sid = new_session(http)
    r = ok(http.post(f"/v1/sessions/{sid}/fs:apply", json={"ops": [
        {"write": {"path": "copy", "data": b64(b"data"), "mode": 0o755}},
        {"setAttributes": {"path": "copy", "mtime": T1, "setXattrs": {"user.k": b64(b"v")}}},
        {"setAttributes": {"path": "missing", "mode": 0o600}},
    ]}))
    assert [x["error"]["code"] if x.get("error") else "ok" for x in r["results"]] == [
        "ok", "ok", "not_found"]
    assert attrs(stat(http, sid, "copy")) == (0o755, T1, {"user.k": b64(b"v")})


async def test_grpc_sets_and_reads_the_same(http, channel, md):
    sid = new_session(http)
    put(http, sid, "a", b"x")
    files = pb.FileServiceStub(channel, metadata=md)
    when = dt.datetime(2001, 2, 3, 4, 5, 6, 789012, tzinfo=dt.UTC)
    info = await files.set_attributes(pb.SetAttributesRequest(
        session_id=sid, path="a", mode=0o600, mtime=when, set_xattrs={"user.k": b"\x00v"}))
    assert (info.mode, info.mtime, info.xattrs) == (0o600, when, {"user.k": b"\x00v"})
    got = await files.stat(pb.StatRequest(session_id=sid, path="a"))
    assert got.xattrs == {"user.k": b"\x00v"}
    assert attrs(stat(http, sid, "a")) == (0o600, T1, {"user.k": b64(b"\x00v")})
    with pytest.raises(GRPCError) as err:
        await files.set_attributes(pb.SetAttributesRequest(
            session_id=sid, path="a", set_xattrs={"security.x": b""}))
    assert err.value.status == Status.INVALID_ARGUMENT


def test_sdk_and_cli(daemon, http, env):
    sid = new_session(http)
    put(http, sid, "run.sh", b"#!/bin/sh\n")
    with Client(daemon.http_url, token=daemon.token) as c:
        info = c.set_attributes(sid, "run.sh", mode=0o755, set_xattrs={"user.k": b"v"})
        assert (info.mode, info.xattrs) == (0o755, {"user.k": b"v"})
    aether(env, "fs", "setattr", sid, "run.sh", "--mode", "0700", "--mtime", "2001-02-03T04:05:06",
           "--set", "user.note=looks good", "--set-base64", "user.bin=AP8=", "--remove", "user.k")
    assert attrs(stat(http, sid, "run.sh")) == (
        0o700, "2001-02-03T04:05:06Z", {"user.note": b64(b"looks good"), "user.bin": "AP8="})
    shown = out(aether(env, "fs", "stat", sid, "run.sh", text=True))
    assert 'user.note="looks good"' in shown and "user.bin=base64:AP8=" in shown
    refused = aether(env, "fs", "setattr", sid, "run.sh", "--set", "security.x=1", text=True,
                     check=1)  # the daemon's invalid_argument
    assert "only user.* names" in refused.stderr
    nothing = aether(env, "fs", "setattr", sid, "run.sh", text=True, check=2)
    assert "nothing to change" in nothing.stderr


def test_an_older_data_dir_gains_the_column(tmp_path):
    """A meta.db from before xattrs (no overlay.xattrs column) opens, keeps its
    rows and stores attributes."""
    d = DaemonProcess(tmp_path / "data").start()
    try:
        with Client(d.http_url, token=d.token) as c:
            sid = c.create_session().id
            c.write_file(sid, "kept", b"old")
    finally:
        d.stop()
    db = apsw.Connection(str(tmp_path / "data" / "meta.db"))
    db.execute("ALTER TABLE overlay DROP COLUMN xattrs")
    db.close()
    d = DaemonProcess(tmp_path / "data").start()
    try:
        with Client(d.http_url, token=d.token) as c:
            assert c.read_file(sid, "kept").data == b"old"
            info = c.set_attributes(sid, "kept", set_xattrs={"user.k": b"v"})
            assert info.xattrs == {"user.k": b"v"}
    finally:
        d.stop()


def test_trees_without_xattrs_keep_their_encoding():
    """Attributes add a 9th element to a tree row only when there are some, so
    every tree stored before keeps its hash (and deduplicates with new ones)."""
    e = Entry(FILE, 0o644, 3, "h", "", 5, 1)
    assert encode_tree({"a": e}) == b'[["a",1,420,3,"h","",5,1]]'
    with_x = dataclasses.replace(e, xattrs=(("user.k", b"\x00v"),))
    assert encode_tree({"a": with_x}) == b'[["a",1,420,3,"h","",5,1,[["user.k","AHY="]]]]'
    assert decode_tree(encode_tree({"a": with_x, "b": e})) == {"a": with_x, "b": e}


def test_tar_export_carries_xattrs_that_gnu_tar_restores(http, tmp_path):
    sid = new_session(http)
    put(http, sid, "dir/f", b"content")
    ok(setattr_(http, sid, "dir/f", setXattrs={"user.text": b64(b"v"),
                                              "user.bin": b64(b"\x00\xff\xfe")}))
    ok(setattr_(http, sid, "dir", setXattrs={"user.dir": b64(b"d")}))
    r = http.get(f"/v1/sessions/{sid}/export", params={"format": "tar"})
    assert r.status_code == 200
    (tmp_path / "out.tar").write_bytes(r.content)
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(["tar", "--xattrs", "--xattrs-include=user.*", "-xf",
                    str(tmp_path / "out.tar"), "-C", str(out)], check=True)
    assert os.getxattr(out / "dir" / "f", "user.text") == b"v"
    assert os.getxattr(out / "dir" / "f", "user.bin") == b"\x00\xff\xfe"
    assert os.getxattr(out / "dir", "user.dir") == b"d"
    # ... and the archive imports back with them
    back = http.post("/v1/sessions", content=r.content,
                     headers={"Content-Type": "application/octet-stream"}).json()["id"]
    assert attrs(stat(http, back, "dir/f"))[2] == {"user.text": b64(b"v"),
                                                   "user.bin": b64(b"\x00\xff\xfe")}
    assert attrs(stat(http, back, "dir"))[2] == {"user.dir": b64(b"d")}


def _tar_with(pax: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("f")
        info.size = 1
        info.pax_headers = pax
        tar.addfile(info, io.BytesIO(b"x"))
    return buf.getvalue()


def test_tar_import_keeps_user_xattrs_only(http):
    """security.*, system.* (ACLs) and a mount's user.aether.* are not the
    session's: left out, as tar leaves them out unless asked."""
    data = _tar_with({"SCHILY.xattr.user.k": "v", "SCHILY.xattr.security.selinux": "ctx",
                      "SCHILY.xattr.system.posix_acl_access": "acl",
                      "SCHILY.xattr.user.aether.hash": "0" * 64})
    sid = http.post("/v1/sessions", content=data,
                    headers={"Content-Type": "application/octet-stream"}).json()["id"]
    assert attrs(stat(http, sid, "f"))[2] == {"user.k": b64(b"v")}


def test_tar_import_refuses_xattrs_a_session_cannot_hold(http):
    r = http.post("/v1/sessions", content=_tar_with({"SCHILY.xattr.user.k": "v" * 70_000}),
                  headers={"Content-Type": "application/octet-stream"})
    assert error_code(r) == "invalid_argument"
    assert "user.k" in r.json()["error"]["message"]


def test_a_session_from_a_host_directory_takes_its_user_xattrs(http, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f").write_bytes(b"x")
    os.setxattr(src / "sub" / "f", "user.k", b"\x00v")
    os.setxattr(src / "sub", "user.dir", b"d")
    os.setxattr(src / "sub" / "f", "user.aether.hash", b"from a mount")  # not carried
    r = http.post("/v1/sessions", json={"source": {"directory": {"path": str(src)}}})
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    assert attrs(stat(http, sid, "sub/f"))[2] == {"user.k": b64(b"\x00v")}
    assert attrs(stat(http, sid, "sub"))[2] == {"user.dir": b64(b"d")}
