"""The file viewer: syntax-highlighted content with review annotations shown
under the lines they are anchored to, and a line cursor to annotate from."""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import RenderableType
from rich.measure import Measurement
from rich.segment import Segment
from rich.syntax import Syntax
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from aether import pb

VIEW_LIMIT = 256 * 1024  # bytes shown of a file; the rest is cut off with a note
MAX_WIDTH = 1000  # columns a line is shown to
SEVERITY_STYLES = {"error": "bold red", "warning": "bold yellow", "info": "bold cyan"}


def is_binary(data: bytes) -> bool:
    if b"\0" in data[:8192]:
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start < len(data) - 4  # a cut in a multi-byte character is fine
    return False


def syntax_theme(dark: bool) -> str:
    return "monokai" if dark else "default"


@dataclass
class Part:
    """A piece of the viewer's content and the file lines of its rows: a code
    block's rows are lines `line`, `line`+1, ...; every row of a note is its
    anchor line; `line` 0 is no line (a binary file, a note on what is cut)."""

    renderable: RenderableType
    line: int = 0
    block: bool = False


def render_parts(
    path: str, data: bytes, size: int, annotations: list[pb.Annotation], dark: bool,
) -> list[Part]:
    """Code with line numbers; each annotation follows its last line."""
    if is_binary(data):
        return [Part(Text(f"{path}: binary file, {size} bytes", style="dim"))]
    code = data.decode("utf-8", errors="replace")
    lexer = Syntax.guess_lexer(path, code)
    theme = syntax_theme(dark)
    lines = line_count(code)
    notes: dict[int, list[pb.Annotation]] = {}
    for ann in sorted(annotations, key=lambda a: (a.end_line, a.start_line)):
        notes.setdefault(min(max(ann.end_line, 1), max(lines, 1)), []).append(ann)
    marked = {n for a in annotations for n in range(a.start_line, a.end_line + 1)}

    def block(start: int, end: int) -> Part:
        return Part(Syntax(code, lexer, theme=theme, line_numbers=True, line_range=(start, end),
                           highlight_lines=marked, background_color="default",
                           word_wrap=False), start, block=True)

    parts: list[Part] = []
    start = 1
    for end in sorted(notes):
        parts.append(block(start, end))
        for ann in notes[end]:
            style = SEVERITY_STYLES.get(ann.severity, "bold magenta")
            where = (f"L{ann.start_line}" if ann.start_line == ann.end_line
                     else f"L{ann.start_line}-{ann.end_line}")
            note = Text("    ▲ ", style=style)
            note.append(f"{where} {ann.severity or 'note'}", style=style)
            note.append(f" {ann.author}: " if ann.author else ": ", style="dim")
            note.append(ann.body.replace("\n", " ⏎ "))
            parts.append(Part(note, end))
        start = end + 1
    if start <= lines or not parts:
        parts.append(block(start, max(lines, start)))
    if size > len(data):
        parts.append(Part(Text(f"… {size - len(data)} more bytes not shown", style="dim")))
    return parts


def line_count(code: str) -> int:
    return code.count("\n") + (0 if code.endswith("\n") else 1)


class FileViewer(ScrollView, can_focus=True):
    """Shows one file (or a hint when none is chosen), with a line cursor: the
    line an annotation is written on.

    The content is rendered once per file (and theme) into rows, and the rows
    on screen are cut from those: moving the cursor repaints two rows instead
    of highlighting the file again."""

    COMPONENT_CLASSES = {"file-viewer--cursor"}
    DEFAULT_CSS = """
    FileViewer > .file-viewer--cursor { background: $accent 20%; }
    FileViewer:focus > .file-viewer--cursor { background: $accent 45%; }
    """
    BINDINGS = [
        Binding("up", "move(-1)", "Line up", show=False),
        Binding("down", "move(1)", "Line down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "move(-1000000000)", "First line", show=False),
        Binding("end", "move(1000000000)", "Last line", show=False),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.path = ""
        # (path, data, size, annotations) of the file shown; None for a message
        self.shown: tuple[str, bytes, int, list[pb.Annotation]] | None = None
        self._message: Text = Text("Select a file in the tree (enter).", style="dim")
        self._rows: list[Strip] = []
        self._row_lines: list[int] = []  # the file line of each row (0: none)
        self.cursor_row = 0

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._redraw())

    def on_resize(self) -> None:
        if not self._rows:
            self._redraw()

    @property
    def cursor_line(self) -> int:
        """The file line under the cursor (0 when no file is shown)."""
        if not (0 <= self.cursor_row < len(self._row_lines)):
            return 0
        return self._row_lines[self.cursor_row]

    @property
    def last_line(self) -> int:
        return max(self._row_lines, default=0)

    def show(self, path: str, data: bytes, size: int, annotations: list[pb.Annotation],
             keep_scroll: bool = False) -> None:
        """Show a file; `keep_scroll` for the same file changed (stay where you read)."""
        line = self.cursor_line if keep_scroll and path == self.path else 1
        self.path = path
        self.shown = (path, data, size, annotations)
        self._redraw()
        if keep_scroll:
            self.move_to_line(line, scroll=False)
        else:
            self.cursor_row = 0
            self.scroll_home(animate=False)
            self.move_to_line(1, scroll=False)

    def show_gone(self, path: str) -> None:
        """The open file was deleted or moved away."""
        self.shown = None
        self._message = Text(f"{path}: no longer in the working state", style="dim")
        self._redraw()

    def move_to_line(self, line: int, scroll: bool = True) -> None:
        """Put the cursor on the first row of a file line."""
        for row, at in enumerate(self._row_lines):
            if at >= line:
                self._set_cursor(row, scroll)
                return

    def _redraw(self) -> None:
        if not self.is_mounted:
            return
        dark = self.app.current_theme.dark
        parts = (render_parts(*self.shown, dark=dark) if self.shown is not None
                 else [Part(self._message)])
        console = self.app.console
        # measured on a wide canvas: long lines scroll sideways, not cut at the screen
        options = console.options.update(no_wrap=True, overflow="ignore").update_width(MAX_WIDTH)
        width = max([Measurement.get(console, options, p.renderable).maximum for p in parts]
                    + [self.scrollable_content_region.width, 1])
        options = options.update_width(width)
        rows: list[Strip] = []
        row_lines: list[int] = []
        for part in parts:
            lines = console.render_lines(part.renderable, options, pad=True)
            rows.extend(Strip(line, width) for line in lines)
            row_lines.extend(part.line + i if part.block else part.line
                             for i in range(len(lines)))
        self._rows, self._row_lines = rows, row_lines
        self.cursor_row = min(self.cursor_row, max(len(rows) - 1, 0))
        self.virtual_size = Size(width, len(rows))
        self.refresh()

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        row = scroll_y + y
        width = self.scrollable_content_region.width
        if row >= len(self._rows):
            return Strip.blank(width, self.rich_style)
        strip = self._rows[row].crop_extend(scroll_x, scroll_x + width, self.rich_style)
        if row == self.cursor_row and self.shown is not None and self._row_lines[row]:
            # over the tokens' own colours (a string's background, ...), not under them
            cursor = self.get_component_rich_style("file-viewer--cursor")
            strip = Strip(Segment.apply_style(list(strip), post_style=cursor),
                          strip.cell_length)
        return strip

    def _set_cursor(self, row: int, scroll: bool = True) -> None:
        if not self._rows:
            return
        row = max(0, min(row, len(self._rows) - 1))
        old, self.cursor_row = self.cursor_row, row
        self.refresh_line(old)
        self.refresh_line(row)
        if scroll:
            self.scroll_to_region(Region(0, row, 1, 1), animate=False, immediate=True,
                                  x_axis=False)

    def action_move(self, step: int) -> None:
        self._set_cursor(self.cursor_row + step)

    def action_page(self, step: int) -> None:
        self._set_cursor(self.cursor_row + step * max(self.scrollable_content_region.height - 1,
                                                     1))

    def on_click(self, event: events.Click) -> None:
        self._set_cursor(event.y + self.scroll_offset.y, scroll=False)
