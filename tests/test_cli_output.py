"""The CLI's tables are written without rich when they fit (rich costs ~100 ms
of a command's start): that writer must print exactly what rich prints, for
every table the CLI has, with and without colour."""

from __future__ import annotations

import importlib
import io
import pkgutil
import random
import re

import pytest
from rich.console import Console

import aether.cli
from aether.cli import output as fmt

_SGR = re.compile(r"\x1b\[[0-9;]*m")


def column_sets() -> list[tuple[str, list[fmt.Column]]]:
    found = []
    for m in pkgutil.iter_modules(aether.cli.__path__):
        if m.name == "__main__":
            continue
        module = importlib.import_module(f"aether.cli.{m.name}")
        for name, value in vars(module).items():
            if isinstance(value, list) and value and all(
                    isinstance(c, fmt.Column) for c in value):
                found.append((f"{m.name}.{name}", value))
    return found


def rich_render(columns, cells, rows, colour: bool) -> str:
    console = Console(highlight=False, soft_wrap=False, file=io.StringIO(), width=100_000,
                      force_terminal=colour, color_system="standard" if colour else None)
    table = fmt.Output._table(columns, cells, rows)
    with console.capture() as captured:
        console.print(table, width=fmt._natural_width(columns, cells))
    return "".join(line.rstrip() + "\n" for line in captured.get().splitlines())


def visible(text: str) -> list[str]:
    """What a terminal shows: colour codes out, trailing blanks off."""
    return [line.rstrip() for line in _SGR.sub("", text).splitlines()]


SETS = column_sets()


def test_every_cli_table_is_covered():
    assert len(SETS) >= 10, [n for n, _ in SETS]


@pytest.mark.parametrize(("name", "columns"), SETS, ids=[n for n, _ in SETS])
def test_the_plain_writer_prints_what_rich_prints(name, columns):
    rnd = random.Random(name)
    words = ["a", "bb", "long value here", "0", "12345678", "日本語の名前", "x" * 30, "-", "",
             "[bold]not markup[/]"]
    for _ in range(25):
        rows = rnd.randint(1, 6)
        cells = {id(c): [rnd.choice(words) for _ in range(rows)] for c in columns}
        assert fmt._plain_table(columns, cells, rows) == rich_render(columns, cells, rows, False)
        coloured = fmt._plain_table(columns, cells, rows, colour=True)
        assert visible(coloured) == visible(rich_render(columns, cells, rows, True))
        assert "\x1b[1m" in coloured  # headers are bold, as rich makes them
