"""The diff viewer: the working state against a checkpoint, a commit or the
base (which, for a fork, is the parent's state at the fork). One file at a
time, unified or side by side."""

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
from tui.dialogs import PromptDialog
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
                              "Binary files", "new file", "deleted file")):
            flush()
            if line.startswith(("Binary files", "old mode", "new mode")):
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
    """Per-file diff of two states (default: base -> working)."""

    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("s", "toggle_mode", "Side/unified"),
        Binding("n,right_square_bracket", "next_file", "Next"),
        Binding("p,left_square_bracket", "prev_file", "Previous"),
        Binding("t", "target", "Against…"),
    ]

    def __init__(self, session_id: str, from_: str = "base", to: str = "", path: str = "") -> None:
        super().__init__()
        self.session_id = session_id
        self.from_ = from_ or "base"
        self.to = to
        self.first_path = path
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

    def _title(self) -> None:
        display = self.app.display_opts  # type: ignore[attr-defined]
        what = "working" if not self.to else display.short_id(self.to)
        self.title = f"Diff {display.short_id(self.from_)} → {what}"
        mode = "side by side" if self.side else "unified"
        current = self.current if self.loaded else None
        stats = f" · {file_stats(current)}" if current is not None else ""
        self.sub_title = f"{len(self.files)} files · {mode}{stats}"

    @task(exclusive=True, group="diff")
    async def load(self) -> None:
        backend = await self.app.backend()  # type: ignore[attr-defined]
        resp = await backend.diff(self.session_id, from_=self.from_, to=self.to)
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

    @task(group="ops")
    async def action_target(self) -> None:
        target = await self.app.push_screen_wait(PromptDialog(
            "Compare the working state with (base, ckp_…, cmt_…)", value=self.from_))
        if not target:
            return
        self.from_ = target
        self.loaded = False
        self.load()
