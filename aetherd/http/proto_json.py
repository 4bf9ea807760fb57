"""Proto3 JSON in and out of betterproto2 messages, strictly.

`Message.from_dict` trusts its input: a string where a bool belongs, an
out-of-range integer, URL-safe base64 (silently mangled by `b64decode`) or a
naive timestamp all get through and blow up far from the request, as a 500.
So requests are checked and normalised here against the generated field
metadata first, and only then handed to `from_dict`. Every rejection is an
`InvalidArgument` naming the field.

Scalars arriving as text (query strings) are converted here too, so that a
field accepts the same spellings whichever part of the request carries it.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import functools
import math
import re
from typing import Any

import betterproto2
from betterproto2 import Casing

from aether.errors import InvalidArgument

INT_RANGES: dict[str, tuple[int, int]] = {
    betterproto2.TYPE_INT32: (-(2**31), 2**31 - 1),
    betterproto2.TYPE_SINT32: (-(2**31), 2**31 - 1),
    betterproto2.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    betterproto2.TYPE_UINT32: (0, 2**32 - 1),
    betterproto2.TYPE_FIXED32: (0, 2**32 - 1),
    betterproto2.TYPE_INT64: (-(2**63), 2**63 - 1),
    betterproto2.TYPE_SINT64: (-(2**63), 2**63 - 1),
    betterproto2.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    betterproto2.TYPE_UINT64: (0, 2**64 - 1),
    betterproto2.TYPE_FIXED64: (0, 2**64 - 1),
}
FLOAT_TYPES = (betterproto2.TYPE_FLOAT, betterproto2.TYPE_DOUBLE)
SPECIAL_FLOATS = ("NaN", "Infinity", "-Infinity")

# Spellings people type for enum values beyond the proto name and the short
# name in any case, keyed by enum class name (values are short member names).
ENUM_ALIASES: dict[str, dict[str, str]] = {
    "ArchiveFormat": {"tgz": "TAR_GZ", "tar.gz": "TAR_GZ"},
}

# Permission bits are written in octal everywhere else (chmod, ls, tar), so a
# `mode` given as text is read as octal: mode=0755 and mode=755 both mean rwxr-xr-x.
OCTAL_FIELDS = frozenset({"mode"})

_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_FLOAT_TEXT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def json_name(field_name: str) -> str:
    """The proto3 JSON (lowerCamelCase) name, exactly as `to_dict` spells it."""
    return Casing.CAMEL(field_name).rstrip("_")


def proto_name(field_name: str) -> str:
    """The snake_case name in the .proto file (`from_` is `from` there)."""
    return field_name.rstrip("_")


def fields_of(cls: type[betterproto2.Message]) -> dict[str, betterproto2.FieldMetadata]:
    return cls._betterproto.meta_by_field_name


def field_class(cls: type[betterproto2.Message], field_name: str) -> type:
    return cls._betterproto.cls_by_field[field_name]


@functools.cache
def accepted_names(cls: type[betterproto2.Message]) -> dict[str, str]:
    """Every spelling of every field name -> the Python field name."""
    names: dict[str, str] = {}
    for name in fields_of(cls):
        for spelling in (name, proto_name(name), json_name(name)):
            names[spelling] = name
    return names


def is_timestamp(meta: betterproto2.FieldMetadata) -> bool:
    if meta.unwrap is None:
        return False
    unwrapped = meta.unwrap()
    return (unwrapped.__module__.endswith("google.protobuf")
            and unwrapped.__name__ == "Timestamp")


# ---- messages


def message_to_json(msg: betterproto2.Message) -> dict[str, Any]:
    return msg.to_dict(include_default_values=True)


def message_from_json(cls: type[betterproto2.Message], obj: Any) -> betterproto2.Message:
    clean = _message(cls, obj, "")
    try:
        return cls.from_dict(clean)
    except (ValueError, TypeError, KeyError, binascii.Error, OverflowError) as exc:
        raise InvalidArgument(f"invalid {cls.__name__}: {exc}") from None


def _message(cls: type[betterproto2.Message], obj: Any, where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise _bad(where or "body", "expected a JSON object")
    names = accepted_names(cls)
    metas = fields_of(cls)
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = names.get(key)
        here = f"{where}{key}"
        if name is None:
            raise InvalidArgument(f"unknown field {here!r} in {cls.__name__}", field=here)
        if name in out:
            raise _bad(here, "given more than once")
        if value is None:
            continue
        out[name] = _field(cls, name, metas[name], value, f"{where}{json_name(name)}")
    for group, members in cls._betterproto.oneof_field_by_group.items():
        present = sorted(json_name(f.name) for f in members if f.name in out)
        if len(present) > 1:
            raise InvalidArgument(
                f"{where}{group}: at most one of {', '.join(present)} may be set", field=group)
    return out


def _field(cls: type, name: str, meta: betterproto2.FieldMetadata, value: Any, where: str) -> Any:
    if meta.proto_type == betterproto2.TYPE_MAP:
        assert meta.map_meta is not None
        if not isinstance(value, dict):
            raise _bad(where, "expected a JSON object (map)")
        key_meta, value_meta = meta.map_meta
        value_cls = field_class(cls, f"{name}.value")
        return {
            map_key_from_text(key_meta.proto_type, k, f"{where}.{k}"):
                _single(value_meta, value_cls, v, f"{where}.{k}")
            for k, v in value.items()
        }
    item_cls = field_class(cls, name)
    if meta.repeated:
        if not isinstance(value, list):
            raise _bad(where, "expected a JSON array")
        return [_single(meta, item_cls, v, f"{where}[{i}]") for i, v in enumerate(value)]
    return _single(meta, item_cls, value, where)


def map_key_from_text(proto_type: str, key: str, where: str) -> Any:
    if proto_type in INT_RANGES:
        return _int_text(proto_type, key, where)
    if proto_type == betterproto2.TYPE_BOOL:
        if key not in ("true", "false"):
            raise _bad(where, "map key must be true or false")
        return key == "true"
    return key


def _single(meta: betterproto2.FieldMetadata, item_cls: type, value: Any, where: str) -> Any:
    t = meta.proto_type
    if value is None:
        raise _bad(where, "null is not allowed here")
    if t == betterproto2.TYPE_MESSAGE:
        if is_timestamp(meta):
            if not isinstance(value, str):
                raise _bad(where, "expected an RFC 3339 timestamp string")
            parse_timestamp(value, where)
            return value
        if meta.unwrap is not None:
            return value  # a wrapper type: from_dict knows its JSON form
        return _message(item_cls, value, f"{where}.")
    if t == betterproto2.TYPE_ENUM:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise _bad(where, "expected an enum name")
        member = enum_from_text(item_cls, str(value), where)
        return member.proto_name or member.name
    if t == betterproto2.TYPE_STRING:
        if not isinstance(value, str):
            raise _bad(where, "expected a string")
        return value
    if t == betterproto2.TYPE_BOOL:
        if not isinstance(value, bool):
            raise _bad(where, "expected true or false")
        return value
    if t in INT_RANGES:
        if isinstance(value, bool):
            raise _bad(where, "expected an integer")
        if isinstance(value, float):
            if not value.is_integer():
                raise _bad(where, "expected an integer")
            value = int(value)
        if isinstance(value, str):
            return _int_text(t, value, where)
        if not isinstance(value, int):
            raise _bad(where, "expected an integer")
        return _in_range(t, value, where)
    if t in FLOAT_TYPES:
        if isinstance(value, bool):
            raise _bad(where, "expected a number")
        if isinstance(value, (int, float)):
            return value
        if isinstance(value, str):
            float_from_text(value, where)
            return value
        raise _bad(where, "expected a number")
    if t == betterproto2.TYPE_BYTES:
        if not isinstance(value, str):
            raise _bad(where, "expected a base64 string")
        return base64.b64encode(bytes_from_base64(value, where)).decode("ascii")
    raise _bad(where, f"unsupported field type {t}")


# ---- scalars


def _bad(where: str, why: str) -> InvalidArgument:
    return InvalidArgument(f"{where}: {why}", field=where)


def _in_range(proto_type: str, value: int, where: str) -> int:
    lo, hi = INT_RANGES[proto_type]
    if not lo <= value <= hi:
        raise _bad(where, f"{value} is out of range for {proto_type} [{lo}, {hi}]")
    return value


def _int_text(proto_type: str, text: str, where: str, *, octal: bool = False) -> int:
    text = text.strip()
    if octal:
        digits = text[2:] if text[:2].lower() == "0o" else text
        if not re.fullmatch(r"[0-7]+", digits):
            raise _bad(where, f"expected octal permission bits like 0644, got {text!r}")
        return _in_range(proto_type, int(digits, 8), where)
    if not _INT_TEXT.fullmatch(text):
        raise _bad(where, f"expected an integer, got {text!r}")
    return _in_range(proto_type, int(text), where)


def float_from_text(text: str, where: str) -> float:
    if text in SPECIAL_FLOATS:
        return float(text.replace("Infinity", "inf"))
    if not _FLOAT_TEXT.fullmatch(text.strip()):
        raise _bad(where, f"expected a number, got {text!r}")
    value = float(text)
    if math.isinf(value):
        raise _bad(where, "number out of range")
    return value


def bytes_from_base64(text: str, where: str) -> bytes:
    """Standard or URL-safe alphabet, padded or not (as proto3 JSON allows)."""
    s = text.strip().replace("-", "+").replace("_", "/")
    s += "=" * (-len(s) % 4)
    try:
        return base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        raise _bad(where, "invalid base64") from None


def parse_timestamp(text: str, where: str) -> datetime.datetime:
    try:
        dt = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise _bad(where, f"invalid RFC 3339 timestamp {text!r}") from None
    if dt.tzinfo is None:
        raise _bad(where, "timestamp needs a time zone (Z or +hh:mm)")
    return dt.astimezone(datetime.UTC)


def enum_from_text(enum_cls: type[betterproto2.Enum], text: str, where: str) -> betterproto2.Enum:
    """Proto name (SESSION_STATE_ACTIVE), short name in any case (active), a
    listed alias (tgz, tar.gz) or the number."""
    by_proto = enum_cls.betterproto_renamed_proto_names_to_value()
    if text in by_proto:
        return enum_cls(by_proto[text])
    aliases = ENUM_ALIASES.get(enum_cls.__name__, {})
    short = aliases.get(text.strip().lower()) or re.sub(r"[^A-Za-z0-9]", "_", text.strip()).upper()
    for member in enum_cls:
        if short in (member.name, member.proto_name):
            return member
    if _INT_TEXT.fullmatch(text.strip()):
        number = int(text)
        if number in {m.value for m in enum_cls}:
            return enum_cls(number)
    raise _bad(where, f"unknown {enum_cls.__name__} {text!r}; one of "
                      f"{', '.join(enum_spellings(enum_cls))}")


def enum_spellings(enum_cls: type[betterproto2.Enum]) -> list[str]:
    """What `enum_from_text` accepts (besides numbers and case variants)."""
    spellings = [m.proto_name or m.name for m in enum_cls]
    spellings += [m.name.lower() for m in enum_cls]
    spellings += list(ENUM_ALIASES.get(enum_cls.__name__, {}))
    return spellings


def scalar_from_text(
    meta_type: str, item_cls: type, text: str, where: str, *,
    field_name: str = "", timestamp: bool = False,
) -> Any:
    """A query-string value as the Python value of a field of this type."""
    t = meta_type
    if t == betterproto2.TYPE_STRING:
        return text
    if t == betterproto2.TYPE_BOOL:
        lowered = text.strip().lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
        raise _bad(where, f"expected true, false, 1 or 0, got {text!r}")
    if t in INT_RANGES:
        return _int_text(t, text, where, octal=field_name in OCTAL_FIELDS)
    if t in FLOAT_TYPES:
        return float_from_text(text, where)
    if t == betterproto2.TYPE_ENUM:
        return enum_from_text(item_cls, text, where)
    if t == betterproto2.TYPE_BYTES:
        return bytes_from_base64(text, where)
    if t == betterproto2.TYPE_MESSAGE and timestamp:
        return parse_timestamp(text, where)
    raise _bad(where, "cannot be given as a query parameter; send it in a JSON body")
