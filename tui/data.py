"""The TUI's one door to the daemon: a thin adapter over `aether.client.AsyncClient`.

Screens call these coroutines (from workers) and never build requests
themselves. Every method returns `aether.pb` messages or plain values and
raises the SDK's typed `AetherError`s, which the workers turn into
notifications (see `tui.tasks`).
"""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aether import pb
from aether.client import AsyncClient, aconnect, source

# What the sessions screen's create form can start a session from (another
# session is a fork: the sessions screen's own action).
SOURCE_KINDS = ("blank", "directory", "git", "template", "archive", "commit", "checkpoint")


@dataclass(frozen=True)
class NewSession:
    """What the create form collected."""

    kind: str  # one of SOURCE_KINDS
    # directory path (daemon's host), git URL/path, template name, archive path
    # (this host), commit id or checkpoint id
    value: str = ""
    ref: str = ""  # git ref
    name: str = ""

    def source(self) -> pb.SessionSource:
        """The API's source. An archive is read here (a directory is packed as
        tar.gz): it blocks, so call it off the event loop."""
        if self.kind == "directory":
            return source.directory(self.value)
        if self.kind == "git":
            return source.git(self.value, ref=self.ref)
        if self.kind == "template":
            return source.template(self.value)
        if self.kind == "archive":
            path = Path(self.value).expanduser()
            if path.is_dir():
                return source.archive(source.pack_directory(path))
            return source.archive(path.read_bytes())  # format detected from the content
        if self.kind == "commit":
            return source.commit(self.value)
        if self.kind == "checkpoint":
            return source.checkpoint(self.value)
        return source.blank()


@dataclass(frozen=True)
class NewAnnotation:
    """What the annotate dialog collected (lines 1-based, inclusive)."""

    start_line: int
    end_line: int
    body: str
    severity: str = "info"  # "info", "warning", "error" (the API takes free-form too)


@dataclass(frozen=True)
class Origin:
    """Where a session's base came from. For a fork (`kind == "session"`) the base
    is the parent's state at the moment of the fork: the daemon records the
    parent's id and that state's root as the child's base, so "base" in a diff
    *is* "the fork parent, as forked"."""

    kind: str  # the session's source_kind: "blank", "git", "session" (a fork), ...
    ref: str  # what it named: the parent's id, a commit id, a URL, ...
    parent: pb.Session | None = None  # the fork parent, while it exists

    @property
    def is_fork(self) -> bool:
        return self.kind == "session"


@dataclass(frozen=True)
class TimelineEntry:
    """A checkpoint or a commit, for the session's timeline (newest first)."""

    kind: str  # "checkpoint" | "commit"
    id: str
    message: str
    time: Any  # datetime | None
    files: int
    total_bytes: int


def user_name() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in a container
        return "tui"


class Backend:
    """Every daemon operation the TUI uses, over one AsyncClient."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.user = user_name()

    @classmethod
    async def connect(
        cls, server: str | None = None, token: str | None = None, profile: str | None = None,
    ) -> Backend:
        """Resolve the daemon like the CLI does (flags, environment, profiles, or the
        local daemon, started on demand)."""
        return cls(await aconnect(server, token, profile=profile))

    async def close(self) -> None:
        await self.client.aclose()

    @property
    def where(self) -> str:
        return self.client.url

    # -- sessions

    async def sessions(self) -> list[pb.Session]:
        return [s async for s in self.client.iter_sessions()]

    async def session(self, session_id: str) -> pb.Session:
        return await self.client.get_session(session_id)

    async def create_session(self, new: NewSession) -> pb.Session:
        src = await asyncio.to_thread(new.source)  # an archive is read from disk
        return await self.client.create_session(src, name=new.name)

    async def fork(self, session_id: str, name: str = "", at: str = "") -> pb.Session:
        return await self.client.fork_session(session_id, name=name, at=at)

    async def archive(self, session_id: str) -> pb.Session:
        return await self.client.archive_session(session_id)

    async def delete(self, session_id: str) -> pb.Session:
        return await self.client.delete_session(session_id)

    async def origin(self, session: pb.Session) -> Origin:
        """The session's origin, with its fork parent fetched (None when the
        parent was deleted since: the child's base stays readable)."""
        from aether.errors import NotFound

        parent_id = session.parent_session_id
        parent = None
        if parent_id:
            try:
                parent = await self.client.get_session(parent_id)
            except NotFound:
                parent = None
        return Origin(session.source_kind, session.source_ref or parent_id, parent)

    async def templates(self) -> list[pb.Template]:
        return [t async for t in self.client.iter_templates()]

    # -- files

    async def children(
        self, session_id: str, path: str = "", page_token: str = "", page_size: int = 0,
    ) -> tuple[list[pb.FileInfo], str]:
        """One page of the entries directly under `path`, and the token of the next
        page ("" after the last)."""
        page = await self.client.list_tree(session_id, path, depth=1, page_token=page_token,
                                           page_size=page_size)
        return list(page.entries), page.next_page_token

    async def read(self, session_id: str, path: str, limit: int) -> pb.ReadFileResponse:
        return await self.client.read_file(session_id, path, length=limit)

    # -- states

    async def timeline(self, session_id: str) -> list[TimelineEntry]:
        ckps, cmts = await asyncio.gather(
            self.client.list_checkpoints(session_id), self.client.list_commits(session_id))
        out = [TimelineEntry("checkpoint", c.id, c.message, c.create_time, c.file_count,
                             c.total_bytes) for c in ckps.checkpoints]
        out += [TimelineEntry("commit", c.id, c.message, c.create_time, c.file_count,
                              c.total_bytes) for c in cmts.commits]
        out.sort(key=lambda e: (e.time is not None, e.time), reverse=True)
        return out

    async def checkpoint(self, session_id: str, message: str) -> pb.Checkpoint:
        return await self.client.create_checkpoint(session_id, message=message)

    async def restore(self, session_id: str, target: str) -> pb.Session:
        return await self.client.restore_session(session_id, target)

    async def changes(self, session_id: str, since: str = "") -> list[pb.Change]:
        return list((await self.client.list_changes(session_id, since=since)).changes)

    async def diff(self, session_id: str, from_: str = "", to: str = "") -> pb.DiffResponse:
        return await self.client.diff(session_id, from_=from_, to=to)

    async def commit(self, session_id: str, message: str) -> pb.Commit:
        return await self.client.create_commit(session_id, message=message, author=self.user)

    # -- review

    async def annotations(self, session_id: str, path: str = "") -> list[pb.Annotation]:
        """Annotations of one file (every file's when `path` is "")."""
        return [a async for a in self.client.iter_annotations(session_id, path=path)
                if not path or a.path == path]

    async def annotate(self, session_id: str, path: str, new: NewAnnotation) -> pb.Annotation:
        return await self.client.create_annotation(
            session_id, path, new.start_line, new.end_line, new.body, severity=new.severity,
            author=self.user)

    async def comments(self, session_id: str) -> list[pb.Comment]:
        """Every comment of the session, oldest first."""
        return [c async for c in self.client.iter_comments(session_id)]

    async def comment(self, session_id: str, body: str, path: str = "",
                      parent_id: str = "") -> pb.Comment:
        return await self.client.create_comment(session_id, body, path=path,
                                                parent_id=parent_id, author=self.user)

    async def approvals(self, session_id: str) -> list[pb.Approval]:
        return [a async for a in self.client.iter_approvals(session_id)]

    async def request_approval(self, session_id: str, title: str) -> pb.Approval:
        return await self.client.request_approval(session_id, title=title, requester=self.user)

    async def approve(self, session_id: str, approval_id: str, reason: str = "") -> pb.Approval:
        return await self.client.approve(session_id, approval_id, reviewer=self.user,
                                         reason=reason)

    async def reject(self, session_id: str, approval_id: str, reason: str) -> pb.Approval:
        return await self.client.reject(session_id, approval_id, reviewer=self.user,
                                        reason=reason)

    # -- bus and events

    async def publish(self, session_id: str, topic: str, payload: str) -> pb.BusMessage:
        return await self.client.publish(session_id, topic, payload, sender=self.user)

    async def events_cursor(self, session_id: str) -> int:
        """The session's newest event cursor now. A filter that matches nothing
        moves `next_cursor` past every row (docs/api.md, "Reading"), and a live
        session's log never holds `session.deleted`."""
        page = await self.client.list_events(session_id, types=["session.deleted"], limit=1)
        return page.next_cursor

    async def follow(
        self, kind: str, session_id: str, on_item: Callable[[Any], Awaitable[None] | None],
        after: int = 0,
    ) -> None:
        """Follow the bus ("bus") or the events ("events") of a session forever:
        history after `after`, then live items from the server stream. A broken
        connection is resumed from the last cursor; NotFound (the session is
        gone) ends it by raising."""
        from aether.errors import Unavailable

        opener = self.client.follow_bus if kind == "bus" else self.client.follow_events
        delay = 0.2
        while True:
            stream = opener(session_id, after=after)
            try:
                async with stream:
                    delay = 0.2
                    async for item in stream:
                        after = item.cursor
                        result = on_item(item)
                        if result is not None:
                            await result
            except Unavailable:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            else:  # the server closed the stream cleanly: follow again
                await asyncio.sleep(delay)

    # -- cache

    async def cache_keys(self, session_id: str, prefix: str = "",
                         limit: int = 500) -> list[pb.CacheEntryMetadata]:
        """The first `limit` keys starting with `prefix`, in key order."""
        page = await self.client.list_cache_keys(session_id, prefix=prefix, page_size=limit)
        return list(page.keys)

    async def cache_get(self, session_id: str, key: str) -> pb.CacheEntry:
        return await self.client.cache_get(session_id, key)

    async def cache_delete(self, session_id: str, key: str) -> int:
        return (await self.client.cache_delete(session_id, key)).deleted
