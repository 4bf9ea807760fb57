"""Review of a session: the approvals queue (request, approve, reject with a
reason, commit), the session's annotations and its comments (write one, or
reply to the highlighted one). Annotations also show in the file viewer,
under the lines they are anchored to, and are written from there
(`tui.widgets.viewer`, the session screen's `a`)."""

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
from tui.widgets.table import Table, selected_key

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
        Binding("c", "comment", "Comment"),
        Binding("R", "reply", "Reply to the comment", show=False),
        Binding("r", "refresh", "Refresh", show=False),
    ]

    def __init__(self, session_id: str) -> None:
        super().__init__()
        self.session_id = session_id
        self.approvals: list[pb.Approval] = []
        self.annotations: list[pb.Annotation] = []
        self.comments: list[pb.Comment] = []
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Label("Approvals", classes="pane-title")
        yield Table(id="approvals", cursor_type="row", zebra_stripes=True)
        yield Label("Annotations", classes="pane-title")
        yield Table(id="annotations", cursor_type="row", zebra_stripes=True)
        yield Label("Comments", classes="pane-title")
        yield Table(id="comments", cursor_type="row", zebra_stripes=True)
        yield Footer(compact=True)

    @property
    def approvals_table(self) -> DataTable:
        return self.query_one("#approvals", DataTable)

    @property
    def annotations_table(self) -> DataTable:
        return self.query_one("#annotations", DataTable)

    @property
    def comments_table(self) -> DataTable:
        return self.query_one("#comments", DataTable)

    def on_mount(self) -> None:
        self.approvals_table.add_columns("State", "Title", "Requester", "Reviewer", "Id", "When")
        self.annotations_table.add_columns("Path", "Lines", "Severity", "Note")
        self.comments_table.add_columns("Author", "On", "Comment", "When")
        self.approvals_table.focus()
        self.load()

    @task(exclusive=True, group="review")
    async def load(self) -> None:
        backend = await self.app.backend()  # type: ignore[attr-defined]
        session = await backend.session(self.session_id)
        self.sub_title = session.name
        self.approvals = await backend.approvals(self.session_id)
        self.annotations = await backend.annotations(self.session_id)
        self.comments = await backend.comments(self.session_id)
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
        self._fill_comments()
        self.loaded = True

    def _fill_comments(self) -> None:
        """Oldest first, each reply under the comment it answers."""
        display = self.app.display_opts  # type: ignore[attr-defined]
        table = self.comments_table
        keep = selected_key(table)
        table.clear()
        ids = {c.id for c in self.comments}
        replies: dict[str, list[pb.Comment]] = {}
        for c in self.comments:
            replies.setdefault(c.parent_id if c.parent_id in ids else "", []).append(c)

        def add(parent: str, depth: int) -> None:
            for c in replies.get(parent, []):
                body = Text("  " * depth + ("↳ " if depth else ""), style="dim")
                body.append(c.body.replace("\n", " ⏎ "))
                table.add_row(c.author or "-", c.path or "session", body,
                              display.ago(c.create_time), key=c.id)
                add(c.id, depth + 1)

        add("", 0)
        if keep in table.rows:
            table.move_cursor(row=table.get_row_index(keep))

    def selected_id(self) -> str:
        return selected_key(self.approvals_table)

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

    @task(group="ops")
    async def action_comment(self) -> None:
        if await comment_on_session(self, self.session_id):
            self.load()

    @task(group="ops")
    async def action_reply(self) -> None:
        parent_id = selected_key(self.comments_table)
        parent = next((c for c in self.comments if c.id == parent_id), None)
        if parent is None:
            self.notify("Highlight a comment (tab to the comments) to reply to it.")
            return
        body = await self.app.push_screen_wait(PromptDialog(
            f"Reply to {parent.author or 'the comment'}", required=True))
        if not body:
            return
        backend = await self.app.backend()  # type: ignore[attr-defined]
        await backend.comment(self.session_id, body, path=parent.path, parent_id=parent.id)
        self.notify("Replied.")
        self.load()


async def comment_on_session(screen: Screen, session_id: str) -> bool:
    """Ask for a comment on the session and post it; False when cancelled.
    (The session screen's `C` and the review screen's `c` both do this.)"""
    body = await screen.app.push_screen_wait(PromptDialog(
        "Comment on the session", placeholder="a note for everyone on it", required=True))
    if not body:
        return False
    backend = await screen.app.backend()  # type: ignore[attr-defined]
    await backend.comment(session_id, body)
    screen.notify("Commented.")
    return True
