"""Each bot process's ticker: claim due jobs from Redis and run their next step.

APScheduler only says "tick now" (an in-memory interval job); who works on which job is decided by the
leased claims in Redis, so any number of processes can run side by side. `kick()` ticks at once when this
process has just queued work, so a new command does not wait for the next tick.

Between ticks, claims also happen when work is known to be waiting, always in batches:
  * refill: a lane whose last claim came back full (so more jobs were already due) is refilled as its
    steps finish, once a quarter of its slots are free. Slots freed by fast steps are reused within
    milliseconds instead of waiting for the next tick, which would cap a lane at CAPACITY steps per
    tick. A claim that comes back short ends the refilling until the next tick.
  * after a step: FAST_TICK_SECONDS after steps end, every lane is claimed once, so a job a step has
    just handed to the next lane (a finished render going to "send") does not wait for a tick.
  * when due: after a claim comes back short, the lane's next due time is read (one pipelined ZRANGE
    for all lanes) and, if it comes before the next tick, a claim is set for then (but not sooner than
    FAST_TICK_SECONDS). A poll due at 12:00:05.3 is sent at 12:00:05.3, not at the next whole tick.
A process with nothing due before its next tick claims only on its ticks: nothing spins.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from redis.exceptions import RedisError

from bot.jobs import Job, PostState, Status
from bot.pipeline import Pipeline, backoff_ms
from bot.store import JobStore, Lane, LeaseLost, queue_key

log = logging.getLogger(__name__)

# Steps in flight at once per lane, per process. Polls are light GETs; submissions are rate limited anyway.
CAPACITY = {Lane.SUBMIT: 20, Lane.POLL: 200, Lane.SEND: 20}
MAX_INTERNAL_ERRORS = 10
# Refill a lane between ticks once this share of its slots is free (and its last claim came back full).
REFILL_FRACTION = 0.25
# Claims between ticks (after steps, or when a job comes due) are at least this far apart.
FAST_TICK_SECONDS = 0.2
# How often a process looks for stored Slack deliveries whose processing never finished (bot/shares.py).
RECOVER_INTERVAL_SECONDS = 1.0
# Every step in flight may be waiting on Redis at once (plus the claim, upload heartbeats and Slack
# requests): redis-py's asyncio pool refuses the 101st connection by default, failing the step.
REDIS_CONNECTIONS = sum(CAPACITY.values()) + CAPACITY[Lane.SUBMIT] + 64


class Worker:
    def __init__(self, store: JobStore, pipeline: Pipeline, lease_ms: int, tick_seconds: float) -> None:
        self.store = store
        self.pipeline = pipeline
        self.lease_ms = lease_ms
        self.tick_seconds = tick_seconds
        self.redis_ok = True
        self._redis_failures = 0
        self._redis_retry_at = 0.0
        self.steps_done: Counter[str] = Counter()  # per lane, for /healthz and for seeing work spread
        self._in_flight: dict[Lane, set[asyncio.Task[None]]] = {lane: set() for lane in Lane}
        self._tick_lock = asyncio.Lock()
        self._again: set[Lane] = set()  # lanes to claim again once the claim in progress is done
        self._backlog: set[Lane] = set()  # lanes whose last claim came back full: more may be due
        self._refill_pending: set[Lane] = set()  # lanes with a refill claim on its way
        self._claimers: set[asyncio.Task[None]] = set()  # kicks and refills (keep them referenced)
        self._next_claim: asyncio.TimerHandle | None = None  # one claim of every lane, set by _claim_soon
        self._stopping = False
        self._scheduler: AsyncIOScheduler | None = None
        # Set by the wiring: process shares left in the inbox by a process that died (bot/shares.py).
        self.recover_shares: Callable[[int], Awaitable[int]] | None = None
        self._recovering: asyncio.Task[None] | None = None
        self._recovered_at = 0.0
        _ensure_redis_connections(store, REDIS_CONNECTIONS)

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
        self.kick()

    async def stop(self, grace_seconds: float = 5.0) -> None:
        self._stopping = True  # no new claims: steps finishing in the grace period must not refill
        if self._next_claim is not None:
            self._next_claim.cancel()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
        if self._recovering is not None:
            await asyncio.wait([self._recovering], timeout=grace_seconds)
        if self._claimers:
            # A claim already sent starts its steps, so they are waited for below like the others.
            await asyncio.wait(list(self._claimers), timeout=grace_seconds)
        tasks = [t for group in self._in_flight.values() for t in group]
        if tasks:
            # Let steps that are mid-request finish; the rest come back to someone after their lease.
            _, pending = await asyncio.wait(tasks, timeout=grace_seconds)
            for task in pending:
                task.cancel()

    def kick(self) -> None:
        self._spawn_claim(tuple(Lane))

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
        short: list[Lane] = []  # lanes whose claim came back short: nothing more due right now
        now_ms = 0
        for lane in lanes:
            self._refill_pending.discard(lane)
            free = CAPACITY[lane] - len(self._in_flight[lane])
            if free <= 0:
                continue
            try:
                token, now_ms, jobs = await self.store.claim(lane, free, self.lease_ms)
            except RedisError as exc:
                if self.redis_ok:
                    log.error("Redis is unreachable (%s); will keep retrying", exc)
                self.redis_ok = False
                self._redis_failures += 1
                self._redis_retry_at = time.monotonic() + min(10.0, 0.25 * 2**self._redis_failures)
                self._backlog.clear()  # no refills while Redis is down; every claim waits for the backoff
                return
            if not self.redis_ok:
                log.info("Redis is reachable again")
            self.redis_ok, self._redis_failures = True, 0
            if len(jobs) >= free:
                self._backlog.add(lane)
            else:
                self._backlog.discard(lane)
                short.append(lane)
            for job in jobs:
                task = asyncio.create_task(self._run(lane, job, token, now_ms))
                self._in_flight[lane].add(task)
                task.add_done_callback(functools.partial(self._step_done, lane))
        if short:
            await self._claim_when_due(short, now_ms)

    async def _claim_when_due(self, lanes: list[Lane], now_ms: int) -> None:
        """Set a claim for when the earliest of these lanes' jobs comes due, if before the next tick."""
        if self.tick_seconds <= FAST_TICK_SECONDS:
            return  # ticks are quick enough
        try:
            async with self.store.redis.pipeline(transaction=False) as pipe:
                for lane in lanes:
                    pipe.zrange(queue_key(lane), 0, 0, withscores=True)
                firsts = await pipe.execute()
        except RedisError as exc:
            log.debug("could not read the next due times: %s", exc)  # the next tick will do
            return
        due_ms = [float(first[0][1]) for first in firsts if first]
        if due_ms:
            wait_s = (min(due_ms) - now_ms) / 1000
            if wait_s < self.tick_seconds:
                self._claim_soon(wait_s)

    def _step_done(self, lane: Lane, task: asyncio.Task[None]) -> None:
        group = self._in_flight[lane]
        group.discard(task)
        self._claim_soon(FAST_TICK_SECONDS)  # the step may have handed its job to another lane
        if (
            lane in self._backlog
            and lane not in self._refill_pending
            and not self._stopping
            and CAPACITY[lane] - len(group) >= max(1, int(CAPACITY[lane] * REFILL_FRACTION))
        ):
            self._refill_pending.add(lane)
            self._spawn_claim((lane,))

    def _claim_soon(self, delay_s: float) -> None:
        """Claim every lane in `delay_s` (at least FAST_TICK_SECONDS), unless a claim is set sooner."""
        if self._stopping or self.tick_seconds <= FAST_TICK_SECONDS:
            return
        loop = asyncio.get_running_loop()
        at = loop.time() + max(FAST_TICK_SECONDS, delay_s)
        if self._next_claim is not None:
            if self._next_claim.when() <= at:
                return
            self._next_claim.cancel()
        self._next_claim = loop.call_at(at, self._claim_now)

    def _claim_now(self) -> None:
        self._next_claim = None
        self._spawn_claim(tuple(Lane))

    def _spawn_claim(self, lanes: tuple[Lane, ...]) -> None:
        if self._stopping:
            return
        claimer = asyncio.get_running_loop().create_task(self._claim(lanes))
        self._claimers.add(claimer)
        claimer.add_done_callback(self._claimers.discard)

    async def _run(self, lane: Lane, job: Job, token: str, now_ms: int) -> None:
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
        errors = job.errors + 1
        try:
            if errors < MAX_INTERNAL_ERRORS:
                fields = {"errors": errors, "last_error": "internal error"}
                await self.store.reschedule(lane, job.id, token, backoff_ms(errors), fields)
            elif lane is Lane.SEND:
                await self.store.finish(lane, job.id, token, {"reply_state": PostState.SKIPPED})
            else:
                fields = {"status": Status.FAILED, "error_code": "internal", "error": "internal error"}
                await self.store.move(lane, Lane.SEND, job.id, token, fields=fields)
        except (LeaseLost, RedisError) as exc:
            log.warning("job %s: could not record the error: %s", job.id, exc)


def _ensure_redis_connections(store: JobStore, needed: int) -> None:
    """Let the Redis client open a connection for every step that may be waiting on it at once."""
    pool = store.redis.connection_pool
    current = getattr(pool, "max_connections", None)
    if isinstance(current, int) and current < needed:
        pool.max_connections = needed
