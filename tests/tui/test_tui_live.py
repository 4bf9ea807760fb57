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
