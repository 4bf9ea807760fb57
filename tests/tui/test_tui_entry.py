"""`aether tui` as a command: listed, documented, and the global daemon flags
checked before any screen opens."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

AETHER = str(Path(sys.executable).with_name("aether"))


def test_tui_is_an_aether_command():
    proc = subprocess.run([AETHER, "tui", "--help"], capture_output=True, text=True, check=True)
    assert "Open the workspace console (Textual)." in proc.stdout
    assert "[SESSION]" in proc.stdout


def test_unknown_profile_is_a_usage_error(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text("")
    env = {"PATH": "/usr/bin:/bin", "AETHER_CONFIG": str(config), "HOME": str(tmp_path)}
    proc = subprocess.run([AETHER, "--profile", "nope", "tui"], capture_output=True, text=True,
                          env=env, stdin=subprocess.DEVNULL, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "bad_config" in proc.stderr
