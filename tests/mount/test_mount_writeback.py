"""Write-back of files larger than one upload piece, chmod under the node lock,
cache eviction off the FUSE thread, and the bounded echo table.

The mount of this module uses small pieces (the environment knobs of
aether/mount), so files of a few MiB take the multi-piece paths."""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import threading
import time

import pytest
import xattr
from mount_helpers import have, run_aether, settle, wait_for

PIECE = 256 << 10
RANGE_MIN = 1 << 20
TEMP = ".aether-upload-"


@pytest.fixture(scope="module")
def session(sdk):
    return sdk.create_session(name="writeback").id


@pytest.fixture(scope="module")
def mnt(module_mounts, session):
    module_mounts.env["AETHER_MOUNT_UPLOAD_PIECE"] = str(PIECE)
    module_mounts.env["AETHER_MOUNT_RANGE_WRITE_MIN"] = str(RANGE_MIN)
    return module_mounts.mount(session, "wb")


def mount_pid(env, mnt) -> int:
    items = json.loads(run_aether(env, "mounts", "--json").stdout)
    return next(m["pid"] for m in items if m["mountpoint"] == str(mnt))


def peak_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) << 10 for line in f if line.startswith("VmHWM:"))


def names(sdk, session, directory: str) -> list[str]:
    return [e.path.rsplit("/", 1)[-1] for e in sdk.iter_tree(session, directory)]


def put(sdk, session, path: str, data: bytes, mnt) -> None:
    """Write a file through the API and wait until the mount shows it."""
    sdk.write_file(session, path, data)
    got, _ = wait_for(lambda: (mnt / path).stat().st_size == len(data), timeout=5)
    assert got, f"{path} did not show in the mount"


def write_in_background(path, data: bytes,
                        mode: str = "r+b") -> tuple[threading.Thread, list[OSError]]:
    """Write `data` to `path`, fsync and close it (the fsync waits for the
    write-back; the close alone would only journal it)."""
    errors: list[OSError] = []

    def run() -> None:
        try:
            with open(path, mode) as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    return t, errors


def watch_upload(sdk, session, directory: str, thread, on_temp, check=None) -> str:
    """Poll the daemon while `thread` runs; call on_temp(name) once, when an
    upload temporary shows in `directory`; return its name."""
    seen = ""
    deadline = time.monotonic() + 60
    while thread.is_alive() and time.monotonic() < deadline:
        if check is not None:
            check()
        temps = [n for n in names(sdk, session, directory) if TEMP in n]
        if temps and not seen:
            seen = temps[0]
            on_temp(seen)
        time.sleep(0.002)
    thread.join(timeout=60)
    return seen


def test_a_large_write_back_never_shows_a_partial_file_and_a_failed_one_changes_nothing(
        sdk, session, mnt, module_mounts):
    sdk.mkdir(session, "fail")
    old = os.urandom(1 << 20)
    put(sdk, session, "fail/big.bin", old, mnt)
    old_hash = sdk.stat(session, "fail/big.bin").hash
    f = mnt / "fail" / "big.bin"
    assert f.read_bytes() == old
    new = os.urandom(12 << 20)  # 48 pieces

    seen_hashes: set[str] = set()
    shown_in_mount: list[str] = []

    def check() -> None:
        seen_hashes.add(sdk.stat(session, "fail/big.bin").hash)
        shown_in_mount.extend(n for n in os.listdir(f.parent) if TEMP in n)

    def intrude(name: str) -> None:
        # someone else writes to the temporary: the next piece fails, midway
        sdk.write_file(session, f"fail/{name}", b"intruder")

    t, errors = write_in_background(f, new)
    temp = watch_upload(sdk, session, "fail", t, intrude, check)
    # while it was sent, and after it failed, the daemon showed the old file
    assert seen_hashes == {old_hash}
    assert temp, "the upload did not go through a temporary"
    assert temp.startswith(".big.bin" + TEMP)
    assert [e.errno for e in errors] == [errno.EIO]  # the fsync reports it
    assert bytes(sdk.read_file(session, "fail/big.bin").data) == old
    assert names(sdk, session, "fail") == ["big.bin"]  # the temporary is gone
    assert shown_in_mount == []  # and the mount never listed it
    # the local version stays, dirty, and the next fsync writes it back
    assert f.read_bytes() == new
    assert xattr.getxattr(str(f), "user.aether.state") == b"dirty"

    pid = mount_pid(module_mounts.env, mnt)
    peak = peak_rss(pid)
    fd = os.open(f, os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    assert bytes(sdk.read_file(session, "fail/big.bin").data) == new
    assert names(sdk, session, "fail") == ["big.bin"]
    assert xattr.getxattr(str(f), "user.aether.state") == b"clean"
    # streamed from the staging file: the mount never held the 12 MiB at once
    assert peak_rss(pid) - peak < 6 << 20, (peak, peak_rss(pid))


@pytest.mark.parametrize("existing", [True, False], ids=["changed", "created"])
def test_a_large_write_back_that_loses_keeps_its_upload_as_the_conflict_copy(
        sdk, session, mnt, module_mounts, existing):
    """The last step is conditional: on the hash the mount saw (a file that
    existed), or on the name being free (a file created in the mount)."""
    d = f"lose-{existing}"
    sdk.mkdir(session, d)
    f = mnt / d / "big.bin"
    if existing:
        put(sdk, session, f"{d}/big.bin", os.urandom(1 << 20), mnt)
        f.read_bytes()
    else:
        assert wait_for(lambda: (mnt / d).is_dir())[0]
    new = os.urandom(4 << 20)
    api = b"written through the API during the upload"

    # (a file created here is not in the daemon until its close writes it back)
    t, errors = write_in_background(f, new, "r+b" if existing else "wb")
    temp = watch_upload(sdk, session, d, t,
                        lambda _: sdk.write_file(session, f"{d}/big.bin", api))
    assert temp and errors == []  # a conflict is not an error: both versions are kept
    # the rename is conditional: the API's version stays
    assert bytes(sdk.read_file(session, f"{d}/big.bin").data) == api
    listed = names(sdk, session, d)
    copies = [n for n in listed if ".conflict-" in n]
    assert len(copies) == 1 and len(listed) == 2, listed
    assert bytes(sdk.read_file(session, f"{d}/{copies[0]}").data) == new
    # the conflict copy is the uploaded temporary, renamed: not sent again
    puts = [line for line in module_mounts.log(mnt).splitlines()
            if "HTTP Request: PUT" in line and f"/{d}/" in line and TEMP in line]
    assert len(puts) == 1, puts
    assert not any(f"/{d}/{c}" in line for line in module_mounts.log(mnt).splitlines()
                   for c in copies if "HTTP Request: P" in line)
    assert wait_for(lambda: f.read_bytes() == api)[0]
    assert (mnt / d / copies[0]).read_bytes() == new


def test_a_wide_edit_of_a_large_file_patches_a_copy_and_renames_it(
        sdk, session, mnt, module_mounts):
    sdk.mkdir(session, "wide")
    data = bytearray(os.urandom(3 << 20))
    put(sdk, session, "wide/big.bin", bytes(data), mnt)
    f = mnt / "wide" / "big.bin"
    with open(f, "r+b") as fh:  # a span of 1 MiB: more than a piece, less than half
        fh.seek(1 << 20)
        fh.write(b"A" * 1000)
        fh.seek((2 << 20) - 1000)
        fh.write(b"B" * 1000)
    data[1 << 20:(1 << 20) + 1000] = b"A" * 1000
    data[(2 << 20) - 1000:2 << 20] = b"B" * 1000
    settle(mnt)
    assert bytes(sdk.read_file(session, "wide/big.bin").data) == bytes(data)
    assert names(sdk, session, "wide") == ["big.bin"]
    sent = [line for line in module_mounts.log(mnt).splitlines()
            if "HTTP Request: P" in line and "/wide/" in line]
    # no whole upload: the copy is made by the daemon, 4 pieces of the span follow
    assert not any("PUT" in line for line in sent), sent
    assert len(sent) == 4 and all(TEMP in line for line in sent), sent


def test_chmod_racing_a_remote_change_applies_to_the_new_content(sdk, session, mnt,
                                                                 module_mounts):
    sdk.mkdir(session, "chmod")
    put(sdk, session, "chmod/f", b"v0", mnt)
    f = mnt / "chmod" / "f"
    assert f.read_bytes() == b"v0"
    for i, mode in enumerate([0o600, 0o755, 0o640, 0o700, 0o604, 0o750, 0o644, 0o711], 1):
        content = f"version {i}".encode()
        # The mount learns of this write a few ms later (an event); the chmod
        # comes first, so it is conditional on the hash the mount had.
        sdk.write_file(session, "chmod/f", content)
        os.chmod(f, mode)
        info = sdk.stat(session, "chmod/f")
        assert (info.mode, bytes(sdk.read_file(session, "chmod/f").data)) == (mode, content)
        assert wait_for(lambda: stat.S_IMODE(os.stat(f).st_mode) == mode  # noqa: B023
                        and f.read_bytes() == content)[0]  # noqa: B023
    assert "during a chmod" in module_mounts.log(mnt)  # the race was met


def test_a_refused_chmod_leaves_the_mode_as_the_daemon_has_it(sdk, module_mounts):
    s = sdk.create_session(name="refused-chmod").id
    sdk.write_file(s, "f", b"x", mode=0o644)
    m = module_mounts.mount(s, "refused-chmod")
    f = m / "f"
    assert f.read_bytes() == b"x"
    sdk.archive_session(s)
    with pytest.raises(OSError) as exc:
        os.chmod(f, 0o600)
    assert exc.value.errno == errno.EROFS
    time.sleep(1.2)  # past the kernel's attribute timeout: the mount answers
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o644
    assert sdk.stat(s, "f").mode == 0o644


@pytest.mark.skipif(not have("strace"), reason="needs strace")
def test_evicted_cache_files_are_unlinked_off_the_fuse_thread(mounts, sdk):
    s = sdk.create_session(name="evict").id
    blobs = {f"f{i}": os.urandom(300_000) for i in range(6)}
    for name, data in blobs.items():
        sdk.write_file(s, name, data)
    mnt = mounts.mount(s, "evict", "--cache-size", "512K")
    pid = mount_pid(mounts.env, mnt)
    out = mounts.base / "strace.out"
    tracer = subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=unlink,unlinkat",
                               "-o", str(out), "-p", str(pid)])
    try:
        def traced() -> bool:
            with open(f"/proc/{pid}/status") as st_:
                return any(line.startswith("TracerPid:") and line.split()[1] != "0"
                           for line in st_)
        assert wait_for(traced, timeout=10)[0]
        for _ in range(2):
            for name, data in blobs.items():
                assert (mnt / name).read_bytes() == data
        trash = mounts.base / "cache" / "trash"
        assert wait_for(lambda: not any(trash.iterdir()), timeout=10)[0]
    finally:
        tracer.send_signal(signal.SIGINT)
        tracer.wait(timeout=10)
    calls = [line for line in out.read_text().splitlines()
             if "unlink" in line and ("/blobs/" in line or "/trash/" in line)]
    assert calls, "nothing was evicted"
    threads = {int(line.split()[0]) for line in calls}
    assert pid not in threads, calls  # the main thread runs trio and the FUSE loop


def test_the_echo_table_is_bounded_without_events():
    from aether.mount.coherence import Echoes

    echoes = Echoes(ttl=0.05)
    for i in range(1000):
        echoes.expect("file.written", f"f{i}")
    echoes.cancel("file.written", "f999")
    assert len(echoes) == 999
    time.sleep(0.1)
    echoes.expect("file.written", "last")  # expired ones go as new ones come
    assert len(echoes) == 1
    assert echoes.consume("file.written", "last") and len(echoes) == 0
    assert not echoes.consume("file.written", "f0")

    capped = Echoes(ttl=60, limit=100)
    for i in range(1000):
        capped.expect("dir.created", f"d{i}")
    assert len(capped) == 100
    assert capped.consume("dir.created", "d999") and not capped.consume("dir.created", "d0")


pytestmark = pytest.mark.timeout(180)
