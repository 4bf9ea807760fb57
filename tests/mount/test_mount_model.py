"""Differential test: the same random operations on the mount and on a native
directory must give the same results, the same errnos and the same trees."""

from __future__ import annotations

import itertools
import os
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from mount_helpers import settle

NAMES = ["a", "b", "c"]
# Paths up to two levels deep over three names: collisions (and so every error
# path) come up often.
PATHS = st.sampled_from(NAMES + [f"{x}/{y}" for x in NAMES for y in NAMES])
DATA = st.binary(max_size=300)
OFFSETS = st.integers(min_value=0, max_value=70_000)  # past the end: a hole


def outcome(fn, *args):
    """('ok', result) or ('err', errno): what both sides must agree on."""
    try:
        return ("ok", fn(*args))
    except OSError as exc:
        return ("err", exc.errno)


def snapshot(root: Path) -> dict[str, tuple]:
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            st_ = os.lstat(p)
            if stat.S_ISLNK(st_.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st_.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st_.st_mode))
            else:
                out[rel] = ("file", stat.S_IMODE(st_.st_mode), st_.st_size, uncached_read(p))
    return out


def uncached_read(path) -> bytes:
    """The file's bytes, past the kernel's page cache (which would otherwise hide
    what the mount itself serves)."""
    with open(path, "rb") as f:
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        return f.read()


def daemon_snapshot(sdk, session: str, base: str) -> dict[str, tuple]:
    out: dict[str, tuple] = {}
    for e in sdk.iter_tree(session, base, recursive=True):
        rel = e.path[len(base) + 1:]
        kind = e.kind.name
        if kind == "DIRECTORY":
            out[rel] = ("dir", e.mode)
        elif kind == "SYMLINK":
            out[rel] = ("link", e.symlink_target)
        else:
            data = bytes(sdk.read_file(session, e.path).data)
            out[rel] = ("file", e.mode, e.size, data)
    return out


def _write(root: Path, path: str, data: bytes, offset: int) -> int:
    fd = os.open(root / path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        return os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


def _append(root: Path, path: str, data: bytes) -> int:
    fd = os.open(root / path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, data)
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


def _overwrite(root: Path, path: str, data: bytes) -> int:
    fd = os.open(root / path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        return os.write(fd, data)
    finally:
        os.close(fd)


def _read(root: Path, path: str) -> bytes:
    return uncached_read(root / path)


def _write_twice(root: Path, path: str, first: bytes, off1: int, second: bytes,
                 off2: int) -> int:
    """Two writes under one open: one write-back covers both (a wide span)."""
    fd = os.open(root / path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, first, off1)
        os.pwrite(fd, second, off2)
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


def run_model(mnt: Path, sdk, session: str, native_base: Path, *, paths, data, offsets,
              sizes, examples: int, steps: int) -> None:
    """Random operations on `mnt` and on `native_base`, compared after each."""
    counter = itertools.count()

    class Differential(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            n = next(counter)
            self.m = mnt / f"run{n}"
            self.n = native_base / f"run{n}"
            self.m.mkdir()
            self.n.mkdir()

        def both(self, fn, *args):
            got_m = outcome(fn, self.m, *args)
            got_n = outcome(fn, self.n, *args)
            assert got_m == got_n, (fn.__name__, args, got_m, got_n)

        @rule(path=paths, data=data, offset=offsets)
        def write(self, path, data, offset):
            self.both(_write, path, data, offset)

        @rule(path=paths, first=data, off1=offsets, second=data, off2=offsets)
        def write_twice(self, path, first, off1, second, off2):
            self.both(_write_twice, path, first, off1, second, off2)

        @rule(path=paths, data=data)
        def append(self, path, data):
            self.both(_append, path, data)

        @rule(path=paths, data=data)
        def overwrite(self, path, data):
            self.both(_overwrite, path, data)

        @rule(path=paths, size=sizes)
        def truncate(self, path, size):
            self.both(lambda root, p, s: os.truncate(root / p, s), path, size)

        @rule(src=paths, dst=paths)
        def rename(self, src, dst):
            self.both(lambda root, a, b: os.rename(root / a, root / b), src, dst)

        @rule(path=paths)
        def unlink(self, path):
            self.both(lambda root, p: os.unlink(root / p), path)

        @rule(path=paths)
        def mkdir(self, path):
            self.both(lambda root, p: os.mkdir(root / p), path)

        @rule(path=paths)
        def rmdir(self, path):
            self.both(lambda root, p: os.rmdir(root / p), path)

        @rule(path=paths, dest=st.sampled_from(NAMES))
        def symlink(self, path, dest):
            self.both(lambda root, p, t: os.symlink(t, root / p), path, dest)

        @rule(path=paths, mode=st.sampled_from([0o600, 0o644, 0o755, 0o700]))
        def chmod(self, path, mode):
            self.both(lambda root, p, m: os.chmod(root / p, m), path, mode)

        @rule(path=paths)
        def read(self, path):
            self.both(_read, path)

        @invariant()
        def same_tree(self):
            assert snapshot(self.m) == snapshot(self.n)

        def teardown(self):
            # Everything was closed; once settled (fsync of the directory),
            # everything is written back: the daemon holds exactly what the
            # native directory does (directory modes changed after mkdir are
            # kept by the mount only: docs/mount.md).
            def no_dir_modes(snap):
                return {k: ("dir",) if v[0] == "dir" else v for k, v in snap.items()}
            want = no_dir_modes(snapshot(self.n))
            settle(self.m)
            assert no_dir_modes(daemon_snapshot(sdk, session, self.m.name)) == want

    run_state_machine_as_test(Differential, settings=settings(
        max_examples=examples, stateful_step_count=steps, deadline=None,
        derandomize=False, suppress_health_check=list(HealthCheck),
    ))


def test_mount_behaves_like_a_native_directory(module_mounts, sdk, tmp_path):
    session = sdk.create_session(name="model").id
    mnt = module_mounts.mount(session, "model")
    native = tmp_path / "native"
    native.mkdir()
    run_model(mnt, sdk, session, native, paths=PATHS, data=DATA, offsets=OFFSETS,
              sizes=st.integers(min_value=0, max_value=5000),
              examples=int(os.environ.get("AETHER_MODEL_EXAMPLES", "60")), steps=25)


# Sizes and offsets around the daemon's 1 MiB chunk, so that write-backs take
# both paths: inline in a batch (a file of one chunk or less) and by chunks
# (larger: only the chunks the daemon lacks are uploaded), including edits that
# touch one chunk of several and truncations across a chunk boundary.
CHUNK = 1 << 20
# Fewer names, half of the picks at the top: more operations reach a file that
# exists (and is large), fewer fail on a missing directory.
CHUNK_PATHS = st.one_of(st.sampled_from(["a", "b"]), st.sampled_from(["a/a", "a/b", "b/a"]))
# Runs of a byte pattern: cheap to generate and shrink.
CHUNK_DATA = st.one_of(
    DATA,
    st.builds(lambda pattern, n: pattern * n, st.binary(min_size=1, max_size=7),
              st.integers(min_value=0, max_value=2000)),
)


def test_mount_behaves_like_a_native_directory_across_chunk_sizes(mounts, sdk, tmp_path):
    session = sdk.create_session(name="model-chunks").id
    mnt = mounts.mount(session, "model-chunks")
    native = tmp_path / "native"
    native.mkdir()
    run_model(mnt, sdk, session, native, paths=CHUNK_PATHS, data=CHUNK_DATA,
              offsets=st.one_of(st.integers(min_value=0, max_value=3 * CHUNK),
                                st.integers(min_value=CHUNK, max_value=3 * CHUNK)),
              sizes=st.integers(min_value=0, max_value=3 * CHUNK),
              examples=int(os.environ.get("AETHER_MODEL_CHUNK_EXAMPLES", "20")), steps=15)
    # (Whether a given run sends a file by chunks depends on what hypothesis
    # draws; test_mount_writeback.py covers that path for certain.)


pytestmark = pytest.mark.timeout(240)
