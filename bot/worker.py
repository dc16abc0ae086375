"""Each bot process's ticker: claim due jobs from Redis and run their next step.

APScheduler only says "tick now" (an in-memory interval job); who works on which job is decided by the
leased claims in Redis, so any number of processes can run side by side. `kick()` ticks at once when this
process has just queued work, so a new command does not wait for the next tick.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from redis.exceptions import RedisError

from bot.jobs import Job, PostState, Status
from bot.pipeline import Pipeline, backoff_ms
from bot.store import JobStore, Lane, LeaseLost

log = logging.getLogger(__name__)

# Steps in flight at once per lane, per process. Polls are light GETs; submissions are rate limited anyway.
CAPACITY = {Lane.SUBMIT: 20, Lane.POLL: 200, Lane.SEND: 20}
MAX_INTERNAL_ERRORS = 10


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
        self._again = False
        self._scheduler: AsyncIOScheduler | None = None

    async def start(self) -> None:
        self._scheduler = AsyncIOScheduler()
        self._scheduler.add_job(
            self.tick,
            "interval",
            seconds=self.tick_seconds,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(5, int(self.tick_seconds * 5)),
        )
        self._scheduler.start()
        self.kick()

    async def stop(self, grace_seconds: float = 5.0) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
        tasks = [t for group in self._in_flight.values() for t in group]
        if tasks:
            # Let steps that are mid-request finish; the rest come back to someone after their lease.
            _, pending = await asyncio.wait(tasks, timeout=grace_seconds)
            for task in pending:
                task.cancel()

    def kick(self) -> None:
        asyncio.get_running_loop().create_task(self.tick())

    @property
    def busy(self) -> int:
        return sum(len(group) for group in self._in_flight.values())

    async def tick(self) -> None:
        if self._tick_lock.locked():
            self._again = True  # a tick is running; make it go round once more
            return
        async with self._tick_lock:
            self._again = True
            while self._again:
                self._again = False
                await self._claim_all()

    async def _claim_all(self) -> None:
        if time.monotonic() < self._redis_retry_at:
            return  # Redis was down a moment ago: back off instead of hammering it every tick
        for lane in Lane:
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
                return
            if not self.redis_ok:
                log.info("Redis is reachable again")
            self.redis_ok, self._redis_failures = True, 0
            for job in jobs:
                task = asyncio.create_task(self._run(lane, job, token, now_ms))
                self._in_flight[lane].add(task)
                task.add_done_callback(self._in_flight[lane].discard)

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
