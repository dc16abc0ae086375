"""Creates made together share a round trip to Redis; each caller still gets its own job's answer."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from bot.jobs.model import AudioTrack, Job, Media
from bot.jobs.store import Store


async def _creates(redis_url: str, flush_scripts: bool) -> tuple[list[bool], int]:
    redis = Redis.from_url(redis_url)
    try:
        if flush_scripts:
            await redis.script_flush()  # as after a Redis restart: the batch must still go through
        store = Store.on(redis)
        jobs = [
            Job(id=f"job{n:03d}", inputs=AudioTrack(video=Media(link="v"), audio=Media(link="a")))
            for n in range(50)
        ]
        # Two deliveries of the same Slack request in the same burst: one job.
        dedupes = [f"cmd:{n}" for n in range(49)] + ["cmd:7"]
        answers = await asyncio.gather(
            *(store.records.create(j, dedupe=d) for j, d in zip(jobs, dedupes, strict=True))
        )
        return list(answers), int(await redis.zcard("{lip}:submit"))
    finally:
        await redis.aclose()


def test_a_burst_of_creates_is_stored_whole_and_deduplicated(redis_url: str) -> None:
    answers, queued = asyncio.run(_creates(redis_url, flush_scripts=False))
    assert answers == [True] * 49 + [False]
    assert queued == 49


def test_a_burst_of_creates_survives_redis_losing_its_scripts(redis_url: str) -> None:
    answers, queued = asyncio.run(_creates(redis_url, flush_scripts=True))
    assert answers == [True] * 49 + [False]
    assert queued == 49
