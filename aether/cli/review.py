"""`aether review ...`: comments, annotations and approvals of a session.

An approval is bound to the exact state (root hash) it was requested for: a
change after it makes it stale, and a session whose policy requires approval
commits only with an approval of its current state.
"""

from __future__ import annotations

import getpass
from typing import Annotated, Any

import typer

from aether.cli import output as fmt
from aether.cli.inputs import read_text
from aether.cli.options import JsonOpt, QuietOpt, SessionArg, client, group, output

app = group("Review a session: comments, annotations, approvals.")

STATES = ("pending", "approved", "rejected", "stale")


def _me() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment
        return ""


def _text(value: str, what: str) -> str:
    """A body/reason argument; - reads it from stdin."""
    return value if value != "-" else read_text("-", what, None)


def _first_line(text: str, width: int = 0) -> str:
    line = (text or "-").strip().splitlines()[0] if (text or "").strip() else "-"
    if width and len(line) > width:
        line = line[:width - 1] + "…"
    return line


AuthorOpt = Annotated[str | None, typer.Option(
    "--author", help="Author (default: your user name).", show_default=False)]
PathFilterOpt = Annotated[str, typer.Option(
    "--path", metavar="PATH", help="Only those on PATH (a file, or a directory and below).")]

# ---- comments

COMMENT_FIELDS = [
    ("ID", lambda c: c.id),
    ("Session", lambda c: c.session_id),
    ("Reply to", lambda c: c.parent_id or "-"),
    ("Path", lambda c: c.path or "-"),
    ("Author", lambda c: c.author or "-"),
    ("Created", lambda c: fmt.when(c.create_time)),
    ("Body", lambda c: c.body),
]

COMMENT_COLUMNS = [
    fmt.Column("ID", lambda c: c.id, style="cyan"),
    fmt.Column("REPLY TO", lambda c: c.parent_id or "-", drop=4),
    fmt.Column("PATH", lambda c: c.path or "-", wrap=True, drop=3),
    fmt.Column("AUTHOR", lambda c: c.author or "-", drop=2),
    fmt.Column("CREATED", lambda c: fmt.ago(c.create_time), drop=5),
    fmt.Column("BODY", lambda c: _first_line(c.body, 80), wrap=True),
]


@app.command("comment")
def comment(
    ctx: typer.Context,
    session: SessionArg,
    body: Annotated[str, typer.Argument(metavar="BODY|-", help="The comment (- = stdin).",
                                        show_default=False)],
    path: Annotated[str, typer.Option("--path", metavar="PATH",
                                      help="The file or directory it is about.")] = "",
    reply_to: Annotated[str, typer.Option(
        "--reply-to", metavar="COMMENT", help="Reply to this comment (cmn_...): joins its "
        "thread and path.")] = "",
    author: AuthorOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Comment on a session or one of its paths. --json prints the Comment; -q its id."""
    out = output(ctx, json_, quiet)
    c = client(ctx).create_comment(session, _text(body, "comment"), path=path,
                                   parent_id=reply_to,
                                   author=_me() if author is None else author)
    out.item(c, COMMENT_FIELDS, lambda c: c.id)


@app.command("comments")
def comments(ctx: typer.Context, session: SessionArg, path: PathFilterOpt = "",
             json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """List comments, oldest first. --json: a list of Comment; -q: ids."""
    out = output(ctx, json_, quiet)
    out.table(client(ctx).iter_comments(session, path=path), COMMENT_COLUMNS, lambda c: c.id,
              empty="No comments.")


# ---- annotations

ANNOTATION_FIELDS = [
    ("ID", lambda a: a.id),
    ("Session", lambda a: a.session_id),
    ("Path", lambda a: a.path),
    ("Lines", lambda a: _lines(a)),
    ("Severity", lambda a: a.severity or "-"),
    ("Author", lambda a: a.author or "-"),
    ("File hash", lambda a: a.file_hash or "-"),
    ("Created", lambda a: fmt.when(a.create_time)),
    ("Body", lambda a: a.body),
]


def _lines(a: Any) -> str:
    return str(a.start_line) if a.start_line == a.end_line else f"{a.start_line}-{a.end_line}"


ANNOTATION_COLUMNS = [
    fmt.Column("ID", lambda a: a.id, style="cyan"),
    fmt.Column("PATH", lambda a: a.path, wrap=True),
    fmt.Column("LINES", _lines, justify="right"),
    fmt.Column("SEVERITY", lambda a: a.severity or "-", drop=3),
    fmt.Column("AUTHOR", lambda a: a.author or "-", drop=2),
    fmt.Column("BODY", lambda a: _first_line(a.body, 80), wrap=True),
]


def _parse_lines(text: str) -> tuple[int, int]:
    start, sep, end = text.partition("-")
    if not sep:
        start, sep, end = text.partition(":")
    try:
        first = int(start)
        last = int(end) if sep else first
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not N or N-M", param_hint="'LINES'") from None
    if first < 1 or last < first:
        raise typer.BadParameter(f"{text!r}: lines count from 1 and the range must not run "
                                 "backwards", param_hint="'LINES'")
    return first, last


@app.command("annotate")
def annotate(
    ctx: typer.Context,
    session: SessionArg,
    path: Annotated[str, typer.Argument(metavar="PATH", help="The file annotated.",
                                        show_default=False)],
    lines: Annotated[str, typer.Argument(metavar="LINES",
                                         help="A line (N) or a range (N-M), counted from 1.",
                                         show_default=False)],
    body: Annotated[str, typer.Argument(metavar="BODY|-", help="The note (- = stdin).",
                                        show_default=False)],
    severity: Annotated[str, typer.Option(
        "--severity", "-s", metavar="LEVEL",
        help="info, warning, error, or any word your tools agree on.")] = "",
    author: AuthorOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Annotate lines of a file. The annotation keeps the file's content hash, so
    readers can tell when the lines changed since. --json: the Annotation; -q: its id."""
    start, end = _parse_lines(lines)
    out = output(ctx, json_, quiet)
    a = client(ctx).create_annotation(session, path, start, end, _text(body, "annotation"),
                                      severity=severity,
                                      author=_me() if author is None else author)
    out.item(a, ANNOTATION_FIELDS, lambda a: a.id)


@app.command("annotations")
def annotations(ctx: typer.Context, session: SessionArg, path: PathFilterOpt = "",
                json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """List annotations. --json: a list of Annotation; -q: ids."""
    out = output(ctx, json_, quiet)
    out.table(client(ctx).iter_annotations(session, path=path), ANNOTATION_COLUMNS,
              lambda a: a.id, empty="No annotations.")


@app.command("rm-annotation")
def rm_annotation(
    ctx: typer.Context,
    session: SessionArg,
    annotation: Annotated[str, typer.Argument(metavar="ANNOTATION", help="ann_...",
                                              show_default=False)],
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Delete an annotation. --json: the deleted Annotation; -q: its id."""
    out = output(ctx, json_, quiet)
    a = client(ctx).delete_annotation(session, annotation)
    out.done(f"Deleted annotation {a.id}.", a, a.id)


# ---- approvals

APPROVAL_FIELDS = [
    ("ID", lambda a: a.id),
    ("Session", lambda a: a.session_id),
    ("State", lambda a: fmt.enum_name(a.state)),
    ("Title", lambda a: a.title or "-"),
    ("Root", lambda a: a.root_hash or "-"),
    ("Requester", lambda a: a.requester or "-"),
    ("Reviewer", lambda a: a.reviewer or "-"),
    ("Reason", lambda a: a.reason or "-"),
    ("Requested", lambda a: fmt.when(a.create_time)),
    ("Decided", lambda a: fmt.when(a.decide_time)),
]

APPROVAL_COLUMNS = [
    fmt.Column("ID", lambda a: a.id, style="cyan"),
    fmt.Column("STATE", lambda a: fmt.enum_name(a.state)),
    fmt.Column("TITLE", lambda a: a.title or "-", wrap=True),
    fmt.Column("ROOT", lambda a: fmt.short(a.root_hash), drop=4),
    fmt.Column("REQUESTER", lambda a: a.requester or "-", drop=3),
    fmt.Column("REVIEWER", lambda a: a.reviewer or "-", drop=2),
    fmt.Column("REASON", lambda a: _first_line(a.reason, 60), wrap=True, drop=5),
    fmt.Column("REQUESTED", lambda a: fmt.ago(a.create_time), drop=6),
]

ApprovalArg = Annotated[str, typer.Argument(metavar="APPROVAL", help="apr_...",
                                            show_default=False)]


@app.command("request")
def request(
    ctx: typer.Context,
    session: SessionArg,
    title: Annotated[str, typer.Option("--title", "-m", help="What is to be approved.")] = "",
    requester: Annotated[str | None, typer.Option(
        "--requester", help="Who asks (default: your user name).", show_default=False)] = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Request approval of the session's current state. --json: the Approval; -q: its id."""
    out = output(ctx, json_, quiet)
    a = client(ctx).request_approval(session, title=title,
                                     requester=_me() if requester is None else requester)
    out.item(a, APPROVAL_FIELDS, lambda a: a.id)


@app.command("approvals")
def approvals(
    ctx: typer.Context,
    session: SessionArg,
    state_: Annotated[str, typer.Option(
        "--state", metavar="STATE", help="pending, approved, rejected or stale.")] = "",
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """List approvals, newest first. --json: a list of Approval; -q: ids."""
    if state_ and state_.lower() not in STATES:
        raise typer.BadParameter("want pending, approved, rejected or stale",
                                 param_hint="'--state'")
    out = output(ctx, json_, quiet)
    out.table(client(ctx).iter_approvals(session, state=state_ or None), APPROVAL_COLUMNS,
              lambda a: a.id, empty="No approvals.")


ReviewerOpt = Annotated[str | None, typer.Option(
    "--reviewer", help="Who decides (default: your user name).", show_default=False)]


@app.command("approve")
def approve(
    ctx: typer.Context,
    session: SessionArg,
    approval: ApprovalArg,
    reason: Annotated[str, typer.Option("--reason", "-m", help="Why (optional).")] = "",
    reviewer: ReviewerOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Approve (refused with exit 1 when the session changed since the request).
    --json: the Approval; -q: its id."""
    out = output(ctx, json_, quiet)
    a = client(ctx).approve(session, approval, reason=reason,
                            reviewer=_me() if reviewer is None else reviewer)
    out.done(f"Approved {a.id} (root {fmt.short(a.root_hash)}).", a, a.id)


@app.command("reject")
def reject(
    ctx: typer.Context,
    session: SessionArg,
    approval: ApprovalArg,
    reason: Annotated[str, typer.Option(
        "--reason", "-m", help="Why (required; - = stdin).", show_default=False)],
    reviewer: ReviewerOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Reject, with a reason. --json: the Approval; -q: its id."""
    out = output(ctx, json_, quiet)
    a = client(ctx).reject(session, approval, reason=_text(reason, "reason"),
                           reviewer=_me() if reviewer is None else reviewer)
    out.done(f"Rejected {a.id}: {_first_line(a.reason)}", a, a.id)
