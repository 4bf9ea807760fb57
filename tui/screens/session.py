"""One session: file tree and viewer, timeline of checkpoints and commits
(restore, diff), changes since base, and the live bus/events panes.

The screen follows the session's events (the stream the live events pane
already reads, not a second connection and no polling): a change made by
anyone shows in the open tree, viewer, changes, timeline and header. Events
are gathered and applied at most every `INTERVAL` seconds, so a flood of
writes costs a few re-listings, not one per event.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, TabbedContent, TabPane, Tree

from aether import pb
from tui import format as fmt
from tui.data import Origin, TimelineEntry
from tui.dialogs import AnnotateDialog, ConfirmDialog, PromptDialog
from tui.tasks import report, task
from tui.widgets.live import FollowLog, LivePanes
from tui.widgets.table import Table, selected_key
from tui.widgets.tree import Entry, LazyTree
from tui.widgets.viewer import VIEW_LIMIT, FileViewer

TABS = ("files", "timeline", "changes", "live")

SETTLE = 0.05  # seconds a burst of events is given to arrive before it is applied
INTERVAL = 0.25  # at most one refresh per this many seconds

# What each event type changes on this screen (event types: aetherd/services/events.py).
TREE_EVENTS = frozenset({
    "file.written", "file.deleted", "file.patched", "dir.created", "dir.removed",
    "path.renamed", "path.copied", "symlink.created", "path.attributes_changed",
    "import.completed", "session.restored"})
TIMELINE_EVENTS = frozenset({
    "checkpoint.created", "checkpoint.deleted", "commit.created", "session.restored"})
SESSION_EVENTS = TREE_EVENTS | {"session.updated", "session.archived"}
ANNOTATION_EVENTS = frozenset({"annotation.created", "annotation.deleted"})


def under(path: str, top: str) -> bool:
    return not top or path == top or path.startswith(top + "/")


@dataclass
class Pending:
    """What the events since the last refresh changed."""

    paths: set[str] = field(default_factory=set)  # changed paths
    subtrees: set[str] = field(default_factory=set)  # changed anywhere below ("": all)
    annotated: set[str] = field(default_factory=set)  # files whose annotations changed
    timeline: bool = False
    session: bool = False

    def note(self, ev: pb.Event) -> bool:
        """Record one event; False when it changes nothing shown here."""
        kind = ev.type
        if kind in TREE_EVENTS:
            if kind == "session.restored" or not ev.path:
                self.subtrees.add("")
            elif kind in ("import.completed", "path.copied"):
                self.subtrees.add(ev.path)
                self.paths.add(ev.path)
            else:
                self.paths.add(ev.path)
                if kind == "path.renamed" and ev.attributes.get("from_path"):
                    self.paths.add(ev.attributes["from_path"])
        if kind in ANNOTATION_EVENTS:
            self.annotated.add(ev.path)
        self.timeline |= kind in TIMELINE_EVENTS
        self.session |= kind in SESSION_EVENTS
        return kind in SESSION_EVENTS or kind in TIMELINE_EVENTS or kind in ANNOTATION_EVENTS

    @property
    def files(self) -> bool:
        return bool(self.paths or self.subtrees)

    def touches(self, path: str) -> bool:
        return (path in self.paths or path in self.annotated
                or any(under(path, top) for top in self.subtrees))


class SessionScreen(Screen):
    """A session's files, states, changes and live activity."""

    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("1", "tab('files')", "Files", show=False),
        Binding("2", "tab('timeline')", "Timeline", show=False),
        Binding("3", "tab('changes')", "Changes", show=False),
        Binding("4", "tab('live')", "Live", show=False),
        Binding("d", "diff", "Diff"),
        Binding("D", "compare", "Compare two states…", show=False),
        Binding("f", "diff_parent", "Diff vs fork parent / base", show=False),
        Binding("r", "restore", "Restore"),
        Binding("c", "checkpoint", "Checkpoint"),
        Binding("v", "review", "Review"),
        Binding("a", "annotate", "Annotate line…", show=False),
        Binding("C", "comment", "Comment on the session…", show=False),
        Binding("k", "cache", "Cache"),
        Binding("p", "publish", "Publish", show=False),
        Binding("R", "refresh", "Refresh", show=False),
    ]

    def __init__(self, session_id: str) -> None:
        super().__init__()
        self.session_id = session_id
        self.session: pb.Session | None = None
        self.origin: Origin | None = None
        self.timeline: list[TimelineEntry] = []
        self.changes: list[pb.Change] = []
        self.timeline_loaded = False
        self.changes_loaded = False
        self.pending = Pending()
        # Events up to this cursor happened before the screen read the session
        # (None until known): the events pane replays them, this screen skips
        # them rather than re-list once per old event.
        self.events_after: int | None = None
        self._early: list[pb.Event] = []
        self._wake = asyncio.Event()
        self.live_refreshes = 0  # refreshes applied from events (tests read it)

    def compose(self) -> ComposeResult:
        yield Header()
        with TabbedContent(initial="files", id="tabs"):
            with TabPane("1 Files", id="files"), Horizontal():
                yield LazyTree(self.session_id, id="tree")
                yield FileViewer(id="viewer")
            with TabPane("2 Timeline", id="timeline"):
                yield Table(id="timeline-table", cursor_type="row", zebra_stripes=True)
            with TabPane("3 Changes", id="changes"):
                yield Table(id="changes-table", cursor_type="row", zebra_stripes=True)
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
        self._follow_changes()  # reads the session and its states once it knows the cursor

    # -- loading

    @task(exclusive=True, group="session")
    async def load_session(self) -> None:
        await self._load_session()

    async def _load_session(self) -> None:
        backend = await self.app.backend()  # type: ignore[attr-defined]
        s = await backend.session(self.session_id)
        if self.origin is None or self.origin.kind != s.source_kind:
            self.origin = await backend.origin(s)
            if self.timeline_loaded:
                self._fill_timeline()
        self.session = s
        display = self.app.display_opts  # type: ignore[attr-defined]
        self.title = s.name or display.short_id(s.id)
        self.sub_title = (f"{display.short_id(s.id)} · {fmt.state(s.state)} · "
                          f"{s.file_count} files · {fmt.size(s.total_bytes)}")

    @task(exclusive=True, group="states")
    async def load_states(self) -> None:
        await asyncio.gather(self._load_timeline(force=True), self._load_changes(force=True))

    async def _load_timeline(self, force: bool = False) -> None:
        backend = await self.app.backend()  # type: ignore[attr-defined]
        timeline = await backend.timeline(self.session_id)
        if force or timeline != self.timeline:
            self.timeline = timeline
            self._fill_timeline()

    async def _load_changes(self, force: bool = False) -> None:
        backend = await self.app.backend()  # type: ignore[attr-defined]
        changes = await backend.changes(self.session_id)
        if force or changes != self.changes:
            self.changes = changes
            self._fill_changes()

    def _fill_timeline(self) -> None:
        display = self.app.display_opts  # type: ignore[attr-defined]
        table = self.timeline_table
        keep = self.selected_state()
        table.clear()
        for e in self.timeline:
            table.add_row(Text(e.kind, style="cyan" if e.kind == "checkpoint" else "green"),
                          display.short_id(e.id), e.message, display.time(e.time),
                          str(e.files), key=e.id)
        table.add_row(*self._base_row(), "", "", key="base")
        if keep in table.rows:
            table.move_cursor(row=table.get_row_index(keep))
        self.timeline_loaded = True

    def _base_row(self) -> tuple[Text, str, Text]:
        """Kind, id and message of the base: for a fork, its parent as forked."""
        origin = self.origin
        if origin is not None and origin.is_fork:
            display = self.app.display_opts  # type: ignore[attr-defined]
            parent = (origin.parent.name or display.short_id(origin.parent.id)
                      if origin.parent else f"{display.short_id(origin.ref)} (deleted)")
            return (Text("fork", style="magenta"), "base",
                    Text(f"parent {parent}, as forked", style="dim"))
        what = f"created from {origin.kind}" if origin and origin.kind else "created from"
        return Text("base", style="dim"), "base", Text(what, style="dim")

    def _fill_changes(self) -> None:
        table = self.changes_table
        keep = selected_key(table)
        table.clear()
        for change in self.changes:
            mark, style = fmt.change_mark(change.kind)
            size = change.new_size if change.kind != pb.ChangeKind.DELETED else change.old_size
            table.add_row(Text(mark, style=style), change.path, fmt.size(size), key=change.path)
        if not self.changes:
            table.add_row("", Text("no changes since base", style="dim"), "")
        if keep in table.rows:
            table.move_cursor(row=table.get_row_index(keep))
        self.changes_loaded = True

    # -- following the session's events

    def on_follow_log_received(self, message: FollowLog.Received) -> None:
        message.stop()
        if message.kind == "events":
            self._note(message.item)

    def _note(self, event: pb.Event) -> None:
        if self.events_after is None:
            self._early.append(event)
        elif event.cursor > self.events_after and self.pending.note(event):
            self._wake.set()

    def expect(self, **what) -> None:
        """Refresh as if an event said so (after an action of our own, in case the
        events stream is down)."""
        for name, value in what.items():
            current = getattr(self.pending, name)
            if isinstance(current, set):
                current.update(value)
            else:
                setattr(self.pending, name, value)
        self._wake.set()

    @work(exclusive=True, group="follow-changes", exit_on_error=False)
    async def _follow_changes(self) -> None:
        try:
            backend = await self.app.backend()  # type: ignore[attr-defined]
            self.events_after = await backend.events_cursor(self.session_id)
        except Exception:  # noqa: BLE001 - replaying the history is slower, not wrong
            self.events_after = 0
        # Read after the cursor, these include every event up to it. The tree's
        # root was listed at mount, maybe before the cursor: it is listed once
        # more, so that nothing written in between is missed.
        self.load_session()
        self.load_states()
        early, self._early = self._early, []
        for event in early:
            self._note(event)
        try:
            await self.file_tree.refresh_paths((), subtrees=[""])
        except Exception as exc:  # noqa: BLE001 - shown; following goes on
            report(self, exc)
        while True:
            await self._wake.wait()
            await asyncio.sleep(SETTLE)
            self._wake.clear()
            pending, self.pending = self.pending, Pending()
            started = time.monotonic()
            await self._apply(pending)
            self.live_refreshes += 1
            await asyncio.sleep(max(0.0, INTERVAL - (time.monotonic() - started)))

    async def _apply(self, pending: Pending) -> None:
        jobs = []
        if pending.files:
            jobs += [self.file_tree.refresh_paths(pending.paths, pending.subtrees),
                     self._load_changes()]
        if pending.session:
            jobs.append(self._load_session())
        if pending.timeline:
            jobs.append(self._load_timeline())
        if self.viewer.path and pending.touches(self.viewer.path):
            jobs.append(self._reload_viewer())
        results = await asyncio.gather(*jobs, return_exceptions=True)
        errors = [r for r in results if isinstance(r, Exception)]
        if errors:
            report(self, errors[0])  # one notification per refresh, not one per part

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

    async def _reload_viewer(self) -> None:
        """The open file again, where it was scrolled to (or a note that it is gone)."""
        from aether.errors import NotFound

        path = self.viewer.path
        backend = await self.app.backend()  # type: ignore[attr-defined]
        try:
            got = await backend.read(self.session_id, path, VIEW_LIMIT)
            annotations = await backend.annotations(self.session_id, path)
        except NotFound:
            if self.viewer.path == path:
                self.viewer.show_gone(path)
            return
        if self.viewer.path == path:
            self.viewer.show(path, bytes(got.data), got.size, annotations, keep_scroll=True)

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
        return selected_key(self.timeline_table)

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

    def action_diff_parent(self) -> None:
        """The base is the fork parent as forked (for a session that is no fork,
        what it was created from)."""
        self._open_diff(from_="base")

    def action_compare(self) -> None:
        target = self.selected_state() if self.tabs.active == "timeline" else "base"
        self._open_diff(from_=target or "base", ask=True)

    def _open_diff(self, from_: str, path: str = "", ask: bool = False) -> None:
        from tui.screens.diff import DiffScreen

        self.app.push_screen(DiffScreen(self.session_id, from_=from_, path=path, ask=ask))

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
        self.expect(subtrees={""}, timeline=True, session=True)

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

    @task(group="ops")
    async def action_annotate(self) -> None:
        viewer = self.viewer
        if viewer.shown is None:
            self.notify("Open a file first (enter on it in the tree), then pick a line.")
            return
        if not viewer.last_line:
            self.notify("A binary file has no lines to annotate.")
            return
        path = viewer.path
        new = await self.app.push_screen_wait(AnnotateDialog(
            path, viewer.cursor_line or 1, viewer.last_line))
        if new is None:
            return
        backend = await self.app.backend()  # type: ignore[attr-defined]
        await backend.annotate(self.session_id, path, new)
        where = (f"L{new.start_line}" if new.start_line == new.end_line
                 else f"L{new.start_line}-{new.end_line}")
        self.notify(f"Annotated {path} {where}.")
        self.expect(annotated={path})

    @task(group="ops")
    async def action_comment(self) -> None:
        from tui.screens.review import comment_on_session

        await comment_on_session(self, self.session_id)

