"""The job store: job hashes in Redis and three work queues with leased claims.

A job moves through three lanes, each a ZSET of job id → time it is next due (ms):
  submit  post the parent message, then create the provider task
  poll    ask the provider how the task is doing
  send    post the one final reply in the thread
Claiming an id sets its score to the lease deadline and records an owner token, in one Lua script, so two
processes never work on the same job at once and a crashed process's jobs come back when its lease runs
out. Every change after a claim is a script that first checks the token, so a process that lost its lease
cannot overwrite newer work. Time comes from Redis (`TIME`), never from the processes' clocks.
All keys share the `{lip}` hash tag so the scripts also work on Redis Cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
from collections.abc import AsyncIterator, Mapping
from enum import StrEnum
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from bot.jobs import Job

log = logging.getLogger(__name__)

PREFIX = "{lip}"
FINISHED_JOB_TTL_SECONDS = 7 * 24 * 3600
DEDUPE_TTL_SECONDS = 24 * 3600  # Slack retries within minutes; a day is ample


class Lane(StrEnum):
    SUBMIT = "submit"
    POLL = "poll"
    SEND = "send"


def job_key(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}"


def queue_key(lane: Lane) -> str:
    return f"{PREFIX}:{lane}"


def lease_key(lane: Lane) -> str:
    return f"{PREFIX}:{lane}:lease"


_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: job, submit queue, dedupe marker. ARGV: id, dedupe ttl, then field/value pairs.
# The marker makes a second delivery of the same Slack request a no-op, in the same atomic step that
# writes the job, so there is no moment where a request is marked seen but has no job.
_CREATE = (
    _NOW_MS
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if tonumber(ARGV[2]) > 0 then
  if not redis.call('SET', KEYS[3], ARGV[1], 'NX', 'EX', tonumber(ARGV[2])) then return 0 end
end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('HSET', KEYS[1], 'created_ms', now, 'updated_ms', now)
redis.call('ZADD', KEYS[2], now, ARGV[1])
return now
"""
)

# KEYS: queue, lease. ARGV: lease_ms, limit, token. Returns {now, id...}.
_CLAIM = (
    _NOW_MS
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

# KEYS: from queue, from lease, job, to queue. ARGV: id, token, mode, delay_ms, ttl_s, field/value pairs.
# mode: 'stay' reschedules in the same lane, 'move' hands over to another lane, 'done' drops it.
_TRANSITION = (
    _NOW_MS
    + """
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
local mode = ARGV[3]
local at = now + tonumber(ARGV[4])
if mode == 'stay' then
  redis.call('ZADD', KEYS[1], 'XX', at, ARGV[1])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
  if mode == 'move' then redis.call('ZADD', KEYS[4], 'NX', at, ARGV[1]) end
end
redis.call('HDEL', KEYS[2], ARGV[1])
-- A job whose hash expired or was deleted only leaves its lane: writing would leave a stub forever.
if redis.call('EXISTS', KEYS[3]) == 0 then return 1 end
if #ARGV > 5 then redis.call('HSET', KEYS[3], unpack(ARGV, 6)) end
redis.call('HSET', KEYS[3], 'updated_ms', now)
if tonumber(ARGV[5]) > 0 then redis.call('EXPIRE', KEYS[3], tonumber(ARGV[5])) end
return 1
"""
)

# KEYS: lease, job. ARGV: id, token, then field/value pairs; '$now' as a value means Redis time.
_UPDATE = (
    _NOW_MS
    + """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
local pairs_ = {}
for i = 3, #ARGV do
  if ARGV[i] == '$now' then pairs_[#pairs_ + 1] = now else pairs_[#pairs_ + 1] = ARGV[i] end
end
redis.call('HSET', KEYS[2], 'updated_ms', now, unpack(pairs_))
return now
"""
)

# KEYS: queue, lease, lock. ARGV: id, token, lease_ms. Pushes our lease deadline out, if the claim is
# still ours, and with it a lock we hold under the same token (an asset upload lock).
_EXTEND = (
    _NOW_MS
    + """
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[3]), ARGV[1])
if redis.call('GET', KEYS[3]) == ARGV[2] then redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[3])) end
return 1
"""
)

# KEYS: lock. ARGV: owner. Deletes the lock only if we still hold it.
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: group hash. ARGV: job id, final status, ttl_s. Returns every member's final status so far.
_GROUP_DONE = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return redis.call('HVALS', KEYS[1])
"""

# KEYS: inbox queue, item. ARGV: key, payload, ttl_s, grace_ms. A Slack delivery that leads to jobs, kept
# until it has been processed; a second delivery of the same thing while the first is pending changes nothing.
_STASH = (
    _NOW_MS
    + """
if not redis.call('SET', KEYS[2], ARGV[2], 'NX', 'EX', tonumber(ARGV[3])) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[1])
return 1
"""
)

NOW = "$now"  # placeholder for Redis time in update() values
INBOX = f"{PREFIX}:inbox"
INBOX_LEASE = f"{PREFIX}:inbox:lease"


class LeaseLost(Exception):
    """Our claim on a job ran out and someone else may own it now: stop touching it."""


class JobStore:
    def __init__(self, redis: Redis, worker_id: str | None = None) -> None:
        self.redis = redis
        self.worker_id = worker_id or secrets.token_hex(4)
        self._counter = itertools.count(1)
        self._create = redis.register_script(_CREATE)
        self._claim = redis.register_script(_CLAIM)
        self._transition = redis.register_script(_TRANSITION)
        self._update = redis.register_script(_UPDATE)
        self._extend = redis.register_script(_EXTEND)
        self._group_done = redis.register_script(_GROUP_DONE)
        self._unlock = redis.register_script(_UNLOCK)
        self._stash = redis.register_script(_STASH)

    def new_token(self) -> str:
        # Unique per claim, so a process that re-claims after losing a lease is not its old self.
        return f"{self.worker_id}:{next(self._counter)}"

    async def create(self, job: Job, lane: Lane = Lane.SUBMIT, dedupe: str = "") -> bool:
        """Store a new job and queue it now. False, with nothing changed, if a job with that id exists or
        a job was already created for the same `dedupe` key (a Slack request delivered twice)."""
        # Empty fields are left out: they read back as their defaults, and a create with fewer fields
        # costs less CPU on the ack path (bench/ack_latency.py).
        fields = {
            k: v for k, v in job.to_fields().items() if v != "" and k not in ("created_ms", "updated_ms")
        }
        args: list[str | int] = [job.id, DEDUPE_TTL_SECONDS if dedupe else 0, *_flatten(fields)]
        keys = [job_key(job.id), queue_key(lane), f"{PREFIX}:seen:{dedupe}"]
        created = await self._create(keys=keys, args=args)
        if created:
            job.created_ms = job.updated_ms = int(created)
        return bool(created)

    async def get(self, job_id: str) -> Job | None:
        raw = await self.redis.hgetall(job_key(job_id))
        return Job.from_fields(_decode(raw)) if raw else None

    async def claim(self, lane: Lane, limit: int, lease_ms: int) -> tuple[str, int, list[Job]]:
        """Claim up to `limit` due jobs. Returns (token, Redis time in ms, jobs)."""
        token = self.new_token()
        reply = await self._claim(keys=[queue_key(lane), lease_key(lane)], args=[lease_ms, limit, token])
        now_ms, ids = int(reply[0]), [_text(i) for i in reply[1:]]
        if not ids:
            return token, now_ms, []
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(job_key(job_id))
            hashes = await pipe.execute()
        jobs = []
        for job_id, raw in zip(ids, hashes, strict=True):
            if raw:
                jobs.append(Job.from_fields(_decode(raw)))
            else:  # the hash expired or was deleted: nothing left to do for this id
                await self._apply(lane, lane, job_id, token, "done", 0, 0, None)
        return token, now_ms, jobs

    async def reschedule(
        self, lane: Lane, job_id: str, token: str, delay_ms: int, fields: Mapping[str, object] | None = None
    ) -> None:
        await self._apply(lane, lane, job_id, token, "stay", delay_ms, 0, fields)

    async def move(
        self,
        source: Lane,
        target: Lane,
        job_id: str,
        token: str,
        delay_ms: int = 0,
        fields: Mapping[str, object] | None = None,
    ) -> None:
        await self._apply(source, target, job_id, token, "move", delay_ms, 0, fields)

    async def finish(
        self, lane: Lane, job_id: str, token: str, fields: Mapping[str, object] | None = None
    ) -> None:
        """Drop the job from its last lane; the hash expires after a week (kept for support questions)."""
        await self._apply(lane, lane, job_id, token, "done", 0, FINISHED_JOB_TTL_SECONDS, fields)

    async def update(self, lane: Lane, job_id: str, token: str, fields: Mapping[str, object]) -> int:
        """Write fields while keeping the claim; returns Redis time in ms."""
        now = await self._update(
            keys=[lease_key(lane), job_key(job_id)], args=[job_id, token, *_flatten(fields)]
        )
        if not now:
            raise LeaseLost(job_id)
        return int(now)

    @contextlib.asynccontextmanager
    async def keep_claim(
        self, lane: Lane, job_id: str, token: str, lease_ms: int, lock: str = ""
    ) -> AsyncIterator[None]:
        """Hold the claim through a long step (a big file transfer) by pushing the lease out as we go,
        together with `lock` if we hold it under `token`.

        If the claim is lost meanwhile, the step is cancelled and LeaseLost raised: someone else owns
        the job now and must not race us."""
        step = asyncio.current_task()
        lost = False

        async def beat() -> None:
            nonlocal lost
            while True:
                await asyncio.sleep(lease_ms / 3000)
                try:
                    kept = await self._extend(
                        keys=[queue_key(lane), lease_key(lane), _lock_key(lock)],
                        args=[job_id, token, lease_ms],
                    )
                except RedisError as exc:  # the lease may still be good; try again next beat
                    log.warning("job %s: could not extend the lease: %s", job_id, exc)
                    continue
                if not kept and step is not None:
                    lost = True
                    step.cancel()
                    return

        beater = asyncio.create_task(beat())
        try:
            yield
        except asyncio.CancelledError:
            if lost:
                raise LeaseLost(job_id) from None
            raise
        finally:
            beater.cancel()

    async def mark_once(self, key: str, ttl_s: int = DEDUPE_TTL_SECONDS) -> bool:
        """True the first time `key` is marked (across processes and restarts), False afterwards."""
        return bool(await self.redis.set(f"{PREFIX}:seen:{key}", 1, nx=True, ex=ttl_s))

    async def group_done(self, group: str, job_id: str, status: str) -> list[str]:
        """Record a job of a group (the jobs from one Slack message) as ended; the statuses so far."""
        raw = await self._group_done(
            keys=[f"{PREFIX}:group:{group}"], args=[job_id, status, FINISHED_JOB_TTL_SECONDS]
        )
        return [_text(v) for v in raw]

    # The inbox: Slack deliveries (shared files, shortcuts) stored before they are acknowledged, processed
    # right after the ack, and picked up again by any process's worker if that never finished.

    async def stash(self, key: str, payload: str, grace_ms: int) -> bool:
        """Keep `payload` under `key` until `unstash`; due for recovery after `grace_ms`. False if pending."""
        keys = [INBOX, _inbox_item_key(key)]
        return bool(await self._stash(keys=keys, args=[key, payload, DEDUPE_TTL_SECONDS, grace_ms]))

    async def claim_stashed(self, limit: int, lease_ms: int) -> list[tuple[str, str]]:
        """Claim up to `limit` inbox entries whose grace time is over: (key, payload) pairs."""
        reply = await self._claim(keys=[INBOX, INBOX_LEASE], args=[lease_ms, limit, self.new_token()])
        keys = [_text(k) for k in reply[1:]]
        if not keys:
            return []
        payloads = await self.redis.mget([_inbox_item_key(k) for k in keys])
        found = []
        for key, payload in zip(keys, payloads, strict=True):
            if payload is None:  # expired: nothing left to do
                await self.unstash(key)
            else:
                found.append((key, _text(payload)))
        return found

    async def is_stashed(self, key: str) -> bool:
        try:
            return bool(await self.redis.exists(_inbox_item_key(key)))
        except RedisError:
            return False

    async def unstash(self, key: str) -> None:
        """Forget an inbox entry once it has been processed (processing is idempotent, so no token)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(INBOX, key)
            pipe.hdel(INBOX_LEASE, key)
            pipe.delete(_inbox_item_key(key))
            await pipe.execute()

    # Slack file id → JoggAI asset URL, so one video shared with three audio tracks is uploaded once.

    async def asset_url(self, file_key: str) -> str | None:
        value = await self.redis.get(f"{PREFIX}:asset:{file_key}")
        return _text(value) if value else None

    async def save_asset(self, file_key: str, url: str) -> None:
        # JoggAI calls assets permanent, but that is unconfirmed: a day covers one conversation.
        await self.redis.set(f"{PREFIX}:asset:{file_key}", url, ex=DEDUPE_TTL_SECONDS)

    async def lock(self, name: str, owner: str, ttl_ms: int) -> bool:
        return bool(await self.redis.set(_lock_key(name), owner, nx=True, px=ttl_ms))

    async def unlock(self, name: str, owner: str) -> None:
        await self._unlock(keys=[_lock_key(name)], args=[owner])

    async def _apply(
        self,
        source: Lane,
        target: Lane,
        job_id: str,
        token: str,
        mode: str,
        delay_ms: int,
        ttl_s: int,
        fields: Mapping[str, object] | None,
    ) -> None:
        keys = [queue_key(source), lease_key(source), job_key(job_id), queue_key(target)]
        args: list[str | int] = [job_id, token, mode, max(0, int(delay_ms)), ttl_s, *_flatten(fields or {})]
        if not await self._transition(keys=keys, args=args):
            raise LeaseLost(job_id)

    async def counts(self) -> dict[str, int]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for lane in Lane:
                pipe.zcard(queue_key(lane))
            sizes = await pipe.execute()
        return {lane.value: int(n) for lane, n in zip(Lane, sizes, strict=True)}


def _inbox_item_key(key: str) -> str:
    return f"{INBOX}:item:{key}"


def _lock_key(name: str) -> str:
    return f"{PREFIX}:lock:{name}"


def _flatten(fields: Mapping[str, object]) -> list[str]:
    return [str(x) for pair in fields.items() for x in pair]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _decode(raw: Mapping[Any, Any]) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in raw.items()}
