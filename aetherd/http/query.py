"""Query-string and path parameters onto request messages.

A field is named in the query by its proto name (page_size) or JSON name
(pageSize); repeated fields take repeated keys (tag=a&tag=b); map fields take
key=value items (label=team=infra). Routes that list a field in
`repeated_query`/`map_query` also accept its singular form (label, tag),
because that is how one reads a filter: "?label=team=infra&tag=hot".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import betterproto2

from aether.errors import InvalidArgument
from aetherd.http.proto_json import (
    accepted_names,
    field_class,
    fields_of,
    is_timestamp,
    map_key_from_text,
    scalar_from_text,
)
from aetherd.http.routes import Route


def singular(name: str) -> str:
    return name[:-1] if name.endswith("s") else name


def route_aliases(route: Route) -> dict[str, str]:
    """Query key -> field name for the singular forms a route offers."""
    return {singular(name): name for name in (*route.repeated_query, *route.map_query)}


def apply_query(
    msg: betterproto2.Message,
    pairs: Iterable[tuple[str, str]],
    *,
    aliases: Mapping[str, str] | None = None,
) -> None:
    cls = type(msg)
    names = accepted_names(cls)
    metas = fields_of(cls)
    aliases = aliases or {}
    grouped: dict[str, list[tuple[str, str]]] = {}
    for key, value in pairs:
        name = aliases.get(key) or names.get(key)
        if name is None:
            raise InvalidArgument(f"unknown query parameter {key!r}", parameter=key)
        grouped.setdefault(name, []).append((key, value))

    for name, items in grouped.items():
        meta = metas[name]
        key = items[0][0]
        if meta.proto_type == betterproto2.TYPE_MAP:
            setattr(msg, name, _map_items(cls, name, meta, items))
        elif meta.repeated:
            setattr(msg, name, [_scalar(cls, name, meta, k, v) for k, v in items])
        else:
            if len(items) > 1:
                raise InvalidArgument(f"query parameter {key!r} given more than once",
                                      parameter=key)
            setattr(msg, name, _scalar(cls, name, meta, key, items[0][1]))


def _scalar(cls: type, name: str, meta: betterproto2.FieldMetadata, key: str, text: str):
    return scalar_from_text(meta.proto_type, field_class(cls, name), text, key,
                            field_name=name, timestamp=is_timestamp(meta))


def _map_items(cls: type, name: str, meta: betterproto2.FieldMetadata,
               items: list[tuple[str, str]]) -> dict:
    assert meta.map_meta is not None
    key_meta, value_meta = meta.map_meta
    value_cls = field_class(cls, f"{name}.value")
    out: dict = {}
    for key, item in items:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise InvalidArgument(f"query parameter {key!r}: expected key=value, got {item!r}",
                                  parameter=key)
        map_key = map_key_from_text(key_meta.proto_type, k, key)
        if map_key in out:
            raise InvalidArgument(f"query parameter {key!r}: {k!r} given more than once",
                                  parameter=key)
        out[map_key] = scalar_from_text(value_meta.proto_type, value_cls, v, key,
                                        timestamp=is_timestamp(value_meta))
    return out


def apply_path(msg: betterproto2.Message, params: Mapping[str, str]) -> None:
    metas = fields_of(type(msg))
    for name, value in params.items():
        # The route table test guarantees this; an assert keeps a bad table loud.
        assert metas[name].proto_type == betterproto2.TYPE_STRING, name
        setattr(msg, name, value)
