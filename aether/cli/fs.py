"""`aether fs ...`: read and change the files of a session."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer

from aether.cli import output as fmt
from aether.cli.inputs import read_input, read_text, stdin_hint
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
    ("Xattrs", lambda f: _xattrs(f)),
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


@app.command("manifest")
def manifest(
    ctx: typer.Context,
    session: SessionArg,
    at: AtOpt = "",
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Every path of a state with its kind, mode, size and content hash (what a
    sync compares). --json: the FileInfo list; -q: paths."""
    out = output(ctx, json_, quiet)
    out.table(client(ctx).iter_manifest(session, at=at), [
        fmt.Column("MODE", lambda f: fmt.mode(f.mode, _kind(f))),
        fmt.Column("SIZE", lambda f: "-" if _kind(f) == "directory" else str(f.size),
                   justify="right"),
        fmt.Column("HASH", lambda f: f.hash or "-", style="dim", drop=3),
        fmt.Column("PATH", lambda f: f.path + ("/" if _kind(f) == "directory" else ""),
                   wrap=True),
    ], lambda f: f.path, empty="No files.")


@app.command("changes")
def changes(
    ctx: typer.Context,
    session: SessionArg,
    since: Annotated[str, typer.Option(
        "--since", metavar="STATE",
        help="base (default), a checkpoint (ckp_...) or a commit (cmt_...).")] = "",
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Paths changed in the working state since base, a checkpoint or a commit
    (no contents: see `aether diff`). --json: the ListChangesResponse; -q: paths."""
    out = output(ctx, json_, quiet)
    got = client(ctx).list_changes(session, since=since)
    if out.mode == "json":
        out.json(fmt.to_json(got))
        return
    marks = {"added": "A", "modified": "M", "deleted": "D", "type-changed": "T"}
    out.table(got.changes, [
        fmt.Column("", lambda c: marks.get(fmt.enum_name(c.kind), "?"), style="bold"),
        fmt.Column("PATH", lambda c: c.path, wrap=True),
        fmt.Column("SIZE", lambda c: _size_change(c), justify="right", drop=3),
    ], lambda c: c.path, empty="No changes.")


def _size_change(c: Any) -> str:
    kind = fmt.enum_name(c.kind)
    if kind == "added":
        return fmt.size(c.new_size)
    if kind == "deleted":
        return fmt.size(c.old_size)
    return f"{fmt.size(c.old_size)} -> {fmt.size(c.new_size)}"


@app.command("cat")
def cat(
    ctx: typer.Context,
    session: SessionArg,
    paths: Annotated[list[str], typer.Argument(
        metavar="PATH...", help="Paths inside the session; several are read in one request.",
        show_default=False)],
    at: AtOpt = "",
    offset: Annotated[int, typer.Option("--offset", min=0,
                                        help="First byte to read (one PATH only).")] = 0,
    length: Annotated[int, typer.Option("--length", min=0,
                                        help="Bytes to read (0 = to the end; one PATH "
                                        "only).")] = 0,
    json_: JsonOpt = False,
) -> None:
    """Print a file's bytes, or several files' one after another like cat(1).

    One PATH: the file is streamed (--json: content hash, size and base64 data).
    Several: they are read in one request (fs:read), from one view of the
    state; a file that does not fit in the daemon's answer is asked for again,
    or streamed when it is too big for any answer. A PATH that cannot be read
    (missing, a directory, a symlink) prints an error on stderr and the others
    are still printed; the exit status is then the first failure's (3 not
    found, ...). --json prints the ReadFilesResponse (one entry per PATH;
    files over the daemon's limit stay `truncated`).
    """
    out = output(ctx, json_)
    c = client(ctx)
    if len(paths) > 1:
        if offset or length:
            raise typer.BadParameter("--offset and --length go with one PATH",
                                     param_hint="'--offset' / '--length'")
        _cat_many(out, c, session, paths, at)
        return
    path = paths[0]
    if out.mode == "json":
        out.json(fmt.to_json(c.read_file(session, path, offset=offset, length=length, at=at)))
        return
    for chunk in c.stream_file(session, path, offset=offset, length=length, at=at):
        sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()


def _cat_many(out: fmt.Output, c: Any, session: str, paths: list[str], at: str) -> None:
    """`fs cat` of several paths: fs:read answers in order, as proto3 JSON dicts."""
    import base64

    got: dict[int, dict[str, Any]] = {}
    big: set[int] = set()  # over the daemon's limit: streamed (text) or left truncated (JSON)
    failed: list[str] = []
    written = 0  # paths[:written] are done
    pending = list(range(len(paths)))
    while pending:
        answer = c.as_json().read_files(session, [paths[i] for i in pending], at=at)["files"]
        again, seen_data = [], False
        for i, entry in zip(pending, answer, strict=True):
            if not entry.get("truncated"):
                got[i] = entry
                seen_data = seen_data or bool(entry.get("data"))
            elif not seen_data:
                # Cut before any file of this answer had data: it alone is over
                # the daemon's limit, asking again would not help.
                got[i] = entry
                big.add(i)
            else:
                again.append(i)  # the answer was full: ask again
        if again == pending:  # no progress (a daemon that cuts otherwise): stop asking
            got.update(zip(pending, answer, strict=True))
            big.update(again)
            again = []
        pending = again
        while written < len(paths) and written in got and out.mode != "json":
            entry = got.pop(written)
            if entry.get("error"):
                failed.append(_cat_error(paths[written], entry["error"]))
            elif written in big:
                for chunk in c.stream_file(session, paths[written], at=at):
                    sys.stdout.buffer.write(chunk)
            else:
                sys.stdout.buffer.write(base64.b64decode(entry.get("data") or ""))
            written += 1
        sys.stdout.buffer.flush()
    if out.mode == "json":
        entries = [got[i] for i in range(len(paths))]
        failed = [e["error"]["code"] for e in entries if e.get("error")]
        out.json({"files": entries})
    if failed:
        raise typer.Exit(fmt.exit_code_for(failed[0]))


def _cat_error(path: str, error: dict[str, Any]) -> str:
    """Print a path's error like `fail` does; its code."""
    code, message = error.get("code") or "internal", error.get("message") or ""
    if path not in message:
        message = f"{path}: {message}"
    sys.stdout.buffer.flush()  # what came before it, first
    fmt.fail(code, message)
    return code


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
    offset: Annotated[int | None, typer.Option(
        "--offset", min=0, metavar="N",
        help="Write the bytes at byte N inside the file (extending it if needed) instead "
        "of replacing it; at most 8 MB at a time.", show_default=False)] = None,
    chunked: Annotated[bool, typer.Option(
        "--chunked", help="Upload only the 1 MiB chunks the daemon lacks (hashed here "
        "first), then write the file as its list of chunks: re-uploading a large file "
        "after a small edit moves only the changed chunks. Prints the bytes uploaded "
        "and skipped.")] = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Write a file from a local file or stdin. -q prints the new content hash."""
    try:
        mode_bits = int(mode, 8) if mode else 0
    except ValueError:
        raise typer.BadParameter(f"{mode!r} is not an octal mode", param_hint="'--mode'") from None
    if offset is not None and mode:
        raise typer.BadParameter("--mode goes with a whole-file write, not --offset",
                                 param_hint="'--mode'")
    if offset is not None and chunked:
        raise typer.BadParameter("--chunked writes the whole file, not a range at --offset",
                                 param_hint="'--chunked'")
    out = output(ctx, json_, quiet)
    c = client(ctx)
    if chunked:
        _put_chunked(out, c, session, path, file, if_match, mode_bits)
        return
    if offset is not None:
        data = read_input(file, "content", out, LARGE_UPLOAD + 1)
        if len(data) > LARGE_UPLOAD:
            raise typer.BadParameter(f"more than {LARGE_UPLOAD} bytes for one --offset write",
                                     param_hint="'--offset'")
        f = c.write_range(session, path, data, offset, if_match=if_match)
        out.done(f"Wrote {len(data)} B at {offset} of {f.path} ({fmt.size(f.size)}, "
                 f"{fmt.short(f.hash)}).", f, f.hash)
        return
    if file == "-":
        stdin_hint(out, "content")
        f = _upload(out, c, session, path, sys.stdin.buffer, if_match, mode_bits)
    else:
        with open(file, "rb") as fh:
            f = _upload(out, c, session, path, fh, if_match, mode_bits)
    out.done(f"Wrote {f.path} ({fmt.size(f.size)}, {fmt.short(f.hash)}).", f, f.hash)


def _put_chunked(out: fmt.Output, c: Any, session: str, path: str, file: str, if_match: str,
                 mode: int) -> None:
    from aether.client import ChunkedUpload

    report = ChunkedUpload()
    if file == "-":
        stdin_hint(out, "content")
        f = c.write_file_chunked(session, path, sys.stdin.buffer, if_match=if_match, mode=mode,
                                 report=report)
    else:
        with open(file, "rb") as fh:
            f = c.write_file_chunked(session, path, fh, if_match=if_match, mode=mode,
                                     report=report)
    out.done(f"Wrote {f.path} ({fmt.size(f.size)}, {fmt.short(f.hash)}): uploaded "
             f"{report.uploaded_bytes} B in {report.put_requests} request"
             f"{'s' if report.put_requests != 1 else ''}, skipped {report.skipped_bytes} B "
             f"the daemon already held ({report.chunks} chunk"
             f"{'s' if report.chunks != 1 else ''}).", f, f.hash)


# Content up to this size is sent in one piece; bigger content is streamed (never
# held in memory whole), with a progress bar when people watch stderr.
LARGE_UPLOAD = 8 << 20


def _upload(out: fmt.Output, c: Any, session: str, path: str, fh: Any, if_match: str,
            mode: int) -> Any:
    import itertools

    head = fh.read(LARGE_UPLOAD + 1)
    if len(head) <= LARGE_UPLOAD:
        return c.write_file(session, path, head, if_match=if_match, mode=mode)
    from aether.cli.persistence import file_size, read_chunks

    progress = out.transfer("Uploading")
    try:
        chunks = itertools.chain([head], read_chunks(fh))
        return c.upload_file(session, path, fmt.metered(chunks, progress, file_size(fh)),
                             if_match=if_match, mode=mode)
    finally:
        if progress:
            progress.stop()


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


@app.command("cp")
def cp(
    ctx: typer.Context,
    session: SessionArg,
    src: Annotated[str, typer.Argument(metavar="FROM", show_default=False)],
    dst: Annotated[str, typer.Argument(metavar="TO", show_default=False)],
    at: Annotated[str, typer.Option(
        "--at", metavar="STATE",
        help="Copy FROM as it is in this state (base, ckp_..., cmt_...); default: working.")] = "",
    force: Annotated[bool, typer.Option("--force", "-f",
                                        help="Replace an existing file at TO.")] = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Copy a file or a directory (shares content: costs no copying)."""
    out = output(ctx, json_, quiet)
    f = client(ctx).copy(session, src, dst, overwrite=force, at=at)
    out.done(f"Copied {src} -> {f.path or dst}.", f, f.path or dst)


def _xattrs(f: Any) -> str:
    from aether.shown import shown

    return "\n".join(f"{name}={shown(v)}" for name, v in sorted(f.xattrs.items())) or "-"


def _name_value(option: str, item: str) -> tuple[str, str]:
    name, eq, value = item.partition("=")
    if not eq or not name:
        raise typer.BadParameter(f"{item!r}: want NAME=VALUE", param_hint=f"'{option}'")
    return name, value


def _when(value: str) -> Any:
    """ISO 8601 (a time without a zone is UTC), @SECONDS since the epoch, or now."""
    from datetime import UTC, datetime

    try:
        if value == "now":
            return datetime.now(UTC)
        if value.startswith("@"):
            return datetime.fromtimestamp(float(value[1:]), UTC)
        t = datetime.fromisoformat(value)
    except (ValueError, OverflowError, OSError):
        raise typer.BadParameter(f"{value!r}: want an ISO 8601 time, @SECONDS or now",
                                 param_hint="'--mtime'") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


@app.command("setattr")
def setattr_(
    ctx: typer.Context,
    session: SessionArg,
    path: PathArg,
    mode: Annotated[str, typer.Option("--mode", metavar="OCTAL",
                                      help="Permission bits, e.g. 0755.")] = "",
    mtime: Annotated[str, typer.Option(
        "--mtime", metavar="WHEN",
        help="Modification time: ISO 8601 (UTC unless a zone is given), @SECONDS or now.",
    )] = "",
    set_: Annotated[list[str] | None, typer.Option(
        "--set", metavar="NAME=VALUE",
        help="Set an extended attribute (user.* names) to a text value. Repeatable.")] = None,
    set_base64: Annotated[list[str] | None, typer.Option(
        "--set-base64", metavar="NAME=BASE64",
        help="Set an extended attribute to bytes given as base64. Repeatable.")] = None,
    remove: Annotated[list[str] | None, typer.Option(
        "--remove", metavar="NAME", help="Remove an extended attribute. Repeatable.")] = None,
    clear: Annotated[bool, typer.Option(
        "--clear", help="Remove every extended attribute not given with --set.")] = False,
    if_match: Annotated[str, typer.Option(
        "--if-match", metavar="HASH",
        help="Only change a file whose content hash is HASH (* = must exist).")] = "",
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """chmod, touch and extended attributes of a path; its content is kept.

    Extended attributes show in `fs stat`; a mount shows them as xattrs."""
    import base64
    import binascii

    try:
        mode_bits = int(mode, 8) if mode else None
    except ValueError:
        raise typer.BadParameter(f"{mode!r} is not an octal mode", param_hint="'--mode'") from None
    values: dict[str, bytes] = {}
    for item in set_ or []:
        name, value = _name_value("--set", item)
        values[name] = value.encode("utf-8")
    for item in set_base64 or []:
        name, value = _name_value("--set-base64", item)
        try:
            values[name] = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise typer.BadParameter(f"{name}: not valid base64",
                                     param_hint="'--set-base64'") from None
    if mode_bits is None and not mtime and not values and not remove and not clear:
        raise typer.BadParameter("nothing to change: give --mode, --mtime, --set, --remove "
                                 "or --clear")
    out = output(ctx, json_, quiet)
    f = client(ctx).set_attributes(
        session, path, mode=mode_bits, mtime=_when(mtime) if mtime else None,
        set_xattrs=values, remove_xattrs=remove or [], replace_xattrs=clear, if_match=if_match)
    out.done(f"Changed the attributes of {f.path or path}.", f, f.path or path)


@app.command("ln")
def ln(
    ctx: typer.Context,
    session: SessionArg,
    target: Annotated[str, typer.Argument(
        metavar="TARGET", help="What the link points to (stored as given).", show_default=False)],
    link: Annotated[str, typer.Argument(metavar="LINK", help="Path of the new symlink.",
                                        show_default=False)],
    symbolic: Annotated[bool, typer.Option(
        "--symbolic", "-s", help="Accepted for ln(1) habits: every link is symbolic.")] = True,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Make a symbolic link LINK -> TARGET (like ln -s TARGET LINK)."""
    out = output(ctx, json_, quiet)
    f = client(ctx).symlink(session, link, target)
    out.done(f"Linked {f.path or link} -> {target}.", f, f.path or link)


@app.command("tree")
def tree(
    ctx: typer.Context,
    session: SessionArg,
    path: Annotated[str, typer.Argument(metavar="[PATH]", help="Directory (default: root).",
                                        show_default=False)] = "",
    depth: Annotated[int, typer.Option("--depth", "-L", min=0,
                                       help="Levels to show (0 = all).")] = 0,
    at: AtOpt = "",
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Draw a directory of a session as a tree (--json: the entries, as fs ls -r)."""
    out = output(ctx, json_, quiet)
    c = client(ctx)
    entries = list(c.iter_tree(session, path, recursive=depth == 0, depth=depth, at=at))
    if out.mode != "human":
        out.table(entries, [], lambda f: f.path)
        return
    from rich.markup import escape
    from rich.tree import Tree

    top = path.strip("/")
    root = Tree(f"[bold blue]{escape(session)}:/{escape(top)}[/]", guide_style="dim")
    nodes: dict[str, Any] = {top: root}
    dirs = files = 0
    for f in entries:
        parent = f.path.rpartition("/")[0]
        name = escape(f.path.rpartition("/")[2])
        kind = _kind(f)
        if kind == "directory":
            dirs += 1
            label = f"[bold blue]{name}/[/]"
        elif kind == "symlink":
            files += 1
            label = f"[cyan]{name}[/] -> {escape(f.symlink_target)}"
        else:
            files += 1
            label = f"[green]{name}[/]" if f.mode & 0o111 else name
        node = nodes.get(parent, root).add(label)
        if kind == "directory":
            nodes[f.path] = node
    out.render(root)
    out.console.print(f"\n{dirs} director{'y' if dirs == 1 else 'ies'}, "
                      f"{files} file{'' if files == 1 else 's'}", markup=False)


@app.command("patch")
def patch(
    ctx: typer.Context,
    session: SessionArg,
    patch_file: Annotated[str, typer.Argument(
        metavar="[PATCH|-]", help="A unified diff (git diff, diff -u); - or nothing reads stdin.",
        show_default=False)] = "-",
    path: Annotated[str, typer.Option(
        "--path", metavar="PATH",
        help="Apply a one-file diff to this path, whatever its headers name.")] = "",
    strip: Annotated[int | None, typer.Option(
        "--strip", "-p", min=0, metavar="N",
        help="Leading path components to drop from the diff's file names (default: 1 "
        "for git's a/ b/ names, else 0).", show_default=False)] = None,
    if_match: Annotated[str, typer.Option(
        "--if-match", metavar="HASH",
        help="With --path: only patch if the file's content hash is HASH.")] = "",
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Apply a unified diff to files of a session.

    Each file of the diff (named by its +++ line) is patched on the daemon,
    conditional on the content it was applied to; files the diff creates
    (--- /dev/null) or deletes (+++ /dev/null) are written or removed. Files are
    patched one by one: when one does not apply (a conflict, exit 4), those
    before it stay patched. -q prints the paths.
    """
    out = output(ctx, json_, quiet)
    raw = read_input(patch_file, "diff", out)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise typer.BadParameter("the diff is not UTF-8 text", param_hint="'PATCH'") from None
    files = split_patch(text, strip)
    if not files:
        from aether.errors import InvalidArgument

        raise InvalidArgument("no unified diff found in the input")
    if path and len(files) != 1:
        raise typer.BadParameter(f"--path needs a diff of one file, not {len(files)}",
                                 param_hint="'--path'")
    if if_match and not path:
        raise typer.BadParameter("--if-match goes with --path", param_hint="'--if-match'")
    c = client(ctx)
    results = []
    lines = []
    for fp in files:
        target = path or fp.path
        if fp.deleted:
            # Only the content the diff removes: a file changed since is a conflict.
            import blake3

            seen = blake3.blake3(fp.old_content().encode()).hexdigest()
            f = c.delete_file(session, target, if_match=if_match or seen)
            lines.append(f"Deleted {f.path or target}.")
        elif fp.created:
            f = c.write_file(session, target, fp.new_content().encode(),
                             if_match=if_match or "!")
            lines.append(f"Created {f.path} ({fmt.size(f.size)}).")
        else:
            f = c.patch_file(session, target, fp.text, if_match=if_match)
            lines.append(f"Patched {f.path} ({fmt.short(f.hash)}).")
        results.append(f)
    if out.mode == "json":
        out.json(fmt.to_json(results))
    elif out.mode == "quiet":
        for f in results:
            print(f.path)
    else:
        for line in lines:
            out.console.print(line, markup=False)


@app.command("apply")
def apply(
    ctx: typer.Context,
    session: SessionArg,
    file: Annotated[str, typer.Argument(
        metavar="FILE|-", help="The changes, as JSON (see above); - reads stdin.",
        show_default=False)],
    atomic: Annotated[bool, typer.Option(
        "--atomic", help="All or nothing: the first change that fails rolls every one "
        "back, and its error is the command's.")] = False,
    batch_id: Annotated[str, typer.Option(
        "--batch-id", metavar="ID",
        help="Make running the same command again safe: a batch with this id that "
        "was applied already (its answer lost) is answered from the daemon's record, "
        "not applied twice.")] = "",
    json_: JsonOpt = False,
) -> None:
    """Apply many changes in one request and one transaction (fs:apply).

    \b
    FILE (- = stdin) holds the changes in the proto3 JSON of FsOp, in order:
    a JSON array of them, an ApplyRequest object {"ops": [...]}, or JSON lines
    (one op per line). Each op is one of:
      {"write": {"path": "a/b.txt", "text": "hello\\n", "createParents": true}}
      {"write": {"path": "logo.png", "data": "iVBORw0...", "mode": 420}}
      {"delete": {"path": "old.txt", "ifMatch": "HASH"}}
      {"mkdir": {"path": "src/lib", "parents": true}}
      {"rmdir": {"path": "build", "recursive": true}}
      {"rename": {"fromPath": "a.txt", "toPath": "b.txt", "overwrite": true}}
      {"symlink": {"path": "latest", "target": "v2"}}
      {"setAttributes": {"path": "run.sh", "mode": 493, "setXattrs": {"user.k": "dg=="}}}
    A write takes its bytes as base64 "data", or as UTF-8 "text" (this command's
    shorthand). Fields are those of the single requests; as over gRPC, a write
    creates missing parents only with "createParents": true.

    The changes run in order, each seeing what the ones before it did. Without
    --atomic one that fails changes nothing and the rest still run. Prints one
    line per change (its index, ok or the error code, the path); --json prints
    the ApplyResponse. Exits non-zero when a change failed, with the exit code of
    the first failure's error code (3 not found, 4 conflict, ...).
    """
    out = output(ctx, json_)
    ops = parse_ops(read_text(file, "changes", out))
    got = client(ctx).apply(session, ops, atomic=atomic, batch_id=batch_id)
    rows = list(enumerate(zip(ops, got.results, strict=True)))
    if out.mode == "json":
        out.json(fmt.to_json(got))
    else:
        out.table(rows, [
            fmt.Column("#", lambda r: str(r[0]), justify="right"),
            fmt.Column("RESULT", lambda r: r[1][1].error.code if r[1][1].error else "ok",
                       style="bold"),
            fmt.Column("OP", lambda r: _op_kind(r[1][0])),
            fmt.Column("PATH", lambda r: _op_path(r[1][0]), wrap=True),
            fmt.Column("ERROR", lambda r: r[1][1].error.message if r[1][1].error else "",
                       wrap=True, drop=1),
        ], lambda r: str(r[0]), empty="No changes.")
    failed = [r.error for r in got.results if r.error is not None]
    if failed:
        out.note(f"{len(failed)} of {len(ops)} change{'s' if len(ops) != 1 else ''} failed.")
        raise typer.Exit(fmt.exit_code_for(failed[0].code))


_OP_KINDS = ("write", "delete", "mkdir", "rmdir", "rename", "symlink", "set_attributes")


def _op_kind(op: Any) -> str:
    return next((k for k in _OP_KINDS if getattr(op, k) is not None), "?")


def _op_path(op: Any) -> str:
    kind = _op_kind(op)
    m = getattr(op, kind, None)
    if kind == "rename":
        return f"{m.from_path} -> {m.to_path}"
    if kind == "symlink":
        return f"{m.path} -> {m.target}"
    return m.path if m is not None else ""


def parse_ops(text: str) -> list[Any]:
    """FsOp messages from a JSON array of ops, an {"ops": [...]} object, or JSON
    lines of ops. A write's "text" becomes its "data"."""
    import json

    try:
        whole: Any = json.loads(text)
    except ValueError:
        whole = None
        items = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                items.append(json.loads(line))
            except ValueError as exc:
                raise typer.BadParameter(f"line {n}: not JSON: {exc}",
                                         param_hint="'FILE'") from None
    if whole is not None:
        if isinstance(whole, list):
            items = whole
        elif isinstance(whole, dict) and "ops" in whole:
            extra = set(whole) - {"ops"}
            if extra or not isinstance(whole["ops"], list):
                raise typer.BadParameter('want {"ops": [op, ...]} (the session, --atomic '
                                         "and --batch-id are given on the command line)", param_hint="'FILE'")
            items = whole["ops"]
        else:
            items = [whole]  # JSON lines of one op
    ops = [_op(i, item) for i, item in enumerate(items)]
    if not ops:
        raise typer.BadParameter("no changes in the input", param_hint="'FILE'")
    return ops


def _op(index: int, item: Any) -> Any:
    import base64
    import binascii

    from aether import pb

    where = f"op {index}"
    if isinstance(item, dict) and "setAttributes" in item:  # the proto3 JSON name
        item = {"set_attributes" if k == "setAttributes" else k: v for k, v in item.items()}
    if not isinstance(item, dict) or len(item) != 1 or next(iter(item)) not in _OP_KINDS:
        raise typer.BadParameter(f"{where}: want an object with one key of "
                                 f"{', '.join(_OP_KINDS)}", param_hint="'FILE'")
    kind, body = next(iter(item.items()))
    if not isinstance(body, dict):
        raise typer.BadParameter(f"{where}: {kind} must be an object", param_hint="'FILE'")
    body = dict(body)
    if kind == "write":
        if "text" in body:
            if "data" in body:
                raise typer.BadParameter(f"{where}: give data or text, not both",
                                         param_hint="'FILE'")
            text = body.pop("text")
            if not isinstance(text, str):
                raise typer.BadParameter(f"{where}: text must be a string", param_hint="'FILE'")
            body["data"] = base64.b64encode(text.encode("utf-8")).decode("ascii")
        elif "data" in body:
            try:
                base64.b64decode(body["data"], validate=True)
            except (binascii.Error, TypeError, ValueError):
                raise typer.BadParameter(f"{where}: data is not valid base64",
                                         param_hint="'FILE'") from None
    try:
        return pb.FsOp.from_dict({kind: body})
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise typer.BadParameter(f"{where}: {exc}", param_hint="'FILE'") from None


# ---- unified diffs, split per file (the daemon applies one file's diff at a time)

_HUNK = re.compile(r"^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@")


@dataclass
class FilePatch:
    old: str | None  # None: /dev/null (the diff creates the file)
    new: str | None  # None: /dev/null (the diff deletes the file)
    lines: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.lines)

    @property
    def created(self) -> bool:
        return self.old is None

    @property
    def deleted(self) -> bool:
        return self.new is None

    @property
    def path(self) -> str:
        return (self.new if self.new is not None else self.old) or ""

    def new_content(self) -> str:
        """A created file's content: its added lines."""
        return self._side("+")

    def old_content(self) -> str:
        """A deleted file's content, as the diff saw it: its removed lines."""
        return self._side("-")

    def _side(self, tag: str) -> str:
        out: list[str] = []
        last = ""
        for line in self.lines[2:]:
            if line.startswith(("+", "-", " ")):
                last = line[:1]
                if last == tag:
                    out.append(line[1:])
            elif line.startswith("\\") and out and last == tag:  # "\ No newline at end of file"
                out[-1] = out[-1].rstrip("\r\n")
        return "".join(out)


def _header_path(value: str, strip: int | None, git: bool) -> str | None:
    name = value.rstrip("\r\n").split("\t")[0].strip()
    if len(name) > 1 and name.startswith('"') and name.endswith('"'):
        name = name[1:-1]
    if name == "/dev/null":
        return None
    n = (1 if git else 0) if strip is None else strip
    parts = name.split("/")
    if n >= len(parts):
        raise typer.BadParameter(f"cannot strip {n} component(s) from {name!r}",
                                 param_hint="'--strip'")
    return "/".join(parts[n:])


def split_patch(text: str, strip: int | None = None) -> list[FilePatch]:
    """The per-file parts of a unified diff (text outside them, like git's
    "diff --git" and "index" lines, is dropped). Hunk line counts decide where a
    part ends, so removed lines that look like headers stay in their hunk."""
    lines = text.splitlines(keepends=True)
    out: list[FilePatch] = []
    i, n = 0, len(lines)
    while i < n:
        if not (lines[i].startswith("--- ") and i + 1 < n and lines[i + 1].startswith("+++ ")):
            i += 1
            continue
        old_raw, new_raw = lines[i][4:], lines[i + 1][4:]
        git = (old_raw.startswith(("a/", "/dev/null")) and new_raw.startswith(("b/", "/dev/null"))
               and not (old_raw.startswith("/dev/null") and new_raw.startswith("/dev/null")))
        fp = FilePatch(_header_path(old_raw, strip, git), _header_path(new_raw, strip, git),
                       [lines[i], lines[i + 1]])
        i += 2
        while i < n and (m := _HUNK.match(lines[i])):
            old_left = int(m.group(1) if m.group(1) is not None else 1)
            new_left = int(m.group(2) if m.group(2) is not None else 1)
            fp.lines.append(lines[i])
            i += 1
            while i < n and (old_left > 0 or new_left > 0 or lines[i].startswith("\\")):
                line = lines[i]
                tag = line[:1]
                if tag == "-":
                    old_left -= 1
                elif tag == "+":
                    new_left -= 1
                elif tag != "\\":  # context (" ", or an empty line from a stripping editor)
                    old_left -= 1
                    new_left -= 1
                fp.lines.append(line if line.endswith("\n") else line + "\n")
                i += 1
        if len(fp.lines) > 2 and (fp.old is not None or fp.new is not None):
            out.append(fp)
    return out
