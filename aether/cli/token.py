"""`aether token ...` and `aether whoami`: API tokens and the caller itself.

Token management needs an admin (the daemon's own token, an "admin" scope, or
the local daemon's socket owner); `aetherd token ...` does the same on the
daemon's host without a running daemon.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from aether.cli import output as fmt
from aether.cli.options import JsonOpt, QuietOpt, client, group, output

app = group("API tokens: create, list, revoke (admins).")


def _state(t: Any) -> str:
    if t.revoke_time:
        return "revoked"
    if t.expire_time:
        return f"expires {fmt.when(t.expire_time)}"
    return "active"


TOKEN_COLUMNS = [
    fmt.Column("ID", lambda t: t.id, style="cyan"),
    fmt.Column("PRINCIPAL", lambda t: t.principal),
    fmt.Column("SCOPES", lambda t: ",".join(t.scopes) or "-", wrap=True),
    fmt.Column("STATE", _state, drop=2),
    fmt.Column("DESCRIPTION", lambda t: t.description or "-", wrap=True, drop=3),
    fmt.Column("CREATED", lambda t: fmt.ago(t.create_time), drop=1),
]


@app.command("create")
def create(
    ctx: typer.Context,
    principal: Annotated[str, typer.Argument(
        metavar="PRINCIPAL", help="Who the token speaks for.", show_default=False)],
    scope: Annotated[list[str] | None, typer.Option(
        "--scope", "-s", metavar="SCOPE",
        help="admin, create, or SESSION:ROLE with ROLE reader, reviewer, writer or owner "
        "(repeatable).", show_default=False)] = None,
    description: Annotated[str, typer.Option(
        "--description", "-d", help="What the token is for.")] = "",
    ttl: Annotated[int, typer.Option(
        "--ttl", metavar="SECONDS", help="Expire after this long (0 = never).", min=0)] = 0,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Create a token and print its bearer string (shown only this once).

    --json: the CreatedToken (with `secret`); -q: the bearer string alone."""
    out = output(ctx, json_, quiet)
    made = client(ctx).create_token(principal, scopes=scope or [], description=description,
                                    ttl_seconds=ttl)
    if out.mode == "human":
        sys.stdout.write(made.secret + "\n")
        out.note(f"token {made.token.id} for {made.token.principal}; store the line above "
                 "now: it is not shown again")
    else:
        out.done("", made, made.secret)


@app.command("ls")
def ls(
    ctx: typer.Context,
    principal: Annotated[str, typer.Option(
        "--principal", metavar="NAME", help="Only this principal's tokens.")] = "",
    all_: Annotated[bool, typer.Option(
        "--all", "-a", help="Include revoked and expired tokens.")] = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """List tokens (never their secrets). --json: an array of Token."""
    out = output(ctx, json_, quiet)
    tokens = client(ctx).iter_tokens(principal=principal, include_inactive=all_)
    out.table(tokens, TOKEN_COLUMNS, lambda t: t.id, empty="No tokens.")


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    token_id: Annotated[str, typer.Argument(metavar="TOKEN_ID", help="tok_...",
                                            show_default=False)],
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Revoke a token: the daemon refuses it from now on. --json: the Token."""
    out = output(ctx, json_, quiet)
    t = client(ctx).revoke_token(token_id)
    out.done(f"Revoked {t.id} ({t.principal}).", t, t.id)


def whoami(ctx: typer.Context, json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Show who the daemon takes you for: principal, how authenticated, scopes.

    --json: the Principal; -q: the principal's name."""
    out = output(ctx, json_, quiet)
    me = client(ctx).who_am_i()
    out.item(me, [("Principal", lambda p: p.name),
                  ("Authenticated by", lambda p: p.authenticated_by),
                  ("Token", lambda p: p.token_id or "-"),
                  ("Scopes", lambda p: ", ".join(p.scopes) or "-")], lambda p: p.name)
