"""Pilot tests: each action driven from the keyboard against a real daemon,
then the daemon's state checked through the SDK."""

from __future__ import annotations

import subprocess

import pytest
from tui_helpers import SIZE, until

from aether import pb
from aether.client import source
from aether.errors import NotFound
from tui.data import user_name
from tui.dialogs import (
    AnnotateDialog,
    CompareDialog,
    ConfirmDialog,
    CreateSessionDialog,
    HelpScreen,
    PromptDialog,
)
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


async def test_create_from_archive_commit_and_checkpoint(make_app, sdk, tmp_path):
    import tarfile

    tree = make_tree(tmp_path / "arch", {"pkg/a.txt": "from the archive\n"})
    archive = tmp_path / "upload.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree / "pkg", arcname="pkg")
    origin = sdk.create_session(name="states-origin")
    sdk.write_file(origin.id, "state.txt", b"checkpointed\n")
    ckp = sdk.create_checkpoint(origin.id, message="c")
    sdk.write_file(origin.id, "state.txt", b"committed\n")
    cmt = sdk.create_commit(origin.id, message="m", author="t")
    sdk.write_file(origin.id, "state.txt", b"working\n")

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await sessions_ready(pilot)
        for kind, value, name in (("archive", str(archive), "from-archive"),
                                  ("archive", str(tree), "from-packed-dir"),
                                  ("commit", cmt.id, "from-commit"),
                                  ("checkpoint", ckp.id, "from-checkpoint")):
            await pilot.press("n")
            await until(pilot, lambda: isinstance(app.screen, CreateSessionDialog))
            await pilot.click(f"#kind-{kind}")
            assert app.screen.kind == kind
            app.screen.query_one("#value").value = value
            app.screen.query_one("#name").value = name
            await pilot.click("#create")
            await until(pilot, lambda: isinstance(app.screen, SessionsScreen))
            await until(pilot, lambda n=name: any(s.name == n for s in app.screen.sessions),
                        what=name)
        assert app.errors == []
    for name in ("from-archive", "from-packed-dir"):
        made = by_name(sdk, name)
        assert made.source_kind == "archive"
        assert sdk.read_file(made.id, "pkg/a.txt").data == b"from the archive\n"
    from_commit = by_name(sdk, "from-commit")
    assert (from_commit.source_kind, from_commit.source_ref) == ("commit", cmt.id)
    assert sdk.read_file(from_commit.id, "state.txt").data == b"committed\n"
    from_ckp = by_name(sdk, "from-checkpoint")
    assert from_ckp.source_kind == "checkpoint"
    assert sdk.read_file(from_ckp.id, "state.txt").data == b"checkpointed\n"


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
        assert [a.body for a in screen.viewer.shown[3]] == ["return 2?"]
        await pilot.press("c")
        await answer(pilot, PromptDialog, "enter", value="from the tui")
        await until(pilot, lambda: len(sdk.list_checkpoints(s.id).checkpoints) == 1)
    assert sdk.list_checkpoints(s.id).checkpoints[0].message == "from the tui"


async def test_big_directory_is_listed_in_batches_and_pages(make_app, sdk, tmp_path):
    src = tmp_path / "big"
    (src / "many").mkdir(parents=True)
    for i in range(620):
        (src / "many" / f"f{i:04d}.txt").write_text("x")
    (src / "many" / "sub").mkdir()
    s = sdk.create_session(source.directory(src), name="big-dir")
    app = make_app(session_id=s.id)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, SessionScreen))
        tree = app.screen.file_tree
        await until(pilot, lambda: "" in tree.loaded_paths)
        await pilot.press("enter")  # many/
        await until(pilot, lambda: "many" in tree.loaded_paths and not tree.listing)
        node = tree.nodes["many"]
        entries = [c.data for c in node.children]
        # one page of 500 (by name: sub/ is on the next one), then a "… more" row
        assert len(entries) == 501 and entries[-1].more
        paths = [e.path for e in entries[:-1]]
        assert paths == [f"many/f{i:04d}.txt" for i in range(500)]
        assert "many" not in tree.complete_paths
        tree.move_cursor(node.children[-1])
        await pilot.press("enter")
        await until(pilot, lambda: "many" in tree.complete_paths and not tree.listing)
        # directories first across pages: sub/ goes to the top, not after page 1
        paths = [c.data.path for c in node.children]
        assert paths == ["many/sub"] + [f"many/f{i:04d}.txt" for i in range(620)]
        assert not any(c.data.more for c in node.children)
    assert app.errors == []


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


async def test_diff_against_the_fork_parent_and_two_states(make_app, sdk):
    parent = sdk.create_session(name="diff-parent")
    sdk.write_file(parent.id, "shared.txt", b"one\n")
    sdk.write_file(parent.id, "old.txt", b"old\n")
    child = sdk.fork_session(parent.id, name="diff-child")
    # after the fork: the parent moves on, which the child's diff must not show
    sdk.write_file(parent.id, "parent-only.txt", b"later\n")
    sdk.write_file(child.id, "shared.txt", b"one\ntwo\n")
    ckp = sdk.create_checkpoint(child.id, message="two lines")
    sdk.write_file(child.id, "new.txt", b"new\n")
    sdk.delete_file(child.id, "old.txt")
    cmt = sdk.create_commit(child.id, message="done", author="t")
    app = make_app(session_id=child.id)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, SessionScreen))
        screen = app.screen
        await until(pilot, lambda: screen.timeline_loaded and screen.session is not None)
        base = screen.timeline_table.get_row("base")
        assert str(base[0]) == "fork" and "parent diff-parent" in str(base[2])

        await pilot.press("f")  # working against the fork parent as forked
        await until(pilot, lambda: isinstance(app.screen, DiffScreen) and app.screen.loaded)
        diff = app.screen
        assert diff.title == "Diff fork parent → working"
        expected = sdk.diff(child.id, from_="base")
        assert [f.change.path for f in diff.files] == [f.change.path for f in expected.files]
        assert [f.change.path for f in diff.files] == ["new.txt", "old.txt", "shared.txt"]

        # two arbitrary states: the checkpoint against the commit
        await pilot.press("t")
        await until(pilot, lambda: isinstance(app.screen, CompareDialog))
        dialog = app.screen
        labels = [label for label, _ in dialog.choices]
        assert "fork parent (diff-parent) as forked" in labels
        from_select, to_select = dialog.selects
        from_select.value, to_select.value = ckp.id, cmt.id
        await pilot.click("#ok")
        await until(pilot, lambda: app.screen is diff and diff.loaded)
        assert (diff.from_, diff.to) == (ckp.id, cmt.id)
        assert [f.change.path for f in diff.files] == ["new.txt", "old.txt"]
        assert [f.change.kind for f in diff.files] == [pb.ChangeKind.ADDED,
                                                        pb.ChangeKind.DELETED]

        await pilot.press("w")  # swapped: the commit against the checkpoint
        await until(pilot, lambda: diff.loaded and diff.from_ == cmt.id)
        assert [f.change.kind for f in diff.files] == [pb.ChangeKind.DELETED,
                                                        pb.ChangeKind.ADDED]

        # the working state as the "from" side is named, not defaulted to base
        diff._retarget("working", "base")
        await until(pilot, lambda: diff.loaded)
        assert diff.title == "Diff working → fork parent"
        assert [f.change.path for f in diff.files] == ["new.txt", "old.txt", "shared.txt"]
        assert [f.change.kind for f in diff.files][0] == pb.ChangeKind.DELETED
    assert app.errors == []


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


async def test_annotate_the_viewers_line_and_comment(make_app, sdk):
    s = sdk.create_session(name="annotate-me")
    sdk.write_file(s.id, "mod.py", b"def f():\n    x = 1\n    return x\n")
    app = make_app(session_id=s.id)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, SessionScreen))
        screen = app.screen
        await until(pilot, lambda: "" in screen.file_tree.loaded_paths)
        await pilot.press("a")  # no file open yet: a hint, no dialog
        await pilot.pause(0.1)
        assert isinstance(app.screen, SessionScreen)
        await pilot.press("enter")
        await until(pilot, lambda: screen.viewer.path == "mod.py")
        await pilot.press("tab")  # to the viewer: its line cursor
        assert screen.viewer.has_focus
        await pilot.press("down", "down")
        assert screen.viewer.cursor_line == 3

        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, AnnotateDialog))
        dialog = app.screen
        assert dialog.query_one("#lines").value == "3"
        await pilot.click("#sev-warning")
        dialog.query_one("#body").value = "return a constant?"
        dialog.query_one("#body").focus()
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, SessionScreen))
        await until(pilot, lambda: any(a.body == "return a constant?"
                                       for a in screen.viewer.shown[3]),
                    what="annotation shown in the viewer")
        assert screen.viewer.cursor_line == 3  # the reload kept the place

        # a range, typed; a bad range is refused in the dialog
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, AnnotateDialog))
        app.screen.query_one("#lines").value = "2-9"
        app.screen.query_one("#body").value = "the body"
        await pilot.press("enter")
        assert isinstance(app.screen, AnnotateDialog)  # only 3 lines
        app.screen.query_one("#lines").value = "1-2"
        app.screen.query_one("#body").focus()
        await pilot.press("enter")
        await until(pilot, lambda: len(sdk.list_annotations(s.id).annotations) == 2)

        await pilot.press("C")  # a comment on the session
        await answer(pilot, PromptDialog, "enter", value="first pass done")
        await until(pilot, lambda: sdk.list_comments(s.id).comments, what="comment")

        await pilot.press("v")
        await until(pilot, lambda: isinstance(app.screen, ReviewScreen) and app.screen.loaded)
        review = app.screen
        assert [c.body for c in review.comments] == ["first pass done"]
        assert str(review.comments_table.get_row_at(0)[2]) == "first pass done"
        assert review.annotations_table.row_count == 2
        review.comments_table.focus()
        await pilot.press("R")  # reply to the highlighted comment
        await answer(pilot, PromptDialog, "enter", value="agreed")
        await until(pilot, lambda: len(review.comments) == 2, what="reply listed")
        assert str(review.comments_table.get_row_at(1)[2]).endswith("↳ agreed")
        await pilot.press("c")
        await answer(pilot, PromptDialog, "enter", value="ship it")
        await until(pilot, lambda: len(review.comments) == 3)
    user = user_name()
    anns = {(a.start_line, a.end_line): a for a in sdk.list_annotations(s.id).annotations}
    assert anns[(3, 3)].path == "mod.py" and anns[(3, 3)].severity == "warning"
    assert anns[(3, 3)].body == "return a constant?" and anns[(3, 3)].author == user
    assert anns[(1, 2)].severity == "info" and anns[(1, 2)].body == "the body"
    comments = sdk.list_comments(s.id).comments
    by_body = {c.body: c for c in comments}
    assert set(by_body) == {"first pass done", "agreed", "ship it"}
    assert by_body["agreed"].parent_id == by_body["first pass done"].id
    assert by_body["ship it"].parent_id == "" and by_body["ship it"].author == user
    assert app.errors == []


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
