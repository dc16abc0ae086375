"""The three lanes a job moves through, and the leased claims on their jobs.

Each lane is a ZSET of job id → time it is next due (ms):
  submit  post the parent message, then create the provider task
  poll    ask the provider how the task is doing
  send    post the one final reply in the thread
Claiming an id sets its score to the lease deadline and records an owner token, in one Lua script that
also reads the job, so two processes never work on the same job at once and a crashed process's jobs come
back when its lease runs out. Every change after a claim is a script that first checks the token, so a
process that lost its lease cannot overwrite newer work. Time comes from Redis (`TIME`), never from the
processes' clocks. Jobs enter a lane, and are changed from outside a claim (cancel, confirm, a webhook's
nudge), through bot.jobs.records.
Every key is named in bot.jobs.keys (all share one hash tag, so the scripts also work on Redis Cluster).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from bot.jobs import codec
from bot.jobs.codec import FINISHED_BOOKKEEPING, FINISHED_DROPS, ZERO_DEFAULTS, Moment
from bot.jobs.keys import JOB, job_key, lease_key, lock_key, queue_key
from bot.jobs.model import Job
from bot.jobs.scripts import NOW_MS, Batched, flatten, text

if TYPE_CHECKING:  # bot.jobs.decisions imports Lane from here
    from bot.jobs.decisions import Decision

log = logging.getLogger(__name__)

FINISHED_JOB_TTL_SECONDS = 7 * 24 * 3600
NOW = "$now"  # placeholder for Redis time in update() values


class Lane(StrEnum):
    SUBMIT = "submit"
    POLL = "poll"
    SEND = "send"


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


class QueueWatch:
    """This process's news of its jobs, made first by the composition root and handed to whoever tells or
    listens, so that no part is wired into another after construction:
    - `queued`: a write of this process made a job due in a lane (a step's reschedule or hand-over, a
      cancel, a confirm, a webhook's nudge, a rate turn passed on), with the delay in ms. The worker
      listens, so it knows when a lane is next due without asking Redis (bot/lanes/worker.py);
    - `new_job`: the intake stored a new job: the worker claims the submit lane at once;
    - `woken`: a webhook made a job due now in a lane (its task has ended): the worker claims that lane at
      once, without the spacing that batches claims, and then the job's next lane too;
    - `ended`: a job's end was applied and its reply sent: App Home refreshes its requester's tab;
    - `stepped`: a step's decision on a job was applied (the terminal dub's display follows its job so).
    A program without a worker (or without a Home) has no listener for those."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[Lane, int], None]] = []
        self._new_job: list[Callable[[], None]] = []
        self._woken: list[Callable[[Lane, str], None]] = []
        self._ended: list[Callable[[Job], None]] = []
        self._stepped: list[Callable[[Lane, Job, Decision], None]] = []

    def listen(self, listener: Callable[[Lane, int], None]) -> None:
        self._listeners.append(listener)

    def listen_new_job(self, listener: Callable[[], None]) -> None:
        self._new_job.append(listener)

    def listen_woken(self, listener: Callable[[Lane, str], None]) -> None:
        self._woken.append(listener)

    def listen_ended(self, listener: Callable[[Job], None]) -> None:
        self._ended.append(listener)

    def listen_stepped(self, listener: Callable[[Lane, Job, Decision], None]) -> None:
        self._stepped.append(listener)

    def queued(self, lane: Lane, delay_ms: int) -> None:
        for listener in self._listeners:
            listener(lane, delay_ms)

    def new_job(self) -> None:
        for listener in self._new_job:
            listener()

    def woken(self, lane: Lane, job_id: str) -> None:
        for listener in self._woken:
            listener(lane, job_id)

    def ended(self, job: Job) -> None:
        for listener in self._ended:
            listener(job)

    def stepped(self, lane: Lane, job: Job, decision: Decision) -> None:
        for listener in self._stepped:
            listener(lane, job, decision)


# KEYS: queue and lease of each lane, in pairs. ARGV: lease_ms, token, job key prefix, then per lane: limit,
# early_ms, how many fields to read (0: all), their names. Claims the jobs due now, and those due within
# early_ms unless leased (a lease is never cut short). Returns {now, per lane: {next due or false, {ids of
# vanished jobs}, id, {fields}, id, {fields}...}}. Reading the jobs in the same script means no job can
# vanish between being claimed and being read; one whose hash is gone leaves its lane instead. Job keys
# are built here from the prefix (keys.JOB): they share the hash tag with KEYS, so this holds on Cluster too.
_CLAIM_JOBS = (
    NOW_MS
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
# empty ('' for none), n, n field names to drop, field/value pairs, then the names of the fields to drop
# when '0' (space-separated; '' for none). mode: 'stay' reschedules in the
# same lane, 'move' hands over to another lane, 'done' drops it. Returns 1, 0 if the claim is lost, -1 (and
# changes nothing) if the field is set: a job cancelled while its step ran does not go back to wait.
# With fields to drop (a job's end), the hash is rewritten without them, without empty values and without
# the fields named in the last ARGV entry (space-separated) whose value is '0' (their default): a hash that
# once held a long value keeps Redis's big encoding until it is written afresh.
_TRANSITION = (
    NOW_MS
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
redis.call('HSET', KEYS[3], 'UPDATED_MS', now, unpack(ARGV, 8 + ndrop, #ARGV - 1))
if ndrop > 0 then
  local drop, zero, kept, all = {}, {}, {}, redis.call('HGETALL', KEYS[3])
  for i = 8, 7 + ndrop do drop[ARGV[i]] = true end
  for name in string.gmatch(ARGV[#ARGV], '%S+') do zero[name] = true end
  for i = 1, #all, 2 do
    if not drop[all[i]] and all[i + 1] ~= '' and not (zero[all[i]] and all[i + 1] == '0') then
      kept[#kept + 1] = all[i]
      kept[#kept + 1] = all[i + 1]
    end
  end
  redis.call('DEL', KEYS[3])
  redis.call('HSET', KEYS[3], unpack(kept))
end
if tonumber(ARGV[5]) > 0 then redis.call('EXPIRE', KEYS[3], tonumber(ARGV[5])) end
return 1
""".replace("UPDATED_MS", codec.UPDATED_MS)
)

# KEYS: lease, job. ARGV: id, token, a field that must be empty ('' for none), then field/value pairs;
# '$now' as a value means Redis time. Returns Redis time, 0 if the claim is lost, -1 if the field is set.
_UPDATE = (
    NOW_MS
    + """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
if ARGV[3] ~= '' and (redis.call('HGET', KEYS[2], ARGV[3]) or '') ~= '' then return -1 end
local pairs_ = {}
for i = 4, #ARGV do
  if ARGV[i] == '$now' then pairs_[#pairs_ + 1] = now else pairs_[#pairs_ + 1] = ARGV[i] end
end
redis.call('HSET', KEYS[2], 'UPDATED_MS', now, unpack(pairs_))
return now
""".replace("UPDATED_MS", codec.UPDATED_MS)
)

# KEYS: queue, lease, lock. ARGV: id, token, lease_ms. Pushes our lease deadline out, if the claim is
# still ours, and with it a lock we hold under the same token (an asset upload lock).
_EXTEND = (
    NOW_MS
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
    NOW_MS
    + """
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[1], 'XX', now, ARGV[1])
return 1
"""
)


class Lanes:
    """Claims of due jobs, and the transitions of a claimed job: stay, move on, or finish."""

    def __init__(self, *, redis: Redis, watch: QueueWatch, worker_id: str | None = None) -> None:
        self.redis = redis
        self.watch = watch
        self.worker_id = worker_id or secrets.token_hex(4)
        self._counter = itertools.count(1)
        self._claim_jobs = redis.register_script(_CLAIM_JOBS)
        # A poll's transition is most of its Redis cost: those of one event-loop turn share a round trip.
        self._transition = Batched(redis=redis, script=redis.register_script(_TRANSITION))
        self._update = redis.register_script(_UPDATE)
        self._extend = redis.register_script(_EXTEND)
        self._release = redis.register_script(_RELEASE)

    def new_token(self) -> str:
        # Unique per claim, so a process that re-claims after losing a lease is not its old self.
        return f"{self.worker_id}:{next(self._counter)}"

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
                log.warning("job %s: its record is gone; dropped from the %s lane", text(job_id), lane)
            jobs = claimed.jobs[lane] = []
            for raw_id, values in zip(found[0::2], found[1::2], strict=True):
                try:
                    jobs.append(_read_job(raw_id, names[lane], values))
                except (ValueError, TypeError) as exc:  # not ours to fix: left alone until its lease ends
                    log.error("job %r: unreadable record in the %s lane, skipped: %s", raw_id, lane, exc)
        return claimed

    async def reschedule(
        self, lane: Lane, job: Job, token: str, delay_ms: int, unless_cancelled: bool = False
    ) -> None:
        """Come back to `lane` in `delay_ms`, writing what the step changed in the job. With
        `unless_cancelled`, nothing changes and Cancelled is raised if someone asked to cancel the job
        meanwhile, in the same script."""
        await self._apply(lane, lane, job, token, "stay", delay_ms, 0, unless_cancelled=unless_cancelled)

    async def move(
        self,
        source: Lane,
        target: Lane,
        job: Job,
        token: str,
        delay_ms: int = 0,
        unless_cancelled: bool = False,
    ) -> None:
        """Hand the job over to `target`, due in `delay_ms`; `unless_cancelled` as for `reschedule`."""
        await self._apply(source, target, job, token, "move", delay_ms, 0, unless_cancelled=unless_cancelled)

    async def finish(self, lane: Lane, job: Job, token: str) -> None:
        """Drop the job from its last lane. What it was and how it ended stay a week, for support
        questions; what only served to get there (codec.FINISHED_DROPS, codec.FINISHED_BOOKKEEPING) goes,
        and so do fields at their default ("", 0)."""
        drops = (*FINISHED_DROPS, *FINISHED_BOOKKEEPING)
        await self._apply(
            lane, lane, job, token, "done", 0, FINISHED_JOB_TTL_SECONDS, drops, drop_zero=ZERO_DEFAULTS
        )

    async def update(
        self, lane: Lane, job: Job, token: str, stamp: Moment | None = None, unless_cancelled: bool = False
    ) -> int:
        """Write what the step changed in the job while keeping the claim (a mark that must be durable in
        the middle of a step), and the Redis time `stamp` names; returns that time in ms. With
        `unless_cancelled`, nothing is written, the job's unwritten changes are undone and Cancelled is
        raised if someone asked to cancel the job meanwhile, in the same script."""
        changed = codec.changes(job)
        fields: dict[str, object] = dict(changed)
        if stamp is not None:
            fields[stamp.value] = NOW
        unless = codec.CANCEL_BY if unless_cancelled else ""
        now = await self._update(
            keys=[lease_key(lane), job_key(job.id)], args=[job.id, token, unless, *flatten(fields)]
        )
        if not now:
            raise LeaseLost(job.id)
        if int(now) < 0:
            codec.restore(job)
            raise Cancelled(job.id)
        codec.saved(job, changed, int(now), stamp)
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

    async def release(self, lane: Lane, job_id: str, token: str) -> bool:
        """Hand a claimed job back, due now (this process is stopping); False if the claim was lost."""
        return bool(await self._release(keys=[queue_key(lane), lease_key(lane)], args=[job_id, token]))

    async def _apply(
        self,
        source: Lane,
        target: Lane,
        job: Job,
        token: str,
        mode: str,
        delay_ms: int,
        ttl_s: int,
        drop: Sequence[str] = (),
        unless_cancelled: bool = False,
        drop_zero: Sequence[str] = (),
    ) -> None:
        keys = [queue_key(source), lease_key(source), job_key(job.id), queue_key(target)]
        delay_ms = max(0, int(delay_ms))
        changed = codec.changes(job)
        args: list[str | int] = [
            job.id,
            token,
            mode,
            delay_ms,
            ttl_s,
            codec.CANCEL_BY if unless_cancelled else "",
            len(drop),
            *drop,
            *flatten(changed),
            " ".join(drop_zero),
        ]
        done = int(await self._transition(keys=keys, args=args))
        if not done:
            raise LeaseLost(job.id)
        if done < 0:
            raise Cancelled(job.id)
        codec.saved(job, changed)
        if mode != "done":
            self.watch.queued(target, delay_ms)

    async def counts(self) -> dict[str, int]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for lane in Lane:
                pipe.zcard(queue_key(lane))
            sizes = await pipe.execute()
        return {lane.value: int(n) for lane, n in zip(Lane, sizes, strict=True)}


def _read_job(raw_id: Any, names: Sequence[str], values: Sequence[Any]) -> Job:
    """A claimed job from its hash: `values` of `names`, or the whole hash (flat) without names."""
    if names:
        raw = {k: text(v) for k, v in zip(names, values, strict=True) if v is not None}
    else:
        raw = {text(k): text(v) for k, v in zip(values[0::2], values[1::2], strict=True)}
    raw[codec.ID] = text(raw_id)
    return codec.from_fields(raw)
