"""Every RPC of the API has a command: a table from RPC to the `aether` command
that calls it, checked against the daemon's RPC list and the command tree. A
new RPC without a command (or a renamed command) fails here."""

from __future__ import annotations

import pytest

from aether.cli.main import load_command
from aetherd.http.rpcs import all_rpcs

# (service, rpc) -> the command that calls it, as typed after `aether`.
RPC_COMMANDS: dict[tuple[str, str], str] = {
    ("sessions", "create_session"): "session create",
    ("sessions", "get_session"): "session show",
    ("sessions", "list_sessions"): "session ls",
    ("sessions", "update_session"): "session rename",  # also label, tag, policy
    ("sessions", "delete_session"): "session rm",
    ("sessions", "fork_session"): "session fork",
    ("sessions", "archive_session"): "session archive",
    ("sessions", "restore_session"): "restore",
    ("sessions", "list_tombstones"): "session deleted",
    ("sessions", "get_tombstone"): "session deleted",
    ("files", "list_tree"): "fs ls",  # also fs tree
    ("files", "read_file"): "fs cat",
    ("files", "read_files"): "fs cat",  # with several paths
    ("files", "write_file"): "fs put",
    ("files", "delete_file"): "fs rm",
    ("files", "stat"): "fs stat",
    ("files", "mkdir"): "fs mkdir",
    ("files", "rmdir"): "fs rm",
    ("files", "rename"): "fs mv",
    ("files", "symlink"): "fs ln",
    ("files", "copy"): "fs cp",
    ("files", "set_attributes"): "fs setattr",
    ("files", "patch_file"): "fs patch",
    ("files", "get_manifest"): "fs manifest",
    ("files", "list_changes"): "fs changes",
    ("files", "apply"): "fs apply",
    # `fs put --chunked`: asks which chunks are missing, uploads those, writes by chunks.
    ("files", "missing_chunks"): "fs put",
    ("files", "put_chunks"): "fs put",
    ("persistence", "create_checkpoint"): "checkpoint create",
    ("persistence", "list_checkpoints"): "checkpoint ls",
    ("persistence", "get_checkpoint"): "checkpoint show",
    ("persistence", "delete_checkpoint"): "checkpoint rm",
    ("persistence", "create_commit"): "commit create",
    ("persistence", "list_commits"): "commit ls",
    ("persistence", "get_commit"): "commit show",
    ("persistence", "diff"): "diff",
    ("persistence", "export"): "export",
    ("persistence", "import_"): "import",
    ("cache", "get"): "cache get",
    ("cache", "put"): "cache set",
    ("cache", "delete"): "cache rm",
    ("cache", "exists"): "cache exists",
    ("cache", "get_metadata"): "cache stat",
    ("cache", "compare_and_set"): "cache cas",
    ("cache", "list_keys"): "cache ls",
    ("cache", "stats"): "cache stats",
    ("cache", "batch_get"): "cache batch",
    ("cache", "batch_set"): "cache batch",
    ("cache", "batch_delete"): "cache batch",
    ("cache", "delete_by_prefix"): "cache clear",
    ("bus", "publish"): "bus publish",
    ("bus", "read"): "bus read",
    ("bus", "follow"): "bus tail",
    ("events", "list_events"): "events ls",
    ("identity", "create_token"): "token create",
    ("identity", "list_tokens"): "token ls",
    ("identity", "revoke_token"): "token revoke",
    ("identity", "who_am_i"): "whoami",
    ("events", "follow"): "events tail",
    ("review", "create_comment"): "review comment",
    ("review", "list_comments"): "review comments",
    ("review", "create_annotation"): "review annotate",
    ("review", "list_annotations"): "review annotations",
    ("review", "delete_annotation"): "review rm-annotation",
    ("review", "request_approval"): "review request",
    ("review", "list_approvals"): "review approvals",
    ("review", "approve"): "review approve",
    ("review", "reject"): "review reject",
    ("observability", "health"): "health",
    ("observability", "get_session_health"): "health",
    ("observability", "get_usage"): "usage",
    ("observability", "get_analytics"): "analytics",
    ("templates", "create_template"): "template create",
    ("templates", "list_templates"): "template ls",
    ("templates", "get_template"): "template show",
    ("templates", "delete_template"): "template rm",
}


def test_every_rpc_has_a_command():
    missing = sorted(set(all_rpcs()) - set(RPC_COMMANDS))
    assert not missing, f"RPCs without an `aether` command (add one, then a row here): {missing}"
    stale = sorted(set(RPC_COMMANDS) - set(all_rpcs()))
    assert not stale, f"rows for RPCs that no longer exist: {stale}"


@pytest.mark.parametrize("words", sorted(set(RPC_COMMANDS.values())))
def test_each_mapped_command_exists(words: str):
    top, *rest = words.split()
    cmd = load_command(top)
    for word in rest:
        assert hasattr(cmd, "get_command"), f"`aether {top}` is not a group"
        sub = cmd.get_command(cmd.context_class(cmd, info_name=top), word)
        assert sub is not None, f"`aether {words}` does not exist"
        cmd = sub
