"""From a connection and its credentials to a principal, for both transports.

- A unix-socket caller is the socket's owner (the socket is mode 0600 in the
  data directory): an operator with every right, named after the OS user.
- Over TCP every call carries `Authorization: Bearer <token>`: the daemon's
  configured token (an operator named "admin"), or an API token
  (services/tokens.py) with its principal and scopes, within its rate limit
  (ratelimit.py). Anything else is `unauthenticated`. Tokens are compared in
  constant time and never logged.
"""

from __future__ import annotations

import hmac
import os
import pwd

from aether.errors import Unauthenticated
from aetherd.auth.principal import Principal, operator
from aetherd.auth.ratelimit import RateLimiter
from aetherd.services.tokens import Tokens

ADMIN_NAME = "admin"


def local_user() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # a uid without a passwd entry (containers)
        return f"uid-{os.getuid()}"


class Authenticator:
    def __init__(self, tokens: Tokens, admin_token: str,
                 limiter: RateLimiter | None = None) -> None:
        self.tokens = tokens
        self.limiter = limiter or RateLimiter(0, 1)
        self._admin_token = admin_token.encode()
        self._socket_owner = operator(local_user(), "unix")
        self._admin = operator(ADMIN_NAME, "admin_token")

    def socket_owner(self) -> Principal:
        return self._socket_owner

    def bearer(self, authorization: str) -> Principal:
        """The principal of an `Authorization` header value; unauthenticated otherwise.

        One primary-key read of meta.db for an API token, done on the calling
        thread (the event loop): cheaper than a hop to the store's thread pool.
        """
        scheme, _, given = authorization.strip().partition(" ")
        given = given.strip()
        if scheme.lower() != "bearer" or not given:
            raise Unauthenticated("a bearer token is required")
        # Bytes: compare_digest refuses non-ASCII str, and a client can send any.
        if self._admin_token and hmac.compare_digest(given.encode(), self._admin_token):
            return self._admin
        principal = self.tokens.principal_for(given)
        if principal is None:
            raise Unauthenticated("invalid, expired or revoked bearer token")
        self.limiter.take(principal.token_id)
        return principal
