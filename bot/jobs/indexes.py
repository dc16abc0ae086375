"""Indexes: the ways to find a job other than its id. A person's recent jobs (newest first) and the short
ids people type, both written with the job (bot.jobs.records); the job a Slack request created (its
dedupe marker); a provider's task → its job, for webhooks; and the jobs that failed each day.

Every key is named in bot.jobs.keys.
"""

from __future__ import annotations

import time

from redis.asyncio import Redis

from bot.jobs.keys import failed_key, job_key, seen_key, short_ids_key, short_key, task_key, user_jobs_key
from bot.jobs.model import SHORT_ID_LENGTH
from bot.jobs.scripts import text

USER_JOBS_KEPT = 200  # per person, for `/lipsync list` and App Home
# The days whose short ids are looked at: a job is kept a week after it ends (bot.jobs.lanes), and a day's
# hash of short ids a day more (bot.jobs.records).
SHORT_ID_DAYS = 9


class Indexes:
    """Lookups of jobs, and the count of the day's failures."""

    def __init__(self, *, redis: Redis) -> None:
        self.redis = redis

    async def find_job_id(self, typed: str) -> str | None:
        """The job a person typed: its full id, or its short id (in the hashes of the days its job may
        have been made, newest first, then where versions before wrote it)."""
        typed = typed.strip().strip("`").lower()
        if len(typed) > SHORT_ID_LENGTH and await self.redis.exists(job_key(typed)):
            return typed
        if not typed:
            return None
        short = typed[-SHORT_ID_LENGTH:]
        now = time.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            for day in range(-1, SHORT_ID_DAYS):  # -1: tomorrow, for a process whose clock runs ahead
                pipe.hget(
                    short_ids_key(time.strftime("%Y%m%d", time.gmtime(now - day * 86400)), short), short
                )
            pipe.get(short_key(short))
            *rests, legacy = await pipe.execute()
        for rest in rests:
            if rest is not None:
                return text(rest) + short
        return text(legacy) if legacy else None

    async def recent_ids(self, team_id: str, user: str, start: int, count: int) -> tuple[list[str], int]:
        """A person's job ids, newest first, `count` from `start`; and how many they have in all."""
        key = user_jobs_key(team_id, user)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrevrange(key, start, start + count - 1)
            pipe.zcard(key)
            ids, total = await pipe.execute()
        return [text(i) for i in ids], int(total)

    async def dedupe_target(self, dedupe: str) -> str | None:
        """The id of the job created under `dedupe` (`JobRecords.create`), while the key lasts."""
        value = await self.redis.get(seen_key(dedupe))
        return text(value) if value else None

    # Provider task id → job, for webhooks, which name the task only.

    async def index_task(self, provider: str, task_id: str, job_id: str, ttl_ms: int) -> None:
        await self.redis.set(task_key(provider, task_id), job_id, px=ttl_ms + 3_600_000)

    async def job_for_task(self, provider: str, task_id: str) -> str | None:
        value = await self.redis.get(task_key(provider, task_id))
        return text(value) if value else None

    async def note_failure(self, job_id: str) -> None:
        """Count a job that failed or timed out today (UTC), once however often its step runs."""
        key = failed_key(time.strftime("%Y%m%d", time.gmtime()))
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.sadd(key, job_id)
            pipe.expire(key, 2 * 24 * 3600)
            await pipe.execute()

    async def failures_today(self) -> int:
        return int(await self.redis.scard(failed_key(time.strftime("%Y%m%d", time.gmtime()))))
