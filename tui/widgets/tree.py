"""A session's file tree that lists a directory only when it is opened, and
follows the session's changes.

Opening a 50,000-file session asks the daemon for one page of the root's
children (`list_tree(depth=1)`); every directory below is listed the first
time it is expanded. A directory with more than a page of entries ends in a
"… more" row that lists the next page when selected, so the tree never holds
(and re-lays out) tens of thousands of rows nobody asked to see: Textual
rebuilds every visible line of a Tree when nodes are added, at ~0.2 ms a row.

Changes (`refresh_paths`, fed by the session screen from the events stream)
re-list only the directories that are open and hold a changed path, as far
as they are shown, and merge the result into the existing nodes: what is
expanded stays expanded, the cursor stays on its row.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from aether import pb
from tui.tasks import task

PAGE = 500  # entries listed per "… more"
# Entries per request. Decoding a response (~0.1 ms an entry, in the SDK) and
# adding its rows both run on the UI's event loop: a page fetched and added in
# two halves blocks the UI half as long at a time (bench/tui.py, "max stall").
# Smaller batches block less but cost the daemon ~50 ms more per request.
BATCH = 250
RELISTS = 4  # directories re-listed at once after a change


@dataclass
class Entry:
    path: str  # "" is the root
    is_dir: bool
    size: int = 0
    loaded: bool = False
    more: str = ""  # on a "… more" row: the page token to list from
    target: str = ""  # a symlink's target


def parent_of(path: str) -> str:
    return path.rpartition("/")[0]


def order(is_dir: bool, path: str) -> tuple[bool, str]:
    """Directories first, then files, each by name: one order for every page, so
    a page listed later or a path added by a change goes where it belongs."""
    return (not is_dir, path)


def label(info: pb.FileInfo) -> Text:
    name = info.path.rpartition("/")[2]
    if info.kind == pb.EntryKind.DIRECTORY:
        return Text(name + "/", style="bold")
    text = Text(name)
    if info.kind == pb.EntryKind.SYMLINK:
        text.append(f" -> {info.symlink_target}", style="dim")
    return text


class LazyTree(Tree[Entry]):
    """File tree of one session (at its working state)."""

    def __init__(self, session_id: str, page_size: int = PAGE, batch: int = BATCH,
                 **kwargs) -> None:
        super().__init__("/", data=Entry("", True), **kwargs)
        self.session_id = session_id
        self.page_size = page_size
        self.batch = max(1, min(batch, page_size))
        self.guide_depth = 2
        # Directories whose first page is shown / that are listed to the end
        # (tests and bench/tui.py wait on these).
        self.loaded_paths: set[str] = set()
        self.complete_paths: set[str] = set()
        self.listing: set[str] = set()  # directories with a page on its way
        # The node of every path shown (and "" for the root): changes find the
        # directory they show in without walking the tree.
        self.nodes: dict[str, TreeNode[Entry]] = {"": self.root}
        # Bumped by reload: a listing started before it must not add its page
        # to the new tree.
        self.generation = 0
        self._relists = asyncio.Semaphore(RELISTS)

    def on_mount(self) -> None:
        self.root.expand()

    def reload(self) -> None:
        """Forget every listing and list the root again (after a restore)."""
        self.workers.cancel_group(self, "tree")
        self.generation += 1
        self.loaded_paths.clear()
        self.complete_paths.clear()
        self.listing.clear()
        self.root.remove_children()
        self.nodes = {"": self.root}
        assert self.root.data is not None
        self.root.data.loaded = True
        self.root.expand()
        self._load(self.root)

    def on_tree_node_expanded(self, event: Tree.NodeExpanded[Entry]) -> None:
        entry = event.node.data
        if entry is not None and entry.is_dir and not entry.loaded:
            entry.loaded = True
            self._load(event.node)

    def on_tree_node_selected(self, event: Tree.NodeSelected[Entry]) -> None:
        entry = event.node.data
        if entry is not None and entry.more:
            event.stop()  # not a file: the screen never sees it
            parent = event.node.parent
            token = entry.more
            entry.more = ""
            event.node.remove()
            if parent is not None:
                self._load(parent, token)

    def get_label_width(self, node: TreeNode[Entry]) -> int:
        # Tree measures every row's label on each rebuild by rendering it; the
        # label's own length and the expand icon's are the same number, cheaply.
        icon = self.ICON_NODE_EXPANDED if node.is_expanded else self.ICON_NODE
        return node.label.cell_len + (cell_len(icon) if node.allow_expand else 0)

    @task(group="tree")
    async def _load(self, node: TreeNode[Entry], page_token: str = "") -> None:
        """One page of a directory, from `page_token`, requested and shown in batches."""
        entry = node.data
        assert entry is not None
        generation = self.generation
        backend = await self.app.backend()  # type: ignore[attr-defined]
        left, token = self.page_size, page_token
        self.listing.add(entry.path)
        try:
            while left > 0:
                try:
                    batch, token = await backend.children(
                        self.session_id, entry.path, token, min(self.batch, left))
                except Exception:
                    if not page_token and entry.path not in self.loaded_paths:
                        entry.loaded = False  # let the next expansion try again
                    raise
                if generation != self.generation or self.nodes.get(entry.path) is not node:
                    return  # the tree was reloaded, or the directory removed, meanwhile
                left -= len(batch)
                last = left <= 0 or not token
                self._merge(node, batch, token, replace=False, final=last)
                self.loaded_paths.add(entry.path)
                if node.is_root and self.cursor_node is None:
                    self.cursor_line = 0
                if last:
                    break
                await asyncio.sleep(0)  # a frame for the UI before the next batch
        finally:
            if generation == self.generation:
                self.listing.discard(entry.path)

    # -- following changes

    def dirs_to_relist(self, paths: Iterable[str], subtrees: Iterable[str] = ()) -> set[str]:
        """The listed directories in which a change of `paths` shows, and every
        listed directory at or under `subtrees` ("" for all of them)."""
        out: set[str] = set()
        for path in paths:
            if path in self.loaded_paths:
                out.add(path)  # a listed directory replaced, removed or imported into
            # The nearest directory with a node shows the change: when it is not
            # listed (collapsed), there is nothing to show.
            d = parent_of(path)
            while d not in self.nodes:
                d = parent_of(d)
            if d in self.loaded_paths:
                out.add(d)
        for top in subtrees:
            out.update(p for p in self.loaded_paths
                       if not top or p == top or p.startswith(top + "/"))
        return out

    async def refresh_paths(self, paths: Iterable[str], subtrees: Iterable[str] = ()) -> None:
        """Show the current entries of the directories that `paths` (changed) and
        `subtrees` (changed anywhere below) touch. Raises what listing raises."""
        dirs = self.dirs_to_relist(paths, subtrees)
        if dirs:
            await asyncio.gather(*(self._relist(d) for d in sorted(dirs)))

    async def _relist(self, path: str) -> None:
        from aether.errors import NotFound

        node = self.nodes.get(path)
        if node is None:
            return
        generation = self.generation
        shown = sum(1 for c in node.children if c.data is not None and not c.data.more)
        backend = await self.app.backend()  # type: ignore[attr-defined]
        infos: list[pb.FileInfo] = []
        token = ""
        async with self._relists:
            try:
                while True:
                    page, token = await backend.children(self.session_id, path, token,
                                                         self.batch)
                    infos += page
                    if not token or len(infos) >= shown:
                        break
            except NotFound:
                return  # removed: its parent's listing drops it
        if generation == self.generation and self.nodes.get(path) is node:
            self._merge(node, infos, token, replace=True)

    # -- nodes

    def _merge(self, node: TreeNode[Entry], infos: list[pb.FileInfo], next_token: str,
               replace: bool, final: bool = True) -> None:
        """Add `infos` under `node` in order (and, with `replace`, drop the children
        not among them). Nodes that stay keep their subtree and expansion. The
        "… more" row (from `next_token`) comes with the `final` batch of a page."""
        for child in list(node.children):
            if child.data is not None and child.data.more:
                child.remove()  # the next page starts elsewhere now
        wanted = {info.path: info for info in infos}
        for child in list(node.children):
            entry = child.data
            assert entry is not None
            info = wanted.get(entry.path)
            if info is None:
                if replace:
                    self._drop(child)
                continue
            is_dir = info.kind == pb.EntryKind.DIRECTORY
            if entry.is_dir != is_dir:
                self._drop(child)  # a file became a directory, or back: made anew
                continue
            entry.size = info.size
            if info.symlink_target != entry.target:
                entry.target = info.symlink_target
                child.set_label(label(info))
            del wanted[entry.path]
        keys = [order(c.data.is_dir, c.data.path) for c in node.children
                if c.data is not None]
        at = 0
        for info in sorted(wanted.values(),
                           key=lambda i: order(i.kind == pb.EntryKind.DIRECTORY, i.path)):
            is_dir = info.kind == pb.EntryKind.DIRECTORY
            key = order(is_dir, info.path)
            while at < len(keys) and keys[at] < key:
                at += 1
            before = at if at < len(keys) else None
            entry = Entry(info.path, is_dir, info.size, target=info.symlink_target)
            if is_dir:
                child = node.add(label(info), data=entry, before=before, allow_expand=True)
            else:
                child = node.add_leaf(label(info), data=entry, before=before)
            self.nodes[info.path] = child
            keys.insert(at, key)
            at += 1
        assert node.data is not None
        if not final:
            return
        if next_token:
            node.add_leaf(Text(f"… more (enter lists the next {self.page_size})",
                               style="dim italic"),
                          data=Entry(node.data.path, False, more=next_token))
            self.complete_paths.discard(node.data.path)
        else:
            self.complete_paths.add(node.data.path)

    def _drop(self, node: TreeNode[Entry]) -> None:
        """Remove a node and forget it and everything listed under it."""
        stack = [node]
        while stack:
            n = stack.pop()
            stack.extend(n.children)
            entry = n.data
            if entry is not None and not entry.more:
                if self.nodes.get(entry.path) is n:
                    del self.nodes[entry.path]
                self.loaded_paths.discard(entry.path)
                self.complete_paths.discard(entry.path)
        node.remove()
