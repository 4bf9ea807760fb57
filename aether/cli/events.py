"""`aether events ...`: a session's activity log (ls, tail -f).

Events record what happened to a session: file.written, file.deleted,
checkpoint.created, session.restored, commit.created, session.forked,
comment.created, approval.approved, cache.written, ... Each has a per-session
cursor that only grows; list or follow "after" a cursor to resume.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from aether.cli import output as fmt
from aether.cli.coord import list_log, tail
from aether.cli.options import JsonOpt, QuietOpt, SessionArg, client, group, output

app = group("The activity log of a session: ls, tail -f from a cursor.")

TypesOpt = Annotated[list[str] | None, typer.Option(
    "--type", "-t", metavar="TYPE", help="Only events of this type, e.g. file.written "
    "(repeatable).", show_default=False)]
ExcludeOpt = Annotated[str, typer.Option(
    "--exclude-origin", metavar="ORIGIN",
    help="Leave out the events of changes sent with this Aether-Origin (a client's own).")]
FromOpt = Annotated[int | None, typer.Option(
    "--from", metavar="CURSOR", min=0, help="Events after this cursor (0 = from the first).",
    show_default=False)]


def event_line(e: Any) -> str:
    """One event for people: cursor, time, type, path, actor, attributes."""
    parts = [f"{e.cursor:>6}", fmt.when(e.time), e.type]
    if e.path:
        parts.append(e.path)
    if e.actor:
        parts.append(f"by {e.actor}")
    if e.origin:
        parts.append(f"from {e.origin}")
    if e.attributes:
        parts.append(fmt.pairs(e.attributes))
    return "  ".join(parts)


EVENT_COLUMNS = [
    fmt.Column("CURSOR", lambda e: str(e.cursor), justify="right", style="cyan"),
    fmt.Column("TIME", lambda e: fmt.when(e.time), drop=2),
    fmt.Column("TYPE", lambda e: e.type),
    fmt.Column("PATH", lambda e: e.path or "-", wrap=True),
    fmt.Column("ACTOR", lambda e: e.actor or "-", drop=3),
    fmt.Column("ATTRIBUTES", lambda e: fmt.pairs(e.attributes), wrap=True, drop=4),
    fmt.Column("ORIGIN", lambda e: e.origin or "-", drop=5),
]


@app.command("ls")
def ls(
    ctx: typer.Context,
    session: SessionArg,
    from_: FromOpt = None,
    type_: TypesOpt = None,
    limit: Annotated[int, typer.Option(
        "--limit", help="Show at most this many (0 = all).", min=0)] = 0,
    exclude_origin: ExcludeOpt = "",
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """List the events there now (after --from), oldest first. --json: a list of
    Event; -q: cursors."""
    out = output(ctx, json_, quiet)
    list_log(out, client(ctx).iter_events, session, after=from_, limit=limit,
             columns=EVENT_COLUMNS, empty="No events.", types=type_ or [],
             exclude_origin=exclude_origin)


@app.command("tail")
def tail_(
    ctx: typer.Context,
    session: SessionArg,
    follow: Annotated[bool, typer.Option(
        "--follow", "-f", help="Keep printing new events until Ctrl-C (exit 130) or the "
        "session is deleted (exit 0).")] = False,
    from_: FromOpt = None,
    lines: Annotated[int, typer.Option(
        "--lines", "-n", metavar="N", min=0,
        help="Without --from: start with the newest N events.")] = 10,
    type_: TypesOpt = None,
    exclude_origin: ExcludeOpt = "",
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Print the newest events (or those after --from), one per line; with -f,
    then new ones as they happen. --json: one Event JSON object per line (JSON
    lines); -q: cursors."""
    out = output(ctx, json_, quiet)
    c = client(ctx)
    tail(out, c.list_events, c.follow_events, session, items="events", line=event_line,
         after=from_, last=lines, keep_following=follow, types=type_ or [],
         exclude_origin=exclude_origin)
