"""The blocking client's HTTP layer (aether/client/wire.py) and its JSON view,
against a real daemon: connection reuse across a daemon restart, requests
overlapping a live stream, streamed uploads, timeouts; and what an `aether`
command leaves unloaded to start fast."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile

import pytest

from aether import pb
from aether.client import Client, source
from aether.errors import Unavailable
from aetherd.testing import DaemonProcess, free_port


def client(d: DaemonProcess, **kw) -> Client:
    return Client(d.http_url, token=d.token, **kw)


def test_a_kept_alive_connection_closed_by_a_restart_is_replaced(fresh_daemon):
    d = fresh_daemon.start()
    with client(d) as c:
        s = c.create_session(source.blank(), name="before")
        d.stop()
        d.start()
        # The idle connection from before the restart is dead; reads and
        # writes (POST, which is never sent twice) both go on a new one.
        assert c.get_session(s.id).name == "before"
        c.write_file(s.id, "after.txt", b"after restart")
        assert c.read_file(s.id, "after.txt").data == b"after restart"


def test_a_request_while_a_follow_is_open_takes_another_connection(daemon):
    with client(daemon) as c:
        s = c.create_session(source.blank())
        with c.follow_events(s.id, after=0) as events:
            c.write_file(s.id, "a.txt", b"1")  # while the follow holds its connection
            seen = next(e for e in events if e.path == "a.txt")
            assert seen.cursor > 0
        assert c.read_file(s.id, "a.txt").data == b"1"  # the pool still works


def test_a_streamed_upload_skips_empty_chunks_and_keeps_every_byte(daemon):
    with client(daemon) as c:
        s = c.create_session(source.blank())
        chunks = [b"", b"abc", b"", os.urandom(3 << 20), b"", b"end"]
        info = c.upload_file(s.id, "big.bin", iter(chunks))
        assert info.size == sum(map(len, chunks))
        assert c.read_file(s.id, "big.bin").data == b"".join(chunks)


def test_an_export_streams_while_other_calls_run(daemon):
    with client(daemon) as c:
        s = c.create_session(source.blank())
        for i in range(3):
            c.write_file(s.id, f"f{i}.txt", f"{i}".encode() * 1000)
        buf = io.BytesIO()
        with c.export(s.id, format="tar") as stream:
            for chunk in stream:
                buf.write(chunk)
                c.stat(s.id, "f0.txt")  # a second connection, mid-stream
        names = tarfile.open(fileobj=io.BytesIO(buf.getvalue())).getnames()
        assert {"f0.txt", "f1.txt", "f2.txt"} <= {n.lstrip("./") for n in names}


def test_nobody_listening_and_a_read_timeout_are_unavailable(daemon):
    with Client(f"http://127.0.0.1:{free_port()}", timeout=2) as c:
        with pytest.raises(Unavailable, match="cannot reach"):
            c.health()
    with client(daemon, timeout=0.3) as c:
        s = c.create_session(source.blank())
        with pytest.raises(Unavailable, match="timed out"), c.follow_bus(s.id) as bus:
            next(iter(bus))  # nothing is published: the read times out


def test_the_json_view_is_the_messages_proto3_json(daemon):
    with client(daemon) as c:
        label = {"suite": f"json-view-{free_port()}"}
        made = [c.create_session(source.blank(), name=f"s{i}", labels=label) for i in range(5)]
        c.write_file(made[0].id, "x.txt", b"x")
        raw = c.as_json()
        # across pages (2 a page) exactly what the messages would print
        as_dicts = list(raw.iter_sessions(labels=label, page_size=2))
        messages = list(c.iter_sessions(labels=label, page_size=2))
        assert as_dicts == [m.to_dict(include_default_values=True) for m in messages]
        assert len(as_dicts) == 5
        assert raw.get_session(made[0].id) == c.get_session(made[0].id).to_dict(
            include_default_values=True)
        # cursor-paged lists too
        events = list(raw.iter_events(made[0].id, limit=1))
        assert events and all(isinstance(e, dict) for e in events)
        assert [int(e["cursor"]) for e in events] == [
            e.cursor for e in c.iter_events(made[0].id, limit=1)]
        # bytes are bytes either way
        assert raw.read_file(made[0].id, "x.txt").data == b"x"


def test_importing_the_messages_is_deferred_and_skips_pydantic():
    code = (
        "import sys\n"
        "from aether import pb\n"
        "assert 'aether._gen.aether.v1' not in sys.modules\n"
        "pb.Session(id='x')\n"
        "assert 'aether._gen.aether.v1' in sys.modules\n"
        "assert 'pydantic' not in sys.modules, 'betterproto2 pulled in pydantic'\n"
        "import pydantic  # still importable afterwards\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert pb.Session is pb.Session  # the in-process module still resolves names


def test_session_ls_loads_neither_the_messages_nor_httpx(daemon, env):
    """What keeps `aether session ls` inside its start-up budget (bench/cli.py):
    it prints the daemon's JSON, so message classes and httpx stay unloaded."""
    code = (
        "import sys\n"
        "from aether.cli.main import app\n"
        "for argv in (['session', 'ls'], ['--json', 'session', 'ls']):\n"
        "    try:\n"
        "        app(argv, prog_name='aether')\n"
        "    except SystemExit as e:\n"
        "        assert not e.code, e.code\n"
        "heavy = sorted(m for m in sys.modules\n"
        "               if m.startswith(('aether._gen', 'httpx', 'httpcore', 'pydantic')))\n"
        "print('LOADED', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                         capture_output=True, text=True).stdout
    assert "LOADED []" in out
