"""The working state of a session: `fold_root` (a tree) plus overlay rows.

Reads merge the two; writes touch only the overlay, so a write costs O(depth)
no matter how big the session is. `materialize` turns base + overlay into
trees (writing only the directories on changed paths) and `fold` makes that
the new fold_root and empties the overlay. Checkpoint, fork, commit and diff
fold first, which is what keeps them O(changed paths).

All methods run inside a transaction of the caller (`Database.write()`/`read()`).
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterator

import orjson

from aether.errors import FailedPrecondition
from aetherd import paths
from aetherd.store.objects import (
    DIR,
    EMPTY_TREE,
    FILE,
    SYMLINK,
    Entry,
    ObjectBatch,
    ObjectStore,
    xattrs_from_json,
    xattrs_to_json,
)

WHITEOUT = 0
ROOT_MODE = 0o755
_ROW_COLS = "path, kind, mode, size, hash, target, mtime_ns, xattrs"


def _row_entry(r: tuple) -> tuple[str, Entry]:
    path, kind, mode, size, h, target, mtime, xattrs = r
    return path, Entry(kind, mode, size, h, target, mtime, 1 if kind in (FILE, SYMLINK) else 0,
                       xattrs_from_json(orjson.loads(xattrs)) if xattrs else ())


def _own_attrs(e: Entry, row: Entry) -> Entry:
    """A directory's entry with the attributes of its attribute-only overlay row."""
    return dataclasses.replace(e, mode=row.mode, mtime_ns=row.mtime_ns, xattrs=row.xattrs)


def not_a_directory(path: str, kind: int) -> FailedPrecondition:
    what = "a symlink" if kind == SYMLINK else "a file"
    return FailedPrecondition(f"not a directory: {path!r} is {what}", path=path)


class Workspace:
    def __init__(self, objects: ObjectStore, session_id: str, fold_root: str, *,
                 trees: ObjectStore | ObjectBatch | None = None) -> None:
        self.objects = objects
        # Where trees are read: the store, or a batch holding an unstored snapshot.
        self.trees = trees or objects
        self.db = objects.db
        self.session_id = session_id
        self.fold_root = fold_root

    # ---- reading
    def _rows_for(self, path_list: list[str]) -> dict[str, Entry]:
        if not path_list:
            return {}
        marks = ",".join("?" * len(path_list))
        rows = self.db.query(
            f"SELECT {_ROW_COLS} FROM overlay WHERE session_id=? AND path IN ({marks})",
            (self.session_id, *path_list),
        )
        return dict(_row_entry(r) for r in rows)

    def _resolve(self, path: str, *, skip_self: bool = False) -> tuple[Entry | None, str | None]:
        """(entry at path, tree holding its base content if it is a directory).

        skip_self ignores an overlay row at `path` itself: "what would be here
        without my own change" (used to decide whether a delete needs a whiteout).
        """
        if path == "":
            return Entry(DIR, ROOT_MODE, 0, self.fold_root), self.fold_root
        comps = path.split("/")
        prefixes = ["/".join(comps[: i + 1]) for i in range(len(comps))]
        rows = self._rows_for(prefixes)
        base_tree, start = self.fold_root, 0
        for i, p in enumerate(prefixes):
            row = rows.get(p)
            last = i == len(prefixes) - 1
            if row is None or (last and skip_self):
                continue
            if row.kind == WHITEOUT:
                return None, None
            if last:
                if row.kind != DIR:
                    return row, None
                if row.hash:
                    return row, row.hash
                break  # attribute-only directory row: content comes from the base
            if row.kind != DIR:
                raise not_a_directory(p, row.kind)
            if row.hash:
                base_tree, start = row.hash, i + 1
        # Walk the base trees for the rest of the path.
        entry: Entry | None = None
        t = base_tree
        for i in range(start, len(comps)):
            entries = self.trees.tree(t)
            entry = entries.get(comps[i])
            if entry is None:
                return None, None
            if i < len(comps) - 1:
                if entry.kind != DIR:
                    raise not_a_directory("/".join(comps[: i + 1]), entry.kind)
                t = entry.hash
        if entry is None:  # path fully inside a replaced directory (start == len)
            return None, None
        own = None if skip_self else rows.get(path)
        if own is not None and own.kind == DIR:  # attributes from the row
            entry = _own_attrs(entry, own)
        return entry, (entry.hash if entry.kind == DIR else None)

    def lookup(self, path: str) -> Entry | None:
        return self._resolve(path)[0]

    def base_exists(self, path: str) -> bool:
        return self._resolve(path, skip_self=True)[0] is not None

    def listdir(self, path: str) -> dict[str, Entry]:
        entry, base = self._resolve(path)
        if entry is None:
            from aether.errors import NotFound

            raise NotFound(f"no such directory: {path!r}", path=path)
        if entry.kind != DIR:
            raise not_a_directory(path, entry.kind)
        children = dict(self.trees.tree(base)) if base else {}
        for r in self.db.query(
            f"SELECT {_ROW_COLS} FROM overlay WHERE session_id=? AND parent=?",
            (self.session_id, path),
        ):
            p, e = _row_entry(r)
            name = paths.name_of(p)
            if e.kind == WHITEOUT:
                children.pop(name, None)
            elif e.kind == DIR and not e.hash and name in children:
                children[name] = _own_attrs(children[name], e)
            else:
                children[name] = e
        return children

    def is_clean(self) -> bool:
        return self.db.one(
            "SELECT 1 FROM overlay WHERE session_id=? LIMIT 1", (self.session_id,)
        ) is None

    def has_changes_under(self, path: str) -> bool:
        if path == "":
            return not self.is_clean()
        return self.db.one(
            "SELECT 1 FROM overlay WHERE session_id=? AND (path=? OR (path>? AND path<?)) LIMIT 1",
            (self.session_id, path, path + "/", path + "0"),
        ) is not None

    # ---- writing
    def put(self, path: str, e: Entry) -> None:
        self.db.execute(
            f"INSERT OR REPLACE INTO overlay(session_id, parent, {_ROW_COLS}) "
            "VALUES (?,?,?,?,?,?,?,?,?,?)",
            (self.session_id, paths.parent_of(path), path, e.kind, e.mode, e.size, e.hash,
             e.target, e.mtime_ns,
             orjson.dumps(xattrs_to_json(e.xattrs)).decode() if e.xattrs else ""),
        )

    def remove(self, path: str) -> None:
        """Delete a path and everything under it."""
        self._drop_rows_under(path)
        if self.base_exists(path):
            self.put(path, Entry(WHITEOUT, 0))
        else:
            self.db.execute(
                "DELETE FROM overlay WHERE session_id=? AND path=?", (self.session_id, path)
            )

    def _drop_rows_under(self, path: str) -> None:
        if path == "":
            self.db.execute("DELETE FROM overlay WHERE session_id=?", (self.session_id,))
            return
        self.db.execute(
            "DELETE FROM overlay WHERE session_id=? AND path>? AND path<?",
            (self.session_id, path + "/", path + "0"),
        )

    def set_attrs(self, path: str, new: Entry) -> Entry:
        """Give the entry at `path` new attributes (mode, mtime, xattrs of `new`,
        which is the current entry with those changed), keeping its content."""
        if new.kind == DIR:
            own = self._rows_for([path]).get(path)
            # Keep a replaced directory's content; otherwise only attributes.
            new = dataclasses.replace(new, hash=own.hash if own else "")
        self.put(path, new)
        return new

    # ---- materialising
    def materialize(self, path: str, batch: ObjectBatch) -> Entry:
        """The directory at `path` as a stored tree, overlay applied."""
        entry, base = self._resolve(path)
        assert entry is not None and entry.kind == DIR
        if path == "":
            rows = self.db.query(
                f"SELECT {_ROW_COLS} FROM overlay WHERE session_id=?", (self.session_id,)
            )
        else:
            rows = self.db.query(
                f"SELECT {_ROW_COLS} FROM overlay WHERE session_id=? AND path>? AND path<?",
                (self.session_id, path + "/", path + "0"),
            )
        overlay = dict(_row_entry(r) for r in rows)
        by_parent: dict[str, list[str]] = defaultdict(list)
        dirty: dict[str, set[str]] = defaultdict(set)
        for p, e in overlay.items():
            by_parent[paths.parent_of(p)].append(p)
            # Every ancestor between `path` and p must be rebuilt.
            cur = p if e.kind == DIR else paths.parent_of(p)
            while cur != path and paths.is_under(cur, path):
                dirty[paths.parent_of(cur)].add(paths.name_of(cur))
                cur = paths.parent_of(cur)

        def build(dir_path: str, base_tree: str | None) -> dict[str, Entry]:
            original = self.trees.tree(base_tree) if base_tree else {}
            entries = dict(original)
            for p in by_parent.get(dir_path, ()):
                e = overlay[p]
                name = paths.name_of(p)
                if e.kind == WHITEOUT:
                    entries.pop(name, None)
                elif e.kind != DIR:
                    entries[name] = e
            for name in sorted(dirty.get(dir_path, ())):
                child = paths.join(dir_path, name)
                row = overlay.get(child)
                prev = original.get(name)
                if row is not None and row.kind == DIR:
                    child_base = row.hash or (prev.hash if prev and prev.kind == DIR else None)
                    attrs = row
                else:
                    attrs = entries[name]
                    child_base = attrs.hash
                sub = build(child, child_base)
                entries[name] = _own_attrs(batch.add_tree(sub), attrs)
            return entries

        tree = batch.add_tree(build(path, base))
        return _own_attrs(tree, entry)

    def fold(self) -> str:
        """Make base + overlay the new fold_root; returns the root tree hash."""
        if self.is_clean():
            return self.fold_root
        batch = self.objects.batch()
        root = self.materialize("", batch)
        batch.commit()
        self.db.execute(
            "UPDATE sessions SET fold_root=? WHERE id=?", (root.hash, self.session_id)
        )
        self._drop_rows_under("")
        self.fold_root = root.hash
        return root.hash


def walk(
    trees: ObjectStore | ObjectBatch, tree: str, prefix: str = "", *, depth: int = 0,
    after: tuple[str, ...] = (),
) -> Iterator[tuple[str, Entry]]:
    """Depth-first, names sorted: paths come out ordered by their component tuple.

    `after` resumes a paginated walk past that path (as a component tuple),
    skipping whole subtrees that sort before it. depth 0 = unlimited. `trees`
    is the store, or a batch holding a not-yet-stored snapshot.
    """
    base = tuple(prefix.split("/")) if prefix else ()

    def rec(t: str, parts: tuple[str, ...], level: int) -> Iterator[tuple[str, Entry]]:
        for name, e in sorted(trees.tree(t).items()):
            me = parts + (name,)
            if after and me <= after[: len(me)] and me != after[: len(me)]:
                continue  # this whole subtree sorts before the resume point
            if not after or me > after:
                yield "/".join(me), e
            if e.kind == DIR and (depth == 0 or level < depth):
                yield from rec(e.hash, me, level + 1)

    yield from rec(tree, base, 1)


__all__ = ["Workspace", "walk", "WHITEOUT", "EMPTY_TREE"]
