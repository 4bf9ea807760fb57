"""Modal dialogs: confirm, a one-line prompt, the create-session form, key help.

Each is a `ModalScreen[T]` whose result is what the user chose (None or
False when cancelled with escape).
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import (
    Button,
    DataTable,
    Input,
    Label,
    RadioButton,
    RadioSet,
    Select,
    Static,
)

from tui.data import SOURCE_KINDS, NewAnnotation, NewSession
from tui.widgets.table import Table

SEVERITIES = ("info", "warning", "error")


class ConfirmDialog(ModalScreen[bool]):
    """Yes or no. `y`/enter confirms, `n`/escape cancels."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str, yes: str = "Yes") -> None:
        super().__init__()
        self.question = question
        self.yes = yes

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.question, classes="question")
            with Horizontal(classes="buttons"):
                yield Button(self.yes, variant="error", id="yes")
                yield Button("Cancel", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)


class PromptDialog(ModalScreen[str | None]):
    """One line of text (a reason, a message, a name); enter submits."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, placeholder: str = "", value: str = "",
                 required: bool = False) -> None:
        super().__init__()
        self.title_text = title
        self.placeholder = placeholder
        self.value = value
        self.required = required

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="question")
            yield Input(value=self.value, placeholder=self.placeholder, id="answer")
            yield Static("enter: ok · escape: cancel", classes="hint")

    @on(Input.Submitted, "#answer")
    def _submitted(self, event: Input.Submitted) -> None:
        value = event.value.strip()
        if self.required and not value:
            self.notify("This cannot be empty.", severity="warning")
            return
        self.dismiss(value)

    def action_cancel(self) -> None:
        self.dismiss(None)


def parse_lines(text: str, last: int) -> tuple[int, int] | None:
    """"7" or "7-9" (or "7:9") as (start, end) within 1..last; None when invalid."""
    text = text.strip().replace(":", "-")
    start_s, _, end_s = text.partition("-")
    try:
        start = int(start_s)
        end = int(end_s) if end_s.strip() else start
    except ValueError:
        return None
    if not (1 <= start <= end <= max(last, 1)):
        return None
    return start, end


class AnnotateDialog(ModalScreen[NewAnnotation | None]):
    """A note on lines of a file: the lines ("7" or "7-9", the cursor's line to
    start with), a severity and the note. Enter in the note submits."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, path: str, line: int, last_line: int) -> None:
        super().__init__()
        self.path = path
        self.line = line
        self.last_line = last_line

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide", id="annotate"):
            yield Label(f"Annotate {self.path}", classes="question")
            with RadioSet(id="severity"):
                for severity in SEVERITIES:
                    yield RadioButton(severity, value=severity == "info", id=f"sev-{severity}")
            with Grid(classes="form"):
                yield Label("Lines")
                yield Input(str(self.line), placeholder="7 or 7-9", id="lines")
                yield Label("Note")
                yield Input(placeholder="what a reviewer should know", id="body")
            yield Static("enter: add · escape: cancel", classes="hint")

    def on_mount(self) -> None:
        self.query_one("#body", Input).focus()

    @property
    def severity(self) -> str:
        pressed = self.query_one("#severity", RadioSet).pressed_button
        return (pressed.id or "sev-info").removeprefix("sev-") if pressed else "info"

    @on(Input.Submitted)
    def _submitted(self) -> None:
        lines = parse_lines(self.query_one("#lines", Input).value, self.last_line)
        if lines is None:
            self.notify(f"Lines: a line or a range within 1-{self.last_line}.",
                        severity="warning")
            self.query_one("#lines", Input).focus()
            return
        body = self.query_one("#body", Input).value.strip()
        if not body:
            self.notify("The note cannot be empty.", severity="warning")
            self.query_one("#body", Input).focus()
            return
        self.dismiss(NewAnnotation(lines[0], lines[1], body, self.severity))

    def action_cancel(self) -> None:
        self.dismiss(None)


class CompareDialog(ModalScreen[tuple[str, str] | None]):
    """Two states to diff, picked from the session's own: `choices` are
    (label, value) pairs, value as in the API's `from`/`to` ("working" for the
    working state). The result is (from, to)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, choices: list[tuple[str, str]], from_: str, to: str) -> None:
        super().__init__()
        self.choices = choices
        values = {value for _label, value in choices}
        self.from_ = from_ if from_ in values else choices[0][1]
        self.to = to if to in values else choices[0][1]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide", id="compare"):
            yield Label("Compare two states", classes="question")
            with Grid(classes="form"):
                yield Label("From")
                yield Select(self.choices, value=self.from_, allow_blank=False, id="from")
                yield Label("To")
                yield Select(self.choices, value=self.to, allow_blank=False, id="to")
            with Horizontal(classes="buttons"):
                yield Button("Swap", id="swap")
                yield Button("Diff", variant="primary", id="ok")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#from", Select).focus()

    @property
    def selects(self) -> tuple[Select[str], Select[str]]:
        return self.query_one("#from", Select), self.query_one("#to", Select)

    @on(Button.Pressed, "#swap")
    def _swap(self) -> None:
        a, b = self.selects
        a.value, b.value = b.value, a.value

    @on(Button.Pressed, "#ok")
    def _ok(self) -> None:
        a, b = self.selects
        self.dismiss((str(a.value), str(b.value)))

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


SOURCE_HINTS = {
    "blank": "an empty session",
    "directory": "a directory on the daemon's host (where the daemon allows it)",
    "git": "a repository on the daemon's host or a URL (ref: branch, tag, sha)",
    "template": "a template by name",
    "archive": "a .tar, .tar.gz or .zip on this machine (or a directory), uploaded",
    "commit": "a commit id (cmt_…): commits outlive their session",
    "checkpoint": "a checkpoint id (ckp_…) of any session",
}


class CreateSessionDialog(ModalScreen[NewSession | None]):
    """Where a new session starts from: blank, a directory on the daemon's host, a
    git repository (path or URL, optional ref), a template, an archive on this
    machine (uploaded), a commit or a checkpoint."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, templates: list[str] | None = None) -> None:
        super().__init__()
        self.templates = templates or []

    def hint(self, kind: str) -> str:
        if kind == "template" and self.templates:
            return "templates: " + ", ".join(self.templates[:8])
        return SOURCE_HINTS.get(kind, "")

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide", id="create-form"):
            yield Label("New session", classes="question")
            with RadioSet(id="kind"):
                for kind in SOURCE_KINDS:
                    yield RadioButton(kind, value=kind == "blank", id=f"kind-{kind}")
            with Grid(classes="form"):
                yield Label("Source")
                yield Input(placeholder="path, URL, template, cmt_… or ckp_…", id="value")
                yield Label("Git ref")
                yield Input(placeholder="HEAD", id="ref")
                yield Label("Name")
                yield Input(placeholder="optional", id="name")
            yield Static(self.hint("blank"), classes="hint", id="source-hint")
            with Horizontal(classes="buttons"):
                yield Button("Create", variant="primary", id="create")
                yield Button("Cancel", id="cancel")

    @property
    def kind(self) -> str:
        pressed = self.query_one("#kind", RadioSet).pressed_button
        return (pressed.id or "kind-blank").removeprefix("kind-") if pressed else "blank"

    @on(RadioSet.Changed, "#kind")
    def _kind_changed(self) -> None:
        self.query_one("#source-hint", Static).update(self.hint(self.kind))

    def result(self) -> NewSession | None:
        value = self.query_one("#value", Input).value.strip()
        kind = self.kind
        if kind != "blank" and not value:
            self.notify(f"A {kind} session needs a source.", severity="warning")
            return None
        return NewSession(kind=kind, value=value, ref=self.query_one("#ref", Input).value.strip(),
                          name=self.query_one("#name", Input).value.strip())

    @on(Button.Pressed, "#create")
    @on(Input.Submitted)
    def _create(self) -> None:
        result = self.result()
        if result is not None:
            self.dismiss(result)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class HelpScreen(ModalScreen[None]):
    """Every key binding of the screen underneath and of the app."""

    BINDINGS = [Binding("escape,q,question_mark,f1", "close", "Close")]

    def __init__(self, underneath: Screen) -> None:
        super().__init__()
        self.underneath = underneath

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide", id="help"):
            yield Label(f"Keys: {self.underneath.title or 'AetherFS'}", classes="question")
            yield Table(id="keys", cursor_type="row", zebra_stripes=True)
            yield Static("escape: close · ctrl+p: every action by name", classes="hint")

    def on_mount(self) -> None:
        from tui.commands import binding_entries

        table = self.query_one(DataTable)
        table.add_columns("key", "action", "where")
        for where, _node, binding in binding_entries(self.underneath):
            table.add_row(binding.key_display or self.app.get_key_display(binding), binding.description,
                          where)

    def action_close(self) -> None:
        self.dismiss(None)
