"""A mounted session vs a native directory and a pyfuse3 passthrough: the same work on all three.

What is measured (each workload runs on a native temp directory, on a minimal
pyfuse3 passthrough filesystem over a fresh directory on the same disk, and in
an `aether mount` of a session of a fresh loopback `aetherd`)

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
                imported from a native copy (untimed; for the passthrough, the
                tree is copied into its backing directory), then `git status`
                runs twice; the table shows the second (warm) run and the first
    rm -rf      the --files tree
    compileall  `python -m compileall -q` of a copy of a real package (httpx
                from the venv by default)

    (API alone) the daemon requests the mount makes for create and unlink,
                sent directly over HTTP: the floor under the mount's numbers
                from the daemon's side (no passthrough figure: "-")

The "pyfuse3 passthrough" column is the floor from the other side: the same
workloads on bench/passthrough.py, a FUSE filesystem in Python that only
forwards each request to a native directory, mounted with the real mount's
options and caching (10 s entry/attribute timeouts, no write-back cache). Its
cost over native is FUSE's round trips plus pyfuse3's per-request Python
overhead, which no daemon or mount design can remove; the mount's time beyond
it is what the mount's own design (daemon, journal, cache) adds. It runs as a
subprocess for the whole benchmark and is unmounted in a `finally`.

Ratio = mount time / native time (throughput: native / mount), so 1.0 is
native speed and larger is slower; "passthrough ratio" is the same for the
passthrough. Targets from issue 5 (for the mount): sequential I/O at >= 80% of
native (ratio <= 1.25); metadata-heavy work within 3x. Each workload runs on
native, then the passthrough, then the mount (whose write-back continues in
the background after the writer returns).

Run
  .venv/bin/python bench/mount.py                  # the issue's sizes (10k files, 1 GiB)
  .venv/bin/python bench/mount.py --quick          # 1,000 files, 128 MiB
"""

from __future__ import annotations

import argparse
import importlib.util
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
PASSTHROUGH = Path(__file__).resolve().with_name("passthrough.py")


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


def mounted(mnt: Path) -> bool:
    """Whether mnt is a mount point, from /proc/self/mountinfo (no request to a FUSE daemon)."""
    want = os.path.abspath(mnt)
    for c, esc in (("\\", "\\134"), (" ", "\\040"), ("\t", "\\011"), ("\n", "\\012")):
        want = want.replace(c, esc)
    with open("/proc/self/mountinfo") as f:
        return any(line.split(" ")[4] == want for line in f)


class Passthrough:
    """bench/passthrough.py over a fresh backing directory, in a subprocess."""

    def __init__(self, work: Path) -> None:
        self.backing, self.mnt, self.log = work / "pt-backing", work / "pt", work / "pt.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Path:
        self.backing.mkdir()
        self.mnt.mkdir()
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(PASSTHROUGH), str(self.backing), str(self.mnt)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not mounted(self.mnt):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the passthrough did not mount: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)
        return self.mnt

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # it unmounts and exits
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if mounted(self.mnt):
            subprocess.run(["fusermount3", "-u", "-z", str(self.mnt)], capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--seq-size", default="1G")
    ap.add_argument("--package", type=Path,
                    default=Path(importlib.util.find_spec("httpx").origin).parent,
                    help="a package directory to compile (default: httpx, as installed)")
    ap.add_argument("--quick", action="store_true", help="1,000 files and 128 MiB")
    args = ap.parse_args()
    if args.quick:
        args.files, args.seq_size = 1000, "128M"
    if not shutil.which("fio"):
        sys.exit("fio is needed (apt install fio; make setup installs it)")
    load_start = os.getloadavg()[0]
    err = Console(stderr=True)
    # name, native, mount, passthrough (None: not measured), unit
    rows: list[tuple[str, float, float, float | None, str]] = []

    with tempfile.TemporaryDirectory(prefix="aether-bench-mount-") as tmp:
        work = Path(tmp)
        native = work / "native"
        native.mkdir()
        daemon = h.new_daemon(work / "data", [work]).start()
        m = Mount(daemon, work)
        pt = Passthrough(work)
        try:
            ptm = pt.start()
            with daemon.http() as http:
                def session(src: Path | None = None) -> str:
                    body = {"source": {"directory": {"path": str(src)}}} if src else {}
                    return h.check(http.post("/v1/sessions", json=body), "create").json()["id"]

                mnt = m.mount(session(), work / "mnt")

                err.print(f"sequential write/read of {args.seq_size} (fio)")
                for rw in ("write", "read"):
                    nat = fio(native / "seq", rw, args.seq_size)
                    ptv = fio(ptm / "seq", rw, args.seq_size)
                    mo = fio(mnt / "seq", rw, args.seq_size)
                    rows.append((f"seq {rw} 1 MiB blocks" + (" + fsync" if rw == "write"
                                                              else ""), nat, mo, ptv, "MiB/s"))
                # Without the final fsync: what a writer waits for (the mount
                # acknowledges locally and sends in the background).
                no_fsync = []
                for d in (native, ptm, mnt):
                    no_fsync.append(fio(d / "seq", "write", args.seq_size, fsync=False))
                    fd = os.open(d / "seq", os.O_RDONLY)  # untimed: wait for the write-back
                    os.fsync(fd)
                    os.close(fd)
                    (d / "seq").unlink()
                nat, ptv, mo = no_fsync
                rows.append(("seq write 1 MiB blocks, no fsync", nat, mo, ptv, "MiB/s"))

                err.print(f"create+stat+unlink of {args.files} files")
                nat = small_files(native, args.files)
                ptf = small_files(ptm, args.files)
                mo = small_files(mnt, args.files)
                for k in ("create", "stat", "unlink"):
                    rows.append((f"{k} {args.files} small files", nat[k], mo[k], ptf[k], "s"))

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
                rows.append((f"  (API alone: {args.files} PUTs)", nat["create"], api_put, None,
                             "s"))
                rows.append((f"  (API alone: {args.files} DELETEs)", nat["unlink"], api_delete,
                             None, "s"))

                err.print("git clone --no-local of this repository")
                clone = [seconds(lambda d=d: h.git(d, "clone", "-q", "--no-local", str(h.ROOT),
                                                   "clone")) for d in (native, ptm, mnt)]
                rows.append(("git clone (this repo)", clone[0], clone[2], clone[1], "s"))

                err.print(f"git status and rm -rf on a {args.files}-file tree")
                tree = native / "tree"
                make_tree(tree, args.files)
                shutil.copytree(tree, pt.backing / "tree", symlinks=True)  # untimed, as the import
                ptree = ptm / "tree"
                tmnt = m.mount(session(tree), work / "tmnt")
                for when in ("first", "again"):
                    st = [seconds(lambda d=d: h.git(d, "status", "--porcelain"))
                          for d in (tree, ptree, tmnt)]
                    rows.append((f"git status, {args.files} files ({when})", st[0], st[2], st[1],
                                 "s"))
                rm_n = seconds(lambda: h.run(["rm", "-rf", str(tree)]))
                rm_p = seconds(lambda: h.run(["rm", "-rf", str(ptree)]))
                rm_m = seconds(lambda: h.run(["rm", "-rf", str(tmnt / "d000"),
                                              *map(str, tmnt.iterdir())]))
                rows.append((f"rm -rf {args.files}-file tree", rm_n, rm_m, rm_p, "s"))

                err.print(f"python -m compileall of {args.package.name}")
                pkg_n = native / "pkg"
                shutil.copytree(args.package, pkg_n,
                                ignore=shutil.ignore_patterns("__pycache__"))
                shutil.copytree(pkg_n, pt.backing / "pkg")  # untimed, as the import
                pmnt = m.mount(session(pkg_n), work / "pmnt")
                compile_ = [sys.executable, "-m", "compileall", "-q"]
                comp = [seconds(lambda d=d: h.run([*compile_, str(d)]))
                        for d in (pkg_n, ptm / "pkg", pmnt)]
                rows.append((f"compileall {args.package.name}", comp[0], comp[2], comp[1], "s"))
        finally:
            try:
                pt.stop()
            finally:
                m.umount_all()
                daemon.stop()

    console = Console() if sys.stdout.isatty() else Console(width=140)
    table = Table(title="aether mount vs a native directory and a pyfuse3 passthrough "
                        "(same disk, same run)")
    for col in ("workload", "native", "mount", "ratio (x slower)", "pyfuse3 passthrough",
                "passthrough ratio"):
        table.add_column(col, justify="left" if col == "workload" else "right")

    def value(v: float, unit: str) -> str:
        return f"{v / 2**20:.0f} MiB/s" if unit == "MiB/s" else f"{v:.3f} s"

    def ratio(nat: float, v: float, unit: str) -> str:
        if unit == "MiB/s":  # throughput: larger is faster
            return f"{nat / v:.2f}" if v else "inf"
        return f"{v / nat:.1f}" if nat else "inf"

    for name, nat, mo, ptv, unit in rows:
        table.add_row(name, value(nat, unit), value(mo, unit), ratio(nat, mo, unit),
                      "-" if ptv is None else value(ptv, unit),
                      "-" if ptv is None else ratio(nat, ptv, unit))
    console.print(table)
    console.print("pyfuse3 passthrough: bench/passthrough.py, every request forwarded to a native "
                  "directory in Python (the floor for a pyfuse3 mount)")
    console.print("targets (issue 5): sequential I/O ratio <= 1.25 (>= 80% of native); "
                  "metadata-heavy work <= 3")
    console.print(h.machine_note(load_start))


if __name__ == "__main__":
    main()
