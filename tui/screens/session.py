"""One session: file tree and viewer, timeline of checkpoints and commits
(restore, diff), changes since base, and the live bus/events panes."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, TabbedContent, TabPane, Tree

from aether import pb
from tui import format as fmt
from tui.data import TimelineEntry
from tui.dialogs import ConfirmDialog, PromptDialog
from tui.tasks import task
from tui.widgets.live import LivePanes
from tui.widgets.tree import Entry, LazyTree
from tui.widgets.viewer import VIEW_LIMIT, FileViewer

TABS = ("files", "timeline", "changes", "live")


class SessionScreen(Screen):
    """A session's files, states, changes and live activity."""

    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("1", "tab('files')", "Files", show=False),
        Binding("2", "tab('timeline')", "Timeline", show=False),
        Binding("3", "tab('changes')", "Changes", show=False),
        Binding("4", "tab('live')", "Live", show=False),
        Binding("d", "diff", "Diff"),
        Binding("r", "restore", "Restore"),
        Binding("c", "checkpoint", "Checkpoint"),
        Binding("v", "review", "Review"),
        Binding("k", "cache", "Cache"),
        Binding("p", "publish", "Publish", show=False),
        Binding("R", "refresh", "Refresh", show=False),
    ]

    def __init__(self, session_id: str) -> None:
        super().__init__()
        self.session_id = session_id
        self.session: pb.Session | None = None
        self.timeline: list[TimelineEntry] = []
        self.changes: list[pb.Change] = []
        self.timeline_loaded = False
        self.changes_loaded = False

    def compose(self) -> ComposeResult:
        yield Header()
        with TabbedContent(initial="files", id="tabs"):
            with TabPane("1 Files", id="files"), Horizontal():
                yield LazyTree(self.session_id, id="tree")
                yield FileViewer(id="viewer")
            with TabPane("2 Timeline", id="timeline"):
                yield DataTable(id="timeline-table", cursor_type="row", zebra_stripes=True)
            with TabPane("3 Changes", id="changes"):
                yield DataTable(id="changes-table", cursor_type="row", zebra_stripes=True)
            with TabPane("4 Live", id="live"):
                yield LivePanes(self.session_id, id="live-panes")
        yield Footer(compact=True)

    # -- typed accessors

    @property
    def file_tree(self) -> LazyTree:
        return self.query_one("#tree", LazyTree)

    @property
    def viewer(self) -> FileViewer:
        return self.query_one("#viewer", FileViewer)

    @property
    def timeline_table(self) -> DataTable:
        return self.query_one("#timeline-table", DataTable)

    @property
    def changes_table(self) -> DataTable:
        return self.query_one("#changes-table", DataTable)

    @property
    def live(self) -> LivePanes:
        return self.query_one("#live-panes", LivePanes)

    @property
    def tabs(self) -> TabbedContent:
        return self.query_one("#tabs", TabbedContent)

    def on_mount(self) -> None:
        self.file_tree.show_root = False
        self.timeline_table.add_columns("Kind", "Id", "Message", "When", "Files")
        self.changes_table.add_columns("", "Path", "Size")
        self.file_tree.focus()
        self.load_session()
        self.load_states()

    # -- loading

    @task(exclusive=True, group="session")
    async def load_session(self) -> None:
        backend = await self.app.backend()  # type: ignore[attr-defined]
        self.session = s = await backend.session(self.session_id)
        display = self.app.display_opts  # type: ignore[attr-defined]
        self.title = s.name or display.short_id(s.id)
        self.sub_title = (f"{display.short_id(s.id)} · {fmt.state(s.state)} · "
                          f"{s.file_count} files · {fmt.size(s.total_bytes)}")

    @task(exclusive=True, group="states")
    async def load_states(self) -> None:
        backend = await self.app.backend()  # type: ignore[attr-defined]
        self.timeline = await backend.timeline(self.session_id)
        self.changes = await backend.changes(self.session_id)
        self._fill_timeline()
        self._fill_changes()

    def _fill_timeline(self) -> None:
        display = self.app.display_opts  # type: ignore[attr-defined]
        table = self.timeline_table
        table.clear()
        for e in self.timeline:
            table.add_row(Text(e.kind, style="cyan" if e.kind == "checkpoint" else "green"),
                          display.short_id(e.id), e.message, display.time(e.time),
                          str(e.files), key=e.id)
        table.add_row(Text("base", style="dim"), "base",
                      Text("created from", style="dim"), "", "",
                      key="base")
        self.timeline_loaded = True

    def _fill_changes(self) -> None:
        table = self.changes_table
        table.clear()
        for change in self.changes:
            mark, style = fmt.change_mark(change.kind)
            size = change.new_size if change.kind != pb.ChangeKind.DELETED else change.old_size
            table.add_row(Text(mark, style=style), change.path, fmt.size(size), key=change.path)
        if not self.changes:
            table.add_row("", Text("no changes since base", style="dim"), "")
        self.changes_loaded = True

    @on(Tree.NodeSelected, "#tree")
    def _node_selected(self, event: Tree.NodeSelected[Entry]) -> None:
        entry = event.node.data
        if entry is not None and not entry.is_dir:
            self.open_file(entry.path)

    @task(exclusive=True, group="file")
    async def open_file(self, path: str) -> None:
        backend = await self.app.backend()  # type: ignore[attr-defined]
        got = await backend.read(self.session_id, path, VIEW_LIMIT)
        annotations = await backend.annotations(self.session_id, path)
        self.viewer.show(path, bytes(got.data), got.size, annotations)

    @on(DataTable.RowSelected, "#changes-table")
    def _change_selected(self, event: DataTable.RowSelected) -> None:
        path = event.row_key.value
        if path:
            self._open_diff(from_="base", path=str(path))

    @on(DataTable.RowSelected, "#timeline-table")
    def _state_selected(self, event: DataTable.RowSelected) -> None:
        self.action_diff()

    # -- actions

    def selected_state(self) -> str:
        table = self.timeline_table
        if not table.row_count:
            return ""
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def action_back(self) -> None:
        self.app.show_sessions()  # type: ignore[attr-defined]

    def action_tab(self, tab: str) -> None:
        # Focus moves first: TabbedContent shows the pane holding the focus.
        {"timeline": self.timeline_table, "changes": self.changes_table,
         "live": self.live.bus_log}.get(tab, self.file_tree).focus()
        self.tabs.active = tab

    def action_refresh(self) -> None:
        self.load_session()
        self.load_states()
        self.file_tree.reload()

    def action_publish(self) -> None:
        self.live.focus_publish()
        self.tabs.active = "live"

    def action_diff(self) -> None:
        """Working state against the selected timeline entry (base elsewhere)."""
        target = self.selected_state() if self.tabs.active == "timeline" else "base"
        self._open_diff(from_=target or "base")

    def _open_diff(self, from_: str, path: str = "") -> None:
        from tui.screens.diff import DiffScreen

        self.app.push_screen(DiffScreen(self.session_id, from_=from_, path=path))

    def action_review(self) -> None:
        from tui.screens.review import ReviewScreen

        self.app.push_screen(ReviewScreen(self.session_id))

    def action_cache(self) -> None:
        from tui.screens.cache import CacheScreen

        self.app.push_screen(CacheScreen(self.session_id))

    @task(group="ops")
    async def action_restore(self) -> None:
        if self.tabs.active != "timeline":
            self.action_tab("timeline")
            self.notify("Pick a checkpoint, commit or base, then press r again.")
            return
        target = self.selected_state()
        if not target:
            return
        display = self.app.display_opts  # type: ignore[attr-defined]
        ok = await self.app.push_screen_wait(ConfirmDialog(
            f"Restore the working state to {display.short_id(target)}? "
            "Changes not in a checkpoint are dropped.", yes="Restore"))
        if not ok:
            return
        backend = await self.app.backend()  # type: ignore[attr-defined]
        await backend.restore(self.session_id, target)
        self.notify(f"Restored to {display.short_id(target)}.")
        self.action_refresh()

    @task(group="ops")
    async def action_checkpoint(self) -> None:
        message = await self.app.push_screen_wait(PromptDialog(
            "Checkpoint message", placeholder="what this state is"))
        if message is None:
            return
        backend = await self.app.backend()  # type: ignore[attr-defined]
        ckp = await backend.checkpoint(self.session_id, message)
        display = self.app.display_opts  # type: ignore[attr-defined]
        self.notify(f"Checkpoint {display.short_id(ckp.id)} created.")
        self.load_states()
