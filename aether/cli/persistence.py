"""Top-level `aether restore | diff | export | import`: moving between states."""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from aether.cli import output as fmt
from aether.cli.options import AtOpt, JsonOpt, QuietOpt, SessionArg, client, output

FORMATS = ("tar", "tar.gz", "zip")

DeleteOpt = Annotated[bool, typer.Option(
    "--delete", help="With a directory sync: also delete what the source does not have.")]
DryRunOpt = Annotated[bool, typer.Option(
    "--dry-run", "-n", help="With a directory sync: compare and report, change nothing.")]
VerboseOpt = Annotated[bool, typer.Option(
    "--verbose", "-v", help="With a directory sync: list each path added (+), changed (~) "
    "and deleted (-).")]


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
    output_: Annotated[str | None, typer.Option(
        "--output", "-o", metavar="FILE|-", help="Where to write the archive (- = stdout).",
        show_default=False)] = None,
    to_dir: Annotated[str | None, typer.Option(
        "--to-dir", metavar="DIR",
        help="Sync the state into this directory instead, writing only what differs "
        "(created when missing).", show_default=False)] = None,
    format_: Annotated[str | None, typer.Option(
        "--format", "-f", metavar="FORMAT",
        help="tar, tar.gz or zip (default: from FILE's extension, else tar.gz).",
        show_default=False)] = None,
    at: AtOpt = "",
    path: Annotated[str, typer.Option("--path", metavar="DIR",
                                      help="Only this subtree.")] = "",
    delete: DeleteOpt = False,
    dry_run: DryRunOpt = False,
    verbose: VerboseOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Export a state of a session as an archive, or sync it into a directory.

    With --to-dir, sync it into a host directory instead: only files whose
    content (BLAKE3) or executable bit differ are written, symlinks are written
    as symlinks and never followed, and paths the session lacks are deleted only
    with --delete.
    """
    if (output_ is None) == (to_dir is None):
        raise typer.BadParameter("give exactly one of --output FILE|- and --to-dir DIR",
                                 param_hint="'--output' / '--to-dir'")
    if to_dir is not None:
        if format_ is not None:
            raise typer.BadParameter("--format goes with --output", param_hint="'--format'")
        _sync(ctx, "export", session, to_dir, at=at, path=path, delete=delete,
              dry_run=dry_run, verbose=verbose, json_=json_, quiet=quiet)
        return
    assert output_ is not None
    if delete or dry_run:
        raise typer.BadParameter("--delete and --dry-run go with --to-dir",
                                 param_hint="'--delete' / '--dry-run'")
    if format_ is not None and format_ not in FORMATS:
        raise typer.BadParameter("want tar, tar.gz or zip", param_hint="'--format'")
    fmt_name = format_ or _format_for(output_) or "tar.gz"
    out = output(ctx, json_, quiet)
    c = client(ctx)
    to_stdout = output_ == "-"
    if to_stdout and sys.stdout.isatty():
        raise typer.BadParameter("refusing to write an archive to a terminal",
                                 param_hint="'--output'")
    progress = out.transfer("Exporting")
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
        if not dest.parent.is_dir():  # name what the user typed, not the .part file
            raise FileNotFoundError(errno.ENOENT, "no such directory", str(dest.parent))
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


# ---- export --to-dir / import --from-dir


def _sync(ctx: typer.Context, direction: str, session: str, directory: str, *, at: str,
          path: str, delete: bool, dry_run: bool, verbose: bool, json_: bool,
          quiet: bool) -> None:
    from aether.client import dirsync

    out = output(ctx, json_, quiet)
    c = client(ctx)
    label = "Exporting" if direction == "export" else "Importing"
    progress = None if dry_run else out.transfer(label, waiting="Comparing")
    try:
        if direction == "export":
            r = dirsync.export_dir(c, session, directory, at=at, path=path, delete=delete,
                                   dry_run=dry_run, progress=progress)
        else:
            r = dirsync.import_dir(c, session, directory, path=path, delete=delete,
                                   dry_run=dry_run, progress=progress)
    finally:
        if progress:
            progress.stop()
    if out.mode == "json":
        out.json(r.to_dict())
        return
    if out.mode == "quiet":
        return
    if verbose:
        rows = ([("+", p) for p in r.added] + [("~", p) for p in r.changed]
                + [("-", p) for p in r.deleted])
        for mark, p in sorted(rows, key=lambda row: row[1]):
            print(f"{mark} {p}")
        for p in r.skipped:
            print(f"! {p} (skipped)")
    where = f"{session}:/{r.path}" if r.path else session
    if direction == "export":
        what = f"{where} -> {r.directory}"
    else:
        what = f"{r.directory} -> {where}"
    verb = ("Would export" if direction == "export" else "Would import") if dry_run else (
        "Exported" if direction == "export" else "Imported")
    moved = "to transfer" if dry_run else "transferred"
    line = (f"{verb} {what}: {len(r.added)} added, {len(r.changed)} changed, "
            f"{len(r.deleted)} deleted, {r.unchanged} unchanged; {fmt.size(r.bytes)} {moved}.")
    out.console.print(line, markup=False, soft_wrap=True)
    if r.skipped and not verbose:
        out.note(f"Skipped {len(r.skipped)} path(s) a session cannot hold "
                 "(special files, names that are not UTF-8); -v lists them.")


# ---- import


def read_chunks(fh: Any, size: int = 1 << 20) -> Iterator[bytes]:
    while chunk := fh.read(size):
        yield chunk


def import_(
    ctx: typer.Context,
    session: SessionArg,
    file: Annotated[str | None, typer.Argument(
        metavar="[FILE|-]", help="tar, tar.gz or zip (- = stdin).", show_default=False)] = None,
    from_dir: Annotated[str | None, typer.Option(
        "--from-dir", metavar="DIR",
        help="Sync this host directory into the session instead, writing only what differs.",
        show_default=False)] = None,
    path: Annotated[str, typer.Option(
        "--path", metavar="DIR", help="Directory of the session to unpack (or sync) into.")] = "",
    format_: Annotated[str | None, typer.Option(
        "--format", "-f", metavar="FORMAT",
        help="tar, tar.gz or zip (default: detected).", show_default=False)] = None,
    delete: DeleteOpt = False,
    dry_run: DryRunOpt = False,
    verbose: VerboseOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Unpack an archive into a session, or sync a directory into it.

    With --from-dir, sync a host directory into the session's working state
    instead: only files whose content (BLAKE3) or executable bit differ are
    uploaded, symlinks are stored as symlinks, and session paths the directory
    lacks are deleted only with --delete. Writes are conditional on what was
    compared, so a concurrent change makes the import fail with a conflict.
    """
    if (file is None) == (from_dir is None):
        raise typer.BadParameter("give exactly one of FILE|- and --from-dir DIR",
                                 param_hint="'FILE' / '--from-dir'")
    if from_dir is not None:
        if format_ is not None:
            raise typer.BadParameter("--format goes with FILE", param_hint="'--format'")
        _sync(ctx, "import", session, from_dir, at="", path=path, delete=delete,
              dry_run=dry_run, verbose=verbose, json_=json_, quiet=quiet)
        return
    assert file is not None
    if delete or dry_run:
        raise typer.BadParameter("--delete and --dry-run go with --from-dir",
                                 param_hint="'--delete' / '--dry-run'")
    if format_ is not None and format_ not in FORMATS:
        raise typer.BadParameter("want tar, tar.gz or zip", param_hint="'--format'")
    fmt_name = format_ or (None if file == "-" else _format_for(file))
    out = output(ctx, json_, quiet)
    c = client(ctx)
    progress = out.transfer("Uploading")
    try:
        if file == "-":
            r = c.import_archive(session, _upload(sys.stdin.buffer, progress), path=path,
                                 format=fmt_name)
        else:
            with open(file, "rb") as fh:
                r = c.import_archive(session, _upload(fh, progress), path=path,
                                     format=fmt_name)
    finally:
        if progress:
            progress.stop()
    out.done(f"Imported {r.files} files, {r.directories} directories, {fmt.size(r.bytes)} "
             f"into {session}:/{path.strip('/')} (root {fmt.short(r.root_hash)}).",
             r, r.root_hash)


def _upload(fh: Any, progress: fmt.Transfer | None) -> Iterator[bytes]:
    """An archive's chunks, metered; once all are sent, the bar waits for the unpacking."""
    total = file_size(fh)
    yield from fmt.metered(read_chunks(fh), progress, total)
    if progress is not None:
        progress.describe("Unpacking")


def file_size(fh: Any) -> int | None:
    """The size of a regular file behind `fh` (None for a pipe or a terminal)."""
    import stat

    try:
        info = os.fstat(fh.fileno())
    except (OSError, ValueError, AttributeError):
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None
