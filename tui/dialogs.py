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
from textual.widgets import Button, DataTable, Input, Label, RadioButton, RadioSet, Static

from tui.data import SOURCE_KINDS, NewSession


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


class CreateSessionDialog(ModalScreen[NewSession | None]):
    """Where a new session starts from: blank, a directory on the daemon's host, a
    git repository (path or URL, optional ref) or a template."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, templates: list[str] | None = None) -> None:
        super().__init__()
        self.templates = templates or []

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide", id="create-form"):
            yield Label("New session", classes="question")
            with RadioSet(id="kind"):
                for kind in SOURCE_KINDS:
                    yield RadioButton(kind, value=kind == "blank", id=f"kind-{kind}")
            with Grid(classes="form"):
                yield Label("Source")
                yield Input(placeholder="directory path, git URL or template name", id="value")
                yield Label("Git ref")
                yield Input(placeholder="HEAD", id="ref")
                yield Label("Name")
                yield Input(placeholder="optional", id="name")
            if self.templates:
                yield Static("templates: " + ", ".join(self.templates[:8]), classes="hint")
            with Horizontal(classes="buttons"):
                yield Button("Create", variant="primary", id="create")
                yield Button("Cancel", id="cancel")

    @property
    def kind(self) -> str:
        pressed = self.query_one("#kind", RadioSet).pressed_button
        return (pressed.id or "kind-blank").removeprefix("kind-") if pressed else "blank"

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
            yield DataTable(id="keys", cursor_type="row", zebra_stripes=True)
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
