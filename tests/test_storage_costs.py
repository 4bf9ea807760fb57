"""The costs DESIGN.md promises, asserted as row counts (never as timings).

Fork, checkpoint, restore and diff must touch O(changed paths) objects, not
O(tree size). Counting what each operation writes to the metadata database
(read beside the live daemon with sqlite-utils) checks the growth law exactly,
on any machine, however noisy.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlite_utils

FILES_PER_DIR, DIRS = 50, 100  # 5,000 files


@pytest.fixture(scope="module")
def big_tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("big")
    for d in range(DIRS):
        sub = root / f"pkg{d:03d}"
        sub.mkdir()
        for f in range(FILES_PER_DIR):
            (sub / f"mod{f:03d}.py").write_text(f"# {d}/{f}\nVALUE = {d * 1000 + f}\n")
    return root


def counts(daemon) -> dict[str, int]:
    db = sqlite_utils.Database(daemon.data_dir / "meta.db")
    try:
        return {t: db[t].count for t in ("sessions", "trees", "files", "overlay", "checkpoints")}
    finally:
        db.conn.close()


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in before if after[k] != before[k]}


def test_fork_checkpoint_restore_write_only_what_changed(daemon, http, big_tree):
    r = http.post("/v1/sessions", json={"source": {"directory": {"path": str(big_tree)}}})
    sid = r.json()["id"]
    assert r.json()["fileCount"] == str(FILES_PER_DIR * DIRS)

    before = counts(daemon)
    fork = http.post(f"/v1/sessions/{sid}:fork", json={}).json()
    assert delta(before, counts(daemon)) == {"sessions": 1}  # no tree, file or row copied

    for i in range(10):  # ten changes in ten different directories
        http.put(f"/v1/sessions/{sid}/files/pkg{i * 7:03d}/mod000.py", content=f"# {i}\n".encode())
    before = counts(daemon)
    ck = http.post(f"/v1/sessions/{sid}/checkpoints", json={}).json()
    d = delta(before, counts(daemon))
    # The overlay is folded away; new trees are the ten changed dirs plus the root.
    assert d == {"checkpoints": 1, "overlay": -10, "trees": 11}

    http.put(f"/v1/sessions/{sid}/files/pkg099/mod049.py", content=b"changed\n")
    before = counts(daemon)
    http.post(f"/v1/sessions/{sid}:restore", json={"checkpointId": ck["id"]})
    assert delta(before, counts(daemon)) == {"overlay": -1}

    http.put(f"/v1/sessions/{sid}/files/pkg050/mod001.py", content=b"pending\n")
    before = counts(daemon)
    diff = http.get(f"/v1/sessions/{sid}/diff", params={"from": "base"}).json()
    assert len(diff["files"]) == 11
    session = http.get(f"/v1/sessions/{sid}").json()
    assert session["rootHash"] == diff["toRoot"]
    # Reads see pending changes without writing them: no tree is stored, no row folded.
    assert delta(before, counts(daemon)) == {}

    # The fork never saw any of it.
    assert http.get(f"/v1/sessions/{fork['id']}/changes").json()["changes"] == []


def test_new_blob_stores_have_64k_pages_and_older_ones_keep_theirs(tmp_path: Path):
    """A 1 MiB chunk is 16 pages in a new blobs.db; a blobs.db made before
    (4 KiB pages, WAL) opens as it is, with its chunks."""
    import apsw

    from aetherd.store.blobs import SqliteBlobStore, chunk_hash
    from aetherd.store.schema import BLOB_SCHEMA

    new = SqliteBlobStore(tmp_path / "new.db")
    try:
        assert new.db.one("PRAGMA page_size") == (65536,)
    finally:
        new.close()
    old_path = tmp_path / "old.db"
    conn = apsw.Connection(str(old_path))
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(BLOB_SCHEMA)
    data = bytes(range(256)) * 4096
    conn.execute("INSERT INTO chunks(hash, size, codec, data, created_ns) VALUES (?,?,0,?,1)",
                 (chunk_hash(data), len(data), data))
    conn.close()
    old = SqliteBlobStore(old_path)
    try:
        assert old.db.one("PRAGMA page_size") == (4096,)
        assert old.get(chunk_hash(data)) == data
        more = data[::-1]
        old.put_many([(chunk_hash(more), more)])
        assert old.get(chunk_hash(more)) == more
    finally:
        old.close()
