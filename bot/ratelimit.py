"""A sliding-window limiter shared by every bot process through Redis.

JoggAI allows 20 POSTs per minute per API key (task creation and uploads together). Callers that get a
wait time put their job back in its queue for that long, so excess work waits its turn instead of failing.
"""

from __future__ import annotations

import hashlib
import itertools
import secrets

from redis.asyncio import Redis

from bot.store import PREFIX

# KEYS: log zset. ARGV: limit, window_ms, member. Returns 0 when a slot was taken, else ms to wait.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now)
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
        """Take a slot: 0 if granted, otherwise how many ms until one frees up (nothing taken)."""
        member = f"{self._me}:{next(self._ids)}"
        return int(await self._script(keys=[self.key], args=[self.limit, self.window_ms, member]))
