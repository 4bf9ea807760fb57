"""The installed `aether` binary's coordination commands (cache, bus, events,
review, health/usage/analytics) against a real daemon: human, --json and -q
output, exit codes on bad input, and live `tail -f` followers."""

from __future__ import annotations

import base64
import json
import signal
import subprocess

from cli_helpers import AETHER, aether, err_line, new_session, out, run

MISSING = "ses_" + "0" * 26
WAIT = 20


def jlines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# ---------------------------------------------------------------- cache


def test_cache_single_keys(env, tmp_path):
    sid = new_session(env, "--name", "cache")
    assert "Set greeting (version" in out(aether(env, "cache", "set", sid, "greeting", "hello"))
    aether(env, "cache", "set", sid, "notes/today", "-", input=b"from stdin")
    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"\x00\xff" * 10)
    meta = json.loads(out(aether(env, "cache", "put", sid, "bin", "--file", str(blob),
                                 "--content-type", "application/x-bin", "--ttl", "1h",
                                 "--json")))
    assert (meta["key"], meta["size"], meta["contentType"]) == ("bin", "20", "application/x-bin")
    assert meta["expireTime"]

    # values come back raw, or base64 in --json
    assert out(aether(env, "cache", "get", sid, "greeting")) == "hello"
    assert aether(env, "cache", "get", sid, "bin").stdout == blob.read_bytes()
    entry = json.loads(out(aether(env, "cache", "get", sid, "notes/today", "--json")))
    assert base64.b64decode(entry["value"]) == b"from stdin"
    assert entry["metadata"]["key"] == "notes/today"
    target = tmp_path / "got.bin"
    aether(env, "cache", "get", sid, "bin", "-o", str(target))
    assert target.read_bytes() == blob.read_bytes()

    table = out(aether(env, "cache", "ls", sid))
    assert "KEY" in table and "notes/today" in table and "application/x-bin" in table
    assert out(aether(env, "-q", "cache", "ls", sid)).split() == [
        "bin", "greeting", "notes/today"]
    listed = json.loads(out(aether(env, "cache", "keys", sid, "--prefix", "notes/", "--json")))
    assert [m["key"] for m in listed] == ["notes/today"]

    stat = out(aether(env, "cache", "stat", sid, "bin"))
    assert "Version" in stat and "application/x-bin" in stat
    m = json.loads(out(aether(env, "cache", "metadata", sid, "bin", "--json")))
    assert m == {**meta, "expireTime": m["expireTime"]} and m["version"] == meta["version"]
    stats = json.loads(out(aether(env, "cache", "stats", sid, "--json")))
    assert stats["keys"] == "3" and int(stats["hits"]) >= 3

    assert "greeting exists" in out(aether(env, "cache", "exists", sid, "greeting"))
    assert json.loads(out(aether(env, "cache", "exists", sid, "nope", "--json",
                                 check=3))) == {"exists": False}

    assert "Deleted 1 key." in out(aether(env, "cache", "rm", sid, "greeting"))
    assert json.loads(out(aether(env, "cache", "rm", sid, "greeting", "--json"))) == {
        "deleted": "0"}
    assert out(aether(env, "-q", "cache", "rm", sid, "bin", "notes/today", "nope")) == "2\n"

    # bad input: unknown session 3, missing key 3, empty key 1, bad ttl 2
    assert err_line(aether(env, "cache", "get", MISSING, "k", check=3)).startswith(
        "error: not_found: ")
    assert err_line(aether(env, "cache", "get", sid, "greeting", check=3)).startswith(
        "error: not_found: ")
    assert err_line(aether(env, "cache", "set", sid, "", "v", check=1)).startswith(
        "error: invalid_argument: ")
    aether(env, "cache", "set", sid, "k", "v", "--ttl", "soon", check=2)


def test_cache_cas(env):
    sid = new_session(env)
    first = json.loads(out(aether(env, "cache", "cas", sid, "lock", "me", "--expect-absent",
                                  "--json")))
    assert first["swapped"] is True
    version = first["metadata"]["version"]
    # losing is a conflict: exit 4, one line on stderr, and the answer in --json
    proc = aether(env, "cache", "cas", sid, "lock", "you", "--expect-absent", check=4)
    assert err_line(proc) == f"error: conflict: not swapped: lock exists (version {version})"
    lost = json.loads(out(aether(env, "cache", "cas", sid, "lock", "you", "-e", "999999",
                                 "--json", check=4)))
    assert lost == {"swapped": False, "metadata": first["metadata"]}
    proc = aether(env, "cache", "cas", sid, "lock", "-", "--expect-version", version,
                  input=b"me2")
    assert "Swapped lock" in out(proc)
    assert out(aether(env, "cache", "get", sid, "lock")) == "me2"
    assert out(aether(env, "-q", "cache", "cas", sid, "new", "x", "-e", "0")) == "new\n"
    # neither or both of the expectations: usage
    aether(env, "cache", "cas", sid, "lock", "x", check=2)
    aether(env, "cache", "cas", MISSING, "lock", "x", "--expect-absent", check=3)


def test_cache_batches_and_clear(env, tmp_path):
    sid = new_session(env)
    obj = json.dumps({"a/1": "one", "a/2": {"n": 2}, "b": "bee"}).encode()
    proc = aether(env, "cache", "batch", "set", sid, input=obj)
    assert "Set 3 keys." in proc.stderr.decode() and "a/2" in out(proc)
    assert out(aether(env, "cache", "get", sid, "a/2")) == '{"n":2}'
    lines = tmp_path / "items.jsonl"
    lines.write_text(
        json.dumps({"key": "c", "value": "sea", "ttl": "5m", "contentType": "text/plain"})
        + "\n\n" + json.dumps({"key": "d", "base64": base64.b64encode(b"\x00\x01").decode()})
        + "\n")
    made = json.loads(out(aether(env, "cache", "batch", "set", sid, str(lines), "--json")))
    assert [(m["key"], m["contentType"]) for m in made["entries"]] == [
        ("c", "text/plain"), ("d", "application/octet-stream")]
    assert made["entries"][0]["expireTime"] and not made["entries"][1]["expireTime"]
    one = json.dumps({"key": "e", "value": "single"}).encode()
    assert out(aether(env, "-q", "cache", "batch", "set", sid, "--format", "lines",
                      input=one)) == "e\n"

    got = json.loads(out(aether(env, "cache", "batch", "get", sid, "a/1", "d", "zz",
                                "--json")))
    assert [(e["metadata"]["key"], base64.b64decode(e["value"])) for e in got["entries"]] == [
        ("a/1", b"one"), ("d", b"\x00\x01")]
    assert got["missing"] == ["zz"]
    keys = tmp_path / "keys.txt"
    keys.write_text("a/1\nb\n")
    proc = aether(env, "cache", "batch", "get", sid, "c", "--file", str(keys))
    assert "sea" in out(proc) and "bee" in out(proc) and "one" in out(proc)
    proc = aether(env, "cache", "batch", "get", sid, "--file", "-", "-q",
                  input=b'["b", "nope"]')
    assert out(proc) == "b\n" and "Missing: nope" not in proc.stderr.decode()  # -q: no notes

    assert json.loads(out(aether(env, "cache", "batch", "rm", sid, "--file", str(keys),
                                 "--json"))) == {"deleted": "2"}
    assert out(aether(env, "cache", "clear", sid, "--prefix", "a/", "-q")) == "1\n"
    assert "Deleted 1 key starting with 'c'" in out(aether(env, "cache", "clear", sid,
                                                           "--prefix", "c", "--yes"))
    assert out(aether(env, "-q", "cache", "ls", sid)).split() == ["d", "e"]

    # bad input: not JSON / no key -> usage; an empty prefix or a duplicate -> refused
    aether(env, "cache", "batch", "set", sid, input=b"not json", check=2)
    aether(env, "cache", "batch", "set", sid, "--format", "lines",
           input=b'{"value": "no key"}', check=2)
    dup = b'{"key": "x", "value": "1"}\n{"key": "x", "value": "2"}\n'
    assert err_line(aether(env, "cache", "batch", "set", sid, input=dup, check=1)).startswith(
        "error: invalid_argument: ")
    assert err_line(aether(env, "cache", "clear", sid, "--prefix", "", check=1)).startswith(
        "error: invalid_argument: ")
    aether(env, "cache", "batch", "rm", MISSING, "k", check=3)


# ---------------------------------------------------------------- bus


def test_bus_publish_read_tail(env):
    sid = new_session(env)
    assert "cursor 1" in out(aether(env, "bus", "publish", sid, "agents/plan", "hello world",
                                    "--sender", "me"))
    assert out(aether(env, "-q", "bus", "publish", sid, "agents/plan", "-",
                      input=b'{"step": 2}\n')) == "2\n"
    m = json.loads(out(aether(env, "bus", "publish", sid, "bin", "--json",
                              input=b"\x00\x01")))
    assert (m["cursor"], m["topic"], base64.b64decode(m["payload"])) == ("3", "bin", b"\x00\x01")

    table = out(aether(env, "bus", "read", sid))
    assert "CURSOR" in table and "hello world" in table and "<2 bytes, binary>" in table
    assert out(aether(env, "-q", "bus", "read", sid, "--topic", "agents/plan")).split() == [
        "1", "2"]
    msgs = json.loads(out(aether(env, "bus", "read", sid, "--from", "1", "--json")))
    assert [x["cursor"] for x in msgs] == ["2", "3"] and msgs[0]["sender"]

    lines = out(aether(env, "bus", "tail", sid, "-n", "2")).splitlines()
    assert len(lines) == 2 and '{"step": 2}' in lines[0] and "bin" in lines[1]
    assert "<me>" in out(aether(env, "bus", "tail", sid, "--from", "0")).splitlines()[0]
    tailed = jlines(out(aether(env, "bus", "tail", sid, "--from", "1", "--json")))
    assert [x["cursor"] for x in tailed] == ["2", "3"]
    assert out(aether(env, "bus", "tail", sid, "-q", "-n", "0")) == ""

    assert err_line(aether(env, "bus", "publish", MISSING, "t", "x", check=3)).startswith(
        "error: not_found: ")
    assert err_line(aether(env, "bus", "publish", sid, "", "x", check=1)).startswith(
        "error: invalid_argument: ")
    assert err_line(aether(env, "bus", "tail", sid, "--from", "99", check=1)).startswith(
        "error: invalid_argument: ")
    aether(env, "bus", "tail", "-f", MISSING, check=3)


def _follower(env, *args: str) -> subprocess.Popen:
    # SIGINT back to its default, whatever the test runner's shell did with it,
    # so the follower sees Ctrl-C the way it does at a terminal.
    return subprocess.Popen([str(AETHER), *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _readline(proc: subprocess.Popen) -> str:
    """The follower's next line (a hung follower fails the test instead of hanging it)."""
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    assert sel.select(WAIT), "no line from the follower in time"
    sel.close()
    return proc.stdout.readline().decode()


def test_bus_tail_follow_sees_live_messages_and_ends_on_ctrl_c(env):
    sid = new_session(env)
    aether(env, "bus", "publish", sid, "t", "old")
    proc = _follower(env, "bus", "tail", sid, "-f", "--json")
    try:
        first = json.loads(_readline(proc))
        assert (first["cursor"], base64.b64decode(first["payload"])) == ("1", b"old")
        aether(env, "bus", "publish", sid, "t", "live one")
        live = json.loads(_readline(proc))
        assert (live["cursor"], base64.b64decode(live["payload"])) == ("2", b"live one")
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=WAIT)
        assert proc.returncode == 130 and b"Traceback" not in stderr, stderr
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(WAIT)

    # human lines, a topic filter, and an end when the session is deleted
    proc = _follower(env, "bus", "tail", sid, "-f", "--from", "2", "--topic", "keep")
    try:
        aether(env, "bus", "publish", sid, "drop", "no")
        aether(env, "bus", "publish", sid, "keep", "yes please")
        line = _readline(proc)
        assert line.split()[0] == "4" and "keep" in line and line.rstrip().endswith("yes please")
        aether(env, "session", "rm", sid, "--yes")
        _, stderr = proc.communicate(timeout=WAIT)
        assert proc.returncode == 0, stderr
        assert "session is gone" in stderr.decode()
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(WAIT)


# ---------------------------------------------------------------- events


def test_events_ls_and_tail(env):
    sid = new_session(env)
    aether(env, "fs", "put", sid, "a.txt", input=b"1")
    aether(env, "checkpoint", "create", sid, "-m", "c1")
    table = out(aether(env, "events", "ls", sid))
    assert "session.created" in table and "file.written" in table and "a.txt" in table
    evs = json.loads(out(aether(env, "events", "ls", sid, "--json")))
    assert [(e["cursor"], e["type"]) for e in evs] == [
        ("1", "session.created"), ("2", "file.written"), ("3", "checkpoint.created")]
    assert out(aether(env, "-q", "events", "ls", sid, "--type", "file.written")) == "2\n"
    assert [e["cursor"] for e in json.loads(out(aether(
        env, "events", "ls", sid, "--from", "1", "--limit", "1", "--json")))] == ["2"]

    lines = out(aether(env, "events", "tail", sid, "-n", "1")).splitlines()
    assert len(lines) == 1 and lines[0].split()[0] == "3" and "checkpoint.created" in lines[0]
    assert [e["type"] for e in jlines(out(aether(env, "events", "tail", sid, "--from", "1",
                                                 "--json")))] == [
        "file.written", "checkpoint.created"]

    aether(env, "events", "ls", MISSING, check=3)
    assert err_line(aether(env, "events", "ls", sid, "--type", "file.writen",
                           check=1)).startswith("error: invalid_argument: ")
    aether(env, "events", "tail", sid, "--from", "-1", check=2)

    proc = _follower(env, "events", "tail", sid, "-f", "--from", "3", "--json")
    try:
        aether(env, "fs", "put", sid, "b.txt", input=b"2")
        e = json.loads(_readline(proc))
        assert (e["cursor"], e["type"], e["path"]) == ("4", "file.written", "b.txt")
        proc.terminate()
        proc.wait(WAIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(WAIT)

    proc = _follower(env, "events", "tail", sid, "-f", "-q", "--from", "4")
    try:
        aether(env, "review", "comment", sid, "looks good")
        assert _readline(proc).strip() == "5"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=WAIT)
        assert proc.returncode == 130 and b"Traceback" not in stderr, stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(WAIT)


# ---------------------------------------------------------------- review


def test_review_comments_and_annotations(env):
    sid = new_session(env)
    aether(env, "fs", "put", sid, "src/a.py", input=b"one\ntwo\nthree\n")
    top = json.loads(out(aether(env, "review", "comment", sid, "why?", "--path", "src/a.py",
                                "--author", "ann", "--json")))
    assert top["id"].startswith("cmn_") and top["path"] == "src/a.py" and top["author"] == "ann"
    reply = out(aether(env, "-q", "review", "comment", sid, "-", "--reply-to", top["id"],
                       input=b"because\n")).strip()
    assert reply.startswith("cmn_")
    human = out(aether(env, "review", "comment", sid, "overall fine"))
    assert "overall fine" in human and "Body" in human
    table = out(aether(env, "review", "comments", sid))
    assert "why?" in table and "because" in table and "REPLY TO" in table
    listed = json.loads(out(aether(env, "review", "comments", sid, "--path", "src",
                                   "--json")))
    assert [c["id"] for c in listed] == [top["id"], reply]
    assert listed[1]["parentId"] == top["id"]
    assert len(out(aether(env, "-q", "review", "comments", sid)).split()) == 3

    a = json.loads(out(aether(env, "review", "annotate", sid, "src/a.py", "2-3", "shadowed",
                              "--severity", "warning", "--json")))
    assert (a["startLine"], a["endLine"], a["severity"]) == (2, 3, "warning")
    b = out(aether(env, "-q", "review", "annotate", sid, "src/a.py", "1", "fine")).strip()
    table = out(aether(env, "review", "annotations", sid))
    assert "2-3" in table and "warning" in table and "shadowed" in table
    assert out(aether(env, "-q", "review", "annotations", sid)).split() == [a["id"], b]
    gone = json.loads(out(aether(env, "review", "rm-annotation", sid, a["id"], "--json")))
    assert gone["id"] == a["id"]
    assert json.loads(out(aether(env, "review", "annotations", sid, "--json")))[0]["id"] == b

    # bad input: a backwards range is usage (2); past the end 1; missing file / id 3
    aether(env, "review", "annotate", sid, "src/a.py", "3-2", "x", check=2)
    assert err_line(aether(env, "review", "annotate", sid, "src/a.py", "9", "x",
                           check=1)).startswith("error: invalid_argument: ")
    aether(env, "review", "annotate", sid, "src/none.py", "1", "x", check=3)
    aether(env, "review", "comments", MISSING, check=3)


def test_review_approvals_gate_a_commit(env):
    sid = new_session(env)
    aether(env, "fs", "put", sid, "app.py", input=b"v1\n")
    apr = json.loads(out(aether(env, "review", "request", sid, "--title", "release",
                                "--requester", "agent", "--json")))
    assert apr["state"] == "APPROVAL_STATE_PENDING" and apr["title"] == "release"
    assert "pending" in out(aether(env, "review", "approvals", sid))
    assert "Approved" in out(aether(env, "review", "approve", sid, apr["id"], "--reason", "lgtm",
                                    "--reviewer", "rev"))
    listed = json.loads(out(aether(env, "review", "approvals", sid, "--json")))
    assert [(x["id"], x["state"], x["reviewer"]) for x in listed] == [
        (apr["id"], "APPROVAL_STATE_APPROVED", "rev")]

    aether(env, "fs", "put", sid, "app.py", input=b"v2\n")  # the approved state is gone
    assert out(aether(env, "-q", "review", "approvals", sid, "--state", "stale")) == \
        apr["id"] + "\n"
    second = out(aether(env, "-q", "review", "request", sid)).strip()
    aether(env, "review", "reject", sid, second, check=2)  # --reason is required
    no = json.loads(out(aether(env, "review", "reject", sid, second, "--reason", "no tests",
                               "--json")))
    assert (no["state"], no["reason"]) == ("APPROVAL_STATE_REJECTED", "no tests")
    assert err_line(aether(env, "review", "approve", sid, second, check=1)).startswith(
        "error: failed_precondition: ")
    aether(env, "review", "approvals", sid, "--state", "maybe", check=2)
    aether(env, "review", "approve", sid, "apr_" + "0" * 26, check=3)
    aether(env, "review", "request", MISSING, check=3)


# ---------------------------------------------------------------- health, usage, analytics


def test_health_usage_analytics(env, tmp_path):
    h = json.loads(out(aether(env, "health", "--json")))
    assert h["status"] == "ok" and h["checks"] == {"metadata": "ok", "blobs": "ok"}
    human = out(aether(env, "health"))
    assert "Status" in human and "ok" in human and "Uptime" in human
    assert out(aether(env, "-q", "health")) == "ok\n"

    sid = new_session(env)
    aether(env, "fs", "put", sid, "a/b.txt", input=b"hello")
    aether(env, "cache", "set", sid, "k", "vv")
    sh = json.loads(out(aether(env, "health", sid, "--json")))
    assert sh["sessionId"] == sid and sh["status"] == "ok" and sh["checks"]["state"] == "active"
    assert "root_tree" in out(aether(env, "health", sid))
    aether(env, "health", MISSING, check=3)

    u = json.loads(out(aether(env, "usage", sid, "--json")))
    assert (u["files"], u["bytes"], u["cacheKeys"], u["cacheBytes"]) == ("1", "5", "1", "2")
    every = json.loads(out(aether(env, "usage", "--json")))
    assert sid in [x["sessionId"] for x in every]
    assert sid in out(aether(env, "-q", "usage")).split()
    aether(env, "usage", MISSING, check=3)

    an = json.loads(out(aether(env, "analytics", sid, "--window", "1m", "--json")))
    assert an["sessionId"] == sid and len(an["windows"]) == 24
    ops = {o["operation"] for w in an["windows"] for o in w["operations"]}
    assert {"session.created", "file.written"} <= ops
    assert "cache.written" in out(aether(env, "-q", "analytics", sid)).split()
    aether(env, "analytics", sid, "--window", "forever", check=2)

    # an unreachable daemon is unhealthy: one line, exit 1
    proc = run("--server", f"unix:{tmp_path}/none.sock", "health", env=env, check=1)
    assert err_line(proc).startswith("error: unavailable: ")


def test_help_of_the_groups():
    for group in ("cache", "bus", "events", "review"):
        assert "Usage:" in out(run(group, "--help"))
    text = out(run("cache", "batch", "set", "--help"))
    assert '{"key": "greeting"' in text and "JSON lines" in text
    assert "130" in out(run("bus", "tail", "--help"))
