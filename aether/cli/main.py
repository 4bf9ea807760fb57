"""`aether`: the AetherFS command line.

One module per command group (added with `add_typer`), shared option aliases in
`options`, one output helper in `output`. Known errors become one line on
stderr and an exit code:

    0 ok · 1 error · 2 usage · 3 not_found · 4 conflict/already_exists
    5 permission_denied/unauthenticated

Heavy imports (httpx, rich, the generated messages) happen inside commands so
that `aether --help` stays fast.
"""

from __future__ import annotations

import errno
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from aether.cli import checkpoint, commit, fs, persistence, session
from aether.cli.options import AppState, JsonOpt, QuietOpt


class _Group(TyperGroup):
    """The root group: turns known errors into one stderr line and an exit code."""

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
    pretty_exceptions_show_locals=False,
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


app.add_typer(session.app, name="session")
app.add_typer(fs.app, name="fs")
app.add_typer(checkpoint.app, name="checkpoint")
app.add_typer(commit.app, name="commit")
app.command("restore")(persistence.restore)
app.command("diff")(persistence.diff)
app.command("export")(persistence.export)
app.command("import")(persistence.import_)

def main() -> None:
    app()


if __name__ == "__main__":
    main()
