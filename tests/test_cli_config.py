"""The config file with named profiles (`aether config`, --profile, precedence and
errors) and shell completion (bash, zsh, fish) including session ids, with the
installed `aether` binary against the real test daemon."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
from pathlib import Path

import pytest
from cli_helpers import AETHER, cli_env, err_line, out, run


def dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def cfg(tmp_path: Path, daemon) -> tuple[Path, dict[str, str], str]:
    """A config file whose default profile is the test daemon, with variants, and an
    environment with no AETHER_* settings but AETHER_CONFIG. Returns a session id
    that exists on the test daemon."""
    token_file = tmp_path / "good.token"
    token_file.write_text(daemon.token + "\n")
    path = tmp_path / "config.toml"
    path.write_text(f"""\
default_profile = "good"

[profiles.good]
server = "{daemon.http_url}"
token = "{daemon.token}"

[profiles.viafile]
server = "{daemon.http_url}"
token_file = "{token_file}"

[profiles.relfile]
server = "{daemon.http_url}"
token_file = "good.token"

[profiles.viaenv]
server = "{daemon.http_url}"
token_env = "AETHER_TEST_TOKEN"

[profiles.notoken]
server = "{daemon.http_url}"

[profiles.bogus]
server = "{dead_url()}"
token = "nope"
""")
    env = cli_env(AETHER_CONFIG=str(path))
    sid = out(run("-q", "session", "create", "--name", "profiled", env=env)).strip()
    assert sid.startswith("ses_")
    return path, env, sid


def ids(env: dict[str, str], *args: str) -> list[str]:
    return out(run(*args, "-q", "session", "ls", env=env)).split()


def test_precedence(cfg, daemon):
    path, env, sid = cfg
    bogus = "error: unavailable: "

    # default_profile
    assert sid in ids(env)
    # --profile > default_profile; AETHER_PROFILE too; --profile > AETHER_PROFILE
    assert err_line(run("--profile", "bogus", "session", "ls", env=env, check=1)).startswith(bogus)
    assert err_line(run("-p", "bogus", "session", "ls", env=env, check=1)).startswith(bogus)
    assert err_line(run("session", "ls", env={**env, "AETHER_PROFILE": "bogus"},
                        check=1)).startswith(bogus)
    assert sid in ids({**env, "AETHER_PROFILE": "bogus"}, "--profile", "good")
    # --profile > AETHER_SERVER (an explicit choice beats the environment) ...
    wrong_env = {**env, "AETHER_SERVER": dead_url(), "AETHER_TOKEN": "wrong"}
    assert sid in ids(wrong_env, "--profile", "good")
    # ... and AETHER_SERVER/AETHER_TOKEN > AETHER_PROFILE and default_profile
    remote = {**env, "AETHER_SERVER": daemon.http_url, "AETHER_TOKEN": daemon.token}
    assert sid in ids({**remote, "AETHER_PROFILE": "bogus"})
    assert err_line(run("session", "ls", env={**env, "AETHER_SERVER": dead_url()},
                        check=1)).startswith(bogus)
    # --server > AETHER_SERVER and any profile; AETHER_TOKEN goes with --server
    assert sid in ids(wrong_env, "--server", daemon.http_url, "--token", daemon.token)
    assert sid in ids({**env, "AETHER_TOKEN": daemon.token, "AETHER_PROFILE": "bogus"},
                      "--server", daemon.http_url)

    # tokens: the profile's own, from a file, from a variable, or --token; never
    # AETHER_TOKEN, which was exported for another daemon
    assert sid in ids(env, "--profile", "viafile")
    assert sid in ids(env, "--profile", "relfile")  # relative to the config file, not the cwd
    assert sid in ids({**env, "AETHER_TEST_TOKEN": daemon.token}, "--profile", "viaenv")
    assert sid in ids(env, "--profile", "notoken", "--token", daemon.token)
    proc = run("--profile", "notoken", "session", "ls", env={**env, "AETHER_TOKEN": daemon.token},
               check=5)
    assert err_line(proc).startswith("error: unauthenticated: ")
    assert sid in ids({**env, "AETHER_TOKEN": "wrong"})  # default_profile's own token

    # status names the profile
    st = json.loads(out(run("daemon", "status", "--json", env=env)))
    assert st["running"] and st["profile"] == "good" and st["target"] == daemon.http_url
    assert st["sessions"] >= 1


def test_errors_exit_2_with_one_line(cfg, tmp_path):
    path, env, _sid = cfg
    proc = run("--profile", "nope", "session", "ls", env=env, check=2)
    line = err_line(proc)
    assert line.startswith("error: bad_config: unknown profile 'nope'")
    assert str(path) in line and "bogus, good, notoken, relfile" in line
    line = err_line(run("session", "ls", env={**env, "AETHER_PROFILE": "nope"}, check=2))
    assert "unknown profile 'nope' (from AETHER_PROFILE)" in line
    proc = run("--profile", "viaenv", "session", "ls", env=env, check=2)
    assert "$AETHER_TEST_TOKEN, which is not set" in err_line(proc)

    broken = tmp_path / "broken.toml"
    for text, needle in (
        ("default_profile = \n", "not valid TOML"),
        ('colour = "blue"\n', "unknown key(s) colour"),
        ('[profiles.x]\nserver = "http://h:1"\ntokn = "t"\n', "unknown key(s) tokn"),
        ('[profiles.x]\ntoken = "t"\n', "exactly one of server"),
        ('[profiles.x]\nserver = "nonsense"\n', "bad server"),
        ('default_profile = "gone"\n', "unknown profile 'gone' (from default_profile"),
    ):
        broken.write_text(text)
        proc = run("session", "ls", env={**env, "AETHER_CONFIG": str(broken)}, check=2)
        line = err_line(proc)
        assert line.startswith("error: bad_config: ") and needle in line, line
    # the config commands still work on a file that names a missing default
    assert out(run("config", "path", env={**env, "AETHER_CONFIG": str(broken)})).strip() \
        == str(broken)
    # nor does --server care about the file
    bad_env = {**env, "AETHER_CONFIG": str(broken)}
    run("--server", dead_url(), "session", "ls", env=bad_env, check=1)


def test_config_commands(tmp_path, daemon):
    path = tmp_path / "sub" / "config.toml"
    env = cli_env(AETHER_CONFIG=str(path))

    assert out(run("config", "path", env=env)).strip() == str(path)
    assert json.loads(out(run("config", "path", "--json", env=env))) == {
        "path": str(path), "exists": False}
    assert json.loads(out(run("config", "profiles", "--json", env=env)))["profiles"] == []

    secret = daemon.token
    run("config", "set-profile", "dev", "--server", daemon.http_url, "--token", secret, env=env)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    run("config", "set-profile", "ci", "--server", "http://ci.example:7070",
        "--token-env", "CI_TOKEN", "--default", env=env)
    run("config", "set-profile", "mine", "--data-dir", str(tmp_path / "d"), env=env)

    listed = json.loads(out(run("config", "profiles", "--json", env=env)))
    assert listed["defaultProfile"] == "ci" and listed["path"] == str(path)
    by_name = {p["name"]: p for p in listed["profiles"]}
    assert sorted(by_name) == ["ci", "dev", "mine"]
    assert by_name["dev"] == {"name": "dev", "server": daemon.http_url, "token": "***"}
    assert by_name["ci"]["token_env"] == "CI_TOKEN"
    assert by_name["mine"]["data_dir"] == str(tmp_path / "d")
    table = out(run("config", "profiles", env=env))
    assert secret not in table and "inline (redacted)" in table and "$CI_TOKEN" in table
    assert [line.split()[0] for line in table.splitlines() if "ci.example" in line] == ["*"]
    assert out(run("-q", "config", "profiles", env=env)).split() == ["ci", "dev", "mine"]

    # the written file is what a person would write, and parses back
    import tomllib

    data = tomllib.loads(path.read_text())
    assert data["default_profile"] == "ci"
    assert data["profiles"]["dev"] == {"server": daemon.http_url, "token": secret}

    # update keeps what is not given; switching token kinds replaces the old one
    run("config", "set-profile", "dev", "--token-env", "DEV_TOKEN", env=env)
    data = tomllib.loads(path.read_text())
    assert data["profiles"]["dev"] == {"server": daemon.http_url, "token_env": "DEV_TOKEN"}
    run("config", "set-profile", "dev", "--token", secret, env=env)

    # use: the default moves, and commands follow it
    assert "Default profile: dev" in out(run("config", "use", "dev", env=env))
    sid = out(run("-q", "session", "create", env=env)).strip()
    assert sid in out(run("-q", "session", "ls", env=env)).split()
    line = err_line(run("config", "use", "nope", env=env, check=2))
    assert line.startswith("error: bad_config: unknown profile 'nope'")
    run("config", "use", "--unset", env=env)
    assert "default_profile" not in path.read_text()

    # usage errors
    run("config", "set-profile", "new", env=env, check=2)  # needs --server or --data-dir
    run("config", "set-profile", "x", "--server", "http://h:1", "--data-dir", "/d", env=env,
        check=2)
    run("config", "set-profile", "x", "--server", "http://h:1", "--token", "a",
        "--token-env", "B", env=env, check=2)
    run("config", "set-profile", "bad.name", "--server", "http://h:1", env=env, check=2)
    run("config", "set-profile", "x", "--server", "nonsense", env=env, check=2)
    run("config", "use", env=env, check=2)


def test_sdk_resolves_profiles(cfg, daemon, monkeypatch):
    from aether.client import connect, resolve

    path, env, sid = cfg
    for key in [k for k in os.environ if k.startswith("AETHER_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("AETHER_CONFIG", str(path))
    t = resolve()
    assert t.profile == "good" and t.base_url == daemon.http_url and t.token == daemon.token
    assert resolve(profile="bogus").profile == "bogus"
    assert resolve(server="http://h:1").profile is None
    with connect(profile="viafile") as c:
        assert c.get_session(sid).id == sid
    from aether.client.config import ConfigError

    with pytest.raises(ConfigError, match="unknown profile 'x'"):
        resolve(profile="x")


# ---------------------------------------------------------------- completion


def _completion_env(env: dict[str, str], **extra: str) -> dict[str, str]:
    return {**env, **extra, "PATH": f"{AETHER.parent}{os.pathsep}{env.get('PATH', '')}"}


def test_completion_protocols_offer_session_ids(cfg):
    """What each shell's script asks the binary, answered with real session ids."""
    _path, env, sid = cfg

    bash = out(run(env={**env, "_AETHER_COMPLETE": "complete_bash",
                        "COMP_WORDS": "aether session show ", "COMP_CWORD": "3"}))
    assert sid in bash.split()
    prefix = sid[:8]
    bash = out(run(env={**env, "_AETHER_COMPLETE": "complete_bash",
                        "COMP_WORDS": f"aether fs ls {prefix}", "COMP_CWORD": "3"}))
    assert sid in bash.split() and all(w.startswith(prefix) for w in bash.split())
    # subcommands of the lazily loaded groups, including the new ones
    bash = out(run(env={**env, "_AETHER_COMPLETE": "complete_bash",
                        "COMP_WORDS": "aether daemon ", "COMP_CWORD": "2"})).split()
    assert {"start", "stop", "status", "logs"} <= set(bash)
    bash = out(run(env={**env, "_AETHER_COMPLETE": "complete_bash",
                        "COMP_WORDS": "aether co", "COMP_CWORD": "1"})).split()
    assert {"commit", "config", "completion"} <= set(bash)
    # profile names, and a profile honoured while completing ids
    bash = out(run(env={**env, "_AETHER_COMPLETE": "complete_bash",
                        "COMP_WORDS": "aether --profile ", "COMP_CWORD": "2"})).split()
    assert {"good", "bogus", "viafile"} <= set(bash)
    bash = out(run(env={**env, "_AETHER_COMPLETE": "complete_bash",
                        "COMP_WORDS": "aether --profile bogus session show ", "COMP_CWORD": "5"}))
    assert bash.split() == []  # bogus is down: nothing offered, no error
    bash = out(run(env={**env, "AETHER_PROFILE": "bogus", "_AETHER_COMPLETE": "complete_bash",
                        "COMP_WORDS": "aether -p good session show ", "COMP_CWORD": "5"}))
    assert sid in bash.split()

    zsh = out(run(env={**env, "_AETHER_COMPLETE": "complete_zsh",
                       "_TYPER_COMPLETE_ARGS": "aether session show "}))
    assert zsh.startswith("_arguments") and f'"{sid}"' in zsh

    fish = out(run(env={**env, "_AETHER_COMPLETE": "complete_fish",
                        "_TYPER_COMPLETE_FISH_ACTION": "get-args",
                        "_TYPER_COMPLETE_ARGS": "aether checkpoint ls "}))
    assert sid in fish.split()


def test_completion_scripts_in_real_shells(cfg):
    """`aether completion SHELL` loaded into the shell itself, completing an id."""
    _path, env, sid = cfg
    cenv = _completion_env(env)
    for shell in ("bash", "zsh", "fish"):
        script = out(run("completion", shell, env=env))
        assert "_AETHER_COMPLETE" in script
    run("completion", "tcsh", env=env, check=2)

    bash = subprocess.run(["bash", "--norc", "-c", """
        eval "$(aether completion bash)"
        COMP_WORDS=(aether session show ""); COMP_CWORD=3
        _aether_completion aether
        printf '%s\\n' "${COMPREPLY[@]}"
    """], env=cenv, capture_output=True, timeout=60)
    assert bash.returncode == 0, bash.stderr
    assert sid in bash.stdout.decode().split()

    if shutil.which("zsh"):
        # zsh's completion widgets only run inside the line editor: stand in for
        # compdef/_arguments and check what the script hands to _arguments.
        zsh = subprocess.run(["zsh", "-f", "-c", """
            compdef() { :; }
            _arguments() { print -rl -- "$@"; }
            eval "$(aether completion zsh)"
            words=(aether session show ""); CURRENT=4
            _aether_completion
        """], env=cenv, capture_output=True, timeout=60)
        assert zsh.returncode == 0, zsh.stderr
        assert sid in zsh.stdout.decode()

    if shutil.which("fish"):
        fish = subprocess.run(["fish", "--no-config", "-c", """
            aether completion fish | source
            complete -C 'aether session show '
        """], env=cenv, capture_output=True, timeout=60)
        assert fish.returncode == 0, fish.stderr
        assert sid in fish.stdout.decode().split()
