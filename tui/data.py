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
from typing import Any

from aether import pb
from aether.client import AsyncClient, aconnect, source

# What the sessions screen's create form can start a session from.
SOURCE_KINDS = ("blank", "directory", "git", "template")


@dataclass(frozen=True)
class NewSession:
    """What the create form collected."""

    kind: str  # one of SOURCE_KINDS
    value: str = ""  # directory path, git URL/path or template name
    ref: str = ""  # git ref
    name: str = ""

    def source(self) -> pb.SessionSource:
        if self.kind == "directory":
            return source.directory(self.value)
        if self.kind == "git":
            return source.git(self.value, ref=self.ref)
        if self.kind == "template":
            return source.template(self.value)
        return source.blank()


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
        return await self.client.create_session(new.source(), name=new.name)

    async def fork(self, session_id: str, name: str = "", at: str = "") -> pb.Session:
        return await self.client.fork_session(session_id, name=name, at=at)

    async def archive(self, session_id: str) -> pb.Session:
        return await self.client.archive_session(session_id)

    async def delete(self, session_id: str) -> pb.Session:
        return await self.client.delete_session(session_id)

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
