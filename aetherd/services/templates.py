"""Templates: named, durable, immutable pointers to a tree.

A template records a root tree hash under a unique name, with a description
and labels. Like commits, templates are global: they outlive the session they
were made from, and their trees are gc roots. Making one costs a fold of the
source session (O(changed paths)) plus one row; a session created from one
points at the same tree (O(1), nothing copied).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass

from aether.errors import AlreadyExists, InvalidArgument, NotFound
from aetherd.services.state import Store

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
MAX_PAGE = 1000
_COLS = ("name, root, description, labels, source_kind, source_ref, source_session_id, "
         "source_at, created_ns")


@dataclass
class TemplateRecord:
    name: str
    root: str
    description: str
    labels: dict[str, str]
    source_kind: str
    source_ref: str
    source_session_id: str
    source_at: str
    created_ns: int
    file_count: int = 0
    total_bytes: int = 0


def check_name(name: str) -> str:
    """A name for a new template: anything else is invalid_argument."""
    if not name:
        raise InvalidArgument("template name is required")
    if not NAME_RE.match(name):
        raise InvalidArgument(
            f"bad template name {name!r}: want 1-63 characters of a-z, 0-9, '.', '_' and '-', "
            "starting with a letter or digit")
    return name


def _lookup_name(name: str) -> str:
    """A name to look up: one that cannot exist is simply not found (as with ids)."""
    if not name:
        raise InvalidArgument("template name is required")
    if not NAME_RE.match(name):
        raise NotFound(f"no template {name!r}", name=name)
    return name


def template_root(store: Store, name: str) -> str:
    """The tree a session created from template `name` starts with."""
    row = store.db.one("SELECT root FROM templates WHERE name=?", (_lookup_name(name),))
    if row is None:
        raise NotFound(f"no template {name!r}", name=name)
    return row[0]


class Templates:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.db = store.db
        self.objects = store.objects

    def _rec(self, row: tuple) -> TemplateRecord:
        rec = TemplateRecord(row[0], row[1], row[2], json.loads(row[3]), *row[4:9])
        rec.file_count, rec.total_bytes = self.objects.tree_stats(rec.root)
        return rec

    def _row(self, name: str) -> tuple | None:
        return self.db.one(f"SELECT {_COLS} FROM templates WHERE name=?", (name,))

    # ---- create
    def create(self, name: str, *, description: str = "", labels: dict[str, str] | None = None,
               session_id: str = "", at: str = "", checkpoint_id: str = "", commit_id: str = "",
               replace: bool = False) -> TemplateRecord:
        check_name(name)
        labels = dict(labels or {})
        for k in labels:
            if not k or len(k) > 63 or "=" in k:
                raise InvalidArgument(f"bad label key {k!r}")
        given = [f for f, v in (("session_id", session_id), ("checkpoint_id", checkpoint_id),
                                ("commit_id", commit_id)) if v]
        if len(given) != 1:
            raise InvalidArgument(
                "a template needs exactly one of session_id, checkpoint_id or commit_id"
                + (f" (got {', '.join(given)})" if given else ""))
        if at and not session_id:
            raise InvalidArgument("`at` goes with session_id")
        with self.db.write():
            # The root is resolved and recorded in one transaction, so gc (which
            # marks from a snapshot) sees it referenced either by its source or
            # by the template, never by neither.
            if session_id:
                kind, ref, src_session = "session", session_id, session_id
                rec = self.store.session(session_id)
                root = self.store.resolve_state(rec, at)
                if root is None:
                    root = self.store.workspace(rec).fold()
            elif checkpoint_id:
                kind, ref = "checkpoint", checkpoint_id
                src_session, root = self.store.checkpoint_root_any(checkpoint_id)
            else:
                kind, ref = "commit", commit_id
                row = self.store.commit_row(commit_id)
                root, src_session = row[1], row[2]
            if self._row(name) is not None:
                if not replace:
                    raise AlreadyExists(f"template {name!r} already exists "
                                        "(set replace to overwrite it)", name=name)
                self.db.execute("DELETE FROM templates WHERE name=?", (name,))
            self.db.execute(
                f"INSERT INTO templates({_COLS}) VALUES (?,?,?,?,?,?,?,?,?)",
                (name, root, description, json.dumps(labels), kind, ref, src_session,
                 at if session_id else "", time.time_ns()),
            )
            row = self._row(name)
        assert row is not None
        return self._rec(row)

    # ---- read
    def get(self, name: str) -> TemplateRecord:
        row = self._row(_lookup_name(name))
        if row is None:
            raise NotFound(f"no template {name!r}", name=name)
        return self._rec(row)

    def list(self, labels: dict[str, str], prefix: str, page_size: int,
             page_token: str) -> tuple[list[TemplateRecord], str]:
        """Templates by name (after `page_token`), with every label given and the prefix."""
        limit = min(page_size or 100, MAX_PAGE)
        where = "name>? AND substr(name, 1, ?)=?"
        out: list[TemplateRecord] = []
        after = page_token
        while len(out) < limit:
            rows = self.db.query(f"SELECT {_COLS} FROM templates WHERE {where} ORDER BY name "
                                 "LIMIT 500", (after, len(prefix), prefix))
            for row in rows:
                after = row[0]
                if any(json.loads(row[3]).get(k) != v for k, v in labels.items()):
                    continue
                out.append(self._rec(row))
                if len(out) == limit:
                    break
            if len(rows) < 500:
                break
        more = len(out) == limit and self.db.one(
            f"SELECT 1 FROM templates WHERE {where} LIMIT 1", (after, len(prefix), prefix)
        ) is not None
        return out, (after if more else "")

    # ---- delete
    def delete(self, name: str) -> TemplateRecord:
        """Forget the name. Sessions made from the template keep their trees."""
        with self.db.write():
            rec = self.get(name)
            self.db.execute("DELETE FROM templates WHERE name=?", (name,))
        return rec

