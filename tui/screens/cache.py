"""The knowledge cache of a session: keys by prefix, a value viewer, delete."""

from __future__ import annotations

import json

from rich.syntax import Syntax
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static

from aether import pb
from tui import format as fmt
from tui.dialogs import ConfirmDialog
from tui.tasks import task
from tui.widgets.table import Table
from tui.widgets.viewer import is_binary, syntax_theme

VALUE_LIMIT = 64 * 1024


def render_value(entry: pb.CacheEntry, dark: bool):
    value = bytes(entry.value)
    meta = entry.metadata or pb.CacheEntryMetadata()
    if is_binary(value):
        return Text(f"{meta.key}: {len(value)} bytes of binary ({meta.content_type or '?'})",
                    style="dim")
    text = value[:VALUE_LIMIT].decode("utf-8", errors="replace")
    if "json" in meta.content_type or text.lstrip().startswith(("{", "[")):
        try:
            text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
            return Syntax(text, "json", theme=syntax_theme(dark), background_color="default")
        except ValueError:
            pass
    return Text(text)


class CacheScreen(Screen):
    """Keys with a prefix search; the highlighted key's value below."""

    TITLE = "Cache"
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("slash", "search", "Prefix"),
        Binding("x,delete", "delete", "Delete key"),
        Binding("r", "refresh", "Refresh"),
    ]

    def __init__(self, session_id: str) -> None:
        super().__init__()
        self.session_id = session_id
        self.keys: list[pb.CacheEntryMetadata] = []
        self.loaded = False
        self.shown_key = ""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="/ key prefix", id="prefix")
        yield Table(id="keys", cursor_type="row", zebra_stripes=True)
        with VerticalScroll(id="value-view"):
            yield Static(Text("No key selected.", style="dim"), id="value")
        yield Footer(compact=True)

    @property
    def table(self) -> DataTable:
        return self.query_one("#keys", DataTable)

    @property
    def prefix(self) -> str:
        return self.query_one("#prefix", Input).value

    def on_mount(self) -> None:
        self.table.add_column("Key", width=30, key="key")
        self.table.add_columns("Ver", "Size", "Type", "Updated")
        self.table.focus()
        self.load()

    @task(exclusive=True, group="keys")
    async def load(self) -> None:
        backend = await self.app.backend()  # type: ignore[attr-defined]
        self.keys = await backend.cache_keys(self.session_id, prefix=self.prefix)
        display = self.app.display_opts  # type: ignore[attr-defined]
        table = self.table
        table.clear()
        for m in self.keys:
            table.add_row(m.key, str(m.version), fmt.size(m.size), m.content_type or "-",
                          display.ago(m.update_time), key=m.key)
        self.sub_title = f"{len(self.keys)} keys" + (f" with prefix {self.prefix!r}"
                                                     if self.prefix else "")
        self.loaded = True
        if not self.keys:
            self._set_value(Text("No keys.", style="dim"), "")

    def selected_key(self) -> str:
        table = self.table
        if not table.row_count:
            return ""
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def _set_value(self, renderable, key: str) -> None:
        self.query_one("#value", Static).update(renderable)
        self.shown_key = key

    @on(DataTable.RowHighlighted, "#keys")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value:
            self.show_value(str(event.row_key.value))

    @task(exclusive=True, group="value")
    async def show_value(self, key: str) -> None:
        backend = await self.app.backend()  # type: ignore[attr-defined]
        entry = await backend.cache_get(self.session_id, key)
        self._set_value(render_value(entry, self.app.current_theme.dark), key)

    @on(Input.Changed, "#prefix")
    def _prefix_changed(self) -> None:
        self.load()

    @on(Input.Submitted, "#prefix")
    def _prefix_done(self) -> None:
        self.table.focus()

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_search(self) -> None:
        self.query_one("#prefix", Input).focus()

    def action_refresh(self) -> None:
        self.load()

    @task(group="ops")
    async def action_delete(self) -> None:
        key = self.selected_key()
        if not key:
            return
        ok = await self.app.push_screen_wait(ConfirmDialog(f"Delete cache key {key!r}?",
                                                           yes="Delete"))
        if not ok:
            return
        backend = await self.app.backend()  # type: ignore[attr-defined]
        await backend.cache_delete(self.session_id, key)
        self.notify(f"Deleted {key!r}.")
        self.load()
