"""Live coherence with the API, the conflict rule, unmounting, daemon restarts."""

from __future__ import annotations

import os
import random
import threading
import time

import pytest
from mount_helpers import (
    LIVE_SECONDS,
    Mounts,
    is_mounted,
    mount_env,
    run_aether,
    settle,
    wait_for,
)

from aether.client import Client


def test_api_changes_appear_within_a_second(module_mounts, sdk):
    s = sdk.create_session(name="live").id
    sdk.write_file(s, "doc.txt", b"v1")
    sdk.mkdir(s, "dir")
    mnt = module_mounts.mount(s, "live")
    assert (mnt / "doc.txt").read_text() == "v1"  # cached in the kernel and the mount
    assert sorted(os.listdir(mnt)) == ["dir", "doc.txt"]
    assert os.listdir(mnt / "dir") == []

    sdk.write_file(s, "new.txt", b"fresh")
    got, took = wait_for(lambda: (mnt / "new.txt").read_text() == "fresh")
    assert got, f"an API create was not visible after {took:.2f}s"

    sdk.write_file(s, "doc.txt", b"version two")
    got, took = wait_for(lambda: (mnt / "doc.txt").read_text() == "version two")
    assert got, f"an API overwrite was not visible after {took:.2f}s"
    assert os.stat(mnt / "doc.txt").st_size == len("version two")

    sdk.write_file(s, "dir/inner", b"in")
    got, took = wait_for(lambda: os.listdir(mnt / "dir") == ["inner"])
    assert got, f"an API write into a listed directory was not visible after {took:.2f}s"

    sdk.rename(s, "new.txt", "dir/renamed.txt")
    got, took = wait_for(lambda: not (mnt / "new.txt").exists()
                         and (mnt / "dir" / "renamed.txt").read_text() == "fresh")
    assert got, f"an API rename was not visible after {took:.2f}s"

    sdk.delete_file(s, "doc.txt")
    got, took = wait_for(lambda: not (mnt / "doc.txt").exists())
    assert got, f"an API delete was not visible after {took:.2f}s"

    ckp = sdk.create_checkpoint(s, message="before restore")
    sdk.write_file(s, "later.txt", b"later")
    assert wait_for(lambda: (mnt / "later.txt").exists())[0]
    sdk.restore_session(s, ckp.id)
    got, took = wait_for(lambda: not (mnt / "later.txt").exists())
    assert got, f"a restore was not visible after {took:.2f}s"
    assert LIVE_SECONDS <= 1.0


def test_conflicting_writes_keep_both_versions(module_mounts, sdk):
    """First write-back wins; the losing local version is kept as a conflict copy."""
    s = sdk.create_session(name="conflict").id
    sdk.write_file(s, "shared.txt", b"original")
    mnt = module_mounts.mount(s, "conflict")
    assert (mnt / "shared.txt").read_text() == "original"
    with open(mnt / "shared.txt", "r+b") as fh:
        fh.write(b"MOUNT")
        fh.flush()  # local only until close
        sdk.write_file(s, "shared.txt", b"from the API")
    settle(mnt)  # the close journalled the write-back; this waits for its answer
    assert bytes(sdk.read_file(s, "shared.txt").data) == b"from the API"
    copies = [e.path for e in sdk.iter_tree(s, "") if ".conflict-" in e.path]
    assert len(copies) == 1 and copies[0].startswith("shared.txt.conflict-")
    assert bytes(sdk.read_file(s, copies[0]).data) == b"MOUNTnal"
    assert wait_for(lambda: (mnt / "shared.txt").read_text() == "from the API")[0]
    assert (mnt / copies[0]).read_text() == "MOUNTnal"
    assert "write-back conflict on shared.txt" in module_mounts.log(mnt)


def test_a_lost_race_with_a_rename_behind_it_keeps_both_under_the_new_name(
        module_mounts, sdk):
    """The write that loses is followed by a rename of the same file (an
    editor's save, git's index.lock): both versions are kept and the file
    stays visible under its new name. When the rename is journalled before
    the loss is answered, the conflict copy goes next to the new name once
    the rename has arrived; when the answer comes first, next to the old one
    (the race between close and rename decides which)."""
    s = sdk.create_session(name="conflict-rename").id
    sdk.mkdir(s, "dst")
    sdk.write_file(s, "shared.txt", b"original")
    mnt = module_mounts.mount(s, "conflict-rename")
    assert (mnt / "shared.txt").read_text() == "original"
    with open(mnt / "shared.txt", "r+b") as fh:
        fh.write(b"MOUNT")
        fh.flush()
        sdk.write_file(s, "shared.txt", b"from the API")
    os.rename(mnt / "shared.txt", mnt / "dst" / "moved.txt")
    settle(mnt)
    names = sorted(e.path for e in sdk.iter_tree(s, "", recursive=True))
    copies = [n for n in names if ".conflict-" in n]
    assert len(copies) == 1 and copies[0].startswith(
        ("dst/moved.txt.conflict-", "shared.txt.conflict-")), names
    assert "shared.txt" not in names
    assert bytes(sdk.read_file(s, "dst/moved.txt").data) == b"from the API"
    assert bytes(sdk.read_file(s, copies[0]).data) == b"MOUNTnal"
    assert wait_for(lambda: (mnt / "dst" / "moved.txt").read_text() == "from the API")[0]
    assert wait_for(lambda: (mnt / copies[0]).exists())[0]
    assert (mnt / copies[0]).read_text() == "MOUNTnal"
    assert wait_for(lambda: not (mnt / "shared.txt").exists())[0]


def test_a_write_back_after_an_api_delete_keeps_the_local_version(module_mounts, sdk):
    s = sdk.create_session(name="conflict-delete").id
    sdk.write_file(s, "gone.txt", b"original")
    mnt = module_mounts.mount(s, "conflict-delete")
    with open(mnt / "gone.txt", "r+b") as fh:
        fh.write(b"LOCAL")
        fh.flush()
        sdk.delete_file(s, "gone.txt")
        # Events apply in order: once a later write shows, the delete has been
        # seen too, and the dirty local file must still be there.
        sdk.write_file(s, "sentinel.txt", b"after the delete")
        assert wait_for(lambda: (mnt / "sentinel.txt").exists())[0]
        assert (mnt / "gone.txt").exists()
    settle(mnt)  # the write-back has met the conflict rule: the copy is there
    sdk.delete_file(s, "sentinel.txt")
    assert wait_for(lambda: not (mnt / "sentinel.txt").exists())[0]
    names = sorted(e.path for e in sdk.iter_tree(s, ""))
    assert len(names) == 1 and names[0].startswith("gone.txt.conflict-"), names
    assert bytes(sdk.read_file(s, names[0]).data) == b"LOCALnal"
    assert wait_for(lambda: sorted(os.listdir(mnt)) == names)[0]


def test_unmount_with_an_open_file(mounts, sdk):
    s = sdk.create_session(name="busy").id
    mnt = mounts.mount(s, "busy")
    fh = open(mnt / "open.txt", "wb")
    try:
        fh.write(b"written before umount\n")
        fh.flush()
        os.fsync(fh.fileno())
        r = run_aether(mounts.env, "umount", str(mnt), check=False)
        assert r.returncode != 0 and "busy" in r.stderr, r.stderr
        assert is_mounted(mnt)
        run_aether(mounts.env, "umount", "--lazy", str(mnt))
        assert not is_mounted(mnt)
        fh.write(b"written after a lazy umount\n")  # the open file still works
    finally:
        fh.close()
    # The process writes back and exits once the last file is closed.
    gone, _ = wait_for(lambda: run_aether(mounts.env, "mounts", "--json").stdout.strip()
                       == "[]", timeout=30, interval=0.2)
    assert gone
    assert bytes(sdk.read_file(s, "open.txt").data) == \
        b"written before umount\nwritten after a lazy umount\n"


def test_fsynced_data_is_in_the_daemon_after_umount(mounts, sdk):
    s = sdk.create_session(name="durable").id
    mnt = mounts.mount(s, "durable")
    data = os.urandom(3 << 20)
    with open(mnt / "data.bin", "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    mounts.umount(mnt)
    assert not is_mounted(mnt)
    assert bytes(sdk.read_file(s, "data.bin").data) == data


def test_daemon_restart_while_mounted(fresh_daemon, tmp_path):
    d = fresh_daemon.start()
    mounts = Mounts(mount_env(d, tmp_path), tmp_path)
    try:
        with Client(d.http_url, token=d.token) as c:
            s = c.create_session(name="restart").id
            c.write_file(s, "before.txt", b"before")
        mnt = mounts.mount(s, "restart")
        assert (mnt / "before.txt").read_text() == "before"
        with open(mnt / "synced.txt", "wb") as fh:
            fh.write(b"acknowledged")
            fh.flush()
            os.fsync(fh.fileno())
        d.kill()  # a crash, not a clean stop
        # Cached content still reads while the daemon is down.
        assert (mnt / "before.txt").read_text() == "before"
        time.sleep(1)
        d.start()
        # A write during/after the outage goes through once the daemon is back.
        (mnt / "after.txt").write_text("after")
        settle(mnt)
        with Client(d.http_url, token=d.token) as c:
            assert bytes(c.read_file(s, "synced.txt").data) == b"acknowledged"
            assert bytes(c.read_file(s, "after.txt").data) == b"after"
            # and the event stream is followed again
            c.write_file(s, "from-api.txt", b"api")
        got, took = wait_for(lambda: (mnt / "from-api.txt").exists(), timeout=20)
        assert got, f"events not followed again after the restart ({took:.1f}s)"
        mounts.umount(mnt)
    finally:
        mounts.cleanup()


def test_changes_in_flight_when_the_daemon_dies_arrive_exactly_once(fresh_daemon, tmp_path):
    """The daemon is killed while a stream of renames and symlinks (not
    idempotent) is being sent: a batch in flight may have been committed or
    not, and its answer is lost either way. The mount sends it again with
    the same batch id until answered, so after the restart the session holds
    exactly what the mount shows: nothing missing, nothing applied twice."""
    d = fresh_daemon.start()
    mounts = Mounts(mount_env(d, tmp_path), tmp_path)
    rng = random.Random(5)
    try:
        with Client(d.http_url, token=d.token) as c:
            s = c.create_session(name="in-flight").id
        mnt = mounts.mount(s, "in-flight")
        for round_ in range(3):
            base = mnt / f"r{round_}"
            base.mkdir()

            def work(base=base) -> None:
                for i in range(300):
                    (base / f"f{i}").write_bytes(b"x")
                    os.rename(base / f"f{i}", base / f"g{i}")
                    os.symlink(f"g{i}", base / f"l{i}")

            t = threading.Thread(target=work)
            t.start()
            time.sleep(rng.uniform(0.05, 0.5))
            d.kill()
            time.sleep(0.2)
            d.start()
            t.join()
            settle(mnt)
            want = {f"g{i}" for i in range(300)} | {f"l{i}" for i in range(300)}
            assert set(os.listdir(base)) == want
            with Client(d.http_url, token=d.token) as c:
                got = {e.path.rpartition("/")[2]
                       for e in c.list_tree(s, f"r{round_}", page_size=10_000).entries}
            assert got == want, f"round {round_}: {sorted(got ^ want)[:10]}"
        assert "failed at the daemon" not in mounts.log(mnt)  # no change refused
        mounts.umount(mnt)
    finally:
        mounts.cleanup()


def test_write_during_a_daemon_outage_waits_for_it(fresh_daemon, tmp_path):
    d = fresh_daemon.start()
    mounts = Mounts(mount_env(d, tmp_path), tmp_path)
    try:
        with Client(d.http_url, token=d.token) as c:
            s = c.create_session(name="outage").id
        mnt = mounts.mount(s, "outage")
        os.listdir(mnt)
        d.kill()
        fh = open(mnt / "during.txt", "wb")
        fh.write(b"during the outage")
        # fsync (the write-back barrier) while the daemon is still down; it
        # comes back 1.5 s later.
        restart = threading.Timer(1.5, d.start)
        restart.start()
        start = time.monotonic()
        fh.flush()
        os.fsync(fh.fileno())  # the write-back retried until the daemon answered again
        took = time.monotonic() - start
        fh.close()
        restart.join()
        assert 1.0 < took < 30
        with Client(d.http_url, token=d.token) as c:
            assert bytes(c.read_file(s, "during.txt").data) == b"during the outage"
    finally:
        mounts.cleanup()


pytestmark = pytest.mark.timeout(180)


def test_a_write_back_under_an_ancestor_renamed_through_the_api_fails_clearly(
        module_mounts, sdk):
    """x/y/f.txt is open and dirty when x is renamed through the API. Known gap
    (docs/mount.md, "Not done yet"): the write-back does not follow the rename.
    What must hold meanwhile: fsync reports ENOENT, and nothing lands anywhere
    in the session (the content stays in the mount's staging file)."""
    s = sdk.create_session(name="ancestor").id
    sdk.write_file(s, "x/y/f.txt", b"old")
    mnt = module_mounts.mount(s, "ancestor")
    fd = os.open(mnt / "x" / "y" / "f.txt", os.O_RDWR)  # unbuffered: no flush before close
    try:
        os.write(fd, b"NEW")  # in the mount's staging file, dirty
        sdk.rename(s, "x", "z")
        assert wait_for(lambda: (mnt / "z").exists())[0]
        with pytest.raises(FileNotFoundError):
            os.fsync(fd)  # the write-back happens here
    finally:
        os.close(fd)
    paths = sorted(e.path for e in sdk.iter_tree(s, "", recursive=True))
    assert paths == ["z", "z/y", "z/y/f.txt"], paths
    assert bytes(sdk.read_file(s, "z/y/f.txt").data) == b"old"
