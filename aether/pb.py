"""The API messages and stubs generated from proto/ (aether.v1), under one short name.

`from aether import pb` then `pb.Session`, `pb.SessionServiceStub`, ... The code
itself lives in `aether/_gen` and is regenerated with `make proto`. The gRPC
services (`*ServiceStub`, `*ServiceBase`) load on first use: they import
grpclib and asyncio, which HTTP clients never need.
"""

import functools
import sys
import typing

import betterproto2

from aether._gen.aether.v1 import *  # noqa: F401,F403
from aether._gen.google.protobuf import Timestamp  # noqa: F401


def _services() -> typing.Any:
    from aether._gen.aether.v1 import services

    return services


def __getattr__(name: str) -> typing.Any:
    if name.endswith(("ServiceStub", "ServiceBase")):
        return getattr(_services(), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_services().__all__})


# Two targeted speed-ups of betterproto2 0.10, applied wherever messages are used.
# Message.to_dict() re-evaluates the class's string type
# hints (typing.get_type_hints: compile + eval per field) on every call, which
# was most of the cost of a JSON reply (32 of 53 ms for a 10-file diff). A
# message class's hints never change, so compute them once per class.
@functools.cache
def _type_hints(cls: type) -> dict[str, type]:
    return typing.get_type_hints(cls, sys.modules[cls.__module__].__dict__, {})


betterproto2.Message._type_hints = classmethod(_type_hints)  # type: ignore[method-assign,assignment]
# Likewise every field name is re-cased (regex work) on every to_dict call;
# the names are a small fixed set, so the conversions are pure and cacheable.
betterproto2.camel_case = functools.cache(betterproto2.camel_case)  # type: ignore[attr-defined]
betterproto2.snake_case = functools.cache(betterproto2.snake_case)  # type: ignore[attr-defined]
