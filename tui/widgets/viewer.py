"""The file viewer: syntax-highlighted content with review annotations shown
under the lines they are anchored to."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.syntax import Syntax
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from aether import pb

VIEW_LIMIT = 256 * 1024  # bytes shown of a file; the rest is cut off with a note
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


def render_file(
    path: str, data: bytes, size: int, annotations: list[pb.Annotation], dark: bool,
) -> RenderableType:
    """Code with line numbers; each annotation follows its last line."""
    if is_binary(data):
        return Text(f"{path}: binary file, {size} bytes", style="dim")
    code = data.decode("utf-8", errors="replace")
    lexer = Syntax.guess_lexer(path, code)
    theme = syntax_theme(dark)
    lines = code.count("\n") + (0 if code.endswith("\n") else 1)
    notes: dict[int, list[pb.Annotation]] = {}
    for ann in sorted(annotations, key=lambda a: (a.end_line, a.start_line)):
        notes.setdefault(min(max(ann.end_line, 1), max(lines, 1)), []).append(ann)
    marked = {n for a in annotations for n in range(a.start_line, a.end_line + 1)}

    def block(start: int, end: int) -> Syntax:
        return Syntax(code, lexer, theme=theme, line_numbers=True, line_range=(start, end),
                      highlight_lines=marked, background_color="default", word_wrap=False)

    parts: list[RenderableType] = []
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
            note.append(ann.body)
            parts.append(note)
        start = end + 1
    if start <= lines or not parts:
        parts.append(block(start, max(lines, start)))
    if size > len(data):
        parts.append(Text(f"… {size - len(data)} more bytes not shown", style="dim"))
    return Group(*parts)


class FileViewer(VerticalScroll):
    """Shows one file (or a hint when none is chosen)."""

    DEFAULT_CSS = """
    FileViewer > Static { width: auto; min-width: 100%; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.path = ""
        self._shown: tuple[str, bytes, int, list[pb.Annotation]] | None = None

    def compose(self):
        yield Static(Text("Select a file in the tree (enter).", style="dim"), id="content")

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._redraw())

    def show(self, path: str, data: bytes, size: int, annotations: list[pb.Annotation]) -> None:
        self.path = path
        self._shown = (path, data, size, annotations)
        self._redraw()
        self.scroll_home(animate=False)

    def _redraw(self) -> None:
        if self._shown is None:
            return
        self.query_one("#content", Static).update(
            render_file(*self._shown, dark=self.app.current_theme.dark))
