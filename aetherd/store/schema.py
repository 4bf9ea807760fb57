"""The metadata schema (meta.db). One place, a comment per table and column.

Times are integer nanoseconds since the epoch (UTC). Hashes are lowercase hex
BLAKE3 digests. JSON columns hold small documents (labels, policy) that are
read and written whole.
"""

META_SCHEMA = """
-- Immutable directory objects (Merkle trees). Never updated, only inserted
-- (idempotently) and removed by gc when nothing references them.
CREATE TABLE IF NOT EXISTS trees (
    hash        TEXT PRIMARY KEY,   -- BLAKE3 of `data`
    data        BLOB NOT NULL,      -- canonical encoding, see objects.encode_tree
    files       INTEGER NOT NULL,   -- files+symlinks in the whole subtree
    bytes       INTEGER NOT NULL,   -- bytes of file content in the whole subtree
    created_ns  INTEGER NOT NULL    -- gc only frees objects older than its mark
) WITHOUT ROWID;

-- File content objects: the extent list that rebuilds a file from chunks in
-- the blob store. Keyed by the BLAKE3 of the whole content (the ETag).
CREATE TABLE IF NOT EXISTS files (
    hash        TEXT PRIMARY KEY,
    size        INTEGER NOT NULL,
    extents     BLOB NOT NULL,      -- 32-byte chunk digests back to back, CHUNK_SIZE apart
    created_ns  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS sessions (
    id          TEXT PRIMARY KEY,   -- ses_<sortable id>
    name        TEXT NOT NULL DEFAULT '',
    state       INTEGER NOT NULL,   -- pb.SessionState value
    labels      TEXT NOT NULL DEFAULT '{}',
    tags        TEXT NOT NULL DEFAULT '[]',
    metadata    TEXT NOT NULL DEFAULT '{}',
    owner       TEXT NOT NULL DEFAULT '',
    policy      TEXT NOT NULL DEFAULT '{}',
    source_kind TEXT NOT NULL,
    source_ref  TEXT NOT NULL DEFAULT '',
    parent_id   TEXT NOT NULL DEFAULT '',
    base_root   TEXT NOT NULL,      -- the tree the session was created from
    fold_root   TEXT NOT NULL,      -- the tree the overlay applies to
    created_ns  INTEGER NOT NULL,
    updated_ns  INTEGER NOT NULL,
    archived_ns INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- The working state of a session is fold_root plus these rows: what changed
-- since the last fold. A row shadows the path it names:
--   kind 0 whiteout (deleted), 1 file, 2 directory, 3 symlink.
-- A directory row with a `hash` replaces the directory's base content by that
-- tree (a fresh, renamed or copied directory); without one it only carries
-- attributes and the base content below it stays visible.
CREATE TABLE IF NOT EXISTS overlay (
    session_id  TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    path        TEXT NOT NULL,      -- normalised, no leading slash
    parent      TEXT NOT NULL,      -- path of the parent directory ('' = root)
    kind        INTEGER NOT NULL,
    mode        INTEGER NOT NULL DEFAULT 0,
    size        INTEGER NOT NULL DEFAULT 0,
    hash        TEXT NOT NULL DEFAULT '',   -- file content hash or directory tree hash
    target      TEXT NOT NULL DEFAULT '',   -- symlink target
    mtime_ns    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (session_id, path)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS overlay_by_parent ON overlay(session_id, parent);

CREATE TABLE IF NOT EXISTS checkpoints (
    id          TEXT PRIMARY KEY,   -- ckp_<sortable id>
    session_id  TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    root        TEXT NOT NULL,
    message     TEXT NOT NULL DEFAULT '',
    labels      TEXT NOT NULL DEFAULT '{}',
    created_ns  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS checkpoints_by_session ON checkpoints(session_id, id);

-- Commits are global and outlive their session (no foreign key on purpose).
CREATE TABLE IF NOT EXISTS commits (
    id          TEXT PRIMARY KEY,   -- cmt_<sortable id>
    session_id  TEXT NOT NULL,
    root        TEXT NOT NULL,
    parent_id   TEXT NOT NULL DEFAULT '',   -- previous commit of the same session line
    message     TEXT NOT NULL DEFAULT '',
    author      TEXT NOT NULL DEFAULT '',
    approvals   TEXT NOT NULL DEFAULT '[]',
    created_ns  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS commits_by_session ON commits(session_id, id);

-- Templates: named, immutable pointers to a tree. Global like commits: they
-- outlive the session they were made from (no foreign key on purpose), and
-- `root` is a gc root. Added after the first release: IF NOT EXISTS is the
-- migration (an existing meta.db gains the table when the daemon opens it).
CREATE TABLE IF NOT EXISTS templates (
    name        TEXT PRIMARY KEY,   -- [a-z0-9][a-z0-9._-]{0,62}
    root        TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    labels      TEXT NOT NULL DEFAULT '{}',
    source_kind TEXT NOT NULL,      -- session, checkpoint or commit
    source_ref  TEXT NOT NULL DEFAULT '',   -- the ses_/ckp_/cmt_ id it was made from
    source_session_id TEXT NOT NULL DEFAULT '',
    source_at   TEXT NOT NULL DEFAULT '',   -- the `at` selector, for a session source
    created_ns  INTEGER NOT NULL
) WITHOUT ROWID;

-- The activity stream. Rows are written in the same transaction as the change
-- they describe, so a reader never sees a change without its event or an
-- event for a change that rolled back.
CREATE TABLE IF NOT EXISTS events (
    session_id  TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    cursor      INTEGER NOT NULL,   -- per session, strictly increasing from 1
    type        TEXT NOT NULL,      -- e.g. file.written, checkpoint.created
    path        TEXT NOT NULL DEFAULT '',
    actor       TEXT NOT NULL DEFAULT '',
    attributes  TEXT NOT NULL DEFAULT '{}',
    time_ns     INTEGER NOT NULL,
    PRIMARY KEY (session_id, cursor)
) WITHOUT ROWID;

-- The answers of recent fs:apply batches sent with a batch_id
-- (services/batch_records.py), written in the batch's own transaction: a
-- batch is recorded exactly when it was applied, so a client that lost the
-- answer sends it again and gets this instead of a second application. The
-- newest few hundred per session are kept.
CREATE TABLE IF NOT EXISTS applied_batches (
    session_id  TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    batch_id    TEXT NOT NULL,      -- chosen by the client
    request_hash TEXT NOT NULL,     -- BLAKE3 of the request's ops: an id is not reusable
    response    BLOB NOT NULL,      -- the ApplyResponse as sent, zstd-compressed
    created_ns  INTEGER NOT NULL,
    PRIMARY KEY (session_id, batch_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS applied_batches_by_time ON applied_batches(session_id, created_ns);

-- The message bus: ordered per session, bounded retention.
CREATE TABLE IF NOT EXISTS bus (
    session_id  TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    cursor      INTEGER NOT NULL,   -- per session, strictly increasing from 1
    topic       TEXT NOT NULL,
    payload     BLOB NOT NULL,
    content_type TEXT NOT NULL DEFAULT '',
    sender      TEXT NOT NULL DEFAULT '',
    time_ns     INTEGER NOT NULL,
    PRIMARY KEY (session_id, cursor)
) WITHOUT ROWID;

-- The knowledge cache: bytes by key, versioned for compare-and-set. A rowid
-- table with `value` last: in a WITHOUT ROWID table whole rows (16 MiB values
-- included) live in the key b-tree, and every lookup walking past a big row
-- read it (measured: 7.7 s vs 25 ms for a 1000-key batch-delete).
CREATE TABLE IF NOT EXISTS cache (
    session_id  TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    content_type TEXT NOT NULL DEFAULT '',
    version     INTEGER NOT NULL,   -- the session's cache revision at the key's last write
    created_ns  INTEGER NOT NULL,
    updated_ns  INTEGER NOT NULL,
    expires_ns  INTEGER NOT NULL DEFAULT 0,  -- 0 = never
    value       BLOB NOT NULL,
    PRIMARY KEY (session_id, key)
);

-- Per-session counters that are not derivable from rows: cache_hits,
-- cache_misses, cache_revision (the last version handed out), cache_sweep_ns
-- (when expired cache rows were last swept).
CREATE TABLE IF NOT EXISTS counters (
    session_id  TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    value       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (session_id, name)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS comments (
    id          TEXT PRIMARY KEY,   -- cmn_<sortable id>
    session_id  TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    parent_id   TEXT NOT NULL DEFAULT '',
    author      TEXT NOT NULL DEFAULT '',
    body        TEXT NOT NULL,
    path        TEXT NOT NULL DEFAULT '',
    created_ns  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS comments_by_session ON comments(session_id, id);

CREATE TABLE IF NOT EXISTS annotations (
    id          TEXT PRIMARY KEY,   -- ann_<sortable id>
    session_id  TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    path        TEXT NOT NULL,
    start_line  INTEGER NOT NULL,
    end_line    INTEGER NOT NULL,
    author      TEXT NOT NULL DEFAULT '',
    body        TEXT NOT NULL,
    severity    TEXT NOT NULL DEFAULT '',
    file_hash   TEXT NOT NULL DEFAULT '',  -- content the lines refer to
    created_ns  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS annotations_by_session ON annotations(session_id, path, id);

-- An approval is bound to the exact state (root hash) it was requested for.
CREATE TABLE IF NOT EXISTS approvals (
    id          TEXT PRIMARY KEY,   -- apr_<sortable id>
    session_id  TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    root_hash   TEXT NOT NULL,
    requester   TEXT NOT NULL DEFAULT '',
    reviewer    TEXT NOT NULL DEFAULT '',
    state       INTEGER NOT NULL,   -- pb.ApprovalState (PENDING/APPROVED/REJECTED)
    reason      TEXT NOT NULL DEFAULT '',
    title       TEXT NOT NULL DEFAULT '',
    created_ns  INTEGER NOT NULL,
    decided_ns  INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS approvals_by_session ON approvals(session_id, id);

-- API tokens (aetherd/services/tokens.py). Only a hash of the secret is kept;
-- the bearer string is shown once, at creation. Checked on every request, so
-- a revocation holds from its commit on.
CREATE TABLE IF NOT EXISTS tokens (
    id          TEXT PRIMARY KEY,   -- tok_<sortable id>, the bearer string's prefix
    principal   TEXT NOT NULL,
    scopes      TEXT NOT NULL DEFAULT '[]',  -- JSON list, see identity.proto
    description TEXT NOT NULL DEFAULT '',
    secret_hash TEXT NOT NULL,      -- SHA-256 hex of the whole bearer string
    created_ns  INTEGER NOT NULL,
    expires_ns  INTEGER NOT NULL DEFAULT 0,  -- 0: never
    revoked_ns  INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tokens_by_principal ON tokens(principal, id);

-- Audit records of deleted sessions (aetherd/services/retention.py), kept
-- for the configured retention. Not a gc root: the content itself is freed.
CREATE TABLE IF NOT EXISTS tombstones (
    session_id  TEXT PRIMARY KEY,
    name        TEXT NOT NULL DEFAULT '',
    owner       TEXT NOT NULL DEFAULT '',
    labels      TEXT NOT NULL DEFAULT '{}',
    deleted_by  TEXT NOT NULL DEFAULT '',
    reason      TEXT NOT NULL,      -- deleted | ttl_archived
    created_ns  INTEGER NOT NULL,   -- the session's creation
    deleted_ns  INTEGER NOT NULL,
    final_root  TEXT NOT NULL,
    files       INTEGER NOT NULL,
    bytes       INTEGER NOT NULL,
    events      TEXT NOT NULL DEFAULT '{}',  -- JSON {type: count}
    last_cursor INTEGER NOT NULL DEFAULT 0,
    checkpoints INTEGER NOT NULL DEFAULT 0,
    commits     INTEGER NOT NULL DEFAULT 0,
    expires_ns  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tombstones_by_time ON tombstones(deleted_ns);

-- Every reference must name a stored object. A writer stores objects first
-- and commits the row that names them later, in another transaction, and
-- `aetherd gc` may free them in between (it frees what nothing references
-- yet, once older than its grace period; at --grace-seconds 0 that is the
-- normal case). These triggers make such a commit fail and roll back instead
-- of leaving a dangling reference: the daemon answers `unavailable`, and a
-- retry stores the objects again. gc sweeps under the write lock, so the
-- check cannot go stale before the commit. Cost: a primary-key lookup or two
-- per row. The messages are literals so that older sqlite3 shells (backups)
-- still parse the schema. The empty tree and the empty file need no row.
CREATE TRIGGER IF NOT EXISTS overlay_names_stored_objects BEFORE INSERT ON overlay
WHEN NEW.hash != '' AND NEW.hash != '{empty_file}'
 AND NOT EXISTS (SELECT 1 FROM files WHERE hash = NEW.hash)
 AND NOT EXISTS (SELECT 1 FROM trees WHERE hash = NEW.hash)
BEGIN SELECT RAISE(ABORT, '{dangling}'); END;
CREATE TRIGGER IF NOT EXISTS sessions_name_stored_trees BEFORE INSERT ON sessions
WHEN NOT EXISTS (SELECT 1 FROM trees WHERE hash = NEW.base_root)
  OR NOT EXISTS (SELECT 1 FROM trees WHERE hash = NEW.fold_root)
BEGIN SELECT RAISE(ABORT, '{dangling}'); END;
CREATE TRIGGER IF NOT EXISTS sessions_move_to_stored_trees
BEFORE UPDATE OF base_root, fold_root ON sessions
WHEN (NEW.base_root != OLD.base_root
      AND NOT EXISTS (SELECT 1 FROM trees WHERE hash = NEW.base_root))
  OR (NEW.fold_root != OLD.fold_root
      AND NOT EXISTS (SELECT 1 FROM trees WHERE hash = NEW.fold_root))
BEGIN SELECT RAISE(ABORT, '{dangling}'); END;
CREATE TRIGGER IF NOT EXISTS checkpoints_name_stored_trees BEFORE INSERT ON checkpoints
WHEN NOT EXISTS (SELECT 1 FROM trees WHERE hash = NEW.root)
BEGIN SELECT RAISE(ABORT, '{dangling}'); END;
CREATE TRIGGER IF NOT EXISTS commits_name_stored_trees BEFORE INSERT ON commits
WHEN NOT EXISTS (SELECT 1 FROM trees WHERE hash = NEW.root)
BEGIN SELECT RAISE(ABORT, '{dangling}'); END;
CREATE TRIGGER IF NOT EXISTS templates_name_stored_trees BEFORE INSERT ON templates
WHEN NOT EXISTS (SELECT 1 FROM trees WHERE hash = NEW.root)
BEGIN SELECT RAISE(ABORT, '{dangling}'); END;
"""

# The reference triggers' error (store/db.py turns it into `unavailable`).
DANGLING_REFERENCE = "aether: dangling reference"
# BLAKE3 of b"" (objects.EMPTY_CONTENT_HASH; a literal to keep this module import-free).
EMPTY_FILE_HASH = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
META_SCHEMA = META_SCHEMA.replace("{dangling}", DANGLING_REFERENCE).replace(
    "{empty_file}", EMPTY_FILE_HASH)

# Columns added after a table first shipped: (table, column, definition).
# CREATE TABLE IF NOT EXISTS cannot add them to an existing meta.db; the store
# adds each one that is missing when it opens (store/objects.py open_store).
META_COLUMNS = (
    # The authenticated principal that made the commit (`author` is free text).
    ("commits", "committed_by", "TEXT NOT NULL DEFAULT ''"),
    # The path's extended attributes as JSON [[name, base64 value], ...], '' for none
    # (objects.xattrs_to_json).
    ("overlay", "xattrs", "TEXT NOT NULL DEFAULT ''"),
    # The Aether-Origin of the request that made the change ('' for none).
    ("events", "origin", "TEXT NOT NULL DEFAULT ''"),
)

BLOB_SCHEMA = """
-- Content-addressed chunks, shared by every session (dedup).
CREATE TABLE IF NOT EXISTS chunks (
    hash        TEXT PRIMARY KEY,   -- BLAKE3 of the uncompressed bytes
    size        INTEGER NOT NULL,   -- uncompressed length
    codec       INTEGER NOT NULL,   -- 0 raw, 1 zstd
    data        BLOB NOT NULL,
    created_ns  INTEGER NOT NULL
);

-- When chunks were last asked for or stored again (put_many of a present
-- chunk, chunks:missing, a write by chunks): gc's grace period runs from the
-- newer of this and `chunks.created_ns`. Apart from `chunks` because updating
-- a chunk row rewrites its whole record, 1 MiB of pages per refreshed chunk.
CREATE TABLE IF NOT EXISTS chunk_ages (
    hash        TEXT PRIMARY KEY,
    touched_ns  INTEGER NOT NULL
) WITHOUT ROWID;

-- Chunks gc has found unreferenced and is deleting, in short transactions
-- (maintenance.gc). Writers treat them as absent: storing one again takes it
-- off this list, and gc deletes only what is still on it.
CREATE TABLE IF NOT EXISTS freeing (
    hash        TEXT PRIMARY KEY
) WITHOUT ROWID;
"""
