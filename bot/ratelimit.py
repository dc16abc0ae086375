"""Limits shared by every bot process through Redis: a sliding-window rate limiter and a seat count.

Each provider has its own limiter per API key (JoggAI: 20 POSTs per minute, creates and uploads together;
sync.so and LipSync.dev: 60 creates per minute). A caller that gets a wait time holds a reserved slot: it
puts its job back in its queue for that long and then posts, so excess work waits its turn in order, at
one Redis call per job, instead of every waiting job asking again each time a slot frees.
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


# KEYS: seats zset. ARGV: member, cap, stale_ms. A member holds a seat until released; seats older than
# stale_ms (a job that vanished without releasing) are freed first. 1: seated (or already was), 0: full.
_TAKE_SEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 1 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now, ARGV[1])
return 1
"""


class Seats:
    """A cap on tasks running at once at one provider account (sync.so plans allow 1 to 15), shared by
    every bot process. A job takes a seat before its create and gives it back when it ends; a job that
    finds no seat waits in its queue instead of failing."""

    def __init__(self, redis: Redis, name: str, cap: int, stale_ms: int) -> None:
        digest = hashlib.sha256(name.encode()).hexdigest()[:16]
        self.key = f"{PREFIX}:seats:{digest}"
        self.cap = cap
        self.stale_ms = stale_ms
        self._redis = redis
        self._script = redis.register_script(_TAKE_SEAT)

    async def take(self, job_id: str) -> bool:
        return bool(await self._script(keys=[self.key], args=[job_id, self.cap, self.stale_ms]))

    async def release(self, job_id: str) -> None:
        await self._redis.zrem(self.key, job_id)
