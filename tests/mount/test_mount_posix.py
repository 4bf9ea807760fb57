"""POSIX semantics through a real mount, checked locally and in the daemon."""

from __future__ import annotations

import errno
import os
import stat
import subprocess

import pytest
import xattr
from mount_helpers import settled, wait_for

from aether.errors import NotFound


@pytest.fixture(scope="module")
def session(sdk):
    return sdk.create_session(name="posix").id


@pytest.fixture(scope="module")
def mnt(module_mounts, session):
    return module_mounts.mount(session, "posix")


@pytest.fixture
def d(mnt, request):
    """A fresh directory of the mount for one test, and its session path."""
    name = request.node.name.replace("[", "_").replace("]", "")
    path = mnt / name
    path.mkdir()
    return path


def rel(mnt, p) -> str:
    return str(p.relative_to(mnt))


def daemon_bytes(sdk, session, mnt, path: str) -> bytes:
    return bytes(settled(sdk, mnt).read_file(session, path).data)


def test_create_write_close_reaches_the_daemon(sdk, session, mnt, d):
    (d / "a.txt").write_bytes(b"hello")
    assert daemon_bytes(sdk, session, mnt, rel(mnt, d / "a.txt")) == b"hello"
    assert xattr.getxattr(str(d / "a.txt"), "user.aether.state") == b"clean"
    assert xattr.getxattr(str(d / "a.txt"), "user.aether.hash").decode() == \
        settled(sdk, mnt).stat(session, rel(mnt, d / "a.txt")).hash


def test_open_modes(sdk, session, mnt, d):
    f = d / "f"
    f.write_bytes(b"0123456789")
    with open(f, "r+b") as fh:  # O_RDWR, no truncation
        fh.seek(3)
        fh.write(b"abc")
    assert f.read_bytes() == b"012abc6789"
    with open(f, "ab") as fh:  # O_APPEND: always at the end, whatever the offset
        fh.write(b"XY")
        fh.seek(0)
        fh.write(b"Z")
    assert f.read_bytes() == b"012abc6789XYZ"
    fd = os.open(f, os.O_WRONLY | os.O_TRUNC)
    os.write(fd, b"new")
    os.close(fd)
    assert f.read_bytes() == b"new"
    assert daemon_bytes(sdk, session, mnt, rel(mnt, f)) == b"new"
    fd = os.open(d / "excl", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.close(fd)
    with pytest.raises(FileExistsError):
        os.open(d / "excl", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    assert stat.S_IMODE(os.stat(d / "excl").st_mode) == 0o600


def test_offsets_sparse_and_truncate(sdk, session, mnt, d):
    f = d / "sparse"
    fd = os.open(f, os.O_CREAT | os.O_RDWR, 0o644)
    os.pwrite(fd, b"end", 1 << 20)  # a hole before it
    os.pwrite(fd, b"start", 0)
    assert os.fstat(fd).st_size == (1 << 20) + 3
    assert os.pread(fd, 10, 5) == b"\0" * 10
    os.ftruncate(fd, 4)  # shrink through the handle
    assert os.pread(fd, 100, 0) == b"star"
    os.ftruncate(fd, 8)  # grow: zeros
    os.fsync(fd)
    assert daemon_bytes(sdk, session, mnt, rel(mnt, f)) == b"star\0\0\0\0"
    os.close(fd)
    os.truncate(f, 2)  # by path: no close follows, so it is written back at once
    assert daemon_bytes(sdk, session, mnt, rel(mnt, f)) == b"st"
    assert os.stat(f).st_size == 2


def test_fsync_writes_back_before_close(sdk, session, mnt, d):
    f = d / "log"
    with open(f, "wb") as fh:
        fh.write(b"line 1\n")
        fh.flush()
        os.fsync(fh.fileno())
        assert daemon_bytes(sdk, session, mnt, rel(mnt, f)) == b"line 1\n"
        assert xattr.getxattr(str(f), "user.aether.state") == b"clean"
        fh.write(b"line 2\n")
        fh.flush()
        assert xattr.getxattr(str(f), "user.aether.state") == b"dirty"
    assert daemon_bytes(sdk, session, mnt, rel(mnt, f)) == b"line 1\nline 2\n"


def test_large_write_read_roundtrip(sdk, session, mnt, d):
    data = os.urandom(5 * (1 << 20) + 17)
    (d / "blob").write_bytes(data)
    assert (d / "blob").read_bytes() == data
    assert daemon_bytes(sdk, session, mnt, rel(mnt, d / "blob")) == data
    assert len(settled(sdk, mnt).stat(session, rel(mnt, d / "blob")).extents) == 6


def test_truncate_below_a_write_past_the_end_of_a_large_file(sdk, session, mnt, d):
    """A large file written past its end, then cut back below that write: the
    daemon must get exactly the local bytes (once sent as an empty range write
    that left the daemon's copy longer than the mount's)."""
    mib = 1 << 20
    base = os.urandom(5 * mib)
    (d / "big").write_bytes(base)
    with open(d / "big", "r+b") as fh:
        fh.seek(6 * mib)
        fh.write(b"x" * mib)  # a hole from 5 to 6 MiB, then data to 7 MiB
        fh.truncate(5 * mib + mib // 2)  # below the write: only part of the hole stays
    want = base + b"\0" * (mib // 2)
    assert (d / "big").read_bytes() == want
    assert settled(sdk, mnt).stat(session, rel(mnt, d / "big")).size == len(want)
    assert daemon_bytes(sdk, session, mnt, rel(mnt, d / "big")) == want


def test_rename(sdk, session, mnt, d):
    (d / "x").write_text("x")
    (d / "y").write_text("y")
    (d / "sub").mkdir()
    os.rename(d / "x", d / "y")  # over an existing file
    assert (d / "y").read_text() == "x" and not (d / "x").exists()
    os.rename(d / "y", d / "sub" / "z")  # across directories
    assert sorted(os.listdir(d)) == ["sub"]
    assert (d / "sub" / "z").read_text() == "x"
    os.rename(d / "sub", d / "moved")  # a directory, with its content
    assert (d / "moved" / "z").read_text() == "x"
    os.mkdir(d / "empty")
    os.rename(d / "moved", d / "empty")  # a directory over an empty one
    assert (d / "empty" / "z").read_text() == "x"
    base = rel(mnt, d)
    assert sorted(e.path for e in settled(sdk, mnt).iter_tree(session, base, recursive=True)) == \
        [f"{base}/empty", f"{base}/empty/z"]
    os.mkdir(d / "full")
    (d / "full" / "f").write_text("f")
    with pytest.raises(OSError) as e:
        os.rename(d / "empty", d / "full")
    assert e.value.errno == errno.ENOTEMPTY
    with pytest.raises(OSError) as e:
        os.rename(d / "empty", d / "empty" / "inside")
    assert e.value.errno == errno.EINVAL
    with pytest.raises(IsADirectoryError):
        os.rename(d / "full" / "f", d / "empty")


def test_rename_of_a_file_still_being_written(sdk, session, mnt, d):
    with open(d / "tmp", "wb") as fh:
        fh.write(b"partial")
        fh.flush()
        os.rename(d / "tmp", d / "final")
        fh.write(b" and more")
    assert (d / "final").read_bytes() == b"partial and more"
    assert daemon_bytes(sdk, session, mnt, rel(mnt, d / "final")) == b"partial and more"


def test_unlink_of_an_open_file(sdk, session, mnt, d):
    (d / "victim").write_bytes(b"still here")
    with open(d / "victim", "rb") as fh:
        os.unlink(d / "victim")
        assert not (d / "victim").exists()
        assert fh.read() == b"still here"
    with pytest.raises(NotFound):
        settled(sdk, mnt).stat(session, rel(mnt, d / "victim"))
    # written and unlinked while open: readable and writable until closed, never uploaded
    fh = open(d / "scratch", "w+b")
    try:
        fh.write(b"scratch")
        fh.flush()
        os.unlink(d / "scratch")
        fh.write(b" more")
        fh.flush()
        fh.seek(0)
        assert fh.read() == b"scratch more"
    finally:
        fh.close()
    assert os.listdir(d) == []


def test_mkdir_rmdir(sdk, session, mnt, d):
    os.makedirs(d / "a" / "b" / "c")
    assert settled(sdk, mnt).stat(session, rel(mnt, d / "a" / "b" / "c")).kind.name == "DIRECTORY"
    with pytest.raises(FileExistsError):
        os.mkdir(d / "a")
    os.mkdir(d / "a" / "b2")
    (d / "a" / "file").write_text("not a directory")
    assert os.stat(d / "a").st_nlink == 4  # ., .. and one per subdirectory, as on ext4
    os.rmdir(d / "a" / "b2")
    os.unlink(d / "a" / "file")
    assert os.stat(d / "a").st_nlink == 3
    with pytest.raises(OSError) as e:
        os.rmdir(d / "a")
    assert e.value.errno == errno.ENOTEMPTY
    for p in (d / "a" / "b" / "c", d / "a" / "b", d / "a"):
        os.rmdir(p)
    assert not (d / "a").exists()
    assert os.listdir(d) == []
    (d / "f").write_text("f")
    with pytest.raises(NotADirectoryError):
        os.rmdir(d / "f")
    with pytest.raises(IsADirectoryError):
        os.unlink(d)


def test_symlinks(sdk, session, mnt, d):
    (d / "target").write_text("t")
    os.symlink("target", d / "rel")
    os.symlink("/etc/hostname", d / "abs")
    os.symlink("missing", d / "dangling")
    assert os.readlink(d / "rel") == "target" and (d / "rel").read_text() == "t"
    assert os.readlink(d / "abs") == "/etc/hostname"
    assert not (d / "dangling").exists() and (d / "dangling").is_symlink()
    assert settled(sdk, mnt).stat(session, rel(mnt, d / "rel")).symlink_target == "target"
    os.unlink(d / "rel")
    assert not (d / "rel").is_symlink()


def test_chmod_and_utimes_reach_the_daemon(sdk, session, mnt, d):
    f = d / "script"
    f.write_text("#!/bin/sh\n")
    os.chmod(f, 0o755)
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o755
    assert settled(sdk, mnt).stat(session, rel(mnt, f)).mode == 0o755
    os.utime(f, ns=(1_000_000_000, 2_000_000_000))
    assert os.stat(f).st_mtime_ns == 2_000_000_000
    info = settled(sdk, mnt).stat(session, rel(mnt, f))
    assert info.mtime.timestamp() == 2.0 and info.hash and info.size == 10
    os.chmod(d, 0o700)
    os.utime(d, ns=(1_000_000_000, 3_000_000_000))
    info = settled(sdk, mnt).stat(session, rel(mnt, d))
    assert (info.mode, info.mtime.timestamp()) == (0o700, 3.0)
    os.chmod(d, 0o755)


def test_cp_preserve_sends_times_and_xattrs_after_the_content(sdk, session, mnt, d):
    """cp -p / tar x / rsync -a: write, then fchmod, futimens and fsetxattr on the
    open file, then close. The content's write-back sets the mtime, so the
    attributes must reach the daemon after it, whatever the order they were set."""
    f = d / "copied"
    fd = os.open(f, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.write(fd, b"content")
        os.fchmod(fd, 0o640)
        os.setxattr(fd, b"user.origin", b"tarball")
        os.utime(fd, ns=(5_000_000_000, 7_000_000_000))
    finally:
        os.close(fd)
    assert os.stat(f).st_mtime_ns == 7_000_000_000
    info = settled(sdk, mnt).stat(session, rel(mnt, f))
    assert (bytes(sdk.read_file(session, rel(mnt, f)).data), info.mode,
            info.mtime.timestamp(), info.xattrs) == (b"content", 0o640, 7.0,
                                                     {"user.origin": b"tarball"})
    # Writing again keeps the xattrs (the same file), and takes a new mtime.
    with open(f, "ab") as fh:
        fh.write(b"+")
    info = settled(sdk, mnt).stat(session, rel(mnt, f))
    assert info.xattrs == {"user.origin": b"tarball"} and info.mtime.timestamp() > 7.0
    assert os.stat(f).st_mtime_ns > 7_000_000_000


def test_cp_a_tree_keeps_its_times(sdk, session, mnt, d, tmp_path):
    """`cp -a` into the mount: what make and rsync compare survives in the session."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f").write_text("f")
    os.utime(src / "sub" / "f", ns=(1_500_000_000_000_000_000,) * 2)
    os.utime(src / "sub", ns=(1_400_000_000_000_000_000,) * 2)
    subprocess.run(["cp", "-a", str(src), str(d / "dst")], check=True)
    assert os.stat(d / "dst" / "sub" / "f").st_mtime_ns == 1_500_000_000_000_000_000
    s = settled(sdk, mnt)
    assert s.stat(session, rel(mnt, d / "dst" / "sub" / "f")).mtime.timestamp() == 1.5e9
    assert s.stat(session, rel(mnt, d / "dst" / "sub")).mtime.timestamp() == 1.4e9


def test_many_files_in_one_directory(mnt, d):
    for i in range(200):
        (d / f"n{i}").write_text(str(i))
    assert len(os.listdir(d)) == 200
    assert (d / "n199").read_text() == "199"
    for i in range(200):
        os.unlink(d / f"n{i}")
    assert os.listdir(d) == []


def test_no_setuid_or_devices_from_a_session(sdk, session, mnt, d):
    """Whoever can write to a session over the API must not get a setuid
    program onto this host: modes lose their setuid/setgid/sticky bits, and the
    mount itself is nosuid,nodev."""
    path = rel(mnt, d / "suid")
    sdk.write_file(session, path, b"#!/bin/sh\n", mode=0o4755)
    sdk.write_file(session, rel(mnt, d / "sgid"), b"x", mode=0o2775)
    assert wait_for(lambda: (d / "sgid").exists())[0]
    assert stat.S_IMODE(os.stat(d / "suid").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(d / "sgid").st_mode) == 0o775
    options = next(line.split()[3] for line in open("/proc/mounts")
                   if line.split()[1] == str(mnt)).split(",")
    assert "nosuid" in options and "nodev" in options
