"""Limits shared by every bot process through Redis: a sliding-window rate limiter and a seat count.

Each provider has its own limiter per API key (JoggAI: 20 POSTs per minute, creates and uploads together;
sync.so and LipSync.dev: 60 creates per minute). A caller that gets a wait time holds a reserved slot: it
puts its job back in its queue for that long and then posts, so excess work waits its turn in order, at
one Redis call per job, instead of every waiting job asking again each time a slot frees. A job that ends
before its slot (cancelled) gives it back, and the jobs waiting behind it move up one slot each.
"""

from __future__ import annotations

import hashlib
import itertools
import secrets

from redis.asyncio import Redis

from bot.jobs import codec
from bot.jobs.keys import JOB, lease_key, queue_key, ratelimit_key, seats_key
from bot.jobs.lanes import Lane

# KEYS: log zset. ARGV: limit, window_ms, member, now_only. Takes the earliest slot that keeps every window
# within the limit, now or later (a reservation), and returns {ms until it (0: now), reservations ahead of
# it}. Slots are handed out in order, so callers that must wait queue up instead of all retrying whenever
# one slot frees. With now_only = 1 nothing is reserved when no slot is free now: it returns {-1, 0}.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local n = redis.call('ZCARD', KEYS[1])
local at = now
if n >= limit then
  if ARGV[4] == '1' then return {-1, 0} end
  -- the slot `limit` places back must have left the window (slots are taken in time order)
  local back = redis.call('ZRANGE', KEYS[1], n - limit, n - limit, 'WITHSCORES')
  at = math.max(now, tonumber(back[2]) + window)
end
local ahead = redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
redis.call('ZADD', KEYS[1], at, ARGV[3])
redis.call('PEXPIRE', KEYS[1], at - now + window)
return {at - now, ahead}
"""


# KEYS: log zset, submit queue, submit lease. ARGV: job id, job key prefix. Gives back the slot the job
# reserved (a log member "job:<id>:...") and has not reached yet. Each later slot held by a job waiting
# for it in the submit lane (unheld, with its POST slot set) passes to the job before it: the line moves
# up by one and only its last slot is freed, so no window ever holds more than it did. A job a step holds
# keeps its slot (the step is about to store it), and the slot passes over it to the next. Returns {id,
# ms until its new slot, ...} for the jobs moved, each now due at its new slot. Job keys are built from the
# prefix (keys.JOB): they share the hash tag with KEYS, so this holds on Cluster too.
_GIVE_BACK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local line = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf', 'WITHSCORES')
local free, moved = nil, {}
for i = 1, #line, 2 do
  local member, at = line[i], tonumber(line[i + 1])
  local id = string.match(member, '^job:([^:]+):')
  if free == nil then
    if id == ARGV[1] then
      redis.call('ZREM', KEYS[1], member)
      free = at
    end
  elseif id and id ~= ARGV[1] and redis.call('HEXISTS', KEYS[3], id) == 0 then
    local due = redis.call('ZSCORE', KEYS[2], id)
    local key = ARGV[2] .. id
    if due and tonumber(redis.call('HGET', key, 'POST_SLOT_MS') or '0') ~= 0 then
      redis.call('ZADD', KEYS[1], free, member)
      if tonumber(due) > free then redis.call('ZADD', KEYS[2], 'XX', free, id) end
      redis.call('HSET', key, 'POST_SLOT_MS', free)
      table.insert(moved, id)
      table.insert(moved, free - now)
      free = at
    end
  end
end
return moved
""".replace("POST_SLOT_MS", codec.POST_SLOT_MS)


class RateLimiter:
    def __init__(self, *, redis: Redis, name: str, limit: int, window_ms: int = 60_000) -> None:
        # Keyed by a digest of the name (an API key), never the secret itself.
        digest = hashlib.sha256(name.encode()).hexdigest()[:16]
        self.key = ratelimit_key(digest)
        self.limit = limit
        self.window_ms = window_ms
        self._script = redis.register_script(_ACQUIRE)
        self._give_back = redis.register_script(_GIVE_BACK)
        self._ids = itertools.count()
        self._me = secrets.token_hex(4)

    async def acquire(self) -> int:
        """Take the next slot: 0 if it is now, otherwise how many ms until the slot reserved for this call
        (the caller comes back then and uses it without asking again)."""
        return (await self.reserve())[0]

    async def reserve(self, job_id: str = "") -> tuple[int, int]:
        """Like `acquire`, and how many reservations are ahead of this one (its place in line, from 0).
        A slot taken for a job names it, so the job can give it back (`give_back`)."""
        member = f"{self._me}:{next(self._ids)}"
        if job_id:
            member = f"job:{job_id}:{member}"
        wait, ahead = await self._script(keys=[self.key], args=[self.limit, self.window_ms, member, 0])
        return int(wait), int(ahead)

    async def give_back(self, job_id: str) -> dict[str, int]:
        """The job ended before its reserved slot came: free it for the jobs waiting behind it in the
        submit lane, which each move up one slot. Returns those moved: job id → ms until its new slot."""
        keys = [self.key, queue_key(Lane.SUBMIT), lease_key(Lane.SUBMIT)]
        moved = await self._give_back(keys=keys, args=[job_id, JOB])
        ids = [job.decode() if isinstance(job, bytes) else str(job) for job in moved[0::2]]
        return {job: int(delay) for job, delay in zip(ids, moved[1::2], strict=True)}

    async def try_acquire(self, share: float = 1.0) -> bool:
        """Take a slot if one is free now, counting only `share` of the limit as available; never reserves
        one for later. For work that may be skipped, leaving the rest of the window to work that may not."""
        member = f"{self._me}:{next(self._ids)}"
        limit = max(1, int(self.limit * share))
        wait, _ = await self._script(keys=[self.key], args=[limit, self.window_ms, member, 1])
        return int(wait) == 0


# KEYS: seats zset, waiting zset. ARGV: member, cap, stale_ms. A member holds a seat until released; seats
# and waiters older than stale_ms (jobs that vanished without releasing) are dropped first. Returns 0 when
# the member is seated (or already was), else its place among those waiting (1 = next).
_TAKE_SEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[3]))
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[2], 'NX', now, ARGV[1])
local place = redis.call('ZRANK', KEYS[2], ARGV[1]) + 1
if place == 1 and redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZADD', KEYS[1], now, ARGV[1])
  return 0
end
return place
"""


class Seats:
    """A cap on tasks running at once at one provider account (sync.so plans allow 1 to 15), shared by
    every bot process. A job takes a seat before its create and gives it back when it ends; a job that
    finds no seat waits in its queue instead of failing."""

    def __init__(self, *, redis: Redis, name: str, cap: int, stale_ms: int) -> None:
        digest = hashlib.sha256(name.encode()).hexdigest()[:16]
        self.key = seats_key(digest)
        self.waiting_key = f"{self.key}:waiting"
        self.cap = cap
        self.stale_ms = stale_ms
        self._redis = redis
        self._script = redis.register_script(_TAKE_SEAT)

    async def take(self, job_id: str) -> int:
        """0 when the job has a seat; otherwise its place in line (first come, first seated)."""
        return int(
            await self._script(keys=[self.key, self.waiting_key], args=[job_id, self.cap, self.stale_ms])
        )

    async def release(self, job_id: str) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zrem(self.key, job_id)
            pipe.zrem(self.waiting_key, job_id)
            await pipe.execute()
