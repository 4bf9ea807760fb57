"""Write-behind: changes acknowledged locally, sent to the daemon in batches.

Every change the mount makes to the session (a closed file's content, unlink,
mkdir, rmdir, rename, symlink, chmod, utimes, setxattr) is applied to the
inode table at once and appended to this journal; the FUSE request is
answered without waiting for the daemon. A flusher task sends the journal in
order, as `fs:apply` batches: one request and one daemon transaction (one
fsync) for up to `BATCH_OPS` changes, instead of one of each per change.
While one batch is on its way the next accumulates, so the batch size follows
the load by itself.

Durability: `sync()` is the barrier. fsync, fsyncdir and unmount wait until
everything journalled before them is answered by the daemon, and report a
change that failed there (its errno, once). A close does not wait: as on
NFS or any write-back cache, a write-back error after close is logged and
reported by the next fsync. Content is never lost on such an error: the file
stays dirty in its staging file and is sent again by the next fsync, the next
change to it, or at unmount (a close alone does not retry it).

Order is what makes this equivalent to sending each change when it happens:
batches go one at a time, ops in journal order, and each op carries the path
it had when it was journalled. A file's content is captured when its write
is journalled (a copy of the staging file up to `INLINE_MAX`; larger files
are read from the staging file when their turn comes and go through the
single-file path in handles.py, which sends them by chunks). A second close
of a file whose write has not left yet replaces that write's content instead
of adding another. A file created and unlinked before its write left is
never sent at all. A change of attributes (mode, mtime, xattrs) of a file
whose new content is not journalled yet waits for it and follows it (a write
sets the mtime, so the other order would undo a `touch -d` or `cp -p`).

Failures of single ops come back per op and are handled per op: a write that
lost a race follows the conflict rule (handles.py); "already done" answers
(a delete of a missing file, a mkdir of an existing directory, a write that
finds exactly its own content, as after a retried batch) count as success;
anything else is logged, remembered for the next `sync()`, and the
directories involved are listed again so the mount shows the daemon's truth
again. Each batch goes with a batch id: a batch whose answer did not come
back (the daemon could not be reached, or died or the connection broke after
the request left) is sent again as it is, with back-off, until it is
answered; the daemon applies a batch id once and answers a repeat from its
record (aetherd/services/batch_records.py), so a rename or a symlink is never
applied twice and a daemon restart is a pause.
"""

from __future__ import annotations

import base64
import errno
import logging
import os
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import blake3
import trio

from aether.errors import AetherError, from_code
from aether.mount.bridge import (
    RETRY_SECONDS,
    Bridge,
    ConflictError,
    Entry,
    RemoteError,
    errno_for,
    file_entry,
)
from aether.mount.fileio import pread_all
from aether.mount.inodes import (
    ATTR_MODE,
    ATTR_MTIME,
    ATTR_XATTRS,
    DIR,
    FILE,
    InodeTable,
    Node,
)

log = logging.getLogger("aether.mount.journal")

# Content up to this size is copied into the journal when the file is closed;
# larger files are read from their staging file when sent (handles.py).
INLINE_MAX = int(os.environ.get("AETHER_MOUNT_INLINE_MAX") or 1 << 20)
BATCH_OPS = 1000
BATCH_BYTES = 16 << 20
# Back-pressure: handlers wait while this much is journalled and not sent.
MAX_PENDING_OPS = 20_000
MAX_PENDING_BYTES = 128 << 20
ERRORS_KEPT = 1000

WRITE, DELETE, MKDIR, RMDIR, RENAME, SYMLINK, ATTRS = (
    "write", "delete", "mkdir", "rmdir", "rename", "symlink", "attrs")


@dataclass(eq=False)
class Op:
    kind: str
    path: str
    node: Node | None = None
    data: bytes | None = None  # writes: the content, or None for a large file
    mode: int = 0
    gen: int = 0  # writes: node.data_gen when `data` was captured
    dst: str = ""  # renames
    overwrite: bool = False  # renames
    target: str = ""  # symlinks
    # attributes: which (ATTR_* bits), and the values when journalled
    attrs: int = 0
    mtime_ns: int = 0
    xattrs: dict[bytes, bytes] | None = None
    seq: int = 0
    sent: bool = False
    dropped: bool = False  # taken back before it was sent: skipped

    def json(self, if_match: str) -> dict[str, Any]:
        """The op as the proto3 JSON of an `FsOp` (built directly: message
        objects cost more CPU than the daemon spends applying the op)."""
        if self.kind == WRITE:
            w: dict[str, Any] = {"path": self.path,
                                 "data": base64.b64encode(self.data or b"").decode("ascii"),
                                 "mode": self.mode}
            if if_match:
                w["ifMatch"] = if_match
            return {"write": w}
        if self.kind == DELETE:
            return {"delete": {"path": self.path}}
        if self.kind == MKDIR:
            return {"mkdir": {"path": self.path, "mode": self.mode}}
        if self.kind == RMDIR:
            return {"rmdir": {"path": self.path}}
        if self.kind == RENAME:
            return {"rename": {"fromPath": self.path, "toPath": self.dst,
                               "overwrite": self.overwrite}}
        if self.kind == ATTRS:
            a: dict[str, Any] = {"path": self.path}
            if self.attrs & ATTR_MODE:
                a["mode"] = self.mode
            if self.attrs & ATTR_MTIME:
                a["mtime"] = _rfc3339(self.mtime_ns)
            if self.xattrs is not None:
                a["replaceXattrs"] = True
                a["setXattrs"] = {n.decode(): base64.b64encode(v).decode("ascii")
                                  for n, v in self.xattrs.items()}
            return {"setAttributes": a}
        return {"symlink": {"path": self.path, "target": self.target}}


class Journal:
    """The ordered changes not yet answered by the daemon, and their flusher."""

    def __init__(self, bridge: Bridge, table: InodeTable) -> None:
        self.bridge = bridge
        self.table = table
        # Set by the owner: the single-file write-back (large files, and the
        # conflict rule), and a directory relisting that does not sync first.
        self.send_file: Callable[[Node, str], Awaitable[None]] | None = None
        self.lost_race: Callable[[Node], Awaitable[None]] | None = None
        self.written: Callable[[Node, Entry, int], None] | None = None
        # Asks coherence to list a directory again once the journal's changes
        # concerning it have arrived (never from here: a listing taken while
        # later changes are still queued would undo them in the mount's view).
        self.relist: Callable[[str], None] | None = None
        self._log: deque[Op] = deque()
        self._unsent_writes: dict[int, Op] = {}  # ino -> its write not yet sent
        # ino -> data_gen of the newest content journalled (sent or not): a
        # close right after a flush journals nothing new.
        self._queued: dict[int, int] = {}
        self._flusher: object | None = None  # the task sending a batch right now
        # A batch whose attempt failed without an answer: sent again as it is
        # before anything else.
        self._again: _Outgoing | None = None
        # Writes that lost a race, with the newest op seq to wait for before
        # their conflict copies are made (_lost_races).
        self._lost: deque[tuple[int, Node]] = deque()
        # ino -> how many of the log's ops are about that node, and how many of
        # those are out (sent, not answered): O(1) answers for unlink and rename.
        self._ops_of: Counter[int] = Counter()
        self._sent_of: Counter[int] = Counter()
        self._seq = 0  # of the newest op journalled
        self._bytes = 0
        self._changed = trio.Event()  # something was journalled
        self._progress = trio.Event()  # a batch was answered
        # Failures not reported yet: (op seq, the file for a write or None, error).
        self._errors: list[tuple[int, Node | None, OSError]] = []
        self._unreachable_since: float | None = None

    def __len__(self) -> int:
        return len(self._log)

    # ---- journalling (no awaits: each call is atomic on the trio thread)

    def _append(self, op: Op) -> Op:
        self._seq += 1
        op.seq = self._seq
        self._log.append(op)
        if op.node is not None:
            self._ops_of[op.node.ino] += 1
        self._bytes += len(op.data or b"")
        self._changed.set()
        return op

    def write(self, node: Node, *, again: bool = False) -> None:
        """Journal a file's content as it is now (its staging file). Content
        already journalled (or whose write-back failed) is not journalled
        again unless `again` (fsync, unmount): a close alone does not retry."""
        st = node.staging
        if st is None or node.kind != FILE or node.unlinked:
            return
        if self._queued.get(node.ino) == node.data_gen and (
                not again or self._ops_of[node.ino]):
            self._attributes_now(node)
            return  # journalled already (and, with `again`, still on its way)
        path = self.table.path(node)
        size = st.size()
        # up to one chunk inline; larger files go by chunks (handles.py)
        data = pread_all(st.fd, size, 0) if size <= INLINE_MAX else None
        self._queued[node.ino] = node.data_gen
        op = self._unsent_writes.get(node.ino)
        if op is not None and op.path == path:
            self._bytes += len(data or b"") - len(op.data or b"")
            op.data, op.gen, op.mode = data, node.data_gen, node.mode
        else:
            self._unsent_writes[node.ino] = self._append(
                Op(WRITE, path, node, data, node.mode, node.data_gen))
        self._attributes_now(node)

    def attributes(self, node: Node, which: int) -> None:
        """Journal a change of mode, mtime or xattrs (ATTR_* bits `which`), with
        the values the node has when the change is journalled. For a file with
        content changed here and not journalled yet, that is after its content
        (`write`). Kept locally: the root's attributes (the daemon has no entry
        for it), a symlink's mode and xattrs, times before 1970."""
        if node.unlinked or node.parent is None:
            return
        node.attrs_pending |= which
        if node.kind == FILE and node.dirty and self._queued.get(node.ino) != node.data_gen:
            return
        self._attributes_now(node)

    def _attributes_now(self, node: Node) -> None:
        which = node.attrs_pending
        node.attrs_pending = 0
        if node.kind != FILE and node.kind != DIR:
            which &= ATTR_MTIME  # a symlink has no mode or xattrs of its own
        if node.mtime_ns < 0:
            which &= ~ATTR_MTIME
        if not which:
            return
        path = self.table.path(node)
        last = self._log[-1] if self._log else None
        if last is not None and last.kind == ATTRS and last.node is node and not last.sent \
                and last.path == path:
            op = last  # the same file's change just before: one op for both
            op.attrs |= which
        else:
            op = self._append(Op(ATTRS, path, node, attrs=which))
            node.attrs_out += 1  # until the op leaves the log
        op.mode, op.mtime_ns = node.mode, node.mtime_ns
        if op.attrs & ATTR_XATTRS:
            op.xattrs = dict(node.xattrs)

    def pending(self, node: Node) -> bool:
        """Is a change of this node journalled and not answered yet?"""
        return self._ops_of[node.ino] > 0

    def forget_new_file(self, node: Node, path: str) -> bool:
        """A file created here is unlinked: drop its write if it never left.
        True when the daemon never heard of it (no delete needs sending)."""
        if node.remote or self._sent_of[node.ino]:
            return False
        op = self._unsent_writes.get(node.ino)
        if op is None:
            return self._ops_of[node.ino] == 0
        if op.path != path or self._ops_of[node.ino] != 1:
            return False  # renames of it are journalled too: let them all go
        del self._unsent_writes[node.ino]
        self._drop(op)
        return True

    def _drop(self, op: Op) -> None:
        op.dropped = True
        self._bytes -= len(op.data or b"")
        op.data = b"" if op.data is not None else None
        if op.node is not None:
            self._ops_of[op.node.ino] -= 1

    def delete(self, path: str) -> None:
        self._append(Op(DELETE, path))

    def mkdir(self, path: str, mode: int) -> None:
        self._append(Op(MKDIR, path, mode=mode))

    def rmdir(self, path: str) -> None:
        self._append(Op(RMDIR, path))

    def rename(self, src: str, dst: str, overwrite: bool, node: Node | None = None) -> None:
        self._append(Op(RENAME, src, node, dst=dst, overwrite=overwrite))

    def symlink(self, path: str, target: str) -> None:
        self._append(Op(SYMLINK, path, target=target))

    async def room(self) -> None:
        """Wait while too much is journalled (back-pressure on writers)."""
        while len(self._log) >= MAX_PENDING_OPS or self._bytes >= MAX_PENDING_BYTES:
            await self._progress.wait()

    # ---- the barrier

    async def settle(self, path: str) -> None:
        """Before reading the daemon's view of `path` (a listing, a download):
        let the journalled changes that concern it arrive first (on it, inside
        it, or on a directory above it: a rename on its way changes what a path
        names). Changes elsewhere are not waited for. A no-op inside the
        flusher itself."""
        if not self._log or self._flusher is trio.lowlevel.current_task():
            return
        target = 0
        for op in self._log:
            if _related(op.path, path) or (op.dst and _related(op.dst, path)):
                target = op.seq
        if target:
            await self.sync(upto=target)

    async def sync(self, *, node: Node | None = None, directory: Node | None = None,
                   upto: int = 0) -> None:
        """Wait until every op journalled so far (or up to `upto`) is answered.
        Then report (raise, once) a failure that concerns the caller: for
        `node` (an fsync of a file), its own write-backs; for `directory` (an
        fsync of a directory), directory changes anywhere and write-backs of
        its files. As fsync(2) reports a file's write-back errors, not
        another's."""
        target = upto or self._seq
        # Ops leave the log in order once their batch is answered (ops dropped
        # unsent leave with the batch that skips them).
        while self._log and self._log[0].seq <= target:
            if self._unreachable_since is not None and \
                    trio.current_time() - self._unreachable_since > RETRY_SECONDS:
                raise OSError(errno.EIO, f"aetherd cannot be reached; {len(self._log)} "
                              "change(s) wait to be sent")
            with trio.move_on_after(0.5):
                await self._progress.wait()
        if node is None and directory is None:
            return
        mine = [e for e in self._errors if (e[1] is node if node is not None else
                                            e[1] is None or e[1].parent is directory)]
        if mine:
            self._errors = [e for e in self._errors if e not in mine]
            raise mine[0][2]

    # ---- the flusher

    async def run(self) -> None:
        """Send the journal as it fills (run in a nursery; cancelled between batches)."""
        while True:
            if not self._log:
                self._changed = trio.Event()
                await self._changed.wait()
            await self.flush_once()

    async def drain(self, deadline: float) -> None:
        """Send everything now, in the caller's task (at unmount, with no flusher)."""
        while self._log and trio.current_time() < deadline:
            await self.flush_once()

    async def flush_once(self) -> None:
        if self._log:
            first = self._log[0].node
            if first is not None and first.lock.locked():
                # a large write-back of that file is on its way
                async with first.lock:
                    pass
        with trio.CancelScope(shield=True):  # a batch is answered whole or not sent
            self._flusher = trio.lowlevel.current_task()
            try:
                await self._flush_batch()
            finally:
                self._flusher = None

    async def _flush_batch(self) -> None:
        again, self._again = self._again, None
        if again is not None:
            batch = again.ops
            locked = await self._lock_writes(batch)
        else:
            batch, locked = self._take()
        if not batch:
            await trio.sleep(0.001)  # the front op waits for its file's lock
            return
        try:
            try:
                if batch[0].kind == WRITE and batch[0].data is None:
                    await self._send_large(batch[0])
                else:
                    await self._send_batch(batch, again)
            except _Retry as exc:
                if exc.outgoing is not None:
                    # The very same request goes again (its batch id makes a
                    # repeat safe, whatever became of this attempt); changes
                    # journalled meanwhile wait behind it.
                    self._again = exc.outgoing
                else:  # a large file: taken from the log again
                    for op in batch:
                        op.sent = False
                        if op.node is not None:
                            self._sent_of[op.node.ino] -= 1
                if self._unreachable_since is None:
                    self._unreachable_since = trio.current_time()
                log.warning("sending %d change(s) failed (%s); retrying", len(batch), exc)
                await trio.sleep(exc.delay)
                return
            except Exception:
                # A bug must not stop every later change from being sent: report
                # this batch as failed (dirty files stay dirty and are sent again
                # with their next close or fsync) and go on.
                log.exception("sending %d change(s) failed", len(batch))
                for op in batch:
                    self._failed(op, OSError(errno.EIO, f"sending {op.kind} {op.path} failed"))
                self._relist_for(batch)
        finally:
            for node in locked:
                node.lock.release()
                if node.unlinked:  # a forget that came meanwhile could not free it
                    self.table.maybe_drop(node)
        self._unreachable_since = None
        # Still in the log, so fsync and settle wait for them too.
        await self._lost_races(batch[-1].seq)
        for _ in batch:
            op = self._log.popleft()
            self._bytes -= len(op.data or b"")
            if op.node is not None:
                if op.kind == ATTRS:
                    op.node.attrs_out -= 1
                ino = op.node.ino
                self._sent_of[ino] -= 1
                if not op.dropped:
                    self._ops_of[ino] -= 1
                if self._ops_of[ino] <= 0 and self._sent_of[ino] <= 0:
                    self._ops_of.pop(ino, None)
                    self._sent_of.pop(ino, None)
        self._progress.set()
        self._progress = trio.Event()

    async def _lock_writes(self, batch: list[Op]) -> list[Node]:
        """Hold the locks `_take` holds for a batch, for sending it again."""
        held: dict[int, Node] = {}
        for op in batch:
            if op.kind == WRITE and op.data is not None and not op.dropped \
                    and op.node is not None and op.node.ino not in held:
                await op.node.lock.acquire()
                held[op.node.ino] = op.node
        return list(held.values())

    def _take(self) -> tuple[list[Op], list[Node]]:
        """The next batch: ops from the front, up to the limits, stopping before
        a large write (which is sent alone, through the single-file path)."""
        out: list[Op] = []
        size = 0
        held: dict[int, Node] = {}
        for op in self._log:
            large = op.kind == WRITE and op.data is None
            if out and (large or len(out) >= BATCH_OPS or size + len(op.data or b"") > BATCH_BYTES):
                break
            if op.kind == WRITE and not large and not op.dropped and op.node is not None \
                    and op.node.ino not in held:
                # Held while the batch is out, so a large write-back of the
                # same file (which sends by itself) cannot cross it.
                try:
                    op.node.lock.acquire_nowait()
                except trio.WouldBlock:
                    break
                held[op.node.ino] = op.node
            out.append(op)
            size += len(op.data or b"")
            if large:
                break
        for op in out:
            op.sent = True
            if op.node is not None:
                self._sent_of[op.node.ino] += 1
            if op.kind == WRITE and self._unsent_writes.get(op.node.ino) is op:
                del self._unsent_writes[op.node.ino]
        return out, list(held.values())

    async def _send_large(self, op: Op) -> None:
        node = op.node
        assert node is not None and self.send_file is not None
        if node.unlinked or op.dropped:
            return
        try:
            await self.send_file(node, op.path)
        except OSError as exc:
            if _retryable(exc):
                raise _Retry(exc.strerror or str(exc), _delay(exc)) from None
            self._failed(op, exc)

    async def _send_batch(self, batch: list[Op], out: _Outgoing | None) -> None:
        if out is None:
            out = self._outgoing(batch)
        live = out.live
        if not live:
            return
        try:
            resp = await self.bridge.apply(out.messages, out.batch_id)
        except OSError as exc:
            if _retryable(exc):
                raise _Retry(exc.strerror or str(exc), _delay(exc), out) from None
            # The whole request was refused (an archived session, a revoked
            # token): every op failed with it.
            for op in live:
                self._failed(op, exc)
            self._relist_for(live)
            return
        await self._answered(live, resp)

    def _outgoing(self, batch: list[Op]) -> _Outgoing:
        """The request of a batch, built once: every attempt sends the same."""
        messages: list[dict[str, Any]] = []
        before: dict[int, bytes] = {}  # ino -> the content its last write in this batch sends
        live: list[Op] = []
        for op in batch:
            if op.kind == WRITE:
                node = op.node
                assert node is not None and op.data is not None
                if op.dropped:
                    continue
                # (sent even if unlinked since: a rename journalled after it may
                # name its path; a delete after it removes it again)
                # A second write of the same file in one batch (it was renamed in
                # between) is conditional on the first: if that one lost a race,
                # so does this one, instead of overwriting the winner.
                prev = before.get(node.ino)
                if prev is not None:
                    if_match = blake3.blake3(prev).hexdigest()
                else:
                    if_match = node.hash if node.remote and node.hash else "!"
                before[node.ino] = op.data
                messages.append(op.json(if_match))
            elif op.kind == ATTRS and op.dropped:
                continue  # of a write that lost a race: its content is a conflict copy now
            else:
                messages.append(op.json(""))
            live.append(op)
        return _Outgoing(batch, live, messages, self.bridge.new_batch_id())

    async def _answered(self, live: list[Op], resp: dict[str, Any]) -> None:
        """Take in the daemon's answer to a batch: a result per live op."""
        stale: list[Op] = []
        results = resp.get("results") or []
        if len(results) != len(live):
            raise OSError(errno.EIO, f"aetherd answered {len(results)} results for "
                          f"{len(live)} changes")
        failed_writes: set[int] = set()  # inos whose write in this batch failed
        for op, result in zip(live, results, strict=True):
            error = result.get("error")
            if error and error.get("code"):
                if op.kind == WRITE and op.node is not None:
                    if op.node.ino in failed_writes:
                        # chained on a write of it that failed: not a lost race
                        self._failed(op, _remote_error(error))
                        continue
                    failed_writes.add(op.node.ino)
                if not await self._op_failed(op, error):
                    stale.append(op)
            elif op.kind == WRITE:
                self._wrote(op, file_entry(op.path, result.get("info") or {}))
            elif op.kind == ATTRS and op.node is not None and op.attrs & ATTR_MTIME \
                    and op.node.mtime_ns == op.mtime_ns and not op.node.attrs_pending:
                op.node.local_times = False  # the daemon has our mtime now
        self._relist_for(stale)

    def _wrote(self, op: Op, entry: Entry) -> None:
        assert op.node is not None and self.written is not None
        if op.node.data_gen == op.gen:
            self._queued.pop(op.node.ino, None)
            if self._errors:  # an earlier failure of it is healed: not to report
                self._errors = [e for e in self._errors if e[1] is not op.node]
        self.written(op.node, entry, op.gen)

    async def _op_failed(self, op: Op, detail: dict[str, Any]) -> bool:
        """Handle one op the daemon refused (`detail`: its ErrorDetail as JSON);
        False when the directories it touched must be listed again (the
        mount's view is not the daemon's)."""
        code = detail.get("code", "")
        details = {str(k): str(v) for k, v in (detail.get("details") or {}).items()}
        if op.kind == WRITE:
            node = op.node
            assert node is not None
            current = details.get("current_hash", "")
            if code == "conflict" and op.data is not None and current \
                    and current == blake3.blake3(op.data).hexdigest():
                # Our own content is there already (the same bytes written
                # elsewhere, or a write repeated after its batch id was forgotten).
                self._wrote(op, Entry(op.path.rpartition("/")[2], "file", op.mode,
                                      len(op.data), current, "", 0))
                return True
            if code == "conflict":
                self._queued.pop(node.ino, None)
                self._unsent_writes.pop(node.ino, None)
                for later in self._log:  # its later content and attributes lost too
                    if later.node is node and later.kind in (WRITE, ATTRS) \
                            and not later.sent and not later.dropped:
                        self._drop(later)
                if not node.unlinked and self.lost_race is not None:
                    # The conflict copy is made next to the file's name in the
                    # daemon, which is its local name only once the changes
                    # journalled so far (a rename of it) have arrived.
                    self._lost.append((self._seq, node))
                return True
            exc = _remote_error(detail)
            log.warning("write-back of %s failed (%s); its content stays staged and is "
                        "sent again on the next fsync, change or unmount", op.path, exc.strerror)
            self._record((op.seq, node, exc))
            return True
        if (op.kind in (DELETE, RMDIR) and code == "not_found") or \
                (op.kind == MKDIR and code == "already_exists"):
            return True  # already as wanted
        exc = _remote_error(detail)
        what = f"{op.path} -> {op.dst}" if op.kind == RENAME else op.path
        log.warning("%s %s failed at the daemon (%s); showing the session's version again",
                    op.kind, what, exc.strerror)
        # a file's attributes are the file's (its fsync reports them); the
        # rest are directory changes
        of_file = op.node if op.kind == ATTRS and op.node is not None \
            and op.node.kind == FILE else None
        self._record((op.seq, of_file, exc))
        return False

    async def _lost_races(self, answered: int) -> None:
        """Apply the conflict rule to writes that lost a race, once every change
        journalled before the loss has been answered (through op `answered`:
        batches are answered in order)."""
        while self._lost and self._lost[0][0] <= answered:
            upto, node = self._lost.popleft()
            if node.unlinked or self.lost_race is None:
                continue
            try:
                async with node.lock:
                    await self.lost_race(node)
            except OSError as exc:  # e.g. its directory is gone as well
                self._record((upto, node, exc))

    def _record(self, failure: tuple[int, Node | None, OSError]) -> None:
        """Remember a failure for the next fsync that concerns it (the newest
        ERRORS_KEPT: failures nobody fsyncs for must not pile up)."""
        self._errors.append(failure)
        del self._errors[:-ERRORS_KEPT]

    def _failed(self, op: Op, exc: OSError) -> None:
        log.warning("%s %s failed (%s)", op.kind, op.path, exc.strerror or exc)
        self._record((op.seq, op.node, exc))

    def _relist_for(self, ops: list[Op]) -> None:
        if self.relist is None:
            return
        dirs = set()
        for op in ops:
            dirs.add(op.path.rpartition("/")[0])
            if op.kind == RENAME:
                dirs.add(op.dst.rpartition("/")[0])
        for d in sorted(dirs, key=lambda p: (p.count("/"), p)):
            self.relist(d)


@dataclass(eq=False)
class _Outgoing:
    """A batch as sent: its ops, those in the request, the request, its id."""

    ops: list[Op]
    live: list[Op]
    messages: list[dict[str, Any]]
    batch_id: str


class _Retry(Exception):
    def __init__(self, why: str, delay: float, outgoing: _Outgoing | None = None) -> None:
        super().__init__(why)
        self.delay = delay
        self.outgoing = outgoing  # an fs:apply batch to send again as it is


def _retryable(exc: OSError) -> bool:
    """The daemon could not be reached, or asked us to slow down: send the same
    batch again later."""
    return isinstance(exc, RemoteError) and not exc.ambiguous and (
        exc.code == "unavailable" or "retry_after_seconds" in exc.details)


def _delay(exc: OSError) -> float:
    if isinstance(exc, RemoteError):
        try:
            return min(float(exc.details.get("retry_after_seconds", 0.5)), 5.0)
        except ValueError:
            pass
    return 0.5


def _remote_error(detail: dict[str, Any]) -> RemoteError:
    code = str(detail.get("code") or "internal")
    cause: AetherError = from_code(code, str(detail.get("message") or code))
    cause.details = {str(k): str(v) for k, v in (detail.get("details") or {}).items()}
    if code == "conflict":
        return ConflictError(cause)
    return RemoteError(errno_for(cause), cause)


def _rfc3339(ns: int) -> str:
    """Nanoseconds since the epoch as an RFC 3339 time (the daemon keeps microseconds)."""
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def _related(a: str, b: str) -> bool:
    """Is one of two session paths the other, or inside it?"""
    if a == b or not a or not b:
        return True
    return a.startswith(b + "/") if len(a) > len(b) else b.startswith(a + "/")
