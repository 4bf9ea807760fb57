"""The AetherFS client SDK: the daemon's HTTP/JSON API as Python calls.

    from aether.client import connect, source

    with connect() as client:            # AETHER_SERVER/AETHER_TOKEN, or the local daemon
        s = client.create_session(source.directory("/src/app"), name="demo")
        client.write_file(s.id, "notes/todo.txt", b"ship it\\n")
        ckp = client.create_checkpoint(s.id, message="first")
        for session in client.iter_sessions(labels={"team": "infra"}):
            print(session.id, session.name)

    async with await aconnect() as client:   # the same methods, awaited
        s = await client.get_session("ses_...")

Requests and results are the `aether.pb` messages; failures raise the typed
`aether.errors.AetherError` subclasses (NotFound, Conflict, ...), the same
classes the daemon raised.
"""

from aether.client._base import Operations
from aether.client._client import AsyncByteStream, AsyncClient, ByteStream, Client
from aether.client.connect import Target, aconnect, connect, ensure_local_daemon, resolve

__all__ = [
    "AsyncClient",
    "AsyncByteStream",
    "Client",
    "ByteStream",
    "Operations",
    "Target",
    "aconnect",
    "connect",
    "ensure_local_daemon",
    "resolve",
]
