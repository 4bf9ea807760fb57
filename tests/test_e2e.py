"""Runs tests/e2e/*.sh, the shell-level walk-throughs that use only `aether`,
against a real daemon."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

E2E = Path(__file__).parent / "e2e"
AETHER = Path(sys.executable).with_name("aether")


@pytest.mark.parametrize("script", sorted(p.name for p in E2E.glob("*.sh")))
def test_e2e_script(script: str, daemon, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AETHER_")}
    # The daemon's import roots include the system temp dir, where tmp_path lives.
    env.update(AETHER_SERVER=daemon.http_url, AETHER_TOKEN=daemon.token, AETHER=str(AETHER),
               WORK=str(tmp_path), NO_COLOR="1", COLUMNS="120",
               GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_SYSTEM="/dev/null")
    proc = subprocess.run(["bash", str(E2E / script)], env=env, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, f"{script} failed\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    assert proc.stdout.rstrip().endswith(" OK"), proc.stdout[-500:]
