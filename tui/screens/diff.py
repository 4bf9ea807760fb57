"""The diff viewer: any two states of a session (the working state, the base,
a checkpoint, a commit), by default the base against the working state. For a
fork the base is the parent's state at the fork, so that default reads "what
changed since the fork". One file at a time, unified or side by side."""

from __future__ import annotations

import re

from rich.console import RenderableType
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, OptionList, Static
from textual.widgets.option_list import Option

from aether import pb
from tui import format as fmt
from tui.data import Origin, TimelineEntry
from tui.dialogs import CompareDialog
from tui.tasks import task
from tui.widgets.viewer import syntax_theme

HUNK = re.compile(r"^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@")


def side_by_side(unified: str) -> Table:
    """A unified diff as two columns: old on the left, new on the right;
    deletions and additions of one block are paired line by line."""
    table = Table.grid(padding=(0, 1), expand=True)
    table.add_column(justify="right", style="dim", no_wrap=True)
    table.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
    table.add_column(justify="right", style="dim", no_wrap=True)
    table.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
    old_no = new_no = 0
    minus: list[tuple[int, str]] = []
    plus: list[tuple[int, str]] = []

    def flush() -> None:
        for i in range(max(len(minus), len(plus))):
            left = minus[i] if i < len(minus) else None
            right = plus[i] if i < len(plus) else None
            table.add_row(
                str(left[0]) if left else "", Text(left[1], style="red") if left else "",
                str(right[0]) if right else "", Text(right[1], style="green") if right else "")
        minus.clear()
        plus.clear()

    for line in unified.splitlines():
        m = HUNK.match(line)
        if m:
            flush()
            old_no, new_no = int(m.group(1)), int(m.group(2))
            table.add_row("", Text(line, style="cyan"), "", "")
        elif line.startswith(("diff ", "--- ", "+++ ", "index ", "old mode", "new mode",
                              "Binary files", "new file", "deleted file", "xattr ")):
            flush()
            if line.startswith(("Binary files", "old mode", "new mode", "xattr ")):
                table.add_row("", Text(line, style="yellow"), "", "")
        elif line.startswith("-"):
            minus.append((old_no, line[1:]))
            old_no += 1
        elif line.startswith("+"):
            plus.append((new_no, line[1:]))
            new_no += 1
        elif line.startswith("\\"):
            continue
        else:
            flush()
            text = line[1:] if line.startswith(" ") else line
            table.add_row(str(old_no), text, str(new_no), text)
            old_no += 1
            new_no += 1
    flush()
    return table


def file_label(f: pb.FileDiff) -> Text:
    change = f.change or pb.Change()
    mark, style = fmt.change_mark(change.kind)
    label = Text(f"{mark} ", style=style, no_wrap=True, overflow="ellipsis")
    label.append(change.path)
    return label


def file_stats(f: pb.FileDiff) -> str:
    if f.binary:
        return "binary"
    return f"+{f.lines_added} -{f.lines_deleted}"


class DiffScreen(Screen):
    """Per-file diff of two states (default: base -> working). For a fork, the
    base is its parent as forked, so the default diff is "what this fork did"."""

    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("s", "toggle_mode", "Side/unified"),
        Binding("n,right_square_bracket", "next_file", "Next"),
        Binding("p,left_square_bracket", "prev_file", "Previous"),
        Binding("t", "compare", "Compare…"),
        Binding("f", "against_base", "Working vs fork parent / base", show=False),
        Binding("w", "swap", "Swap from and to", show=False),
    ]

    def __init__(self, session_id: str, from_: str = "base", to: str = "", path: str = "",
                 ask: bool = False) -> None:
        """States as in the API ("" or "working", "base", ckp_…, cmt_…); `ask`
        opens the compare dialog first."""
        super().__init__()
        self.session_id = session_id
        self.from_ = working(from_ or "base")
        self.to = working(to)
        self.first_path = path
        self.ask = ask
        self.origin: Origin | None = None
        self.files: list[pb.FileDiff] = []
        self.side = False
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            yield OptionList(id="diff-files")
            with VerticalScroll(id="diff-view"):
                yield Static(Text("Loading…", style="dim"), id="diff-content")
        yield Footer(compact=True)

    @property
    def file_list(self) -> OptionList:
        return self.query_one("#diff-files", OptionList)

    @property
    def content(self) -> Static:
        return self.query_one("#diff-content", Static)

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda _t: self._show())
        self.load()
        if self.ask:
            self.action_compare()

    @property
    def is_fork(self) -> bool:
        return self.origin is not None and self.origin.is_fork

    def _title(self) -> None:
        display = self.app.display_opts  # type: ignore[attr-defined]
        self.title = (f"Diff {fmt.state_name(self.from_, display, self.is_fork)} → "
                      f"{fmt.state_name(self.to, display, self.is_fork)}")
        mode = "side by side" if self.side else "unified"
        current = self.current if self.loaded else None
        stats = f" · {file_stats(current)}" if current is not None else ""
        self.sub_title = f"{len(self.files)} files · {mode}{stats}"

    @task(exclusive=True, group="diff")
    async def load(self) -> None:
        backend = await self.app.backend()  # type: ignore[attr-defined]
        if self.origin is None:
            self.origin = await backend.origin(await backend.session(self.session_id))
        # An empty `from` means "base" to the API: the working state is named.
        resp = await backend.diff(self.session_id, from_=self.from_ or "working", to=self.to)
        self.files = list(resp.files)
        self.file_list.clear_options()
        self.file_list.add_options(
            [Option(file_label(f), id=str(i)) for i, f in enumerate(self.files)])
        index = 0
        for i, f in enumerate(self.files):
            if f.change and f.change.path == self.first_path:
                index = i
        self.loaded = True
        self._title()
        if self.files:
            self.file_list.highlighted = index
            self.file_list.focus()
        self._show()

    @property
    def current(self) -> pb.FileDiff | None:
        index = self.file_list.highlighted
        if index is None or not (0 <= index < len(self.files)):
            return None
        return self.files[index]

    def render_current(self) -> RenderableType:
        f = self.current
        if f is None:
            return Text("No differences.", style="dim")
        if not f.unified.strip():
            return Text(f"{(f.change or pb.Change()).path}: no textual difference", style="dim")
        if self.side:
            return side_by_side(f.unified)
        return Syntax(f.unified, "diff", theme=syntax_theme(self.app.current_theme.dark),
                      background_color="default", word_wrap=False)

    def _show(self) -> None:
        if self.loaded:
            # side by side fits the view; unified keeps long lines and scrolls
            self.content.styles.width = "100%" if self.side else "auto"
            self.content.update(self.render_current())
            self._title()
            self.query_one("#diff-view", VerticalScroll).scroll_home(animate=False)

    @on(OptionList.OptionHighlighted, "#diff-files")
    def _highlighted(self) -> None:
        self._show()

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_toggle_mode(self) -> None:
        self.side = not self.side
        self._title()
        self._show()

    def _move(self, step: int) -> None:
        if not self.files:
            return
        index = self.file_list.highlighted or 0
        self.file_list.highlighted = (index + step) % len(self.files)

    def action_next_file(self) -> None:
        self._move(1)

    def action_prev_file(self) -> None:
        self._move(-1)

    def state_choices(self, timeline: list[TimelineEntry]) -> list[tuple[str, str]]:
        """(label, value) of every state of the session, for the compare dialog."""
        display = self.app.display_opts  # type: ignore[attr-defined]
        origin = self.origin
        if origin is not None and origin.is_fork:
            parent = (origin.parent.name or display.short_id(origin.parent.id)
                      if origin.parent else f"{display.short_id(origin.ref)}, deleted")
            base = f"fork parent ({parent}) as forked"
        else:
            base = f"base (created from {origin.kind})" if origin and origin.kind else "base"
        out = [("working state", "working"), (base, "base")]
        for e in timeline:
            out.append((f"{e.kind} {display.short_id(e.id)} {e.message}".strip(), e.id))
        return out

    def _retarget(self, from_: str, to: str) -> None:
        current = self.current if self.loaded else None
        if current is not None and current.change:
            self.first_path = current.change.path  # stay on the file being read
        self.from_, self.to = working(from_), working(to)
        self.loaded = False
        self.load()

    @task(group="ops")
    async def action_compare(self) -> None:
        backend = await self.app.backend()  # type: ignore[attr-defined]
        if self.origin is None:
            self.origin = await backend.origin(await backend.session(self.session_id))
        timeline = await backend.timeline(self.session_id)
        picked = await self.app.push_screen_wait(CompareDialog(
            self.state_choices(timeline), self.from_ or "working", self.to or "working"))
        if picked is not None:
            self._retarget(*picked)

    def action_against_base(self) -> None:
        self._retarget("base", "")

    def action_swap(self) -> None:
        self._retarget(self.to, self.from_)


def working(state: str) -> str:
    """The API's names for the working state ("working", "HEAD") as ""."""
    return "" if state in ("working", "HEAD") else state
