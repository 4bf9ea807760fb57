"""Proto adapter for identities: API tokens and "who am I"."""

from __future__ import annotations

from aether import pb
from aetherd.api.convert import ts
from aetherd.api.core import Runner
from aetherd.auth.principal import current
from aetherd.services.tokens import TokenRecord, Tokens


class IdentityApi(pb.IdentityServiceBase):
    def __init__(self, tokens: Tokens, run: Runner) -> None:
        self.t, self.run = tokens, run

    async def create_token(self, message: pb.CreateTokenRequest) -> pb.CreatedToken:
        rec, secret = await self.run(self.t.create, message.principal, list(message.scopes),
                                     message.description, message.ttl_seconds)
        return pb.CreatedToken(token=token(rec), secret=secret)

    async def list_tokens(self, message: pb.ListTokensRequest) -> pb.ListTokensResponse:
        recs, next_token = await self.run(self.t.list, message.principal,
                                          message.include_inactive, message.page_size,
                                          message.page_token)
        return pb.ListTokensResponse(tokens=[token(r) for r in recs], next_page_token=next_token)

    async def revoke_token(self, message: pb.RevokeTokenRequest) -> pb.Token:
        return token(await self.run(self.t.revoke, message.token_id))

    async def who_am_i(self, message: pb.WhoAmIRequest) -> pb.Principal:
        who = current()
        assert who is not None  # the guard lets no unauthenticated call through
        return pb.Principal(name=who.name, authenticated_by=who.authenticated_by,
                            token_id=who.token_id, scopes=list(who.scopes))


def token(rec: TokenRecord) -> pb.Token:
    return pb.Token(
        id=rec.id, principal=rec.principal, scopes=rec.scopes, description=rec.description,
        create_time=ts(rec.created_ns), expire_time=ts(rec.expires_ns),
        revoke_time=ts(rec.revoked_ns),
    )
