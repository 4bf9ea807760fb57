"""API tokens: create, list, revoke, and turn a bearer string into a principal.

The bearer string is `<token id>.<secret>`; only the SHA-256 of the whole
string is stored. A plain hash is enough (unlike passwords): the secret is 256
random bits, so there is nothing to guess from the hash. Every request looks
its token up again (one primary-key read), so a revocation or expiry holds
from the moment it is committed, in this daemon and in any other process that
opens the same data directory (`aetherd token revoke` while it runs).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass

from aether.errors import InvalidArgument, NotFound
from aetherd.auth.principal import Principal, parse_scopes
from aetherd.ids import new_id
from aetherd.services.state import Store

PRINCIPAL_RE = re.compile(r"^[A-Za-z0-9._@-]{1,128}$")
_ID_RE = re.compile(r"^tok_[0-9a-hjkmnp-tv-z]{26}$")
MAX_PAGE = 1000
MAX_SCOPES = 1000
MAX_DESCRIPTION = 1024
# Expiry is stored in nanoseconds, and SQLite integers stop at 2**63 - 1 (year
# 2262); ten years is also the longest TTL the knowledge cache takes.
MAX_TTL_SECONDS = 10 * 365 * 24 * 3600
_COLS = "id, principal, scopes, description, created_ns, expires_ns, revoked_ns"


@dataclass
class TokenRecord:
    id: str
    principal: str
    scopes: list[str]
    description: str
    created_ns: int
    expires_ns: int
    revoked_ns: int

    @classmethod
    def from_row(cls, row: tuple) -> TokenRecord:
        tid, principal, scopes, description, created, expires, revoked = row
        return cls(tid, principal, json.loads(scopes), description, created, expires, revoked)

    def active(self, now_ns: int) -> bool:
        return not self.revoked_ns and (not self.expires_ns or self.expires_ns > now_ns)


def _digest(bearer: str) -> str:
    return hashlib.sha256(bearer.encode()).hexdigest()


class Tokens:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.db = store.db

    def create(self, principal: str, scopes: list[str], description: str = "",
               ttl_seconds: int = 0) -> tuple[TokenRecord, str]:
        """A new token and its bearer string (returned only here)."""
        if not PRINCIPAL_RE.match(principal or ""):
            raise InvalidArgument(
                f"bad principal {principal!r}: want 1-128 of A-Z a-z 0-9 . _ @ -")
        if len(scopes) > MAX_SCOPES:
            raise InvalidArgument(f"at most {MAX_SCOPES} scopes")
        if len(description.encode()) > MAX_DESCRIPTION:
            raise InvalidArgument(f"description over {MAX_DESCRIPTION} bytes")
        if ttl_seconds > MAX_TTL_SECONDS:
            raise InvalidArgument(f"ttl_seconds is {ttl_seconds}; the limit is {MAX_TTL_SECONDS} "
                                  "(0 = no expiry)", parameter="ttl_seconds")
        parse_scopes(scopes)  # refuse a malformed scope now, not at every use
        scopes = sorted(set(scopes))
        now = time.time_ns()
        expires = now + ttl_seconds * 1_000_000_000 if ttl_seconds else 0
        token_id = new_id("tok")
        bearer = f"{token_id}.{secrets.token_urlsafe(32)}"
        with self.db.write() as conn:
            conn.execute(
                f"INSERT INTO tokens({_COLS}, secret_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (token_id, principal, json.dumps(scopes), description, now, expires, 0,
                 _digest(bearer)))
        return TokenRecord(token_id, principal, scopes, description, now, expires, 0), bearer

    def list(self, principal: str, include_inactive: bool, page_size: int,
             page_token: str) -> tuple[list[TokenRecord], str]:
        limit = min(page_size or MAX_PAGE, MAX_PAGE)
        now = time.time_ns()
        rows = self.db.query(
            f"SELECT {_COLS} FROM tokens WHERE (?='' OR principal=?) AND id>? "
            "AND (? OR (revoked_ns=0 AND (expires_ns=0 OR expires_ns>?))) "
            "ORDER BY id LIMIT ?",
            (principal, principal, page_token, include_inactive, now, limit + 1))
        records = [TokenRecord.from_row(r) for r in rows]
        more = len(records) > limit
        records = records[:limit]
        return records, records[-1].id if more else ""

    def get(self, token_id: str) -> TokenRecord:
        if not _ID_RE.match(token_id or ""):
            raise NotFound(f"no token {token_id!r}")
        row = self.db.one(f"SELECT {_COLS} FROM tokens WHERE id=?", (token_id,))
        if row is None:
            raise NotFound(f"no token {token_id!r}")
        return TokenRecord.from_row(row)

    def revoke(self, token_id: str) -> TokenRecord:
        """Revoke (idempotent: revoking twice keeps the first time)."""
        self.get(token_id)
        with self.db.write() as conn:
            conn.execute("UPDATE tokens SET revoked_ns=? WHERE id=? AND revoked_ns=0",
                         (time.time_ns(), token_id))
        return self.get(token_id)

    def principal_for(self, bearer: str) -> Principal | None:
        """The principal an active token speaks for; None for anything else."""
        token_id, sep, _ = bearer.partition(".")
        if not sep or not _ID_RE.match(token_id):
            return None
        row = self.db.one(f"SELECT {_COLS}, secret_hash FROM tokens WHERE id=?", (token_id,))
        if row is None:
            return None
        rec = TokenRecord.from_row(row[:-1])
        # Compare digests in constant time; the id alone proves nothing.
        if not hmac.compare_digest(_digest(bearer), row[-1]) or not rec.active(time.time_ns()):
            return None
        admin, can_create, roles = parse_scopes(rec.scopes)
        return Principal(name=rec.principal, authenticated_by="token", token_id=rec.id,
                         admin=admin, can_create=can_create, roles=roles,
                         scopes=tuple(rec.scopes))
