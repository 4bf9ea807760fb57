"""`aether`: the AetherFS command line.

One module per command group (added with `add_typer`), shared option aliases in
`options`, one output helper in `output`. Known errors become one line on
stderr and an exit code:

    0 ok · 1 error · 2 usage · 3 not_found · 4 conflict/already_exists
    5 permission_denied/unauthenticated

Cold start matters (scripts call `aether` in loops): command modules are
imported only when their command runs (`COMMANDS` below), help is plain click
formatting (rich costs ~120 ms to import), and heavy imports (httpx, rich, the
generated messages) happen inside commands.
"""

from __future__ import annotations

import errno
import importlib
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from aether.cli.options import AppState, JsonOpt, QuietOpt, group

# Every top-level command: name -> ("module:attribute", one-line help), in the
# order `aether --help` lists them. The attribute is a typer.Typer (a group) or a
# plain function (a single command). The help line lives here so that listing
# commands imports none of them; tests check it matches the command's own.
COMMANDS: dict[str, tuple[str, str]] = {
    "session": ("aether.cli.session:app",
                "Create, list, inspect, fork, archive and delete sessions."),
    "fs": ("aether.cli.fs:app", "Files of a session: list, read, write, stat, move, remove."),
    "checkpoint": ("aether.cli.checkpoint:app", "Checkpoints: cheap recovery points of a session."),
    "commit": ("aether.cli.commit:app", "Commits: durable results that outlive their session."),
    "restore": ("aether.cli.persistence:restore",
                "Reset a session's working state to a checkpoint, a commit or base."),
    "diff": ("aether.cli.persistence:diff",
             "Show changes between two states of a session (default: base -> working)."),
    "export": ("aether.cli.persistence:export", "Export a state of a session as an archive."),
    "import": ("aether.cli.persistence:import_", "Unpack an archive into a session."),
}


def load_command(name: str) -> Any:
    """The click command behind COMMANDS[name], importing its module now."""
    target, _help = COMMANDS[name]
    module_name, _, attr = target.partition(":")
    obj = getattr(importlib.import_module(module_name), attr)
    if not isinstance(obj, typer.Typer):
        single = group("")
        single.command(name)(obj)
        obj = single
    cmd = typer.main.get_command(obj)
    cmd.name = name
    return cmd


class _Group(TyperGroup):
    """The root group: loads commands on demand, and turns known errors into one
    stderr line and an exit code."""

    def list_commands(self, ctx: Any) -> list[str]:
        return [*COMMANDS, *(n for n in super().list_commands(ctx) if n not in COMMANDS)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in COMMANDS:
            return load_command(cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        # click would load every command to ask for its short help.
        rows = [(name, help_) for name, (_t, help_) in COMMANDS.items()]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: Any) -> Any:
        from aether.cli.output import fail
        from aether.errors import AetherError

        try:
            return super().invoke(ctx)
        except AetherError as exc:
            raise typer.Exit(fail(exc.code, exc.message)) from None
        except OSError as exc:  # local files: missing input, unwritable output
            if exc.errno == errno.EPIPE:
                raise
            code = {
                errno.ENOENT: "not_found", errno.EACCES: "permission_denied",
                errno.EPERM: "permission_denied", errno.EEXIST: "already_exists",
            }.get(exc.errno or 0, "io_error")
            where = f"{exc.filename}: " if exc.filename else ""
            raise typer.Exit(fail(code, f"{where}{exc.strerror or exc}")) from None
        finally:
            obj = ctx.obj
            if isinstance(obj, AppState):
                obj.close()


app = typer.Typer(
    cls=_Group,
    name="aether",
    help="AetherFS: isolated, forkable, reviewable workspaces.\n\n"
    "With no --server (or AETHER_SERVER), talks to your local aetherd over a unix "
    "socket and starts it when it is not running.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"aether {version('aetherfs')}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    server: Annotated[str | None, typer.Option(
        "--server", envvar="AETHER_SERVER", metavar="URL",
        help="Daemon to use: http(s)://host:port or unix:/path/http.sock "
        "(default: the local daemon).", show_default=False)] = None,
    token: Annotated[str | None, typer.Option(
        "--token", envvar="AETHER_TOKEN", metavar="TOKEN",
        help="Bearer token for a remote daemon.", show_default=False)] = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Show the version and exit.")] = False,
) -> None:
    ctx.obj = AppState(server=server, token=token, json=json_, quiet=quiet)



def main() -> None:
    app()


if __name__ == "__main__":
    main()
