"""Job records: a new job written whole and queued, a job read, and the changes made to a job from outside
a claim (a person's cancel or confirm, a webhook's nudge or delivered result).

A new job is written in one script with everything that finds it later: its lane, its dedupe marker (a
Slack request delivered twice makes one job), its requester's index and its short id (bot.jobs.indexes
reads those). Steps change a job only under their claim (bot.jobs.lanes); the scripts here check the
job's lanes and leases themselves, so they never race a step.
Every key is named in bot.jobs.keys.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from redis.asyncio import Redis

from bot.jobs import codec
from bot.jobs.indexes import USER_JOBS_KEPT
from bot.jobs.keys import job_key, lease_key, queue_key, seen_key, short_ids_key, user_jobs_key
from bot.jobs.lanes import FINISHED_JOB_TTL_SECONDS, Lane, QueueWatch
from bot.jobs.marks import DEDUPE_TTL_SECONDS
from bot.jobs.model import SHORT_ID_LENGTH, Confirmation, CreateState, Job, Status, short_id
from bot.jobs.scripts import NOW_MS, Batched, decode, flatten, named, text

# KEYS: job, submit queue, dedupe marker, the requester's job index, the day's short ids. ARGV: id, dedupe
# ttl, index ttl, jobs kept per index, then field/value pairs. The marker makes a second delivery of the
# same Slack request a no-op, in the same atomic step that writes the job, so there is no moment where a
# request is marked seen but has no job. The index (newest last) serves `/lipsync list` and App Home; the
# short id (`jobs.short_id`, the id's last characters) finds the job when someone types it: the day's hash
# maps it to the rest of the id, and lasts a day longer than the index (it holds a whole day's jobs).
_CREATE = (
    NOW_MS
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if tonumber(ARGV[2]) > 0 then
  if not redis.call('SET', KEYS[3], ARGV[1], 'NX', 'EX', tonumber(ARGV[2])) then return 0 end
end
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('HSET', KEYS[1], 'CREATED_MS', now, 'UPDATED_MS', now)
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('ZADD', KEYS[4], now, ARGV[1])
redis.call('ZREMRANGEBYRANK', KEYS[4], 0, -tonumber(ARGV[4]) - 1)
redis.call('EXPIRE', KEYS[4], tonumber(ARGV[3]))
local short = string.sub(ARGV[1], -SHORT_ID_LENGTH)
redis.call('HSET', KEYS[5], short, string.sub(ARGV[1], 1, #ARGV[1] - #short))
redis.call('EXPIRE', KEYS[5], tonumber(ARGV[3]) + 86400)
return now
""".replace("SHORT_ID_LENGTH", str(SHORT_ID_LENGTH))
    .replace("CREATED_MS", codec.CREATED_MS)
    .replace("UPDATED_MS", codec.UPDATED_MS)
)

# KEYS: job, submit queue, submit lease, poll queue, poll lease, send queue. ARGV: id, who. Cancels a job:
# one waiting in submit or poll (no step running on it) ends at once, queued for its reply; one a step is
# working on gets `cancel_by`, and ends as soon as that step's decision is applied (the transition refuses
# to put it back to wait, bot/lanes/pipeline.py `Pipeline.apply`). Returns what happened.
_CANCEL = (
    NOW_MS
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 'gone' end
local status = redis.call('HGET', KEYS[1], 'STATUS') or 'QUEUED'
if (status ~= 'QUEUED' and status ~= 'PROCESSING') or redis.call('ZSCORE', KEYS[6], ARGV[1]) then
  return 'over'
end
redis.call('HSET', KEYS[1], 'CANCEL_BY', ARGV[2], 'UPDATED_MS', now)
for q = 2, 4, 2 do
  if redis.call('ZSCORE', KEYS[q], ARGV[1]) and redis.call('HEXISTS', KEYS[q + 1], ARGV[1]) == 0 then
    local sent = redis.call('HGET', KEYS[1], 'CREATE_STATE') == 'ATTEMPTED' or q == 4
    redis.call('ZREM', KEYS[q], ARGV[1])
    redis.call('HSET', KEYS[1], 'STATUS', 'CANCELLED', 'ERRORS', 0)
    redis.call('ZADD', KEYS[6], now, ARGV[1])
    if sent then return 'cancelled_at_provider' end
    return 'cancelled'
  end
end
return 'pending'
"""
)
_CANCEL = named(
    _CANCEL,
    {
        "CANCEL_BY": codec.CANCEL_BY,
        "CREATE_STATE": codec.CREATE_STATE,
        "ATTEMPTED": CreateState.ATTEMPTED,
        "STATUS": codec.STATUS,
        "QUEUED": Status.QUEUED,
        "PROCESSING": Status.PROCESSING,
        "CANCELLED": Status.CANCELLED,
        "ERRORS": codec.ERRORS,
        "UPDATED_MS": codec.UPDATED_MS,
    },
)

# KEYS: poll queue, poll lease. ARGV: job id. A webhook said the job's task is done: make its next poll
# due now, unless it is being polled right now (leased) or is not waiting in the poll lane at all.
_NUDGE = (
    NOW_MS
    + """
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 0 end
local due = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not due then return 0 end
if tonumber(due) > now then redis.call('ZADD', KEYS[1], 'XX', now, ARGV[1]) end
return 1
"""
)

# KEYS: job, poll queue, poll lease. ARGV: job id, task id, the task's end (text). A signed webhook stated
# how the job's task ended: keep it with the job, once, for the poll step to take instead of a GET, and make
# the job due now unless it is being polled right now (that poll's decision stands; if it stays, the next
# poll takes the delivery). Nothing changes for a job that is not waiting in the poll lane on this very
# task (ended, cancelled, handed to send) or that has a delivery already (a repeated webhook).
_DELIVER = (
    NOW_MS
    + """
if redis.call('HGET', KEYS[1], 'TASK_ID') ~= ARGV[2] then return 'other' end
local due = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not due or (redis.call('HGET', KEYS[1], 'CANCEL_BY') or '') ~= '' then return 'over' end
if redis.call('HSETNX', KEYS[1], 'DELIVERED', ARGV[3]) == 0 then return 'already' end
redis.call('HSET', KEYS[1], 'UPDATED_MS', now)
if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then return 'held' end
if tonumber(due) > now then redis.call('ZADD', KEYS[2], 'XX', now, ARGV[1]) end
return 'now'
"""
)
_DELIVER = named(
    _DELIVER,
    {
        "TASK_ID": codec.TASK_ID,
        "CANCEL_BY": codec.CANCEL_BY,
        "DELIVERED": codec.DELIVERED,
        "UPDATED_MS": codec.UPDATED_MS,
    },
)

# KEYS: job, submit queue, submit lease. ARGV: id, who. The requester agreed to a quote: note it, and
# make the job due now unless a step holds it (that step looks again within seconds, bot/lanes/gate.py).
_CONFIRM = (
    NOW_MS
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 'gone' end
local state = redis.call('HGET', KEYS[1], 'CONFIRMATION') or ''
if state == 'CONFIRMED' then return 'already' end
local status = redis.call('HGET', KEYS[1], 'STATUS') or 'QUEUED'
if state ~= 'ASKED' or status ~= 'QUEUED' or (redis.call('HGET', KEYS[1], 'CANCEL_BY') or '') ~= '' then
  return 'over'
end
redis.call('HSET', KEYS[1], 'CONFIRMATION', 'CONFIRMED', 'UPDATED_MS', now)
if redis.call('ZSCORE', KEYS[2], ARGV[1]) and redis.call('HEXISTS', KEYS[3], ARGV[1]) == 0 then
  redis.call('ZADD', KEYS[2], 'XX', now, ARGV[1])
  return 'now'
end
return 'confirmed'
"""
)
_CONFIRM = named(
    _CONFIRM,
    {
        "CONFIRMATION": codec.CONFIRMATION,
        "CONFIRMED": Confirmation.CONFIRMED,
        "ASKED": Confirmation.ASKED,
        "CANCEL_BY": codec.CANCEL_BY,
        "STATUS": codec.STATUS,
        "QUEUED": Status.QUEUED,
        "UPDATED_MS": codec.UPDATED_MS,
    },
)


_CREATE_DEFAULTS = codec.to_fields(Job(id=""))  # what a new job need not write (Redis sets its two times)


class JobRecords:
    """Jobs written, read, and changed from outside a claim."""

    def __init__(self, *, redis: Redis, watch: QueueWatch) -> None:
        self.redis = redis
        self.watch = watch
        # The ack path: a burst of commands stores its jobs in one round trip.
        self._create = Batched(redis=redis, script=redis.register_script(_CREATE))
        self._cancel = redis.register_script(_CANCEL)
        self._confirm = redis.register_script(_CONFIRM)
        self._nudge = redis.register_script(_NUDGE)
        self._deliver = redis.register_script(_DELIVER)

    async def create(
        self,
        job: Job,
        lane: Lane = Lane.SUBMIT,
        dedupe: str = "",
        dedupe_ttl_s: int = DEDUPE_TTL_SECONDS,
    ) -> bool:
        """Store a new job and queue it now. False, with nothing changed, if a job with that id exists or
        a job was already created for the same `dedupe` key (a Slack request delivered twice) within
        `dedupe_ttl_s`."""
        # Fields at their default are left out: they read back as the default, and a create with fewer
        # arguments costs less CPU on the ack path (bench/ack_latency.py) and less memory in Redis.
        fields = {k: v for k, v in codec.to_fields(job).items() if _CREATE_DEFAULTS.get(k) != v}
        args: list[str | int] = [
            job.id,
            dedupe_ttl_s if dedupe else 0,
            FINISHED_JOB_TTL_SECONDS,
            USER_JOBS_KEPT,
            *flatten(fields),
        ]
        keys = [
            job_key(job.id),
            queue_key(lane),
            seen_key(dedupe),
            user_jobs_key(job.identity.team, job.identity.person),
            short_ids_key(time.strftime("%Y%m%d", time.gmtime()), short_id(job.id)),
        ]
        created = await self._create(keys=keys, args=args)
        if created:
            job.progress.created_ms = job.progress.updated_ms = int(created)
            times = {codec.CREATED_MS: str(int(created)), codec.UPDATED_MS: str(int(created))}
            codec.saved(job, {**fields, **times})
        return bool(created)

    async def get(self, job_id: str) -> Job | None:
        raw = await self.redis.hgetall(job_key(job_id))
        # An ended job's hash no longer holds its id (bot.jobs.codec.FINISHED_BOOKKEEPING): its key does.
        return codec.from_fields({**decode(raw), codec.ID: job_id}) if raw else None

    async def get_many(self, job_ids: Sequence[str]) -> list[Job]:
        """The jobs that still exist, in the order asked."""
        if not job_ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hgetall(job_key(job_id))
            raws = await pipe.execute()
        return [
            codec.from_fields({**decode(raw), codec.ID: job_id})
            for job_id, raw in zip(job_ids, raws, strict=True)
            if raw
        ]

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
        outcome = text(await self._cancel(keys=keys, args=[job_id, who]))
        if outcome.startswith("cancelled"):
            self.watch.queued(Lane.SEND, 0)
        return outcome

    async def confirm(self, job_id: str) -> str:
        """The requester agreed to the job's quote. Returns `now` or `confirmed` (it goes on), `already`,
        `over` (expired, cancelled, not asked) or `gone`."""
        keys = [job_key(job_id), queue_key(Lane.SUBMIT), lease_key(Lane.SUBMIT)]
        outcome = text(await self._confirm(keys=keys, args=[job_id]))
        if outcome == "now":
            self.watch.queued(Lane.SUBMIT, 0)
        return outcome

    async def nudge_poll(self, job_id: str) -> bool:
        """Make a polled job's next poll due now, and this process's worker poll it at once; False when it
        is not waiting in the poll lane."""
        nudged = bool(await self._nudge(keys=[queue_key(Lane.POLL), lease_key(Lane.POLL)], args=[job_id]))
        if nudged:
            self.watch.woken(Lane.POLL, job_id)
        return nudged

    async def deliver(self, job_id: str, task_id: str, ended: str) -> str:
        """Keep how the job's task ended (`ended`, a signed webhook's result) with the job, for its poll
        step, and have this process's worker take it at once. Returns `now` (kept, due now), `held` (kept;
        a poll is under way), `already` (a delivery was kept before: nothing changes), `over` (the job is
        not waiting for this task: ended, cancelled or handed on) or `other` (no such job or task)."""
        keys = [job_key(job_id), queue_key(Lane.POLL), lease_key(Lane.POLL)]
        outcome = text(await self._deliver(keys=keys, args=[job_id, task_id, ended]))
        if outcome == "now":
            self.watch.woken(Lane.POLL, job_id)
        return outcome
