"""Background work that can fail without taking the app down.

`@task(...)` is Textual's `@work` for coroutines that call the daemon: the
coroutine runs as a worker, and any exception it raises (an `AetherError`
from the daemon, a connection failure, a bug) becomes an error notification
through `describe()` instead of a crash. Cancellation passes through.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from textual import work

log = logging.getLogger("aether.tui")

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def describe(exc: BaseException) -> tuple[str, str]:
    """(title, message) for an error notification."""
    from aether.errors import AetherError

    if isinstance(exc, AetherError):
        return exc.code, exc.message
    if isinstance(exc, OSError):
        return "os_error", str(exc)
    return type(exc).__name__, str(exc) or repr(exc)


def report(node: Any, exc: BaseException) -> None:
    """Show `exc` as an error notification of `node`'s app."""
    title, message = describe(exc)
    log.debug("tui task failed", exc_info=exc)
    node.app.report_error(title, message)


def task(*, exclusive: bool = False, group: str = "default") -> Callable[[F], F]:
    """`@work` for daemon calls: failures become notifications, never a crash."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        async def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(self, *args, **kwargs)
            except Exception as exc:
                report(self, exc)
                return None

        return work(guarded, exclusive=exclusive, group=group, exit_on_error=False)  # type: ignore

    return decorate
