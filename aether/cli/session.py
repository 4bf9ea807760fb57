"""`aether session ...`: create, list, inspect, fork, archive and delete sessions."""

from __future__ import annotations

import os
import re
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from aether.cli import output as fmt
from aether.cli.options import (
    AtOpt,
    JsonOpt,
    LabelOpt,
    NameOpt,
    QuietOpt,
    SessionArg,
    TagOpt,
    YesOpt,
    client,
    group,
    output,
    parse_labels,
    state,
)

app = group("Create, list, inspect, fork, archive and delete sessions.")


# Sessions are shown from their proto3 JSON (what `--json` prints): `session
# ls` and `show` ask the client for that JSON directly, so they never load the
# message classes (aether.pb, ~60 ms of their start); commands that hold a
# pb.Session convert it first (`as_json`).


def as_json(s: Any) -> dict[str, Any]:
    """A session as its proto3 JSON with every field present (dicts pass through)."""
    return s if isinstance(s, dict) else s.to_dict(include_default_values=True)


def _source(s: dict[str, Any]) -> str:
    if not s.get("sourceKind"):
        return "-"
    return f"{s['sourceKind']} {s.get('sourceRef', '')}".strip()


def _state(s: dict[str, Any]) -> str:
    """SESSION_STATE_ACTIVE -> active."""
    name = (s.get("state") or "").removeprefix("SESSION_STATE_")
    return "-" if name in ("", "UNSPECIFIED") else name.lower().replace("_", "-")


def _time(s: dict[str, Any], key: str) -> datetime | None:
    value = s.get(key)
    return datetime.fromisoformat(value) if value else None


def _count(s: dict[str, Any], key: str) -> int:
    return int(s.get(key) or 0)  # uint64: a string in proto3 JSON


SESSION_FIELDS = [
    ("ID", lambda s: s["id"]),
    ("Name", lambda s: s.get("name") or "-"),
    ("State", _state),
    ("Source", _source),
    ("Forked from", lambda s: s.get("parentSessionId") or "-"),
    ("Files", lambda s: f"{_count(s, 'fileCount')} ({fmt.size(_count(s, 'totalBytes'))})"),
    ("Root", lambda s: s.get("rootHash") or "-"),
    ("Base root", lambda s: s.get("baseRoot") or "-"),
    ("Labels", lambda s: fmt.pairs(s.get("labels"))),
    ("Tags", lambda s: ", ".join(s.get("tags") or []) or "-"),
    ("Metadata", lambda s: fmt.pairs(s.get("metadata"))),
    ("Policy", lambda s: fmt.pairs(policy_pairs(s.get("policy")))),
    ("Owner", lambda s: s.get("owner") or "-"),
    ("Created", lambda s: fmt.when(_time(s, "createTime"))),
    ("Updated", lambda s: fmt.when(_time(s, "updateTime"))),
    ("Archived", lambda s: fmt.when(_time(s, "archiveTime"))),
]

SESSION_COLUMNS = [
    fmt.Column("ID", lambda s: s["id"], style="cyan"),
    fmt.Column("NAME", lambda s: s.get("name") or "-", wrap=True),
    fmt.Column("STATE", _state),
    fmt.Column("FILES", lambda s: str(_count(s, "fileCount")), justify="right", drop=6),
    fmt.Column("SIZE", lambda s: fmt.size(_count(s, "totalBytes")), justify="right", drop=3),
    fmt.Column("LABELS", lambda s: fmt.pairs(s.get("labels")), wrap=True, drop=4),
    fmt.Column("TAGS", lambda s: ",".join(s.get("tags") or []) or "-", wrap=True, drop=5),
    fmt.Column("CREATED", lambda s: fmt.ago(_time(s, "createTime")), drop=2),
]


def policy_pairs(policy: dict[str, Any] | None) -> dict[str, str]:
    """The fields of a SessionPolicy's JSON that are set (not their zero default),
    by their proto field names."""
    out = {}
    for key, value in (policy or {}).items():
        if value in (None, False, 0, "0", ""):
            continue
        name = re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower()
        out[name] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def show_session(out: fmt.Output, s: Any, title: str | None = None) -> None:
    s = as_json(s)
    out.item(s, SESSION_FIELDS, lambda s: s["id"], title=title)


def _archive_format_for(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith((".tar.gz", ".tgz")):
        return "tar.gz"
    if name.endswith(".tar"):
        return "tar"
    if name.endswith(".zip"):
        return "zip"
    return None  # let the daemon detect it


@app.command("create")
def create(
    ctx: typer.Context,
    from_dir: Annotated[Path | None, typer.Option(
        "--from-dir", metavar="PATH", file_okay=False, exists=True, resolve_path=True,
        help="A directory on this machine (read by the local daemon, uploaded to a remote one).",
        show_default=False)] = None,
    from_archive: Annotated[str | None, typer.Option(
        "--from-archive", metavar="FILE|-",
        help="A tar, tar.gz or zip file to upload (- = stdin).", show_default=False)] = None,
    from_git: Annotated[str | None, typer.Option(
        "--from-git", metavar="URL",
        help="A git repository (path or URL) reachable from the daemon's host.",
        show_default=False)] = None,
    ref: Annotated[str | None, typer.Option(
        "--ref", help="Git ref to check out (with --from-git; default HEAD).",
        show_default=False)] = None,
    from_commit: Annotated[str | None, typer.Option(
        "--from-commit", metavar="ID", help="A commit (cmt_...).", show_default=False)] = None,
    from_checkpoint: Annotated[str | None, typer.Option(
        "--from-checkpoint", metavar="ID", help="A checkpoint (ckp_...).",
        show_default=False)] = None,
    from_session: Annotated[str | None, typer.Option(
        "--from-session", metavar="ID", help="Another session's working state.",
        show_default=False)] = None,
    from_template: Annotated[str | None, typer.Option(
        "--from-template", metavar="NAME", help="A template (see `aether template`).",
        show_default=False)] = None,
    name: NameOpt = "",
    label: LabelOpt = None,
    tag: TagOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Create a session: blank, or from a directory, archive, git repository,
    commit, checkpoint, session or template."""
    given = [flag for flag, v in (
        ("--from-dir", from_dir), ("--from-archive", from_archive), ("--from-git", from_git),
        ("--from-commit", from_commit), ("--from-checkpoint", from_checkpoint),
        ("--from-session", from_session), ("--from-template", from_template),
    ) if v]
    if len(given) > 1:
        raise typer.BadParameter(f"choose one source, not {' and '.join(given)}",
                                 param_hint="'--from-*'")
    if ref and not from_git:
        raise typer.BadParameter("--ref goes with --from-git", param_hint="'--ref'")
    labels = parse_labels(label)
    out = output(ctx, json_, quiet)

    from aether.client import source

    c = client(ctx)
    if from_dir is not None:
        if state(ctx).target().same_host:
            src = source.directory(from_dir)
        else:
            with out.status(f"Packing {from_dir}..."):
                src = source.archive(source.pack_directory(from_dir), "tar.gz")
    elif from_archive is not None:
        if from_archive == "-":
            src = source.archive(sys.stdin.buffer.read(), None)  # the daemon detects the format
        else:
            path = Path(from_archive)
            src = source.archive(path.read_bytes(), _archive_format_for(path))
    elif from_git:
        url = from_git
        if os.path.isdir(url) and state(ctx).target().same_host:
            url = os.path.abspath(url)
        src = source.git(url, ref or "")
    elif from_commit:
        src = source.commit(from_commit)
    elif from_checkpoint:
        src = source.checkpoint(from_checkpoint)
    elif from_session:
        src = source.session(from_session)
    elif from_template:
        src = source.template(from_template)
    else:
        src = source.blank()
    with out.status("Creating session..."):
        s = c.create_session(src, name=name, labels=labels, tags=tag or [])
    show_session(out, s)


@app.command("ls")
def ls(
    ctx: typer.Context,
    label: LabelOpt = None,
    tag: TagOpt = None,
    state_: Annotated[str | None, typer.Option(
        "--state", metavar="STATE", help="active or archived.", show_default=False)] = None,
    limit: Annotated[int, typer.Option(
        "--limit", help="Show at most this many (0 = all).", min=0)] = 0,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """List sessions, filtered by labels (all must match), tags and state."""
    if state_ and state_.lower() not in ("active", "archived"):
        raise typer.BadParameter("want active or archived", param_hint="'--state'")
    labels = parse_labels(label)
    out = output(ctx, json_, quiet)
    sessions = []
    for s in client(ctx).as_json().iter_sessions(labels=labels, tags=tag or [], state=state_):
        sessions.append(s)
        if limit and len(sessions) >= limit:
            break
    out.table(sessions, SESSION_COLUMNS, lambda s: s["id"], empty="No sessions.")


@app.command("show")
def show(ctx: typer.Context, session: SessionArg, json_: JsonOpt = False,
         quiet: QuietOpt = False) -> None:
    """Show a session's metadata."""
    out = output(ctx, json_, quiet)
    show_session(out, client(ctx).as_json().get_session(session))


@app.command("fork")
def fork(
    ctx: typer.Context,
    session: SessionArg,
    name: NameOpt = "",
    at: AtOpt = "",
    label: LabelOpt = None,
    tag: TagOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Fork a session: a new session sharing its state, at no copying cost."""
    labels = parse_labels(label)
    out = output(ctx, json_, quiet)
    s = client(ctx).fork_session(session, name=name, labels=labels, tags=tag or [], at=at)
    show_session(out, s)


@app.command("archive")
def archive(ctx: typer.Context, session: SessionArg, json_: JsonOpt = False,
            quiet: QuietOpt = False) -> None:
    """Archive a session: it becomes read-only."""
    out = output(ctx, json_, quiet)
    s = client(ctx).archive_session(session)
    out.done(f"Archived session {s.id}.", s, s.id)


@app.command("rm")
def rm(ctx: typer.Context, session: SessionArg, yes: YesOpt = False, json_: JsonOpt = False,
       quiet: QuietOpt = False) -> None:
    """Delete a session (its commits stay). Asks first on a terminal unless --yes."""
    out = output(ctx, json_, quiet)
    if not yes and sys.stdin.isatty() and sys.stderr.isatty():
        typer.confirm(f"Delete session {session}?", abort=True, err=True)
    s = client(ctx).delete_session(session)
    out.done(f"Deleted session {s.id or session}.", s, s.id or session)


TOMBSTONE_COLUMNS = [
    fmt.Column("SESSION", lambda t: t.session_id, style="cyan"),
    fmt.Column("NAME", lambda t: t.name or "-", wrap=True),
    fmt.Column("DELETED BY", lambda t: t.deleted_by or "-"),
    fmt.Column("REASON", lambda t: t.reason, drop=3),
    fmt.Column("FILES", lambda t: str(t.file_count), justify="right", drop=4),
    fmt.Column("SIZE", lambda t: fmt.size(t.total_bytes), justify="right", drop=2),
    fmt.Column("DELETED", lambda t: fmt.ago(t.delete_time), drop=1),
]

TOMBSTONE_FIELDS = [
    ("Session", lambda t: t.session_id),
    ("Name", lambda t: t.name or "-"),
    ("Owner", lambda t: t.owner or "-"),
    ("Labels", lambda t: fmt.pairs(t.labels)),
    ("Deleted by", lambda t: t.deleted_by or "-"),
    ("Reason", lambda t: t.reason),
    ("Created", lambda t: fmt.when(t.create_time)),
    ("Deleted", lambda t: fmt.when(t.delete_time)),
    ("Final root", lambda t: t.final_root_hash),
    ("Files", lambda t: f"{t.file_count} ({fmt.size(t.total_bytes)})"),
    ("Checkpoints", lambda t: str(t.checkpoint_count)),
    ("Commits", lambda t: str(t.commit_count)),
    ("Events", lambda t: fmt.pairs({k: str(v) for k, v in t.event_counts.items()})),
    ("Kept until", lambda t: fmt.when(t.expire_time)),
]


@app.command("deleted")
def deleted(
    ctx: typer.Context,
    session: Annotated[str | None, typer.Argument(
        metavar="[SESSION]", help="Show this deleted session's record.",
        show_default=False)] = None,
    owner: Annotated[str, typer.Option(
        "--owner", metavar="NAME", help="Only sessions this principal owned.")] = "",
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Audit records (tombstones) of deleted sessions, newest first: who deleted
    them, when, and what they held (admins). --json: Tombstone(s)."""
    out = output(ctx, json_, quiet)
    c = client(ctx)
    if session:
        out.item(c.get_tombstone(session), TOMBSTONE_FIELDS, lambda t: t.session_id)
    else:
        out.table(c.iter_tombstones(owner=owner), TOMBSTONE_COLUMNS, lambda t: t.session_id,
                  empty="No deleted sessions on record.")


@app.command("label")
def label_(
    ctx: typer.Context,
    session: SessionArg,
    pairs: Annotated[list[str] | None, typer.Argument(
        metavar="[KEY=VALUE]...", help="Labels to set (replacing a key's old value).",
        show_default=False)] = None,
    rm: Annotated[list[str] | None, typer.Option(
        "--rm", metavar="KEY", help="A label to remove (repeatable).", show_default=False)] = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Set and remove labels of a session (with neither, show the session).

    The labels are read, changed and written back whole: of two changes made
    at the same moment, the later one wins."""
    set_ = parse_labels(pairs, param_hint="'KEY=VALUE'")
    both = sorted(set(set_) & set(rm or []))
    if both:
        raise typer.BadParameter(f"both set and removed: {', '.join(both)}", param_hint="'--rm'")
    out = output(ctx, json_, quiet)
    c = client(ctx)
    s = c.get_session(session)
    if set_ or rm:
        labels = {k: v for k, v in s.labels.items() if k not in set(rm or [])}
        labels.update(set_)
        if labels != dict(s.labels):
            s = c.update_session(session, labels=labels)
    show_session(out, s)


@app.command("tag")
def tag_(
    ctx: typer.Context,
    session: SessionArg,
    tags: Annotated[list[str] | None, typer.Argument(
        metavar="[TAG]...", help="Tags to add.", show_default=False)] = None,
    rm: Annotated[list[str] | None, typer.Option(
        "--rm", metavar="TAG", help="A tag to remove (repeatable).", show_default=False)] = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Add and remove tags of a session (with neither, show the session).

    The tags are read, changed and written back whole: of two changes made at
    the same moment, the later one wins."""
    both = sorted(set(tags or []) & set(rm or []))
    if both:
        raise typer.BadParameter(f"both added and removed: {', '.join(both)}",
                                 param_hint="'--rm'")
    out = output(ctx, json_, quiet)
    c = client(ctx)
    s = c.get_session(session)
    if tags or rm:
        new = [t for t in s.tags if t not in set(rm or [])]
        new += [t for t in dict.fromkeys(tags or []) if t not in new]
        if new != list(s.tags):
            s = c.update_session(session, tags=new)
    show_session(out, s)


_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


@app.command("policy")
def policy_(
    ctx: typer.Context,
    session: SessionArg,
    settings: Annotated[list[str] | None, typer.Argument(
        metavar="[FIELD=VALUE]...",
        help="Policy fields to change: commit_requires_approval, min_approvals, read_only, "
        "separation_of_duties, max_bytes, max_files, max_cache_bytes, max_bus_backlog, "
        "ttl_idle_seconds, ttl_archived_seconds. Booleans take true/false; 0 means no limit.",
        show_default=False)] = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Show or change a session's policy (fields not named keep their value).

    The policy is read, changed and written back whole: of two changes made at
    the same moment, the later one wins. --json: the SessionPolicy."""
    import dataclasses

    from aether import pb

    names = {f.name for f in dataclasses.fields(pb.SessionPolicy)}
    changes: dict[str, bool | int] = {}
    for item in settings or []:
        key, sep, raw = item.partition("=")
        if not sep or key not in names:
            raise typer.BadParameter(
                f"{item!r} is not FIELD=VALUE with a known field", param_hint="'FIELD=VALUE'")
        if isinstance(getattr(pb.SessionPolicy(), key), bool):
            if raw.lower() not in (*_TRUE, *_FALSE):
                raise typer.BadParameter(f"{key} takes true or false", param_hint="'FIELD=VALUE'")
            changes[key] = raw.lower() in _TRUE
        else:
            if not raw.isdigit():
                raise typer.BadParameter(f"{key} takes a whole number >= 0",
                                         param_hint="'FIELD=VALUE'")
            changes[key] = int(raw)
    out = output(ctx, json_, quiet)
    c = client(ctx)
    s = c.get_session(session)
    policy = s.policy or pb.SessionPolicy()
    if changes:
        policy = dataclasses.replace(policy, **changes)
        s = c.update_session(session, policy=policy)
        policy = s.policy or pb.SessionPolicy()
    pairs = policy_pairs(policy.to_dict(include_default_values=True))
    fields = [(name, lambda _p, v=value: v) for name, value in pairs.items()]
    out.item(policy, fields or [("policy", lambda _p: "none (all defaults)")], lambda _p: s.id)


@app.command("rename")
def rename(
    ctx: typer.Context,
    session: SessionArg,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The new name.",
                                        show_default=False)],
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Give a session a new human-readable name. --json: the Session."""
    out = output(ctx, json_, quiet)
    show_session(out, client(ctx).update_session(session, name=name))
