"""`aetherd`: run the daemon and maintain its data directory."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from aetherd.config import Config

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="The AetherFS daemon: sessions over gRPC and HTTP.")

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML file with an \\[aetherd] table.")]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="Where sessions and blobs live.")]


def _config(config: Path | None, **overrides: object) -> Config:
    try:
        return Config.load(config, **overrides)
    except (OSError, ValueError) as e:
        typer.echo(f"aetherd: bad configuration: {e}", err=True)
        raise typer.Exit(2) from None


def _existing(cfg: Config) -> Config:
    """Maintenance on a mistyped path must not create (and bless) an empty store."""
    if not (cfg.data_dir / "meta.db").is_file():
        typer.echo(f"aetherd: no AetherFS data in {cfg.data_dir}", err=True)
        raise typer.Exit(2)
    return cfg


@app.command()
def serve(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    http: Annotated[str, typer.Option(help="unix:/path or tcp:host:port")] = "",
    grpc: Annotated[str, typer.Option(help="unix:/path or tcp:host:port")] = "",
    token: Annotated[str, typer.Option(help="Bearer token for TCP listeners.",
                                       envvar="AETHERD_TOKEN")] = "",
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "",
    import_root: Annotated[list[str] | None, typer.Option(
        help="Host directory sessions may be created from (repeatable).")] = None,
) -> None:
    """Serve gRPC and HTTP until SIGTERM/SIGINT."""
    from aetherd.daemon import serve as run

    cfg = _config(config, data_dir=data_dir, http_listen=http, grpc_listen=grpc, token=token,
                  log_level=log_level, import_roots=import_root or None)
    logging.basicConfig(level=cfg.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(run(cfg))


@app.command()
def fsck(config: ConfigOpt = None, data_dir: DataDirOpt = None,
         as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Verify every hash and every reference. Exit 1 if anything is wrong."""
    from aetherd.maintenance import fsck as run_fsck

    cfg = _existing(_config(config, data_dir=data_dir))
    report = run_fsck(cfg.data_dir)
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    else:
        typer.echo(report.summary())
    raise typer.Exit(0 if report.ok else 1)


@app.command()
def gc(config: ConfigOpt = None, data_dir: DataDirOpt = None,
       grace_seconds: Annotated[int, typer.Option(help="Keep objects younger than this.")] = 900,
       as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Free chunks, files and trees that nothing references."""
    from aetherd.maintenance import gc as run_gc

    cfg = _existing(_config(config, data_dir=data_dir))
    result = run_gc(cfg.data_dir, grace_seconds)
    typer.echo(json.dumps(result) if as_json else
               ", ".join(f"{k}: {v}" for k, v in result.items()))


token_app = typer.Typer(no_args_is_help=True, help="API tokens: create, list, revoke. "
                        "Works on the data directory, whether or not the daemon runs; a "
                        "running daemon sees every change at its next request.")
app.add_typer(token_app, name="token")


def _tokens(config: Path | None, data_dir: Path | None) -> Any:
    from aetherd.services.state import Store
    from aetherd.services.tokens import Tokens

    return Tokens(Store(_existing(_config(config, data_dir=data_dir)).data_dir))


def _token_json(rec: Any) -> dict[str, Any]:
    return {"id": rec.id, "principal": rec.principal, "scopes": rec.scopes,
            "description": rec.description, "created_ns": rec.created_ns,
            "expires_ns": rec.expires_ns, "revoked_ns": rec.revoked_ns}


def _token_errors() -> Any:
    """Bad input: the error's one line and exit 2 (not found: 3)."""
    from contextlib import contextmanager

    from aether.errors import AetherError, NotFound

    @contextmanager
    def guard() -> Any:
        try:
            yield
        except AetherError as e:
            typer.echo(f"aetherd: {e.code}: {e.message}", err=True)
            raise typer.Exit(3 if isinstance(e, NotFound) else 2) from None
    return guard()


@token_app.command("create")
def token_create(
    principal: Annotated[str, typer.Option("--principal", help="Who the token speaks for.")],
    scope: Annotated[list[str] | None, typer.Option(
        "--scope", help="admin, create, or SESSION_ID:ROLE (reader, reviewer, writer, "
        "owner); repeatable.")] = None,
    description: Annotated[str, typer.Option(help="A note: what the token is for.")] = "",
    ttl: Annotated[int, typer.Option("--ttl", help="Seconds until it expires (0: never).",
                                     min=0)] = 0,
    config: ConfigOpt = None, data_dir: DataDirOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create a token; prints the bearer string, which is not shown again."""
    with _token_errors():
        rec, secret = _tokens(config, data_dir).create(principal, scope or [], description, ttl)
    if as_json:
        typer.echo(json.dumps({"token": _token_json(rec), "secret": secret}, indent=2))
    else:
        typer.echo(secret)
        typer.echo(f"token {rec.id} for {rec.principal} ({', '.join(rec.scopes) or 'no scopes'})"
                   "; store the line above now: it is not shown again", err=True)


@token_app.command("list")
def token_list(
    principal: Annotated[str, typer.Option(help="Only this principal's tokens.")] = "",
    all_: Annotated[bool, typer.Option("--all", help="Include revoked and expired ones.")]
    = False,
    config: ConfigOpt = None, data_dir: DataDirOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List tokens (never their secrets)."""
    tokens, records, page = _tokens(config, data_dir), [], ""
    while True:
        batch, page = tokens.list(principal, all_, 0, page)
        records.extend(batch)
        if not page:
            break
    if as_json:
        typer.echo(json.dumps([_token_json(r) for r in records], indent=2))
        return
    for r in records:
        state = "revoked" if r.revoked_ns else "active"
        typer.echo(f"{r.id}  {r.principal}  {state}  {','.join(r.scopes) or '-'}"
                   f"{'  ' + r.description if r.description else ''}")


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(metavar="TOKEN_ID")],
    config: ConfigOpt = None, data_dir: DataDirOpt = None,
) -> None:
    """Revoke a token: refused from now on, by a running daemon too."""
    with _token_errors():
        rec = _tokens(config, data_dir).revoke(token_id)
    typer.echo(f"revoked {rec.id} ({rec.principal})")


def main() -> None:
    app(prog_name="aetherd")


if __name__ == "__main__":
    sys.exit(main())
