"""The mount's picture of the session tree: one `Node` per inode, and the table.

The daemon is the truth for what exists; this table is the mount's cache of it,
plus what only the mount knows (content not written back yet, lookup counts,
open handles, local-only attributes). Directories are loaded whole, with every
child's attributes, by one listing call; after that lookups, getattr and
readdir are answered from here. Coherence (coherence.py) keeps loaded
directories in line with the session's events.

Inode numbers are the mount's own, handed out once and never reused while the
mount runs. A node lives as long as it is in the tree or the kernel still
holds it (lookup count > 0) or a handle is open on it: an unlinked file stays
readable until its last handle closes and the kernel forgets it (then its
staged data is freed, in `InodeTable.maybe_drop`).
"""

from __future__ import annotations

import bisect
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aether.mount.handles import Staging

ROOT_INODE = 1  # pyfuse3.ROOT_INODE, without importing pyfuse3 here

FILE = "file"
DIR = "dir"
SYMLINK = "symlink"
# Node.attrs_pending: attributes changed here and not journalled yet.
ATTR_MODE, ATTR_MTIME, ATTR_XATTRS = 1, 2, 4

_KIND_BITS = {FILE: stat.S_IFREG, DIR: stat.S_IFDIR, SYMLINK: stat.S_IFLNK}


@dataclass(eq=False)
class Node:
    ino: int
    kind: str
    name: str
    parent: Node | None
    mode: int = 0o644  # permission bits only
    size: int = 0
    mtime_ns: int = 0
    ctime_ns: int = 0
    atime_ns: int = 0
    # Files: the content hash the daemon last told us (what write-back sends as
    # If-Match). Empty for a file that exists only here so far.
    hash: str = ""
    target: str = ""  # symlinks
    uid: int = 0
    gid: int = 0
    # Directories: name -> child, in cookie order; None until loaded.
    children: dict[str, Node] | None = None
    # This node's position in its parent's readdir order (a stable cursor).
    cookie: int = 0
    lookups: int = 0  # the kernel's references (lookup, create, readdirplus)
    opens: int = 0  # open file handles
    # Content not written back yet lives in a staging file (handles.Staging).
    staging: Staging | None = None
    dirty: bool = False
    # Bumped on every local write: a write-back only marks the node clean if no
    # write happened while it was uploading.
    data_gen: int = 0
    # Does the daemon know this path? False for files created here and not yet
    # written back (their first write-back must not overwrite anything).
    remote: bool = True
    unlinked: bool = False
    # Bumped on every local change of a directory's entries; a listing refresh
    # that raced with one is redone.
    dir_gen: int = 0
    # Set by utimes: our mtime wins over the daemon's (in listings, after a
    # write-back) until the daemon has answered the change that sends it.
    local_times: bool = False
    # ATTR_* bits changed here whose change is not journalled yet: it waits
    # for the file's content (journal.py), which would otherwise reset them.
    attrs_pending: int = 0
    # Journalled attribute changes the daemon has not answered: a listing
    # taken meanwhile has the old mode/times/xattrs (content it may update).
    attrs_out: int = 0
    # The content hash whose pages the kernel may hold (keep_cache decisions).
    kernel_hash: str = ""
    xattrs: dict[bytes, bytes] = field(default_factory=dict)
    # Readdir order: sorted cookies and the name each had (deleted names stay
    # until compacted and are skipped).
    _order_cookies: list[int] = field(default_factory=list, repr=False)
    _order_names: list[str] = field(default_factory=list, repr=False)
    _next_cookie: int = 0
    # How many children are directories (st_nlink), kept by attach/detach:
    # getattr of a directory must not count 10,000 children each time.
    _subdirs: int = 0
    _lock: Any = field(default=None, repr=False)

    @property
    def is_dir(self) -> bool:
        return self.kind == DIR

    @property
    def loaded(self) -> bool:
        return self.children is not None

    @property
    def st_mode(self) -> int:
        return _KIND_BITS[self.kind] | (self.mode & 0o7777)

    @property
    def lock(self) -> Any:
        """A trio.Lock serialising write-back, rename and unlink of this node."""
        if self._lock is None:
            import trio

            self._lock = trio.Lock()
        return self._lock

    def entries_after(self, cookie: int) -> Iterator[Node]:
        """Children whose cookie is greater than `cookie`, in cookie order."""
        assert self.children is not None
        i = bisect.bisect_right(self._order_cookies, cookie)
        while i < len(self._order_cookies):
            c, name = self._order_cookies[i], self._order_names[i]
            i += 1
            child = self.children.get(name)
            if child is not None and child.cookie == c:
                yield child

    def subdirs(self) -> int:
        return self._subdirs


def now_ns() -> int:
    return time.time_ns()


class InodeTable:
    """Inode number -> Node, plus the tree walk helpers."""

    def __init__(self, uid: int, gid: int) -> None:
        self.uid = uid
        self.gid = gid
        self.nodes: dict[int, Node] = {}
        self._next_ino = ROOT_INODE + 1
        t = now_ns()
        self.root = Node(ROOT_INODE, DIR, "", None, mode=0o755, mtime_ns=t, ctime_ns=t,
                         atime_ns=t, uid=uid, gid=gid)
        self.nodes[ROOT_INODE] = self.root

    def __len__(self) -> int:
        return len(self.nodes)

    def get(self, ino: int) -> Node | None:
        return self.nodes.get(ino)

    def new_node(self, parent: Node, name: str, kind: str, **attrs: Any) -> Node:
        """A new node attached as `parent/name` (which must be free)."""
        ino = self._next_ino
        self._next_ino += 1
        attrs.setdefault("uid", self.uid)
        attrs.setdefault("gid", self.gid)
        node = Node(ino, kind, name, parent, **attrs)
        self.nodes[ino] = node
        self.attach(node, parent, name)
        return node

    def attach(self, node: Node, parent: Node, name: str) -> None:
        assert parent.children is not None, "attach into an unloaded directory"
        assert name not in parent.children, name
        node.parent = parent
        node.name = name
        node.unlinked = False
        parent._next_cookie += 1
        node.cookie = parent._next_cookie
        parent.children[name] = node
        if node.kind == DIR:
            parent._subdirs += 1
        parent._order_cookies.append(node.cookie)
        parent._order_names.append(name)
        parent.dir_gen += 1

    def detach(self, node: Node) -> None:
        """Take a node out of its directory (unlink, rmdir, or the source of a rename)."""
        parent = node.parent
        if parent is not None and parent.children is not None \
                and parent.children.get(node.name) is node:
            del parent.children[node.name]
            if node.kind == DIR:
                parent._subdirs -= 1
            parent.dir_gen += 1
            if len(parent._order_cookies) > 64 and \
                    len(parent._order_cookies) > 2 * len(parent.children):
                self._compact(parent)
        node.parent = None
        node.unlinked = True

    @staticmethod
    def _compact(d: Node) -> None:
        assert d.children is not None
        live = sorted((c.cookie, name) for name, c in d.children.items())
        d._order_cookies = [c for c, _ in live]
        d._order_names = [n for _, n in live]

    def move(self, node: Node, parent: Node, name: str) -> None:
        self.detach(node)
        self.attach(node, parent, name)

    def path(self, node: Node) -> str:
        """The session path of a node ("" for the root)."""
        parts: list[str] = []
        n: Node | None = node
        while n is not None and n.ino != ROOT_INODE:
            parts.append(n.name)
            n = n.parent
        return "/".join(reversed(parts))

    def find(self, path: str) -> Node | None:
        """The node at a session path, if every directory on the way is loaded."""
        node = self.root
        for part in (p for p in path.strip("/").split("/") if p):
            if node.children is None:
                return None
            child = node.children.get(part)
            if child is None:
                return None
            node = child
        return node

    def forget(self, ino: int, n: int) -> None:
        node = self.nodes.get(ino)
        if node is None:
            return
        node.lookups = max(0, node.lookups - n)
        self.maybe_drop(node)

    def maybe_drop(self, node: Node) -> bool:
        """Free a node nobody can reach any more: out of the tree, forgotten by the
        kernel and closed. Returns True when it was dropped."""
        if node.ino == ROOT_INODE or not node.unlinked or node.lookups or node.opens:
            return False
        if node._lock is not None and node._lock.locked():
            return False  # a write-back is reading its staging file; it drops it after

        self.nodes.pop(node.ino, None)
        if node.staging is not None:
            node.staging.discard()
            node.staging = None
        if node.children:
            for child in list(node.children.values()):
                self.detach(child)
                self.maybe_drop(child)
        return True

    def loaded_dirs(self) -> Iterator[Node]:
        """Every loaded directory still in the tree, parents before children."""
        stack = [self.root]
        while stack:
            d = stack.pop()
            if d.children is None:
                continue
            yield d
            stack.extend(c for c in d.children.values() if c.kind == DIR)

    def dirty_nodes(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.dirty and not n.unlinked]
