"""Who is calling, and what they may do: the principal of the current request.

The transports authenticate (aetherd/auth/authenticate.py) and run the call
`as_principal(...)`; the authorization guard (guard.py) and the API adapters
that record who did something read `current()`.
"""

from __future__ import annotations

import contextlib
import contextvars
import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from aether.errors import InvalidArgument


class Role(enum.IntEnum):
    """A role on one session; each includes the ones below it."""

    READER = 1  # read files, cache, bus, events, reviews
    REVIEWER = 2  # + comment, annotate, approve or reject
    WRITER = 3  # + change files, cache, bus; checkpoint, restore, request approval, commit
    OWNER = 4  # + rename, relabel, policy, archive, delete

    @classmethod
    def parse(cls, name: str) -> Role:
        try:
            return cls[name.upper()]
        except KeyError:
            raise InvalidArgument(
                f"unknown role {name!r}: want reader, reviewer, writer or owner") from None


ADMIN_SCOPE = "admin"
CREATE_SCOPE = "create"


@dataclass(frozen=True)
class Principal:
    name: str
    # "unix" (the socket's owner), "admin_token" (the daemon's configured
    # token), "token" (an API token) or "none" (nobody: refused everywhere).
    authenticated_by: str
    token_id: str = ""
    admin: bool = False
    can_create: bool = False
    roles: Mapping[str, Role] = field(default_factory=dict)  # session id -> role
    scopes: tuple[str, ...] = ()

    @property
    def trusted(self) -> bool:
        """Operators (socket owner, configured token) may act under any name,
        e.g. record a commit's author as given; token callers are who they are."""
        return self.authenticated_by in ("unix", "admin_token")


def parse_scopes(scopes: list[str] | tuple[str, ...]) -> tuple[bool, bool, dict[str, Role]]:
    """(admin, can_create, roles) from a token's scopes; a bad scope is invalid_argument."""
    admin = can_create = False
    roles: dict[str, Role] = {}
    for scope in scopes:
        if scope == ADMIN_SCOPE:
            admin = True
        elif scope == CREATE_SCOPE:
            can_create = True
        else:
            session_id, sep, role = scope.rpartition(":")
            if not sep or not session_id.startswith("ses_"):
                raise InvalidArgument(
                    f"bad scope {scope!r}: want admin, create or <session id>:<role>")
            roles[session_id] = max(roles.get(session_id, Role.READER), Role.parse(role))
    return admin, can_create, roles


def operator(name: str, authenticated_by: str) -> Principal:
    return Principal(name=name, authenticated_by=authenticated_by, admin=True, can_create=True,
                     scopes=(ADMIN_SCOPE,))


def acting_name(given: str) -> str:
    """The name to record as the author of an action (comment, approval,
    commit author): an operator's caller may name anyone (one local user
    often acts for several people); an API token's caller is its principal."""
    who = current()
    if who is None or who.trusted:
        return given
    return who.name


_CURRENT: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "aetherd_principal", default=None)


def current() -> Principal | None:
    """The caller of the request being served (None outside any request)."""
    return _CURRENT.get()


@contextlib.contextmanager
def as_principal(principal: Principal) -> Iterator[None]:
    token = _CURRENT.set(principal)
    try:
        yield
    finally:
        _CURRENT.reset(token)
