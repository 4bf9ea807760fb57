"""The HTTP surface: every route, the RPC it maps to, and how the request is built.

This table is the single place HTTP paths are spelled. The HTTP app binds it,
the OpenAPI document is generated from it plus the proto messages, and a test
checks that every unary RPC of every service has a route here (so the two
transports cannot drift apart).

Request messages are built from, in order: the JSON body (proto3 JSON mapping)
when `body` is "json", then query parameters, then path parameters (which
always win). Responses are the RPC's response message as proto3 JSON, except
for routes whose `kind` says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Route:
    method: str
    # aiohttp-style template. `{path}` is the rest of the URL, slashes included.
    path: str
    service: str  # attribute of aetherd.api.Api, e.g. "sessions"
    rpc: str  # snake_case method of that service's generated Base class
    # "json": body is the request message in proto3 JSON; "none": no body;
    # "raw": body is bytes placed into `raw_field` of the request message.
    body: str = "none"
    raw_field: str = ""
    # "message": proto3 JSON response; "raw_file": file bytes with ETag/Range;
    # "stream_bytes": streamed bytes (export); "sse": server-sent events.
    kind: str = "message"
    summary: str = ""
    # Query parameters that map to a repeated field, and those that are
    # "k=v" pairs for a map field.
    repeated_query: tuple[str, ...] = field(default=())
    map_query: tuple[str, ...] = field(default=())
    success_status: int = 200


S = "/v1/sessions/{session_id}"

ROUTES: tuple[Route, ...] = (
    # ---- sessions and lifecycle
    Route("POST", "/v1/sessions", "sessions", "create_session", body="json",
          summary="Create a session from a source (JSON), or from an uploaded archive "
          "(raw tar/tar.gz/zip body; name, label=k=v and tag as query parameters).",
          success_status=201),
    Route("GET", "/v1/sessions", "sessions", "list_sessions",
          summary="List sessions, filtered by label (label=k=v), tag and state.",
          repeated_query=("tags",), map_query=("labels",)),
    Route("GET", S, "sessions", "get_session", summary="Get a session."),
    Route("PATCH", S, "sessions", "update_session", body="json",
          summary="Update name, labels, tags, metadata or policy."),
    Route("DELETE", S, "sessions", "delete_session", summary="Delete a session."),
    Route("GET", "/v1/tombstones", "sessions", "list_tombstones",
          summary="Audit records of deleted sessions, newest first (admins); owner= filters."),
    Route("GET", "/v1/tombstones/{session_id}", "sessions", "get_tombstone",
          summary="The audit record of one deleted session (admins)."),
    Route("POST", S + ":fork", "sessions", "fork_session", body="json",
          summary="Fork: a new session sharing this one's state (O(changed paths)).",
          success_status=201),
    Route("POST", S + ":archive", "sessions", "archive_session",
          summary="Archive: the session becomes read-only."),
    Route("POST", S + ":restore", "sessions", "restore_session", body="json",
          summary="Restore the working state to a checkpoint, a commit or the base."),
    Route("GET", S + "/manifest", "files", "get_manifest",
          summary="Every path with kind, mode, size and hash."),
    Route("GET", S + "/changes", "files", "list_changes",
          summary="Changed paths since the base, a checkpoint or a commit."),
    Route("GET", S + "/diff", "persistence", "diff", repeated_query=("paths",),
          summary="Structured and unified diff between two states (from, to)."),
    # ---- filesystem
    Route("GET", S + "/tree", "files", "list_tree", summary="Directory listing."),
    Route("GET", S + "/files/{path}", "files", "read_file", kind="raw_file",
          summary="Read file bytes. ETag is the content hash; Range is honoured."),
    Route("PUT", S + "/files/{path}", "files", "write_file", body="raw", raw_field="data",
          summary="Write file bytes. If-Match makes it conditional; parents are created."),
    Route("DELETE", S + "/files/{path}", "files", "delete_file",
          summary="Delete a file or symlink. If-Match makes it conditional."),
    Route("PATCH", S + "/files/{path}", "files", "patch_file", body="raw",
          raw_field="unified_diff",
          summary="Apply a unified diff (text/x-diff body), or write a byte range "
          "(application/octet-stream body with ?offset=N)."),
    Route("GET", S + "/stat/{path}", "files", "stat",
          summary="Kind, mode, size, times, hash and extents of a path."),
    Route("POST", S + "/fs:rename", "files", "rename", body="json", summary="Rename a path."),
    Route("POST", S + "/fs:mkdir", "files", "mkdir", body="json", summary="Make a directory."),
    Route("POST", S + "/fs:rmdir", "files", "rmdir", body="json",
          summary="Remove a directory (recursive when asked)."),
    Route("POST", S + "/fs:symlink", "files", "symlink", body="json",
          summary="Make a symlink."),
    Route("POST", S + "/fs:setattr", "files", "set_attributes", body="json",
          summary="chmod, utimes and user.* extended attributes of a path; its content "
          "is kept."),
    Route("POST", S + "/fs:copy", "files", "copy", body="json",
          summary="Copy a file or directory (O(1) for unchanged subtrees)."),
    Route("POST", S + "/fs:read", "files", "read_files", body="json",
          summary="Read many whole files of one state in one request, from one consistent "
          "view: one entry per path (data, hash, size, mode; or a per-path error; or "
          "truncated when the answer is full)."),
    Route("POST", S + "/fs:apply", "files", "apply", body="json",
          summary="Apply many changes (write, delete, mkdir, rmdir, rename, symlink, "
          "set_attributes) in "
          "order, in one transaction: one result per op, or all or nothing (atomic)."),
    Route("POST", S + "/chunks:missing", "files", "missing_chunks", body="json",
          summary="Which of these chunk hashes the daemon lacks (in the order asked); "
          "the present ones are kept from gc for its grace period."),
    Route("POST", S + "/chunks", "files", "put_chunks", body="raw", raw_field="data",
          summary="Store the (application/octet-stream) body as chunks, cut at 1 MiB; "
          "their hashes, in order. A write by chunks (fs:apply) then names them."),
    # ---- persistence and delivery
    Route("POST", S + "/checkpoints", "persistence", "create_checkpoint", body="json",
          summary="Checkpoint the working state.", success_status=201),
    Route("GET", S + "/checkpoints", "persistence", "list_checkpoints",
          summary="List checkpoints, newest first."),
    Route("GET", S + "/checkpoints/{checkpoint_id}", "persistence", "get_checkpoint",
          summary="Get a checkpoint."),
    Route("DELETE", S + "/checkpoints/{checkpoint_id}", "persistence", "delete_checkpoint",
          summary="Delete a checkpoint."),
    Route("POST", S + "/commits", "persistence", "create_commit", body="json",
          summary="Commit the working state (refused when policy needs an approval).",
          success_status=201),
    Route("GET", S + "/commits", "persistence", "list_commits",
          summary="List a session's commits, newest first."),
    Route("GET", "/v1/commits/{commit_id}", "persistence", "get_commit",
          summary="Get a commit; commits outlive their session."),
    Route("GET", S + "/export", "persistence", "export", kind="stream_bytes",
          summary="Export a state as tar, tar.gz or zip (format=, at=, path=)."),
    Route("POST", S + "/import", "persistence", "import_", body="raw", raw_field="data",
          summary="Unpack an uploaded archive into a directory of the session (path=)."),
    # ---- knowledge cache (routes exactly as in the product docs)
    Route("GET", S + "/cache/keys", "cache", "list_keys", summary="List keys by prefix."),
    Route("GET", S + "/cache/stats", "cache", "stats", summary="Cache statistics."),
    Route("POST", S + "/cache/batch-get", "cache", "batch_get", body="json",
          summary="Get many keys."),
    Route("POST", S + "/cache/batch-set", "cache", "batch_set", body="json",
          summary="Set many keys atomically."),
    Route("POST", S + "/cache/batch-delete", "cache", "batch_delete", body="json",
          summary="Delete many keys."),
    Route("POST", S + "/cache/delete-by-prefix", "cache", "delete_by_prefix", body="json",
          summary="Delete every key with a prefix."),
    Route("GET", S + "/cache/{key}/exists", "cache", "exists", summary="Does a key exist?"),
    Route("GET", S + "/cache/{key}/metadata", "cache", "get_metadata",
          summary="Version, size, content type and times of a key."),
    Route("POST", S + "/cache/{key}/compare-and-set", "cache", "compare_and_set",
          body="json", summary="Set a key only if its version matches."),
    Route("GET", S + "/cache/{key}", "cache", "get", summary="Get a value."),
    Route("PUT", S + "/cache/{key}", "cache", "put", body="json", summary="Put a value."),
    Route("DELETE", S + "/cache/{key}", "cache", "delete", summary="Delete a key."),
    # ---- bus and events
    Route("POST", S + "/bus:publish", "bus", "publish", body="json",
          summary="Publish a message on the session bus."),
    Route("GET", S + "/bus", "bus", "read", repeated_query=("topics",),
          summary="Messages after a cursor; Accept: text/event-stream follows live."),
    Route("GET", S + "/events", "events", "list_events", repeated_query=("types",),
          summary="Activity after a cursor; Accept: text/event-stream follows live "
          "(resumable with Last-Event-ID)."),
    # ---- review
    Route("POST", S + "/comments", "review", "create_comment", body="json",
          summary="Comment (threaded with parentId).", success_status=201),
    Route("GET", S + "/comments", "review", "list_comments", summary="List comments."),
    Route("POST", S + "/annotations", "review", "create_annotation", body="json",
          summary="Annotate a path and line range.", success_status=201),
    Route("GET", S + "/annotations", "review", "list_annotations",
          summary="List annotations."),
    Route("DELETE", S + "/annotations/{annotation_id}", "review", "delete_annotation",
          summary="Delete an annotation."),
    Route("POST", S + "/approvals", "review", "request_approval", body="json",
          summary="Request approval of the current state.", success_status=201),
    Route("GET", S + "/approvals", "review", "list_approvals", summary="List approvals."),
    Route("POST", S + "/approvals/{approval_id}:approve", "review", "approve", body="json",
          summary="Approve (bound to the state it was requested for)."),
    Route("POST", S + "/approvals/{approval_id}:reject", "review", "reject", body="json",
          summary="Reject with a reason."),
    # ---- templates (global, like commits)
    Route("POST", "/v1/templates", "templates", "create_template", body="json",
          summary="Name a state (a session's, a checkpoint's or a commit's tree) as a "
          "template; replace=true overwrites an existing name.", success_status=201),
    Route("GET", "/v1/templates", "templates", "list_templates", map_query=("labels",),
          summary="List templates by name, filtered by label (label=k=v) and prefix."),
    Route("GET", "/v1/templates/{name}", "templates", "get_template",
          summary="Get a template."),
    Route("DELETE", "/v1/templates/{name}", "templates", "delete_template",
          summary="Delete a template (sessions made from it are untouched)."),
    # ---- identity (tokens: admins only)
    Route("POST", "/v1/tokens", "identity", "create_token", body="json",
          summary="Create an API token for a principal with scopes; the answer holds "
          "the bearer string, shown only this once.", success_status=201),
    Route("GET", "/v1/tokens", "identity", "list_tokens",
          summary="List tokens (never their secrets), by principal; include_inactive=true "
          "adds revoked and expired ones."),
    Route("POST", "/v1/tokens/{token_id}:revoke", "identity", "revoke_token",
          summary="Revoke a token: refused from this moment on."),
    Route("GET", "/v1/whoami", "identity", "who_am_i",
          summary="The caller as the daemon sees it: principal, how authenticated, scopes."),
    # ---- observability
    Route("GET", "/v1/health", "observability", "health", summary="Daemon health."),
    Route("GET", S + "/health", "observability", "get_session_health",
          summary="Session health."),
    Route("GET", S + "/usage", "observability", "get_usage",
          summary="Files, bytes, dedup, cache and bus usage."),
    Route("GET", S + "/analytics", "observability", "get_analytics",
          summary="Operation counts over time windows."),
)

# RPCs reachable over gRPC only, with the reason.
GRPC_ONLY: dict[tuple[str, str], str] = {
    ("bus", "follow"): "HTTP follows with GET .../bus and Accept: text/event-stream",
    ("events", "follow"): "HTTP follows with GET .../events and Accept: text/event-stream",
}
