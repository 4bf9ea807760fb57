"""Foreground mounts, signals, and the bounded content cache."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from mount_helpers import (
    AETHER,
    Mounts,
    have,
    is_mounted,
    mount_env,
    run_aether,
    settle,
    wait_for,
)


def test_foreground_mount_ends_cleanly_on_ctrl_c(mounts, sdk):
    s = sdk.create_session(name="fg").id
    sdk.write_file(s, "f.txt", b"foreground")
    mnt = mounts.base / "fg"
    mnt.mkdir()
    proc = subprocess.Popen([AETHER, "mount", "--foreground", s, str(mnt)], env=mounts.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    mounts.made.append(mnt)
    try:
        assert wait_for(lambda: is_mounted(mnt), timeout=30)[0]
        assert (mnt / "f.txt").read_text() == "foreground"
        (mnt / "g.txt").write_text("written in the foreground mount")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "mounted session" in err and "done" in err  # logs go to stderr
    assert not is_mounted(mnt)
    assert bytes(sdk.read_file(s, "g.txt").data) == b"written in the foreground mount"


def test_cache_is_bounded_and_reads_stay_correct(mounts, sdk):
    s = sdk.create_session(name="cache").id
    blobs = {f"f{i}": os.urandom(400_000) for i in range(8)}
    for name, data in blobs.items():
        sdk.write_file(s, name, data)
    mnt = mounts.mount(s, "small-cache", "--cache-size", "1M")
    for _ in range(2):
        for name, data in blobs.items():
            assert (mnt / name).read_bytes() == data
    cache = mounts.base / "cache" / "blobs"
    used = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file())
    assert used <= 1 << 20, used  # 8 x 400 kB went through a 1 MiB cache
    # entries are named by content hash: what the daemon reports
    names = {f.name for f in cache.rglob("*") if f.is_file()}
    assert names <= {sdk.stat(s, n).hash for n in blobs}
    # the mount reports its cache use
    def reported():
        items = json.loads(run_aether(mounts.env, "mounts", "--json").stdout)
        return [m for m in items if m["mountpoint"] == str(mnt) and m["cache_used"] > 0]
    got, _ = wait_for(reported, timeout=10, interval=0.5)
    assert got and got[0]["cache_size"] == 1 << 20 and got[0]["cache_used"] <= 1 << 20


def test_sigterm_unmounts_and_writes_back(mounts, sdk):
    s = sdk.create_session(name="term").id
    mnt = mounts.mount(s, "term")
    (mnt / "t.txt").write_text("before sigterm")
    pid = json.loads(run_aether(mounts.env, "mounts", "--json").stdout)[0]["pid"]
    os.kill(pid, signal.SIGTERM)
    assert wait_for(lambda: not is_mounted(mnt), timeout=20)[0]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
        time.sleep(0.05)
    assert bytes(sdk.read_file(s, "t.txt").data) == b"before sigterm"


def test_a_killed_mount_is_listed_dead_and_umount_clears_it(mounts, sdk):
    s = sdk.create_session(name="killed").id
    mnt = mounts.mount(s, "killed")
    pid = json.loads(run_aether(mounts.env, "mounts", "--json").stdout)[0]["pid"]
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: not os.path.exists(f"/proc/{pid}/status")
                    or "zombie" in open(f"/proc/{pid}/status").read(), timeout=10)[0]
    items = json.loads(run_aether(mounts.env, "mounts", "--json").stdout)
    assert [m["state"] for m in items] == ["dead"]
    try:
        os.listdir(mnt)
    except OSError as exc:
        assert exc.errno == errno.ENOTCONN  # the kernel's answer for a dead FUSE mount
    mounts.umount(mnt)
    assert not is_mounted(mnt)
    assert json.loads(run_aether(mounts.env, "mounts", "--json").stdout) == []


def test_large_files_move_by_chunks_and_in_pieces(mounts, sdk):
    """A large file goes up by chunks (those the daemon lacks, then one write
    of the chunk list) and comes down as ranged reads (pieces made small here
    so the test stays quick)."""
    mounts.env["AETHER_MOUNT_DOWNLOAD_PIECE"] = str(2 << 20)
    s = sdk.create_session(name="pieces").id
    data = os.urandom((10 << 20) + 12345)
    mnt = mounts.mount(s, "pieces")
    (mnt / "big.bin").write_bytes(data)
    settle(mnt)
    assert bytes(sdk.read_file(s, "big.bin").data) == data
    log = mounts.log(mnt)
    assert log.count("/chunks:missing") == 1, log
    assert log.count("/chunks \"") >= 1, log  # the 11 chunks, in requests of up to 16
    assert "PUT" not in "".join(line for line in log.splitlines() if "big.bin" in line)
    assert [e.path for e in sdk.iter_tree(s, "")] == ["big.bin"]
    # a second mount with an empty cache downloads it in pieces
    mounts.env["AETHER_MOUNT_CACHE_DIR"] = str(mounts.base / "cache2")
    other = mounts.mount(s, "pieces2")
    assert (other / "big.bin").read_bytes() == data
    assert mounts.log(other).count("GET") >= 6


@pytest.mark.skipif(os.getuid() != 0 or not have("setpriv"),
                    reason="needs root and setpriv to act as another user")
def test_other_users_enter_the_mount_with_kernel_permission_checks(daemon, sdk):
    """allow_other lets other users in; default_permissions applies the mode bits."""
    base = Path(tempfile.mkdtemp(prefix="aether-mount-other-"))
    base.chmod(0o755)
    m = Mounts(mount_env(daemon, base), base)
    try:
        s = sdk.create_session(name="other").id
        sdk.write_file(s, "public.txt", b"readable by all", mode=0o644)
        sdk.write_file(s, "secret.txt", b"root only", mode=0o600)
        mnt = m.mount(s, "mnt")

        def as_nobody(*cmd: str) -> subprocess.CompletedProcess:
            return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534",
                                   "--clear-groups", *cmd], capture_output=True, text=True)

        assert as_nobody("cat", str(mnt / "public.txt")).stdout == "readable by all"
        r = as_nobody("cat", str(mnt / "secret.txt"))
        assert r.returncode != 0 and "Permission denied" in r.stderr
        r = as_nobody("touch", str(mnt / "new.txt"))  # the root directory is 0755 root
        assert r.returncode != 0 and "Permission denied" in r.stderr
        os.mkdir(mnt / "shared")
        os.chmod(mnt / "shared", 0o777)
        assert as_nobody("sh", "-c", f"echo hi > {mnt}/shared/by-nobody").returncode == 0
        st = os.stat(mnt / "shared" / "by-nobody")
        assert (st.st_uid, st.st_gid) == (65534, 65534)  # owner from the request context
        settle(mnt)
        assert bytes(sdk.read_file(s, "shared/by-nobody").data) == b"hi\n"
        m.umount(mnt)
    finally:
        m.cleanup()
        shutil.rmtree(base, ignore_errors=True)
