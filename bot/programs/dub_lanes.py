"""The bot's lanes for the terminal `dub` (bot/programs/terminal_dub.py): one create-recovery engine.

A dub from the terminal is a job like any other (`Source.TERMINAL`), run by the same steps as the bot's
(bot/lanes/: the gate, the create, the recovery of a create whose answer was lost, the polls, the end)
through the `Pipeline` and a `Worker`, wired as bot/programs/main.py wires them but with nothing that talks
to Slack: the steps post nothing for this source, and the Slack clients they are built with point nowhere
a message could reach. The workspace's money rules do not apply (no budgets, no quote to confirm, no
result cache); the link check and the provider's balance do, as for the bot.

Its Redis is an embedded one of its own, in a temporary directory, also when REDIS_URL is set: a worker
claims every job due in the lanes, and one that cannot post to Slack must not take the bot's jobs.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path

from redis.asyncio import Redis

from bot import redis_client
from bot.jobs.lanes import QueueWatch
from bot.jobs.model import Job
from bot.jobs.store import Store
from bot.lanes.gate import Gate, MoneyRules
from bot.lanes.pipeline import Pipeline
from bot.lanes.provisions import provisions_for
from bot.lanes.worker import Worker
from bot.money.budgets import Ledger
from bot.money.preflight import Preflight
from bot.programs.embedded_redis import EmbeddedRedis
from bot.programs.wiring import timing_from
from bot.providers.base import Provider
from bot.settings import Settings
from bot.slack.out import SlackOut, close_client, make_client
from bot.slack.transfer import Transfer

log = logging.getLogger(__name__)

CLOSE_SECONDS = 5.0  # each part's close, bounded: a stuck close must not keep the command alive
# Where the Slack clients the steps are built with point: nothing listens there (the steps post nothing
# for a terminal job; a mistake would fail here, not reach a workspace).
NOWHERE = "http://127.0.0.1:9/api/"


class DubLanes:
    """`start()`, then `submit(job)`; `watch` hears the job's steps and its end; `aclose()` on every path."""

    def __init__(self, *, settings: Settings, provider: Provider, preflight: Preflight | None) -> None:
        self.settings = settings
        self.provider = provider
        self.preflight = preflight  # None: PREFLIGHT=off
        self._dir = Path(tempfile.mkdtemp(prefix="lipsync-dub-"))
        self._embedded = EmbeddedRedis(self._dir)
        self._redis: Redis | None = None
        self._store: Store | None = None
        self._worker: Worker | None = None
        self._closing: list[tuple[str, Callable[[], Awaitable[object]]]] = []

    @property
    def watch(self) -> QueueWatch:
        """Hears the job's steps and its end (`listen_stepped`, `listen_ended`), once started."""
        assert self._store is not None
        return self._store.watch

    async def start(self) -> None:
        s = self.settings
        await asyncio.to_thread(self._embedded.start)
        redis = self._redis = redis_client.connect(self._embedded.url)
        store = self._store = Store.on(redis)
        timing = timing_from(s)
        max_bytes = int(s.max_file_mb * 1_000_000)
        slack_client = make_client(s.slack_bot_token.get_secret_value(), NOWHERE, s.http_timeout_seconds)
        transfer = Transfer(
            slack_token=s.slack_bot_token,
            slack_api_url=NOWHERE,
            max_bytes=max_bytes,
            timeout_s=s.http_timeout_seconds,
        )
        slack_files = Preflight(timeout_s=min(10.0, s.http_timeout_seconds))  # measures shared files: none
        self._closing = [
            ("the file transfer client", transfer.aclose),
            ("the shared files' meter", slack_files.aclose),
            ("the Slack client", lambda: close_client(slack_client)),
        ]
        slack = SlackOut(slack_client)
        rules = MoneyRules(
            confirm_above={},
            warn_below={},
            cache_ttl_s=0,
            unknown_length_s=Decimal(str(s.unknown_length_seconds)),
            max_input_bytes=max_bytes,
        )
        gate = Gate(
            lanes=store.lanes,
            results=store.results,
            values=store.values,
            marks=store.marks,
            ledger=Ledger(redis),
            slack=slack,
            rules=rules,
            preflight=self.preflight,
            slack_files=slack_files,
        )
        provisions = {self.provider.name: provisions_for(redis, self.provider, timing)}
        pipeline = Pipeline(
            store=store, providers=provisions, slack=slack, timing=timing, transfer=transfer, gate=gate
        )
        self._worker = Worker(
            lanes=store.lanes,
            watch=store.watch,
            pipeline=pipeline,
            lease_ms=timing.lease_ms,
            tick_seconds=timing.tick_seconds,
            poll_early_ms=timing.poll_early_ms,
        )
        await self._worker.start()

    async def submit(self, job: Job) -> None:
        """Store the job and queue it; the worker claims it at once."""
        assert self._store is not None
        await self._store.records.create(job)
        self.watch.new_job()

    async def cancel(self, job_id: str) -> Job | None:
        """Cancel the job the bot's way (a create already on the wire is answered first; none starts after
        this), and the job as it stands then."""
        assert self._store is not None
        await self._store.records.cancel(job_id, "terminal")
        return await self._store.records.get(job_id)

    async def aclose(self) -> None:
        """Stop the worker (a step still running is stopped), then close every client and the Redis."""
        if self._worker is not None:
            await bounded("the worker", self._worker.stop(grace_seconds=0))
        for what, closing in self._closing:
            await bounded(what, closing())
        if self._redis is not None:
            await bounded("the Redis client", self._redis.aclose())
        await bounded("the embedded Redis", asyncio.to_thread(self._embedded.stop))
        shutil.rmtree(self._dir, ignore_errors=True)


async def bounded(what: str, closing: Awaitable[object]) -> None:
    try:
        await asyncio.wait_for(closing, timeout=CLOSE_SECONDS)
    except Exception as exc:
        log.warning("%s did not close cleanly (%s)", what, type(exc).__name__)
