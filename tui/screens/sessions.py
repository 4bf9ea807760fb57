"""The first screen: every session, filtered as you type; create, fork,
archive, delete, open."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input

from aether import pb
from tui import format as fmt
from tui.dialogs import ConfirmDialog, CreateSessionDialog, PromptDialog
from tui.tasks import task
from tui.widgets.table import Table, selected_key

COLUMNS = (("Name", 22), ("State", 8), ("Labels", 16), ("Files", 6), ("Size", 7),
           ("Activity", 8))


def matches(session: pb.Session, needle: str) -> bool:
    if not needle:
        return True
    hay = " ".join([session.name, session.id, fmt.state(session.state),
                    fmt.labels(session.labels), *session.tags]).lower()
    return all(word in hay for word in needle.lower().split())


class SessionsScreen(Screen):
    """Sessions, newest activity first."""

    TITLE = "Sessions"
    BINDINGS = [
        Binding("n", "create", "New"),
        Binding("o", "open", "Open", show=False),
        Binding("f", "fork", "Fork"),
        Binding("a", "archive", "Archive"),
        Binding("x,delete", "delete", "Delete"),
        Binding("slash", "filter", "Filter"),
        Binding("r", "refresh", "Refresh", show=False),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.sessions: list[pb.Session] = []
        self.loaded = False  # the first listing arrived (tests wait on it)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="/ filter: name, label, state, id", id="filter")
        yield Table(id="sessions", cursor_type="row", zebra_stripes=True)
        yield Footer(compact=True)

    @property
    def table(self) -> DataTable:
        return self.query_one("#sessions", DataTable)

    @property
    def filter_input(self) -> Input:
        return self.query_one("#filter", Input)

    def on_mount(self) -> None:
        for name, width in COLUMNS:
            self.table.add_column(name, width=width, key=name.lower())
        self.table.focus()
        self.refresh_sessions()

    def on_screen_resume(self) -> None:
        if self.loaded:
            self.refresh_sessions()

    @task(exclusive=True, group="sessions")
    async def refresh_sessions(self, select: str = "") -> None:
        backend = await self.app.backend()  # type: ignore[attr-defined]
        sessions = await backend.sessions()
        sessions.sort(key=lambda s: (s.update_time is not None, s.update_time, s.name),
                      reverse=True)
        self.sessions = sessions
        self.loaded = True
        self._fill(select)

    def _fill(self, select: str = "") -> None:
        table = self.table
        keep = select or self.selected_id()
        table.clear()
        display = self.app.display_opts  # type: ignore[attr-defined]
        needle = self.filter_input.value.strip()
        for s in self.sessions:
            if not matches(s, needle):
                continue
            state = fmt.state(s.state)
            table.add_row(
                Text(s.name or display.short_id(s.id)),
                Text(state, style="green" if state == "active" else "dim"),
                fmt.labels(s.labels),
                Text(str(s.file_count), justify="right"),
                Text(fmt.size(s.total_bytes), justify="right"),
                display.ago(s.update_time),
                key=s.id,
            )
        if keep and keep in table.rows:
            table.move_cursor(row=table.get_row_index(keep))

    def selected_id(self) -> str:
        return selected_key(self.table)

    def selected(self) -> pb.Session | None:
        sid = self.selected_id()
        return next((s for s in self.sessions if s.id == sid), None)

    @on(Input.Changed, "#filter")
    def _filter_changed(self) -> None:
        self._fill()

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        self.table.focus()

    @on(DataTable.RowSelected, "#sessions")
    def _row_selected(self) -> None:
        self.action_open()

    def action_filter(self) -> None:
        self.filter_input.focus()

    def action_clear_filter(self) -> None:
        self.filter_input.value = ""
        self.table.focus()

    def action_refresh(self) -> None:
        self.refresh_sessions()

    def action_open(self) -> None:
        session = self.selected()
        if session is None:
            return
        from tui.screens.session import SessionScreen

        self.app.push_screen(SessionScreen(session.id))

    @task(group="ops")
    async def action_create(self) -> None:
        backend = await self.app.backend()  # type: ignore[attr-defined]
        templates = [t.name for t in await backend.templates()]
        new = await self.app.push_screen_wait(CreateSessionDialog(templates))
        if new is None:
            return
        created = await backend.create_session(new)
        self.notify(f"Created {created.name or created.id}: {created.file_count} files.")
        self.refresh_sessions(select=created.id)

    @task(group="ops")
    async def action_fork(self) -> None:
        session = self.selected()
        if session is None:
            return
        name = await self.app.push_screen_wait(PromptDialog(
            f"Fork {session.name or session.id} as", value=f"{session.name}-fork"))
        if name is None:
            return
        backend = await self.app.backend()  # type: ignore[attr-defined]
        fork = await backend.fork(session.id, name=name)
        self.notify(f"Forked {session.name or session.id} -> {fork.name}.")
        self.refresh_sessions(select=fork.id)

    @task(group="ops")
    async def action_archive(self) -> None:
        session = self.selected()
        if session is None:
            return
        ok = await self.app.push_screen_wait(ConfirmDialog(
            f"Archive {session.name or session.id}? It becomes read-only for good.",
            yes="Archive"))
        if not ok:
            return
        backend = await self.app.backend()  # type: ignore[attr-defined]
        await backend.archive(session.id)
        self.notify(f"Archived {session.name or session.id}.")
        self.refresh_sessions(select=session.id)

    @task(group="ops")
    async def action_delete(self) -> None:
        session = self.selected()
        if session is None:
            return
        ok = await self.app.push_screen_wait(ConfirmDialog(
            f"Delete {session.name or session.id}, its working state and checkpoints? "
            "Its commits stay.", yes="Delete"))
        if not ok:
            return
        backend = await self.app.backend()  # type: ignore[attr-defined]
        await backend.delete(session.id)
        self.notify(f"Deleted {session.name or session.id}.")
        self.refresh_sessions()
