"""The job store: job hashes in Redis and three work queues with leased claims.

A job moves through three lanes, each a ZSET of job id → time it is next due (ms):
  submit  post the parent message, then create the provider task
  poll    ask the provider how the task is doing
  send    post the one final reply in the thread
Claiming an id sets its score to the lease deadline and records an owner token, in one Lua script that
also reads the job, so two processes never work on the same job at once and a crashed process's jobs come
back when its lease runs out. Every change after a claim is a script that first checks the token, so a
process that lost its lease cannot overwrite newer work. Time comes from Redis (`TIME`), never from the
processes' clocks.
Every key is named in bot.jobs.keys (all share one hash tag, so the scripts also work on Redis Cluster).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisError

from bot.jobs.keys import (
    INBOX,
    INBOX_LEASE,
    JOB,
    asset_key,
    failed_key,
    group_key,
    group_owner_key,
    inbox_item_key,
    job_key,
    lease_key,
    lock_key,
    queue_key,
    result_key,
    seen_key,
    short_key,
    task_key,
    user_jobs_key,
    value_key,
)
from bot.jobs.model import SHORT_ID_LENGTH, Job, short_id

log = logging.getLogger(__name__)

FINISHED_JOB_TTL_SECONDS = 7 * 24 * 3600
# Dropped when a job ends (its reply sent, or skipped): the private reply URL (dead after 30 minutes), the
# result and cover links (in the reply, and the video itself in the thread; providers' signed links
# expire), the result cache's key (the cache holds the result by then). The shared files' descriptions
# stay: Retry and Dub again of a shared-files job start from them (bench/memory_jobs.py measures what a
# job keeps).
FINISHED_DROPS = ("response_url", "result_url", "cover_url", "cache_key")
DEDUPE_TTL_SECONDS = 24 * 3600  # Slack retries within minutes; a day is ample
USER_JOBS_KEPT = 200  # per person, for `/lipsync list` and App Home


class Lane(StrEnum):
    SUBMIT = "submit"
    POLL = "poll"
    SEND = "send"


_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: job, submit queue, dedupe marker, the requester's job index, the short id. ARGV: id, dedupe ttl,
# index ttl, jobs kept per index, then field/value pairs. The marker makes a second delivery of the same
# Slack request a no-op, in the same atomic step that writes the job, so there is no moment where a
# request is marked seen but has no job. The index (newest last) serves `/lipsync list` and App Home; the
# short id (`jobs.short_id`) finds the job when someone types it.
_CREATE = (
    _NOW_MS
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if tonumber(ARGV[2]) > 0 then
  if not redis.call('SET', KEYS[3], ARGV[1], 'NX', 'EX', tonumber(ARGV[2])) then return 0 end
end
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('HSET', KEYS[1], 'created_ms', now, 'updated_ms', now)
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('ZADD', KEYS[4], now, ARGV[1])
redis.call('ZREMRANGEBYRANK', KEYS[4], 0, -tonumber(ARGV[4]) - 1)
redis.call('EXPIRE', KEYS[4], tonumber(ARGV[3]))
redis.call('SET', KEYS[5], ARGV[1], 'EX', tonumber(ARGV[3]))
return now
"""
)

# KEYS: job, submit queue, submit lease, poll queue, poll lease, send queue. ARGV: id, who. Cancels a job:
# one waiting in submit or poll (no step running on it) ends at once, queued for its reply; one a step is
# working on gets `cancel_by`, and ends as soon as that step's decision is applied (the transition refuses
# to put it back to wait, bot/lanes/pipeline.py `Pipeline.apply`). Returns what happened.
_CANCEL = (
    _NOW_MS
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 'gone' end
local status = redis.call('HGET', KEYS[1], 'status') or 'queued'
if (status ~= 'queued' and status ~= 'processing') or redis.call('ZSCORE', KEYS[6], ARGV[1]) then
  return 'over'
end
redis.call('HSET', KEYS[1], 'cancel_by', ARGV[2], 'updated_ms', now)
for q = 2, 4, 2 do
  if redis.call('ZSCORE', KEYS[q], ARGV[1]) and redis.call('HEXISTS', KEYS[q + 1], ARGV[1]) == 0 then
    local sent = redis.call('HGET', KEYS[1], 'submit_state') == 'attempted' or q == 4
    redis.call('ZREM', KEYS[q], ARGV[1])
    redis.call('HSET', KEYS[1], 'status', 'cancelled', 'errors', 0)
    redis.call('ZADD', KEYS[6], now, ARGV[1])
    if sent then return 'cancelled_at_provider' end
    return 'cancelled'
  end
end
return 'pending'
"""
)

# KEYS: queue, lease. ARGV: lease_ms, limit, token. Returns {now, id...}. Claims inbox entries.
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

# KEYS: queue and lease of each lane, in pairs. ARGV: lease_ms, token, job key prefix, then per lane: limit,
# early_ms, how many fields to read (0: all), their names. Claims the jobs due now, and those due within
# early_ms unless leased (a lease is never cut short). Returns {now, per lane: {next due or false, {ids of
# vanished jobs}, id, {fields}, id, {fields}...}}. Reading the jobs in the same script means no job can
# vanish between being claimed and being read; one whose hash is gone leaves its lane instead. Job keys
# are built here from the prefix (keys.JOB): they share the hash tag with KEYS, so this holds on Cluster too.
_CLAIM_JOBS = (
    _NOW_MS
    + """
local lease_ms, token, prefix = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local out, a = {now}, 4
for k = 1, #KEYS, 2 do
  local limit, early, nfields = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local fields = {unpack(ARGV, a + 3, a + 2 + nfields)}
  a = a + 3 + nfields
  local lane, gone = {false, {}}, {}
  local due = {}
  if limit > 0 then
    due = redis.call('ZRANGEBYSCORE', KEYS[k], '-inf', now + early, 'WITHSCORES', 'LIMIT', 0, limit)
  end
  for i = 1, #due, 2 do
    local id = due[i]
    local key = prefix .. id
    if tonumber(due[i + 1]) > now and redis.call('HEXISTS', KEYS[k + 1], id) == 1 then
      -- leased, with its lease not yet over: not ours to take
    elseif redis.call('EXISTS', key) == 0 then
      redis.call('ZREM', KEYS[k], id)
      redis.call('HDEL', KEYS[k + 1], id)
      table.insert(gone, id)
    else
      redis.call('ZADD', KEYS[k], now + lease_ms, id)
      redis.call('HSET', KEYS[k + 1], id, token)
      table.insert(lane, id)
      if nfields > 0 then
        table.insert(lane, redis.call('HMGET', key, unpack(fields)))
      else
        table.insert(lane, redis.call('HGETALL', key))
      end
    end
  end
  local first = redis.call('ZRANGE', KEYS[k], 0, 0, 'WITHSCORES')
  lane[1], lane[2] = first[2] or false, gone
  table.insert(out, lane)
end
return out
"""
)

# KEYS: from queue, from lease, job, to queue. ARGV: id, token, mode, delay_ms, ttl_s, a field that must be
# empty ('' for none), n, n field names to drop, then field/value pairs. mode: 'stay' reschedules in the
# same lane, 'move' hands over to another lane, 'done' drops it. Returns 1, 0 if the claim is lost, -1 (and
# changes nothing) if the field is set: a job cancelled while its step ran does not go back to wait.
# With fields to drop (a job's end), the hash is rewritten without them and without empty values: a hash
# that once held a long value keeps Redis's big encoding until it is written afresh.
_TRANSITION = (
    _NOW_MS
    + """
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
if ARGV[6] ~= '' and (redis.call('HGET', KEYS[3], ARGV[6]) or '') ~= '' then return -1 end
local mode, ndrop = ARGV[3], tonumber(ARGV[7])
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
redis.call('HSET', KEYS[3], 'updated_ms', now, unpack(ARGV, 8 + ndrop))
if ndrop > 0 then
  local drop, kept, all = {}, {}, redis.call('HGETALL', KEYS[3])
  for i = 8, 7 + ndrop do drop[ARGV[i]] = true end
  for i = 1, #all, 2 do
    if not drop[all[i]] and all[i + 1] ~= '' then
      kept[#kept + 1] = all[i]
      kept[#kept + 1] = all[i + 1]
    end
  end
  redis.call('DEL', KEYS[3])
  redis.call('HSET', KEYS[3], unpack(kept))
end
if tonumber(ARGV[5]) > 0 then redis.call('EXPIRE', KEYS[3], tonumber(ARGV[5])) end
return 1
"""
)

# KEYS: lease, job. ARGV: id, token, a field that must be empty ('' for none), then field/value pairs;
# '$now' as a value means Redis time. Returns Redis time, 0 if the claim is lost, -1 if the field is set.
_UPDATE = (
    _NOW_MS
    + """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
if ARGV[3] ~= '' and (redis.call('HGET', KEYS[2], ARGV[3]) or '') ~= '' then return -1 end
local pairs_ = {}
for i = 4, #ARGV do
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

# KEYS: queue, lease. ARGV: id, token. Hands a claimed job back at once (a stopping process): due now for
# any process, instead of after its lease. Only if we still hold it.
_RELEASE = (
    _NOW_MS
    + """
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[1], 'XX', now, ARGV[1])
return 1
"""
)

# KEYS: lock. ARGV: owner. Deletes the lock only if we still hold it.
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: group hash, group owner. ARGV: job id, what it ended with, ttl_s, group size. Records the member
# and returns {owner or false, id, value, id, value...}: the owner is the first member to see the group
# complete (it posts what follows, once; a retry of its step finds itself the owner again).
_GROUP_DONE = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[4]) then
  redis.call('SET', KEYS[2], ARGV[1], 'NX', 'EX', tonumber(ARGV[3]))
end
local out = {redis.call('GET', KEYS[2])}
for _, v in ipairs(redis.call('HGETALL', KEYS[1])) do table.insert(out, v) end
return out
"""

# KEYS: poll queue, poll lease. ARGV: job id. A webhook said the job's task is done: make its next poll
# due now, unless it is being polled right now (leased) or is not waiting in the poll lane at all.
_NUDGE = (
    _NOW_MS
    + """
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 0 end
local due = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not due then return 0 end
if tonumber(due) > now then redis.call('ZADD', KEYS[1], 'XX', now, ARGV[1]) end
return 1
"""
)

# KEYS: job, submit queue, submit lease. ARGV: id, who. The requester agreed to a quote: note it, and
# make the job due now unless a step holds it (that step looks again within seconds, bot/lanes/gate.py).
_CONFIRM = (
    _NOW_MS
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 'gone' end
local state = redis.call('HGET', KEYS[1], 'confirm_state') or ''
if state == 'confirmed' then return 'already' end
local status = redis.call('HGET', KEYS[1], 'status') or 'queued'
if state ~= 'asked' or status ~= 'queued' or redis.call('HEXISTS', KEYS[1], 'cancel_by') == 1 then
  return 'over'
end
redis.call('HSET', KEYS[1], 'confirm_state', 'confirmed', 'updated_ms', now)
if redis.call('ZSCORE', KEYS[2], ARGV[1]) and redis.call('HEXISTS', KEYS[3], ARGV[1]) == 0 then
  redis.call('ZADD', KEYS[2], 'XX', now, ARGV[1])
  return 'now'
end
return 'confirmed'
"""
)

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
_CREATE_DEFAULTS = Job(id="").to_fields()  # what a new job need not write (Redis sets its two times)


class LeaseLost(Exception):
    """Our claim on a job ran out and someone else may own it now: stop touching it."""


class Cancelled(Exception):
    """Someone cancelled the job before this write: the step must not go on (no provider call)."""


@dataclass
class Claimed:
    token: str
    now_ms: int  # Redis time of the claim
    jobs: dict[Lane, list[Job]] = field(default_factory=dict)
    # Each lane's earliest score after the claim (a due time or a lease deadline); None: the lane is empty.
    next_due_ms: dict[Lane, int | None] = field(default_factory=dict)


class _Batched:
    """A script whose calls made in the same turn of the event loop go to Redis in one pipeline (a lone
    call goes as is). Each caller still gets its own result or error. Pipelined, a call costs the bot
    about a third of the CPU of a call of its own (bench/poll_sweep.py)."""

    def __init__(self, redis: Redis, script: AsyncScript) -> None:
        self._redis, self._script = redis, script
        self._calls: list[tuple[list[str], list[str | int], asyncio.Future[Any]]] = []
        self._sending: set[asyncio.Task[None]] = set()

    async def __call__(self, keys: list[str], args: list[str | int]) -> Any:
        loop = asyncio.get_running_loop()
        result: asyncio.Future[Any] = loop.create_future()
        self._calls.append((keys, args, result))
        if len(self._calls) == 1:
            loop.call_soon(self._send_all)
        return await result

    def _send_all(self) -> None:
        task = asyncio.ensure_future(self._send(self._calls))
        self._calls = []
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, calls: list[tuple[list[str], list[str | int], asyncio.Future[Any]]]) -> None:
        results: list[Any]
        try:
            if len(calls) == 1:
                results = [await self._script(keys=calls[0][0], args=calls[0][1])]
            else:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for keys, args, _ in calls:
                        pipe.evalsha(self._script.sha, len(keys), *keys, *args)
                    results = await pipe.execute(raise_on_error=False)
        except Exception as exc:  # Redis unreachable: every caller hears it
            results = [exc] * len(calls)
        for index, (keys, args, _) in enumerate(calls):
            if isinstance(results[index], NoScriptError):  # Redis restarted: nothing ran, load and run
                try:
                    results[index] = await self._script(keys=keys, args=args)
                except Exception as exc:
                    results[index] = exc
        for (_, _, future), value in zip(calls, results, strict=True):
            if future.done():  # the caller was cancelled
                continue
            if isinstance(value, Exception):
                future.set_exception(value)
            else:
                future.set_result(value)


class JobStore:
    def __init__(self, redis: Redis, worker_id: str | None = None) -> None:
        self.redis = redis
        self.worker_id = worker_id or secrets.token_hex(4)
        self._counter = itertools.count(1)
        # The ack path: a burst of commands stores its jobs in one round trip.
        self._create = _Batched(redis, redis.register_script(_CREATE))
        self._claim = redis.register_script(_CLAIM)
        self._claim_jobs = redis.register_script(_CLAIM_JOBS)
        # A poll's transition is most of its Redis cost: those of one event-loop turn share a round trip.
        self._transition = _Batched(redis, redis.register_script(_TRANSITION))
        self._update = redis.register_script(_UPDATE)
        self._extend = redis.register_script(_EXTEND)
        self._group_done = redis.register_script(_GROUP_DONE)
        self._nudge = redis.register_script(_NUDGE)
        self._unlock = redis.register_script(_UNLOCK)
        self._stash = redis.register_script(_STASH)
        self._cancel = redis.register_script(_CANCEL)
        self._confirm = redis.register_script(_CONFIRM)
        self._release = redis.register_script(_RELEASE)
        # Told (lane, delay in ms) each time this process queues a job in a lane, so that its worker
        # knows when that lane is next due without asking Redis (bot/lanes/worker.py).
        self.on_queued: Callable[[Lane, int], None] | None = None

    def new_token(self) -> str:
        # Unique per claim, so a process that re-claims after losing a lease is not its old self.
        return f"{self.worker_id}:{next(self._counter)}"

    async def create(self, job: Job, lane: Lane = Lane.SUBMIT, dedupe: str = "") -> bool:
        """Store a new job and queue it now. False, with nothing changed, if a job with that id exists or
        a job was already created for the same `dedupe` key (a Slack request delivered twice)."""
        # Fields at their default are left out: they read back as the default, and a create with fewer
        # arguments costs less CPU on the ack path (bench/ack_latency.py) and less memory in Redis.
        fields = {k: v for k, v in job.to_fields().items() if _CREATE_DEFAULTS.get(k) != v}
        args: list[str | int] = [
            job.id,
            DEDUPE_TTL_SECONDS if dedupe else 0,
            FINISHED_JOB_TTL_SECONDS,
            USER_JOBS_KEPT,
            *_flatten(fields),
        ]
        keys = [
            job_key(job.id),
            queue_key(lane),
            seen_key(dedupe),
            user_jobs_key(job.team_id, job.user),
            short_key(short_id(job.id)),
        ]
        created = await self._create(keys=keys, args=args)
        if created:
            job.created_ms = job.updated_ms = int(created)
        return bool(created)

    async def get(self, job_id: str) -> Job | None:
        raw = await self.redis.hgetall(job_key(job_id))
        return Job.from_fields(_decode(raw)) if raw else None

    async def claim_lanes(
        self,
        limits: Mapping[Lane, int],
        lease_ms: int,
        fields: Mapping[Lane, Sequence[str]] | None = None,
        early_ms: Mapping[Lane, int] | None = None,
    ) -> Claimed:
        """Claim up to `limits[lane]` due jobs of each lane in one script, reading only `fields[lane]`
        of their hashes if given (the rest keep their defaults), and learn when each lane is next due.
        Jobs due within `early_ms[lane]` are claimed too, unless another claim's lease on them still runs.

        A job whose hash has vanished leaves its lane; one whose record cannot be read is skipped (it
        comes back when its lease runs out, e.g. to a newer process that can read it). One log line each."""
        token = self.new_token()
        lanes = list(limits)
        names = {lane: list((fields or {}).get(lane, ())) for lane in lanes}
        keys = [key for lane in lanes for key in (queue_key(lane), lease_key(lane))]
        args: list[str | int] = [lease_ms, token, JOB]
        for lane in lanes:
            early = (early_ms or {}).get(lane, 0)
            args += [max(0, limits[lane]), max(0, early), len(names[lane]), *names[lane]]
        reply = await self._claim_jobs(keys=keys, args=args)
        claimed = Claimed(token, int(reply[0]))
        for lane, (first, gone, *found) in zip(lanes, reply[1:], strict=True):
            claimed.next_due_ms[lane] = int(float(first)) if first is not None else None
            for job_id in gone:
                log.warning("job %s: its record is gone; dropped from the %s lane", _text(job_id), lane)
            jobs = claimed.jobs[lane] = []
            for raw_id, values in zip(found[0::2], found[1::2], strict=True):
                try:
                    jobs.append(_read_job(raw_id, names[lane], values))
                except (ValueError, TypeError) as exc:  # not ours to fix: left alone until its lease ends
                    log.error("job %r: unreadable record in the %s lane, skipped: %s", raw_id, lane, exc)
        return claimed

    async def reschedule(
        self,
        lane: Lane,
        job_id: str,
        token: str,
        delay_ms: int,
        fields: Mapping[str, object] | None = None,
        unless: str = "",
    ) -> None:
        """Come back to `lane` in `delay_ms`. With `unless`, nothing changes and Cancelled is raised if the
        job's `unless` field is set (e.g. `cancel_by`), in the same script."""
        await self._apply(lane, lane, job_id, token, "stay", delay_ms, 0, fields, unless=unless)

    async def move(
        self,
        source: Lane,
        target: Lane,
        job_id: str,
        token: str,
        delay_ms: int = 0,
        fields: Mapping[str, object] | None = None,
        unless: str = "",
    ) -> None:
        """Hand the job over to `target`, due in `delay_ms`; `unless` as for `reschedule`."""
        await self._apply(source, target, job_id, token, "move", delay_ms, 0, fields, unless=unless)

    async def finish(
        self, lane: Lane, job_id: str, token: str, fields: Mapping[str, object] | None = None
    ) -> None:
        """Drop the job from its last lane. What it was and how it ended stay a week, for support
        questions; what only served to get there (FINISHED_DROPS) goes."""
        await self._apply(
            lane, lane, job_id, token, "done", 0, FINISHED_JOB_TTL_SECONDS, fields, FINISHED_DROPS
        )

    async def update(
        self, lane: Lane, job_id: str, token: str, fields: Mapping[str, object], unless: str = ""
    ) -> int:
        """Write fields while keeping the claim; returns Redis time in ms. With `unless`, nothing is written
        and Cancelled raised if the job's `unless` field is set (e.g. `cancel_by`), in the same script."""
        now = await self._update(
            keys=[lease_key(lane), job_key(job_id)], args=[job_id, token, unless, *_flatten(fields)]
        )
        if not now:
            raise LeaseLost(job_id)
        if int(now) < 0:
            raise Cancelled(job_id)
        return int(now)

    async def cancel(self, job_id: str, who: str) -> str:
        """Cancel a job on behalf of `who`: "cancelled" (never sent to its provider), "cancelled_at_provider"
        (stopped; the provider may have it), "pending" (a step is working on it and will stop it), "over"
        (it had ended) or "gone"."""
        keys = [
            job_key(job_id),
            queue_key(Lane.SUBMIT),
            lease_key(Lane.SUBMIT),
            queue_key(Lane.POLL),
            lease_key(Lane.POLL),
            queue_key(Lane.SEND),
        ]
        outcome = _text(await self._cancel(keys=keys, args=[job_id, who]))
        if outcome.startswith("cancelled") and self.on_queued is not None:
            self.on_queued(Lane.SEND, 0)
        return outcome

    async def find_job_id(self, typed: str) -> str | None:
        """The job a person typed: its full id, or its short id."""
        typed = typed.strip().strip("`").lower()
        if len(typed) > SHORT_ID_LENGTH and await self.redis.exists(job_key(typed)):
            return typed
        found = await self.redis.get(short_key(typed[-SHORT_ID_LENGTH:])) if typed else None
        return _text(found) if found else None

    async def recent_jobs(self, team_id: str, user: str, start: int, count: int) -> tuple[list[Job], int]:
        """A person's jobs, newest first, `count` from `start`; and how many they have in all."""
        key = user_jobs_key(team_id, user)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrevrange(key, start, start + count - 1)
            pipe.zcard(key)
            ids, total = await pipe.execute()
        jobs = await self.get_many([_text(i) for i in ids])
        return jobs, int(total)

    async def get_many(self, job_ids: Sequence[str]) -> list[Job]:
        """The jobs that still exist, in the order asked."""
        if not job_ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hgetall(job_key(job_id))
            raws = await pipe.execute()
        return [Job.from_fields(_decode(raw)) for raw in raws if raw]

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
                        keys=[queue_key(lane), lease_key(lane), lock_key(lock)],
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

    async def dedupe_target(self, dedupe: str) -> str | None:
        """The id of the job created under `dedupe` (see `create`), while the key lasts."""
        value = await self.redis.get(seen_key(dedupe))
        return _text(value) if value else None

    async def mark_once(self, key: str, ttl_s: int = DEDUPE_TTL_SECONDS) -> bool:
        """True the first time `key` is marked (across processes and restarts), False afterwards."""
        return bool(await self.redis.set(seen_key(key), 1, nx=True, ex=ttl_s))

    async def group_done(self, group: str, job_id: str, value: str, size: int) -> tuple[dict[str, str], str]:
        """Record a job of a group (the jobs from one Slack message, or one compare) as ended with `value`.
        Returns every member's value so far, and the owner: the first job that saw the group complete
        ("" while it is not)."""
        raw = await self._group_done(
            keys=[group_key(group), group_owner_key(group)],
            args=[job_id, value, FINISHED_JOB_TTL_SECONDS, size],
        )
        owner, flat = raw[0], raw[1:]
        entries = {_text(k): _text(v) for k, v in zip(flat[0::2], flat[1::2], strict=True)}
        return entries, _text(owner) if owner else ""

    async def get_fields(self, job_id: str, names: Sequence[str]) -> dict[str, str]:
        """Some fields of a job, read without a claim (those it has); {} when the job does not exist."""
        values = await self.redis.hmget(job_key(job_id), list(names))
        return {name: _text(v) for name, v in zip(names, values, strict=True) if v is not None}

    # Provider task id → job, for webhooks, which name the task only.

    async def index_task(self, provider: str, task_id: str, job_id: str, ttl_ms: int) -> None:
        await self.redis.set(task_key(provider, task_id), job_id, px=ttl_ms + 3_600_000)

    async def job_for_task(self, provider: str, task_id: str) -> str | None:
        value = await self.redis.get(task_key(provider, task_id))
        return _text(value) if value else None

    async def nudge_poll(self, job_id: str) -> bool:
        """Make a polled job's next poll due now; False when it is not waiting in the poll lane."""
        nudged = bool(await self._nudge(keys=[queue_key(Lane.POLL), lease_key(Lane.POLL)], args=[job_id]))
        if nudged and self.on_queued is not None:
            self.on_queued(Lane.POLL, 0)
        return nudged

    # The inbox: Slack deliveries (shared files, shortcuts) stored before they are acknowledged, processed
    # right after the ack, and picked up again by any process's worker if that never finished.

    async def stash(self, key: str, payload: str, grace_ms: int) -> bool:
        """Keep `payload` under `key` until `unstash`; due for recovery after `grace_ms`. False if pending."""
        keys = [INBOX, inbox_item_key(key)]
        return bool(await self._stash(keys=keys, args=[key, payload, DEDUPE_TTL_SECONDS, grace_ms]))

    async def claim_stashed(self, limit: int, lease_ms: int) -> list[tuple[str, str]]:
        """Claim up to `limit` inbox entries whose grace time is over: (key, payload) pairs."""
        reply = await self._claim(keys=[INBOX, INBOX_LEASE], args=[lease_ms, limit, self.new_token()])
        keys = [_text(k) for k in reply[1:]]
        if not keys:
            return []
        payloads = await self.redis.mget([inbox_item_key(k) for k in keys])
        found = []
        for key, payload in zip(keys, payloads, strict=True):
            if payload is None:  # expired: nothing left to do
                await self.unstash(key)
            else:
                found.append((key, _text(payload)))
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

    async def release(self, lane: Lane, job_id: str, token: str) -> bool:
        """Hand a claimed job back, due now (this process is stopping); False if the claim was lost."""
        return bool(await self._release(keys=[queue_key(lane), lease_key(lane)], args=[job_id, token]))

    async def confirm(self, job_id: str) -> str:
        """The requester agreed to the job's quote. Returns `now` or `confirmed` (it goes on), `already`,
        `over` (expired, cancelled, not asked) or `gone`."""
        keys = [job_key(job_id), queue_key(Lane.SUBMIT), lease_key(Lane.SUBMIT)]
        outcome = _text(await self._confirm(keys=keys, args=[job_id]))
        if outcome == "now" and self.on_queued is not None:
            self.on_queued(Lane.SUBMIT, 0)
        return outcome

    # The result cache: the identity of a dub's inputs → the earlier result (JSON), for CACHE_DAYS.

    async def cached_result(self, key: str) -> str | None:
        value = await self.redis.get(result_key(key))
        return _text(value) if value else None

    async def save_result(self, key: str, payload: str, ttl_s: int) -> None:
        await self.redis.set(result_key(key), payload, ex=max(1, ttl_s))

    # Small shared values with a lifetime (a provider's balance, read by one process for all).

    async def shared_value(self, key: str) -> str | None:
        value = await self.redis.get(value_key(key))
        return _text(value) if value else None

    async def share_value(self, key: str, value: str, ttl_ms: int) -> None:
        await self.redis.set(value_key(key), value, px=max(1, ttl_ms))

    async def unmark(self, key: str) -> None:
        """Forget a `mark_once` mark, so the next `mark_once` is a first time again."""
        await self.redis.delete(seen_key(key))

    # (provider, account, Slack file) → what the provider's upload returned, so one video shared with three
    # audio tracks is uploaded once.

    async def asset_url(self, file_key: str) -> str | None:
        value = await self.redis.get(asset_key(file_key))
        return _text(value) if value else None

    async def save_asset(self, file_key: str, url: str) -> None:
        # Providers' asset retention is unconfirmed (JoggAI calls assets permanent): a day covers one
        # conversation.
        await self.redis.set(asset_key(file_key), url, ex=DEDUPE_TTL_SECONDS)

    async def lock(self, name: str, owner: str, ttl_ms: int) -> bool:
        return bool(await self.redis.set(lock_key(name), owner, nx=True, px=ttl_ms))

    async def unlock(self, name: str, owner: str) -> None:
        await self._unlock(keys=[lock_key(name)], args=[owner])

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
        drop: Sequence[str] = (),
        unless: str = "",
    ) -> None:
        keys = [queue_key(source), lease_key(source), job_key(job_id), queue_key(target)]
        delay_ms = max(0, int(delay_ms))
        args: list[str | int] = [
            job_id,
            token,
            mode,
            delay_ms,
            ttl_s,
            unless,
            len(drop),
            *drop,
            *_flatten(fields or {}),
        ]
        done = int(await self._transition(keys=keys, args=args))
        if not done:
            raise LeaseLost(job_id)
        if done < 0:
            raise Cancelled(job_id)
        if mode != "done" and self.on_queued is not None:
            self.on_queued(target, delay_ms)

    async def note_failure(self, job_id: str) -> None:
        """Count a job that failed or timed out today (UTC), once however often its step runs."""
        key = failed_key(time.strftime("%Y%m%d", time.gmtime()))
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.sadd(key, job_id)
            pipe.expire(key, 2 * 24 * 3600)
            await pipe.execute()

    async def failures_today(self) -> int:
        return int(await self.redis.scard(failed_key(time.strftime("%Y%m%d", time.gmtime()))))

    async def counts(self) -> dict[str, int]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for lane in Lane:
                pipe.zcard(queue_key(lane))
            sizes = await pipe.execute()
        return {lane.value: int(n) for lane, n in zip(Lane, sizes, strict=True)}


def _flatten(fields: Mapping[str, object]) -> list[str]:
    return [str(x) for pair in fields.items() for x in pair]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _read_job(raw_id: Any, names: Sequence[str], values: Sequence[Any]) -> Job:
    """A claimed job from its hash: `values` of `names`, or the whole hash (flat) without names."""
    if names:
        raw = {k: _text(v) for k, v in zip(names, values, strict=True) if v is not None}
    else:
        raw = {_text(k): _text(v) for k, v in zip(values[0::2], values[1::2], strict=True)}
    raw["id"] = _text(raw_id)
    return Job.from_fields(raw)


def _decode(raw: Mapping[Any, Any]) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in raw.items()}
