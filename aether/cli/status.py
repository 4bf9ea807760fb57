"""Top-level `aether health | usage | analytics`: how the daemon and sessions are doing."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from aether.cli import output as fmt
from aether.cli.coord import parse_ttl
from aether.cli.options import JsonOpt, QuietOpt, client, output

OptionalSessionArg = Annotated[str | None, typer.Argument(
    metavar="[SESSION]", help="Session id (ses_...); default: the daemon / every session.",
    show_default=False)]


def _uptime(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h {minutes}m"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


def _check_rows(checks: dict[str, str]) -> list[tuple[str, Any]]:
    return [(f"  {name}", lambda _m, v=value: v) for name, value in sorted(checks.items())]


def health(
    ctx: typer.Context,
    session: OptionalSessionArg = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Show the daemon's health, or a session's; exit 1 when not ok.

    Exits 0 when the status is "ok", 1 otherwise (e.g. "degraded").
    --json: HealthResponse (daemon) or SessionHealth; -q: the status word."""
    out = output(ctx, json_, quiet)
    c = client(ctx)
    if session:
        h = c.session_health(session)
        out.item(h, [("Session", lambda h: h.session_id), ("Status", lambda h: h.status),
                     ("Checks", lambda h: "" if h.checks else "-"), *_check_rows(h.checks)],
                 lambda h: h.status)
    else:
        h = c.health()
        out.item(h, [("Status", lambda h: h.status), ("Version", lambda h: h.version or "-"),
                     ("Uptime", lambda h: _uptime(h.uptime_seconds)),
                     ("Server", lambda _h: c.url),
                     ("Checks", lambda h: "" if h.checks else "-"), *_check_rows(h.checks)],
                 lambda h: h.status)
    if h.status != "ok":
        raise typer.Exit(fmt.EXIT_ERROR)


USAGE_FIELDS = [
    ("Session", lambda u: u.session_id),
    ("Files", lambda u: str(u.files)),
    ("Directories", lambda u: str(u.directories)),
    ("Bytes", lambda u: f"{u.bytes} ({fmt.size(u.bytes)})"),
    ("Unique blob bytes", lambda u: f"{u.unique_blob_bytes} ({fmt.size(u.unique_blob_bytes)})"),
    ("Dedup ratio", lambda u: f"{u.dedup_ratio:.2f}"),
    ("Cache keys", lambda u: str(u.cache_keys)),
    ("Cache bytes", lambda u: f"{u.cache_bytes} ({fmt.size(u.cache_bytes)})"),
    ("Bus backlog", lambda u: str(u.bus_backlog)),
    ("Checkpoints", lambda u: str(u.checkpoints)),
    ("Commits", lambda u: str(u.commits)),
]

USAGE_COLUMNS = [
    fmt.Column("SESSION", lambda u: u.session_id, style="cyan"),
    fmt.Column("FILES", lambda u: str(u.files), justify="right"),
    fmt.Column("DIRS", lambda u: str(u.directories), justify="right", drop=6),
    fmt.Column("SIZE", lambda u: fmt.size(u.bytes), justify="right"),
    fmt.Column("UNIQUE", lambda u: fmt.size(u.unique_blob_bytes), justify="right", drop=4),
    fmt.Column("DEDUP", lambda u: f"{u.dedup_ratio:.2f}", justify="right", drop=5),
    fmt.Column("CACHE", lambda u: f"{u.cache_keys} ({fmt.size(u.cache_bytes)})",
               justify="right", drop=3),
    fmt.Column("BUS", lambda u: str(u.bus_backlog), justify="right", drop=2),
    fmt.Column("CKPTS", lambda u: str(u.checkpoints), justify="right", drop=7),
    fmt.Column("COMMITS", lambda u: str(u.commits), justify="right", drop=8),
]


def usage(
    ctx: typer.Context,
    session: OptionalSessionArg = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Show files, bytes, dedup, cache and bus usage of a session, or of every session.

    Without SESSION: one row per session. --json: SessionUsage, or a list of
    them; -q: session ids."""
    out = output(ctx, json_, quiet)
    c = client(ctx)
    if session:
        out.item(c.get_usage(session), USAGE_FIELDS, lambda u: u.session_id)
        return
    from aether.errors import NotFound

    rows = []
    for s in c.iter_sessions():
        try:
            rows.append(c.get_usage(s.id))
        except NotFound:  # deleted since it was listed
            continue
    out.table(rows, USAGE_COLUMNS, lambda u: u.session_id, empty="No sessions.")


def analytics(
    ctx: typer.Context,
    session: Annotated[str, typer.Argument(metavar="SESSION", help="Session id (ses_...).",
                                           show_default=False)],
    window: Annotated[str, typer.Option(
        "--window", "-w", metavar="DURATION",
        help="Window length: seconds, or 1m, 1h, 1d (default 1h).")] = "",
    all_windows: Annotated[bool, typer.Option(
        "--all", "-a", help="Show windows without operations too.")] = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Show a session's operation counts over time windows.

    The last 24 aligned windows (default one hour each). People see one row per
    window and operation; --json prints the SessionAnalytics ({"sessionId",
    "windows": [{"startTime", "endTime", "operations": [{"operation", "count"}]}]});
    -q: operation names."""
    seconds = parse_ttl(window, "'--window'")
    out = output(ctx, json_, quiet)
    a = client(ctx).get_analytics(session, window_seconds=seconds)
    if out.mode == "json":
        out.json(fmt.to_json(a))
        return
    rows = []
    for w in a.windows:
        if not w.operations and all_windows:
            rows.append((w, None))
        rows.extend((w, op) for op in w.operations)
    if out.mode == "quiet":
        for name in sorted({op.operation for _w, op in rows if op is not None}):
            print(name)
        return
    out.table(rows, [
        fmt.Column("WINDOW", lambda r: f"{fmt.when(r[0].start_time)} - "
                   f"{fmt.when(r[0].end_time)[11:]}"),
        fmt.Column("OPERATION", lambda r: r[1].operation if r[1] else "-"),
        fmt.Column("COUNT", lambda r: str(r[1].count) if r[1] else "0", justify="right"),
    ], lambda r: r[1].operation if r[1] else "", empty="No operations in these windows.")
