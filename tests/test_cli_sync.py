"""The installed `aether` binary against a real daemon: `export --to-dir` and
`import --from-dir` (writing only what differs, never outside the directory),
progress bars, `-` for stdin/stdout, session labels/tags/sources, `fs tree | ln |
cp | patch`, and coloured diffs on a terminal."""

from __future__ import annotations

import io
import json
import os
import pty
import select
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import blake3
import pytest
from cli_helpers import AETHER, aether, err_line, new_session, out, run

from aether.client import Client
from aether.client.dirsync import LocalDir, check_path
from aether.errors import FailedPrecondition, InvalidArgument


def on_terminal(*args: str, env: dict[str, str], stream: str = "stderr",
                timeout: float = 60) -> tuple[int, bytes, bytes]:
    """Run with `stream` ("stdout" or "stderr") on a pseudo-terminal:
    (exit code, what reached the terminal, the other stream)."""
    master, slave = pty.openpty()
    kw = {"stdout": slave, "stderr": subprocess.PIPE} if stream == "stdout" else {
        "stdout": subprocess.PIPE, "stderr": slave}
    proc = subprocess.Popen([str(AETHER), *args], env=env, stdin=subprocess.DEVNULL, **kw)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + timeout
    other = proc.stderr if stream == "stdout" else proc.stdout
    assert other is not None
    rest = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master, other], [], [], 0.1)
        if master in ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed its end
                data = b""
            seen += data
            if not data and proc.poll() is not None:
                break
        if other in ready:
            rest += os.read(other.fileno(), 65536)
        if not ready and proc.poll() is not None:
            break
    os.close(master)
    rest += other.read()
    proc.wait(timeout=10)
    return proc.returncode, seen, rest


@pytest.fixture(scope="module")
def sdk(daemon):
    with Client(daemon.http_url, token=daemon.token) as c:
        yield c


def sync_json(env: dict[str, str], *args: str) -> dict:
    return json.loads(out(aether(env, *args, "--json")))


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime_ns) of everything under root, symlinks not followed."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            s = p.lstat()
            found[p.relative_to(root).as_posix()] = (s.st_ino, s.st_mtime_ns)
    return found


def populated(sdk: Client) -> str:
    """A session with files, an executable, a symlink and an empty directory (set
    up through the SDK: the CLI calls are what the tests are about)."""
    sid = sdk.create_session(name="sync").id
    sdk.write_file(sid, "a.txt", b"alpha\n")
    sdk.write_file(sid, "bin/run.sh", b"#!/bin/sh\necho hi\n", mode=0o755)
    sdk.write_file(sid, "src/deep/mod.py", b"x = 1\n")
    sdk.symlink(sid, "link", "a.txt")
    sdk.mkdir(sid, "empty")
    return sid


ALL = ["a.txt", "bin", "bin/run.sh", "empty", "link", "src", "src/deep", "src/deep/mod.py"]


# ---------------------------------------------------------------- export --to-dir


def test_export_to_dir_writes_only_what_differs(env, sdk, tmp_path):
    sid = populated(sdk)
    dest = tmp_path / "work"

    human = out(aether(env, "export", sid, "--to-dir", str(dest)))
    assert f"Exported {sid} -> {dest}: 8 added, 0 changed, 0 deleted, 0 unchanged" in human
    assert "B transferred" in human
    assert (dest / "a.txt").read_bytes() == b"alpha\n"
    assert (dest / "src/deep/mod.py").read_bytes() == b"x = 1\n"
    assert os.readlink(dest / "link") == "a.txt"
    assert (dest / "empty").is_dir() and not any((dest / "empty").iterdir())
    assert (dest / "bin/run.sh").stat().st_mode & 0o777 == 0o755
    assert (dest / "a.txt").stat().st_mode & 0o111 == 0
    assert not list(dest.rglob(".aether-sync-*"))

    # a second run: nothing moves, nothing is rewritten
    before = snapshot(dest)
    time.sleep(0.02)
    again = sync_json(env, "export", sid, "--to-dir", str(dest))
    assert again == {
        "direction": "export", "session": sid, "directory": str(dest), "at": "", "path": "",
        "dryRun": False, "added": 0, "changed": 0, "deleted": 0, "unchanged": 8,
        "skipped": 0, "bytes": 0,
        "paths": {"added": [], "changed": [], "deleted": [], "skipped": []},
    }
    assert snapshot(dest) == before
    assert out(aether(env, "-q", "export", sid, "--to-dir", str(dest))) == ""

    # one remote change: only that file is rewritten
    sdk.write_file(sid, "src/deep/mod.py", b"x = 2  # changed\n")
    r = sync_json(env, "export", sid, "--to-dir", str(dest))
    assert r["paths"]["changed"] == ["src/deep/mod.py"] and r["changed"] == 1
    assert r["added"] == r["deleted"] == 0 and r["unchanged"] == 7
    assert r["bytes"] == len(b"x = 2  # changed\n")
    after = snapshot(dest)
    assert (dest / "src/deep/mod.py").read_bytes() == b"x = 2  # changed\n"
    assert after["src/deep/mod.py"] != before["src/deep/mod.py"]
    for p in ALL:
        if p not in ("src/deep/mod.py", "src/deep"):
            assert after[p] == before[p], p

    # the executable bit alone: a chmod, no bytes
    sdk.write_file(sid, "a.txt", b"alpha\n", mode=0o755)
    r = sync_json(env, "export", sid, "--to-dir", str(dest))
    assert r["paths"]["changed"] == ["a.txt"] and r["bytes"] == 0
    assert (dest / "a.txt").stat().st_mode & 0o111
    assert (dest / "a.txt").stat().st_ino == before["a.txt"][0]

    # local additions stay without --delete, go with it
    (dest / "local.txt").write_text("mine\n")
    (dest / "junk" / "deeper").mkdir(parents=True)
    (dest / "junk" / "deeper" / "f").write_text("f\n")
    (dest / "junk-2.txt").write_text("sorts between junk and junk/\n")
    r = sync_json(env, "export", sid, "--to-dir", str(dest))
    assert r["deleted"] == 0 and (dest / "local.txt").exists()
    dry = sync_json(env, "export", sid, "--to-dir", str(dest), "--delete", "--dry-run")
    assert dry["dryRun"] and dry["paths"]["deleted"] == [
        "junk", "junk-2.txt", "junk/deeper", "junk/deeper/f", "local.txt"]
    assert (dest / "local.txt").exists()
    verbose = out(aether(env, "export", sid, "--to-dir", str(dest), "--delete", "-v"))
    assert "- local.txt\n" in verbose and "- junk\n" in verbose and "5 deleted" in verbose
    assert not (dest / "local.txt").exists() and not (dest / "junk").exists()
    assert not (dest / "junk-2.txt").exists()

    # local edits are overwritten by the session's content
    (dest / "a.txt").write_text("scribbled\n")
    r = sync_json(env, "export", sid, "--to-dir", str(dest))
    assert r["paths"]["changed"] == ["a.txt"] and (dest / "a.txt").read_text() == "alpha\n"


def test_export_at_a_state_and_a_subtree(env, sdk, tmp_path):
    sid = populated(sdk)
    ckp = sdk.create_checkpoint(sid, message="v1").id
    sdk.write_file(sid, "a.txt", b"later\n")
    sdk.rmdir(sid, "src", recursive=True)

    old = tmp_path / "old"
    r = sync_json(env, "export", sid, "--to-dir", str(old), "--at", ckp)
    assert r["at"] == ckp and r["added"] == 8
    assert (old / "a.txt").read_text() == "alpha\n" and (old / "src/deep/mod.py").exists()

    # back to the working state: the removed subtree goes only with --delete
    r = sync_json(env, "export", sid, "--to-dir", str(old), "--delete")
    assert r["paths"]["changed"] == ["a.txt"]
    assert r["paths"]["deleted"] == ["src", "src/deep", "src/deep/mod.py"]
    assert not (old / "src").exists() and (old / "a.txt").read_text() == "later\n"

    sub = tmp_path / "sub"
    r = sync_json(env, "export", sid, "--to-dir", str(sub), "--path", "bin")
    assert r["path"] == "bin" and r["paths"]["added"] == ["run.sh"]
    assert sorted(os.listdir(sub)) == ["run.sh"]


def test_export_replaces_across_kinds(env, sdk, tmp_path):
    sid = sdk.create_session().id
    sdk.write_file(sid, "was_dir", b"now a file\n")
    sdk.write_file(sid, "was_file/inner.txt", b"inner\n")
    sdk.symlink(sid, "was_link", "was_file")
    dest = tmp_path / "kinds"
    (dest / "was_dir" / "child").mkdir(parents=True)
    (dest / "was_dir" / "child" / "x").write_text("x")
    (dest / "was_file").write_text("a file\n")
    (dest / "was_link").write_text("not a link\n")

    # replacing a non-empty directory deletes what it holds: only with --delete
    before = snapshot(dest)
    proc = aether(env, "export", sid, "--to-dir", str(dest), check=4)
    assert err_line(proc).startswith("error: conflict: ") and "--delete" in proc.stderr.decode()
    assert snapshot(dest) == before  # compared first: nothing was changed

    r = sync_json(env, "export", sid, "--to-dir", str(dest), "--delete")
    assert sorted(r["paths"]["changed"]) == ["was_dir", "was_file", "was_link"]
    assert r["paths"]["deleted"] == ["was_dir/child", "was_dir/child/x"]
    assert (dest / "was_dir").read_text() == "now a file\n"
    assert (dest / "was_file" / "inner.txt").read_text() == "inner\n"
    assert os.readlink(dest / "was_link") == "was_file"
    assert sync_json(env, "export", sid, "--to-dir", str(dest))["unchanged"] == 4


def test_export_never_writes_outside_the_directory(env, sdk, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("precious\n")
    dest = tmp_path / "dest"

    # the session links out of the directory: the link is written as a link, never followed
    sid = sdk.create_session().id
    sdk.symlink(sid, "escape", str(outside))
    sdk.symlink(sid, "relative", "../outside/keep.txt")
    sdk.write_file(sid, "ok.txt", b"ok\n")
    sync_json(env, "export", sid, "--to-dir", str(dest))
    assert os.readlink(dest / "escape") == str(outside)
    assert os.readlink(dest / "relative") == "../outside/keep.txt"

    # then the link becomes a directory with files: they land in dest, not outside
    sdk.delete_file(sid, "escape")
    sdk.write_file(sid, "escape/pwned.txt", b"gotcha\n")
    sdk.delete_file(sid, "relative")
    sdk.write_file(sid, "relative", b"overwrite?\n")
    r = sync_json(env, "export", sid, "--to-dir", str(dest))
    assert sorted(r["paths"]["changed"]) == ["escape", "relative"]
    assert (dest / "escape").is_dir() and not (dest / "escape").is_symlink()
    assert (dest / "escape" / "pwned.txt").read_text() == "gotcha\n"
    assert not (dest / "relative").is_symlink()
    assert sorted(os.listdir(outside)) == ["keep.txt"]
    assert (outside / "keep.txt").read_text() == "precious\n"

    # a symlink already in the directory where the session has a directory
    dest2 = tmp_path / "dest2"
    dest2.mkdir()
    (dest2 / "escape").symlink_to(outside)
    (dest2 / "ok.txt").symlink_to(outside / "keep.txt")
    sync_json(env, "export", sid, "--to-dir", str(dest2))
    assert (dest2 / "escape" / "pwned.txt").read_text() == "gotcha\n"
    assert not (dest2 / "ok.txt").is_symlink() and (dest2 / "ok.txt").read_text() == "ok\n"
    assert sorted(os.listdir(outside)) == ["keep.txt"]
    assert (outside / "keep.txt").read_text() == "precious\n"

    # --delete removes links, not what they point at
    (dest2 / "extra").symlink_to(outside)
    sync_json(env, "export", sid, "--to-dir", str(dest2), "--delete")
    assert not os.path.lexists(dest2 / "extra")
    assert sorted(os.listdir(outside)) == ["keep.txt"]


def test_local_writes_refuse_symlinks_and_unsafe_paths(tmp_path):
    """What stands between a hostile manifest (a daemon cannot hold one: a
    symlink has no children, paths have no '..') and the host: the local side
    of the sync refuses it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(outside)
    for bad in ("", "../x", "/etc/passwd", "a/../../x", "a//b", "./a", "a/.", "x\x00y"):
        with pytest.raises(InvalidArgument):
            check_path(bad)
    with LocalDir(root, create=False) as local:
        with pytest.raises(FailedPrecondition):
            local.write("link/pwned.txt", [b"gotcha"], 0o644, 0, lambda n: None)
        with pytest.raises(FailedPrecondition):
            local.mkdir("link/sub")
        with pytest.raises(InvalidArgument):
            local.write("../escaped.txt", [b"x"], 0o644, 0, lambda n: None)
        local.write("fine.txt", [b"ok"], 0o644, 0, lambda n: None)
    assert os.listdir(outside) == []
    assert not (tmp_path / "escaped.txt").exists()
    assert (root / "fine.txt").read_bytes() == b"ok"


# ---------------------------------------------------------------- import --from-dir


def test_import_from_dir_writes_only_what_differs(env, sdk, tmp_path):
    src = tmp_path / "src"
    (src / "lib").mkdir(parents=True)
    (src / "lib" / "util.py").write_text("def f():\n    return 1\n")
    (src / "README.md").write_text("# readme\n")
    (src / "run.sh").write_text("#!/bin/sh\n")
    (src / "run.sh").chmod(0o755)
    (src / "docs").mkdir()  # empty
    (src / "current").symlink_to("lib/util.py")
    sid = sdk.create_session().id

    human = out(aether(env, "import", sid, "--from-dir", str(src)))
    assert f"Imported {src} -> {sid}: 6 added, 0 changed, 0 deleted, 0 unchanged" in human
    manifest = {e.path: e for e in sdk.iter_manifest(sid)}
    assert set(manifest) == {"README.md", "current", "docs", "lib", "lib/util.py", "run.sh"}
    assert manifest["run.sh"].mode == 0o755 and manifest["README.md"].mode & 0o111 == 0
    assert manifest["current"].symlink_target == "lib/util.py"
    assert manifest["README.md"].hash == blake3.blake3(b"# readme\n").hexdigest()
    ckp = sdk.create_checkpoint(sid).id

    again = sync_json(env, "import", sid, "--from-dir", str(src))
    assert (again["added"], again["changed"], again["deleted"], again["bytes"]) == (0, 0, 0, 0)
    assert again["unchanged"] == 6 and again["direction"] == "import"
    assert sdk.list_changes(sid, since=ckp).changes == []

    # one file edited, one added, one made executable: the session sees only those
    (src / "lib" / "util.py").write_text("def f():\n    return 2\n")
    (src / "NEW.txt").write_text("new\n")
    (src / "README.md").chmod(0o755)
    r = sync_json(env, "import", sid, "--from-dir", str(src))
    assert r["paths"]["added"] == ["NEW.txt"]
    assert r["paths"]["changed"] == ["README.md", "lib/util.py"]
    assert r["bytes"] == len("new\n") + len("# readme\n") + len("def f():\n    return 2\n")
    changed = {c.path for c in sdk.list_changes(sid, since=ckp).changes}
    assert changed == {"NEW.txt", "README.md", "lib/util.py"}
    assert out(aether(env, "diff", sid, "--from", ckp, "--name-only")).split() == [
        "NEW.txt", "README.md", "lib/util.py"]
    assert sdk.stat(sid, "README.md").mode & 0o111

    # a deletion reaches the session only with --delete
    (src / "NEW.txt").unlink()
    shutil.rmtree(src / "docs")
    r = sync_json(env, "import", sid, "--from-dir", str(src))
    assert r["deleted"] == 0 and sdk.stat(sid, "NEW.txt").size == 4
    verbose = out(aether(env, "import", sid, "--from-dir", str(src), "--delete", "-v"))
    assert "- NEW.txt\n" in verbose and "- docs\n" in verbose
    assert {c.path for c in sdk.list_changes(sid, since=ckp).changes} == {
        "README.md", "docs", "lib/util.py"}

    # into a subtree that does not exist yet
    r = sync_json(env, "import", sid, "--from-dir", str(src / "lib"), "--path", "vendor/lib")
    assert r["path"] == "vendor/lib" and r["paths"]["added"] == ["util.py"]
    assert out(aether(env, "fs", "cat", sid, "vendor/lib/util.py")) == "def f():\n    return 2\n"


def test_import_is_conditional_and_skips_special_files(env, sdk, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("one\n")
    os.mkfifo(src / "pipe")
    sid = sdk.create_session().id
    r = sync_json(env, "import", sid, "--from-dir", str(src))
    assert r["paths"]["added"] == ["a.txt"] and r["paths"]["skipped"] == ["pipe"]
    proc = aether(env, "import", sid, "--from-dir", str(src))
    assert "Skipped 1 path" in proc.stderr.decode()
    assert {e.path for e in sdk.iter_manifest(sid)} == {"a.txt"}

    # a local dir where the session has a non-empty dir of a different kind
    sdk.write_file(sid, "tree/inner.txt", b"inner\n")
    (src / "tree").write_text("flat\n")
    proc = aether(env, "import", sid, "--from-dir", str(src), check=4)
    assert err_line(proc).startswith("error: conflict: ")
    assert sdk.stat(sid, "tree/inner.txt").size == 6
    r = sync_json(env, "import", sid, "--from-dir", str(src), "--delete")
    assert r["paths"]["changed"] == ["tree"] and r["paths"]["deleted"] == ["tree/inner.txt"]
    assert sdk.read_file(sid, "tree").data == b"flat\n"


def test_import_keeps_symlinks_as_links(env, sdk, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret\n")
    src = tmp_path / "src"
    src.mkdir()
    (src / "out").symlink_to(outside)
    (src / "file").symlink_to(outside / "secret.txt")
    sid = sdk.create_session().id
    r = sync_json(env, "import", sid, "--from-dir", str(src))
    assert r["bytes"] == 0 and sorted(r["paths"]["added"]) == ["file", "out"]
    manifest = {e.path: e for e in sdk.iter_manifest(sid)}
    assert set(manifest) == {"file", "out"}  # nothing read through the links
    assert manifest["out"].symlink_target == str(outside)


def test_sync_bad_input(env, sdk, tmp_path):
    unknown = "ses_" + "a" * 26
    dest = tmp_path / "never"
    proc = aether(env, "export", unknown, "--to-dir", str(dest), check=3)
    assert err_line(proc).startswith("error: not_found: ")
    assert not dest.exists()  # nothing created for a session that does not exist
    (tmp_path / "d").mkdir()
    proc = aether(env, "import", unknown, "--from-dir", str(tmp_path / "d"), check=3)
    assert err_line(proc).startswith("error: not_found: ")

    sid = sdk.create_session().id
    sdk.write_file(sid, "a.txt", b"a\n")
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    proc = aether(env, "export", sid, "--to-dir", str(a_file), check=1)
    assert err_line(proc).startswith("error: failed_precondition: not a directory")
    proc = aether(env, "import", sid, "--from-dir", str(a_file), check=1)
    assert err_line(proc).startswith("error: failed_precondition: not a directory")
    proc = aether(env, "import", sid, "--from-dir", str(tmp_path / "missing"), check=3)
    assert err_line(proc).startswith("error: not_found: no such directory")
    proc = aether(env, "export", sid, "--to-dir", str(tmp_path / "x"), "--path", "../up", check=1)
    assert err_line(proc).startswith("error: invalid_argument: ")
    proc = aether(env, "export", sid, "--to-dir", str(tmp_path / "x"), "--path", "a.txt", check=1)
    assert err_line(proc).startswith("error: failed_precondition: not a directory")

    # usage: exactly one destination / source, and options that belong to the other form
    aether(env, "export", sid, check=2)
    aether(env, "export", sid, "-o", "-", "--to-dir", str(tmp_path), check=2)
    aether(env, "export", sid, "--to-dir", str(tmp_path / "y"), "--format", "zip", check=2)
    aether(env, "export", sid, "-o", str(tmp_path / "a.tar"), "--delete", check=2)
    aether(env, "import", sid, check=2)
    aether(env, "import", sid, str(a_file), "--from-dir", str(tmp_path), check=2)
    aether(env, "import", sid, str(a_file), "--dry-run", check=2)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


# ---------------------------------------------------------------- progress bars


def test_progress_bars_only_for_people_at_a_terminal(env, sdk, tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(9 << 20))  # over fs put's streaming threshold
    sid = sdk.create_session().id
    tty_env = {k: v for k, v in env.items() if k != "NO_COLOR"}

    code, bar, stdout = on_terminal("fs", "put", sid, "big.bin", str(big), env=tty_env)
    assert code == 0 and b"Uploading" in bar and b"Wrote big.bin" in stdout
    assert sdk.stat(sid, "big.bin").hash == blake3.blake3(big.read_bytes()).hexdigest()

    code, bar, _ = on_terminal("export", sid, "--to-dir", str(tmp_path / "d"), env=tty_env)
    assert code == 0 and b"Exporting" in bar
    assert (tmp_path / "d" / "big.bin").read_bytes() == big.read_bytes()
    code, bar, _ = on_terminal("export", sid, "-o", str(tmp_path / "a.tar"), env=tty_env)
    assert code == 0 and b"Exporting" in bar
    other = sdk.create_session().id
    code, bar, _ = on_terminal("import", other, str(tmp_path / "a.tar"), env=tty_env)
    assert code == 0 and b"Uploading" in bar
    (tmp_path / "d" / "big.bin").write_bytes(b"small now")
    code, bar, _ = on_terminal("import", sid, "--from-dir", str(tmp_path / "d"), env=tty_env)
    assert code == 0 and b"Importing" in bar

    # scripts never see a bar: --json / -q on a terminal, or stderr not a terminal
    code, bar, stdout = on_terminal("--json", "export", sid, "-o", str(tmp_path / "b.tar"),
                                    env=tty_env)
    assert code == 0 and bar == b"" and json.loads(stdout)["format"] == "tar"
    code, bar, _ = on_terminal("-q", "fs", "put", sid, "big2.bin", str(big), env=tty_env)
    assert code == 0 and bar == b""
    proc = aether(env, "fs", "put", sid, "big3.bin", str(big))
    assert proc.stderr == b""


# ---------------------------------------------------------------- - for stdin/stdout


def test_dash_is_stdin_and_stdout(env, sdk, tmp_path):
    sid = sdk.create_session().id
    payload = bytes(range(256)) * 64
    aether(env, "fs", "put", sid, "bin.dat", "-", input=payload)
    assert aether(env, "fs", "cat", sid, "bin.dat").stdout == payload
    aether(env, "fs", "put", sid, "implicit.dat", input=b"no file argument\n")
    assert out(aether(env, "fs", "cat", sid, "implicit.dat")) == "no file argument\n"

    archive = aether(env, "export", sid, "-o", "-", "--format", "tar.gz").stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        assert tar.extractfile("bin.dat").read() == payload
    other = sdk.create_session().id
    r = json.loads(out(aether(env, "import", other, "-", "--json", input=archive)))
    assert r["files"] == "2"
    created = out(aether(env, "-q", "session", "create", "--from-archive", "-",
                         input=archive)).strip()
    assert aether(env, "fs", "cat", created, "bin.dat").stdout == payload
    proc = aether(env, "session", "create", "--from-archive", str(tmp_path / "none.tgz"),
                  check=3)
    assert err_line(proc).startswith("error: not_found: ")

    sdk.write_file(sid, "t.txt", b"one\ntwo\n")
    diff = b"--- a/t.txt\n+++ b/t.txt\n@@ -1,2 +1,2 @@\n one\n-two\n+2\n"
    assert out(aether(env, "-q", "fs", "patch", sid, "-", input=diff)) == "t.txt\n"
    assert out(aether(env, "fs", "cat", sid, "t.txt")) == "one\n2\n"


# ---------------------------------------------------------------- sessions


def test_session_label_and_tag(env):
    sid = new_session(env, "--label", "team=infra", "--tag", "blue")
    s = json.loads(out(aether(env, "session", "label", sid, "env=dev", "tier=1", "--json")))
    assert s["labels"] == {"team": "infra", "env": "dev", "tier": "1"}
    s = json.loads(out(aether(env, "session", "label", sid, "env=prod", "--rm", "tier",
                              "--json")))
    assert s["labels"] == {"team": "infra", "env": "prod"}
    assert out(aether(env, "-q", "session", "label", sid, "--rm", "absent")).strip() == sid
    human = out(aether(env, "session", "label", sid))
    assert "env=prod,team=infra" in human
    listed = out(aether(env, "-q", "session", "ls", "--label", "env=prod", "--label",
                        "team=infra"))
    assert listed.split() == [sid]

    s = json.loads(out(aether(env, "session", "tag", sid, "red", "green", "red", "--json")))
    assert s["tags"] == ["blue", "green", "red"]  # the daemon keeps tags sorted
    s = json.loads(out(aether(env, "session", "tag", sid, "--rm", "blue", "--json")))
    assert s["tags"] == ["green", "red"]
    assert "green, red" in out(aether(env, "session", "tag", sid))
    assert out(aether(env, "-q", "session", "ls", "--tag", "green")).split() == [sid]

    proc = aether(env, "session", "label", sid, "novalue", check=2)
    assert "KEY=VALUE" in proc.stderr.decode()
    aether(env, "session", "label", sid, "a=1", "--rm", "a", check=2)
    aether(env, "session", "tag", sid, "x", "--rm", "x", check=2)
    proc = aether(env, "session", "label", "ses_" + "b" * 26, "a=b", check=3)
    assert err_line(proc).startswith("error: not_found: ")
    aether(env, "session", "tag", "ses_" + "b" * 26, "x", check=3)


def test_session_create_from_every_source(env, sdk, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    (repo / "hello.txt").write_text("v1\n")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "one"], check=True)
    subprocess.run([*git, "tag", "v1"], check=True)
    (repo / "hello.txt").write_text("v2\n")
    subprocess.run([*git, "commit", "-q", "-am", "two"], check=True)

    from_git = json.loads(out(aether(env, "session", "create", "--from-git", str(repo),
                                     "--json")))
    assert from_git["sourceKind"] == "git"
    assert out(aether(env, "fs", "cat", from_git["id"], "hello.txt")) == "v2\n"
    at_tag = new_session(env, "--from-git", str(repo), "--ref", "v1")
    assert out(aether(env, "fs", "cat", at_tag, "hello.txt")) == "v1\n"

    ckp = sdk.create_checkpoint(at_tag).id
    commit = sdk.create_commit(at_tag, message="c").id
    sdk.write_file(at_tag, "hello.txt", b"edited\n")
    for flag, ref in (("--from-checkpoint", ckp), ("--from-commit", commit),
                      ("--from-session", at_tag)):
        s = new_session(env, flag, ref)
        want = "edited\n" if flag == "--from-session" else "v1\n"
        assert out(aether(env, "fs", "cat", s, "hello.txt")) == want, flag
    blank = json.loads(out(aether(env, "session", "create", "--json")))
    assert blank["fileCount"] in ("0", 0)
    aether(env, "session", "create", "--ref", "main", check=2)
    aether(env, "session", "create", "--from-checkpoint", "ckp_" + "c" * 26, check=3)


# ---------------------------------------------------------------- fs tree | ln | cp | patch


def test_fs_tree_ln_cp(env, sdk):
    sid = populated(sdk)
    drawing = out(aether(env, "fs", "tree", sid))
    assert drawing.splitlines()[0] == f"{sid}:/"
    assert "├── a.txt" in drawing and "│   └── run.sh" in drawing
    assert "link -> a.txt" in drawing and "empty/" in drawing
    assert drawing.rstrip().endswith("4 directories, 4 files")
    assert "\x1b[" not in drawing
    assert out(aether(env, "-q", "fs", "tree", sid)).split() == ALL
    entries = json.loads(out(aether(env, "fs", "tree", sid, "--json")))
    assert [e["path"] for e in entries] == ALL
    assert out(aether(env, "-q", "fs", "tree", sid, "--depth", "1")).split() == [
        "a.txt", "bin", "empty", "link", "src"]
    sub = out(aether(env, "fs", "tree", sid, "src"))
    assert sub.splitlines()[0] == f"{sid}:/src" and "mod.py" in sub and "a.txt" not in sub
    aether(env, "fs", "tree", sid, "nope", check=3)

    info = json.loads(out(aether(env, "fs", "ln", "-s", sid, "src/deep/mod.py", "shortcut",
                                 "--json")))
    assert info["kind"] == "ENTRY_KIND_SYMLINK" and info["symlinkTarget"] == "src/deep/mod.py"
    proc = aether(env, "fs", "ln", sid, "x", "shortcut", check=4)
    assert err_line(proc).startswith("error: already_exists: ")

    ckp = sdk.create_checkpoint(sid).id
    sdk.write_file(sid, "a.txt", b"newer\n")
    assert "Copied" in out(aether(env, "fs", "cp", sid, "src", "src2"))
    assert out(aether(env, "fs", "cat", sid, "src2/deep/mod.py")) == "x = 1\n"
    assert out(aether(env, "-q", "fs", "cp", sid, "a.txt", "old.txt", "--at", ckp)) == "old.txt\n"
    assert out(aether(env, "fs", "cat", sid, "old.txt")) == "alpha\n"
    aether(env, "fs", "cp", sid, "a.txt", "old.txt", check=4)
    aether(env, "fs", "cp", sid, "a.txt", "old.txt", "--force")
    assert out(aether(env, "fs", "cat", sid, "old.txt")) == "newer\n"
    aether(env, "fs", "cp", sid, "missing", "x", check=3)


def test_fs_patch(env, sdk, tmp_path):
    sid = sdk.create_session().id
    sdk.write_file(sid, "a.txt", b"one\ntwo\nthree\n")
    sdk.write_file(sid, "gone.txt", b"bye\n")
    diff = tmp_path / "change.diff"
    diff.write_text(
        "diff --git a/a.txt b/a.txt\n"
        "index 111..222 100644\n"
        "--- a/a.txt\n+++ b/a.txt\n@@ -1,3 +1,3 @@\n one\n--- two\n+TWO\n three\n"
        "diff --git a/new.txt b/new.txt\nnew file mode 100644\n"
        "--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1,2 @@\n+hello\n+world\n"
        "diff --git a/gone.txt b/gone.txt\ndeleted file mode 100644\n"
        "--- a/gone.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-bye\n"
    )
    sdk.write_file(sid, "a.txt", b"one\n-- two\nthree\n")
    human = out(aether(env, "fs", "patch", sid, str(diff)))
    assert "Patched a.txt" in human and "Created new.txt" in human and "Deleted gone.txt" in human
    assert out(aether(env, "fs", "cat", sid, "a.txt")) == "one\nTWO\nthree\n"
    assert out(aether(env, "fs", "cat", sid, "new.txt")) == "hello\nworld\n"
    aether(env, "fs", "cat", sid, "gone.txt", check=3)

    # applying it again: the first file no longer matches -> conflict
    proc = aether(env, "fs", "patch", sid, str(diff), check=4)
    assert err_line(proc).startswith("error: conflict: ")

    # diff -u output with arbitrary names, aimed at a path; --json gives the FileInfo
    plain = "--- old\t2024-01-01\n+++ new\t2024-01-02\n@@ -2 +2 @@\n-TWO\n+2\n"
    h = sdk.stat(sid, "a.txt").hash
    r = json.loads(out(aether(env, "fs", "patch", sid, "-", "--path", "a.txt", "--if-match", h,
                              "--json", input=plain.encode())))
    assert [f["path"] for f in r] == ["a.txt"]
    assert out(aether(env, "fs", "cat", sid, "a.txt")) == "one\n2\nthree\n"
    proc = aether(env, "fs", "patch", sid, "-", "--path", "a.txt", "--if-match", h,
                  input=plain.encode(), check=4)
    assert err_line(proc).startswith("error: conflict: ")

    proc = aether(env, "fs", "patch", sid, "-", input=b"not a diff\n", check=1)
    assert err_line(proc).startswith("error: invalid_argument: ")
    aether(env, "fs", "patch", sid, str(diff), "--path", "a.txt", check=2)  # 3 files
    aether(env, "fs", "patch", sid, str(tmp_path / "none.diff"), check=3)
    missing = "--- a/nope.txt\n+++ b/nope.txt\n@@ -1 +1 @@\n-a\n+b\n"
    aether(env, "fs", "patch", sid, "-", input=missing.encode(), check=3)


# ---------------------------------------------------------------- diff on a terminal


def test_diff_is_coloured_only_on_a_terminal(env, sdk):
    sid = sdk.create_session().id
    sdk.write_file(sid, "a.txt", b"one\ntwo\n")
    ckp = sdk.create_checkpoint(sid).id
    sdk.write_file(sid, "a.txt", b"one\nTWO\n")
    tty_env = {k: v for k, v in env.items() if k != "NO_COLOR"}

    code, shown, _ = on_terminal("diff", sid, "--from", ckp, env=tty_env, stream="stdout")
    assert code == 0
    assert b"\x1b[32m+TWO" in shown and b"\x1b[31m-two" in shown  # green / red
    code, shown, _ = on_terminal("diff", sid, "--from", ckp, "--stat", env=tty_env,
                                 stream="stdout")
    assert code == 0 and b"a.txt" in shown and b"\x1b[32m+" in shown

    code, shown, _ = on_terminal("diff", sid, "--from", ckp, env=env, stream="stdout")
    assert code == 0 and b"+TWO" in shown
    assert b"\x1b[32m" not in shown and b"\x1b[31m" not in shown  # NO_COLOR: no colour
    piped = out(run("diff", sid, "--from", ckp, env=tty_env))
    assert "+TWO" in piped and "\x1b[" not in piped
    stat = out(run("diff", sid, "--from", ckp, "--stat", env=tty_env))
    assert "1 file changed, 1 insertion(+), 1 deletion(-)" in stat and "\x1b[" not in stat
    assert out(run("diff", sid, "--from", ckp, "--name-only", env=tty_env)) == "a.txt\n"
