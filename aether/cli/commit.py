"""`aether commit ...`: durable states that outlive their session."""

from __future__ import annotations

import getpass
from typing import Annotated, Any

import typer

from aether.cli import output as fmt
from aether.cli.options import JsonOpt, QuietOpt, SessionArg, client, group, output

app = group("Commits: durable results that outlive their session.")

COMMIT_FIELDS = [
    ("ID", lambda c: c.id),
    ("Session", lambda c: c.session_id or "-"),
    ("Parent", lambda c: c.parent_commit_id or "-"),
    ("Message", lambda c: c.message or "-"),
    ("Author", lambda c: c.author or "-"),
    ("Root", lambda c: c.root_hash or "-"),
    ("Files", lambda c: f"{c.file_count} ({fmt.size(c.total_bytes)})"),
    ("Approvals", lambda c: ", ".join(c.approval_ids) or "-"),
    ("Created", lambda c: fmt.when(c.create_time)),
]

COMMIT_COLUMNS = [
    fmt.Column("ID", lambda c: c.id, style="cyan"),
    fmt.Column("MESSAGE", lambda c: (c.message or "-").splitlines()[0], wrap=True),
    fmt.Column("AUTHOR", lambda c: c.author or "-", wrap=True, drop=3),
    fmt.Column("FILES", lambda c: str(c.file_count), justify="right", drop=5),
    fmt.Column("ROOT", lambda c: fmt.short(c.root_hash), drop=4),
    fmt.Column("CREATED", lambda c: fmt.ago(c.create_time), drop=2),
]


def _default_author() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment
        return ""


def show_commit(out: fmt.Output, c: Any) -> None:
    out.item(c, COMMIT_FIELDS, lambda c: c.id)


@app.command("create")
def create(
    ctx: typer.Context,
    session: SessionArg,
    message: Annotated[str, typer.Option(
        "--message", "-m", help="What this commit is (required).", show_default=False)],
    author: Annotated[str | None, typer.Option(
        "--author", help="Author (default: your user name).", show_default=False)] = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Commit a session's working state (refused when its policy needs an approval)."""
    out = output(ctx, json_, quiet)
    c = client(ctx).create_commit(
        session, message=message, author=_default_author() if author is None else author)
    show_commit(out, c)


@app.command("ls")
def ls(ctx: typer.Context, session: SessionArg, json_: JsonOpt = False,
       quiet: QuietOpt = False) -> None:
    """List a session's commits, newest first."""
    out = output(ctx, json_, quiet)
    out.table(client(ctx).iter_commits(session), COMMIT_COLUMNS, lambda c: c.id,
              empty="No commits.")


@app.command("show")
def show(
    ctx: typer.Context,
    commit: Annotated[str, typer.Argument(metavar="COMMIT", help="Commit id (cmt_...).",
                                          show_default=False)],
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Show a commit (its session may be gone)."""
    out = output(ctx, json_, quiet)
    show_commit(out, client(ctx).get_commit(commit))
