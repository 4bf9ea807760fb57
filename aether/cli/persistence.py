"""Top-level `aether restore | diff | export | import`: moving between states."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from aether.cli import output as fmt
from aether.cli.options import AtOpt, JsonOpt, QuietOpt, SessionArg, client, output

FORMATS = ("tar", "tar.gz", "zip")


def restore(
    ctx: typer.Context,
    session: SessionArg,
    target: Annotated[str, typer.Argument(
        metavar="CHECKPOINT_OR_COMMIT", help="ckp_..., cmt_... or base.", show_default=False)],
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Reset a session's working state to a checkpoint, a commit or its base."""
    out = output(ctx, json_, quiet)
    s = client(ctx).restore_session(session, target)
    out.done(f"Restored {s.id} to {target} (root {fmt.short(s.root_hash)}, "
             f"{s.file_count} files).", s, s.id)


# ---- diff


def _stat_lines(diff: Any) -> list[tuple[str, int, int, bool]]:
    return [(f.change.path if f.change else "?", f.lines_added, f.lines_deleted, f.binary)
            for f in diff.files]


def _print_stat(out: fmt.Output, diff: Any) -> None:
    from rich.text import Text

    rows = _stat_lines(diff)
    if not rows:
        return
    name_w = max(len(p) for p, *_ in rows)
    most = max((a + d for _, a, d, _ in rows), default=0)
    bar_w = max(10, min(50, out.console.width - name_w - 12))
    scale = min(1.0, bar_w / most) if most else 1.0
    added = deleted = 0
    for path, a, d, binary in rows:
        added += a
        deleted += d
        line = Text(f" {path.ljust(name_w)} | ")
        if binary:
            line.append("Bin")
        else:
            line.append(f"{a + d:>5} ")
            plus, minus = round(a * scale), round(d * scale)
            if a and not plus:
                plus = 1
            if d and not minus:
                minus = 1
            line.append("+" * plus, style="green")
            line.append("-" * minus, style="red")
        out.console.print(line, soft_wrap=True)
    n = len(rows)
    out.console.print(
        f" {n} file{'s' if n != 1 else ''} changed, {added} insertion{'s' if added != 1 else ''}"
        f"(+), {deleted} deletion{'s' if deleted != 1 else ''}(-)", markup=False)


def _print_unified(out: fmt.Output, text: str) -> None:
    if not text:
        return
    if not out.console.is_terminal:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()
        return
    from rich.text import Text

    styled = Text()
    for line in text.splitlines(keepends=True):
        if line.startswith(("diff ", "index ", "--- ", "+++ ", "new file", "deleted file",
                            "old mode", "new mode", "Binary files", "similarity",
                            "rename ")):
            style = "bold"
        elif line.startswith("@@"):
            style = "cyan"
        elif line.startswith("+"):
            style = "green"
        elif line.startswith("-"):
            style = "red"
        else:
            style = ""
        styled.append(line, style=style)
    out.console.print(styled, soft_wrap=True, end="")


def diff(
    ctx: typer.Context,
    session: SessionArg,
    from_: Annotated[str, typer.Option(
        "--from", metavar="STATE", help="base (default), ckp_... or cmt_....")] = "",
    to: Annotated[str, typer.Option(
        "--to", metavar="STATE", help="Working state (default), base, ckp_... or cmt_....")] = "",
    stat: Annotated[bool, typer.Option("--stat", help="Per-file line counts only.")] = False,
    name_only: Annotated[bool, typer.Option("--name-only",
                                            help="Changed paths only.")] = False,
    paths: Annotated[list[str] | None, typer.Argument(
        metavar="[PATH]...", help="Limit the diff to these paths.", show_default=False)] = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Show changes between two states of a session (default: base -> working)."""
    out = output(ctx, json_, quiet)
    d = client(ctx).diff(session, from_=from_, to=to, paths=paths or [],
                         name_only=name_only or quiet)
    if out.mode == "json":
        out.json(fmt.to_json(d))
    elif out.mode == "quiet" or name_only:
        for f in d.files:
            print(f.change.path if f.change else "?")
    elif stat:
        _print_stat(out, d)
    else:
        _print_unified(out, d.unified)


# ---- export


def _format_for(path: str) -> str | None:
    name = path.lower()
    if name.endswith((".tar.gz", ".tgz")):
        return "tar.gz"
    if name.endswith(".tar"):
        return "tar"
    if name.endswith(".zip"):
        return "zip"
    return None


def export(
    ctx: typer.Context,
    session: SessionArg,
    output_: Annotated[str, typer.Option(
        "--output", "-o", metavar="FILE|-", help="Where to write the archive (- = stdout).",
        show_default=False)],
    format_: Annotated[str | None, typer.Option(
        "--format", "-f", metavar="FORMAT",
        help="tar, tar.gz or zip (default: from FILE's extension, else tar.gz).",
        show_default=False)] = None,
    at: AtOpt = "",
    path: Annotated[str, typer.Option("--path", metavar="DIR",
                                      help="Only this subtree.")] = "",
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Export a state of a session as an archive."""
    if format_ is not None and format_ not in FORMATS:
        raise typer.BadParameter("want tar, tar.gz or zip", param_hint="'--format'")
    fmt_name = format_ or _format_for(output_) or "tar.gz"
    out = output(ctx, json_, quiet)
    c = client(ctx)
    to_stdout = output_ == "-"
    if to_stdout and sys.stdout.isatty():
        raise typer.BadParameter("refusing to write an archive to a terminal",
                                 param_hint="'--output'")
    progress = _Progress(out) if out.stderr_is_terminal() else None
    if to_stdout:
        try:
            written = c.export_to(session, sys.stdout.buffer, format=fmt_name, at=at, path=path,
                                  progress=progress)
        finally:
            if progress:
                progress.stop()
        sys.stdout.buffer.flush()
    else:
        dest = Path(output_)
        part = dest.with_name(dest.name + ".part")
        try:
            with open(part, "wb") as fh:
                written = c.export_to(session, fh, format=fmt_name, at=at, path=path,
                                      progress=progress)
            os.replace(part, dest)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        finally:
            if progress:
                progress.stop()
    result = {"session": session, "output": output_, "format": fmt_name, "bytes": written}
    if out.mode == "json":
        out.json(result)
    elif out.mode == "quiet":
        if not to_stdout:
            print(output_)
    elif not to_stdout:
        out.console.print(f"Exported {session} to {output_} ({fmt_name}, {fmt.size(written)}).",
                          markup=False)


class _Progress:
    """A rich download bar on stderr, fed by export_to's progress callback."""

    def __init__(self, out: fmt.Output) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._bar = Progress(
            TextColumn("Exporting"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
            TimeRemainingColumn(), console=out.err, transient=True,
        )
        self._task = self._bar.add_task("export", total=None)
        self._bar.start()

    def __call__(self, done: int, total: int | None) -> None:
        self._bar.update(self._task, completed=done, total=total)

    def stop(self) -> None:
        self._bar.stop()


# ---- import


def _chunks(fh: Any, size: int = 1 << 20) -> Iterator[bytes]:
    while chunk := fh.read(size):
        yield chunk


def import_(
    ctx: typer.Context,
    session: SessionArg,
    file: Annotated[str, typer.Argument(metavar="FILE|-", help="tar, tar.gz or zip (- = stdin).",
                                        show_default=False)],
    path: Annotated[str, typer.Option("--path", metavar="DIR",
                                      help="Directory of the session to unpack into.")] = "",
    format_: Annotated[str | None, typer.Option(
        "--format", "-f", metavar="FORMAT",
        help="tar, tar.gz or zip (default: detected).", show_default=False)] = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Unpack an archive into a session."""
    if format_ is not None and format_ not in FORMATS:
        raise typer.BadParameter("want tar, tar.gz or zip", param_hint="'--format'")
    fmt_name = format_ or (None if file == "-" else _format_for(file))
    out = output(ctx, json_, quiet)
    c = client(ctx)
    with out.status("Importing..."):
        if file == "-":
            r = c.import_archive(session, _chunks(sys.stdin.buffer), path=path, format=fmt_name)
        else:
            with open(file, "rb") as fh:
                r = c.import_archive(session, _chunks(fh), path=path, format=fmt_name)
    out.done(f"Imported {r.files} files, {r.directories} directories, {fmt.size(r.bytes)} "
             f"into {session}:/{path.strip('/')} (root {fmt.short(r.root_hash)}).",
             r, r.root_hash)
