"""The installed `aether` binary against a real daemon: human and --json output,
ids with -q, exit codes, and the local-mode autostart."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from cli_helpers import AETHER, aether, clean_env, err_line, new_session, out, run

# ---------------------------------------------------------------- no daemon needed


def test_help_lists_the_commands():
    from aether.cli.main import COMMANDS, SECTIONS

    text = out(run("--help"))
    for title in SECTIONS:
        assert f"\n{title}:\n" in text
    for cmd in COMMANDS:
        assert f"\n  {cmd} " in text, cmd
    assert "create" in out(run("session", "--help"))


def test_usage_errors_exit_2(tmp_path):
    proc = run("session", "create", "--from-commit", "cmt_x", "--from-session", "ses_y",
               check=2)
    assert "choose one source" in proc.stderr.decode()
    run("session", "ls", "--label", "novalue", check=2)
    run("session", "show", check=2)
    run("no-such-command", check=2)


def test_unreachable_server_is_one_line(tmp_path):
    proc = run("--server", f"unix:{tmp_path}/none.sock", "session", "ls", check=1)
    assert err_line(proc).startswith("error: unavailable: ")


# ---------------------------------------------------------------- against the daemon


def test_session_create_show_ls(env, tmp_path):
    proc = aether(env, "session", "create", "--name", "cli-one", "--label", "suite=cli",
                  "--label", "n=1", "--tag", "blue", "--json")
    s = json.loads(out(proc))
    sid = s["id"]
    assert sid.startswith("ses_") and s["name"] == "cli-one"
    assert s["labels"] == {"suite": "cli", "n": "1"} and s["tags"] == ["blue"]
    assert s["state"] == "SESSION_STATE_ACTIVE"

    human = out(aether(env, "session", "show", sid))
    assert sid in human and "cli-one" in human and "suite=cli" in human and "active" in human

    other = new_session(env, "--name", "cli-two", "--label", "suite=cli")
    assert other.startswith("ses_")

    listed = json.loads(out(aether(env, "session", "ls", "--label", "suite=cli", "--json")))
    assert sorted(x["id"] for x in listed) == sorted([sid, other])
    assert out(aether(env, "-q", "session", "ls", "--label", "suite=cli", "--tag", "blue")) \
        == sid + "\n"
    table = out(aether(env, "session", "ls", "--label", "suite=cli"))
    assert "cli-one" in table and "cli-two" in table and "NAME" in table
    assert json.loads(out(aether(env, "--json", "session", "ls", "--label", "suite=none"))) == []
    assert out(aether(env, "session", "ls", "--state", "archived", "--label", "suite=cli",
                      "-q")) == ""

    # global flags instead of the environment
    bare = {k: v for k, v in env.items() if not k.startswith("AETHER_")}
    flags = ("--server", env["AETHER_SERVER"], "--token", env["AETHER_TOKEN"])
    assert sid in out(run(*flags, "-q", "session", "show", sid, env=bare))


def test_files_from_dir(env, tmp_path):
    src = tmp_path / "proj"
    (src / "lib").mkdir(parents=True)
    (src / "lib" / "util.py").write_text("def f():\n    return 1\n")
    (src / "README.md").write_text("# proj\n")
    sid = new_session(env, "--from-dir", str(src), "--name", "from-dir")

    assert out(aether(env, "fs", "cat", sid, "README.md")) == "# proj\n"
    assert set(out(aether(env, "-q", "fs", "ls", sid)).split()) == {"README.md", "lib"}
    assert set(out(aether(env, "-q", "fs", "ls", sid, "-r")).split()) == {
        "README.md", "lib", "lib/util.py"}
    listing = out(aether(env, "fs", "ls", sid, "lib"))
    assert "util.py" in listing and "-rw-r--r--" in listing

    # put from stdin, from a file; cat them back; JSON of a write
    aether(env, "fs", "put", sid, "notes/todo.txt", "-", input=b"ship it\n")
    assert out(aether(env, "fs", "cat", sid, "notes/todo.txt")) == "ship it\n"
    blob = tmp_path / "blob.bin"
    blob.write_bytes(bytes(range(256)) * 40)
    info = json.loads(out(aether(env, "fs", "put", sid, "data/blob.bin", str(blob), "--json")))
    assert info["path"] == "data/blob.bin" and info["size"] == str(256 * 40)
    assert aether(env, "fs", "cat", sid, "data/blob.bin").stdout == blob.read_bytes()
    h = out(aether(env, "-q", "fs", "put", sid, "data/blob.bin", str(blob))).strip()
    assert h == info["hash"]
    # a conditional write that lost: conflict -> 4
    proc = aether(env, "fs", "put", sid, "data/blob.bin", str(blob), "--if-match", "0" * 64,
                  check=4)
    assert err_line(proc).startswith("error: conflict: ")

    stat = json.loads(out(aether(env, "fs", "stat", sid, "data/blob.bin", "--json")))
    assert stat["kind"] == "ENTRY_KIND_FILE" and stat["hash"] == info["hash"]
    aether(env, "fs", "mv", sid, "notes/todo.txt", "notes/done.txt")
    aether(env, "fs", "rm", sid, "data", "-r")
    assert set(out(aether(env, "-q", "fs", "ls", sid)).split()) == {"README.md", "lib", "notes"}

    # bad paths: missing -> 3, invalid -> 1, both one line on stderr
    proc = aether(env, "fs", "cat", sid, "nope.txt", check=3)
    assert err_line(proc).startswith("error: not_found: ")
    proc = aether(env, "fs", "cat", sid, "../escape", check=1)
    assert err_line(proc).startswith("error: invalid_argument: ")
    proc = aether(env, "fs", "put", sid, "x.txt", str(tmp_path / "missing.txt"), check=3)
    assert err_line(proc).startswith("error: not_found: ")


def test_checkpoint_diff_restore_commit(env):
    sid = new_session(env, "--name", "states")
    aether(env, "fs", "put", sid, "a.txt", input=b"one\ntwo\n")
    ckp = out(aether(env, "-q", "checkpoint", "create", sid, "-m", "first")).strip()
    assert ckp.startswith("ckp_")
    aether(env, "fs", "put", sid, "a.txt", input=b"one\nTWO\n")
    aether(env, "fs", "put", sid, "b.txt", input=b"new\n")

    listed = json.loads(out(aether(env, "checkpoint", "ls", sid, "--json")))
    assert [c["id"] for c in listed] == [ckp] and listed[0]["message"] == "first"
    assert "first" in out(aether(env, "checkpoint", "ls", sid))

    unified = out(aether(env, "diff", sid, "--from", ckp))
    assert "-two" in unified and "+TWO" in unified and "+new" in unified
    assert "\x1b[" not in unified  # no colour when stdout is not a terminal
    assert out(aether(env, "diff", sid, "--from", ckp, "--name-only")).split() == [
        "a.txt", "b.txt"]
    stat = out(aether(env, "diff", sid, "--from", ckp, "--stat"))
    assert "2 files changed" in stat and "a.txt" in stat
    d = json.loads(out(aether(env, "diff", sid, "--from", ckp, "--json")))
    assert {f["change"]["path"] for f in d["files"]} == {"a.txt", "b.txt"}

    commit = json.loads(out(aether(env, "commit", "create", sid, "-m", "ship",
                                   "--author", "cli-test", "--json")))
    assert commit["id"].startswith("cmt_") and commit["author"] == "cli-test"
    assert commit["id"] in out(aether(env, "commit", "show", commit["id"]))

    restored = out(aether(env, "restore", sid, ckp))
    assert "Restored" in restored and ckp in restored
    assert out(aether(env, "fs", "cat", sid, "a.txt")) == "one\ntwo\n"
    aether(env, "fs", "cat", sid, "b.txt", check=3)
    assert out(aether(env, "fs", "cat", sid, "b.txt", "--at", commit["id"])) == "new\n"


def test_export_import(env, tmp_path):
    sid = new_session(env)
    aether(env, "fs", "put", sid, "src/main.py", input=b"print('hi')\n")
    archive = tmp_path / "out.tar.gz"
    proc = aether(env, "export", sid, "-o", str(archive))
    assert "Exported" in out(proc)
    with tarfile.open(archive) as tar:
        assert tar.extractfile("src/main.py").read() == b"print('hi')\n"
    assert not list(tmp_path.glob("*.part"))

    raw = aether(env, "export", sid, "-o", "-", "--format", "tar").stdout
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        assert "src/main.py" in tar.getnames()
    zipped = json.loads(out(aether(env, "export", sid, "-o", str(tmp_path / "o.zip"),
                                   "--json")))
    assert zipped["format"] == "zip" and zipped["bytes"] == (tmp_path / "o.zip").stat().st_size

    other = new_session(env)
    imported = json.loads(out(aether(env, "import", other, str(archive), "--path", "vendor",
                                     "--json")))
    assert imported["files"] == "1"
    assert out(aether(env, "fs", "cat", other, "vendor/src/main.py")) == "print('hi')\n"
    from_archive = new_session(env, "--from-archive", str(archive))
    assert out(aether(env, "fs", "cat", from_archive, "src/main.py")) == "print('hi')\n"


def test_fork_archive_rm_and_exit_codes(env, daemon):
    sid = new_session(env, "--name", "parent")
    aether(env, "fs", "put", sid, "f.txt", input=b"x\n")
    fork = json.loads(out(aether(env, "session", "fork", sid, "--name", "kid", "--json")))
    assert fork["parentSessionId"] == sid and fork["name"] == "kid"
    assert out(aether(env, "fs", "cat", fork["id"], "f.txt")) == "x\n"
    from_session = new_session(env, "--from-session", sid)
    assert out(aether(env, "fs", "cat", from_session, "f.txt")) == "x\n"

    assert out(aether(env, "-q", "session", "archive", sid)).strip() == sid
    proc = aether(env, "fs", "put", sid, "f.txt", input=b"y\n", check=1)
    assert err_line(proc).startswith("error: failed_precondition: ")

    assert "Deleted" in out(aether(env, "session", "rm", fork["id"], "--yes"))
    proc = aether(env, "session", "show", fork["id"], check=3)
    assert err_line(proc).startswith("error: not_found: ")
    proc = aether(env, "session", "show", "ses_" + "a" * 26, check=3)
    assert err_line(proc).startswith("error: not_found: ")
    aether(env, "checkpoint", "ls", "ses_" + "a" * 26, check=3)

    bad = {**env, "AETHER_TOKEN": "wrong"}
    proc = aether(bad, "session", "ls", check=5)
    assert err_line(proc).startswith("error: unauthenticated: ")


# ---------------------------------------------------------------- local mode


def _stop_local_daemon(data_dir: Path) -> None:
    for name in ("aetherd.pid", "aetherd.autostart.pid"):
        pid_file = data_dir / name
        if pid_file.exists():
            pid = int(pid_file.read_text().strip())
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.05)
            os.kill(pid, signal.SIGKILL)
            return


def test_local_mode_autostarts_and_reuses_the_daemon(tmp_path):
    data_dir = Path(f"/tmp/aether-cli-{os.getpid()}-{time.monotonic_ns()}")  # short socket path
    env = clean_env(AETHER_DATA_DIR=str(data_dir))
    try:
        # several clients race to start it: exactly one daemon comes up
        procs = [subprocess.Popen([str(AETHER), "-q", "session", "create", "--name", f"r{i}"],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for i in range(3)]
        ids = []
        for p in procs:
            stdout, stderr = p.communicate(timeout=60)
            assert p.returncode == 0, stderr.decode()
            ids.append(stdout.decode().strip())
        assert (data_dir / "http.sock").exists()
        pid = (data_dir / "aetherd.pid").read_text().strip()
        listed = out(run("-q", "session", "ls", env=env)).split()
        assert sorted(listed) == sorted(ids)
        assert (data_dir / "aetherd.pid").read_text().strip() == pid  # reused, not restarted
        assert "aetherd" in (data_dir / "aetherd.log").read_text()
    finally:
        _stop_local_daemon(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


def test_version_matches_the_package_metadata():
    from importlib.metadata import version

    assert out(run("--version")).strip() == f"aether {version('aetherfs')}"


def test_command_table_help_matches_each_command():
    """`aether --help` lists commands from main.COMMANDS without importing them;
    each line there must be the first paragraph of the command's own help."""
    from aether.cli.main import COMMANDS, load_command

    for name, (_target, line) in COMMANDS.items():
        own = " ".join((load_command(name).help or "").strip().split("\n\n")[0].split())
        assert own.rstrip(".") == line.rstrip("."), (name, own, line)


def test_help_imports_no_command_module():
    code = ("import sys; from aether.cli.main import main; sys.argv = ['aether', '--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('httpx', 'rich', 'aether.pb', 'aether.cli.session', 'grpclib')"
            " if m in sys.modules]\n"
            "print(','.join(heavy), file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "Sessions and files:" in proc.stdout
    assert proc.stderr.strip() == "", proc.stderr


def test_messages_load_without_grpc():
    code = ("import sys; from aether import pb; pb.Session(); "
            "print('grpclib' in sys.modules, 'asyncio' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.split() == ["False", "False"]


def test_session_policy_and_rename(env):
    sid = new_session(env)
    assert "none (all defaults)" in out(aether(env, "session", "policy", sid))
    got = json.loads(out(aether(env, "--json", "session", "policy", sid,
                                "commit_requires_approval=true", "min_approvals=2")))
    assert got["commitRequiresApproval"] is True and got["minApprovals"] == 2
    # Fields not named keep their value.
    got = json.loads(out(aether(env, "--json", "session", "policy", sid, "max_files=10")))
    assert got["commitRequiresApproval"] is True and got["maxFiles"] == "10"
    shown = out(aether(env, "session", "show", sid))
    assert "commit_requires_approval=true" in shown and "min_approvals=2" in shown
    proc = aether(env, "commit", "create", sid, "-m", "x", check=1)
    assert err_line(proc).startswith("error: failed_precondition: ")
    for bad in ("nope=1", "read_only=maybe", "max_files=-1", "min_approvals"):
        aether(env, "session", "policy", sid, bad, check=2)
    aether(env, "session", "policy", "ses_00000000000000000000000000", "read_only=true", check=3)

    assert json.loads(out(aether(env, "--json", "session", "rename", sid, "renamed")))["name"] \
        == "renamed"
    assert out(aether(env, "-q", "session", "rename", sid, "again")).strip() == sid


def test_bad_server_is_a_usage_error():
    proc = run("--server", "bogus", "session", "ls", env=clean_env(), check=2)
    assert err_line(proc).startswith("error: bad_config: bad server 'bogus'")
    run("session", "ls", env=clean_env(AETHER_SERVER="nope"), check=2)


def test_aether_token_goes_only_where_aether_server_points(daemon):
    # The token exported for AETHER_SERVER is not sent to another --server...
    other = clean_env(AETHER_SERVER="http://127.0.0.1:9", AETHER_TOKEN=daemon.token)
    proc = run("--server", daemon.http_url, "session", "ls", env=other, check=5)
    assert err_line(proc).startswith("error: unauthenticated: ")
    # ... but it is to the same one, named again, and to --server alone.
    same = clean_env(AETHER_SERVER=daemon.http_url, AETHER_TOKEN=daemon.token)
    run("--server", daemon.http_url, "session", "ls", env=same)
    run("--server", daemon.http_url, "session", "ls", env=clean_env(AETHER_TOKEN=daemon.token))


def test_fs_patch_deletes_only_the_content_it_saw(env, tmp_path):
    sid = new_session(env)
    aether(env, "fs", "put", sid, "gone.txt", "-", input=b"one\ntwo\n")
    deletion = "--- a/gone.txt\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-one\n-two\n"
    aether(env, "fs", "put", sid, "gone.txt", "-", input=b"one\nTWO\n")  # changed since
    proc = aether(env, "fs", "patch", sid, "-", input=deletion.encode(), check=4)
    assert err_line(proc).startswith("error: conflict: ")
    assert out(aether(env, "fs", "cat", sid, "gone.txt")) == "one\nTWO\n"
    aether(env, "fs", "put", sid, "gone.txt", "-", input=b"one\ntwo\n")
    aether(env, "fs", "patch", sid, "-", input=deletion.encode())
    aether(env, "fs", "stat", sid, "gone.txt", check=3)


def test_fs_manifest_and_changes(env):
    sid = new_session(env)
    aether(env, "fs", "put", sid, "a.txt", "-", input=b"a\n")
    aether(env, "fs", "put", sid, "d/b.txt", "-", input=b"bb\n")
    ckp = out(aether(env, "-q", "checkpoint", "create", sid)).strip()
    aether(env, "fs", "put", sid, "a.txt", "-", input=b"changed\n")
    aether(env, "fs", "rm", sid, "d/b.txt")
    aether(env, "fs", "put", sid, "c.txt", "-", input=b"c\n")

    entries = json.loads(out(aether(env, "--json", "fs", "manifest", sid)))
    assert {e["path"] for e in entries} == {"a.txt", "c.txt", "d"}
    assert out(aether(env, "-q", "fs", "manifest", sid, "--at", ckp)).split() == \
        ["a.txt", "d", "d/b.txt"]

    got = json.loads(out(aether(env, "--json", "fs", "changes", sid, "--since", ckp)))
    kinds = {c["path"]: c["kind"] for c in got["changes"]}
    assert kinds == {"a.txt": "CHANGE_KIND_MODIFIED", "c.txt": "CHANGE_KIND_ADDED",
                     "d/b.txt": "CHANGE_KIND_DELETED"}
    human = out(aether(env, "fs", "changes", sid, "--since", ckp))
    assert "M" in human and "a.txt" in human and "2 B -> 8 B" in human
    assert out(aether(env, "-q", "fs", "changes", sid, "--since", ckp)).split() == \
        ["a.txt", "c.txt", "d/b.txt"]
    aether(env, "fs", "changes", sid, "--since", "ckp_nope", check=3)


def test_fs_put_at_an_offset(env):
    sid = new_session(env)
    aether(env, "fs", "put", sid, "f.bin", "-", input=b"hello world")
    h = out(aether(env, "-q", "fs", "put", sid, "f.bin", "-", "--offset", "6",
                   input=b"WORLD!")).strip()
    assert out(aether(env, "fs", "cat", sid, "f.bin")) == "hello WORLD!"
    # Conditional on the hash it was given; a stale one is a conflict.
    aether(env, "fs", "put", sid, "f.bin", "-", "--offset", "0", "--if-match", "0" * 64,
           input=b"x", check=4)
    aether(env, "fs", "put", sid, "f.bin", "-", "--offset", "0", "--if-match", h, input=b"J")
    assert out(aether(env, "fs", "cat", sid, "f.bin")) == "Jello WORLD!"
    aether(env, "fs", "put", sid, "f.bin", "-", "--offset", "0", "--mode", "0755", input=b"x",
           check=2)
