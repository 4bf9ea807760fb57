"""Screenshots of every screen at 80x24 (pytest-textual-snapshot), against a
real daemon seeded here. The app runs with `stable=True`: ids, times and the
daemon's address are masked and no cursor blinks, so the SVGs only change when
the UI does. Update them with `pytest tests/tui --snapshot-update`."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from tui_helpers import SIZE, session_open, until

from aether import pb
from aether.client import source
from tui.app import AetherApp
from tui.dialogs import AnnotateDialog, CreateSessionDialog, HelpScreen
from tui.screens.cache import CacheScreen
from tui.screens.diff import DiffScreen
from tui.screens.review import ReviewScreen
from tui.screens.sessions import SessionsScreen

APP_PY = b'''"""The service."""

import os


def main() -> int:
    port = int(os.environ.get("PORT", "8080"))
    print(f"listening on {port}")
    return 0
'''


@dataclass
class Seeded:
    main: pb.Session
    checkpoint: pb.Checkpoint


@pytest.fixture(scope="module")
def seeded(sdk, tmp_path_factory) -> Seeded:
    """Three sessions, one of them with files, a checkpoint, a commit, changes,
    an annotation, an approval, bus messages and cache keys. Always built in
    the same order, so cursors and row orders are the same on every run."""
    src = tmp_path_factory.mktemp("snapsrc")
    (src / "src").mkdir()
    (src / "src" / "app.py").write_bytes(APP_PY)
    (src / "src" / "util.py").write_bytes(b"def double(x):\n    return 2 * x\n")
    (src / "README.md").write_bytes(b"# api-server\n\nA small service.\n")
    (src / "docs").mkdir()
    (src / "docs" / "guide.md").write_bytes(b"# Guide\n")

    sdk.create_session(name="experiment", labels={"team": "lab"})
    docs = sdk.create_session(name="docs-site", labels={"team": "docs"})
    sdk.write_file(docs.id, "index.md", b"# Docs\n")
    main = sdk.create_session(source.directory(src), name="api-server",
                              labels={"team": "api", "env": "dev"})
    ckp = sdk.create_checkpoint(main.id, message="imported")
    sdk.create_commit(main.id, message="first release", author="alice")
    sdk.write_file(main.id, "src/app.py", APP_PY.replace(b"8080", b"9090"))
    sdk.write_file(main.id, "src/health.py", b"def ok():\n    return True\n")
    sdk.delete_file(main.id, "docs/guide.md")
    sdk.create_annotation(main.id, "src/app.py", 7, 7, "read the port from the config",
                          severity="warning", author="bob")
    sdk.request_approval(main.id, title="ship 9090", requester="alice")
    sdk.publish(main.id, "builds", "build 41 passed", sender="ci")
    sdk.publish(main.id, "chat", "deploying to staging", sender="alice")
    sdk.cache_put(main.id, "plan/steps", '{"steps": ["build", "test", "ship"]}',
                  content_type="application/json")
    sdk.cache_put(main.id, "plan/owner", "alice")
    sdk.cache_put(main.id, "summary", "all green")
    sdk.archive_session(sdk.create_session(name="old-prototype").id)
    return Seeded(main=sdk.get_session(main.id), checkpoint=ckp)


@pytest.fixture
def stable_app(daemon, seeded):
    def make(**kwargs) -> AetherApp:
        return AetherApp(server=daemon.http_url, token=daemon.token, stable=True, **kwargs)

    return make


def compare(snap_compare, app: AetherApp, ready, *, press=()) -> None:
    async def run_before(pilot) -> None:
        await ready(pilot)
        if press:
            await pilot.press(*press)
            await pilot.pause(0.1)

    assert snap_compare(app, run_before=run_before, terminal_size=SIZE)


async def sessions_listed(pilot) -> None:
    await until(pilot, lambda: isinstance(pilot.app.screen, SessionsScreen)
                and pilot.app.screen.loaded)


def test_sessions_screen(snap_compare, stable_app):
    compare(snap_compare, stable_app(), sessions_listed)


def test_sessions_screen_light_theme(snap_compare, stable_app):
    async def ready(pilot) -> None:
        await sessions_listed(pilot)
        await pilot.press("ctrl+t")

    compare(snap_compare, stable_app(), ready)


def test_sessions_filtered(snap_compare, stable_app):
    async def ready(pilot) -> None:
        await sessions_listed(pilot)
        await pilot.press("slash", *"team=d")

    compare(snap_compare, stable_app(), ready)


def test_create_dialog(snap_compare, stable_app):
    async def ready(pilot) -> None:
        await sessions_listed(pilot)
        await pilot.press("n")
        await until(pilot, lambda: isinstance(pilot.app.screen, CreateSessionDialog))
        await pilot.click("#kind-git")

    compare(snap_compare, stable_app(), ready)


def test_help_screen(snap_compare, stable_app, seeded):
    async def ready(pilot) -> None:
        await session_open(pilot)
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(pilot.app.screen, HelpScreen))

    compare(snap_compare, stable_app(session_id=seeded.main.id), ready)


def test_session_file_with_annotation(snap_compare, stable_app, seeded):
    async def ready(pilot) -> None:
        screen = await session_open(pilot)
        await pilot.press("down", "enter")  # src/ (after docs/)
        await until(pilot, lambda: "src" in screen.file_tree.loaded_paths)
        await pilot.press("down", "enter")  # src/app.py
        await until(pilot, lambda: screen.viewer.path == "src/app.py")

    compare(snap_compare, stable_app(session_id=seeded.main.id), ready)


def test_annotate_dialog(snap_compare, stable_app, seeded):
    async def ready(pilot) -> None:
        screen = await session_open(pilot)
        await pilot.press("down", "enter")  # src/
        await until(pilot, lambda: "src" in screen.file_tree.loaded_paths)
        await pilot.press("down", "enter")  # src/app.py
        await until(pilot, lambda: screen.viewer.path == "src/app.py")
        await pilot.press("tab", *["down"] * 5)  # the viewer's cursor to line 6
        await pilot.press("a")
        await until(pilot, lambda: isinstance(pilot.app.screen, AnnotateDialog))

    compare(snap_compare, stable_app(session_id=seeded.main.id), ready)


def test_session_timeline(snap_compare, stable_app, seeded):
    compare(snap_compare, stable_app(session_id=seeded.main.id), session_open, press=("2",))


def test_session_changes(snap_compare, stable_app, seeded):
    async def ready(pilot) -> None:
        screen = await session_open(pilot)
        await until(pilot, lambda: screen.changes_loaded)

    compare(snap_compare, stable_app(session_id=seeded.main.id), ready, press=("3",))


def test_session_live(snap_compare, stable_app, seeded):
    async def ready(pilot) -> None:
        screen = await session_open(pilot)
        await pilot.press("4")
        events = pilot.app.screen.live.events_log
        await until(pilot, lambda: screen.live.bus_log.received == 2 and events.received >= 10)
        await pilot.pause(0.3)

    compare(snap_compare, stable_app(session_id=seeded.main.id), ready)


def _diff_ready(side: bool):
    async def ready(pilot) -> None:
        await session_open(pilot)
        await pilot.press("d")
        await until(pilot, lambda: isinstance(pilot.app.screen, DiffScreen)
                    and pilot.app.screen.loaded)
        await pilot.press("n")  # src/app.py, after docs/guide.md
        if side:
            await pilot.press("s")

    return ready


def test_diff_unified(snap_compare, stable_app, seeded):
    compare(snap_compare, stable_app(session_id=seeded.main.id), _diff_ready(False))


def test_diff_side_by_side(snap_compare, stable_app, seeded):
    compare(snap_compare, stable_app(session_id=seeded.main.id), _diff_ready(True))


def test_review_screen(snap_compare, stable_app, seeded):
    async def ready(pilot) -> None:
        await session_open(pilot)
        await pilot.press("v")
        await until(pilot, lambda: isinstance(pilot.app.screen, ReviewScreen)
                    and pilot.app.screen.loaded)

    compare(snap_compare, stable_app(session_id=seeded.main.id), ready)


def test_cache_screen(snap_compare, stable_app, seeded):
    async def ready(pilot) -> None:
        await session_open(pilot)
        await pilot.press("k")
        await until(pilot, lambda: isinstance(pilot.app.screen, CacheScreen)
                    and pilot.app.screen.loaded)
        await pilot.press("down")  # plan/steps (JSON)
        await until(pilot, lambda: pilot.app.screen.shown_key == "plan/steps")

    compare(snap_compare, stable_app(session_id=seeded.main.id), ready)
