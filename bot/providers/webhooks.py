"""POST /webhooks/<provider>: a provider says a task has ended.

Its signature is checked when a secret is configured (the provider's module knows its scheme; LipSync.dev's
version B documents none, so its deliveries come unsigned).
- A signed delivery that states how the task ended (`Provider.webhook_result`: sync.so with
  SYNC_WEBHOOK_SECRET) is kept with the job before it is answered 2xx, once (a repeated or late delivery
  changes nothing; a job that ended or was cancelled is left alone), and this process's worker takes the
  job at once: its poll step finishes from the delivery, without fetching the task again.
- Any other delivery is only a hint: the job of that task gets its next poll due now, taken at once by
  this process's worker (other processes see the due time), and the poll step, which re-fetches the task,
  stays the one place that decides. Unknown tasks, bad signatures and replays change nothing; one task is
  nudged at most once per NUDGE_WINDOW_S, so that deliveries anyone could forge (no secret) cannot turn
  into a stream of polls against the provider's rate limit.
A lost webhook only costs time, since polling goes on regardless.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from redis.exceptions import RedisError

from bot.jobs.indexes import Indexes
from bot.jobs.marks import Marks
from bot.jobs.records import JobRecords
from bot.observe.metrics import WEBHOOKS
from bot.providers.base import Provider, Task, task_to_text

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/{provider}"
MAX_BODY_BYTES = 1024 * 1024  # a Generation object is a few kB; aiohttp's own cap on a body is the same
REPLAY_WINDOW_S = 600
NUDGE_WINDOW_S = 10
# How /metrics names each answer (a replay is answered 202: accepted, nothing more to do).
OUTCOMES = {
    200: "ok",
    202: "replay",
    400: "unreadable",
    401: "refused",
    404: "unknown",
    413: "too_large",
    503: "store_down",
}
# What a signed delivery's result did (bot.jobs.records.JobRecords.deliver's outcomes), for the log.
KEPT = {
    "now": "kept; the job is taken now",
    "held": "kept; its poll under way decides, the next one takes it",
    "already": "kept before: nothing changes",
    "over": "the job no longer waits for it",
    "other": "no job waits",
}


def webhook_handler(
    providers: Mapping[str, Provider], *, marks: Marks, indexes: Indexes, records: JobRecords
) -> Callable[[web.Request], Awaitable[web.Response]]:
    return WebhookReceiver(providers=providers, marks=marks, indexes=indexes, records=records).handle


class WebhookReceiver:
    def __init__(
        self, *, providers: Mapping[str, Provider], marks: Marks, indexes: Indexes, records: JobRecords
    ) -> None:
        self.providers = providers
        self.marks = marks
        self.indexes = indexes
        self.records = records

    async def handle(self, request: web.Request) -> web.Response:
        response = await self.answer(request)
        name = request.match_info["provider"]
        WEBHOOKS.labels(
            name if name in self.providers else "unknown", OUTCOMES.get(response.status, "other")
        ).inc()
        return response

    async def answer(self, request: web.Request) -> web.Response:
        provider = self.providers.get(request.match_info["provider"])
        if provider is None or not provider.accepts_webhook:
            return web.Response(status=404)
        if (request.content_length or 0) > MAX_BODY_BYTES:
            return web.Response(status=413)
        try:
            body = await request.read()  # the whole body; aiohttp refuses one over client_max_size (1 MiB)
        except web.HTTPRequestEntityTooLarge:
            return web.Response(status=413)
        except (ConnectionError, TimeoutError):
            return web.Response(status=400)
        headers = {name.lower(): value for name, value in request.headers.items()}
        now_s = time.time()
        # A signed result is checked and read once; anything else is read for the task it names (a hint).
        ended = provider.webhook_result(headers, body, now_s)
        task_id = ended.id if ended is not None else provider.webhook_task_id(headers, body, now_s)
        if task_id is None:
            log.warning("%s webhook ignored: bad signature or unreadable body", provider.label)
            return web.Response(status=401)
        try:
            if ended is not None:
                return await self.keep(provider, ended)
            return await self.nudge(provider, task_id, body)
        except RedisError as exc:  # the provider retries a 5xx; polling covers it anyway
            log.warning(
                "%s webhook for %s: store unavailable (%s)", provider.label, task_id, type(exc).__name__
            )
            return web.Response(status=503)

    async def keep(self, provider: Provider, ended: Task) -> web.Response:
        """A signed delivery's result, kept with its job (idempotent: the first one stays)."""
        job_id = await self.indexes.job_for_task(provider.name, ended.id)
        outcome = "other"
        if job_id:
            outcome = await self.records.deliver(str(job_id), ended.id, task_to_text(ended))
        log.info("%s webhook for task %s (%s): %s", provider.label, ended.id, ended.state, KEPT[outcome])
        if outcome == "already":
            return web.Response(status=202, text="seen\n")
        return web.Response(status=200, text="ok\n")

    async def nudge(self, provider: Provider, task_id: str, body: bytes) -> web.Response:
        """A hint: the task's job gets its next poll due now, at most once per NUDGE_WINDOW_S."""
        # The same delivery twice (a replay, or the provider's retry of one we answered) does nothing more.
        fingerprint = hashlib.sha256(body).hexdigest()
        if not await self.marks.mark_once(f"webhook:{provider.name}:{fingerprint}", REPLAY_WINDOW_S):
            return web.Response(status=202, text="seen\n")
        if not await self.marks.mark_once(f"webhook:{provider.name}:task:{task_id}", NUDGE_WINDOW_S):
            return web.Response(status=202, text="seen\n")  # nudged moments ago: its poll is due
        job_id = await self.indexes.job_for_task(provider.name, task_id)
        nudged = bool(job_id) and await self.records.nudge_poll(str(job_id))
        log.info(
            "%s webhook for task %s: %s",
            provider.label,
            task_id,
            "poll due now" if nudged else "no job waits",
        )
        return web.Response(status=200, text="ok\n")
