"""A mounted session vs a native directory: the same work on both, and the ratio.

What is measured (each workload runs on a native temp directory on the same
disk, and in an `aether mount` of a session of a fresh loopback `aetherd`)

    seq write   fio: one file of --seq-size in 1 MiB blocks, with the final
                fsync (for the mount that waits for the write-back to the
                daemon), and again without it (what the writer itself waits
                for: the mount sends the file in the background)
    seq read    fio: the same file read back in 1 MiB blocks (the kernel's
                page cache for the file is invalidated first; the mount reads
                from its local content cache)
    create+stat+unlink
                --files small files: create and write 100 bytes, then stat
                each, then unlink each (a Python loop, one process)
    git clone   `git clone --no-local` of this repository
    git status  on a tree of --files files committed in git: the session is
                imported from a native copy (untimed), then `git status` runs
                twice; the table shows the second (warm) run and the first
    rm -rf      the --files tree
    compileall  `python -m compileall -q` of a copy of a real package (httpx
                from the venv by default)

    (API alone) the daemon requests the mount makes for create and unlink,
                sent directly over HTTP: the floor under the mount's numbers

Ratio = mount time / native time (throughput: native / mount), so 1.0 is
native speed and larger is slower. Targets from issue 5: sequential I/O at
>= 80% of native (ratio <= 1.25); metadata-heavy work within 3x.

Run
  .venv/bin/python bench/mount.py                  # the issue's sizes (10k files, 1 GiB)
  .venv/bin/python bench/mount.py --quick          # 1,000 files, 128 MiB
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _harness as h
from rich.console import Console
from rich.table import Table

AETHER = str(Path(sys.executable).with_name("aether"))


def fio(path: Path, rw: str, size: str, fsync: bool = True) -> float:
    """Bytes per second of one fio job (writes: with a final fsync, or without)."""
    r = subprocess.run(
        ["fio", "--name=bench", f"--filename={path}", f"--rw={rw}", "--bs=1M", f"--size={size}",
         "--ioengine=psync", f"--end_fsync={int(fsync)}", "--invalidate=1",
         "--output-format=json"],
        check=True, capture_output=True, text=True)
    job = json.loads(r.stdout)["jobs"][0]
    return float(job["read" if rw == "read" else "write"]["bw_bytes"])


def small_files(root: Path, n: int) -> dict[str, float]:
    d = root / "small"
    d.mkdir()
    out = {}
    t = time.perf_counter()
    for i in range(n):
        with open(d / f"f{i}", "wb") as f:
            f.write(b"x" * 100)
    out["create"] = time.perf_counter() - t
    t = time.perf_counter()
    for i in range(n):
        os.stat(d / f"f{i}")
    out["stat"] = time.perf_counter() - t
    t = time.perf_counter()
    for i in range(n):
        os.unlink(d / f"f{i}")
    out["unlink"] = time.perf_counter() - t
    d.rmdir()
    return out


def seconds(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def make_tree(root: Path, n: int) -> None:
    """n small files in 100-file directories, committed in git."""
    root.mkdir()
    for i in range(n):
        d = root / f"d{i // 100:03d}"
        d.mkdir(exist_ok=True)
        (d / f"f{i}.txt").write_text(f"file {i}\n")
    h.git(root, "init", "-q")
    h.git(root, "add", "-A")
    h.git(root, "commit", "-q", "-m", "tree")


class Mount:
    def __init__(self, daemon, work: Path) -> None:
        self.env = dict(os.environ)
        self.env.update({
            "AETHER_SERVER": daemon.http_url, "AETHER_TOKEN": daemon.token,
            "AETHER_DATA_DIR": str(work / "cli"), "AETHER_MOUNT_STATE_DIR": str(work / "state"),
            "AETHER_MOUNT_CACHE_DIR": str(work / "cache"),
        })
        self.made: list[Path] = []

    def aether(self, *args: str) -> str:
        return subprocess.run([AETHER, *args], env=self.env, check=True, capture_output=True,
                              text=True).stdout

    def mount(self, session: str, mnt: Path) -> Path:
        mnt.mkdir()
        self.aether("mount", session, str(mnt), "--cache-size", "4G", "--log-level", "warning")
        self.made.append(mnt)
        return mnt

    def umount_all(self) -> None:
        for mnt in self.made:
            subprocess.run([AETHER, "umount", str(mnt)], env=self.env, capture_output=True)
            subprocess.run(["fusermount3", "-u", "-z", str(mnt)], capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--seq-size", default="1G")
    ap.add_argument("--package", type=Path,
                    default=h.ROOT / ".venv" / "lib" / "python3.11" / "site-packages" / "httpx")
    ap.add_argument("--quick", action="store_true", help="1,000 files and 128 MiB")
    args = ap.parse_args()
    if args.quick:
        args.files, args.seq_size = 1000, "128M"
    if not shutil.which("fio"):
        sys.exit("fio is needed (apt install fio; make setup installs it)")
    load_start = os.getloadavg()[0]
    err = Console(stderr=True)
    rows: list[tuple[str, float, float, str]] = []  # name, native, mount, unit

    with tempfile.TemporaryDirectory(prefix="aether-bench-mount-") as tmp:
        work = Path(tmp)
        native = work / "native"
        native.mkdir()
        daemon = h.new_daemon(work / "data", [work]).start()
        m = Mount(daemon, work)
        try:
            with daemon.http() as http:
                def session(src: Path | None = None) -> str:
                    body = {"source": {"directory": {"path": str(src)}}} if src else {}
                    return h.check(http.post("/v1/sessions", json=body), "create").json()["id"]

                mnt = m.mount(session(), work / "mnt")

                err.print(f"sequential write/read of {args.seq_size} (fio)")
                for rw in ("write", "read"):
                    nat = fio(native / "seq", rw, args.seq_size)
                    mo = fio(mnt / "seq", rw, args.seq_size)
                    rows.append((f"seq {rw} 1 MiB blocks" + (" + fsync" if rw == "write"
                                                              else ""), nat, mo, "MiB/s"))
                # Without the final fsync: what a writer waits for (the mount
                # acknowledges locally and sends in the background).
                nat = fio(native / "seq", "write", args.seq_size, fsync=False)
                mo = fio(mnt / "seq", "write", args.seq_size, fsync=False)
                rows.append(("seq write 1 MiB blocks, no fsync", nat, mo, "MiB/s"))
                for p in (native / "seq", mnt / "seq"):  # untimed: wait for the write-back
                    fd = os.open(p, os.O_RDONLY)
                    os.fsync(fd)
                    os.close(fd)
                (native / "seq").unlink()
                (mnt / "seq").unlink()

                err.print(f"create+stat+unlink of {args.files} files")
                nat = small_files(native, args.files)
                mo = small_files(mnt, args.files)
                for k in ("create", "stat", "unlink"):
                    rows.append((f"{k} {args.files} small files", nat[k], mo[k], "s"))

                # The floor under the mount's numbers: the same daemon requests
                # (one write per created file, one delete per unlink) made directly.
                api = session()
                t = time.perf_counter()
                for i in range(args.files):
                    h.check(http.put(f"/v1/sessions/{api}/files/f{i}", content=b"x" * 100,
                                     headers={"if-none-match": "*"}), "put")
                api_put = time.perf_counter() - t
                t = time.perf_counter()
                for i in range(args.files):
                    h.check(http.delete(f"/v1/sessions/{api}/files/f{i}"), "delete")
                api_delete = time.perf_counter() - t
                rows.append((f"  (API alone: {args.files} PUTs)", nat["create"], api_put, "s"))
                rows.append((f"  (API alone: {args.files} DELETEs)", nat["unlink"], api_delete,
                             "s"))

                err.print("git clone --no-local of this repository")
                rows.append(("git clone (this repo)",
                             seconds(lambda: h.git(native, "clone", "-q", "--no-local",
                                                   str(h.ROOT), "clone")),
                             seconds(lambda: h.git(mnt, "clone", "-q", "--no-local",
                                                   str(h.ROOT), "clone")), "s"))

                err.print(f"git status and rm -rf on a {args.files}-file tree")
                tree = native / "tree"
                make_tree(tree, args.files)
                tmnt = m.mount(session(tree), work / "tmnt")
                cold_n = seconds(lambda: h.git(tree, "status", "--porcelain"))
                cold_m = seconds(lambda: h.git(tmnt, "status", "--porcelain"))
                rows.append((f"git status, {args.files} files (first)", cold_n, cold_m, "s"))
                rows.append((f"git status, {args.files} files (again)",
                             seconds(lambda: h.git(tree, "status", "--porcelain")),
                             seconds(lambda: h.git(tmnt, "status", "--porcelain")), "s"))
                rows.append((f"rm -rf {args.files}-file tree",
                             seconds(lambda: h.run(["rm", "-rf", str(tree)])),
                             seconds(lambda: h.run(["rm", "-rf", str(tmnt / "d000"),
                                                    *map(str, tmnt.iterdir())])), "s"))

                err.print(f"python -m compileall of {args.package.name}")
                pkg_n = native / "pkg"
                shutil.copytree(args.package, pkg_n,
                                ignore=shutil.ignore_patterns("__pycache__"))
                pmnt = m.mount(session(pkg_n), work / "pmnt")
                compile_ = [sys.executable, "-m", "compileall", "-q"]
                rows.append((f"compileall {args.package.name}",
                             seconds(lambda: h.run([*compile_, str(pkg_n)])),
                             seconds(lambda: h.run([*compile_, str(pmnt)])), "s"))
        finally:
            m.umount_all()
            daemon.stop()

    console = Console() if sys.stdout.isatty() else Console(width=140)
    table = Table(title="aether mount vs a native directory (same disk, same run)")
    for col in ("workload", "native", "mount", "ratio (x slower)"):
        table.add_column(col, justify="left" if col == "workload" else "right")
    for name, nat, mo, unit in rows:
        if unit == "MiB/s":
            ratio = nat / mo if mo else float("inf")
            table.add_row(name, f"{nat / 2**20:.0f} MiB/s", f"{mo / 2**20:.0f} MiB/s",
                          f"{ratio:.2f}")
        else:
            ratio = mo / nat if nat else float("inf")
            table.add_row(name, f"{nat:.3f} s", f"{mo:.3f} s", f"{ratio:.1f}")
    console.print(table)
    console.print("targets (issue 5): sequential I/O ratio <= 1.25 (>= 80% of native); "
                  "metadata-heavy work <= 3")
    console.print(h.machine_note(load_start))


if __name__ == "__main__":
    main()
