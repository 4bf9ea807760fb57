"""`aether fs ...`: read and change the files of a session."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from aether.cli import output as fmt
from aether.cli.options import (
    AtOpt,
    JsonOpt,
    PathArg,
    QuietOpt,
    SessionArg,
    client,
    group,
    output,
)

app = group("Files of a session: list, read, write, stat, move, remove.")


def _kind(f: Any) -> str:
    return fmt.enum_name(f.kind)


def _display_name(f: Any, top: str) -> str:
    top = top.strip("/")
    name = f.path[len(top) + 1:] if top and f.path.startswith(top + "/") else f.path
    if _kind(f) == "directory":
        return name + "/"
    if _kind(f) == "symlink":
        return f"{name} -> {f.symlink_target}"
    return name


FILE_FIELDS = [
    ("Path", lambda f: f.path or "/"),
    ("Kind", _kind),
    ("Mode", lambda f: f"{f.mode:04o} ({fmt.mode(f.mode, _kind(f))})"),
    ("Size", lambda f: f"{f.size} ({fmt.size(f.size)})"),
    ("Hash", lambda f: f.hash or "-"),
    ("Target", lambda f: f.symlink_target or "-"),
    ("Modified", lambda f: fmt.when(f.mtime)),
    ("Extents", lambda f: _extents(f)),
]

SHOWN_EXTENTS = 8


def _extents(f: Any) -> str:
    lines = [f"{e.offset:>12} +{e.length:<10} {e.hash}" for e in f.extents[:SHOWN_EXTENTS]]
    if len(f.extents) > SHOWN_EXTENTS:
        lines.append(f"... and {len(f.extents) - SHOWN_EXTENTS} more (--json lists them all)")
    return "\n".join(lines) or "-"


@app.command("ls")
def ls(
    ctx: typer.Context,
    session: SessionArg,
    path: Annotated[str, typer.Argument(metavar="[PATH]", help="Directory (default: root).",
                                        show_default=False)] = "",
    recursive: Annotated[bool, typer.Option("--recursive", "-r",
                                            help="Everything below PATH.")] = False,
    at: AtOpt = "",
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """List a directory of a session. -q prints paths."""
    out = output(ctx, json_, quiet)
    entries = client(ctx).iter_tree(session, path, recursive=recursive, at=at)
    out.table(entries, [
        fmt.Column("MODE", lambda f: fmt.mode(f.mode, _kind(f)), drop=2),
        fmt.Column("SIZE", lambda f: "-" if _kind(f) == "directory" else fmt.size(f.size),
                   justify="right"),
        fmt.Column("MODIFIED", lambda f: fmt.stamp(f.mtime), drop=3),
        fmt.Column("HASH", lambda f: fmt.short(f.hash), style="dim", drop=4),
        fmt.Column("NAME", lambda f: _display_name(f, path), wrap=True),
    ], lambda f: f.path, empty="Empty directory.")


@app.command("cat")
def cat(
    ctx: typer.Context,
    session: SessionArg,
    path: PathArg,
    at: AtOpt = "",
    offset: Annotated[int, typer.Option("--offset", min=0, help="First byte to read.")] = 0,
    length: Annotated[int, typer.Option("--length", min=0,
                                        help="Bytes to read (0 = to the end).")] = 0,
    json_: JsonOpt = False,
) -> None:
    """Print a file's bytes (--json: content hash, size and base64 data)."""
    out = output(ctx, json_)
    c = client(ctx)
    if out.mode == "json":
        out.json(fmt.to_json(c.read_file(session, path, offset=offset, length=length, at=at)))
        return
    for chunk in c.stream_file(session, path, offset=offset, length=length, at=at):
        sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()


@app.command("put")
def put(
    ctx: typer.Context,
    session: SessionArg,
    path: PathArg,
    file: Annotated[str, typer.Argument(
        metavar="[FILE|-]", help="Local file to upload; - or nothing reads stdin.")] = "-",
    if_match: Annotated[str, typer.Option(
        "--if-match", metavar="HASH",
        help="Only write if the current content hash is HASH (* = must exist, "
        "! = must not exist).")] = "",
    mode: Annotated[str, typer.Option("--mode", metavar="OCTAL",
                                      help="Permission bits, e.g. 0755.")] = "",
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Write a file from a local file or stdin. -q prints the new content hash."""
    try:
        mode_bits = int(mode, 8) if mode else 0
    except ValueError:
        raise typer.BadParameter(f"{mode!r} is not an octal mode", param_hint="'--mode'") from None
    out = output(ctx, json_, quiet)
    if file == "-":
        if sys.stdin.isatty():
            out.note("Reading the content from stdin; end it with Ctrl-D.")
        data = sys.stdin.buffer.read()
    else:
        with open(file, "rb") as fh:
            data = fh.read()
    f = client(ctx).write_file(session, path, data, if_match=if_match, mode=mode_bits)
    out.done(f"Wrote {f.path} ({fmt.size(f.size)}, {fmt.short(f.hash)}).", f, f.hash)


@app.command("stat")
def stat(ctx: typer.Context, session: SessionArg, path: PathArg, at: AtOpt = "",
         json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Kind, mode, size, times, content hash and extents of a path."""
    out = output(ctx, json_, quiet)
    out.item(client(ctx).stat(session, path, at=at), FILE_FIELDS, lambda f: f.hash or f.path)


@app.command("mkdir")
def mkdir(
    ctx: typer.Context,
    session: SessionArg,
    path: PathArg,
    parents: Annotated[bool, typer.Option("--parents", "-p",
                                          help="Make parents; no error if it exists.")] = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Make a directory."""
    out = output(ctx, json_, quiet)
    f = client(ctx).mkdir(session, path, parents=parents)
    out.done(f"Made directory {f.path or path}.", f, f.path or path)


@app.command("rm")
def rm(
    ctx: typer.Context,
    session: SessionArg,
    path: PathArg,
    recursive: Annotated[bool, typer.Option("--recursive", "-r",
                                            help="Remove a directory and its contents.")] = False,
    if_match: Annotated[str, typer.Option(
        "--if-match", metavar="HASH", help="Only delete a file whose content hash is HASH.")] = "",
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Remove a file or symlink (or a directory: empty, or any with -r)."""
    out = output(ctx, json_, quiet)
    c = client(ctx)
    if fmt.enum_name(c.stat(session, path).kind) == "directory":
        f = c.rmdir(session, path, recursive=recursive)
    else:
        f = c.delete_file(session, path, if_match=if_match)
    out.done(f"Removed {f.path or path}.", f, f.path or path)


@app.command("mv")
def mv(
    ctx: typer.Context,
    session: SessionArg,
    src: Annotated[str, typer.Argument(metavar="FROM", show_default=False)],
    dst: Annotated[str, typer.Argument(metavar="TO", show_default=False)],
    force: Annotated[bool, typer.Option("--force", "-f",
                                        help="Replace an existing file at TO.")] = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Rename (move) a path."""
    out = output(ctx, json_, quiet)
    f = client(ctx).rename(session, src, dst, overwrite=force)
    out.done(f"Moved {src} -> {f.path or dst}.", f, f.path or dst)
