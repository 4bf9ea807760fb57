"""Live panes: what other clients do shows up in the open TUI, from the
daemon's server streams (no polling)."""

from __future__ import annotations

import asyncio

from tui_helpers import SIZE, until

from tui.screens.session import SessionScreen


async def test_bus_message_published_over_http_appears(make_app, sdk):
    s = sdk.create_session(name="live")
    sdk.publish(s.id, "history", "before the tui opened")
    app = make_app(session_id=s.id)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, SessionScreen))
        screen = app.screen
        await pilot.press("4")
        bus, events = screen.live.bus_log, screen.live.events_log
        await until(pilot, lambda: bus.received == 1, what="history")
        assert "before the tui opened" in bus.plain_lines()[0]

        # another client, over plain HTTP, while the TUI is open
        await asyncio.to_thread(sdk.publish, s.id, "agents", "hello from elsewhere",
                                sender="bot")
        await until(pilot, lambda: bus.received == 2, timeout=10, what="live message")
        assert "agents bot: hello from elsewhere" in bus.plain_lines()[-1]

        seen = events.received
        await asyncio.to_thread(sdk.write_file, s.id, "notes.md", b"# live\n")
        await until(pilot, lambda: any("notes.md" in line for line in events.plain_lines()),
                    timeout=10, what="live event")
        assert events.received > seen
        assert app.errors == []


def tree_paths(tree) -> set[str]:
    return {path for path in tree.nodes if path}


async def test_session_screen_follows_changes_made_over_http(make_app, sdk):
    s = sdk.create_session(name="follow-files")
    sdk.write_file(s.id, "a/x.txt", b"x\n")
    sdk.write_file(s.id, "top.txt", b"one\n")
    app = make_app(session_id=s.id)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, SessionScreen))
        screen = app.screen
        tree = screen.file_tree
        await until(pilot, lambda: "" in tree.loaded_paths and screen.changes_loaded)
        await pilot.press("enter")  # expand a/
        await until(pilot, lambda: "a" in tree.loaded_paths)
        await pilot.press("down", "down", "enter")  # top.txt, after a/ and a/x.txt
        await until(pilot, lambda: screen.viewer.path == "top.txt")
        await until(pilot, lambda: screen.live.events_log.received >= 2)
        await pilot.pause(0.5)  # the history's own refresh is done

        # a file written over HTTP shows in the open directory, the changes and
        # the header without pressing R (about 0.2 s here; the bound is only
        # there so that a lost event fails instead of hanging)
        await asyncio.to_thread(sdk.write_file, s.id, "a/new.txt", b"new\n")
        await until(pilot, lambda: "a/new.txt" in tree_paths(tree), timeout=5,
                    what="a/new.txt in the tree")
        await until(pilot, lambda: "a/new.txt" in [c.path for c in screen.changes], timeout=5)
        assert screen.changes_table.get_row("a/new.txt")[1] == "a/new.txt"
        await until(pilot, lambda: "3 files" in screen.sub_title, timeout=5)
        assert screen.tabs.active == "files" and screen.file_tree.has_focus

        # a new directory under the root, and the open file changed
        await asyncio.to_thread(sdk.write_file, s.id, "brand/deep/f.txt", b"deep\n")
        await asyncio.to_thread(sdk.write_file, s.id, "top.txt", b"one\ntwo\n")
        await until(pilot, lambda: "brand" in tree_paths(tree), timeout=5)
        await until(pilot, lambda: screen.viewer.shown and screen.viewer.shown[1]
                    == b"one\ntwo\n", timeout=5, what="viewer updated")
        assert "a" in tree.loaded_paths and tree.nodes["a"].is_expanded  # still open

        # deletions and renames drop their rows
        await asyncio.to_thread(sdk.delete_file, s.id, "a/x.txt")
        await asyncio.to_thread(sdk.rename, s.id, "a/new.txt", "a/renamed.txt")
        await until(pilot, lambda: tree_paths(tree) >= {"a/renamed.txt"}
                    and not tree_paths(tree) & {"a/x.txt", "a/new.txt"}, timeout=5)
        await asyncio.to_thread(sdk.delete_file, s.id, "top.txt")
        await until(pilot, lambda: "top.txt" not in tree_paths(tree), timeout=5)
        await until(pilot, lambda: screen.viewer.shown is None, timeout=5,
                    what="viewer says the file is gone")

        # a flood is coalesced: far fewer refreshes than events
        before = screen.live_refreshes

        def flood() -> None:
            for i in range(150):
                sdk.write_file(s.id, f"flood/f{i:03d}.txt", b"x")

        await asyncio.to_thread(flood)
        await until(pilot, lambda: "flood" in tree_paths(tree), timeout=5)
        await pilot.pause(0.6)
        assert screen.live_refreshes - before <= 30, screen.live_refreshes - before
        assert app.errors == []
    expected = {e.path for e in sdk.list_tree(s.id, "", depth=1).entries}
    assert "flood" in expected and "brand" in expected
