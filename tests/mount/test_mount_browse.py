"""Mounting, browsing, the CLI around mounts, xattrs, read-only and --at mounts."""

from __future__ import annotations

import errno
import json
import os
import stat

import pytest
import xattr
from mount_helpers import is_mounted, run_aether, settle, settled, wait_for

from aether.client import source


@pytest.fixture(scope="module")
def tree(sdk, tmp_path_factory):
    """A session made from a directory: files, a subdirectory, a symlink, 1,500 names."""
    src = tmp_path_factory.mktemp("src")
    (src / "hello.txt").write_text("hello\n")
    (src / "bin").mkdir()
    (src / "bin" / "run.sh").write_text("#!/bin/sh\necho run\n")
    (src / "bin" / "run.sh").chmod(0o755)
    (src / "link").symlink_to("hello.txt")
    (src / "big").write_bytes(os.urandom(3 * (1 << 20) + 123))
    (src / "many").mkdir()
    for i in range(1500):
        (src / "many" / f"f{i:04d}").write_text(str(i))
    s = sdk.create_session(source.directory(src), name="browse")
    return s.id, src


@pytest.fixture(scope="module")
def mnt(module_mounts, tree):
    return module_mounts.mount(tree[0], "browse")


def test_tree_reads_like_the_source(mnt, tree):
    _, src = tree
    assert sorted(os.listdir(mnt)) == sorted(os.listdir(src))
    assert (mnt / "hello.txt").read_text() == "hello\n"
    assert (mnt / "big").read_bytes() == (src / "big").read_bytes()
    assert os.readlink(mnt / "link") == "hello.txt"
    assert (mnt / "link").read_text() == "hello\n"
    st = os.stat(mnt / "bin" / "run.sh")
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o755
    assert st.st_size == len("#!/bin/sh\necho run\n")
    assert stat.S_ISDIR(os.stat(mnt / "bin").st_mode)
    assert stat.S_ISLNK(os.lstat(mnt / "link").st_mode)
    with pytest.raises(FileNotFoundError):
        os.stat(mnt / "nope")


def test_large_directory_lists_completely_with_attributes(mnt):
    names = os.listdir(mnt / "many")
    assert len(names) == 1500 and len(set(names)) == 1500
    with os.scandir(mnt / "many") as it:
        sizes = {e.name: e.stat().st_size for e in it}
    assert sizes["f1499"] == 4


def test_readdir_offsets_are_stable_cursors(mnt, sdk, tree):
    """Entries added while a listing is in progress neither repeat nor hide others."""
    d = mnt / "many"
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        seen: list[str] = []
        with os.scandir(fd) as it:
            for i, e in enumerate(it):
                seen.append(e.name)
                if i == 10:
                    (d / "zz-added-during-listing").write_text("x")
        assert len(seen) == len(set(seen))
        assert {f"f{i:04d}" for i in range(1500)} <= set(seen)
    finally:
        os.close(fd)
        os.unlink(d / "zz-added-during-listing")


def test_xattrs(mnt, sdk, tree):
    sid, _ = tree
    f = str(mnt / "big")
    info = sdk.stat(sid, "big")
    assert xattr.getxattr(f, "user.aether.hash").decode() == info.hash
    assert xattr.getxattr(f, "user.aether.session").decode() == sid
    assert xattr.getxattr(f, "user.aether.state") == b"clean"
    extents = json.loads(xattr.getxattr(f, "user.aether.extents"))
    assert [(e["offset"], e["length"]) for e in extents] == \
        [(0, 1 << 20), (1 << 20, 1 << 20), (2 << 20, 1 << 20), (3 << 20, 123)]
    assert {"user.aether.hash", "user.aether.state", "user.aether.session",
            "user.aether.extents"} <= set(xattr.listxattr(f))
    with pytest.raises(OSError) as e:
        xattr.getxattr(f, "security.capability")
    assert e.value.errno == errno.ENODATA
    with pytest.raises(OSError) as e:
        xattr.setxattr(f, "user.aether.hash", b"x")
    assert e.value.errno == errno.EPERM
    # other user.* attributes are the session's: stored by the daemon
    xattr.setxattr(f, "user.note", b"remember me")
    assert xattr.getxattr(f, "user.note") == b"remember me"
    assert "user.note" in xattr.listxattr(f)
    assert settled(sdk, mnt).stat(sid, "big").xattrs == {"user.note": b"remember me"}
    xattr.removexattr(f, "user.note")
    with pytest.raises(OSError) as e:
        xattr.getxattr(f, "user.note")
    assert e.value.errno == errno.ENODATA
    assert settled(sdk, mnt).stat(sid, "big").xattrs == {}


def test_xattrs_set_through_the_api_show_within_a_second(mnt, sdk, tree):
    sid, _ = tree
    f = str(mnt / "hello.txt")
    assert xattr.getxattr(f, "user.aether.state") == b"clean"
    sdk.set_attributes(sid, "hello.txt", set_xattrs={"user.from-api": b"\x00\x01"})
    assert wait_for(lambda: "user.from-api" in xattr.listxattr(f))[0]
    assert xattr.getxattr(f, "user.from-api") == b"\x00\x01"
    sdk.set_attributes(sid, "bin", set_xattrs={"user.dir": b"d"}, mode=0o700)
    assert wait_for(lambda: stat.S_IMODE(os.stat(mnt / "bin").st_mode) == 0o700)[0]
    assert xattr.getxattr(str(mnt / "bin"), "user.dir") == b"d"
    sdk.set_attributes(sid, "hello.txt", remove_xattrs=["user.from-api"])
    assert wait_for(lambda: "user.from-api" not in xattr.listxattr(f))[0]


@pytest.mark.parametrize(("name", "value", "code"), [
    (b"user." + b"n" * 251, b"v", errno.ERANGE),
    (b"user.big", b"x" * (64 * 1024 + 1), errno.E2BIG),
    (b"user.\xff\xfe", b"v", errno.EINVAL),
    (b"trusted.x", b"v", errno.ENOTSUP),
])
def test_xattrs_the_daemon_would_refuse_fail_at_once(mnt, name, value, code):
    f = str(mnt / "hello.txt")
    with pytest.raises(OSError) as e:
        os.setxattr(f, name, value)
    assert e.value.errno == code


def test_xattrs_are_bounded_per_file(mnt, sdk, tree):
    sid, _ = tree
    f = str(mnt / "bin" / "run.sh")
    xattr.setxattr(f, "user.a", b"x" * (40 * 1024))
    with pytest.raises(OSError) as e:
        xattr.setxattr(f, "user.b", b"x" * (40 * 1024))
    assert e.value.errno == errno.ENOSPC
    xattr.setxattr(f, "user.a", b"x" * (60 * 1024))  # replacing its own value fits
    xattr.removexattr(f, "user.a")
    assert settled(sdk, mnt).stat(sid, "bin/run.sh").xattrs == {}


def test_xattrs_outlive_the_mount(module_mounts, sdk):
    s = sdk.create_session(name="xattrs-kept").id
    sdk.write_file(s, "f", b"x")
    first = module_mounts.mount(s, "xattrs-kept-1")
    os.setxattr(first / "f", b"user.k", b"v")
    os.mkdir(first / "d")
    os.setxattr(first / "d", b"user.dir", b"yes")
    os.rename(first / "f", first / "d" / "g")
    settle(first)
    second = module_mounts.mount(s, "xattrs-kept-2")
    assert os.getxattr(second / "d" / "g", b"user.k") == b"v"
    assert os.getxattr(second / "d", b"user.dir") == b"yes"


def test_statfs(mnt):
    sv = os.statvfs(mnt)
    assert sv.f_namemax == 255
    assert sv.f_bavail > 0 and sv.f_files > 0


def test_hard_links_are_refused(mnt):
    with pytest.raises(OSError) as e:
        os.link(mnt / "hello.txt", mnt / "hello-link")
    assert e.value.errno == errno.EPERM


def test_mounts_lists_it(module_mounts, mnt, tree):
    r = run_aether(module_mounts.env, "mounts", "--json")
    items = json.loads(r.stdout)
    mine = [m for m in items if m["mountpoint"] == str(mnt)]
    assert len(mine) == 1
    assert mine[0]["session"] == tree[0] and mine[0]["state"] == "mounted"
    assert mine[0]["cache_size"] == 2 << 30
    human = run_aether(module_mounts.env, "mounts").stdout
    assert str(mnt) in human and tree[0] in human


def test_read_only_and_at_checkpoint(mounts, sdk):
    s = sdk.create_session()
    sdk.write_file(s.id, "a.txt", b"version 1")
    ckp = sdk.create_checkpoint(s.id, message="v1")
    sdk.write_file(s.id, "a.txt", b"version 2")
    ro = mounts.mount(s.id, "ro", "--read-only")
    assert (ro / "a.txt").read_text() == "version 2"
    for attempt in (lambda: (ro / "a.txt").write_text("x"), lambda: (ro / "new").touch(),
                    lambda: os.mkdir(ro / "d"), lambda: os.unlink(ro / "a.txt")):
        with pytest.raises(OSError) as e:
            attempt()
        assert e.value.errno == errno.EROFS
    old = mounts.mount(s.id, "at", "--at", ckp.id)
    assert (old / "a.txt").read_text() == "version 1"
    assert xattr.getxattr(str(old / "a.txt"), "user.aether.session").decode() == \
        f"{s.id}@{ckp.id}"
    with pytest.raises(OSError) as e:
        (old / "a.txt").write_text("x")
    assert e.value.errno == errno.EROFS
    for m in (ro, old):
        mounts.umount(m)
        assert not is_mounted(m)
    assert json.loads(run_aether(mounts.env, "mounts", "--json").stdout) == []


def test_mount_errors_are_one_line(mounts, tmp_path):
    (tmp_path / "m").mkdir()
    r = run_aether(mounts.env, "mount", "ses_01zzzzzzzzzzzzzzzzzzzzzzzz", str(tmp_path / "m"),
                   check=False)
    assert r.returncode == 3, r.stderr
    assert r.stderr.startswith("error: not_found:")
    r = run_aether(mounts.env, "umount", str(tmp_path / "m"), check=False)
    assert r.returncode == 3 and "not mounted" in r.stderr
    r = run_aether(mounts.env, "mount", "ses_x", str(tmp_path / "missing"), check=False)
    assert r.returncode == 3 and "not a directory" in r.stderr


def test_reading_a_directory_of_small_files_takes_few_requests(mnt, module_mounts):
    """The first read of a small file brings its small uncached siblings along
    (one fs:read of up to 256 files): reading all 1,500 files of `many` costs a
    few batch reads, not 1,500 downloads, and every content is right."""
    def requests() -> tuple[int, int]:
        lines = module_mounts.log(mnt).splitlines()
        return (sum("fs:read " in line for line in lines),
                sum("GET" in line and "/files/many/" in line for line in lines))

    batches0, singles0 = requests()
    for i in range(1500):
        assert (mnt / "many" / f"f{i:04d}").read_text() == str(i)
    batches, singles = requests()
    assert 1 <= batches - batches0 <= 1500 // 256 + 2, (batches0, batches)
    assert singles - singles0 <= 2, (singles0, singles)
