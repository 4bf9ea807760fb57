"""`aether bus ...`: a session's message bus (publish, read, tail -f).

Every message has a per-session cursor that only grows; read or follow "after"
a cursor to resume exactly where you stopped. Payloads are bytes: people see
text (or `<N bytes, TYPE>`), `--json` carries them base64 (proto3 JSON).
"""

from __future__ import annotations

import getpass
from typing import Annotated, Any

import typer

from aether.cli import output as fmt
from aether.cli.coord import list_log, preview, read_value, tail
from aether.cli.options import JsonOpt, QuietOpt, SessionArg, client, group, output

app = group("The message bus of a session: publish, read, tail -f.")

TopicsOpt = Annotated[list[str] | None, typer.Option(
    "--topic", "-t", metavar="TOPIC", help="Only this topic (repeatable).",
    show_default=False)]
FromOpt = Annotated[int | None, typer.Option(
    "--from", metavar="CURSOR", min=0,
    help="Messages after this cursor (0 = from the oldest kept).", show_default=False)]


def _sender() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment
        return ""


def message_line(m: Any) -> str:
    """One message for people: cursor, time, topic, <sender>, payload."""
    parts = [f"{m.cursor:>6}", fmt.when(m.publish_time), m.topic]
    if m.sender:
        parts.append(f"<{m.sender}>")
    parts.append(preview(m.payload, m.content_type))
    return "  ".join(parts)


MESSAGE_COLUMNS = [
    fmt.Column("CURSOR", lambda m: str(m.cursor), justify="right", style="cyan"),
    fmt.Column("TIME", lambda m: fmt.when(m.publish_time), drop=2),
    fmt.Column("TOPIC", lambda m: m.topic, wrap=True),
    fmt.Column("SENDER", lambda m: m.sender or "-", drop=3),
    fmt.Column("TYPE", lambda m: m.content_type or "-", drop=4),
    fmt.Column("PAYLOAD", lambda m: preview(m.payload, m.content_type, 80), wrap=True),
]


@app.command("publish")
def publish(
    ctx: typer.Context,
    session: SessionArg,
    topic: Annotated[str, typer.Argument(metavar="TOPIC", help="Topic, e.g. agents/planner.",
                                         show_default=False)],
    message: Annotated[str | None, typer.Argument(
        metavar="[MESSAGE|-]", help="The payload as text; - (or none and no --file) reads "
        "stdin.", show_default=False)] = None,
    file: Annotated[str | None, typer.Option(
        "--file", "-f", metavar="FILE", help="Read the payload from FILE (- = stdin).",
        show_default=False)] = None,
    content_type: Annotated[str, typer.Option(
        "--content-type", metavar="TYPE", help="Content type of the payload.")] = "",
    sender: Annotated[str | None, typer.Option(
        "--sender", help="Who sends it (default: your user name).", show_default=False)] = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Publish a message on a topic. --json prints the BusMessage; -q its cursor."""
    out = output(ctx, json_, quiet)
    data = read_value(message, file, out, "MESSAGE")
    m = client(ctx).publish(session, topic, data, content_type=content_type,
                            sender=_sender() if sender is None else sender)
    out.done(f"Published {fmt.size(len(m.payload))} on {m.topic} (cursor {m.cursor}).", m,
             str(m.cursor))


@app.command("read")
def read(
    ctx: typer.Context,
    session: SessionArg,
    from_: FromOpt = None,
    topic: TopicsOpt = None,
    limit: Annotated[int, typer.Option(
        "--limit", help="Show at most this many (0 = all).", min=0)] = 0,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """List the messages there now (after --from), oldest first. --json: a list of
    BusMessage (payload base64); -q: cursors."""
    out = output(ctx, json_, quiet)
    list_log(out, client(ctx).iter_bus, session, after=from_, limit=limit,
             columns=MESSAGE_COLUMNS, empty="No messages.", topics=topic or [])


@app.command("tail")
def tail_(
    ctx: typer.Context,
    session: SessionArg,
    follow: Annotated[bool, typer.Option(
        "--follow", "-f", help="Keep printing new messages until Ctrl-C (exit 130) or "
        "the session is deleted (exit 0).")] = False,
    from_: FromOpt = None,
    lines: Annotated[int, typer.Option(
        "--lines", "-n", metavar="N", min=0,
        help="Without --from: start with the newest N messages.")] = 10,
    topic: TopicsOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Print the newest messages (or those after --from), one per line; with -f,
    then new ones as they are published. --json: one BusMessage JSON object per
    line (JSON lines, payload base64); -q: cursors."""
    out = output(ctx, json_, quiet)
    c = client(ctx)
    tail(out, c.read_bus, c.follow_bus, session, items="messages", line=message_line,
         after=from_, last=lines, keep_following=follow, topics=topic or [])
