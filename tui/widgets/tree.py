"""A session's file tree that lists a directory only when it is opened.

Opening a 50,000-file session asks the daemon for one page of the root's
children (`list_tree(depth=1)`); every directory below is listed the first
time it is expanded. A directory with more than a page of entries ends in a
"… more" row that lists the next page when selected, so the tree never holds
(and re-lays out) tens of thousands of rows nobody asked to see: Textual
rebuilds every visible line of a Tree when nodes are added, at ~0.2 ms a row.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from aether import pb
from tui.tasks import task

PAGE = 500  # entries listed per request and per "… more"


@dataclass
class Entry:
    path: str  # "" is the root
    is_dir: bool
    size: int = 0
    loaded: bool = False
    more: str = ""  # on a "… more" row: the page token to list from


class LazyTree(Tree[Entry]):
    """File tree of one session (at its working state)."""

    def __init__(self, session_id: str, page_size: int = PAGE, **kwargs) -> None:
        super().__init__("/", data=Entry("", True), **kwargs)
        self.session_id = session_id
        self.page_size = page_size
        self.guide_depth = 2
        # Directories whose first page is shown / that are listed to the end
        # (tests and bench/tui.py wait on these).
        self.loaded_paths: set[str] = set()
        self.complete_paths: set[str] = set()
        # Bumped by reload: a listing started before it must not add its page
        # to the new tree.
        self.generation = 0

    def on_mount(self) -> None:
        self.root.expand()

    def reload(self) -> None:
        """Forget every listing and list the root again (after a restore)."""
        self.workers.cancel_group(self, "tree")
        self.generation += 1
        self.loaded_paths.clear()
        self.complete_paths.clear()
        self.root.remove_children()
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

    @task(group="tree")
    async def _load(self, node: TreeNode[Entry], page_token: str = "") -> None:
        entry = node.data
        assert entry is not None
        generation = self.generation
        backend = await self.app.backend()  # type: ignore[attr-defined]
        try:
            page, next_token = await backend.children(
                self.session_id, entry.path, page_token, self.page_size)
        except Exception:
            if not page_token:
                entry.loaded = False  # let the next expansion try again
            raise
        if generation != self.generation:
            return  # the tree was reloaded meanwhile
        for info in (e for e in page if e.kind == pb.EntryKind.DIRECTORY):
            node.add(Text(info.path.rpartition("/")[2] + "/", style="bold"),
                     data=Entry(info.path, True), allow_expand=True)
        for info in (e for e in page if e.kind != pb.EntryKind.DIRECTORY):
            label = Text(info.path.rpartition("/")[2])
            if info.kind == pb.EntryKind.SYMLINK:
                label.append(f" -> {info.symlink_target}", style="dim")
            node.add_leaf(label, data=Entry(info.path, False, info.size))
        if next_token:
            node.add_leaf(Text(f"… more (enter lists the next {self.page_size})", style="dim italic"),
                          data=Entry(entry.path, False, more=next_token))
        else:
            self.complete_paths.add(entry.path)
        self.loaded_paths.add(entry.path)
        if node.is_root and self.cursor_node is None:
            self.cursor_line = 0
