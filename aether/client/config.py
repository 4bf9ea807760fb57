"""The client configuration file: named profiles of daemons to talk to.

    # ~/.config/aether/config.toml  (AETHER_CONFIG overrides the path)
    default_profile = "prod"

    [profiles.prod]
    server = "https://aether.example.com"
    token_file = "~/.config/aether/prod.token"   # or token = "..." / token_env = "VAR"

    [profiles.scratch]
    data_dir = "/tmp/aether-scratch"              # a local daemon with its own data dir

A profile names either a `server` (remote) or a `data_dir` (local, autostarted),
and at most one of `token` (inline), `token_file` (a file holding it) and
`token_env` (an environment variable holding it). Relative `data_dir` and
`token_file` paths are relative to the config file's directory.

Which daemon a client uses (first that applies; see `connect.resolve`):

    1. the server argument (CLI: --server), with --token or AETHER_TOKEN
    2. the profile named by the argument (CLI: --profile)
    3. AETHER_SERVER with AETHER_TOKEN (or AETHER_DATA_DIR: the local daemon there)
    4. AETHER_PROFILE, else `default_profile` of the config file
    5. the local daemon in the user's data directory

A profile's daemon gets --token or the profile's own token, never AETHER_TOKEN.

A missing file is an empty configuration. A file that does not parse, an
unknown key, or a profile that does not exist raise `ConfigError`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aether.errors import InvalidArgument

CONFIG_ENV = "AETHER_CONFIG"
PROFILE_ENV = "AETHER_PROFILE"
PROFILE_KEYS = ("server", "token", "token_file", "token_env", "data_dir")
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


class ConfigError(InvalidArgument):
    """The client configuration is wrong: bad file, unknown profile, missing token."""


def config_path() -> Path:
    """AETHER_CONFIG, else `config.toml` in the platform's user config directory."""
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir("aether")) / "config.toml"


@dataclass(frozen=True)
class Profile:
    name: str
    server: str | None = None
    token: str | None = None
    token_file: str | None = None
    token_env: str | None = None
    data_dir: str | None = None

    def resolve_token(self) -> str | None:
        """The token this profile supplies (reading its file or variable), or None."""
        if self.token:
            return self.token
        if self.token_file:
            path = Path(self.token_file).expanduser()
            try:
                return path.read_text().strip() or None
            except OSError as e:
                raise ConfigError(
                    f"profile {self.name!r}: cannot read token_file {path}: "
                    f"{e.strerror or e}") from None
        if self.token_env:
            value = os.environ.get(self.token_env)
            if not value:
                raise ConfigError(
                    f"profile {self.name!r} takes its token from ${self.token_env}, "
                    "which is not set")
            return value
        return None

    def token_source(self) -> str:
        """Where the token comes from, for people (never the token itself)."""
        if self.token:
            return "inline (redacted)"
        if self.token_file:
            return f"file {self.token_file}"
        if self.token_env:
            return f"${self.token_env}"
        return "-"

    def as_dict(self, redact: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        for key in PROFILE_KEYS:
            value = getattr(self, key)
            if value is not None:
                out[key] = "***" if redact and key == "token" else value
        return out


@dataclass
class Config:
    path: Path
    default_profile: str | None = None
    profiles: dict[str, Profile] = field(default_factory=dict)
    exists: bool = False

    def profile(self, name: str, origin: str = "--profile") -> Profile:
        try:
            return self.profiles[name]
        except KeyError:
            known = ", ".join(sorted(self.profiles)) or "none"
            raise ConfigError(
                f"unknown profile {name!r} (from {origin}); profiles in {self.path}: "
                f"{known}") from None

    def select(self, name: str | None = None) -> Profile | None:
        """The profile in effect: `name`, else AETHER_PROFILE, else default_profile."""
        if name:
            return self.profile(name, "--profile")
        env = os.environ.get(PROFILE_ENV)
        if env:
            return self.profile(env, PROFILE_ENV)
        if self.default_profile:
            return self.profile(self.default_profile, f"default_profile in {self.path}")
        return None

    # -- writing

    def set_profile(self, profile: Profile) -> None:
        check_name(profile.name)
        _validate(profile, self.path)
        self.profiles[profile.name] = profile

    def save(self) -> None:
        """Write the file (atomically, mode 0600: it may hold tokens).

        The file is rewritten from its parsed content: comments are not kept.
        """
        lines: list[str] = []
        if self.default_profile:
            lines.append(f"default_profile = {_toml_str(self.default_profile)}")
        for name in sorted(self.profiles):
            p = self.profiles[name]
            key_ = name if _NAME.match(name) else _toml_str(name)
            lines += ["", f"[profiles.{key_}]"]
            for key in PROFILE_KEYS:
                value = getattr(p, key)
                if value is not None:
                    lines.append(f"{key} = {_toml_str(value)}")
        text = "\n".join(lines).lstrip("\n") + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self.exists = True


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ConfigError(
            f"bad profile name {name!r}: use letters, digits, '-' and '_'")
    return name


def _toml_str(value: str) -> str:
    """A TOML basic string."""
    out = ['"']
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _validate(p: Profile, path: Path) -> None:
    where = f"profile {p.name!r} in {path}"
    if bool(p.server) == bool(p.data_dir):
        raise ConfigError(f"{where}: set exactly one of server (remote) and data_dir (local)")
    if sum(1 for v in (p.token, p.token_file, p.token_env) if v) > 1:
        raise ConfigError(f"{where}: set at most one of token, token_file and token_env")
    if p.server:
        from aether.client.connect import parse_server

        try:
            parse_server(p.server)
        except InvalidArgument as e:
            raise ConfigError(f"{where}: {e.message}") from None


def load(path: Path | None = None) -> Config:
    """Read the configuration (an empty one when the file does not exist)."""
    path = path or config_path()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Config(path=path)
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror or e}") from None
    import tomllib

    try:
        data = tomllib.loads(raw.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from None
    unknown = set(data) - {"default_profile", "profiles"}
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(sorted(unknown))} "
                          "(expected default_profile and [profiles.NAME] tables)")
    default = data.get("default_profile")
    if default is not None and not isinstance(default, str):
        raise ConfigError(f"{path}: default_profile must be a string")
    tables = data.get("profiles", {})
    if not isinstance(tables, dict):
        raise ConfigError(f"{path}: profiles must be a table of [profiles.NAME] tables")
    profiles: dict[str, Profile] = {}
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: profiles.{name} must be a table")
        bad = set(table) - set(PROFILE_KEYS)
        if bad:
            raise ConfigError(f"profile {name!r} in {path}: unknown key(s) "
                              f"{', '.join(sorted(bad))} (allowed: {', '.join(PROFILE_KEYS)})")
        for key, value in table.items():
            if not isinstance(value, str):
                raise ConfigError(f"profile {name!r} in {path}: {key} must be a string")
        for key in ("data_dir", "token_file"):  # relative to the file's directory
            value = table.get(key)
            if value and not value.startswith("~") and not Path(value).is_absolute():
                table[key] = str(path.parent.absolute() / value)
        profile = Profile(name=name, **table)
        _validate(profile, path)
        profiles[name] = profile
    return Config(path=path, default_profile=default or None, profiles=profiles, exists=True)
