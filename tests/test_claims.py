"""How the worker claims, against a real Redis: only lanes with work due, and never a claim round lost.

Claims are counted from Redis itself (`INFO commandstats`: each lane a claim looks at is one
ZRANGEBYSCORE), so these tests hold whatever the worker's internals look like.
"""

from __future__ import annotations

import asyncio
from typing import cast

from redis.asyncio import Redis

from bot.jobs.lanes import Lane
from bot.jobs.model import Job, Progress, Status
from bot.jobs.store import Store
from bot.lanes.pipeline import Pipeline
from bot.lanes.worker import Worker

LONG_TICK_S = 3600.0  # the scheduler never ticks during a test
CADENCE_MS = 300


class ReschedulingPipeline:
    """Stands in for Pipeline: a poll reschedules its job CADENCE_MS ahead, a send ends its job."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.polled: list[str] = []
        self.sent: list[str] = []

    async def run(self, lane: Lane, job: Job, token: str, now_ms: int) -> None:
        if lane is Lane.SEND:
            self.sent.append(job.id)
            await self.store.lanes.finish(lane, job, token)
        else:
            self.polled.append(job.id)
            await self.store.lanes.reschedule(lane, job, token, CADENCE_MS)


async def _claims_so_far(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_zrangebyscore", {}).get("calls", 0))


async def _wait_for(predicate: object, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def test_between_ticks_only_lanes_with_work_due_are_claimed(redis_url: str) -> None:
    """Three jobs polled every 0.3 s and nothing else to do: between ticks the worker claims only the
    poll lane, only when a poll is due, so every claim finds work. (It used to claim all three lanes
    after every step and again when the next poll came due: two claims for each poll.)"""

    async def body() -> None:
        redis = Redis.from_url(redis_url)
        store = Store.on(redis)
        for n in range(3):
            await store.records.create(
                Job(id=f"job{n}", status=Status.PROCESSING, progress=Progress(task_id=f"t{n}")), Lane.POLL
            )
        pipeline = ReschedulingPipeline(store)
        worker = Worker(
            lanes=store.lanes,
            watch=store.watch,
            pipeline=cast(Pipeline, pipeline),
            lease_ms=60_000,
            tick_seconds=LONG_TICK_S,
        )
        await worker.start()
        try:
            await _wait_for(lambda: len(pipeline.polled) >= 3)  # the start claim is behind us
            polls, claims = len(pipeline.polled), await _claims_so_far(redis)
            await _wait_for(lambda: len(pipeline.polled) >= polls + 18)  # six rounds
            polls = len(pipeline.polled) - polls
            claims = await _claims_so_far(redis) - claims
            # At most one claim per poll (several polls due together share one), plus one claim that
            # may be under way at either end of the count.
            assert claims <= polls + 2, f"{claims} lane claims for {polls} polls"
        finally:
            await worker.stop()
            await redis.aclose()

    asyncio.run(body())


def test_a_job_that_cannot_be_read_does_not_stop_the_others(redis_url: str) -> None:
    """A job record the worker cannot read (an edited hash, or one written by a newer version) is skipped
    with one log line. The jobs claimed with it are still polled, the other lanes of the same round are
    still claimed, and the worker goes on claiming. (The claim used to raise: the round died with
    "Task exception was never retrieved", and the jobs it had leased waited for their lease to end.)"""

    async def body() -> None:
        redis = Redis.from_url(redis_url)
        store = Store.on(redis)
        ids = [f"job{n:02d}" for n in range(10)]
        for job_id in ids[:5]:
            await store.records.create(
                Job(id=job_id, status=Status.PROCESSING, progress=Progress(task_id=f"t-{job_id}")), Lane.POLL
            )
        await store.records.create(
            Job(id="odd", status=Status.PROCESSING, progress=Progress(task_id="t-odd")), Lane.POLL
        )
        await redis.hset("{lip}:job:odd", "polls", "many")  # not a number
        for job_id in ids[5:]:
            await store.records.create(
                Job(id=job_id, status=Status.PROCESSING, progress=Progress(task_id=f"t-{job_id}")), Lane.POLL
            )
        await store.records.create(Job(id="reply", status=Status.SUCCEEDED), Lane.SEND)
        pipeline = ReschedulingPipeline(store)
        worker = Worker(
            lanes=store.lanes,
            watch=store.watch,
            pipeline=cast(Pipeline, pipeline),
            lease_ms=60_000,
            tick_seconds=LONG_TICK_S,
        )
        await worker.start()
        try:
            await _wait_for(lambda: set(pipeline.polled) >= set(ids) and pipeline.sent == ["reply"])
            assert "odd" not in pipeline.polled
            polls = len(pipeline.polled)
            await _wait_for(lambda: len(pipeline.polled) >= polls + 10)  # and the next round comes
        finally:
            await worker.stop()
            await redis.aclose()

    asyncio.run(body())


def test_a_job_whose_record_vanished_is_dropped_from_its_lane(redis_url: str) -> None:
    """A job whose hash was deleted (an operator's clean-up) while it waited in its lane: the claim,
    which reads the jobs in the same script, drops its lane entry and returns the other jobs."""

    async def body() -> None:
        redis = Redis.from_url(redis_url)
        store = Store.on(redis)
        try:
            for job_id in ("a", "gone", "b"):
                await store.records.create(Job(id=job_id, status=Status.PROCESSING), Lane.POLL)
            await redis.delete("{lip}:job:gone")
            jobs = (await store.lanes.claim_lanes({Lane.POLL: 10}, lease_ms=60_000)).jobs[Lane.POLL]
            assert sorted(j.id for j in jobs) == ["a", "b"]
            assert await redis.zscore("{lip}:poll", "gone") is None
            assert not await redis.hexists("{lip}:poll:lease", "gone")
        finally:
            await redis.aclose()

    asyncio.run(body())
