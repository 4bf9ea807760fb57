"""Pilot tests: each action driven from the keyboard against a real daemon,
then the daemon's state checked through the SDK."""

from __future__ import annotations

import subprocess

import pytest
from tui_helpers import SIZE, until

from aether import pb
from aether.errors import NotFound
from tui.dialogs import ConfirmDialog, CreateSessionDialog, HelpScreen, PromptDialog
from tui.screens.cache import CacheScreen
from tui.screens.diff import DiffScreen
from tui.screens.review import ReviewScreen
from tui.screens.session import SessionScreen
from tui.screens.sessions import SessionsScreen


def make_tree(root, files: dict[str, str]):
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


async def sessions_ready(pilot) -> SessionsScreen:
    screen = pilot.app.screen
    assert isinstance(screen, SessionsScreen)
    await until(pilot, lambda: screen.loaded, what="sessions listed")
    return screen


async def pick(pilot, screen: SessionsScreen, name: str) -> None:
    """Filter the list down to `name` by typing, and put the cursor on it."""
    await pilot.press("slash")
    screen.filter_input.value = name
    await pilot.press("enter")
    await until(pilot, lambda: screen.selected() is not None
                and screen.selected().name == name, what=f"{name} selected")


async def answer(pilot, dialog_type, *keys: str, value: str | None = None) -> None:
    await until(pilot, lambda: isinstance(pilot.app.screen, dialog_type), what="dialog")
    if value is not None:
        pilot.app.screen.query_one("Input").value = value
    await pilot.press(*keys)


def by_name(sdk, name: str) -> pb.Session:
    found = [s for s in sdk.iter_sessions() if s.name == name]
    assert len(found) == 1, (name, found)
    return found[0]


# ---------------------------------------------------------------- sessions screen


async def test_create_from_directory(make_app, sdk, tmp_path):
    src = make_tree(tmp_path / "proj", {"a.txt": "alpha\n", "sub/b.py": "print(1)\n"})
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await sessions_ready(pilot)
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, CreateSessionDialog))
        await pilot.click("#kind-directory")
        app.screen.query_one("#value").value = str(src)
        app.screen.query_one("#name").value = "from-dir"
        await pilot.click("#create")
        await until(pilot, lambda: isinstance(app.screen, SessionsScreen))
        screen = app.screen
        await until(pilot, lambda: any(s.name == "from-dir" for s in screen.sessions))
        assert screen.selected().name == "from-dir"
    created = by_name(sdk, "from-dir")
    assert created.file_count == 2
    assert sdk.read_file(created.id, "sub/b.py").data == b"print(1)\n"
    assert app.errors == []


async def test_create_from_git_and_template(make_app, sdk, tmp_path):
    repo = make_tree(tmp_path / "repo", {"README.md": "# repo\n"})
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=repo, check=True)
    seed = sdk.create_session(name="tpl-seed")
    sdk.write_file(seed.id, "tpl.txt", b"from a template\n")
    sdk.create_template("tui-starter", session_id=seed.id)

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await sessions_ready(pilot)
        for kind, value, name in (("git", str(repo), "from-git"),
                                  ("template", "tui-starter", "from-template")):
            await pilot.press("n")
            await until(pilot, lambda: isinstance(app.screen, CreateSessionDialog))
            await pilot.click(f"#kind-{kind}")
            app.screen.query_one("#value").value = value
            app.screen.query_one("#name").value = name
            app.screen.query_one("#name").focus()
            await pilot.press("enter")  # submitting any field creates
            await until(pilot, lambda: isinstance(app.screen, SessionsScreen))
            await until(pilot, lambda n=name: any(s.name == n for s in app.screen.sessions))
    git_session = by_name(sdk, "from-git")
    assert git_session.source_kind == "git"
    assert sdk.read_file(git_session.id, "README.md").data == b"# repo\n"
    tpl_session = by_name(sdk, "from-template")
    assert sdk.read_file(tpl_session.id, "tpl.txt").data == b"from a template\n"


async def test_fork_archive_and_delete(make_app, sdk):
    parent = sdk.create_session(name="to-fork")
    sdk.write_file(parent.id, "x.txt", b"x\n")
    doomed = sdk.create_session(name="to-delete")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await sessions_ready(pilot)
        await pick(pilot, screen, "to-fork")
        await pilot.press("f")
        await answer(pilot, PromptDialog, "enter", value="forked-child")
        await until(pilot, lambda: any(s.name == "forked-child" for s in screen.sessions))

        await pick(pilot, screen, "forked-child")
        await pilot.press("a")
        await answer(pilot, ConfirmDialog, "y")
        await until(pilot, lambda: screen.selected() is not None
                    and screen.selected().state == pb.SessionState.ARCHIVED)

        await pick(pilot, screen, "to-delete")
        await pilot.press("x")
        await answer(pilot, ConfirmDialog, "n")  # cancelled: nothing happens
        await pilot.pause(0.2)
        assert sdk.get_session(doomed.id).name == "to-delete"
        await pilot.press("x")
        await answer(pilot, ConfirmDialog, "y")
        await until(pilot, lambda: all(s.name != "to-delete" for s in screen.sessions))
    child = by_name(sdk, "forked-child")
    assert child.parent_session_id == parent.id
    assert child.state == pb.SessionState.ARCHIVED
    assert sdk.read_file(child.id, "x.txt").data == b"x\n"
    with pytest.raises(NotFound):
        sdk.get_session(doomed.id)
    assert app.errors == []


async def test_filter_as_you_type(make_app, sdk):
    sdk.create_session(name="filter-alpha", labels={"team": "red"})
    sdk.create_session(name="filter-beta", labels={"team": "blue"})
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await sessions_ready(pilot)
        await pilot.press("slash", *"team=blue")
        await pilot.pause(0.1)
        names = [str(screen.table.get_row_at(i)[0]) for i in range(screen.table.row_count)]
        assert names == ["filter-beta"]
        await pilot.press("escape")
        assert screen.table.row_count >= 2


# ---------------------------------------------------------------- session screen


async def test_restore_from_timeline(make_app, sdk):
    s = sdk.create_session(name="restore-me")
    sdk.write_file(s.id, "f.txt", b"v1\n")
    sdk.create_checkpoint(s.id, message="v1")
    sdk.write_file(s.id, "f.txt", b"v2\n")
    app = make_app(session_id=s.id)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, SessionScreen))
        screen = app.screen
        await until(pilot, lambda: screen.timeline_loaded)
        await pilot.press("2")
        assert screen.tabs.active == "timeline"
        assert screen.selected_state().startswith("ckp_")
        await pilot.press("r")
        await answer(pilot, ConfirmDialog, "y")
        await until(pilot, lambda: sdk.read_file(s.id, "f.txt").data == b"v1\n",
                    what="restored content")
    assert app.errors == []


async def test_checkpoint_tree_and_viewer(make_app, sdk):
    s = sdk.create_session(name="viewer")
    sdk.write_file(s.id, "pkg/mod.py", b"def f():\n    return 1\n")
    sdk.create_annotation(s.id, "pkg/mod.py", 2, 2, "return 2?", severity="warning")
    app = make_app(session_id=s.id)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, SessionScreen))
        screen = app.screen
        tree = screen.file_tree
        await until(pilot, lambda: "" in tree.loaded_paths)
        await pilot.press("enter")  # expand pkg/ (lazily listed now)
        await until(pilot, lambda: "pkg" in tree.loaded_paths)
        await pilot.press("down", "enter")
        await until(pilot, lambda: screen.viewer.path == "pkg/mod.py")
        await pilot.pause(0.1)
        assert [a.body for a in screen.viewer._shown[3]] == ["return 2?"]
        await pilot.press("c")
        await answer(pilot, PromptDialog, "enter", value="from the tui")
        await until(pilot, lambda: len(sdk.list_checkpoints(s.id).checkpoints) == 1)
    assert sdk.list_checkpoints(s.id).checkpoints[0].message == "from the tui"


async def test_diff_screen_modes_and_navigation(make_app, sdk):
    s = sdk.create_session(name="diffs")
    sdk.write_file(s.id, "a.txt", b"one\ntwo\n")
    sdk.write_file(s.id, "b.txt", b"bee\n")
    ckp = sdk.create_checkpoint(s.id, message="base line")
    sdk.write_file(s.id, "a.txt", b"one\nTWO\n")
    sdk.delete_file(s.id, "b.txt")
    app = make_app(session_id=s.id)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, SessionScreen))
        await until(pilot, lambda: app.screen.timeline_loaded)
        await pilot.press("2", "d")  # against the selected (newest) checkpoint
        await until(pilot, lambda: isinstance(app.screen, DiffScreen) and app.screen.loaded)
        diff = app.screen
        assert diff.from_ == ckp.id
        assert [f.change.path for f in diff.files] == ["a.txt", "b.txt"]
        assert diff.current.change.path == "a.txt"
        await pilot.press("n")
        assert diff.current.change.path == "b.txt"
        await pilot.press("s")
        assert diff.side
        await pilot.press("p", "escape")
        await until(pilot, lambda: isinstance(app.screen, SessionScreen))


async def test_publish_from_the_live_pane(make_app, sdk):
    s = sdk.create_session(name="publisher")
    app = make_app(session_id=s.id)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, SessionScreen))
        screen = app.screen
        await pilot.press("p")
        assert screen.tabs.active == "live"
        await pilot.press(*"deploys", "enter", *"ship it", "enter")
        await until(pilot, lambda: screen.live.bus_log.received >= 1, what="message shown")
        assert "deploys" in screen.live.bus_log.plain_lines()[-1]
    msgs = sdk.read_bus(s.id).messages
    assert [(m.topic, bytes(m.payload)) for m in msgs] == [("deploys", b"ship it")]


# ---------------------------------------------------------------- review and cache


async def test_approve_reject_and_commit(make_app, sdk):
    s = sdk.create_session(name="review-me", policy=pb.SessionPolicy(
        commit_requires_approval=True, min_approvals=1))
    sdk.write_file(s.id, "f.txt", b"ready\n")
    first = sdk.request_approval(s.id, title="first", requester="alice")
    app = make_app(session_id=s.id)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, SessionScreen))
        await pilot.press("v")
        await until(pilot, lambda: isinstance(app.screen, ReviewScreen) and app.screen.loaded)
        review = app.screen
        # committing before an approval is refused: a notification, not a crash
        await pilot.press("m")
        await answer(pilot, PromptDialog, "enter", value="too early")
        await until(pilot, lambda: app.errors, what="error notification")
        assert app.errors[-1][0] == "failed_precondition"

        await until(pilot, lambda: isinstance(app.screen, ReviewScreen))
        await pilot.press("x")
        await answer(pilot, PromptDialog, "enter", value="")  # a reason is required
        assert isinstance(app.screen, PromptDialog)
        app.screen.query_one("Input").value = "not yet"
        await pilot.press("enter")
        await until(pilot, lambda: sdk.list_approvals(s.id).approvals[0].state
                    == pb.ApprovalState.REJECTED)

        sdk.request_approval(s.id, title="second", requester="alice")
        await pilot.press("r")
        await until(pilot, lambda: len(review.approvals) == 2)
        review.approvals_table.move_cursor(row=0)  # newest first
        await pilot.press("a")
        await answer(pilot, PromptDialog, "enter", value="lgtm")
        await until(pilot, lambda: sdk.list_approvals(s.id, state="approved").approvals)

        await pilot.press("m")
        await answer(pilot, PromptDialog, "enter", value="approved result")
        await until(pilot, lambda: sdk.list_commits(s.id).commits, what="commit")
    states = {a.title: a for a in sdk.list_approvals(s.id).approvals}
    assert states["first"].state == pb.ApprovalState.REJECTED
    assert states["first"].reason == "not yet"
    assert states["second"].state == pb.ApprovalState.APPROVED
    assert sdk.list_commits(s.id).commits[0].message == "approved result"
    assert first.id == states["first"].id


async def test_cache_browser_prefix_and_delete(make_app, sdk):
    s = sdk.create_session(name="cached")
    sdk.cache_put(s.id, "plan/a", '{"step": 1}', content_type="application/json")
    sdk.cache_put(s.id, "plan/b", "two")
    sdk.cache_put(s.id, "other", "x")
    app = make_app(session_id=s.id)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, SessionScreen))
        await pilot.press("k")
        await until(pilot, lambda: isinstance(app.screen, CacheScreen) and app.screen.loaded)
        cache = app.screen
        assert [m.key for m in cache.keys] == ["other", "plan/a", "plan/b"]
        await pilot.press("slash", *"plan", "enter")
        await until(pilot, lambda: [m.key for m in cache.keys] == ["plan/a", "plan/b"])
        await until(pilot, lambda: cache.shown_key == "plan/a", what="value shown")
        await pilot.press("x")
        await answer(pilot, ConfirmDialog, "y")
        await until(pilot, lambda: [m.key for m in cache.keys] == ["plan/b"])
    assert not sdk.cache_exists(s.id, "plan/a")
    assert sdk.cache_exists(s.id, "other")


# ---------------------------------------------------------------- app-wide


async def test_help_and_palette_cover_every_action(make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await sessions_ready(pilot)
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        table = app.screen.query_one("DataTable")
        described = {str(table.get_row_at(i)[1]) for i in range(table.row_count)}
        assert {"New", "Fork", "Archive", "Delete", "Filter", "Keys"} <= described
        await pilot.press("escape")
        await pilot.press("ctrl+p")
        await pilot.pause(0.2)
        from textual.command import CommandPalette

        assert isinstance(app.screen, CommandPalette)
        await pilot.press(*"New")
        await pilot.pause(0.3)
        await pilot.press("enter")  # runs the screen's "create" action
        await until(pilot, lambda: isinstance(app.screen, CreateSessionDialog))
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, SessionsScreen))


async def test_unreachable_daemon_is_a_notification(tmp_path):
    from tui.app import AetherApp

    app = AetherApp(server=f"unix:{tmp_path}/nobody.sock")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.errors, what="error")
        assert app.errors[0][0] == "unavailable"
        assert isinstance(app.screen, SessionsScreen)  # still running
        await pilot.press("r")
        await until(pilot, lambda: len(app.errors) == 2)
