"""Review of a session: the approvals queue (request, approve, reject with a
reason, commit) and the session's annotations. Annotations also show in the
file viewer, under the lines they are anchored to (`tui.widgets.viewer`)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Label

from aether import pb
from tui import format as fmt
from tui.dialogs import PromptDialog
from tui.tasks import task

STATE_STYLES = {"pending": "yellow", "approved": "green", "rejected": "red", "stale": "dim"}


class ReviewScreen(Screen):
    """Approvals (newest first) and annotations of one session."""

    TITLE = "Review"
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("n", "request", "Request approval"),
        Binding("a", "approve", "Approve"),
        Binding("x", "reject", "Reject"),
        Binding("m", "commit", "Commit"),
        Binding("r", "refresh", "Refresh", show=False),
    ]

    def __init__(self, session_id: str) -> None:
        super().__init__()
        self.session_id = session_id
        self.approvals: list[pb.Approval] = []
        self.annotations: list[pb.Annotation] = []
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Label("Approvals", classes="pane-title")
        yield DataTable(id="approvals", cursor_type="row", zebra_stripes=True)
        yield Label("Annotations", classes="pane-title")
        yield DataTable(id="annotations", cursor_type="row", zebra_stripes=True)
        yield Footer(compact=True)

    @property
    def approvals_table(self) -> DataTable:
        return self.query_one("#approvals", DataTable)

    @property
    def annotations_table(self) -> DataTable:
        return self.query_one("#annotations", DataTable)

    def on_mount(self) -> None:
        self.approvals_table.add_columns("State", "Title", "Requester", "Reviewer", "Id", "When")
        self.annotations_table.add_columns("Path", "Lines", "Severity", "Note")
        self.approvals_table.focus()
        self.load()

    @task(exclusive=True, group="review")
    async def load(self) -> None:
        backend = await self.app.backend()  # type: ignore[attr-defined]
        session = await backend.session(self.session_id)
        self.sub_title = session.name
        self.approvals = await backend.approvals(self.session_id)
        self.annotations = await backend.annotations(self.session_id)
        display = self.app.display_opts  # type: ignore[attr-defined]
        table = self.approvals_table
        keep = self.selected_id()
        table.clear()
        for a in self.approvals:
            state = fmt.approval_state(a.state)
            table.add_row(Text(state, style=STATE_STYLES.get(state, "")), a.title, a.requester,
                          a.reviewer, display.short_id(a.id), display.ago(a.create_time),
                          key=a.id)
        if keep and keep in table.rows:
            table.move_cursor(row=table.get_row_index(keep))
        notes = self.annotations_table
        notes.clear()
        for n in self.annotations:
            lines = (str(n.start_line) if n.start_line == n.end_line
                     else f"{n.start_line}-{n.end_line}")
            notes.add_row(n.path, lines, n.severity or "note", n.body, key=n.id)
        self.loaded = True

    def selected_id(self) -> str:
        table = self.approvals_table
        if not table.row_count:
            return ""
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_refresh(self) -> None:
        self.load()

    @task(group="ops")
    async def action_request(self) -> None:
        title = await self.app.push_screen_wait(PromptDialog(
            "Request approval of the current state", placeholder="title"))
        if title is None:
            return
        backend = await self.app.backend()  # type: ignore[attr-defined]
        await backend.request_approval(self.session_id, title)
        self.notify("Approval requested.")
        self.load()

    @task(group="ops")
    async def action_approve(self) -> None:
        approval_id = self.selected_id()
        if not approval_id:
            return
        reason = await self.app.push_screen_wait(PromptDialog(
            "Approve: a note (optional)", placeholder="looks good"))
        if reason is None:
            return
        backend = await self.app.backend()  # type: ignore[attr-defined]
        await backend.approve(self.session_id, approval_id, reason)
        self.notify("Approved.")
        self.load()

    @task(group="ops")
    async def action_reject(self) -> None:
        approval_id = self.selected_id()
        if not approval_id:
            return
        reason = await self.app.push_screen_wait(PromptDialog(
            "Reject: the reason", placeholder="why not", required=True))
        if not reason:
            return
        backend = await self.app.backend()  # type: ignore[attr-defined]
        await backend.reject(self.session_id, approval_id, reason)
        self.notify("Rejected.")
        self.load()

    @task(group="ops")
    async def action_commit(self) -> None:
        message = await self.app.push_screen_wait(PromptDialog(
            "Commit message", placeholder="what this result is", required=True))
        if not message:
            return
        backend = await self.app.backend()  # type: ignore[attr-defined]
        commit = await backend.commit(self.session_id, message)
        display = self.app.display_opts  # type: ignore[attr-defined]
        self.notify(f"Committed {display.short_id(commit.id)}.")
        self.load()
