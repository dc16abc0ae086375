"""The inbox: Slack deliveries that lead to jobs (shared files, shortcuts), stored before they are
acknowledged, processed right after the ack, and picked up again by any process's worker if that never
finished (bot/requests/shares.py).

Every key is named in bot.jobs.keys.
"""

from __future__ import annotations

import itertools
import secrets

from redis.asyncio import Redis
from redis.exceptions import RedisError

from bot.jobs.keys import INBOX, INBOX_LEASE, inbox_item_key
from bot.jobs.marks import DEDUPE_TTL_SECONDS
from bot.jobs.scripts import NOW_MS, text

# KEYS: inbox queue, item. ARGV: key, payload, ttl_s, grace_ms. A Slack delivery that leads to jobs, kept
# until it has been processed; a second delivery of the same thing while the first is pending changes nothing.
_STASH = (
    NOW_MS
    + """
if not redis.call('SET', KEYS[2], ARGV[2], 'NX', 'EX', tonumber(ARGV[3])) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[1])
return 1
"""
)

# KEYS: queue, lease. ARGV: lease_ms, limit, token. Returns {now, id...}. Claims inbox entries.
_CLAIM = (
    NOW_MS
    + """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), id)
  redis.call('HSET', KEYS[2], id, ARGV[3])
end
table.insert(ids, 1, tostring(now))
return ids
"""
)


class Inbox:
    """Stored deliveries, each under its key until processed; a claim on one lasts a lease."""

    def __init__(self, *, redis: Redis) -> None:
        self.redis = redis
        self._stash = redis.register_script(_STASH)
        self._claim = redis.register_script(_CLAIM)
        # A claim's token only marks who holds the entry; processing is idempotent, so nothing checks it.
        self._owner = secrets.token_hex(4)
        self._counter = itertools.count(1)

    async def stash(self, key: str, payload: str, grace_ms: int) -> bool:
        """Keep `payload` under `key` until `unstash`; due for recovery after `grace_ms`. False if pending."""
        keys = [INBOX, inbox_item_key(key)]
        return bool(await self._stash(keys=keys, args=[key, payload, DEDUPE_TTL_SECONDS, grace_ms]))

    async def claim_stashed(self, limit: int, lease_ms: int) -> list[tuple[str, str]]:
        """Claim up to `limit` inbox entries whose grace time is over: (key, payload) pairs."""
        reply = await self._claim(
            keys=[INBOX, INBOX_LEASE], args=[lease_ms, limit, f"{self._owner}:{next(self._counter)}"]
        )
        keys = [text(k) for k in reply[1:]]
        if not keys:
            return []
        payloads = await self.redis.mget([inbox_item_key(k) for k in keys])
        found = []
        for key, payload in zip(keys, payloads, strict=True):
            if payload is None:  # expired: nothing left to do
                await self.unstash(key)
            else:
                found.append((key, text(payload)))
        return found

    async def is_stashed(self, key: str) -> bool:
        try:
            return bool(await self.redis.exists(inbox_item_key(key)))
        except RedisError:
            return False

    async def unstash(self, key: str) -> None:
        """Forget an inbox entry once it has been processed (processing is idempotent, so no token)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(INBOX, key)
            pipe.hdel(INBOX_LEASE, key)
            pipe.delete(inbox_item_key(key))
            await pipe.execute()
