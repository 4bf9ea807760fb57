"""DataTable helpers shared by the screens."""

from __future__ import annotations

from textual.widgets import DataTable


def selected_key(table: DataTable) -> str:
    """The key of the row under the cursor ("" when there is none or it has no key)."""
    if not table.row_count:
        return ""
    try:
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value or "")
    except Exception:  # the cursor is past the rows while they are refilled
        return ""


class Table(DataTable):
    """A DataTable that repaints once it has measured its rows.

    DataTable sizes auto-width columns when idle, after rows are added, but
    keeps the lines it painted before that (at the old widths) in caches keyed
    on a counter that measuring does not bump: a table filled and painted in
    the same frame could go on showing its cells cut to the header's width."""

    def _update_dimensions(self, new_rows) -> None:  # noqa: ANN001 - DataTable's signature
        super()._update_dimensions(new_rows)
        self.notify_style_update()  # public: drops the painted lines and repaints
