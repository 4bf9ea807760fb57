"""Real tools inside a mount: git and python -m compileall."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from mount_helpers import have


@pytest.fixture(scope="module")
def mnt(module_mounts, sdk):
    return module_mounts.mount(sdk.create_session(name="tools").id, "tools")


def git(cwd, *args: str) -> str:
    r = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org",
                        "-c", "init.defaultBranch=main", *args],
                       cwd=cwd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"git {' '.join(args)}: {r.stderr}"
    return r.stdout


@pytest.mark.skipif(not have("git"), reason="git is not installed")
def test_git_init_add_commit_status(mnt, sdk):
    repo = mnt / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "src").mkdir()
    for i in range(20):
        (repo / "src" / f"m{i}.py").write_text(f"VALUE = {i}\n")
    (repo / "README").write_text("hello\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "first")
    assert git(repo, "status", "--porcelain") == ""
    (repo / "README").write_text("changed\n")
    assert git(repo, "status", "--porcelain").strip() == "M README"
    git(repo, "commit", "-q", "-am", "second")
    assert git(repo, "log", "--oneline").count("\n") == 2
    git(repo, "fsck", "--strict")
    git(repo, "checkout", "-q", "HEAD~1")
    assert (repo / "README").read_text() == "hello\n"


def test_python_compileall(mnt):
    pkg = mnt / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .sub.mod import f\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "mod.py").write_text("def f():\n    return 42\n")
    r = subprocess.run([sys.executable, "-m", "compileall", "-q", str(pkg)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert list((pkg / "sub" / "__pycache__").glob("mod.*.pyc"))
    r = subprocess.run([sys.executable, "-c", "import pkg; print(pkg.f())"], cwd=mnt,
                       capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "42", r.stderr


@pytest.mark.skipif(not have("stress-ng"), reason="stress-ng is not installed (make setup)")
def test_stress_ng_verify_leaves_the_mount_alive_and_correct(mnt, sdk):
    work = mnt / "stress"
    work.mkdir()
    r = subprocess.run(
        ["stress-ng", "--temp-path", str(work), "--dir", "1", "--dentry", "1", "--rename", "1",
         "--symlink", "1", "--chmod", "1", "--utime", "1", "--xattr", "1", "--hdd", "1",
         "--hdd-bytes", "4M", "--flock", "1", "--getdent", "1", "--open", "1", "--fstat", "1",
         "--verify", "--timeout", "8s"],
        capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "successful run completed" in r.stdout + r.stderr
    # still alive, and still right
    (mnt / "after-stress.txt").write_text("ok")
    assert (mnt / "after-stress.txt").read_text() == "ok"
    assert "after-stress.txt" in os.listdir(mnt)
