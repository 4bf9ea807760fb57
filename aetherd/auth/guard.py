"""Authorization, enforced once for both transports.

`install(api, guard)` replaces every RPC method of every Api object with one
that checks the current principal against its rule (rules.py) first. The gRPC
server's generated handlers and the HTTP shim both call those methods, so no
call reaches a service around the check; an RPC without a rule stops the
daemon from starting.

A session the caller has no role on is `not_found`, as if it did not exist
(listing leaves it out too); a session it can see but not act on in that way
is `permission_denied`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from aether.errors import NotFound, PermissionDenied, Unauthenticated
from aetherd.api import Api
from aetherd.auth.principal import Principal, Role, current
from aetherd.auth.rules import ADMIN, CREATE, PUBLIC, RULES, Rule
from aetherd.store.db import Database


class Guard:
    def __init__(self, db: Database) -> None:
        self.db = db

    def check(self, key: str, rule: Rule, message: Any) -> None:
        if rule.need == PUBLIC:
            return
        who = current()
        if who is None:  # only a transport that forgot to authenticate gets here
            raise Unauthenticated("no authenticated caller")
        if who.admin:
            return
        if rule.admin_if(message):
            raise PermissionDenied(f"{who.name} may not do this: it needs an admin")
        if rule.need == ADMIN:
            raise PermissionDenied(f"{who.name} is not an admin")
        if rule.need == CREATE and not who.can_create:
            raise PermissionDenied(f"{who.name} may not create (no 'create' scope)")
        if isinstance(rule.need, Role):
            self.require(who, message.session_id, rule.need)
        for ref in rule.reads(message):
            session_id = self.session_of(ref)
            if session_id is not None:
                self.require(who, session_id, Role.READER)

    def require(self, who: Principal, session_id: str, role: Role) -> None:
        have = self.role_on(who, session_id)
        if have is None:
            raise NotFound(f"no session {session_id!r}", session_id=session_id)
        if have < role:
            raise PermissionDenied(
                f"{who.name} is a {have.name.lower()} of {session_id}; "
                f"this needs {role.name.lower()}")

    def role_on(self, who: Principal, session_id: str) -> Role | None:
        """The caller's role on a session: None when it may not see it (or
        there is no such session)."""
        if who.admin:
            return Role.OWNER
        row = self.db.one("SELECT owner FROM sessions WHERE id=?", (session_id,))
        if row is None:
            return None
        if row[0] and row[0] == who.name:
            return Role.OWNER
        return who.roles.get(session_id)

    def session_of(self, ref: str) -> str | None:
        """The session a reference belongs to (None: names no session, such as
        "base"; the call itself then validates it). A commit whose session is
        gone belongs to nobody a non-admin can see."""
        if ref.startswith("ses_"):
            return ref
        table = {"ckp_": "checkpoints", "cmt_": "commits"}.get(ref[:4])
        if table is None:
            return None
        row = self.db.one(f"SELECT session_id FROM {table} WHERE id=?", (ref,))
        if row is None:
            raise NotFound(f"no {table[:-1]} {ref!r}")
        return row[0]

    def wrap(self, key: str, rule: Rule, method: Callable[..., Any],
             streaming: bool) -> Callable[..., Any]:
        if streaming:
            @functools.wraps(method)
            async def stream(message: Any) -> Any:
                self.check(key, rule, message)
                async for item in method(message):
                    yield item
            return stream

        @functools.wraps(method)
        async def unary(message: Any) -> Any:
            self.check(key, rule, message)
            return await method(message)
        return unary


def install(api: Api, guard: Guard) -> None:
    from aetherd.http.rpcs import all_rpcs

    missing = sorted(f"{s}.{n}" for s, n in all_rpcs() if f"{s}.{n}" not in RULES)
    if missing:
        raise RuntimeError(f"RPCs without an authorization rule: {', '.join(missing)}")
    for (service, name), rpc in all_rpcs().items():
        key = f"{service}.{name}"
        obj = getattr(api, service)
        setattr(obj, name, guard.wrap(key, RULES[key], getattr(obj, name), rpc.server_streaming))


def visible_sessions(who: Principal | None) -> tuple[str, list[str]] | None:
    """What a listing may show: None for everything, else (owner name, ids of
    sessions the caller holds a role on)."""
    if who is None or who.admin:
        return None
    return who.name, sorted(who.roles)
