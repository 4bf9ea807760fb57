"""`aether daemon start|stop|status|logs`: the installed binary driving a real
local daemon in a private data directory (never the user's own), and `status`
against a remote one."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import AETHER, cli_env, err_line, out, run


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # a zombie nobody reaped yet is gone too
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return True


@pytest.fixture
def local(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A private data dir (short: unix socket paths are limited) and an environment
    that points only at it: no AETHER_SERVER, no config file."""
    data_dir = Path(tempfile.mkdtemp(prefix="aed-", dir="/tmp"))
    env = cli_env(AETHER_DATA_DIR=str(data_dir), AETHER_CONFIG=str(tmp_path / "none.toml"))
    try:
        yield data_dir, env
    finally:
        pid_file = data_dir / "aetherd.pid"
        if pid_file.exists():  # a failed test left it running
            pid = int(pid_file.read_text())
            try:
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + 15
                while not _gone(pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                if not _gone(pid):
                    os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(data_dir, ignore_errors=True)


def test_start_status_logs_stop(local):
    data_dir, env = local

    # nothing there yet: not running is exit 3, with the shape scripts read
    proc = run("daemon", "status", "--json", env=env, check=3)
    st = json.loads(out(proc))
    assert st["running"] is False and st["local"] is True and st["pid"] is None
    assert st["dataDir"] == str(data_dir)
    assert "not running" in out(run("daemon", "status", env=env, check=3))

    started = json.loads(out(run("daemon", "start", "--json", env=env)))
    assert started["started"] is True and started["dataDir"] == str(data_dir)
    pid = started["pid"]
    assert isinstance(pid, int) and (data_dir / "aetherd.pid").read_text().strip() == str(pid)
    assert started["http"] == f"unix:{data_dir}/http.sock"
    assert started["log"] == str(data_dir / "aetherd.log")

    # a second start reuses it
    again = out(run("daemon", "start", env=env))
    assert "already running" in again and str(pid) in again
    assert json.loads(out(run("daemon", "start", "--json", env=env)))["started"] is False
    assert out(run("-q", "daemon", "start", env=env)).strip() == str(pid)

    sid = out(run("-q", "session", "create", "--name", "d1", env=env)).strip()
    assert sid.startswith("ses_")
    st = json.loads(out(run("daemon", "status", "--json", env=env)))
    assert st["running"] is True and st["pid"] == pid and st["status"] == "ok"
    assert st["version"] and st["uptimeSeconds"] >= 0 and st["sessions"] == 1
    assert st["grpc"] == f"unix:{data_dir}/grpc.sock"
    human = out(run("daemon", "status", env=env))
    assert "running" in human and str(pid) in human and str(data_dir) in human
    assert out(run("daemon", "status", "-q", env=env)).strip() == str(pid)

    log = out(run("daemon", "logs", env=env))
    assert "aetherd ready" in log
    last = out(run("daemon", "logs", "-n", "1", env=env))
    assert last.count("\n") == 1 and last == log.splitlines(keepends=True)[-1]
    assert out(run("daemon", "logs", "-n", "0", env=env)) == ""

    stopped = json.loads(out(run("daemon", "stop", "--json", env=env)))
    assert stopped["stopped"] is True and stopped["pid"] == pid
    assert _gone(pid) and not (data_dir / "aetherd.pid").exists()
    st = json.loads(out(run("daemon", "status", "--json", env=env, check=3)))
    assert st["running"] is False and st["pid"] is None
    assert run("daemon", "status", "-q", env=env, check=3).stdout == b""
    # stopping what is not running is fine
    assert "not running" in out(run("daemon", "stop", env=env))
    assert "aetherd stopping" in out(run("daemon", "logs", env=env))

    # and it starts again, on the same data (the session is still there)
    pid2 = int(out(run("-q", "daemon", "start", env=env)).strip())
    assert pid2 != pid
    assert out(run("-q", "session", "ls", env=env)).split() == [sid]
    run("daemon", "stop", env=env)


def test_data_dir_flag_wins_and_remote_targets(local, daemon):
    data_dir, env = local
    remote = {**env, "AETHER_SERVER": daemon.http_url, "AETHER_TOKEN": daemon.token}

    # start/stop/logs refuse a remote target with one line, exit 1
    for args in (("start",), ("stop",), ("logs",)):
        proc = run("daemon", *args, env=remote, check=1)
        line = err_line(proc)
        assert line.startswith("error: failed_precondition: ") and daemon.http_url in line
        assert "--data-dir" in line

    # status asks the remote daemon
    st = json.loads(out(run("daemon", "status", "--json", env=remote)))
    assert st["running"] is True and st["local"] is False and st["target"] == daemon.http_url
    assert st["pid"] is None and st["version"] and isinstance(st["sessions"], int)
    down = {**remote, "AETHER_SERVER": "http://127.0.0.1:9"}
    st = json.loads(out(run("daemon", "status", "--json", env=down, check=3)))
    assert st["running"] is False and st["error"].startswith("unavailable")

    # --data-dir means the local daemon there, whatever the server settings say
    flag = ("--data-dir", str(data_dir))
    pid = int(out(run("-q", "daemon", "start", *flag, env=remote)).strip())
    assert (data_dir / "aetherd.pid").read_text().strip() == str(pid)
    st = json.loads(out(run("daemon", "status", *flag, "--json", env=remote)))
    assert st["running"] is True and st["pid"] == pid and st["local"] is True
    assert "aetherd ready" in out(run("daemon", "logs", *flag, env=remote))
    run("daemon", "stop", *flag, env=remote)
    assert _gone(pid)


def test_logs_follow_and_foreground_refused(local):
    data_dir, env = local
    run("daemon", "logs", env=env, check=3)  # no log yet: not_found
    pid = int(out(run("-q", "daemon", "start", env=env)).strip())

    proc = run("daemon", "start", "--foreground", env=env, check=4)
    assert err_line(proc).startswith("error: already_exists: ")

    follower = subprocess.Popen([str(AETHER), "daemon", "logs", "-f"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        seen = b""

        def read_until(needle: bytes, timeout: float = 20) -> None:
            nonlocal seen
            deadline = time.monotonic() + timeout
            while needle not in seen:
                left = deadline - time.monotonic()
                assert left > 0, f"{needle!r} not followed; got {seen!r}"
                ready, _, _ = select.select([follower.stdout], [], [], left)
                if ready:
                    chunk = os.read(follower.stdout.fileno(), 65536)
                    assert chunk, f"follower ended: {follower.stderr.read()!r}"
                    seen += chunk

        read_until(b"aetherd ready")
        run("daemon", "stop", env=env)  # appended while we follow
        read_until(b"aetherd stopping")
        follower.send_signal(signal.SIGINT)
        assert follower.wait(10) == 130
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    assert _gone(pid)
