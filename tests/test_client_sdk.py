"""The client SDK: path encoding and address resolution (pure functions), then
the sync and async clients against a real daemon. No mock daemon: every request
the SDK builds is checked by the daemon that has to serve it."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import signal
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from aether import pb
from aether.client import AsyncClient, Client, aconnect, connect, ensure_local_daemon, source
from aether.client._base import file_path, seg
from aether.client.connect import parse_server, resolve
from aether.errors import (
    AetherError,
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unauthenticated,
)

# ---------------------------------------------------------------- without a daemon


def test_file_paths_are_encoded_per_segment():
    assert file_path("a/b.txt") == "a/b.txt"
    assert file_path("/lead/slash") == "lead/slash"
    assert file_path("sp ace/h#sh?q%.txt") == "sp%20ace/h%23sh%3Fq%25.txt"
    assert file_path("ünï/cödé") == "%C3%BCn%C3%AF/c%C3%B6d%C3%A9"
    # dot segments survive URL normalisation, so the daemon can refuse them
    assert file_path("../etc/passwd") == "%2E%2E/etc/passwd"
    assert file_path("a/./b") == "a/%2E/b"
    assert file_path("a/.hidden/..x") == "a/.hidden/..x"
    assert seg("ses_x/y:z") == "ses_x%2Fy%3Az"
    with pytest.raises(InvalidArgument):
        file_path("/")
    with pytest.raises(InvalidArgument):
        seg("")


def test_parse_server_forms():
    assert parse_server("http://h:1") == ("http://h:1", None)
    assert parse_server("https://h/") == ("https://h", None)
    assert parse_server("tcp:127.0.0.1:99") == ("http://127.0.0.1:99", None)
    assert parse_server("localhost:99") == ("http://localhost:99", None)
    assert parse_server("unix:/run/a.sock") == ("http://aetherd", "/run/a.sock")
    assert parse_server("unix:///run/a.sock") == ("http://aetherd", "/run/a.sock")
    with pytest.raises(InvalidArgument):
        parse_server("nonsense")


def test_resolve_flags_override_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("AETHER_SERVER", "http://env:1")
    monkeypatch.setenv("AETHER_TOKEN", "envtok")
    t = resolve()
    assert (t.base_url, t.token, t.local) == ("http://env:1", "envtok", False)
    t = resolve("http://flag:2", "flagtok")
    assert (t.base_url, t.token) == ("http://flag:2", "flagtok")
    monkeypatch.delenv("AETHER_SERVER")
    monkeypatch.setenv("AETHER_DATA_DIR", str(tmp_path))
    t = resolve()
    assert t.local and t.same_host
    assert t.data_dir == tmp_path and t.uds == str(tmp_path / "http.sock")


def test_unreachable_daemon_is_unavailable(tmp_path):
    c = Client(uds=str(tmp_path / "nothing.sock"))
    with pytest.raises(AetherError) as exc:
        c.health()
    assert exc.value.code == "unavailable"


# ---------------------------------------------------------------- against a daemon


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def client(daemon):
    with Client(daemon.http_url, token=daemon.token) as c:
        yield c


def test_sessions_lifecycle(client: Client, tmp_path: Path):
    s = client.create_session(name="life", labels={"team": "sdk"}, tags=["a"])
    assert s.id.startswith("ses_") and s.state == pb.SessionState.ACTIVE
    assert client.get_session(s.id).labels == {"team": "sdk"}

    others = [client.create_session(name=f"o{i}", labels={"team": "sdk"}) for i in range(3)]
    ids = [x.id for x in client.iter_sessions(labels={"team": "sdk"}, page_size=2)]
    assert sorted(ids) == sorted([s.id, *(o.id for o in others)])
    assert [x.id for x in client.iter_sessions(tags=["a"], labels={"team": "sdk"})] == [s.id]
    assert list(client.iter_sessions(labels={"team": "nobody"})) == []

    updated = client.update_session(s.id, name="renamed", tags=["a", "b"])
    assert (updated.name, list(updated.tags)) == ("renamed", ["a", "b"])
    assert updated.labels == {"team": "sdk"}  # not in the mask: unchanged

    client.write_file(s.id, "f.txt", b"v1\n")
    fork = client.fork_session(s.id, name="fork")
    assert fork.parent_session_id == s.id
    assert client.read_file(fork.id, "f.txt").data == b"v1\n"

    archived = client.archive_session(s.id)
    assert archived.state == pb.SessionState.ARCHIVED
    with pytest.raises(FailedPrecondition):
        client.write_file(s.id, "f.txt", b"v2\n")

    client.delete_session(fork.id)
    with pytest.raises(NotFound):
        client.get_session(fork.id)


def _stop(data_dir: Path) -> None:
    for name in ("aetherd.pid", "aetherd.autostart.pid"):
        try:
            pid = int((data_dir / name).read_text())
            os.kill(pid, signal.SIGTERM)
        except (OSError, ValueError):
            continue
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                # Autostarted by this process, the daemon is our child: once it
                # exits it stays a zombie (kill(pid, 0) still succeeds) until reaped.
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    return
            except ChildProcessError:
                pass  # someone else's: wait for it to vanish
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
        return


@pytest.fixture(scope="module")
def local_dir() -> Iterator[Path]:
    """The local mode: a daemon on a unix socket, started by the SDK's autostart.
    Its callers are trusted as the socket's owner, so host paths are allowed."""
    data_dir = Path(tempfile.mkdtemp(prefix="aether-sdk-", dir="/tmp"))  # short socket path
    try:
        assert ensure_local_daemon(data_dir) is not None  # started it
        assert ensure_local_daemon(data_dir) is None  # reuses it
        yield data_dir
    finally:
        _stop(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def local_client(local_dir: Path) -> Iterator[Client]:
    with Client(uds=str(local_dir / "http.sock")) as c:
        yield c


def test_connect_uses_the_environment(local_dir: Path, monkeypatch):
    monkeypatch.delenv("AETHER_SERVER", raising=False)
    monkeypatch.setenv("AETHER_DATA_DIR", str(local_dir))
    with connect() as c:
        assert c.health().status
        sid = c.create_session(name="via-connect").id

    async def run() -> None:
        async with await aconnect() as ac:
            assert (await ac.get_session(sid)).name == "via-connect"

    asyncio.run(run())


def test_create_from_every_source(local_client: Client, tmp_path: Path):
    client = local_client
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "mod.py").write_text("x = 1\n")
    (src / "README").write_text("hi\n")

    from_dir = client.create_session(source.directory(src))
    assert client.read_file(from_dir.id, "pkg/mod.py").data == b"x = 1\n"

    for fmt in ("tar.gz", None):
        up = client.create_session(source.archive(_tar({"a/b.txt": b"B"}), fmt), name="up")
        assert client.read_file(up.id, "a/b.txt").data == b"B"
        assert up.name == "up"

    packed = client.create_session(source.archive(source.pack_directory(src)))
    assert client.read_file(packed.id, "README").data == b"hi\n"

    ckp = client.create_checkpoint(from_dir.id, message="c1")
    cmt = client.create_commit(from_dir.id, message="m1", author="me")
    client.write_file(from_dir.id, "README", b"changed\n")
    for src_ in (source.checkpoint(ckp.id), source.commit(cmt.id)):
        s = client.create_session(src_)
        assert client.read_file(s.id, "README").data == b"hi\n"
    s = client.create_session(source.session(from_dir.id))
    assert client.read_file(s.id, "README").data == b"changed\n"


def test_create_from_git(local_client: Client, tmp_path: Path):
    client = local_client
    import subprocess

    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "hello.txt").write_text("from git\n")
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@e", "PATH": "/usr/bin:/bin"}
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-qm", "c"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True, env=env)
    s = client.create_session(source.git(str(repo), "main"))
    assert client.read_file(s.id, "hello.txt").data == b"from git\n"


def test_files(client: Client):
    sid = client.create_session().id
    info = client.write_file(sid, "dir one/hé#llo?.txt", b"hello world")
    assert info.path == "dir one/hé#llo?.txt" and info.size == 11
    got = client.read_file(sid, "dir one/hé#llo?.txt")
    assert (got.data, got.hash, got.size) == (b"hello world", info.hash, 11)
    part = client.read_file(sid, "dir one/hé#llo?.txt", offset=6, length=3)
    assert (part.data, part.size) == (b"wor", 11)
    assert client.read_file(sid, "dir one/hé#llo?.txt", offset=6).data == b"world"
    assert b"".join(client.stream_file(sid, "dir one/hé#llo?.txt")) == b"hello world"
    assert b"".join(client.stream_file(sid, "dir one/hé#llo?.txt", offset=2, length=3)) == b"llo"
    with pytest.raises(NotFound):
        b"".join(client.stream_file(sid, "missing"))

    st = client.stat(sid, "dir one/hé#llo?.txt")
    assert st.kind == pb.EntryKind.FILE and st.hash == info.hash

    with pytest.raises(Conflict):
        client.write_file(sid, "dir one/hé#llo?.txt", b"x", if_match="0" * 64)
    client.write_file(sid, "dir one/hé#llo?.txt", b"hello there", if_match=info.hash)

    client.mkdir(sid, "a/b/c", parents=True)
    client.symlink(sid, "link", "dir one")
    client.copy(sid, "dir one", "copy")
    client.rename(sid, "copy", "moved")
    names = sorted(e.path for e in client.iter_tree(sid))
    assert names == ["a", "dir one", "link", "moved"]
    deep = {e.path for e in client.iter_tree(sid, recursive=True)}
    assert "a/b/c" in deep and "moved/hé#llo?.txt" in deep
    client.rmdir(sid, "a", recursive=True)

    client.write_file(sid, "p.txt", b"one\ntwo\n")
    client.patch_file(sid, "p.txt", "--- a/p.txt\n+++ b/p.txt\n@@ -1,2 +1,2 @@\n one\n-two\n+TWO\n")
    assert client.read_file(sid, "p.txt").data == b"one\nTWO\n"
    client.write_range(sid, "p.txt", b"ONE", 0)
    assert client.read_file(sid, "p.txt").data == b"ONE\nTWO\n"

    client.delete_file(sid, "p.txt")
    with pytest.raises(NotFound):
        client.stat(sid, "p.txt")
    with pytest.raises(InvalidArgument):
        client.read_file(sid, "../escape")

    manifest = [e.path for e in client.iter_manifest(sid, page_size=2)]
    assert "dir one/hé#llo?.txt" in manifest and "link" in manifest
    changes = client.list_changes(sid)
    assert {c.path for c in changes.changes} >= {"dir one/hé#llo?.txt", "link"}


def test_persistence(client: Client):
    sid = client.create_session().id
    client.write_file(sid, "a.txt", b"one\n")
    c1 = client.create_checkpoint(sid, message="first", labels={"k": "v"})
    assert client.get_checkpoint(sid, c1.id).message == "first"
    client.write_file(sid, "a.txt", b"two\n")
    client.write_file(sid, "b.txt", b"new\n")
    c2 = client.create_checkpoint(sid, message="second")
    assert [c.id for c in client.iter_checkpoints(sid)] == [c2.id, c1.id]

    d = client.diff(sid, from_=c1.id, to=c2.id)
    assert {f.change.path for f in d.files} == {"a.txt", "b.txt"}
    assert "-one" in d.unified and "+two" in d.unified
    names = client.diff(sid, from_=c1.id, name_only=True)
    assert {f.change.path for f in names.files} == {"a.txt", "b.txt"}

    commit = client.create_commit(sid, message="ship", author="sdk")
    assert client.get_commit(commit.id).message == "ship"
    assert [c.id for c in client.iter_commits(sid)] == [commit.id]

    restored = client.restore_session(sid, c1.id)
    assert restored.root_hash == c1.root_hash
    assert client.read_file(sid, "a.txt").data == b"one\n"
    client.delete_checkpoint(sid, c1.id)
    with pytest.raises(NotFound):
        client.get_checkpoint(sid, c1.id)

    # export: every format, a past state, a subtree
    with tarfile.open(fileobj=io.BytesIO(b"".join(client.export(sid, format="tar.gz")))) as tar:
        assert tar.extractfile("a.txt").read() == b"one\n"
    buf = io.BytesIO()
    n = client.export_to(sid, buf, format="zip", at=commit.id)
    assert n == len(buf.getvalue())
    with zipfile.ZipFile(buf) as z:
        assert z.read("b.txt") == b"new\n"
    with client.export(sid, format="tar") as stream:
        raw = b"".join(stream)
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        assert "a.txt" in tar.getnames()

    imported = client.import_archive(sid, _tar({"x/y.txt": b"Y", "z.txt": b"Z"}), path="in")
    assert imported.files == 2
    assert client.read_file(sid, "in/x/y.txt").data == b"Y"
    client.delete_session(sid)
    assert client.get_commit(commit.id).id == commit.id  # commits outlive sessions


def test_errors_against_daemon(client: Client, daemon):
    with pytest.raises(NotFound):
        client.get_session("ses_" + "a" * 26)
    with pytest.raises(NotFound):
        client.get_commit("cmt_" + "a" * 26)
    with Client(daemon.http_url, token="wrong") as bad:
        with pytest.raises(Unauthenticated):
            bad.list_sessions()
    with Client(daemon.http_url) as anonymous:
        with pytest.raises(Unauthenticated):
            anonymous.list_sessions()


async def test_async_client(daemon):
    async with AsyncClient(daemon.http_url, token=daemon.token) as c:
        assert (await c.health()).status in ("ok", "degraded")
        s = await c.create_session(name="async", labels={"via": "async"})
        await asyncio.gather(*(c.write_file(s.id, f"f{i}.txt", str(i).encode())
                               for i in range(5)))
        assert (await c.read_file(s.id, "f3.txt")).data == b"3"
        assert [chunk async for chunk in c.stream_file(s.id, "f4.txt")] == [b"4"]
        entries = [e.path async for e in c.iter_tree(s.id, page_size=2)]
        assert sorted(entries) == [f"f{i}.txt" for i in range(5)]
        assert [x.id async for x in c.iter_sessions(labels={"via": "async"})] == [s.id]
        ckp = await c.create_checkpoint(s.id, message="a")
        await c.delete_file(s.id, "f0.txt")
        d = await c.diff(s.id, from_=ckp.id)
        assert [f.change.path for f in d.files] == ["f0.txt"]
        await c.restore_session(s.id, ckp.id)
        chunks = [chunk async for chunk in c.export(s.id, format="tar")]
        with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
            assert sorted(tar.getnames()) == [f"f{i}.txt" for i in range(5)]
        up = await c.create_session(source.archive(_tar({"q.txt": b"Q"})))
        assert (await c.read_file(up.id, "q.txt")).data == b"Q"
        with pytest.raises(NotFound):
            await c.get_session("ses_" + "b" * 26)
        with pytest.raises(InvalidArgument):
            await c.stat(s.id, "a/../../b")
