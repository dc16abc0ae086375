"""The job store, split by concern: each part is a module of bot.jobs with its own class and Lua scripts.

  lanes    the three lanes (submit, poll, send), leased claims on their jobs, a claimed job's transitions
  records  a new job written and queued, a job read, a cancel, a confirm, a webhook's nudge
  inbox    Slack deliveries stored before their ack, until processed
  caches   the result cache, the asset cache (and its upload locks), small shared values
  indexes  a person's recent jobs, short ids, a request's job, a task's job, the day's failures
  marks    things done once (dedupe markers) and groups of jobs that post once
Every key is named in bot.jobs.keys; the scripts' shared pieces are in bot.jobs.scripts.

`Store` holds every part on one Redis client, for the composition root (bot/programs/main.py) and tests
to hand out: each collaborator takes only the parts it uses, keyword-only.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from bot.jobs.caches import AssetCache, ResultCache, SharedValues
from bot.jobs.inbox import Inbox
from bot.jobs.indexes import Indexes
from bot.jobs.lanes import Lanes, QueueWatch
from bot.jobs.marks import Marks
from bot.jobs.records import JobRecords


@dataclass(frozen=True, kw_only=True)
class Store:
    redis: Redis
    watch: QueueWatch  # hears each job this process queues (the worker listens)
    lanes: Lanes
    records: JobRecords
    inbox: Inbox
    results: ResultCache
    assets: AssetCache
    values: SharedValues
    indexes: Indexes
    marks: Marks

    @classmethod
    def on(cls, redis: Redis, *, worker_id: str | None = None) -> Store:
        """Every part of the store on `redis`; `worker_id` names this process in its claims' tokens."""
        watch = QueueWatch()
        return cls(
            redis=redis,
            watch=watch,
            lanes=Lanes(redis=redis, watch=watch, worker_id=worker_id),
            records=JobRecords(redis=redis, watch=watch),
            inbox=Inbox(redis=redis),
            results=ResultCache(redis=redis),
            assets=AssetCache(redis=redis),
            values=SharedValues(redis=redis),
            indexes=Indexes(redis=redis),
            marks=Marks(redis=redis),
        )
