"""Helpers of the tests that run the installed `aether` binary: find it, run it,
read what it printed, and build the environment it runs in.

The `env` fixture (the module's daemon, wide columns, no colour) is in
conftest.py; it is built with `cli_env` from here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

AETHER = Path(sys.executable).with_name("aether")
if not AETHER.exists():  # pragma: no cover - tests run from another interpreter
    AETHER = Path(shutil.which("aether") or "aether")


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any AETHER_* setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AETHER_")}
    env.update(extra)
    return env


def cli_env(**extra: str) -> dict[str, str]:
    """`clean_env` with output the tests can compare: 200 columns, no colour."""
    return clean_env(COLUMNS="200", NO_COLOR="1", **extra)


def run(*args: str, env: dict[str, str] | None = None, input: bytes | None = None,
        check: int | None = 0, timeout: float = 60,
        text: bool = False) -> subprocess.CompletedProcess:
    """`aether ARGS...`, its output captured (bytes, or str with `text`). With
    `check` (the default 0), fail unless it exits with that code."""
    proc = subprocess.run([str(AETHER), *args], env=env, input=input, capture_output=True,
                          timeout=timeout, text=text)
    if check is not None:
        assert proc.returncode == check, (
            f"aether {' '.join(args)} -> {proc.returncode}\n"
            f"stdout: {_text(proc.stdout, 'replace')}\n"
            f"stderr: {_text(proc.stderr, 'replace')}")
    return proc


def aether(env: dict[str, str], *args: str, **kw) -> subprocess.CompletedProcess:
    """`run` in `env` (the keyword arguments of `run` apply)."""
    return run(*args, env=env, **kw)


def new_session(env: dict[str, str], *args: str) -> str:
    """The id of a new session (`aether -q session create ARGS...`)."""
    return out(aether(env, "-q", "session", "create", *args)).strip()


def out(proc: subprocess.CompletedProcess) -> str:
    """What it printed on stdout, as text."""
    return _text(proc.stdout)


def err_line(proc: subprocess.CompletedProcess) -> str:
    """Its only line on stderr (fails if there is not exactly one)."""
    lines = _text(proc.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def _text(data: bytes | str, errors: str = "strict") -> str:
    return data if isinstance(data, str) else data.decode(errors=errors)
