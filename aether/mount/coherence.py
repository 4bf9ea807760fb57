"""Live coherence: the session's events keep the mount's tree and the kernel's
caches in line with changes made through the API or another mount.

The mount follows the session's event stream (SSE, resumable by cursor) from
the cursor it read at start. Each event names a path; the directory holding it
is listed again (one call) and merged into the inode table, and whatever
changed is invalidated in the kernel: `invalidate_entry_async` for names that
appeared or vanished, `invalidate_inode` for files whose attributes or content
changed. `invalidate_inode` may block (pyfuse3 pitfall), so it runs on a
thread of its own (`Notifier`); open files get attribute-only invalidation.

The mount's own changes do not come back: its requests carry its origin
(`Aether-Origin`) and it follows the stream with `exclude_origin` set to it,
so the daemon leaves their events out (their cursors are still passed).
Local content that is not written back yet always wins over the daemon's
during a merge; the write-back then applies the conflict rule (handles.py).
"""

from __future__ import annotations

import errno
import logging
import queue
import threading

import pyfuse3
import trio

from aether.mount.bridge import Bridge, Entry, Event, RemoteError
from aether.mount.inodes import DIR, FILE, SYMLINK, InodeTable, Node, now_ns

log = logging.getLogger("aether.mount.coherence")

COALESCE_SECONDS = 0.01
# Not a daemon event: the journal asking for a directory to be listed again.
REFRESH = "mount.refresh"
# Events that say nothing about files.
_IGNORED_PREFIXES = ("checkpoint.", "commit.", "cache.", "comment.", "annotation.",
                     "approval.", "session.created", "session.updated", "session.forked")


class Notifier:
    """Kernel cache invalidations. Entries go through pyfuse3's own async queue;
    inodes through a thread of ours, since `invalidate_inode` can block."""

    def __init__(self) -> None:
        self._q: queue.SimpleQueue[tuple[int, bool] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.enabled = False

    def start(self) -> None:
        self.enabled = True
        self._thread = threading.Thread(target=self._run, name="aether-invalidate", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.enabled = False
        if self._thread is not None:
            self._q.put(None)
            self._thread.join(timeout=5)
            self._thread = None

    def inode(self, ino: int, attr_only: bool) -> None:
        if self.enabled:
            self._q.put((ino, attr_only))

    def entry(self, parent_ino: int, name: str) -> None:
        if not self.enabled:
            return
        try:
            pyfuse3.invalidate_entry_async(parent_ino, name.encode("utf-8", "surrogateescape"),
                                           ignore_enoent=True)
        except Exception:  # the kernel may already have dropped it
            log.debug("invalidate_entry(%d, %r) failed", parent_ino, name, exc_info=True)

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            ino, attr_only = item
            try:
                pyfuse3.invalidate_inode(ino, attr_only)
            except OSError as exc:
                if exc.errno != errno.ENOENT:  # ENOENT: the kernel does not hold it
                    log.debug("invalidate_inode(%d) failed: %s", ino, exc)
            except Exception:
                log.debug("invalidate_inode(%d) failed", ino, exc_info=True)


def add_entry(table: InodeTable, parent: Node, e: Entry) -> Node:
    """A node for a directory entry the daemon reported."""
    size = len(e.target.encode()) if e.kind == SYMLINK else (e.size if e.kind == FILE else 0)
    t = e.mtime_ns or now_ns()
    return table.new_node(parent, e.name, e.kind, mode=e.mode or (0o777 if e.kind == SYMLINK
                                                                   else 0o644),
                          size=size, hash=e.hash, target=e.target, mtime_ns=t, ctime_ns=t,
                          atime_ns=t, xattrs=dict(e.xattrs))


def merge(table: InodeTable, notifier: Notifier, d: Node, entries: list[Entry]) -> int:
    """Bring a loaded directory in line with a fresh listing; returns the number of
    changes (each one invalidated in the kernel)."""
    assert d.children is not None
    remote = {e.name: e for e in entries}
    changes = 0
    for name, child in list(d.children.items()):
        e = remote.get(name)
        if child.dirty or child.attrs_pending:
            continue  # local content wins until written back (then the conflict rule)
        if e is None or e.kind != child.kind:
            table.detach(child)
            notifier.entry(d.ino, name)
            table.maybe_drop(child)
            changes += 1
            continue
        # Attributes this mount changed and the daemon has not answered yet:
        # the listing may predate them (content it may still bring).
        ours = child.attrs_out > 0
        if child.kind == FILE:
            # (times compared to the microsecond: what the daemon keeps)
            times = not child.local_times and e.mtime_ns // 1000 != child.mtime_ns // 1000
            if e.hash == child.hash and e.size == child.size and (ours or (
                    e.mode == child.mode and e.xattrs == child.xattrs and not times)):
                continue
            content = e.hash != child.hash
            if content and child.staging is not None:  # clean but stale: drop it
                child.staging.discard()
                child.staging = None
            child.hash, child.size = e.hash, e.size
            if not ours:
                child.mode, child.xattrs = e.mode, dict(e.xattrs)
            if not child.local_times or (content and not ours):
                child.mtime_ns = child.ctime_ns = e.mtime_ns or now_ns()
                child.local_times = False
            notifier.inode(child.ino, attr_only=not content or child.opens > 0)
            changes += 1
        elif child.kind == SYMLINK:
            if e.target != child.target:
                child.target = e.target
                child.size = len(e.target.encode())
                notifier.inode(child.ino, attr_only=False)
                changes += 1
        elif child.kind == DIR:
            # (not its mtime: the mount's own moves with changes inside it)
            if not ours and (e.mode != child.mode or e.xattrs != child.xattrs):
                child.mode = e.mode
                child.xattrs = dict(e.xattrs)
                notifier.inode(child.ino, attr_only=True)
                changes += 1
            child.hash = e.hash
    for name, e in remote.items():
        if name not in d.children:
            add_entry(table, d, e)
            notifier.entry(d.ino, name)
            changes += 1
    return changes


def parent_of(path: str) -> str:
    return path.rpartition("/")[0]


class Coherence:
    """Follows the session's events and applies them (run it in a nursery)."""

    def __init__(self, bridge: Bridge, table: InodeTable, notifier: Notifier,
                 cursor: int, journal=None) -> None:
        self.bridge = bridge
        # Changes this mount made that the daemon may not have yet: a listing
        # taken before they arrive would undo them here (journal.py).
        self.journal = journal
        self.table = table
        self.notifier = notifier
        self.cursor = cursor
        self.applied = 0
        self.connected = False
        self._send: trio.MemorySendChannel[Event] | None = None

    def request_refresh(self, path: str) -> None:
        """List a directory again soon (from this task, after the journal's
        changes concerning it), as if an event had named something in it."""
        if self._send is not None:
            try:
                self._send.send_nowait(Event(0, REFRESH, path))
            except trio.WouldBlock:
                log.warning("too many events queued; /%s is not listed again", path)

    async def run(self) -> None:
        send, recv = trio.open_memory_channel[Event](100_000)
        self._send = send
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._follow, send)
            nursery.start_soon(self._apply, recv)

    async def _follow(self, send: trio.MemorySendChannel[Event]) -> None:
        delay = 0.1
        while True:
            try:
                async for ev in self.bridge.follow_events(self.cursor):
                    if not self.connected:
                        log.info("following session events from cursor %d", self.cursor)
                    self.connected = True
                    delay = 0.1
                    self.cursor = max(self.cursor, ev.cursor)
                    await send.send(ev)
            except OSError as exc:
                if self.connected:
                    log.warning("event stream broke (%s); reconnecting", exc)
                else:
                    log.debug("event stream unavailable (%s); retrying", exc)
            except Exception:  # never let the follower end the mount
                log.exception("reading the event stream failed; reconnecting")
            self.connected = False
            await trio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _apply(self, recv: trio.MemoryReceiveChannel[Event]) -> None:
        while True:
            batch = [await recv.receive()]
            await trio.sleep(COALESCE_SECONDS)
            while True:
                try:
                    batch.append(recv.receive_nowait())
                except trio.WouldBlock:
                    break
            try:
                await self.apply(batch)
            except Exception:
                log.exception("applying %d session events failed", len(batch))

    def _dirs_for(self, ev: Event) -> tuple[set[str], bool]:
        """The directories an event asks to refresh, and whether it asks for all."""
        t = ev.type
        if t == REFRESH:
            return {ev.path}, False
        if t.startswith(_IGNORED_PREFIXES):
            return set(), False
        if t in ("session.restored", "import.completed"):
            return set(), True
        if t in ("session.archived", "session.deleted"):
            log.warning("the session was %s", t.split(".")[1])
            return set(), False
        if t in ("file.written", "file.patched"):
            node = self.table.find(ev.path)
            if node is not None and node.kind == FILE and not node.dirty \
                    and node.hash == ev.attributes.get("hash"):
                return set(), False
        dirs = {parent_of(ev.path)}
        if t == "path.renamed" and ev.attributes.get("from_path"):
            dirs.add(parent_of(ev.attributes["from_path"]))
        return dirs, False

    async def apply(self, batch: list[Event]) -> None:
        dirs: set[str] = set()
        everything = False
        for ev in batch:
            more, all_ = self._dirs_for(ev)
            dirs |= more
            everything = everything or all_
        self.applied += len(batch)
        if everything:
            dirs = {self.table.path(d) for d in self.table.loaded_dirs()}
        for path in sorted(dirs, key=lambda p: (p.count("/"), p)):
            await self.refresh(path)

    async def refresh(self, path: str) -> None:
        """List a loaded directory again and merge what changed, after the
        journal has delivered this mount's own changes concerning it."""
        for _ in range(5):
            d = self.table.find(path)
            if d is None or d.kind != DIR or d.children is None:
                return  # nothing of it is cached here, so nothing can be stale
            gen = d.dir_gen
            if self.journal is not None:
                await self.journal.settle(path)
            try:
                entries = await self.bridge.list_dir(path)
            except RemoteError as exc:
                if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                    return  # gone: its parent's refresh removes it
                raise
            if d.dir_gen != gen or d.unlinked:
                continue  # a local change raced with the listing: list again
            n = merge(self.table, self.notifier, d, entries)
            if n:
                log.debug("refreshed /%s: %d change(s)", path, n)
            return
