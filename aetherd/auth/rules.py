"""What every RPC needs of its caller: the authorization table.

One entry per RPC of every service, keyed "service.method" as in
aetherd/http/rpcs.py. The guard (guard.py) refuses to start a daemon whose
services have an RPC missing here, and tests/test_authorization.py runs each
role against each RPC from this table, so a new route cannot ship without a
rule.

Needs:
- PUBLIC: anyone, even unauthenticated over TCP (liveness probes).
- ANYONE: any authenticated caller (results may be filtered to what it may see).
- ADMIN: the "admin" scope (or an operator: socket owner, configured token).
- CREATE: the "create" scope; the caller owns what it creates.
- a Role: that role on the session the request names (`session_id`).
Whatever else a request names is checked too (`reads`): a source session,
checkpoint or commit needs READER on the session it belongs to.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aetherd.auth.principal import Role

PUBLIC, ANYONE, ADMIN, CREATE = "public", "anyone", "admin", "create"


def _states(msg: Any) -> list[str]:
    """State selectors (`at`, `from`, `to`): a commit there may be any session's."""
    return [v for v in (getattr(msg, f, "") for f in ("at", "from_", "to")) if v]


def _source(msg: Any) -> list[str]:
    """What CreateSession reads from: a session, checkpoint or commit id."""
    src = msg.source
    if src is None:
        return []
    for kind, field in (("session", "session_id"), ("checkpoint", "checkpoint_id"),
                        ("commit", "commit_id")):
        ref = getattr(src, kind, None)
        if ref is not None:
            return [getattr(ref, field)]
    return []


def _template_source(msg: Any) -> list[str]:
    return [v for v in (msg.session_id, msg.at, msg.checkpoint_id, msg.commit_id) if v]


def _needs_host(msg: Any) -> bool:
    """A directory source reads the daemon host's disk: operators only."""
    return msg.source is not None and msg.source.directory is not None


@dataclass(frozen=True)
class Rule:
    need: str | Role
    # Ids (ses_/ckp_/cmt_) the call reads besides its own session.
    reads: Callable[[Any], list[str]] = lambda _m: []
    # True when this particular request needs an operator anyway.
    admin_if: Callable[[Any], bool] = lambda _m: False


def _read(reads: Callable[[Any], list[str]] = _states) -> Rule:
    return Rule(Role.READER, reads=reads)


RULES: dict[str, Rule] = {
    # sessions
    "sessions.create_session": Rule(CREATE, reads=_source, admin_if=_needs_host),
    "sessions.list_sessions": Rule(ANYONE),
    "sessions.get_session": _read(),
    "sessions.update_session": Rule(Role.OWNER),
    "sessions.delete_session": Rule(Role.OWNER),
    "sessions.fork_session": Rule(CREATE, reads=lambda m: [m.session_id, *_states(m)]),
    "sessions.archive_session": Rule(Role.OWNER),
    "sessions.restore_session": Rule(Role.WRITER),
    "sessions.list_tombstones": Rule(ADMIN),
    "sessions.get_tombstone": Rule(ADMIN),
    # files
    "files.read_file": _read(),
    "files.read_files": _read(),  # as read_file: a commit in `at` needs a reader of its session
    "files.stat": _read(),
    "files.list_tree": _read(),
    "files.get_manifest": _read(),
    "files.list_changes": _read(),
    "files.write_file": Rule(Role.WRITER),
    "files.patch_file": Rule(Role.WRITER),
    "files.delete_file": Rule(Role.WRITER),
    "files.mkdir": Rule(Role.WRITER),
    "files.rmdir": Rule(Role.WRITER),
    "files.rename": Rule(Role.WRITER),
    "files.symlink": Rule(Role.WRITER),
    "files.copy": Rule(Role.WRITER),
    "files.set_attributes": Rule(Role.WRITER),
    "files.apply": Rule(Role.WRITER),
    # A writer may upload content; asking which chunks the daemon holds is
    # part of uploading (docs/access.md: what that tells a writer).
    "files.missing_chunks": Rule(Role.WRITER),
    "files.put_chunks": Rule(Role.WRITER),
    # persistence
    "persistence.create_checkpoint": Rule(Role.WRITER),
    "persistence.list_checkpoints": _read(),
    "persistence.get_checkpoint": _read(),
    "persistence.delete_checkpoint": Rule(Role.WRITER),
    "persistence.create_commit": Rule(Role.WRITER),
    "persistence.list_commits": _read(),
    "persistence.get_commit": Rule(ANYONE, reads=lambda m: [m.commit_id]),
    "persistence.diff": _read(),
    "persistence.export": _read(),
    "persistence.import_": Rule(Role.WRITER),
    # cache
    "cache.get": _read(),
    "cache.exists": _read(),
    "cache.get_metadata": _read(),
    "cache.list_keys": _read(),
    "cache.stats": _read(),
    "cache.batch_get": _read(),
    "cache.put": Rule(Role.WRITER),
    "cache.delete": Rule(Role.WRITER),
    "cache.compare_and_set": Rule(Role.WRITER),
    "cache.batch_set": Rule(Role.WRITER),
    "cache.batch_delete": Rule(Role.WRITER),
    "cache.delete_by_prefix": Rule(Role.WRITER),
    # bus and events
    "bus.publish": Rule(Role.WRITER),
    "bus.read": _read(),
    "bus.follow": _read(),
    "events.list_events": _read(),
    "events.follow": _read(),
    # review
    "review.create_comment": Rule(Role.REVIEWER),
    "review.list_comments": _read(),
    "review.create_annotation": Rule(Role.REVIEWER),
    "review.list_annotations": _read(),
    "review.delete_annotation": Rule(Role.REVIEWER),
    "review.request_approval": Rule(Role.WRITER),
    "review.list_approvals": _read(),
    "review.approve": Rule(Role.REVIEWER),
    "review.reject": Rule(Role.REVIEWER),
    # templates (global)
    "templates.create_template": Rule(CREATE, reads=_template_source),
    "templates.list_templates": Rule(ANYONE),
    "templates.get_template": Rule(ANYONE),
    "templates.delete_template": Rule(ADMIN),
    # observability
    "observability.health": Rule(PUBLIC),
    "observability.get_session_health": _read(),
    "observability.get_usage": _read(),
    "observability.get_analytics": _read(),
    # identity
    "identity.create_token": Rule(ADMIN),
    "identity.list_tokens": Rule(ADMIN),
    "identity.revoke_token": Rule(ADMIN),
    "identity.who_am_i": Rule(ANYONE),
}
