"""The API messages and stubs generated from proto/ (aether.v1), under one short name.

`from aether import pb` then `pb.Session`, `pb.SessionServiceStub`, ... The code
itself lives in `aether/_gen` and is regenerated with `make proto`.

Importing this module is free; the generated code loads on the first attribute
asked for. Building the ~130 message classes costs ~60 ms, a fifth of a CLI
command's start-up budget, and commands that only print the daemon's JSON
(`aether session ls`) never need them. The gRPC services (`*ServiceStub`,
`*ServiceBase`) load separately, on their own first use: they import grpclib
and asyncio, which HTTP clients never need.
"""

from __future__ import annotations

import functools
import importlib
import sys
import typing
from types import ModuleType

if typing.TYPE_CHECKING:
    from aether._gen.aether.v1 import *  # noqa: F401,F403
    from aether._gen.aether.v1.services import *  # noqa: F401,F403
    from aether._gen.google.protobuf import Timestamp  # noqa: F401


@functools.cache
def _messages() -> ModuleType:
    # betterproto2 imports pydantic whenever it is installed (for messages
    # generated as pydantic dataclasses, which ours are not): ~100 ms of every
    # process's start. Hidden while betterproto2 loads; unhidden after, so a
    # later `import pydantic` elsewhere still works.
    hide = "pydantic" not in sys.modules
    if hide:
        sys.modules["pydantic"] = None  # type: ignore[assignment]  # `import pydantic` fails
    try:
        import betterproto2  # noqa: F401
    finally:
        if hide and sys.modules.get("pydantic", 0) is None:
            del sys.modules["pydantic"]
    module = importlib.import_module("aether._gen.aether.v1")
    _speed_up_betterproto2()
    return module


@functools.cache
def _services() -> ModuleType:
    from aether._gen.aether.v1 import services

    _messages()
    return services


def __getattr__(name: str) -> typing.Any:
    if name.startswith("__"):
        raise AttributeError(name)
    if name.endswith(("ServiceStub", "ServiceBase")):
        value = getattr(_services(), name)
    elif name == "Timestamp":
        _messages()
        from aether._gen.google.protobuf import Timestamp as value
    else:
        try:
            value = getattr(_messages(), name)
        except AttributeError:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_messages().__all__, *_services().__all__, "Timestamp"})


def _speed_up_betterproto2() -> None:
    """Two targeted speed-ups of betterproto2 0.10, applied before any message is used."""
    import betterproto2

    # Message.to_dict() re-evaluates the class's string type hints
    # (typing.get_type_hints: compile + eval per field) on every call, which was
    # most of the cost of a JSON reply (32 of 53 ms for a 10-file diff). A message
    # class's hints never change, so compute them once per class.
    @functools.cache
    def _type_hints(cls: type) -> dict[str, type]:
        return typing.get_type_hints(cls, sys.modules[cls.__module__].__dict__, {})

    betterproto2.Message._type_hints = classmethod(_type_hints)  # type: ignore[method-assign,assignment]
    # Likewise every field name is re-cased (regex work) on every to_dict call;
    # the names are a small fixed set, so the conversions are pure and cacheable.
    betterproto2.camel_case = functools.cache(betterproto2.camel_case)  # type: ignore[attr-defined]
    betterproto2.snake_case = functools.cache(betterproto2.snake_case)  # type: ignore[attr-defined]
