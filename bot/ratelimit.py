"""A sliding-window limiter shared by every bot process through Redis.

JoggAI allows 20 POSTs per minute per API key (task creation and uploads together). A caller that gets a
wait time holds a reserved slot: it puts its job back in its queue for that long and then posts, so excess
work waits its turn in order, at one Redis call per job, instead of every waiting job asking again each
time a slot frees.
"""

from __future__ import annotations

import hashlib
import itertools
import secrets

from redis.asyncio import Redis

from bot.store import PREFIX

# KEYS: log zset. ARGV: limit, window_ms, member. Takes the earliest slot that keeps every window within
# the limit, now or later (a reservation), and returns how many ms until it: 0 means now. Slots are handed
# out in order, so callers that must wait queue up instead of all retrying whenever one slot frees.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local n = redis.call('ZCARD', KEYS[1])
local at = now
if n >= limit then
  -- the slot `limit` places back must have left the window (slots are taken in time order)
  local back = redis.call('ZRANGE', KEYS[1], n - limit, n - limit, 'WITHSCORES')
  at = math.max(now, tonumber(back[2]) + window)
end
redis.call('ZADD', KEYS[1], at, ARGV[3])
redis.call('PEXPIRE', KEYS[1], at - now + window)
return at - now
"""


class RateLimiter:
    def __init__(self, redis: Redis, name: str, limit: int, window_ms: int = 60_000) -> None:
        # Keyed by a digest of the name (an API key), never the secret itself.
        digest = hashlib.sha256(name.encode()).hexdigest()[:16]
        self.key = f"{PREFIX}:ratelimit:{digest}"
        self.limit = limit
        self.window_ms = window_ms
        self._script = redis.register_script(_ACQUIRE)
        self._ids = itertools.count()
        self._me = secrets.token_hex(4)

    async def acquire(self) -> int:
        """Take the next slot: 0 if it is now, otherwise how many ms until the slot reserved for this call
        (the caller comes back then and uses it without asking again)."""
        member = f"{self._me}:{next(self._ids)}"
        return int(await self._script(keys=[self.key], args=[self.limit, self.window_ms, member]))
