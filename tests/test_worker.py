"""The worker's claiming, against a real Redis: work is picked up between ticks, in batches."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import cast

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from bot.jobs.lanes import Claimed, Lane, Lanes, QueueWatch
from bot.jobs.model import Job, Progress, Status
from bot.jobs.records import JobRecords
from bot.jobs.store import Store
from bot.lanes import worker as worker_module
from bot.lanes.pipeline import Pipeline
from bot.lanes.worker import Worker

JOBS = 60
POLL_SLOTS = 8
LONG_TICK_S = 3600.0  # the scheduler never ticks during a test: only the start kick and refills claim


class StubPipeline:
    """Stands in for Pipeline: a poll takes a few ms, then reschedules the job far ahead (one script),
    or with `finish_polls` ends it, handing it to the send lane as a finished render does."""

    def __init__(self, lanes: Lanes, step_seconds: float = 0.005, finish_polls: bool = False) -> None:
        self.lanes = lanes
        self.step_seconds = step_seconds
        self.finish_polls = finish_polls
        self.polled: list[str] = []
        self.sent: list[str] = []
        self.in_flight = 0
        self.most_in_flight = 0

    async def run(self, lane: Lane, job: Job, token: str, now_ms: int) -> None:
        if lane is Lane.SEND:
            self.sent.append(job.id)
            await self.lanes.finish(lane, job, token)
            return
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.step_seconds)
            self.polled.append(job.id)
            if self.finish_polls:
                job.status = Status.SUCCEEDED
                await self.lanes.move(lane, Lane.SEND, job, token)
            else:
                await self.lanes.reschedule(lane, job, token, 3_600_000)
        finally:
            self.in_flight -= 1


class CountingLanes(Lanes):
    def __init__(self, redis: Redis, watch: QueueWatch) -> None:
        super().__init__(redis=redis, watch=watch)
        self.claims: list[tuple[Lane, int, int]] = []  # lane, limit asked, jobs got
        self.scripts = 0  # claim scripts sent (one claims several lanes)
        self.fail_claims = False
        self.failed_claims = 0

    async def claim_lanes(
        self,
        limits: Mapping[Lane, int],
        lease_ms: int,
        fields: Mapping[Lane, Sequence[str]] | None = None,
        early_ms: Mapping[Lane, int] | None = None,
    ) -> Claimed:
        if self.fail_claims:
            self.failed_claims += 1
            raise RedisConnectionError("Redis is down (test)")
        claimed = await super().claim_lanes(limits, lease_ms, fields, early_ms)
        self.scripts += 1
        self.claims += [(lane, limits[lane], len(claimed.jobs[lane])) for lane in limits]
        return claimed


@pytest.fixture(autouse=True)
def small_capacity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(worker_module.CAPACITY, Lane.POLL, POLL_SLOTS)


async def _due_poll_jobs(records: JobRecords, count: int) -> list[str]:
    ids = [f"job{n:04d}" for n in range(count)]
    for job_id in ids:
        await records.create(
            Job(id=job_id, status=Status.PROCESSING, progress=Progress(task_id=f"t-{job_id}")), Lane.POLL
        )
    return ids


async def _wait_for(predicate: object, timeout: float) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def test_every_due_job_is_polled_without_waiting_for_the_next_tick(redis_url: str) -> None:
    """Sixty due jobs, eight slots, and a tick that never comes: freed slots are refilled as steps
    finish, so all sixty are polled at once instead of eight per tick; claims stay batched."""

    async def body() -> None:
        redis = Redis.from_url(redis_url)
        store = Store.on(redis)
        lanes = CountingLanes(redis, store.watch)
        ids = await _due_poll_jobs(store.records, JOBS)
        pipeline = StubPipeline(lanes)
        worker = Worker(
            lanes=lanes,
            watch=store.watch,
            pipeline=cast(Pipeline, pipeline),
            lease_ms=60_000,
            tick_seconds=LONG_TICK_S,
        )
        await worker.start()
        try:
            # Generous: this takes milliseconds; before refills it would have taken 7 hour-long ticks.
            done = await _wait_for(lambda: len(pipeline.polled) >= JOBS, timeout=30)
            assert done, f"only {len(pipeline.polled)} of {JOBS} polled"
            await _wait_for(lambda: worker.busy == 0, timeout=10)
            assert sorted(pipeline.polled) == ids  # each once
            assert pipeline.most_in_flight <= POLL_SLOTS  # refills never overfill the lane
            poll_claims = [c for c in lanes.claims if c[0] is Lane.POLL]
            # Batched: a refill waits for a quarter of the slots (2 of 8), so at most one claim per
            # two jobs, plus the last, short one; one claim per job would be 60.
            assert len(poll_claims) <= JOBS // 2 + 1
            assert sum(got for _, _, got in poll_claims) == JOBS
        finally:
            await worker.stop()
            await redis.aclose()

    asyncio.run(body())


def test_a_job_handed_to_the_next_lane_does_not_wait_for_a_tick(redis_url: str) -> None:
    """A poll that ends its job queues the reply in the send lane; the reply is sent without a tick."""

    async def body() -> None:
        redis = Redis.from_url(redis_url)
        store = Store.on(redis)
        lanes = CountingLanes(redis, store.watch)
        ids = await _due_poll_jobs(store.records, JOBS)
        pipeline = StubPipeline(lanes, finish_polls=True)
        worker = Worker(
            lanes=lanes,
            watch=store.watch,
            pipeline=cast(Pipeline, pipeline),
            lease_ms=60_000,
            tick_seconds=LONG_TICK_S,
        )
        await worker.start()
        try:
            done = await _wait_for(lambda: len(pipeline.sent) >= JOBS, timeout=30)
            assert done, f"only {len(pipeline.sent)} of {JOBS} replies sent"
            assert sorted(pipeline.sent) == ids
        finally:
            await worker.stop()
            await redis.aclose()

    asyncio.run(body())


def test_a_job_coming_due_between_ticks_is_polled_when_due(redis_url: str) -> None:
    """Nothing runs, the next tick is an hour away, and a poll comes due in half a second: the worker
    read the lane's next due time after its last claim and claims it then."""

    async def body() -> None:
        redis = Redis.from_url(redis_url)
        store = Store.on(redis)
        lanes = CountingLanes(redis, store.watch)
        await store.records.create(
            Job(id="later", status=Status.PROCESSING, progress=Progress(task_id="t-later")), Lane.POLL
        )
        claimed = await lanes.claim_lanes({Lane.POLL: 1}, lease_ms=60_000)
        await lanes.reschedule(
            Lane.POLL, claimed.jobs[Lane.POLL][0], claimed.token, 500
        )  # as if polled a moment ago
        pipeline = StubPipeline(lanes)
        worker = Worker(
            lanes=lanes,
            watch=store.watch,
            pipeline=cast(Pipeline, pipeline),
            lease_ms=60_000,
            tick_seconds=LONG_TICK_S,
        )
        await worker.start()
        try:
            assert await _wait_for(lambda: pipeline.polled == ["later"], timeout=30)
        finally:
            await worker.stop()
            await redis.aclose()

    asyncio.run(body())


def test_nothing_due_means_no_claims_between_ticks(redis_url: str) -> None:
    """Once the steps that ran are done (and one claim shortly after them found nothing more), the
    worker stops claiming until its next tick: it does not spin on Redis when nothing is due."""

    async def body() -> None:
        redis = Redis.from_url(redis_url)
        store = Store.on(redis)
        lanes = CountingLanes(redis, store.watch)
        await _due_poll_jobs(store.records, 3)  # fewer than the slots: the first claim comes back short
        pipeline = StubPipeline(lanes)
        worker = Worker(
            lanes=lanes,
            watch=store.watch,
            pipeline=cast(Pipeline, pipeline),
            lease_ms=60_000,
            tick_seconds=LONG_TICK_S,
        )
        await worker.start()
        try:
            assert await _wait_for(lambda: len(pipeline.polled) == 3, timeout=30)
            await _wait_for(lambda: worker.busy == 0, timeout=10)
            await asyncio.sleep(1.0)
            settled = len(lanes.claims)
            # The start kick, and one claim of each lane after the steps ended; the next job is due in
            # an hour, so no claim is set before the next tick.
            assert settled <= 2 * len(Lane)
            await asyncio.sleep(1.0)
            assert len(lanes.claims) == settled  # and then nothing until the next tick
        finally:
            await worker.stop()
            await redis.aclose()

    asyncio.run(body())


def test_stopping_claims_nothing_new_and_redis_down_still_backs_off(redis_url: str) -> None:
    """While Redis is down, finished steps do not retry claims (only ticks do, with backoff); once
    stopping, no new work is claimed even if more is due."""

    async def body() -> None:
        redis = Redis.from_url(redis_url)
        store = Store.on(redis)
        lanes = CountingLanes(redis, store.watch)
        await _due_poll_jobs(store.records, JOBS)
        pipeline = StubPipeline(lanes, step_seconds=0.2)
        worker = Worker(
            lanes=lanes,
            watch=store.watch,
            pipeline=cast(Pipeline, pipeline),
            lease_ms=60_000,
            tick_seconds=LONG_TICK_S,
        )
        await worker.start()
        try:
            assert await _wait_for(lambda: pipeline.most_in_flight == POLL_SLOTS, timeout=30)
            lanes.fail_claims = True
            await worker.tick()  # a failing claim: Redis is marked down and claims back off
            assert not worker.redis_ok and lanes.failed_claims == 1
            await _wait_for(lambda: worker.busy == 0, timeout=30)
            await asyncio.sleep(1.0)
            # Eight steps ended meanwhile, each of which would refill or quick-tick; the backoff (0.5 s,
            # then 1 s, 2 s...) lets one or two more attempts through in this second and a bit.
            assert lanes.failed_claims <= 3
            lanes.fail_claims = False
        finally:
            await worker.stop()
        polled = len(pipeline.polled)
        await asyncio.sleep(0.3)
        assert len(pipeline.polled) == polled and worker.busy == 0  # nothing started after stop()
        assert polled < JOBS
        await redis.aclose()

    asyncio.run(body())


def test_the_redis_client_may_open_a_connection_for_every_step_in_flight(redis_url: str) -> None:
    """redis-py's asyncio pool refuses its 101st connection ("Too many connections"), which failed
    transitions when 200 polls finished at once; the worker makes room for all its steps."""

    async def body() -> None:
        redis = Redis.from_url(redis_url)
        try:
            store = Store.on(redis)
            Worker(
                lanes=store.lanes,
                watch=store.watch,
                pipeline=cast(Pipeline, None),
                lease_ms=60_000,
                tick_seconds=1,
            )
            # REDIS_CONNECTIONS is sized from the real CAPACITY (this module shrinks the poll lane).
            assert worker_module.REDIS_CONNECTIONS > 200
            assert redis.connection_pool.max_connections >= worker_module.REDIS_CONNECTIONS
        finally:
            await redis.aclose()

    asyncio.run(body())
