"""Helpers of the TUI tests (imported by name: tests/tui is on sys.path, like
tests/mount and its mount_helpers)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

SIZE = (80, 24)


async def until(pilot, predicate: Callable[[], object], timeout: float = 15.0,
                what: str = "") -> None:
    """Let the app run until `predicate()` is true (workers finished, rows shown)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await pilot.pause(0.02)
    await pilot.pause()


async def session_open(pilot) -> Any:
    """Wait until the app shows a session screen with its tree and timeline
    loaded; return the screen."""
    from tui.screens.session import SessionScreen

    app = pilot.app
    await until(pilot, lambda: isinstance(app.screen, SessionScreen))
    screen = app.screen
    await until(pilot, lambda: "" in screen.file_tree.loaded_paths and screen.timeline_loaded
                and screen.session is not None)
    return screen
