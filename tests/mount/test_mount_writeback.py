"""Write-back of files larger than one upload piece, chmod racing the API,
and cache eviction off the FUSE thread.

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

import blake3
import pytest
import xattr
from mount_helpers import have, run_aether, settle, settled, wait_for

from aether import pb


@pytest.fixture(scope="module")
def session(sdk):
    return sdk.create_session(name="writeback").id


@pytest.fixture(scope="module")
def mnt(module_mounts, session):
    return module_mounts.mount(session, "wb")


def mount_info(env, mnt) -> dict:
    items = json.loads(run_aether(env, "mounts", "--json").stdout)
    return next(m for m in items if m["mountpoint"] == str(mnt))


def chunk_uploads(mounts, mnt) -> int:
    """Chunk upload requests the mount has made (its log has every request)."""
    return sum('/chunks "' in line for line in mounts.log(mnt).splitlines())


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


def test_a_large_write_back_is_all_or_nothing_and_a_refused_one_changes_nothing(
        sdk, module_mounts):
    """Chunks go up first, then one conditional write of the chunk list: the
    daemon shows the old file until that write, and a write it refuses (a
    quota here) changes nothing. The content stays staged and dirty; the next
    fsync sends it, and the chunks already uploaded are not sent again."""
    s = sdk.create_session(name="refused-large", policy=pb.SessionPolicy(max_bytes=4 << 20)).id
    old = os.urandom(1 << 20)
    sdk.write_file(s, "big.bin", old)
    old_hash = sdk.stat(s, "big.bin").hash
    m = module_mounts.mount(s, "refused-large")
    f = m / "big.bin"
    assert f.read_bytes() == old
    new = os.urandom(12 << 20)  # over the quota

    seen: set[str] = set()
    t, errors = write_in_background(f, new)
    while t.is_alive():
        seen.add(sdk.stat(s, "big.bin").hash)
        time.sleep(0.002)
    t.join()
    assert seen == {old_hash}  # never a partial file
    assert [e.errno for e in errors] == [errno.ENOSPC]  # the fsync reports the refusal
    assert bytes(sdk.read_file(s, "big.bin").data) == old
    assert names(sdk, s, "") == ["big.bin"]
    assert f.read_bytes() == new  # the local version stays, dirty
    assert xattr.getxattr(str(f), "user.aether.state") == b"dirty"

    sdk.update_session(s, policy=pb.SessionPolicy(max_bytes=64 << 20))
    uploads = chunk_uploads(module_mounts, m)
    fd = os.open(f, os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    assert bytes(sdk.read_file(s, "big.bin").data) == new
    assert xattr.getxattr(str(f), "user.aether.state") == b"clean"
    assert chunk_uploads(module_mounts, m) == uploads  # its chunks were there already


@pytest.mark.parametrize("existing", [True, False], ids=["changed", "created"])
def test_a_large_write_back_that_loses_keeps_a_conflict_copy_without_sending_it_again(
        sdk, session, mnt, module_mounts, existing):
    """The write of the chunk list is conditional: on the hash the mount saw
    (a file that existed), or on the name being free (a file created in the
    mount). The conflict copy is written from the chunks already uploaded."""
    d = f"lose-{existing}"
    sdk.mkdir(session, d)
    f = mnt / d / "big.bin"
    if existing:
        put(sdk, session, f"{d}/big.bin", os.urandom(1 << 20), mnt)
        f.read_bytes()
    else:
        assert wait_for(lambda: (mnt / d).is_dir())[0]
    new = os.urandom(4 << 20)
    api = b"written through the API before the mount's write-back"
    with open(f, "r+b" if existing else "wb") as fh:
        fh.write(new)
        fh.flush()  # staged in the mount; nothing sent before the fsync
        sdk.write_file(session, f"{d}/big.bin", api)
        uploads = chunk_uploads(module_mounts, mnt)
        os.fsync(fh.fileno())  # a conflict is not an error: both versions are kept
    assert bytes(sdk.read_file(session, f"{d}/big.bin").data) == api
    listed = names(sdk, session, d)
    copies = [n for n in listed if ".conflict-" in n]
    assert len(copies) == 1 and len(listed) == 2, listed
    assert bytes(sdk.read_file(session, f"{d}/{copies[0]}").data) == new
    assert chunk_uploads(module_mounts, mnt) == uploads + 1  # 4 MiB, once
    assert wait_for(lambda: f.read_bytes() == api)[0]
    assert (mnt / d / copies[0]).read_bytes() == new


def test_an_edit_of_a_large_file_sends_only_the_chunks_it_touched(sdk, module_mounts):
    session = sdk.create_session(name="edit").id  # a mount of its own: its counters
    mnt = module_mounts.mount(session, "edit")
    sdk.mkdir(session, "edit")
    data = bytearray(os.urandom(6 << 20))
    put(sdk, session, "edit/big.bin", bytes(data), mnt)
    f = mnt / "edit" / "big.bin"
    assert f.read_bytes() == data
    before = {"chunk_bytes_sent": 0}
    with open(f, "r+b") as fh:  # two edits in the fourth chunk
        fh.seek((3 << 20) + 100)
        fh.write(b"A" * 1000)
        fh.seek((4 << 20) - 1000)
        fh.write(b"B" * 1000)
    data[(3 << 20) + 100:(3 << 20) + 1100] = b"A" * 1000
    data[(4 << 20) - 1000:4 << 20] = b"B" * 1000
    with open(f, "ab") as fh:  # and an append: a seventh chunk
        fh.write(b"tail")
    data += b"tail"
    settle(mnt)
    assert bytes(sdk.read_file(session, "edit/big.bin").data) == bytes(data)
    assert names(sdk, session, "edit") == ["big.bin"]

    def counted() -> bool:
        now = mount_info(module_mounts.env, mnt)
        return now["chunk_bytes_sent"] - before["chunk_bytes_sent"] == (1 << 20) + 4
    # the fourth chunk and the new last one; the other five were not sent
    # (the mount reports its counters every 2 s)
    assert wait_for(counted, timeout=15)[0], (before, mount_info(module_mounts.env, mnt))


def test_a_sparse_file_over_2_gib_moves_only_its_distinct_chunks(sdk, module_mounts):
    """2.5 GiB, all zeros but its last bytes: past every 32-bit offset, and
    sent as two distinct chunks (the daemon stores a chunk once)."""
    session = sdk.create_session(name="huge").id  # a mount of its own: its counters
    mnt = module_mounts.mount(session, "huge")
    size = 5 << 29
    f = mnt / "huge.bin"
    before = {"chunk_bytes_sent": 0, "chunk_bytes_skipped": 0}
    with open(f, "w+b") as fh:
        fh.seek(size - 3)
        fh.write(b"end")
        fh.flush()
        os.fsync(fh.fileno())
        fh.seek(size - 5)  # read back through the mount (its staging file)
        assert fh.read() == b"\0\0end"
    assert os.stat(f).st_size == size
    want = blake3.blake3()
    zeros = bytes(1 << 24)
    for _ in range((size - 3) // len(zeros)):
        want.update(zeros)
    want.update(bytes((size - 3) % len(zeros)) + b"end")
    info = sdk.stat(session, "huge.bin")
    assert (info.size, info.hash) == (size, want.hexdigest())
    assert sdk.read_file(session, "huge.bin", offset=size - 10, length=10).data == \
        bytes(7) + b"end"

    def counted() -> bool:
        now = mount_info(module_mounts.env, mnt)
        sent = now["chunk_bytes_sent"] - before["chunk_bytes_sent"]
        skipped = now["chunk_bytes_skipped"] - before["chunk_bytes_skipped"]
        return 0 < sent <= 2 << 20 and sent + skipped == size
    assert wait_for(counted, timeout=15)[0], mount_info(module_mounts.env, mnt)
    os.unlink(f)


def test_chmod_racing_a_remote_change_keeps_both(sdk, session, mnt):
    """A chmod changes the mode of whatever content the file has when it
    arrives: it never undoes a write made through the API meanwhile."""
    sdk.mkdir(session, "chmod")
    put(sdk, session, "chmod/f", b"v0", mnt)
    f = mnt / "chmod" / "f"
    assert f.read_bytes() == b"v0"
    for i, mode in enumerate([0o600, 0o755, 0o640, 0o700, 0o604, 0o750, 0o644, 0o711], 1):
        content = f"version {i}".encode()
        # The mount learns of this write a few ms later (an event); the chmod
        # comes first.
        sdk.write_file(session, "chmod/f", content)
        os.chmod(f, mode)
        info = settled(sdk, mnt).stat(session, "chmod/f")
        assert (info.mode, bytes(sdk.read_file(session, "chmod/f").data)) == (mode, content)
        assert wait_for(lambda: stat.S_IMODE(os.stat(f).st_mode) == mode  # noqa: B023
                        and f.read_bytes() == content)[0]  # noqa: B023


def test_a_refused_chmod_is_reported_and_undone(sdk, module_mounts):
    """Like any change the daemon refuses after it was acknowledged: fsync
    reports it, and the mount shows the session's mode again."""
    s = sdk.create_session(name="refused-chmod").id
    sdk.write_file(s, "f", b"x", mode=0o644)
    m = module_mounts.mount(s, "refused-chmod")
    f = m / "f"
    assert f.read_bytes() == b"x"
    sdk.archive_session(s)
    fd = os.open(f, os.O_RDONLY)
    try:
        os.chmod(f, 0o600)
        with pytest.raises(OSError) as exc:
            os.fsync(fd)
        assert exc.value.errno == errno.EROFS
    finally:
        os.close(fd)
    assert wait_for(lambda: stat.S_IMODE(os.stat(f).st_mode) == 0o644)[0]
    assert sdk.stat(s, "f").mode == 0o644


@pytest.mark.skipif(not have("strace"), reason="needs strace")
def test_evicted_cache_files_are_unlinked_off_the_fuse_thread(mounts, sdk):
    s = sdk.create_session(name="evict").id
    blobs = {f"f{i}": os.urandom(300_000) for i in range(6)}
    for name, data in blobs.items():
        sdk.write_file(s, name, data)
    mnt = mounts.mount(s, "evict", "--cache-size", "512K")
    pid = mount_info(mounts.env, mnt)["pid"]
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


pytestmark = pytest.mark.timeout(180)
