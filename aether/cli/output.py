"""One way to print results: human (rich tables) | --json | --quiet (ids only),
and one way to fail: `error: <code>: <message>` on stderr with a stable exit code.

Commands hand over pb messages plus a description of how people should see
them; this module decides what reaches the terminal. rich is imported only
when something is printed for people.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# Exit codes: part of the CLI's contract (scripts branch on them).
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_CONFLICT = 4
EXIT_DENIED = 5

_EXIT_BY_CODE = {
    "not_found": EXIT_NOT_FOUND,
    "conflict": EXIT_CONFLICT,
    "already_exists": EXIT_CONFLICT,
    "permission_denied": EXIT_DENIED,
    "unauthenticated": EXIT_DENIED,
}


def exit_code_for(code: str) -> int:
    return _EXIT_BY_CODE.get(code, EXIT_ERROR)


def fail(code: str, message: str) -> int:
    """Print the one-line error and return the exit code for it."""
    message = " ".join(message.split())  # exactly one line
    sys.stderr.write(f"error: {code}: {message}\n")
    sys.stderr.flush()
    return exit_code_for(code)


# ---- value formatting for people


def size(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"  # pragma: no cover


def when(ts: datetime | None) -> str:
    if ts is None:
        return "-"
    return ts.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def stamp(ts: datetime | None) -> str:
    """ls-style: 'Nov 22 01:31' this year, 'Nov 22  2024' before."""
    if ts is None:
        return "-"
    local = ts.astimezone()
    if local.year == datetime.now(local.tzinfo).year:
        return local.strftime("%b %d %H:%M")
    return local.strftime("%b %d  %Y")


def ago(ts: datetime | None, now: datetime | None = None) -> str:
    """A compact age for tables: 42s ago, 5m ago, 3h ago, 12d ago, else the date."""
    if ts is None:
        return "-"
    now = now or datetime.now(ts.tzinfo)
    secs = int((now - ts).total_seconds())
    if secs < 0:
        return when(ts)
    for unit, size_ in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size_:
            n = secs // size_
            if unit == "d" and n > 30:
                return ts.astimezone().strftime("%Y-%m-%d")
            return f"{n}{unit} ago"
    return f"{secs}s ago"


def short(h: str, n: int = 12) -> str:
    return h[:n] if h else "-"


def pairs(m: dict[str, str] | None) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((m or {}).items())) or "-"


def enum_name(value: Any) -> str:
    """SessionState.ACTIVE -> 'active'; UNSPECIFIED -> '-'."""
    name = getattr(value, "name", str(value))
    return "-" if name in ("UNSPECIFIED", "") else name.lower().replace("_", "-")


def mode(m: int, kind: str = "") -> str:
    prefix = {"directory": "d", "symlink": "l"}.get(kind, "-")
    bits = "".join(
        ch if m & (1 << (8 - i)) else "-" for i, ch in enumerate("rwxrwxrwx")
    )
    return prefix + bits


def to_json(msg: Any) -> Any:
    """A pb message (or a list of them) as proto3 JSON with every field present."""
    if isinstance(msg, list | tuple):
        return [to_json(m) for m in msg]
    if hasattr(msg, "to_dict"):
        return msg.to_dict(include_default_values=True)
    return msg


def _natural_width(columns: Sequence[Column], cells: dict[int, list[str]]) -> int:
    """The width the table takes unsqueezed: each column as wide as its widest
    cell or header, and three columns between two (padding, separator,
    padding) in the SIMPLE_HEAD style `Output._table` uses."""
    from rich.cells import cell_len

    widths = [max([cell_len(c.header), *(cell_len(v) for v in cells[id(c)])]) for c in columns]
    return sum(widths) + 3 * (len(widths) - 1)


def _multiline(cells: dict[int, list[str]]) -> bool:
    return any("\n" in v or "\r" in v for values in cells.values() for v in values)


# SGR codes of the styles tables use (a column with any other style goes
# through rich).
_SGR = {None: "", "bold": "1", "dim": "2", "cyan": "36"}


def _plain_styles(columns: Sequence[Column]) -> list[str] | None:
    if any(c.style not in _SGR for c in columns):
        return None
    return [_SGR[c.style] for c in columns]


def _terminal_columns() -> int:
    import shutil

    return shutil.get_terminal_size().columns  # honours COLUMNS, as rich does


def _colour_wanted() -> bool:
    return not os.environ.get("NO_COLOR") and os.environ.get("TERM", "") != "dumb"


def _plain_table(columns: Sequence[Column], cells: dict[int, list[str]], rows: int,
                 colour: bool = False) -> str:
    """`Output._table` as rich prints it when it fits: headers (bold), a rule,
    rows; columns as wide as their widest cell, three spaces apart; no
    trailing spaces. Checked cell for cell against rich's output by
    tests/test_cli_output.py."""
    from rich.cells import cell_len

    widths = [max([cell_len(c.header), *(cell_len(v) for v in cells[id(c)])]) for c in columns]
    styles = _plain_styles(columns) or [""] * len(columns)

    def paint(text: str, sgr: str) -> str:
        return f"\x1b[{sgr}m{text}\x1b[0m" if colour and sgr and text else text

    def line(values: list[str], header: bool = False) -> str:
        out = []
        for col, width, value, sgr in zip(columns, widths, values, styles, strict=True):
            pad = " " * (width - cell_len(value))
            value = paint(value, "1" if header else sgr)
            out.append(pad + value if col.justify == "right" else value + pad)
        return "   ".join(out).rstrip() + "\n"

    rule = "\u2500" * (sum(widths) + 3 * (len(widths) - 1))
    text = [line([c.header for c in columns], header=True), rule + "\n"]
    text.extend(line([cells[id(c)][i] for c in columns]) for i in range(rows))
    return "".join(text)


@dataclass(frozen=True)
class Column:
    header: str
    value: Callable[[Any], str]
    justify: str = "left"
    style: str | None = None
    wrap: bool = False  # free text folds; everything else stays on one line
    # On a terminal too narrow for the table, columns are dropped highest
    # `drop` first (0: never dropped) before any text is folded.
    drop: int = 0


class Output:
    """Renders results in one of three modes: "human", "json" or "quiet"."""

    def __init__(self, mode: str = "human") -> None:
        self.mode = mode
        self._console: Any = None
        self._err: Any = None

    @property
    def human(self) -> bool:
        return self.mode == "human"

    @property
    def console(self) -> Any:
        if self._console is None:
            from rich.console import Console

            console = Console(highlight=False, soft_wrap=False)
            if not console.is_terminal:
                # Piped or redirected: never squeeze, truncate or wrap for a
                # screen that is not there.
                console.width = 100_000
            self._console = console
        return self._console

    def console_is_terminal(self) -> bool:
        """What rich's Console would decide, without building one (importing
        rich): is stdout a terminal, with FORCE_TERMINAL / TTY_COMPATIBLE
        respected as rich respects them."""
        if self._console is not None:
            return bool(self._console.is_terminal)
        force = os.environ.get("FORCE_TERMINAL") or os.environ.get("TTY_COMPATIBLE")
        if force is not None and force != "":
            return force not in ("0",)
        try:
            return sys.stdout.isatty()
        except (AttributeError, ValueError):
            return False

    def render(self, renderable: Any, width: int | None = None) -> None:
        """Print a rich renderable; off a terminal, without trailing padding.

        `width`: its natural width when the caller knows it (a table knows it
        from its cells, far cheaper than rich measuring the renderable)."""
        if self.console.is_terminal:
            self.console.print(renderable)
            return
        if width is None:
            from rich.measure import Measurement

            width = Measurement.get(self.console, self.console.options, renderable).maximum
        # Rendered at its natural width: at the console's (100,000 columns),
        # rich pads every line to it, which took ~50 ms for a 20-row table.
        with self.console.capture() as captured:
            self.console.print(renderable, width=max(width, 1))
        lines = captured.get().splitlines()
        sys.stdout.write("".join(line.rstrip() + "\n" for line in lines))
        sys.stdout.flush()

    @property
    def err(self) -> Any:
        if self._err is None:
            from rich.console import Console

            self._err = Console(stderr=True, highlight=False)
        return self._err

    def stderr_is_terminal(self) -> bool:
        return self.human and sys.stderr.isatty()

    # -- the three shapes of result

    def json(self, data: Any) -> None:
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
        sys.stdout.flush()

    def item(
        self,
        msg: Any,
        fields: Sequence[tuple[str, Callable[[Any], str]]],
        ident: Callable[[Any], str],
        title: str | None = None,
    ) -> None:
        """One object: a two-column sheet for people, its JSON, or its id."""
        if self.mode == "json":
            self.json(to_json(msg))
        elif self.mode == "quiet":
            print(ident(msg))
        else:
            from rich.table import Table

            grid = Table.grid(padding=(0, 2))
            grid.add_column(style="bold", no_wrap=True)
            grid.add_column(overflow="fold")
            for label, get in fields:
                grid.add_row(label, get(msg))
            if title:
                self.console.print(title, markup=False)
            self.render(grid)

    def table(
        self,
        msgs: Iterable[Any],
        columns: Sequence[Column],
        ident: Callable[[Any], str],
        empty: str = "Nothing to show.",
    ) -> None:
        """Many objects: a table for people, a JSON array, or one id per line."""
        msgs = list(msgs)
        if self.mode == "json":
            self.json(to_json(msgs))
            return
        if self.mode == "quiet":
            for m in msgs:
                print(ident(m))
            return
        if not msgs:
            self.err.print(empty, style="dim")
            return
        cols = list(columns)
        cells = {id(c): [c.value(m) for m in msgs] for c in cols}
        if self.console_is_terminal():
            # Too wide for the terminal: drop columns (highest `drop` first)
            # before any text is folded.
            while _natural_width(cols, cells) > _terminal_columns():
                droppable = [c for c in cols if c.drop]
                if not droppable:
                    break
                cols.remove(max(droppable, key=lambda c: c.drop))
        if not _multiline(cells) and _plain_styles(cols) is not None:
            terminal = self.console_is_terminal()
            width = _natural_width(cols, cells)
            if not terminal or width <= _terminal_columns():
                # What rich would print, written directly: rich costs ~100 ms
                # of a command's start (import and layout), and a table that
                # fits needs no folding. Off a terminal: no colour; on one,
                # the columns' styles as ANSI colour unless NO_COLOR.
                sys.stdout.write(_plain_table(cols, cells, len(msgs),
                                              colour=terminal and _colour_wanted()))
                sys.stdout.flush()
                return
        self.render(self._table(cols, cells, len(msgs)), _natural_width(cols, cells))

    @staticmethod
    def _table(columns: Sequence[Column], cells: dict[int, list[str]], rows: int) -> Any:
        from rich import box
        from rich.table import Table
        from rich.text import Text

        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        for col in columns:
            # Narrow, fixed-format columns never wrap; free text folds instead
            # of being cut, so squeezing a table for a small terminal loses nothing.
            table.add_column(col.header, justify=col.justify, style=col.style,  # type: ignore[arg-type]
                             no_wrap=not col.wrap, overflow="fold" if col.wrap else "ellipsis",
                             min_width=len(col.header) if col.wrap else None)
        # Text, not str: a cell is data, never rich markup ("[x]" in a name stays
        # as typed), and skipping markup and emoji parsing halves the render.
        for i in range(rows):
            table.add_row(*(Text(cells[id(col)][i]) for col in columns))
        return table

    def done(self, text: str, msg: Any = None, ident: str | None = None) -> None:
        """An action's outcome: a sentence for people, the result's JSON, or its id."""
        if self.mode == "json":
            self.json(to_json(msg) if msg is not None else {})
        elif self.mode == "quiet":
            if ident:
                print(ident)
        else:
            self.console.print(text, markup=False)

    def note(self, text: str) -> None:
        """Side information for people only (stderr), never for scripts."""
        if self.human:
            self.err.print(text, style="dim", markup=False)

    def transfer(self, label: str, waiting: str | None = None) -> Transfer | None:
        """A progress bar on stderr for bytes moving (people at a terminal only:
        None when stderr is not a terminal, or with --json/-q)."""
        if not self.stderr_is_terminal():
            return None
        return Transfer(self.err, label, waiting)

    def status(self, text: str) -> Any:
        """A spinner on stderr while something long runs (people at a terminal only)."""
        import contextlib

        if not self.stderr_is_terminal():
            return contextlib.nullcontext()
        return self.err.status(text)


class Transfer:
    """A rich transfer bar on stderr, fed as `progress(done, total)` (the shape
    export_to, dirsync and `metered` call back with); `total` None = unknown.

    Until the first call it is a spinner labelled `waiting` (e.g. "Comparing"),
    for the work that comes before any byte moves.
    """

    def __init__(self, console: Any, label: str, waiting: str | None = None) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._label = label
        self._bar = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
            TransferSpeedColumn(), TimeRemainingColumn(), console=console, transient=True,
        )
        self._task = self._bar.add_task(waiting or label, total=None)
        self._bar.start()

    def __call__(self, done: int, total: int | None) -> None:
        self._bar.update(self._task, completed=done, total=total, description=self._label)

    def describe(self, text: str) -> None:
        self._bar.update(self._task, description=text)

    def stop(self) -> None:
        self._bar.stop()


def metered(chunks: Iterable[bytes], progress: Transfer | None,
            total: int | None) -> Iterator[bytes]:
    """Pass chunks through, reporting to `progress` the bytes handed on so far."""
    done = 0
    for chunk in chunks:
        yield chunk
        done += len(chunk)
        if progress is not None:
            progress(done, total)
