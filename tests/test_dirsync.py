"""aether.client.dirsync against a real daemon: what an export may and may not
write on the host, and how an import guards what it removes."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from aether.client import Client
from aether.client.dirsync import _check_unchanged_below, export_dir, import_dir, remote_tree
from aether.errors import Conflict


@pytest.fixture
def client(daemon) -> Iterator[Client]:
    with Client(daemon.http_url, token=daemon.token) as c:
        yield c


def new_session(c: Client) -> str:
    return c.create_session(name="dirsync").id


def test_export_never_plants_setuid_and_honours_the_umask(client, tmp_path: Path):
    sid = new_session(client)
    client.write_file(sid, "suid.sh", b"#!/bin/sh\n", mode=0o4777)
    client.write_file(sid, "sgid", b"x", mode=0o2755)
    client.write_file(sid, "plain", b"y", mode=0o666)
    old = os.umask(0o022)
    try:
        export_dir(client, sid, tmp_path / "out")
    finally:
        os.umask(old)
    modes = {p: stat.S_IMODE(os.lstat(tmp_path / "out" / p).st_mode)
             for p in ("suid.sh", "sgid", "plain")}
    assert modes == {"suid.sh": 0o755, "sgid": 0o755, "plain": 0o644}


def test_temporary_names_are_skipped_on_both_sides(client, tmp_path: Path):
    sid = new_session(client)
    client.write_file(sid, ".aether-sync-0123456789ab", b"looks temporary")
    client.write_file(sid, ".aether-sync-notes", b"an ordinary name")
    out = tmp_path / "out"
    first = export_dir(client, sid, out)
    assert first.skipped == [".aether-sync-0123456789ab"]
    assert (out / ".aether-sync-notes").read_bytes() == b"an ordinary name"
    assert not (out / ".aether-sync-0123456789ab").exists()
    again = export_dir(client, sid, out)
    assert (again.added, again.changed, again.bytes) == ([], [], 0)
    # An import with --delete leaves the session's look-alike alone.
    import_dir(client, sid, out, delete=True)
    assert client.read_file(sid, ".aether-sync-0123456789ab").data == b"looks temporary"


def test_import_delete_refuses_a_directory_that_changed_since_the_comparison(client):
    sid = new_session(client)
    client.write_file(sid, "d/kept.txt", b"1")
    seen = remote_tree(client, sid)
    client.write_file(sid, "d/added-meanwhile.txt", b"2")  # someone else, after the scan
    with pytest.raises(Conflict):
        _check_unchanged_below(client, sid, "d", "d", seen)
    _check_unchanged_below(client, sid, "d", "d", remote_tree(client, sid))  # fresh view: fine
