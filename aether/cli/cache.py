"""`aether cache ...`: a session's knowledge cache (versioned key -> bytes).

Keys are any non-empty UTF-8 text ("/" included). Values are bytes: `get`
writes them raw; `--json` prints the API's proto3 JSON, where values are
base64 (like `fs cat --json`).
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from aether.cli import output as fmt
from aether.cli.coord import parse_ttl, preview, read_value
from aether.cli.inputs import read_text
from aether.cli.options import JsonOpt, QuietOpt, SessionArg, YesOpt, client, group, output

app = group("The knowledge cache of a session: versioned keys with bytes, TTLs and "
            "compare-and-set.")
batch = group("Many keys in one request: get, set (atomically) or remove.")
app.add_typer(batch, name="batch")

KeyArg = Annotated[str, typer.Argument(metavar="KEY", help="Cache key.", show_default=False)]
ValueArg = Annotated[str | None, typer.Argument(
    metavar="[VALUE|-]", help="The value as text; - (or no VALUE and no --file) reads stdin.",
    show_default=False)]
FileOpt = Annotated[str | None, typer.Option(
    "--file", "-f", metavar="FILE", help="Read the value from FILE (- = stdin).",
    show_default=False)]
TtlOpt = Annotated[str, typer.Option(
    "--ttl", metavar="DURATION",
    help="Expire after this long: seconds, or 90s, 5m, 2h, 1d, 1h30m (default: never).")]
TypeOpt = Annotated[str, typer.Option(
    "--content-type", "-t", metavar="TYPE",
    help="Content type of the value (default: application/octet-stream).")]


def _expires(m: Any) -> str:
    return fmt.when(m.expire_time) if m.expire_time else "never"


META_FIELDS = [
    ("Key", lambda m: m.key),
    ("Version", lambda m: str(m.version)),
    ("Size", lambda m: f"{m.size} ({fmt.size(m.size)})"),
    ("Content type", lambda m: m.content_type or "-"),
    ("Created", lambda m: fmt.when(m.create_time)),
    ("Updated", lambda m: fmt.when(m.update_time)),
    ("Expires", _expires),
]

META_COLUMNS = [
    fmt.Column("KEY", lambda m: m.key, style="cyan", wrap=True),
    fmt.Column("VERSION", lambda m: str(m.version), justify="right", drop=4),
    fmt.Column("SIZE", lambda m: fmt.size(m.size), justify="right"),
    fmt.Column("TYPE", lambda m: m.content_type or "-", drop=3),
    fmt.Column("UPDATED", lambda m: fmt.ago(m.update_time), drop=2),
    fmt.Column("EXPIRES", _expires, drop=1),
]


def _wrote(m: Any) -> str:
    ttl = f", expires {fmt.when(m.expire_time)}" if m.expire_time else ""
    return f"Set {m.key} (version {m.version}, {fmt.size(m.size)}{ttl})."


@app.command("get")
def get(
    ctx: typer.Context,
    session: SessionArg,
    key: KeyArg,
    output_file: Annotated[str, typer.Option(
        "--output", "-o", metavar="FILE", help="Write the value to FILE instead of stdout.")] = "",
    json_: JsonOpt = False,
) -> None:
    """Print a key's value as raw bytes (--json: the CacheEntry, value in base64).
    A missing or expired key exits 3."""
    out = output(ctx, json_)
    entry = client(ctx).cache_get(session, key)
    if out.mode == "json":
        out.json(fmt.to_json(entry))
    elif output_file and output_file != "-":
        with open(output_file, "wb") as fh:
            fh.write(entry.value)
    else:
        sys.stdout.buffer.write(entry.value)
        sys.stdout.buffer.flush()


def set_(
    ctx: typer.Context,
    session: SessionArg,
    key: KeyArg,
    value: ValueArg = None,
    file: FileOpt = None,
    ttl: TtlOpt = "",
    content_type: TypeOpt = "",
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Set a key from VALUE, --file FILE or stdin (alias: put). --json prints the
    key's new metadata (CacheEntryMetadata); -q the key."""
    ttl_seconds = parse_ttl(ttl)
    out = output(ctx, json_, quiet)
    data = read_value(value, file, out)
    m = client(ctx).cache_put(session, key, data, content_type=content_type,
                              ttl_seconds=ttl_seconds)
    out.done(_wrote(m), m, m.key)


app.command("set")(set_)
app.command("put", hidden=True)(set_)


@app.command("rm")
def rm(
    ctx: typer.Context,
    session: SessionArg,
    keys: Annotated[list[str], typer.Argument(metavar="KEY...", help="Keys to delete.",
                                              show_default=False)],
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Delete keys (missing ones are not an error). --json: {"deleted": "N"}; -q: N."""
    out = output(ctx, json_, quiet)
    c = client(ctx)
    if len(keys) == 1:
        r = c.cache_delete(session, keys[0])
    else:
        r = c.cache_batch_delete(session, keys)
    n = r.deleted
    out.done(f"Deleted {n} key{'s' if n != 1 else ''}.", r, str(n))


@app.command("exists")
def exists(ctx: typer.Context, session: SessionArg, key: KeyArg, json_: JsonOpt = False,
           quiet: QuietOpt = False) -> None:
    """Exit 0 if a key exists (and has not expired), 3 if not. --json:
    {"exists": true|false}; -q prints nothing."""
    out = output(ctx, json_, quiet)
    found = client(ctx).cache_exists(session, key)
    if out.mode == "json":
        out.json({"exists": found})
    elif out.human:
        out.console.print(f"{key} {'exists' if found else 'does not exist'}.", markup=False)
    if not found:
        raise typer.Exit(fmt.EXIT_NOT_FOUND)


def stat(ctx: typer.Context, session: SessionArg, key: KeyArg, json_: JsonOpt = False,
         quiet: QuietOpt = False) -> None:
    """Version, size, content type and times of a key, without its value (alias:
    metadata). --json: CacheEntryMetadata."""
    out = output(ctx, json_, quiet)
    out.item(client(ctx).cache_metadata(session, key), META_FIELDS, lambda m: m.key)


app.command("stat")(stat)
app.command("metadata", hidden=True)(stat)


@app.command("cas")
def cas(
    ctx: typer.Context,
    session: SessionArg,
    key: KeyArg,
    value: ValueArg = None,
    file: FileOpt = None,
    expect_version: Annotated[int | None, typer.Option(
        "--expect-version", "-e", metavar="N", min=0,
        help="Swap only if the key is at version N (0 = only if absent).",
        show_default=False)] = None,
    expect_absent: Annotated[bool, typer.Option(
        "--expect-absent", help="Swap only if the key does not exist.")] = False,
    ttl: TtlOpt = "",
    content_type: TypeOpt = "",
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Compare-and-set: write the value only if the key is at the expected version
    (or absent). Losing exits 4 with `error: conflict: ...`; --json prints the
    CompareAndSetResponse ({"swapped": ..., "metadata": current}) either way."""
    if (expect_version is None) == (not expect_absent):
        raise typer.BadParameter("give exactly one of --expect-version N and --expect-absent",
                                 param_hint="'--expect-version'")
    ttl_seconds = parse_ttl(ttl)
    out = output(ctx, json_, quiet)
    data = read_value(value, file, out)
    r = client(ctx).cache_compare_and_set(
        session, key, data, expected_version=expect_version or 0, expect_absent=expect_absent,
        content_type=content_type, ttl_seconds=ttl_seconds)
    if r.swapped:
        out.done(_wrote(r.metadata).replace("Set ", "Swapped ", 1), r, key)
        return
    if out.mode == "json":
        out.json(fmt.to_json(r))
    if r.metadata is None:
        why = f"{key} does not exist (expected version {expect_version})"
    elif expect_absent or not expect_version:
        why = f"{key} exists (version {r.metadata.version})"
    else:
        why = f"{key} is at version {r.metadata.version}, not {expect_version}"
    raise typer.Exit(fmt.fail("conflict", f"not swapped: {why}"))


def ls(
    ctx: typer.Context,
    session: SessionArg,
    prefix: Annotated[str, typer.Option("--prefix", "-p", metavar="PREFIX",
                                        help="Only keys starting with PREFIX.")] = "",
    limit: Annotated[int, typer.Option(
        "--limit", help="Show at most this many (0 = all).", min=0)] = 0,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """List keys in key order (alias: keys). --json: a list of CacheEntryMetadata;
    -q: keys."""
    out = output(ctx, json_, quiet)
    keys = []
    for m in client(ctx).iter_cache_keys(session, prefix=prefix):
        keys.append(m)
        if limit and len(keys) >= limit:
            break
    out.table(keys, META_COLUMNS, lambda m: m.key, empty="No keys.")


app.command("ls")(ls)
app.command("keys", hidden=True)(ls)


@app.command("stats")
def stats(ctx: typer.Context, session: SessionArg, json_: JsonOpt = False,
          quiet: QuietOpt = False) -> None:
    """Keys, bytes, hits and misses of a session's cache. --json: CacheStats; -q: keys."""
    out = output(ctx, json_, quiet)

    def ratio(s: Any) -> str:
        total = s.hits + s.misses
        return f"{100 * s.hits / total:.1f}%" if total else "-"

    out.item(client(ctx).cache_stats(session), [
        ("Keys", lambda s: str(s.keys)),
        ("Bytes", lambda s: f"{s.bytes} ({fmt.size(s.bytes)})"),
        ("Hits", lambda s: str(s.hits)),
        ("Misses", lambda s: str(s.misses)),
        ("Hit ratio", ratio),
    ], lambda s: str(s.keys))


@app.command("clear")
def clear(
    ctx: typer.Context,
    session: SessionArg,
    prefix: Annotated[str, typer.Option(
        "--prefix", "-p", metavar="PREFIX", help="Delete every key starting with PREFIX "
        "(required, not empty).", show_default=False)],
    yes: YesOpt = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Delete every key with a prefix. Asks first on a terminal unless --yes.
    --json: {"deleted": "N"}; -q: N."""
    out = output(ctx, json_, quiet)
    if prefix and not yes and sys.stdin.isatty() and sys.stderr.isatty():
        typer.confirm(f"Delete every key starting with {prefix!r}?", abort=True, err=True)
    r = client(ctx).cache_delete_by_prefix(session, prefix)
    n = r.deleted
    out.done(f"Deleted {n} key{'s' if n != 1 else ''} starting with {prefix!r}.", r, str(n))


# ---- batches

KeysArg = Annotated[list[str] | None, typer.Argument(
    metavar="[KEY...]", help="Keys (added to those of --file).", show_default=False)]
KeysFileOpt = Annotated[str | None, typer.Option(
    "--file", "-f", metavar="FILE",
    help="More keys: one per line, or a JSON array of strings (- = stdin).",
    show_default=False)]


def _keys(args: list[str] | None, file: str | None, out: fmt.Output) -> list[str]:
    import json

    keys = list(args or [])
    if file is not None:
        text = read_text(file, "keys", out)
        parsed: Any = None
        if text.lstrip().startswith("["):
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
        if isinstance(parsed, list) and all(isinstance(k, str) for k in parsed):
            keys += parsed
        else:
            keys += [line for line in text.splitlines() if line]
    if not keys:
        raise typer.BadParameter("no keys: give KEY arguments or --file", param_hint="'KEY...'")
    return keys


@batch.command("get")
def batch_get(
    ctx: typer.Context,
    session: SessionArg,
    keys: KeysArg = None,
    file: KeysFileOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Get many keys. People see a table (missing keys on stderr); --json prints
    the CacheBatchGetResponse: {"entries": [{"metadata": {...}, "value": BASE64}],
    "missing": [KEY...]}; -q the keys found."""
    out = output(ctx, json_, quiet)
    wanted = _keys(keys, file, out)
    r = client(ctx).cache_batch_get(session, wanted)
    if out.mode == "json":
        out.json(fmt.to_json(r))
        return
    out.table(r.entries, [
        fmt.Column("KEY", lambda e: e.metadata.key, style="cyan", wrap=True),
        fmt.Column("VERSION", lambda e: str(e.metadata.version), justify="right", drop=3),
        fmt.Column("SIZE", lambda e: fmt.size(e.metadata.size), justify="right", drop=2),
        fmt.Column("VALUE", lambda e: preview(e.value, e.metadata.content_type, 60), wrap=True),
    ], lambda e: e.metadata.key, empty="None of the keys exist.")
    if r.missing:
        out.note("Missing: " + ", ".join(r.missing))


def _items(text: str, fmt_name: str, ttl_seconds: int, content_type: str) -> list[Any]:
    import base64
    import binascii
    import json

    from aether import pb

    def item(key: Any, value: Any, b64: Any = None, ctype: Any = None, ttl: Any = None,
             where: str = "") -> Any:
        if not isinstance(key, str) or not key:
            raise typer.BadParameter(f"{where}the key must be a non-empty string")
        if b64 is not None:
            try:
                data = base64.b64decode(b64, validate=True)
            except (binascii.Error, TypeError, ValueError):
                raise typer.BadParameter(f"{where}{key!r}: base64 is not valid") from None
        elif isinstance(value, str):
            data = value.encode("utf-8")
        else:  # any other JSON value is stored as JSON
            data = json.dumps(value, separators=(",", ":")).encode()
            ctype = ctype or "application/json"
        if ttl is not None and (not isinstance(ttl, int | str) or isinstance(ttl, bool)):
            raise typer.BadParameter(f"{where}{key!r}: ttl must be seconds or a duration")
        return pb.CacheBatchSetItem(
            key=key, value=data, content_type=str(ctype or content_type),
            ttl_seconds=parse_ttl(str(ttl)) if ttl is not None else ttl_seconds)

    whole: Any = None
    if fmt_name in ("auto", "object"):
        try:
            whole = json.loads(text)
        except ValueError as exc:
            if fmt_name == "object":
                raise typer.BadParameter(f"not a JSON object: {exc}") from None
    if fmt_name == "object" or (fmt_name == "auto" and isinstance(whole, dict)):
        if not isinstance(whole, dict):
            raise typer.BadParameter("not a JSON object")
        return [item(k, v, where=f"key {k!r}: ") for k, v in whole.items()]
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"line {n}: "
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise typer.BadParameter(f"{where}not JSON: {exc}") from None
        if not isinstance(obj, dict) or "key" not in obj:
            raise typer.BadParameter(f"{where}want an object with a \"key\"")
        if ("value" in obj) == ("base64" in obj):
            raise typer.BadParameter(f"{where}want exactly one of \"value\" and \"base64\"")
        ctype = obj.get("contentType", obj.get("content_type"))
        ttl = obj.get("ttl", obj.get("ttlSeconds", obj.get("ttl_seconds")))
        out.append(item(obj["key"], obj.get("value"), obj.get("base64"), ctype, ttl, where))
    return out


@batch.command("set")
def batch_set(
    ctx: typer.Context,
    session: SessionArg,
    file: Annotated[str, typer.Argument(
        metavar="[FILE|-]", help="The items (default: stdin).")] = "-",
    fmt_name: Annotated[str, typer.Option(
        "--format", metavar="FORMAT",
        help="auto (default), object or lines; see above.")] = "auto",
    ttl: TtlOpt = "",
    content_type: TypeOpt = "",
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Set many keys at once, atomically (all or none).

    \b
    Input, from FILE or stdin, in one of two shapes:
      object  one JSON object of key -> value:
                {"greeting": "hello", "config": {"retries": 3}}
      lines   JSON lines, one item per line:
                {"key": "greeting", "value": "hello", "ttl": "5m"}
                {"key": "logo.png", "base64": "iVBORw0...", "contentType": "image/png"}
    A string value is stored as UTF-8 text; any other JSON value as compact JSON
    (content type application/json). Items may carry "contentType" and "ttl"
    (seconds or a duration); --ttl and --content-type apply to the others.
    auto reads a whole-input JSON object as `object`, anything else as `lines`
    (so a one-item JSON lines input needs --format lines).

    --json prints the CacheBatchSetResponse ({"entries": [metadata...]}); -q the keys.
    """
    if fmt_name not in ("auto", "object", "lines"):
        raise typer.BadParameter("want auto, object or lines", param_hint="'--format'")
    ttl_seconds = parse_ttl(ttl)
    out = output(ctx, json_, quiet)
    items = _items(read_text(file, "items", out), fmt_name, ttl_seconds, content_type)
    if not items:
        raise typer.BadParameter("no items in the input")
    r = client(ctx).cache_batch_set(session, items)
    if out.mode == "json":
        out.json(fmt.to_json(r))
        return
    n = len(r.entries)
    out.note(f"Set {n} key{'s' if n != 1 else ''}.")
    out.table(r.entries, META_COLUMNS, lambda m: m.key)


@batch.command("rm")
def batch_rm(
    ctx: typer.Context,
    session: SessionArg,
    keys: KeysArg = None,
    file: KeysFileOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Delete many keys (missing ones are not an error). --json: {"deleted": "N"}; -q: N."""
    out = output(ctx, json_, quiet)
    wanted = _keys(keys, file, out)
    r = client(ctx).cache_batch_delete(session, wanted)
    n = r.deleted
    out.done(f"Deleted {n} key{'s' if n != 1 else ''}.", r, str(n))
