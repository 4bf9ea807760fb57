"""Acknowledged writes survive SIGKILL of the daemon, and fsck is clean after."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
import time

import httpx


def test_sigkill_mid_stream_loses_no_acknowledged_write(fresh_daemon):
    d = fresh_daemon.start()
    with d.http() as c:
        sid = c.post("/v1/sessions", json={"name": "crash"}).json()["id"]

    acked: dict[str, str] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def writer(n: int) -> None:
        with httpx.Client(base_url=d.http_url, headers=d.headers, timeout=10) as c:
            i = 0
            while not stop.is_set():
                path = f"w{n}/f{i:05d}.bin"
                body = (f"{n}:{i}:".encode() * (1 + i % 50))[: 1 + (i * 7919) % 20000]
                try:
                    r = c.put(f"/v1/sessions/{sid}/files/{path}", content=body)
                except httpx.HTTPError:
                    return  # the daemon is gone: this write was never acknowledged
                if r.status_code == 200:
                    with lock:
                        acked[path] = hashlib.sha256(body).hexdigest()
                i += 1

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(acked) < 200 and time.monotonic() < deadline:
        time.sleep(0.02)
    d.kill()  # SIGKILL, mid-stream
    stop.set()
    for t in threads:
        t.join()
    assert len(acked) >= 200

    d.start()
    with d.http() as c:
        for path, digest in acked.items():
            r = c.get(f"/v1/sessions/{sid}/files/{path}")
            assert r.status_code == 200, (path, r.text)
            assert hashlib.sha256(r.content).hexdigest() == digest, path
    d.stop()

    fsck = subprocess.run([sys.executable, "-m", "aetherd", "fsck", "--data-dir", str(d.data_dir)],
                          capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert "clean" in fsck.stdout


def test_one_daemon_per_data_dir_and_restart_after_kill(fresh_daemon):
    d = fresh_daemon.start()
    second = subprocess.run(
        [sys.executable, "-m", "aetherd", "serve", "--data-dir", str(d.data_dir)],
        capture_output=True, text=True, timeout=30)
    assert second.returncode != 0
    assert "another daemon" in second.stderr
    with d.http() as c:  # the first one is untouched
        assert c.get("/v1/health").status_code == 200
    d.kill()
    d.start()  # the lock died with the process


def test_maintenance_refuses_a_directory_without_data(tmp_path):
    for cmd in ("fsck", "gc"):
        r = subprocess.run([sys.executable, "-m", "aetherd", cmd, "--data-dir",
                            str(tmp_path / "typo")], capture_output=True, text=True)
        assert r.returncode == 2 and "no AetherFS data" in r.stderr
        assert not (tmp_path / "typo").exists()
