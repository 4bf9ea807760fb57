"""How values are shown: sizes, times, ids, labels, states.

`Display(masked=True)` renders every value that differs from run to run
(times, generated ids) as a fixed placeholder: the snapshot tests use it so
that their screenshots are stable. It is not a privacy feature.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from aether import pb

_UNITS = ("B", "K", "M", "G", "T")


def size(n: int) -> str:
    value = float(n)
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            return f"{int(value)}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{n}B"  # pragma: no cover


def ago(when: datetime | None, now: datetime | None = None) -> str:
    if when is None:
        return "-"
    now = now or datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    secs = max(0, int((now - when).total_seconds()))
    for unit, span in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= span:
            return f"{secs // span}{unit} ago"
    return f"{secs}s ago"


def labels(values: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(values.items()))


def state(value: pb.SessionState) -> str:
    return {pb.SessionState.ACTIVE: "active", pb.SessionState.ARCHIVED: "archived"}.get(
        value, "?")


def approval_state(value: pb.ApprovalState) -> str:
    return value.name.lower() if value.name else "?"


CHANGE_MARKS = {
    pb.ChangeKind.ADDED: ("A", "green"),
    pb.ChangeKind.MODIFIED: ("M", "yellow"),
    pb.ChangeKind.DELETED: ("D", "red"),
    pb.ChangeKind.TYPE_CHANGED: ("T", "magenta"),
}


def change_mark(kind: pb.ChangeKind) -> tuple[str, str]:
    return CHANGE_MARKS.get(kind, ("?", ""))


@dataclass(frozen=True)
class Display:
    """Formatting that may mask run-dependent values (ids, times)."""

    masked: bool = False

    def id(self, value: str) -> str:
        """An id, shortened to what people compare (prefix + 8 characters)."""
        if not value:
            return ""
        prefix, _, rest = value.partition("_")
        if self.masked and rest:  # ids carry their type: ses_…, ckp_…, cmt_…
            return f"{prefix}_••••••••"
        return value

    def short_id(self, value: str) -> str:
        if self.masked:
            return self.id(value)
        prefix, _, rest = value.partition("_")
        return f"{prefix}_{rest[:8]}" if rest else value[:12]

    def where(self, url: str) -> str:
        """The daemon's address (its port varies from run to run)."""
        if self.masked:
            return url.rpartition(":")[0] + ":•••••" if url.count(":") >= 2 else "aetherd"
        return url

    def ago(self, when: datetime | None) -> str:
        return "··" if self.masked and when is not None else ago(when)

    def time(self, when: datetime | None) -> str:
        if when is None:
            return "-"
        if self.masked:
            return "····-··-·· ··:··"
        return when.astimezone().strftime("%Y-%m-%d %H:%M")


def state_name(value: str, display: Display, fork: bool = False) -> str:
    """A diff end as people say it: working, base (or, for a fork, its parent as
    forked), or the short checkpoint/commit id."""
    if value in ("", "working"):
        return "working"
    if value == "base":
        return "fork parent" if fork else "base"
    return display.short_id(value)
