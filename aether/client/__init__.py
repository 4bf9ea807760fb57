"""The AetherFS client SDK: the daemon's HTTP/JSON API as Python calls.

    from aether.client import connect, source

    with connect() as client:            # AETHER_SERVER/AETHER_TOKEN, or the local daemon
        s = client.create_session(source.directory("/src/app"), name="demo")
        client.write_file(s.id, "notes/todo.txt", b"ship it\\n")
        ckp = client.create_checkpoint(s.id, message="first")
        for session in client.iter_sessions(labels={"team": "infra"}):
            print(session.id, session.name)
        client.cache_put(s.id, "plan", b"step 1", ttl_seconds=3600)
        with client.follow_events(s.id, after=0) as events:   # live, until you stop
            for event in events:
                print(event.cursor, event.type, event.path)

    async with await aconnect() as client:   # the same methods, awaited
        s = await client.get_session("ses_...")

Requests and results are the `aether.pb` messages; failures raise the typed
`aether.errors.AetherError` subclasses (NotFound, Conflict, ...), the same
classes the daemon raised.
"""

import importlib
from typing import TYPE_CHECKING, Any

# Light (standard library only): and imported here so that the name `connect`
# is the function, not the submodule of the same name.
from aether.client.connect import Target, aconnect, connect, ensure_local_daemon, resolve

# Loaded on first use: the async client pulls in httpx, which the blocking
# one (and so the CLI's start-up) does without.
_LAZY = {
    "Operations": "aether.client._base",
    "ChunkedUpload": "aether.client._base",
    "chunk_hashes": "aether.client._base",
    "AsyncByteStream": "aether.client._async",
    "AsyncClient": "aether.client._async",
    "AsyncFollowStream": "aether.client._async",
    "ByteStream": "aether.client._client",
    "Client": "aether.client._client",
    "FollowStream": "aether.client._client",
}

if TYPE_CHECKING:
    from aether.client._async import AsyncByteStream, AsyncClient, AsyncFollowStream
    from aether.client._base import ChunkedUpload, Operations, chunk_hashes
    from aether.client._client import ByteStream, Client, FollowStream


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "AsyncClient",
    "AsyncByteStream",
    "Client",
    "ByteStream",
    "FollowStream",
    "AsyncFollowStream",
    "ChunkedUpload",
    "Operations",
    "Target",
    "aconnect",
    "chunk_hashes",
    "connect",
    "ensure_local_daemon",
    "resolve",
]
