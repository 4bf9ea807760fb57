"""The RPCs of the generated service bases, read from the code itself.

The HTTP shim needs each RPC's request and reply message classes; taking them
from the generated `__mapping__` (what the gRPC server serves) rather than a
hand-kept list is what lets a test fail when proto/ and the route table drift.
"""

from __future__ import annotations

import functools
import typing
from dataclasses import dataclass

import betterproto2
from grpclib.const import Cardinality

from aetherd.api import Api


@dataclass(frozen=True)
class Rpc:
    service: str  # attribute of Api, e.g. "files"
    name: str  # snake_case Python method, e.g. "read_file", "import_"
    grpc_path: str  # e.g. "/aether.v1.FileService/ReadFile"
    request: type[betterproto2.Message]
    reply: type[betterproto2.Message]
    cardinality: Cardinality

    @property
    def server_streaming(self) -> bool:
        return self.cardinality is Cardinality.UNARY_STREAM

    @property
    def operation_id(self) -> str:
        """'FileService.ReadFile': the gRPC method, so both APIs share one name."""
        return self.grpc_path.rsplit(".", 1)[-1].replace("/", ".")


@functools.cache
def service_classes() -> dict[str, type]:
    """Api attribute -> generated XxxServiceBase class."""
    return dict(typing.get_type_hints(Api))


@functools.cache
def all_rpcs() -> dict[tuple[str, str], Rpc]:
    rpcs: dict[tuple[str, str], Rpc] = {}
    for service, cls in service_classes().items():
        for grpc_path, handler in cls().__mapping__().items():
            name = handler.func.__name__.removeprefix("__rpc_")
            rpcs[(service, name)] = Rpc(
                service=service,
                name=name,
                grpc_path=grpc_path,
                request=handler.request_type,
                reply=handler.reply_type,
                cardinality=handler.cardinality,
            )
    return rpcs


def rpc(service: str, name: str) -> Rpc:
    return all_rpcs()[(service, name)]
