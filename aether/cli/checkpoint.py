"""`aether checkpoint ...`: save, list, show and delete recovery points."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from aether.cli import output as fmt
from aether.cli.options import JsonOpt, LabelOpt, QuietOpt, SessionArg, client, group, output, parse_labels

app = group("Checkpoints: cheap recovery points of a session.")

CheckpointArg = Annotated[str, typer.Argument(
    metavar="CHECKPOINT", help="Checkpoint id (ckp_...).", show_default=False)]

CHECKPOINT_FIELDS = [
    ("ID", lambda c: c.id),
    ("Session", lambda c: c.session_id),
    ("Message", lambda c: c.message or "-"),
    ("Root", lambda c: c.root_hash or "-"),
    ("Files", lambda c: f"{c.file_count} ({fmt.size(c.total_bytes)})"),
    ("Labels", lambda c: fmt.pairs(c.labels)),
    ("Created", lambda c: fmt.when(c.create_time)),
]

CHECKPOINT_COLUMNS = [
    fmt.Column("ID", lambda c: c.id, style="cyan"),
    fmt.Column("MESSAGE", lambda c: c.message or "-", wrap=True),
    fmt.Column("FILES", lambda c: str(c.file_count), justify="right", drop=4),
    fmt.Column("SIZE", lambda c: fmt.size(c.total_bytes), justify="right", drop=3),
    fmt.Column("ROOT", lambda c: fmt.short(c.root_hash), drop=5),
    fmt.Column("CREATED", lambda c: fmt.ago(c.create_time), drop=2),
]


def show_checkpoint(out: fmt.Output, c: Any) -> None:
    out.item(c, CHECKPOINT_FIELDS, lambda c: c.id)


@app.command("create")
def create(
    ctx: typer.Context,
    session: SessionArg,
    message: Annotated[str, typer.Option("--message", "-m", help="What this point is.")] = "",
    label: LabelOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Checkpoint a session's working state."""
    labels = parse_labels(label)
    out = output(ctx, json_, quiet)
    show_checkpoint(out, client(ctx).create_checkpoint(session, message=message, labels=labels))


@app.command("ls")
def ls(ctx: typer.Context, session: SessionArg, json_: JsonOpt = False,
       quiet: QuietOpt = False) -> None:
    """List a session's checkpoints, newest first."""
    out = output(ctx, json_, quiet)
    out.table(client(ctx).iter_checkpoints(session), CHECKPOINT_COLUMNS, lambda c: c.id,
              empty="No checkpoints.")


@app.command("show")
def show(ctx: typer.Context, session: SessionArg, checkpoint: CheckpointArg,
         json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Show a checkpoint."""
    out = output(ctx, json_, quiet)
    show_checkpoint(out, client(ctx).get_checkpoint(session, checkpoint))


@app.command("rm")
def rm(ctx: typer.Context, session: SessionArg, checkpoint: CheckpointArg,
       json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Delete a checkpoint."""
    out = output(ctx, json_, quiet)
    c = client(ctx).delete_checkpoint(session, checkpoint)
    out.done(f"Deleted checkpoint {c.id or checkpoint}.", c, c.id or checkpoint)
