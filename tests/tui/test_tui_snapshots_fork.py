"""Screenshots of a fork (its own module, so its daemon holds only these
sessions and the sessions list of test_tui_snapshots.py is not changed by
them): the timeline's base row naming the parent, the diff against the fork
parent as forked, the dialog that picks two states to compare, and the review
screen with a comment thread."""

from __future__ import annotations

import pytest
from tui_helpers import SIZE, session_open, until

from aether import pb
from tui.app import AetherApp
from tui.dialogs import CompareDialog
from tui.screens.diff import DiffScreen
from tui.screens.review import ReviewScreen

SERVICE = b"def handler(event):\n    return {'status': 200}\n"


@pytest.fixture(scope="module")
def fork(sdk) -> pb.Session:
    """A parent, a fork of it with a checkpoint and changes, and a change the
    parent made after the fork (which the fork's diffs do not show)."""
    parent = sdk.create_session(name="api-server")
    sdk.write_file(parent.id, "service.py", SERVICE)
    sdk.write_file(parent.id, "README.md", b"# api\n")
    child = sdk.fork_session(parent.id, name="api-server-retry")
    sdk.write_file(parent.id, "later.txt", b"parent moved on\n")
    sdk.write_file(child.id, "service.py", SERVICE.replace(b"200", b"503"))
    sdk.create_checkpoint(child.id, message="503 on overload")
    sdk.write_file(child.id, "retry.py", b"ATTEMPTS = 3\n")
    sdk.create_annotation(child.id, "service.py", 2, 2, "503 needs a Retry-After header",
                          severity="error", author="bob")
    first = sdk.create_comment(child.id, "retry budget agreed with ops", author="alice")
    sdk.create_comment(child.id, "3 attempts is fine", parent_id=first.id, author="bob")
    sdk.create_comment(child.id, "see service.py", path="service.py", author="carol")
    return sdk.get_session(child.id)


@pytest.fixture
def stable_app(daemon, fork):
    def make() -> AetherApp:
        return AetherApp(server=daemon.http_url, token=daemon.token, stable=True,
                         session_id=fork.id)

    return make


async def diff_open(pilot) -> DiffScreen:
    await session_open(pilot)
    await pilot.press("f")
    await until(pilot, lambda: isinstance(pilot.app.screen, DiffScreen)
                and pilot.app.screen.loaded)
    return pilot.app.screen


def test_fork_timeline(snap_compare, stable_app):
    async def ready(pilot) -> None:
        await session_open(pilot)
        await pilot.press("2")

    assert snap_compare(stable_app(), run_before=ready, terminal_size=SIZE)


def test_fork_diff_against_parent(snap_compare, stable_app):
    async def ready(pilot) -> None:
        await diff_open(pilot)
        await pilot.press("n")  # service.py, after retry.py

    assert snap_compare(stable_app(), run_before=ready, terminal_size=SIZE)


def test_fork_compare_dialog(snap_compare, stable_app):
    async def ready(pilot) -> None:
        await diff_open(pilot)
        await pilot.press("t")
        await until(pilot, lambda: isinstance(pilot.app.screen, CompareDialog))
        await pilot.pause(0.1)

    assert snap_compare(stable_app(), run_before=ready, terminal_size=SIZE)


def test_fork_review_with_comments(snap_compare, stable_app):
    async def ready(pilot) -> None:
        await session_open(pilot)
        await pilot.press("v")
        await until(pilot, lambda: isinstance(pilot.app.screen, ReviewScreen)
                    and pilot.app.screen.loaded)

    assert snap_compare(stable_app(), run_before=ready, terminal_size=SIZE)
