"""Every foundation route over real HTTP against a real daemon, including bad input."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest


def make_tar(members: list[tuple[str, bytes | None, str | None]], gz: bool = False) -> bytes:
    """members: (name, data for a file | None, symlink target | None); None/None = dir."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tar:
        for name, data, target in members:
            info = tarfile.TarInfo(name)
            if target is not None:
                info.type, info.linkname = tarfile.SYMTYPE, target
                tar.addfile(info)
            elif data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def new_session(http, **body) -> dict:
    r = http.post("/v1/sessions", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def put(http, sid: str, path: str, data: bytes, **kw):
    return http.put(f"/v1/sessions/{sid}/files/{path}", content=data, **kw)


def error_code(r) -> str:
    return r.json()["error"]["code"]


# ---- sessions and lifecycle
def test_create_from_each_source(http, tmp_path: Path):
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "mod.py").write_text("x = 1\n")
    (src / "README").write_text("hi\n")
    from_dir = new_session(http, source={"directory": {"path": str(src)}})
    assert from_dir["sourceKind"] == "directory" and from_dir["fileCount"] == "2"

    tar = make_tar([("a/", None, None), ("a/f.txt", b"tar!", None), ("a/l", None, "f.txt")], gz=True)
    r = http.post("/v1/sessions?name=up&label=k=v&tag=t", content=tar,
                  headers={"Content-Type": "application/gzip"})
    assert r.status_code == 201, r.text
    up = r.json()
    assert (up["name"], up["labels"], up["tags"]) == ("up", {"k": "v"}, ["t"])
    assert http.get(f"/v1/sessions/{up['id']}/files/a/f.txt").content == b"tar!"

    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as zf:
        zf.writestr("z/one.txt", "1")
    import base64

    z = new_session(http, source={"archive": {"data": base64.b64encode(zbuf.getvalue()).decode()}})
    assert http.get(f"/v1/sessions/{z['id']}/files/z/one.txt").content == b"1"

    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "f.txt").write_text("v1\n")
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    subprocess.run([*git, "tag", "v1"], check=True)
    (repo / "f.txt").write_text("v2\n")
    subprocess.run([*git, "commit", "-qam", "two"], check=True)
    g = new_session(http, source={"git": {"url": str(repo), "ref": "v1"}})
    assert http.get(f"/v1/sessions/{g['id']}/files/f.txt").content == b"v1\n"
    assert g["sourceKind"] == "git" and "@" in g["sourceRef"]

    ck = http.post(f"/v1/sessions/{g['id']}/checkpoints", json={}).json()
    cm = http.post(f"/v1/sessions/{g['id']}/commits", json={"message": "m"}).json()
    from_ck = new_session(http, source={"checkpoint": {"checkpointId": ck["id"]}})
    from_cm = new_session(http, source={"commit": {"commitId": cm["id"]}})
    from_ses = new_session(http, source={"session": {"sessionId": g["id"]}})
    assert from_ck["rootHash"] == from_cm["rootHash"] == from_ses["rootHash"] == g["rootHash"]
    assert from_ses["parentSessionId"] == g["id"]

    blank = new_session(http, source={"blank": {}})
    assert blank["fileCount"] == "0" and blank["state"] == "SESSION_STATE_ACTIVE"


def test_list_filter_paginate_patch_delete(http):
    ids = [new_session(http, name=f"p{i}", labels={"grp": "pg", "i": str(i % 2)},
                       tags=["odd"] if i % 2 else [])["id"] for i in range(5)]
    seen, token = [], ""
    while True:
        r = http.get("/v1/sessions", params={"label": "grp=pg", "page_size": 2,
                                             "page_token": token})
        body = r.json()
        seen += [s["id"] for s in body["sessions"]]
        token = body["nextPageToken"]
        if not token:
            break
    assert seen == ids
    odd = http.get("/v1/sessions", params=[("label", "grp=pg"), ("tag", "odd")]).json()
    assert [s["id"] for s in odd["sessions"]] == [ids[1], ids[3]]

    r = http.patch(f"/v1/sessions/{ids[0]}", json={"name": "renamed", "labels": {"x": "y"}})
    assert r.status_code == 200 and r.json()["name"] == "renamed"
    assert r.json()["labels"] == {"x": "y"}
    assert http.delete(f"/v1/sessions/{ids[0]}").status_code == 200
    assert error_code(http.get(f"/v1/sessions/{ids[0]}")) == "not_found"


def test_fork_archive_restore(http):
    s = new_session(http)
    sid = s["id"]
    put(http, sid, "a.txt", b"one\n")
    ck = http.post(f"/v1/sessions/{sid}/checkpoints", json={"message": "c1"})
    assert ck.status_code == 201
    ck = ck.json()
    put(http, sid, "a.txt", b"two\n")
    fork = http.post(f"/v1/sessions/{sid}:fork", json={"name": "alt"})
    assert fork.status_code == 201
    fork = fork.json()
    assert fork["parentSessionId"] == sid
    put(http, fork["id"], "only-in-fork", b"x")
    assert http.get(f"/v1/sessions/{sid}/files/only-in-fork").status_code == 404

    r = http.post(f"/v1/sessions/{sid}:restore", json={"checkpointId": ck["id"]})
    assert r.status_code == 200 and r.json()["rootHash"] == ck["rootHash"]
    assert http.get(f"/v1/sessions/{sid}/files/a.txt").content == b"one\n"
    assert http.get(f"/v1/sessions/{fork['id']}/files/a.txt").content == b"two\n"

    arch = http.post(f"/v1/sessions/{sid}:archive")
    assert arch.json()["state"] == "SESSION_STATE_ARCHIVED"
    # Archived sessions are read-only on every write route.
    for r in (
        put(http, sid, "a.txt", b"nope"),
        http.delete(f"/v1/sessions/{sid}/files/a.txt"),
        http.post(f"/v1/sessions/{sid}/fs:mkdir", json={"path": "d"}),
        http.post(f"/v1/sessions/{sid}:restore", json={"checkpointId": ck["id"]}),
        http.post(f"/v1/sessions/{sid}/import", content=make_tar([("n", b"1", None)])),
    ):
        assert r.status_code == 412 and error_code(r) == "failed_precondition", r.text
    assert http.get(f"/v1/sessions/{sid}/files/a.txt").content == b"one\n"


# ---- filesystem
def test_filesystem_routes(http):
    sid = new_session(http)["id"]
    assert put(http, sid, "src/main.py", b"print(1)\n").status_code == 200
    assert http.post(f"/v1/sessions/{sid}/fs:mkdir", json={"path": "docs"}).status_code == 200
    r = http.post(f"/v1/sessions/{sid}/fs:symlink", json={"path": "docs/main", "target": "../src/main.py"})
    assert r.json()["kind"] == "ENTRY_KIND_SYMLINK"
    r = http.post(f"/v1/sessions/{sid}/fs:copy", json={"fromPath": "src", "toPath": "src2"})
    assert r.status_code == 200
    r = http.post(f"/v1/sessions/{sid}/fs:rename", json={"fromPath": "src2/main.py",
                                                         "toPath": "src2/app.py"})
    assert r.json()["path"] == "src2/app.py"

    tree = http.get(f"/v1/sessions/{sid}/tree").json()["entries"]
    assert [e["path"] for e in tree] == ["docs", "src", "src2"]
    deep = http.get(f"/v1/sessions/{sid}/tree", params={"recursive": "true"}).json()["entries"]
    assert [e["path"] for e in deep] == ["docs", "docs/main", "src", "src/main.py", "src2",
                                         "src2/app.py"]

    st = http.get(f"/v1/sessions/{sid}/stat/src/main.py").json()
    assert st["size"] == "9" and st["extents"][0]["length"] == "9"
    assert st["hash"] == st["extents"][0]["hash"]

    patch = "--- a/src/main.py\n+++ b/src/main.py\n@@ -1 +1 @@\n-print(1)\n+print(2)\n"
    r = http.patch(f"/v1/sessions/{sid}/files/src/main.py", content=patch,
                   headers={"Content-Type": "text/x-diff"})
    assert r.status_code == 200, r.text
    assert http.get(f"/v1/sessions/{sid}/files/src/main.py").content == b"print(2)\n"
    r = http.patch(f"/v1/sessions/{sid}/files/src/main.py", content=patch,
                   headers={"Content-Type": "text/x-diff"})
    assert error_code(r) == "conflict"  # the hunk no longer applies

    r = http.patch(f"/v1/sessions/{sid}/files/src/main.py?offset=6", content=b"7",
                   headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 200
    assert http.get(f"/v1/sessions/{sid}/files/src/main.py").content == b"print(7)\n"

    assert error_code(http.post(f"/v1/sessions/{sid}/fs:rmdir", json={"path": "src"})) == \
        "failed_precondition"
    assert http.post(f"/v1/sessions/{sid}/fs:rmdir",
                     json={"path": "src", "recursive": True}).status_code == 200
    assert http.delete(f"/v1/sessions/{sid}/files/docs/main").status_code == 200

    man = http.get(f"/v1/sessions/{sid}/manifest").json()
    assert [(e["path"], e["kind"]) for e in man["entries"]] == [
        ("docs", "ENTRY_KIND_DIRECTORY"), ("src2", "ENTRY_KIND_DIRECTORY"),
        ("src2/app.py", "ENTRY_KIND_FILE")]
    assert all(e["hash"] for e in man["entries"])
    changes = http.get(f"/v1/sessions/{sid}/changes").json()["changes"]
    assert {(c["path"], c["kind"]) for c in changes} == {
        ("docs", "CHANGE_KIND_ADDED"), ("src2/app.py", "CHANGE_KIND_ADDED")}


def test_manifest_pagination_walks_everything_once(http):
    sid = new_session(http)["id"]
    names = ["a/x", "a/y", "a.txt", "b/c/d", "b/c/e", "z"]
    for n in names:
        put(http, sid, n, n.encode())
    seen, token = [], ""
    while True:
        body = http.get(f"/v1/sessions/{sid}/manifest",
                        params={"page_size": 2, "page_token": token}).json()
        seen += [e["path"] for e in body["entries"]]
        token = body["nextPageToken"]
        if not token:
            break
    assert seen == ["a", "a/x", "a/y", "a.txt", "b", "b/c", "b/c/d", "b/c/e", "z"]


# ---- persistence
def test_checkpoints_commits_diff_export_import(http):
    sid = new_session(http)["id"]
    put(http, sid, "f.txt", b"a\nb\nc\n")
    c1 = http.post(f"/v1/sessions/{sid}/checkpoints", json={"message": "one"}).json()
    put(http, sid, "f.txt", b"a\nB\nc\n")
    put(http, sid, "bin", b"\x00\x01")
    c2 = http.post(f"/v1/sessions/{sid}/checkpoints", json={"message": "two"}).json()
    listed = http.get(f"/v1/sessions/{sid}/checkpoints").json()["checkpoints"]
    assert [c["id"] for c in listed] == [c2["id"], c1["id"]]
    assert http.get(f"/v1/sessions/{sid}/checkpoints/{c1['id']}").json()["message"] == "one"

    d = http.get(f"/v1/sessions/{sid}/diff", params={"from": c1["id"], "to": c2["id"]}).json()
    by_path = {f["change"]["path"]: f for f in d["files"]}
    assert by_path["f.txt"]["linesAdded"] == 1 and by_path["f.txt"]["linesDeleted"] == 1
    assert "-b\n+B\n" in by_path["f.txt"]["unified"]
    assert by_path["bin"]["binary"] is True
    names = http.get(f"/v1/sessions/{sid}/diff",
                     params={"from": c1["id"], "name_only": "true"}).json()
    assert names["unified"] == ""

    cm = http.post(f"/v1/sessions/{sid}/commits", json={"message": "ship", "author": "ann"})
    assert cm.status_code == 201
    cm = cm.json()
    assert http.get(f"/v1/sessions/{sid}/commits").json()["commits"][0]["id"] == cm["id"]
    assert http.get(f"/v1/commits/{cm['id']}").json()["author"] == "ann"

    for fmt, opener in (("tar", lambda b: tarfile.open(fileobj=io.BytesIO(b)).getnames()),
                        ("tar.gz", lambda b: tarfile.open(fileobj=io.BytesIO(b)).getnames()),
                        ("zip", lambda b: zipfile.ZipFile(io.BytesIO(b)).namelist())):
        r = http.get(f"/v1/sessions/{sid}/export", params={"format": fmt, "at": c1["id"]})
        assert r.status_code == 200, r.text
        assert opener(r.content) == ["f.txt"]

    r = http.post(f"/v1/sessions/{sid}/import?path=vendor",
                  content=make_tar([("lib/x.py", b"x", None), ("lib/y.py", b"y", None)]))
    assert r.status_code == 200, r.text
    assert r.json()["files"] == "2"
    assert http.get(f"/v1/sessions/{sid}/files/vendor/lib/y.py").content == b"y"
    assert http.delete(f"/v1/sessions/{sid}/checkpoints/{c1['id']}").status_code == 200
    assert error_code(http.get(f"/v1/sessions/{sid}/checkpoints/{c1['id']}")) == "not_found"


def test_commits_outlive_their_session(http):
    sid = new_session(http)["id"]
    put(http, sid, "keep.txt", b"kept")
    cm = http.post(f"/v1/sessions/{sid}/commits", json={"message": "m"}).json()
    http.delete(f"/v1/sessions/{sid}")
    again = new_session(http, source={"commit": {"commitId": cm["id"]}})
    assert http.get(f"/v1/sessions/{again['id']}/files/keep.txt").content == b"kept"


# ---- bad input
@pytest.mark.parametrize("path", ["../etc/passwd", "a/../../b", "a/./b", "a//b", "a\x00b"])
def test_bad_paths_in_json_bodies(http, path):
    sid = new_session(http)["id"]
    for route, body in (("fs:mkdir", {"path": path}),
                        ("fs:symlink", {"path": path, "target": "x"}),
                        ("fs:rename", {"fromPath": "x", "toPath": path})):
        r = http.post(f"/v1/sessions/{sid}/{route}", json=body)
        assert r.status_code == 400 and error_code(r) == "invalid_argument", (route, r.text)


def test_absolute_paths_stay_inside_the_session(http, tmp_path: Path):
    sid = new_session(http)["id"]
    outside = tmp_path / "outside.txt"
    r = http.post(f"/v1/sessions/{sid}/fs:mkdir", json={"path": str(tmp_path), "parents": True})
    assert r.status_code == 200
    assert r.json()["path"] == str(tmp_path).lstrip("/")
    assert not outside.exists()


def test_paths_through_a_file(http):
    sid = new_session(http)["id"]
    put(http, sid, "file", b"x")
    r = put(http, sid, "file/child", b"y")
    assert r.status_code == 412 and error_code(r) == "failed_precondition"
    assert error_code(http.get(f"/v1/sessions/{sid}/files/file/child")) == "failed_precondition"
    r = http.post(f"/v1/sessions/{sid}/fs:mkdir", json={"path": "file/d", "parents": True})
    assert error_code(r) == "failed_precondition"


@pytest.mark.parametrize("members", [
    [("../escape.txt", b"x", None)],
    [("/abs/escape.txt", b"x", None)],
    [("ok/../../escape.txt", b"x", None)],
    [("link", None, "/etc/passwd")],
    [("d/link", None, "../../etc/passwd")],
    [("bad\udcffname", b"x", None)],
])
def test_hostile_archives_are_refused_whole(http, tmp_path: Path, members):
    before = set(Path("/").iterdir()) | set(tmp_path.parent.iterdir())
    tar = make_tar([("fine.txt", b"fine", None), *members])
    r = http.post("/v1/sessions?name=hostile", content=tar,
                  headers={"Content-Type": "application/x-tar"})
    assert r.status_code == 400 and error_code(r) == "invalid_argument", r.text
    sid = new_session(http)["id"]
    r = http.post(f"/v1/sessions/{sid}/import", content=tar)
    assert r.status_code == 400 and error_code(r) == "invalid_argument"
    assert http.get(f"/v1/sessions/{sid}/tree").json()["entries"] == []  # nothing half-imported
    assert set(Path("/").iterdir()) | set(tmp_path.parent.iterdir()) == before
    listed = http.get("/v1/sessions", params={"page_size": 1000}).json()["sessions"]
    assert not [s for s in listed if s["name"] == "hostile"]


def test_zip_slip_is_refused(http):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../../evil.sh", "boom")
    r = http.post("/v1/sessions", content=buf.getvalue(), headers={"Content-Type": "application/zip"})
    assert error_code(r) == "invalid_argument"


def test_garbage_and_empty_archives(http):
    for body in (b"", b"not an archive at all", b"\x1f\x8b\x08garbage"):
        r = http.post("/v1/sessions", content=body, headers={"Content-Type": "application/x-tar"})
        assert r.status_code == 400 and error_code(r) == "invalid_argument", body


def test_if_match_conflict_and_unknown_ids(http):
    sid = new_session(http)["id"]
    etag = put(http, sid, "f", b"v1").headers["ETag"]
    assert put(http, sid, "f", b"v2", headers={"If-Match": etag}).status_code == 200
    r = put(http, sid, "f", b"v3", headers={"If-Match": etag})
    assert r.status_code == 409 and error_code(r) == "conflict"
    assert http.get(f"/v1/sessions/{sid}/files/f").content == b"v2"
    r = http.delete(f"/v1/sessions/{sid}/files/f", headers={"If-Match": etag})
    assert error_code(r) == "conflict"

    ghost = "ses_" + "0" * 26
    for r in (http.get(f"/v1/sessions/{ghost}"),
              http.get(f"/v1/sessions/{ghost}/files/x"),
              http.post(f"/v1/sessions/{ghost}:fork", json={}),
              http.get(f"/v1/sessions/{sid}/checkpoints/ckp_" + "0" * 26),
              http.get("/v1/commits/cmt_" + "0" * 26),
              http.post(f"/v1/sessions/{sid}:restore", json={"checkpointId": "ckp_" + "0" * 26}),
              http.get(f"/v1/sessions/{sid}/diff", params={"from": "cmt_" + "0" * 26}),
              new_session_raw(http, {"source": {"session": {"sessionId": ghost}}})):
        assert r.status_code == 404 and error_code(r) == "not_found", r.text


def new_session_raw(http, body):
    return http.post("/v1/sessions", content=json.dumps(body),
                     headers={"Content-Type": "application/json"})


def test_huge_and_empty_files(http):
    sid = new_session(http)["id"]
    assert put(http, sid, "empty", b"").status_code == 200
    assert http.get(f"/v1/sessions/{sid}/files/empty").content == b""
    big = bytes(range(256)) * (5 * 4096 + 3)  # ~5 MiB, crosses chunk boundaries
    r = put(http, sid, "big", big)
    assert r.status_code == 200
    st = http.get(f"/v1/sessions/{sid}/stat/big").json()
    assert len(st["extents"]) == 6 and int(st["size"]) == len(big)
    assert http.get(f"/v1/sessions/{sid}/files/big").content == big
    r = http.get(f"/v1/sessions/{sid}/files/big", headers={"Range": "bytes=1048570-1048585"})
    assert r.status_code == 206 and r.content == big[1048570:1048586]


def test_host_paths_are_fenced(fresh_daemon, tmp_path: Path):
    """Over TCP, host directories are off unless import_roots allow them."""
    (tmp_path / "allowed").mkdir()
    (tmp_path / "allowed" / "f").write_text("ok")
    fresh_daemon.import_roots = []
    d = fresh_daemon.start()
    with d.http() as c:
        r = c.post("/v1/sessions", json={"source": {"directory": {"path": str(tmp_path / "allowed")}}})
        assert r.status_code == 403 and error_code(r) == "permission_denied"
    d.stop()
    d.import_roots = [str(tmp_path / "allowed")]
    d.start()
    with d.http() as c:
        ok = c.post("/v1/sessions", json={"source": {"directory": {"path": str(tmp_path / "allowed")}}})
        assert ok.status_code == 201
        r = c.post("/v1/sessions", json={"source": {"directory": {"path": str(tmp_path)}}})
        assert error_code(r) == "permission_denied"
        r = c.post("/v1/sessions", json={"source": {"git": {"url": f"file://{tmp_path}"}}})
        assert error_code(r) == "invalid_argument"


@pytest.mark.parametrize("fmt", ["tar", "tar.gz", "zip"])
def test_export_round_trips_content_modes_and_links(http, tmp_path: Path, fmt):
    sid = new_session(http)["id"]
    big = bytes(range(256)) * 12289  # > 3 MiB: several chunks
    put(http, sid, "bin/tool", b"#!/bin/sh\necho hi\n", params={"mode": "0755"})
    put(http, sid, "data/big.bin", big)
    http.post(f"/v1/sessions/{sid}/fs:symlink", json={"path": "data/link", "target": "big.bin"})
    r = http.get(f"/v1/sessions/{sid}/export", params={"format": fmt})
    assert r.status_code == 200
    archive = tmp_path / f"out.{fmt}"
    archive.write_bytes(r.content)
    out = tmp_path / "x"
    out.mkdir()
    if fmt == "zip":
        with zipfile.ZipFile(archive) as zf:
            assert zf.read("data/big.bin") == big
            assert (zf.getinfo("bin/tool").external_attr >> 16) & 0o777 == 0o755
    else:  # the system's GNU tar must agree with us, not just Python's tarfile
        subprocess.run(["tar", "-xf", str(archive), "-C", str(out)], check=True)
        assert (out / "data" / "big.bin").read_bytes() == big
        assert (out / "bin" / "tool").stat().st_mode & 0o777 == 0o755
        assert (out / "data" / "link").readlink() == Path("big.bin")
    # and the archive imports back to the same tree
    back = http.post("/v1/sessions", content=r.content,
                     headers={"Content-Type": "application/octet-stream"}).json()
    assert http.get(f"/v1/sessions/{back['id']}/files/data/big.bin").content == big
