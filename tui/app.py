"""AetherApp: the Textual workspace console behind `aether tui`.

The app owns the connection (a `tui.data.Backend`, made on first use so that
a daemon that cannot be reached is a notification, not a crash), the global
keys, the command palette and error reporting. Screens live in `tui.screens`.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from textual import events
from textual.app import App
from textual.binding import Binding
from textual.widgets import Input

from tui.commands import ActionsProvider
from tui.data import Backend
from tui.format import Display


class AetherApp(App[None]):
    """Sessions, files, diffs, checkpoints, bus and events, review and cache of an
    AetherFS daemon, from the keyboard."""

    CSS_PATH = "aether.tcss"
    TITLE = "AetherFS"
    COMMANDS = App.COMMANDS | {ActionsProvider}
    BINDINGS = [
        Binding("question_mark,f1", "help", "Keys"),
        Binding("ctrl+t", "toggle_theme", "Light/dark theme", show=False),
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True),
    ]

    def __init__(
        self,
        server: str | None = None,
        token: str | None = None,
        profile: str | None = None,
        *,
        session_id: str | None = None,
        stable: bool = False,
    ) -> None:
        """`server`/`token`/`profile` resolve the daemon as the CLI does (None:
        the environment, a profile, or the local daemon). `session_id` opens that
        session straight away. `stable` is for screenshots that must not change
        from run to run: ids, times and the daemon's address are masked and no
        cursor blinks."""
        super().__init__()
        self._where = (server, token, profile)
        self._backend: Backend | None = None
        self._connecting = asyncio.Lock()
        self.session_id = session_id
        self.stable = stable
        self.display_opts = Display(masked=stable)
        # (title, message) of every error shown, newest last (tests read it).
        self.errors: list[tuple[str, str]] = []

    async def backend(self) -> Backend:
        """The daemon connection, made on first use (raises AetherError when the
        daemon cannot be resolved or started; the caller's task reports it)."""
        async with self._connecting:
            if self._backend is None:
                server, token, profile = self._where
                self._backend = await Backend.connect(server, token, profile)
                self.sub_title = self.display_opts.where(self._backend.where)
            return self._backend

    def on_mount(self) -> None:
        # Opened on a session, the sessions screen is made only when you go back
        # to it (it costs a first paint's worth of layout).
        if self.session_id:
            from tui.screens.session import SessionScreen

            self.push_screen(SessionScreen(self.session_id))
        else:
            self.show_sessions()

    def show_sessions(self) -> None:
        """Back to the sessions screen (made now when there is none yet)."""
        from tui.screens.sessions import SessionsScreen

        for index, screen in enumerate(self.screen_stack):
            if isinstance(screen, SessionsScreen):
                while len(self.screen_stack) > index + 1:
                    self.pop_screen()
                return
        if len(self.screen_stack) > 1:
            self.switch_screen(SessionsScreen())
        else:
            self.push_screen(SessionsScreen())

    async def on_unmount(self) -> None:
        if self._backend is not None:
            await self._backend.close()
            self._backend = None

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        if self.stable and isinstance(event.widget, Input):
            event.widget.cursor_blink = False

    def report_error(self, title: str, message: str) -> None:
        """An error the user should see: a notification that stays a while."""
        self.errors.append((title, message))
        self.notify(message, title=title, severity="error", timeout=8)

    @property
    def dark(self) -> bool:
        return self.current_theme.dark

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.current_theme.dark else "textual-dark"

    def action_help(self) -> None:
        from tui.dialogs import HelpScreen

        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(self.screen))


def run(
    ctx: typer.Context,
    session: Annotated[str, typer.Argument(
        metavar="[SESSION]", help="Open this session (ses_...) straight away.",
        show_default=False)] = "",
) -> None:
    """Open the workspace console (Textual).

    Sessions, files, diffs, checkpoints and commits, live bus messages and
    events, review and the knowledge cache, from the keyboard: ? lists the
    keys of each screen, ctrl+p finds any action by name. Talks to the daemon
    the global --server/--token/--profile choose (the local one by default).
    """
    from aether.cli.options import state

    st = state(ctx)
    st.target()  # a bad profile or config file is a usage error, before the screen opens
    AetherApp(server=st.server, token=st.token, profile=st.profile,
              session_id=session or None).run()


def main() -> None:  # pragma: no cover - `python -m tui.app`: the daemon from the environment
    AetherApp().run()


if __name__ == "__main__":  # pragma: no cover
    main()
