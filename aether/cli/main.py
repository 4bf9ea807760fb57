"""`aether`: the AetherFS command line.

One module per command group (listed in SECTIONS below), shared option
aliases in `options`, one output helper in `output`. Known errors become one
line on stderr and an exit code:

    0 ok · 1 error · 2 usage · 3 not_found · 4 conflict/already_exists
    5 permission_denied/unauthenticated · 130 interrupted (Ctrl-C)

Cold start matters (scripts call `aether` in loops): command modules are
imported only when their command runs (`COMMANDS` below), help is plain click
formatting (rich costs ~120 ms to import), and heavy imports (rich, the
generated messages) happen inside commands, when needed. The blocking client
is built on the standard library's http.client (aether/client/wire.py).
"""

from __future__ import annotations

import copy
import errno
import importlib
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from aether.cli.options import AppState, JsonOpt, QuietOpt, complete_profiles, group

# Every top-level command, by the section `aether --help` lists it under:
# name -> ("module:attribute", one-line help). The attribute is a typer.Typer
# (a group) or a plain function (a single command). The help line lives here
# so that listing commands imports none of them; a test checks it matches the
# command's own.
SECTIONS: dict[str, dict[str, tuple[str, str]]] = {
    "Sessions and files": {
        "session": ("aether.cli.session:app",
                    "Create, list, inspect, fork, archive and delete sessions."),
        "fs": ("aether.cli.fs:app", "Files of a session: list, read, write, stat, move, remove."),
        "diff": ("aether.cli.persistence:diff",
                 "Show changes between two states of a session (default: base -> working)."),
    },
    "States": {
        "checkpoint": ("aether.cli.checkpoint:app",
                       "Checkpoints: cheap recovery points of a session."),
        "commit": ("aether.cli.commit:app", "Commits: durable results that outlive their session."),
        "restore": ("aether.cli.persistence:restore",
                    "Reset a session's working state to a checkpoint, a commit or its base."),
        "template": ("aether.cli.template:app",
                     "Templates: named states that new sessions start from."),
        "export": ("aether.cli.persistence:export",
                   "Export a state of a session as an archive, or sync it into a directory."),
        "import": ("aether.cli.persistence:import_",
                   "Unpack an archive into a session, or sync a directory into it."),
    },
    "Coordination and review": {
        "cache": ("aether.cli.cache:app", "The knowledge cache of a session: versioned keys with "
                  "bytes, TTLs and compare-and-set."),
        "bus": ("aether.cli.bus:app", "The message bus of a session: publish, read, tail -f."),
        "events": ("aether.cli.events:app",
                   "The activity log of a session: ls, tail -f from a cursor."),
        "review": ("aether.cli.review:app", "Review a session: comments, annotations, approvals."),
    },
    "Local access": {
        "mount": ("aether.cli.mount:mount", "Mount a session as a local directory (FUSE)."),
        "umount": ("aether.cli.mount:umount",
                   "Unmount a session mount (waits for its write-back to finish)."),
        "mounts": ("aether.cli.mount:mounts", "List this machine's session mounts."),
        "tui": ("tui.app:run", "Open the workspace console (Textual)."),
    },
    "Daemon and setup": {
        "daemon": ("aether.cli.daemon:app",
                   "The local aetherd: start, stop, status, logs (status also for --server)."),
        "health": ("aether.cli.status:health",
                   "Show the daemon's health, or a session's; exit 1 when not ok."),
        "usage": ("aether.cli.status:usage", "Show files, bytes, dedup, cache and bus usage of a "
                  "session, or of every session."),
        "analytics": ("aether.cli.status:analytics",
                      "Show a session's operation counts over time windows."),
        "token": ("aether.cli.token:app", "API tokens: create, list, revoke (admins)."),
        "whoami": ("aether.cli.token:whoami",
                   "Show who the daemon takes you for: principal, how authenticated, scopes."),
        "config": ("aether.cli.config:app",
                   "The client config file: profiles of daemons to talk to."),
        "completion": ("aether.cli.config:completion",
                       "Print the shell completion script for bash, zsh or fish."),
    },
}
COMMANDS: dict[str, tuple[str, str]] = {
    name: entry for section in SECTIONS.values() for name, entry in section.items()}


def load_command(name: str, sub: str | None = None) -> Any:
    """The click command behind COMMANDS[name], importing its module now. For
    a group, `sub` names the subcommand about to run (if known): only that one
    is converted, since typer evaluates every parameter annotation of every
    command of a group it converts (~20 ms for `session`)."""
    target, _help = COMMANDS[name]
    module_name, _, attr = target.partition(":")
    obj = getattr(importlib.import_module(module_name), attr)
    if isinstance(obj, typer.Typer):
        cmd = typer.main.get_group(obj if sub is None else _only(obj, sub))
    else:
        single = group("")
        single.command(name)(obj)
        cmd = typer.main.get_command(single)
    cmd.name = name
    name_values(cmd)
    return cmd


def _only(app: typer.Typer, sub: str) -> typer.Typer:
    """`app` with `sub` as its only command (or subgroup); `app` itself when it
    has no such command, so that click reports the error with every name."""
    commands = [c for c in app.registered_commands
                if (c.name or typer.main.get_command_name(c.callback.__name__)) == sub]
    groups = [g for g in app.registered_groups if g.name == sub]
    if not commands and not groups:
        return app
    lean = copy.copy(app)
    lean.registered_commands, lean.registered_groups = commands, groups
    return lean


# What an option without its own metavar shows for its value (typer would
# print the Python type, `<str>`).
_METAVARS = {"str": "TEXT", "int": "N", "float": "NUMBER"}


def name_values(cmd: Any) -> None:
    for param in cmd.params:
        if param.param_type_name == "option" and not param.is_flag and param.metavar is None:
            param.metavar = _METAVARS.get(getattr(param.type, "name", ""), None)
    for sub in getattr(cmd, "commands", {}).values():
        name_values(sub)


class _Group(TyperGroup):
    """The root group: loads commands on demand, and turns known errors into one
    stderr line and an exit code."""

    def list_commands(self, ctx: Any) -> list[str]:
        return [*COMMANDS, *(n for n in super().list_commands(ctx) if n not in COMMANDS)]

    _next: str | None = None  # the word after the command, when it names a subcommand

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        self._next = args[1] if len(args) > 1 and not args[1].startswith("-") else None
        return super().resolve_command(ctx, args)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in COMMANDS:
            return load_command(cmd_name, self._next)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        # click would load every command to ask for its short help.
        width = max(map(len, COMMANDS))  # one column for all sections
        for title, commands in SECTIONS.items():
            with formatter.section(title):
                formatter.write_dl([(name.ljust(width), help_)
                                    for name, (_t, help_) in commands.items()])

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
        from aether import __version__

        typer.echo(f"aether {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    # No envvar= on these three: the environment is read by connect.resolve,
    # so that a flag given on the command line always beats the environment.
    server: Annotated[str | None, typer.Option(
        "--server", metavar="URL",
        help="Daemon to use: http(s)://host:port, tcp:host:port or unix:/path/http.sock. "
        "Default: AETHER_SERVER, else a profile, else the local daemon.",
        show_default=False)] = None,
    token: Annotated[str | None, typer.Option(
        "--token", metavar="TOKEN",
        help="Bearer token (default: AETHER_TOKEN with --server or AETHER_SERVER; "
        "a profile's own token with a profile).", show_default=False)] = None,
    profile: Annotated[str | None, typer.Option(
        "--profile", "-p", metavar="NAME", autocompletion=complete_profiles,
        help="A profile of the config file (see `aether config`); beats AETHER_SERVER. "
        "Default: AETHER_PROFILE, else the file's default_profile. An unknown profile "
        "exits 2.", show_default=False)] = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Show the version and exit.")] = False,
) -> None:
    ctx.obj = AppState(server=server, token=token, json=json_, quiet=quiet, profile=profile)



def main() -> None:
    app()


if __name__ == "__main__":
    main()
