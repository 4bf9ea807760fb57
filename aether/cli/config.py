"""`aether config ...`: the client config file and its profiles; `aether completion`.

The file (`aether config path`; AETHER_CONFIG overrides it) is TOML:

    default_profile = "prod"

    [profiles.prod]
    server = "https://aether.example.com"
    token_file = "~/.config/aether/prod.token"

The daemon used is the first that applies: --server, then --profile, then
AETHER_SERVER (or AETHER_DATA_DIR), then AETHER_PROFILE or default_profile,
then the local daemon (see `aether.client.connect.resolve`). A bad file or an
unknown profile is a usage error: exit 2.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from aether.cli.options import JsonOpt, QuietOpt, complete_profiles, config_errors, group, output

app = group("The client config file: profiles of daemons to talk to.")

ProfileArg = Annotated[str, typer.Argument(
    metavar="NAME", help="Profile name (letters, digits, '-', '_').",
    autocompletion=complete_profiles, show_default=False)]


def _load() -> Any:
    from aether.client import config

    with config_errors():
        return config.load()


@app.command("path")
def path(ctx: typer.Context, json_: JsonOpt = False) -> None:
    """Print the config file's path (AETHER_CONFIG, else the user config directory)."""
    from aether.client import config

    p = config.config_path()
    out = output(ctx, json_)
    if out.mode == "json":
        out.json({"path": str(p), "exists": p.is_file()})
    else:
        print(p)


@app.command("profiles")
def profiles(ctx: typer.Context, json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """List the profiles (tokens redacted); * marks default_profile."""
    from aether.cli import output as fmt

    cfg = _load()
    out = output(ctx, json_, quiet)
    items = [cfg.profiles[n] for n in sorted(cfg.profiles)]
    if out.mode == "json":
        out.json({"path": str(cfg.path), "defaultProfile": cfg.default_profile,
                  "profiles": [p.as_dict() for p in items]})
        return
    out.table(items, [
        fmt.Column("", lambda p: "*" if p.name == cfg.default_profile else ""),
        fmt.Column("NAME", lambda p: p.name, style="cyan"),
        fmt.Column("SERVER", lambda p: p.server or f"local {p.data_dir}", wrap=True),
        fmt.Column("TOKEN", lambda p: p.token_source(), wrap=True),
    ], lambda p: p.name, empty=f"No profiles in {cfg.path}.")


@app.command("set-profile")
def set_profile(
    ctx: typer.Context,
    name: ProfileArg,
    server: Annotated[str | None, typer.Option(
        "--server", metavar="URL", help="A remote daemon (replaces --data-dir).",
        show_default=False)] = None,
    data_dir: Annotated[str | None, typer.Option(
        "--data-dir", metavar="DIR", help="A local daemon's data directory (replaces --server).",
        show_default=False)] = None,
    token: Annotated[str | None, typer.Option(
        "--token", metavar="TOKEN", help="The token itself, stored in the file (mode 0600).",
        show_default=False)] = None,
    token_file: Annotated[str | None, typer.Option(
        "--token-file", metavar="FILE", help="A file that holds the token.",
        show_default=False)] = None,
    token_env: Annotated[str | None, typer.Option(
        "--token-env", metavar="VAR", help="An environment variable that holds the token.",
        show_default=False)] = None,
    no_token: Annotated[bool, typer.Option(
        "--no-token", help="Remove the profile's token setting.")] = False,
    default: Annotated[bool, typer.Option(
        "--default", help="Also make it the default_profile.")] = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Create or update a profile: options given replace the profile's values,
    others are kept. The file is rewritten (comments are not kept)."""
    from dataclasses import replace

    from aether.client import config

    if server and data_dir:
        raise typer.BadParameter("choose --server or --data-dir, not both",
                                 param_hint="'--server'")
    tokens = [t for t in (token, token_file, token_env) if t]
    if len(tokens) + no_token > 1:
        raise typer.BadParameter("choose one of --token, --token-file, --token-env, --no-token",
                                 param_hint="'--token'")
    out = output(ctx, json_, quiet)
    cfg = _load()
    with config_errors():
        config.check_name(name)
        old = cfg.profiles.get(name)
        if old is None and not (server or data_dir):
            raise config.ConfigError(f"new profile {name!r} needs --server URL or --data-dir DIR")
        p = old or config.Profile(name=name)
        if server or data_dir:
            p = replace(p, server=server, data_dir=str(Path(data_dir).expanduser().absolute())
                        if data_dir else None)
        if tokens or no_token:
            # Relative to where the command runs, as typed; the file itself
            # resolves relative paths against its own directory.
            p = replace(p, token=token, token_env=token_env,
                        token_file=str(Path(token_file).expanduser().absolute())
                        if token_file else None)
        cfg.set_profile(p)
        if default:
            cfg.default_profile = name
        cfg.save()
    if token:
        out.note(f"The token is stored in plain text in {cfg.path} (mode 0600); "
                 "--token-file or --token-env keep it out of the file.")
    verb = "Updated" if old else "Added"
    out.done(f"{verb} profile {name} in {cfg.path}" + (" (default)" if default else ""),
             {"path": str(cfg.path), "profile": p.as_dict(),
              "defaultProfile": cfg.default_profile}, ident=name)


@app.command("use")
def use(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(
        metavar="[NAME]", help="Profile to make the default.",
        autocompletion=complete_profiles, show_default=False)] = None,
    unset: Annotated[bool, typer.Option(
        "--unset", help="Remove default_profile: back to the local daemon.")] = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Make a profile the default_profile (used when no --server, AETHER_SERVER,
    --profile or AETHER_PROFILE is given)."""
    if bool(name) == unset:
        raise typer.BadParameter("give a profile NAME or --unset", param_hint="'NAME'")
    out = output(ctx, json_, quiet)
    cfg = _load()
    with config_errors():
        if name:
            cfg.profile(name, "the command line")
        cfg.default_profile = name
        cfg.save()
    text = (f"Default profile: {name}" if name
            else "No default profile: the local daemon is the default")
    out.done(text, {"path": str(cfg.path), "defaultProfile": name}, ident=name or "")


# ---- aether completion SHELL


class Shell(StrEnum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"


def completion(
    shell: Annotated[Shell, typer.Argument(
        metavar="SHELL", help="bash, zsh or fish.", case_sensitive=False,
        show_default=False)],
) -> None:
    """Print the shell completion script for bash, zsh or fish.

    Commands, options, session ids and profile names complete. Load it with

    \b
      bash:  eval "$(aether completion bash)"           (in ~/.bashrc)
      zsh:   eval "$(aether completion zsh)"            (in ~/.zshrc, after compinit)
      fish:  aether completion fish > ~/.config/fish/completions/aether.fish

    `aether --install-completion` does the same for the shell you run.
    """
    from typer.completion import get_completion_script

    print(get_completion_script(prog_name="aether", complete_var="_AETHER_COMPLETE",
                                shell=shell.value).strip())
