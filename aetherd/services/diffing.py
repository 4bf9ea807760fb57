"""Tree diffs. Subtrees with equal hashes are skipped, so the work is
proportional to what changed, not to the size of the trees."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from aether.shown import shown
from aetherd import paths
from aetherd.store.objects import DIR, FILE, SYMLINK, Entry, ObjectBatch, ObjectStore

ADDED, MODIFIED, DELETED, TYPE_CHANGED = 1, 2, 3, 4  # = pb.ChangeKind
# Files larger than this are summarised instead of diffed line by line.
MAX_TEXT_DIFF_BYTES = 8 << 20


@dataclass
class TreeChange:
    path: str
    kind: int
    old: Entry | None
    new: Entry | None


def diff_trees(trees: ObjectStore | ObjectBatch, a: str, b: str,
               prefix: str = "") -> list[TreeChange]:
    """`trees` is the store, or a batch holding a not-yet-stored snapshot."""
    out: list[TreeChange] = []
    _diff(trees, a, b, prefix, out)
    return out


def _expand(objects: ObjectStore | ObjectBatch, path: str, e: Entry, added: bool,
            out: list[TreeChange]) -> None:
    """Every file under an added/deleted directory (empty directories as themselves)."""
    if e.kind != DIR:
        out.append(TreeChange(path, ADDED if added else DELETED, None if added else e,
                              e if added else None))
        return
    children = objects.tree(e.hash)
    if not children:
        out.append(TreeChange(path, ADDED if added else DELETED, None if added else e,
                              e if added else None))
    for name in sorted(children):
        _expand(objects, paths.join(path, name), children[name], added, out)


def _diff(objects: ObjectStore | ObjectBatch, a: str, b: str, prefix: str, out: list[TreeChange]) -> None:
    if a == b:
        return
    ta, tb = objects.tree(a), objects.tree(b)
    changed = []
    for name, ea in ta.items():
        # Unchanged entries are usually the very same objects (both trees were
        # built from one cached parent), so identity settles most of them.
        eb = tb.get(name)
        if ea is not eb and (eb is None or ea.hash != eb.hash or not ea.content_equal(eb)):
            changed.append(name)
    changed += [name for name in tb if name not in ta]
    for name in sorted(changed):
        ea, eb = ta.get(name), tb.get(name)
        path = paths.join(prefix, name)
        if ea is None:
            _expand(objects, path, eb, True, out)
        elif eb is None:
            _expand(objects, path, ea, False, out)
        elif ea.kind == DIR and eb.kind == DIR:
            _diff(objects, ea.hash, eb.hash, path, out)
        elif ea.kind != eb.kind:
            if ea.kind == DIR:
                _expand(objects, path, ea, False, out)
                out.append(TreeChange(path, ADDED, None, eb))
            elif eb.kind == DIR:
                out.append(TreeChange(path, DELETED, ea, None))
                _expand(objects, path, eb, True, out)
            else:
                out.append(TreeChange(path, TYPE_CHANGED, ea, eb))
        elif not ea.content_equal(eb):
            out.append(TreeChange(path, MODIFIED, ea, eb))


def is_binary(data: bytes) -> bool:
    if b"\0" in data[:8192]:
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _content(objects: ObjectStore, e: Entry | None) -> bytes | None:
    if e is None:
        return b""
    if e.kind == SYMLINK:
        return e.target.encode()
    if e.kind == FILE:
        if e.size > MAX_TEXT_DIFF_BYTES:
            return None
        return objects.read(e.hash)
    return b""


def xattr_lines(old: dict[str, bytes], new: dict[str, bytes]) -> str:
    """Header lines for extended attributes that differ (git has no notation
    for them): `xattr added|changed NAME=VALUE`, `xattr removed NAME`. A
    value is shown as JSON text when it is printable UTF-8, else as base64."""
    out = []
    for name in sorted(old.keys() | new.keys()):
        if name not in new:
            out.append(f"xattr removed {name}\n")
        elif old.get(name) != new[name]:
            verb = "changed" if name in old else "added"
            out.append(f"xattr {verb} {name}={shown(new[name])}\n")
    return "".join(out)


def unified(objects: ObjectStore, ch: TreeChange, context: int) -> tuple[str, bool, int, int]:
    """(git-style unified text, binary?, lines added, lines deleted)."""
    a_name = "/dev/null" if ch.old is None else f"a/{ch.path}"
    b_name = "/dev/null" if ch.new is None else f"b/{ch.path}"
    header = f"diff --aether a/{ch.path} b/{ch.path}\n"
    if ch.old is not None and ch.new is not None and ch.old.mode != ch.new.mode:
        header += f"old mode {ch.old.mode:o}\nnew mode {ch.new.mode:o}\n"
    if ch.old is None and ch.new is not None:
        header += f"new file mode {ch.new.mode:o}\n"
    if ch.new is None and ch.old is not None:
        header += f"deleted file mode {ch.old.mode:o}\n"
    if ch.new is not None:
        header += xattr_lines(dict(ch.old.xattrs) if ch.old else {}, dict(ch.new.xattrs))
    old, new = _content(objects, ch.old), _content(objects, ch.new)
    if old is None or new is None or is_binary(old) or is_binary(new):
        if ch.old is not None and ch.new is not None and ch.old.hash == ch.new.hash:
            return header, False, 0, 0
        return header + f"Binary files {a_name} and {b_name} differ\n", True, 0, 0
    a_lines = old.decode().splitlines(keepends=True)
    b_lines = new.decode().splitlines(keepends=True)
    body = []
    added = deleted = 0
    for line in difflib.unified_diff(a_lines, b_lines, a_name, b_name, n=context):
        if not line.endswith("\n"):
            line += "\n\\ No newline at end of file\n"
        if line.startswith("+") and not line.startswith("+++"):
            added += 1
        elif line.startswith("-") and not line.startswith("---"):
            deleted += 1
        body.append(line)
    return header + "".join(body), False, added, deleted
