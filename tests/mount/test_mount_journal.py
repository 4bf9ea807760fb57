"""Write-behind (aether/mount/journal.py): what the mount sends, and when.

Changes are acknowledged locally and sent in `fs:apply` batches; fsync is
the barrier. These tests look at the daemon's side: its events and the
mount's request log.
"""

from __future__ import annotations

import os

import pytest
from mount_helpers import settle


@pytest.fixture(scope="module")
def session(sdk):
    return sdk.create_session(name="journal").id


@pytest.fixture(scope="module")
def mnt(module_mounts, session):
    return module_mounts.mount(session, "journal")


def events(sdk, session, after: int) -> list:
    return [e for e in sdk.iter_events(session, after=after)]


def head(sdk, session) -> int:
    return max((e.cursor for e in sdk.iter_events(session)), default=0)


def batches(module_mounts, mnt) -> int:
    return sum("fs:apply" in line for line in module_mounts.log(mnt).splitlines())


def test_many_small_changes_go_in_few_requests(sdk, session, mnt, module_mounts):
    d = mnt / "many"
    d.mkdir()
    before = batches(module_mounts, mnt)
    for i in range(300):
        (d / f"f{i}").write_text(f"file {i}\n")
    for i in range(0, 300, 2):
        os.unlink(d / f"f{i}")
    settle(mnt)
    sent = batches(module_mounts, mnt) - before
    # 450 changes; batches grow while one is out (a loose bound: timing varies)
    assert 1 <= sent <= 225, sent
    names = sorted(e.path for e in sdk.iter_tree(session, "many"))
    assert names == sorted(f"many/f{i}" for i in range(1, 300, 2))
    assert sdk.read_file(session, "many/f299").data == b"file 299\n"


def test_a_file_deleted_before_its_write_left_is_never_sent(sdk, session, mnt):
    """Write-then-unlink (a temporary): if the write was still journalled at the
    unlink, neither reaches the daemon; if it had left, the delete follows it.
    Which one happens depends on timing; what must hold is that each scratch
    file shows exactly nothing or a write then a delete, and none is left."""
    (mnt / "tmpdir").mkdir()
    settle(mnt)
    cursor = head(sdk, session)
    for i in range(20):
        p = mnt / "tmpdir" / f"scratch{i}"
        p.write_bytes(b"x" * 1000)
        os.unlink(p)
    (mnt / "tmpdir" / "kept").write_text("kept")
    settle(mnt)
    seen: dict[str, list[str]] = {}
    for e in events(sdk, session, cursor):
        seen.setdefault(e.path, []).append(e.type)
    assert seen.pop("tmpdir/kept") == ["file.written"]
    assert all(types == ["file.written", "file.deleted"] for types in seen.values()), seen
    assert [e.path for e in sdk.iter_tree(session, "tmpdir")] == ["tmpdir/kept"]


def test_renames_and_rewrites_arrive_in_order(sdk, session, mnt):
    """Each op carries the path it had when journalled: a file written,
    renamed, written again and renamed again ends where and as it should."""
    d = mnt / "chain"
    d.mkdir()
    (d / "a").write_text("one")
    os.rename(d / "a", d / "b")
    (d / "b").write_text("two")
    os.mkdir(d / "sub")
    os.rename(d / "b", d / "sub" / "c")
    os.symlink("sub/c", d / "link")
    (d / "gone").write_text("x")
    settle(mnt)
    os.unlink(d / "gone")
    settle(mnt)
    got = {e.path: e.kind.name for e in sdk.iter_tree(session, "chain", recursive=True)}
    assert got == {"chain/sub": "DIRECTORY", "chain/sub/c": "FILE", "chain/link": "SYMLINK"}
    assert sdk.read_file(session, "chain/sub/c").data == b"two"


def test_fsync_reports_a_change_the_daemon_refused(sdk, session, mnt):
    """The directory is removed through the API while a file is written into
    it in the mount: the close succeeds (journalled), the fsync reports it."""
    (mnt / "doomed").mkdir()
    settle(mnt)
    fd = os.open(mnt / "doomed" / "f", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.write(fd, b"data")
        sdk.rmdir(session, "doomed", recursive=True)
        with pytest.raises(FileNotFoundError):
            os.fsync(fd)
    finally:
        os.close(fd)
    os.fsync(os.open(mnt, os.O_RDONLY | os.O_DIRECTORY))  # reported once


def test_lock_files_renamed_into_place_back_to_back(sdk, session, mnt):
    """git's pattern (write index.lock, rename it over index), twice before
    the flusher takes the first: both writes are sent, in order, and nothing
    is reported as failed."""
    d = mnt / "lock"
    d.mkdir()
    settle(mnt)
    for i in range(3):
        (d / "index.lock").write_text(f"version {i}")
        os.rename(d / "index.lock", d / "index")
    (d / "a").write_text("moved around")
    os.rename(d / "a", d / "b")
    os.rename(d / "b", d / "a")
    os.unlink(d / "a")
    settle(mnt)  # an fsync of the directories: no failure to report
    settle(d)
    assert [e.path for e in sdk.iter_tree(session, "lock")] == ["lock/index"]
    assert sdk.read_file(session, "lock/index").data == b"version 2"
