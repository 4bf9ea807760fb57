"""The API layer: one object per proto service, speaking proto messages.

Each class subclasses the betterproto2-generated `XxxServiceBase`, so the gRPC
server serves it as is, and the HTTP shim calls the very same methods with the
messages it built from JSON. Methods translate between proto messages and the
domain services (`aetherd.services`); they hold no business logic. RPCs not
overridden answer UNIMPLEMENTED on both transports.
"""

from __future__ import annotations

from dataclasses import dataclass

from aether import pb


@dataclass
class Api:
    sessions: pb.SessionServiceBase
    files: pb.FileServiceBase
    persistence: pb.PersistenceServiceBase
    cache: pb.CacheServiceBase
    bus: pb.BusServiceBase
    events: pb.EventServiceBase
    review: pb.ReviewServiceBase
    observability: pb.ObservabilityServiceBase
    templates: pb.TemplateServiceBase
    identity: pb.IdentityServiceBase

    def services(self) -> list:
        return [
            self.sessions, self.files, self.persistence, self.cache,
            self.bus, self.events, self.review, self.observability,
            self.templates, self.identity,
        ]
