"""The caches: the result cache (the identity of a dub's inputs → its earlier result), the asset cache
(a Slack file → what a provider's upload of it returned, with the lock that uploads it once), and small
shared values with a lifetime (a provider's balance, a file's digest), read by one process for all.

Every key is named in bot.jobs.keys.
"""

from __future__ import annotations

from redis.asyncio import Redis

from bot.jobs.keys import asset_key, lock_key, result_key, value_key
from bot.jobs.scripts import text

# Providers' asset retention is unconfirmed (JoggAI calls assets permanent): a day covers one conversation.
ASSET_KEPT_SECONDS = 24 * 3600

# KEYS: lock. ARGV: owner. Deletes the lock only if we still hold it.
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


# An entry is named by the first 128 bits of its inputs' identity (a SHA-256 in hex): ample to tell inputs
# apart, and half the key's length in an entry kept CACHE_DAYS. Entries written before under the whole
# identity are still read until they expire.
RESULT_NAME_LENGTH = 32


class ResultCache:
    """The identity of a dub's inputs → the earlier result (JSON), for CACHE_DAYS."""

    def __init__(self, *, redis: Redis) -> None:
        self.redis = redis

    async def cached_result(self, key: str) -> str | None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(result_key(key[:RESULT_NAME_LENGTH]))
            pipe.get(result_key(key))
            found, before = await pipe.execute()
        value = found or before
        return text(value) if value else None

    async def save_result(self, key: str, payload: str, ttl_s: int) -> None:
        await self.redis.set(result_key(key[:RESULT_NAME_LENGTH]), payload, ex=max(1, ttl_s))


class AssetCache:
    """(provider, account, Slack file) → what the provider's upload returned, so one video shared with three
    audio tracks is uploaded once; and the locks under which one process uploads it."""

    def __init__(self, *, redis: Redis) -> None:
        self.redis = redis
        self._unlock = redis.register_script(_UNLOCK)

    async def asset_url(self, file_key: str) -> str | None:
        value = await self.redis.get(asset_key(file_key))
        return text(value) if value else None

    async def save_asset(self, file_key: str, url: str) -> None:
        await self.redis.set(asset_key(file_key), url, ex=ASSET_KEPT_SECONDS)

    async def lock(self, name: str, owner: str, ttl_ms: int) -> bool:
        return bool(await self.redis.set(lock_key(name), owner, nx=True, px=ttl_ms))

    async def unlock(self, name: str, owner: str) -> None:
        await self._unlock(keys=[lock_key(name)], args=[owner])


class SharedValues:
    """Small shared values with a lifetime (a provider's balance, read by one process for all)."""

    def __init__(self, *, redis: Redis) -> None:
        self.redis = redis

    async def shared_value(self, key: str) -> str | None:
        value = await self.redis.get(value_key(key))
        return text(value) if value else None

    async def share_value(self, key: str, value: str, ttl_ms: int) -> None:
        await self.redis.set(value_key(key), value, px=max(1, ttl_ms))
