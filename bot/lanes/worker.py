"""Each bot process's ticker: claim due jobs from Redis and run their next step.

APScheduler only says "tick now" (an in-memory interval job); who works on which job is decided by the
leased claims in Redis, so any number of processes can run side by side. A tick claims every lane (one
script for all three): it is how a process sees work that others queued. `kick()` claims the submit lane
at once when this process has just queued a new job, so a new command does not wait for the next tick.

Between ticks a lane is claimed only when work is known to be waiting in it, always in batches:
  * refill: a lane that had more jobs due than its free slots is refilled as its steps finish, once a
    quarter of its slots are free. Slots freed by fast steps are reused within milliseconds instead of
    waiting for the next tick, which would cap a lane at CAPACITY steps per tick.
  * when due: the worker knows when each lane is next due: every claim returns the lane's earliest
    score, and every step that queues a job (a reschedule, or a finished render handed to "send") tells
    the worker the lane and the delay (`bot.jobs.lanes.QueueWatch`). One timer claims the lanes that are due,
    at the earliest such time, so a reply queued at 12:00:05.3 is sent then, not at the next whole tick.
    A lane is claimed at most every FAST_TICK_SECONDS, so jobs coming due one after another are claimed
    together. Polls are claimed up to `Timing.poll_early_ms` early (0.5 s by default) and the poll lane
    at most that often: a steady stream of polls due at 30 s intervals goes out in batches, none late.
A lane with nothing due is not claimed between ticks: nothing spins, and long-running jobs polled every
30 s cost no claims of the other lanes.
  * woken: a webhook said a job's task has ended (`QueueWatch.woken`): its lane is claimed at once, not
    after the lane's spacing, and when its step is done the send lane too, so the reply follows the
    delivery within milliseconds. Webhooks are few (one per task), so this costs few claims.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from redis.asyncio import Redis
from redis.exceptions import RedisError

from bot.jobs import codec
from bot.jobs.decisions import Decision, Done, Stay, backoff_ms, finish
from bot.jobs.lanes import Lane, Lanes, LeaseLost, QueueWatch
from bot.jobs.model import Job, PostState, Status
from bot.lanes.pipeline import Pipeline
from bot.observe.logs import job_context
from bot.retry import Backoff

log = logging.getLogger(__name__)

POLL_GRACE_SECONDS = 1.0  # at stop: how long a poll under way may finish before it is handed back

# Steps in flight at once per lane, per process. Polls are light GETs; submissions are rate limited anyway.
CAPACITY = {Lane.SUBMIT: 20, Lane.POLL: 200, Lane.SEND: 20}
MAX_INTERNAL_ERRORS = 10
# While Redis does not answer, claims wait (up to) 0.5 s, doubling with each failure in a row up to 10 s.
REDIS_DOWN = Backoff(base_s=0.5, cap_s=10.0)
# Refill a lane between ticks once this share of its slots is free (and more jobs were due than it took).
REFILL_FRACTION = 0.25
# Claims of a lane when its jobs come due are at least this far apart (or the lane's early window, if
# longer), so jobs coming due one after another are claimed in batches, not one script each.
FAST_TICK_SECONDS = 0.2
# A claim for a due time is sent this much after it: our clock and Redis's may drift apart a little, and a
# claim that comes too early finds nothing and waits FAST_TICK_SECONDS more.
DUE_MARGIN_SECONDS = 0.002
# What each lane's steps read of their jobs; other lanes read the whole job.
CLAIM_FIELDS = {Lane.POLL: codec.POLL_FIELDS}
# How often a process looks for stored Slack deliveries whose processing never finished
# (bot/requests/shares.py).
RECOVER_INTERVAL_SECONDS = 1.0
# Every step in flight may be waiting on Redis at once (plus the claim, upload heartbeats and Slack
# requests): redis-py's asyncio pool refuses the 101st connection by default, failing the step.
REDIS_CONNECTIONS = sum(CAPACITY.values()) + CAPACITY[Lane.SUBMIT] + 64
# A woken job's step hands it on to the send lane at once for this long (another process may have taken
# it meanwhile: then it is forgotten), and that many woken jobs are remembered before the stale go.
WOKEN_FOR_SECONDS = 30.0
WOKEN_KEPT = 1000


class Worker:
    def __init__(
        self,
        *,
        lanes: Lanes,
        watch: QueueWatch,
        pipeline: Pipeline,
        lease_ms: int,
        tick_seconds: float,
        poll_early_ms: int = 0,
        recover_shares: Callable[[int], Awaitable[int]] | None = None,
    ) -> None:
        self.lanes = lanes
        self.pipeline = pipeline
        self.lease_ms = lease_ms
        self.tick_seconds = tick_seconds
        self.redis_ok = True
        self._redis_failures = 0
        self._redis_retry_at = 0.0
        self.steps_done: Counter[str] = Counter()  # per lane, for /healthz and for seeing work spread
        self._in_flight: dict[Lane, set[asyncio.Task[None]]] = {lane: set() for lane in Lane}
        self._claims: dict[asyncio.Task[None], tuple[Lane, str, str]] = {}  # step → (lane, job, token)
        self._tick_lock = asyncio.Lock()
        self._again: set[Lane] = set()  # lanes to claim again once the claim in progress is done
        self._backlog: set[Lane] = set()  # lanes that had more jobs due than free slots at their claim
        self._refill_pending: set[Lane] = set()  # lanes with a refill claim on its way
        self._claimers: set[asyncio.Task[None]] = set()  # kicks and refills (keep them referenced)
        # When each lane is next known to be due (event loop time; inf: nothing known before the next
        # tick), when it was last claimed, how early its jobs may be claimed (s), and the one timer.
        self._due_at: dict[Lane, float] = dict.fromkeys(Lane, math.inf)
        self._claimed_at: dict[Lane, float] = dict.fromkeys(Lane, -math.inf)
        self._early_ms: dict[Lane, int] = {Lane.POLL: poll_early_ms} if poll_early_ms else {}
        self._due_timer: asyncio.TimerHandle | None = None
        self._stopping = False
        self._scheduler: AsyncIOScheduler | None = None
        # Process shares left in the inbox by a process that died (bot/requests/shares.py); None: a
        # program (or test) that takes no shares.
        self.recover_shares = recover_shares
        self._recovering: asyncio.Task[None] | None = None
        self._recovered_at = 0.0
        # Jobs a webhook woke (job id → until when): their step's end claims the send lane at once.
        self._woken: dict[str, float] = {}
        watch.listen(self._queued)
        watch.listen_new_job(self.kick)
        watch.listen_woken(self._wake)
        _ensure_redis_connections(lanes.redis, REDIS_CONNECTIONS)

    async def start(self) -> None:
        self._scheduler = AsyncIOScheduler()
        self._scheduler.add_job(
            self._scheduled_tick,
            "interval",
            seconds=self.tick_seconds,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(5, int(self.tick_seconds * 5)),
        )
        self._scheduler.start()
        self._spawn_claim(tuple(Lane))

    async def stop(self, grace_seconds: float = 5.0) -> None:
        self._stopping = True  # no new claims: steps finishing in the grace period must not refill
        if self._due_timer is not None:
            self._due_timer.cancel()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
        if self._recovering is not None:
            await asyncio.wait([self._recovering], timeout=grace_seconds)
        if self._claimers:
            # A claim already sent starts its steps, so they are waited for below like the others.
            await asyncio.wait(list(self._claimers), timeout=grace_seconds)
        # A poll only reads, so one still waiting after a moment is stopped and handed back at once; steps
        # that may be creating or posting get the whole grace to finish. What is stopped is handed back
        # due now for another process, as after a crash (every step reconciles what it may have done).
        polls = list(self._in_flight[Lane.POLL])
        if polls:
            await self._hand_back(polls, min(POLL_GRACE_SECONDS, grace_seconds))
        others = [t for lane in (Lane.SUBMIT, Lane.SEND) for t in self._in_flight[lane]]
        if others:
            await self._hand_back(others, grace_seconds)

    async def _hand_back(self, tasks: list[asyncio.Task[None]], grace_seconds: float) -> None:
        """Wait up to `grace_seconds` for these steps; stop the rest and release their claims."""
        _, pending = await asyncio.wait(tasks, timeout=grace_seconds)
        if not pending:
            return
        claims = [self._claims[task] for task in pending if task in self._claims]
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=grace_seconds)
        for lane, job_id, token in claims:
            with contextlib.suppress(RedisError):
                if await self.lanes.release(lane, job_id, token):
                    log.info("job %s: handed back from %s at stop", job_id, lane)

    def kick(self) -> None:
        """A new job was just queued (in the submit lane, as every new job is): claim it now."""
        self._spawn_claim((Lane.SUBMIT,))

    def _wake(self, lane: Lane, job_id: str) -> None:
        """A webhook made `job_id` due now in `lane` (bot.jobs.records): claim the lane now."""
        now = time.monotonic()
        if len(self._woken) >= WOKEN_KEPT:
            self._woken = {job: until for job, until in self._woken.items() if until > now}
        self._woken[job_id] = now + WOKEN_FOR_SECONDS
        self._spawn_claim((lane,))

    @property
    def busy(self) -> int:
        return sum(len(group) for group in self._in_flight.values())

    async def tick(self) -> None:
        await self._claim(tuple(Lane))

    async def _scheduled_tick(self) -> None:
        # Returns at once: a claim loop kept busy by refills must not look like an overrunning tick.
        self._spawn_claim(tuple(Lane))
        self._spawn_recovery()

    def _spawn_recovery(self) -> None:
        now = time.monotonic()
        busy = self._recovering is not None and not self._recovering.done()
        if busy or self.recover_shares is None or self._stopping or now < self._redis_retry_at:
            return
        if now - self._recovered_at < RECOVER_INTERVAL_SECONDS:
            return
        self._recovered_at = now
        self._recovering = asyncio.get_running_loop().create_task(self._recover())

    async def _recover(self) -> None:
        assert self.recover_shares is not None
        try:
            await self.recover_shares(self.lease_ms)
        except RedisError as exc:  # the entries stay stored; the next round tries again
            log.debug("could not recover stored shares: %s", exc)
        except Exception:
            log.exception("unexpected error while recovering stored shares")

    async def _claim(self, lanes: tuple[Lane, ...]) -> None:
        if self._tick_lock.locked():
            self._again.update(lanes)  # a claim is running; make it go round once more for these
            return
        async with self._tick_lock:
            pending = set(lanes)
            while pending and not self._stopping:
                self._again = set()
                await self._claim_lanes([lane for lane in Lane if lane in pending])
                pending = self._again

    async def _claim_lanes(self, lanes: list[Lane]) -> None:
        if time.monotonic() < self._redis_retry_at:
            return  # Redis was down a moment ago: back off instead of hammering it every tick
        loop = asyncio.get_running_loop()
        limits = {}
        for lane in lanes:
            self._refill_pending.discard(lane)
            self._due_at[lane] = math.inf  # learnt afresh from this claim (steps may lower it meanwhile)
            self._claimed_at[lane] = loop.time()
            limits[lane] = CAPACITY[lane] - len(self._in_flight[lane])  # 0: only learn when it is due
        try:
            claimed = await self.lanes.claim_lanes(limits, self.lease_ms, CLAIM_FIELDS, self._early_ms)
        except RedisError as exc:
            if self.redis_ok:
                log.error("Redis is unreachable (%s); will keep retrying", exc)
            self.redis_ok = False
            self._redis_failures += 1
            self._redis_retry_at = time.monotonic() + REDIS_DOWN.delay_s(self._redis_failures)
            self._backlog.clear()  # no refills while Redis is down; every claim waits for the backoff
            return
        except Exception as exc:  # a claim round must never die: the next tick claims again
            log.error("claiming %s failed: %s: %s", "/".join(lanes), type(exc).__name__, exc)
            return
        if not self.redis_ok:
            log.info("Redis is reachable again")
        self.redis_ok, self._redis_failures = True, 0
        seen_at = loop.time()
        for lane in lanes:
            next_due = claimed.next_due_ms[lane]
            full = len(claimed.jobs[lane]) >= limits[lane]
            if full and next_due is not None and next_due <= claimed.now_ms + self._early_ms.get(lane, 0):
                self._backlog.add(lane)  # more due than free slots: refill as steps finish
            else:
                self._backlog.discard(lane)
                if next_due is not None:
                    self._due(lane, seen_at + (next_due - claimed.now_ms) / 1000)
            for job in claimed.jobs[lane]:
                task = asyncio.create_task(self._run(lane, job, claimed.token, claimed.now_ms))
                self._in_flight[lane].add(task)
                self._claims[task] = (lane, job.id, claimed.token)
                task.add_done_callback(functools.partial(self._step_done, lane))

    def _step_done(self, lane: Lane, task: asyncio.Task[None]) -> None:
        group = self._in_flight[lane]
        group.discard(task)
        claim = self._claims.pop(task, None)
        if claim is not None and lane is not Lane.SEND and self._woken.pop(claim[1], 0) > time.monotonic():
            self._spawn_claim((Lane.SEND,))  # a woken job's task has ended: its reply is due now
        if (
            lane in self._backlog
            and lane not in self._refill_pending
            and not self._stopping
            and CAPACITY[lane] - len(group) >= max(1, int(CAPACITY[lane] * REFILL_FRACTION))
        ):
            self._refill_pending.add(lane)
            self._spawn_claim((lane,))

    def _queued(self, lane: Lane, delay_ms: int) -> None:
        """A step of this process queued a job in `lane`, due in `delay_ms` (heard through QueueWatch)."""
        self._due(lane, asyncio.get_running_loop().time() + delay_ms / 1000)

    def _due(self, lane: Lane, at: float) -> None:
        if at < self._due_at[lane]:
            self._due_at[lane] = at
            self._arm()

    def _claim_time(self, lane: Lane) -> float:
        """When to claim `lane` next: when its first known job may be claimed (due, less the lane's
        early window), but not sooner than its spacing after its last claim."""
        early = self._early_ms.get(lane, 0) / 1000
        return max(self._due_at[lane] - early, self._claimed_at[lane] + max(FAST_TICK_SECONDS, early))

    def _arm(self) -> None:
        """Set the timer for the soonest lane's claim time, unless it is already set for sooner."""
        soonest = min(self._claim_time(lane) for lane in Lane)
        if self._stopping or soonest == math.inf:
            return
        at = soonest + DUE_MARGIN_SECONDS
        if self._due_timer is not None:
            if self._due_timer.when() <= at:
                return
            self._due_timer.cancel()
        self._due_timer = asyncio.get_running_loop().call_at(at, self._claim_due)

    def _claim_due(self) -> None:
        self._due_timer = None
        now = asyncio.get_running_loop().time()
        due = tuple(lane for lane in Lane if self._claim_time(lane) <= now)
        if due:
            self._spawn_claim(due)
        else:
            self._arm()  # the lanes it was set for were claimed meanwhile; wait for the next due one

    def _spawn_claim(self, lanes: tuple[Lane, ...]) -> None:
        if self._stopping:
            return
        claimer = asyncio.get_running_loop().create_task(self._claim(lanes))
        self._claimers.add(claimer)
        claimer.add_done_callback(self._claimers.discard)

    async def _run(self, lane: Lane, job: Job, token: str, now_ms: int) -> None:
        with job_context(job):
            await self._run_step(lane, job, token, now_ms)

    async def _run_step(self, lane: Lane, job: Job, token: str, now_ms: int) -> None:
        try:
            await self.pipeline.run(lane, job, token, now_ms)
            self.steps_done[lane.value] += 1
        except LeaseLost:
            log.info("job %s: lease lost in %s; another process has it", job.id, lane)
        except RedisError as exc:
            # The claim lapses by itself and the job comes back; nothing else to do.
            log.warning("job %s: Redis error in %s: %s", job.id, lane, exc)
        except Exception:
            log.exception("job %s: unexpected error in %s", job.id, lane)
            await self._after_bug(lane, job, token)

    async def _after_bug(self, lane: Lane, job: Job, token: str) -> None:
        """A bug must not lose the job nor loop on it forever: retry a few times, then end it."""
        codec.restore(job)  # what the step changed before it failed is not to be trusted
        errors = job.progress.errors + 1
        decision: Decision
        if errors < MAX_INTERNAL_ERRORS:
            job.progress.errors, job.progress.last_error = errors, "internal error"
            decision = Stay(backoff_ms(errors))
        elif lane is Lane.SEND:
            job.posts.reply.state = PostState.SKIPPED
            decision = Done()
        else:
            decision = finish(job, Status.FAILED, error_code="internal", error="internal error")
        try:
            await self.pipeline.apply(lane, job, token, decision)
        except (LeaseLost, RedisError) as exc:
            log.warning("job %s: could not record the error: %s", job.id, exc)


def _ensure_redis_connections(redis: Redis, needed: int) -> None:
    """Let the Redis client open a connection for every step that may be waiting on it at once."""
    pool = redis.connection_pool
    current = getattr(pool, "max_connections", None)
    if isinstance(current, int) and current < needed:
        pool.max_connections = needed
