"""Regenerate the command reference in docs/cli.md from the command tree.

    python scripts/gen_cli_doc.py          rewrite the generated section in place
    python scripts/gen_cli_doc.py --check  exit 1 if docs/cli.md is out of date

The reference sits between `<!-- BEGIN GENERATED: commands -->` and
`<!-- END GENERATED: commands -->`; the hand-written tour and notes around it
are left alone. It is rendered from the click objects typer builds (names,
arguments, options, defaults, env vars, help), never from `--help` text, so it
does not depend on the terminal width. tests/test_docs.py fails when the
committed page differs from a fresh render.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "cli.md"
sys.path.insert(0, str(ROOT))

_SECTION = re.compile(
    r"(<!-- BEGIN GENERATED: commands -->\n)(?P<body>.*?)(<!-- END GENERATED: commands -->)",
    re.DOTALL,
)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _help_text(cmd: Any) -> str:
    text = (cmd.help or "").strip()
    # click's \b marks a paragraph not to rewrap; markdown needs no such hint.
    return "\n".join(line for line in text.splitlines() if line.strip() != "\b").strip()


def _param_name(param: Any) -> str:
    if param.param_type_name == "argument":
        text = param.metavar or param.name.upper()
    else:
        text = ", ".join([*param.opts, *param.secondary_opts])
        if not param.is_flag and not param.count:
            text += f" {param.metavar or param.type.name.upper()}"  # see main.name_values
    return f"`{text}`".replace("|", "\\|")


def _param_notes(param: Any) -> str:
    notes = []
    if param.param_type_name == "argument":
        notes.append("required" if param.required else "optional")
        if param.nargs == -1:
            notes.append("repeatable")
    elif param.multiple:
        notes.append("repeatable")
    default = param.default
    if (param.param_type_name == "option" and not param.is_flag and default not in (None, "", (), [])
            and param.show_default is not False):
        notes.append(f"default `{default}`")
    if getattr(param, "envvar", None):
        notes.append(f"env `{param.envvar}`")
    return "; ".join(notes)


def _usage(path: list[str], cmd: Any) -> str:
    ctx = cmd.context_class(cmd, info_name=path[-1])
    pieces = cmd.collect_usage_pieces(ctx)
    return " ".join([*path, *pieces])


def _render_command(path: list[str], cmd: Any, depth: int, out: list[str]) -> None:
    out.append(f"{'#' * depth} `{' '.join(path)}`\n")
    help_ = _help_text(cmd)
    if help_:
        out.append(help_ + "\n")
    out.append(f"```\n{_usage(path, cmd)}\n```\n")
    params = [p for p in cmd.params
              if not getattr(p, "hidden", False) and p.name not in ("help",)]
    if params:
        out.append("| argument / option | meaning | notes |")
        out.append("|---|---|---|")
        for p in params:
            what = _cell(getattr(p, "help", None) or "")
            out.append(f"| {_param_name(p)} | {what} | {_param_notes(p)} |")
        out.append("")
    if hasattr(cmd, "list_commands"):  # a group (typer vendors its own click)
        ctx = cmd.context_class(cmd, info_name=path[-1])
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            if sub is None or sub.hidden:
                continue
            _render_command([*path, name], sub, min(depth + 1, 4), out)


def render() -> str:
    import typer

    from aether.cli.main import app, name_values
    from aetherd.cli import app as daemon_app

    out: list[str] = []
    _render_command(["aether"], typer.main.get_command(app), 3, out)
    daemon = typer.main.get_command(daemon_app)
    name_values(daemon)
    _render_command(["aetherd"], daemon, 3, out)
    return "\n".join(out).rstrip() + "\n"


def rendered_doc(text: str) -> str:
    if not _SECTION.search(text):
        raise SystemExit(f"{DOC}: no generated commands section")
    return _SECTION.sub(lambda m: m.group(1) + render() + m.group(3), text)


def main(argv: list[str]) -> int:
    current = DOC.read_text()
    fresh = rendered_doc(current)
    if "--check" in argv:
        if fresh != current:
            print(f"{DOC} is out of date: run `python scripts/gen_cli_doc.py`", file=sys.stderr)
            return 1
        return 0
    if fresh != current:
        DOC.write_text(fresh)
        print(f"rewrote {DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
