"""`aetherd`: run the daemon and maintain its data directory."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Annotated

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


def main() -> None:
    app(prog_name="aetherd")


if __name__ == "__main__":
    sys.exit(main())
