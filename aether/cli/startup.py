"""What keeps a command's start fast: imports the CLI's blocking client does
not need, kept out of the process. Measured with bench/cli.py."""

from __future__ import annotations

import sys

# Commands that run an event loop of their own (the mount runs on trio), so
# must see every optional package their HTTP client can use.
ASYNC_COMMANDS = frozenset({"mount", "tui"})

# Optional packages that httpx, httpcore and betterproto2 import whenever they
# are installed, which the CLI's blocking HTTP/1.1 client never uses: httpx's
# own command line tool (click, pygments, rich.syntax), trio (an async back
# end), h2 (HTTP/2) and pydantic (betterproto2's pydantic dataclasses). Other
# parts of AetherFS install all of them (grpclib needs h2, the mount trio);
# together they cost ~250 ms of every command's start when measured here.
_UNUSED_BY_THE_CLI = ("httpx._main", "trio", "h2", "pydantic")


def import_client_lean() -> None:
    """Import httpx, httpcore and the API messages with the packages above
    hidden, then unhide them: those modules see them as absent, while a later
    `import trio` (say) still works. A no-op once httpcore is loaded."""
    if "httpcore" in sys.modules:
        return
    hidden = [name for name in _UNUSED_BY_THE_CLI if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # makes `import name` fail
    try:
        import httpcore  # noqa: F401
        import httpx  # noqa: F401

        from aether import pb  # noqa: F401
    finally:
        for name in hidden:
            if sys.modules.get(name) is None:
                del sys.modules[name]
