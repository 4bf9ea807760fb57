"""`aether template ...`: named states that new sessions start from."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from aether.cli import output as fmt
from aether.cli.options import (
    JsonOpt,
    LabelOpt,
    QuietOpt,
    YesOpt,
    client,
    group,
    output,
    parse_labels,
)

app = group("Templates: named states that new sessions start from.")

NameArg = Annotated[str, typer.Argument(
    metavar="NAME", help="Template name: a-z, 0-9, '.', '_', '-' (up to 63).",
    show_default=False)]


def _source(t: Any) -> str:
    ref = f"{t.source_kind} {t.source_ref}".strip() or "-"
    if t.source_at:
        ref += f" at {t.source_at}"
    return ref


TEMPLATE_FIELDS = [
    ("Name", lambda t: t.name),
    ("Description", lambda t: t.description or "-"),
    ("Source", _source),
    ("Session", lambda t: t.source_session_id or "-"),
    ("Root", lambda t: t.root_hash or "-"),
    ("Files", lambda t: f"{t.file_count} ({fmt.size(t.total_bytes)})"),
    ("Labels", lambda t: fmt.pairs(t.labels)),
    ("Created", lambda t: fmt.when(t.create_time)),
]

TEMPLATE_COLUMNS = [
    fmt.Column("NAME", lambda t: t.name, style="cyan"),
    fmt.Column("DESCRIPTION", lambda t: (t.description or "-").splitlines()[0], wrap=True,
               drop=5),
    fmt.Column("SOURCE", _source, drop=4),
    fmt.Column("FILES", lambda t: str(t.file_count), justify="right", drop=6),
    fmt.Column("SIZE", lambda t: fmt.size(t.total_bytes), justify="right", drop=3),
    fmt.Column("LABELS", lambda t: fmt.pairs(t.labels), wrap=True, drop=7),
    fmt.Column("CREATED", lambda t: fmt.ago(t.create_time), drop=2),
]


def show_template(out: fmt.Output, t: Any) -> None:
    out.item(t, TEMPLATE_FIELDS, lambda t: t.name)


@app.command("create")
def create(
    ctx: typer.Context,
    name: NameArg,
    from_session: Annotated[str | None, typer.Option(
        "--from-session", metavar="ID",
        help="A session's working state (or the state --at names in it).",
        show_default=False)] = None,
    at: Annotated[str | None, typer.Option(
        "--at", metavar="STATE",
        help="With --from-session: base, a checkpoint (ckp_...) or a commit (cmt_...).",
        show_default=False)] = None,
    from_checkpoint: Annotated[str | None, typer.Option(
        "--from-checkpoint", metavar="ID", help="A checkpoint (ckp_...).",
        show_default=False)] = None,
    from_commit: Annotated[str | None, typer.Option(
        "--from-commit", metavar="ID", help="A commit (cmt_...).", show_default=False)] = None,
    description: Annotated[str, typer.Option(
        "--description", "-d", help="What the template is for.")] = "",
    label: LabelOpt = None,
    replace: Annotated[bool, typer.Option(
        "--replace", help="Overwrite a template of the same name.")] = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Name a state as a template: a session's, a checkpoint's or a commit's."""
    given = [flag for flag, v in (
        ("--from-session", from_session), ("--from-checkpoint", from_checkpoint),
        ("--from-commit", from_commit),
    ) if v]
    if len(given) != 1:
        raise typer.BadParameter(
            f"choose one source, not {' and '.join(given)}" if given
            else "give --from-session, --from-checkpoint or --from-commit",
            param_hint="'--from-*'")
    if at and not from_session:
        raise typer.BadParameter("--at goes with --from-session", param_hint="'--at'")
    labels = parse_labels(label)
    out = output(ctx, json_, quiet)
    t = client(ctx).create_template(
        name, session_id=from_session or "", at=at or "", checkpoint_id=from_checkpoint or "",
        commit_id=from_commit or "", description=description, labels=labels, replace=replace)
    show_template(out, t)


@app.command("ls")
def ls(
    ctx: typer.Context,
    label: LabelOpt = None,
    prefix: Annotated[str, typer.Option(
        "--prefix", help="Only names starting with this.")] = "",
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """List templates by name, filtered by labels (all must match) and prefix."""
    labels = parse_labels(label)
    out = output(ctx, json_, quiet)
    out.table(client(ctx).iter_templates(labels=labels, prefix=prefix), TEMPLATE_COLUMNS,
              lambda t: t.name, empty="No templates.")


@app.command("show")
def show(ctx: typer.Context, name: NameArg, json_: JsonOpt = False,
         quiet: QuietOpt = False) -> None:
    """Show a template."""
    out = output(ctx, json_, quiet)
    show_template(out, client(ctx).get_template(name))


@app.command("rm")
def rm(ctx: typer.Context, name: NameArg, yes: YesOpt = False, json_: JsonOpt = False,
       quiet: QuietOpt = False) -> None:
    """Delete a template (sessions made from it keep their files). Asks first on a
    terminal unless --yes."""
    out = output(ctx, json_, quiet)
    if not yes and sys.stdin.isatty() and sys.stderr.isatty():
        typer.confirm(f"Delete template {name}?", abort=True, err=True)
    t = client(ctx).delete_template(name)
    out.done(f"Deleted template {t.name or name}.", t, t.name or name)
