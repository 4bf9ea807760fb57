"""Proto adapter for the knowledge cache (semantics in aetherd.services.cache)."""

from __future__ import annotations

from aether import pb
from aetherd.api.convert import ts
from aetherd.api.core import Runner
from aetherd.services.cache import Cache, EntryMeta
from aetherd.services.state import Store


def _meta(m: EntryMeta | None) -> pb.CacheEntryMetadata | None:
    if m is None:
        return None
    return pb.CacheEntryMetadata(
        key=m.key, version=m.version, size=m.size, content_type=m.content_type,
        create_time=ts(m.created_ns), update_time=ts(m.updated_ns), expire_time=ts(m.expires_ns),
    )


def _entry(found: tuple[EntryMeta, bytes]) -> pb.CacheEntry:
    return pb.CacheEntry(metadata=_meta(found[0]), value=found[1])


class CacheApi(pb.CacheServiceBase):
    def __init__(self, store: Store, run: Runner) -> None:
        self.store, self.run = store, run
        self.c = Cache(store)

    async def get(self, message: pb.CacheKeyRequest) -> pb.CacheEntry:
        return _entry(await self.run(self.c.get, message.session_id, message.key))

    async def put(self, message: pb.CachePutRequest) -> pb.CacheEntryMetadata:
        m = await self.run(self.c.put, message.session_id, message.key, message.value,
                           message.content_type, message.ttl_seconds)
        return _meta(m)

    async def delete(self, message: pb.CacheKeyRequest) -> pb.CacheDeleteResponse:
        n = await self.run(self.c.delete, message.session_id, message.key)
        return pb.CacheDeleteResponse(deleted=n)

    async def exists(self, message: pb.CacheKeyRequest) -> pb.CacheExistsResponse:
        found = await self.run(self.c.exists, message.session_id, message.key)
        return pb.CacheExistsResponse(exists=found)

    async def get_metadata(self, message: pb.CacheKeyRequest) -> pb.CacheEntryMetadata:
        return _meta(await self.run(self.c.metadata, message.session_id, message.key))

    async def compare_and_set(self, message: pb.CompareAndSetRequest) -> pb.CompareAndSetResponse:
        swapped, m = await self.run(
            self.c.compare_and_set, message.session_id, message.key, message.expected_version,
            message.expect_absent, message.value, message.content_type, message.ttl_seconds,
        )
        return pb.CompareAndSetResponse(swapped=swapped, metadata=_meta(m))

    async def list_keys(self, message: pb.CacheListKeysRequest) -> pb.CacheListKeysResponse:
        metas, token = await self.run(self.c.list_keys, message.session_id, message.prefix,
                                      message.page_size, message.page_token)
        return pb.CacheListKeysResponse(keys=[_meta(m) for m in metas], next_page_token=token)

    async def stats(self, message: pb.CacheStatsRequest) -> pb.CacheStats:
        keys, size, hits, misses = await self.run(self.c.stats, message.session_id)
        return pb.CacheStats(keys=keys, bytes=size, hits=hits, misses=misses)

    async def batch_get(self, message: pb.CacheBatchGetRequest) -> pb.CacheBatchGetResponse:
        found, missing = await self.run(self.c.batch_get, message.session_id, list(message.keys))
        return pb.CacheBatchGetResponse(entries=[_entry(f) for f in found], missing=missing)

    async def batch_set(self, message: pb.CacheBatchSetRequest) -> pb.CacheBatchSetResponse:
        items = [(i.key, i.value, i.content_type, i.ttl_seconds) for i in message.items]
        metas = await self.run(self.c.batch_set, message.session_id, items)
        return pb.CacheBatchSetResponse(entries=[_meta(m) for m in metas])

    async def batch_delete(self, message: pb.CacheBatchDeleteRequest) -> pb.CacheDeleteResponse:
        n = await self.run(self.c.batch_delete, message.session_id, list(message.keys))
        return pb.CacheDeleteResponse(deleted=n)

    async def delete_by_prefix(
        self, message: pb.CacheDeleteByPrefixRequest,
    ) -> pb.CacheDeleteResponse:
        n = await self.run(self.c.delete_by_prefix, message.session_id, message.prefix)
        return pb.CacheDeleteResponse(deleted=n)
