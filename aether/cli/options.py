"""Shared argument and option aliases, and the per-invocation state behind them.

Every command that prints a result takes `JsonOpt` and `QuietOpt`, so both
`aether --json session ls` and `aether session ls --json` work.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from aether.cli.output import Output
    from aether.client import Client, Target


def group(help: str) -> typer.Typer:
    """A command group as every `aether` group is built: plain (fast) help,
    completion installed once at the root, usage shown when called bare."""
    return typer.Typer(help=help, no_args_is_help=True, add_completion=False,
                       rich_markup_mode=None, pretty_exceptions_enable=False)


# ---- completion (best effort, never starts a daemon)


def _complete_sessions(ctx: typer.Context, incomplete: str) -> list[str]:
    try:
        from aether.client import connect

        root = ctx.find_root().params
        with connect(root.get("server"), root.get("token"), profile=root.get("profile"),
                     autostart=False, timeout=2) as c:
            return [s.id for s in c.iter_sessions() if s.id.startswith(incomplete)]
    except Exception:
        return []


def complete_profiles(ctx: typer.Context, incomplete: str) -> list[str]:
    try:
        from aether.client import config

        return sorted(n for n in config.load().profiles if n.startswith(incomplete))
    except Exception:
        return []


# ---- argument aliases

SessionArg = Annotated[str, typer.Argument(
    metavar="SESSION", help="Session id (ses_...).", autocompletion=_complete_sessions,
    show_default=False,
)]
PathArg = Annotated[str, typer.Argument(metavar="PATH", help="Path inside the session.",
                                        show_default=False)]

# ---- option aliases

JsonOpt = Annotated[bool, typer.Option(
    "--json", help="Print the result as JSON (the API's proto3 JSON).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print ids only.")]
LabelOpt = Annotated[list[str] | None, typer.Option(
    "--label", "-l", metavar="KEY=VALUE", help="A label (repeatable).", show_default=False)]
TagOpt = Annotated[list[str] | None, typer.Option(
    "--tag", "-t", metavar="TAG", help="A tag (repeatable).", show_default=False)]
NameOpt = Annotated[str, typer.Option("--name", "-n", help="A human-readable name.")]
AtOpt = Annotated[str, typer.Option(
    "--at", metavar="STATE",
    help="State to read: base, a checkpoint (ckp_...) or a commit (cmt_...). "
    "Default: the working state.")]
MessageOpt = Annotated[str, typer.Option("--message", "-m", help="A message.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def parse_labels(values: list[str] | None, param_hint: str = "'--label'") -> dict[str, str]:
    """['k=v', ...] -> {'k': 'v'}; anything else is a usage error."""
    out: dict[str, str] = {}
    for value in values or []:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{value!r} is not KEY=VALUE", param_hint=param_hint)
        out[key] = val
    return out


# ---- per-invocation state


@dataclass
class AppState:
    server: str | None = None
    token: str | None = None
    json: bool = False
    quiet: bool = False
    profile: str | None = None
    _client: Any = field(default=None, repr=False)

    def target(self) -> Target:
        from aether.client import resolve

        with config_errors():
            return resolve(self.server, self.token, profile=self.profile)

    def client(self) -> Client:
        """The SDK client, connected (and the local daemon started) on first use."""
        if self._client is None:
            from aether.client import connect

            with config_errors():
                self._client = connect(self.server, self.token, profile=self.profile)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


@contextlib.contextmanager
def config_errors() -> Iterator[None]:
    """A bad client configuration (unknown profile, unreadable config file) is a
    usage error: one line `error: bad_config: ...` and exit 2."""
    from aether.client.config import ConfigError

    try:
        yield
    except ConfigError as exc:
        from aether.cli.output import EXIT_USAGE, fail

        fail("bad_config", exc.message)
        raise typer.Exit(EXIT_USAGE) from None


def state(ctx: typer.Context) -> AppState:
    obj = ctx.find_root().obj
    if not isinstance(obj, AppState):  # invoked without the root callback (tests)
        obj = AppState()
        ctx.find_root().obj = obj
    return obj


def output(ctx: typer.Context, json_: bool = False, quiet: bool = False) -> Output:
    """The Output for this command: its own --json/-q, else the global ones."""
    from aether.cli.output import Output

    st = state(ctx)
    if json_ or st.json:
        return Output("json")
    if quiet or st.quiet:
        return Output("quiet")
    return Output("human")


def client(ctx: typer.Context) -> Client:
    return state(ctx).client()
