"""POST /webhooks/<provider>: a provider says a task is done. A delivery is only a hint.

Its signature is checked when a secret is configured (the provider's module knows its scheme; LipSync.dev's
version B documents none, so its deliveries come unsigned); then the job of that task gets its next poll
due now, and the poll step, which re-fetches the task, stays the one place that decides. Unknown tasks,
bad signatures and replays change nothing; a lost webhook only costs time, since polling goes on
regardless. One task is nudged at most once per NUDGE_WINDOW_S, so that deliveries anyone could forge (no
secret) cannot turn into a stream of polls against the provider's rate limit.
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
from bot.providers.base import Provider

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


def webhook_handler(
    providers: Mapping[str, Provider], *, marks: Marks, indexes: Indexes, records: JobRecords
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        response = await answer(request)
        name = request.match_info["provider"]
        WEBHOOKS.labels(
            name if name in providers else "unknown", OUTCOMES.get(response.status, "other")
        ).inc()
        return response

    async def answer(request: web.Request) -> web.Response:
        provider = providers.get(request.match_info["provider"])
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
        task_id = provider.webhook_task_id(headers, body, time.time())
        if task_id is None:
            log.warning("%s webhook ignored: bad signature or unreadable body", provider.label)
            return web.Response(status=401)
        # The same delivery twice (a replay, or the provider's retry of one we answered) does nothing more.
        fingerprint = hashlib.sha256(body).hexdigest()
        try:
            if not await marks.mark_once(f"webhook:{provider.name}:{fingerprint}", REPLAY_WINDOW_S):
                return web.Response(status=202, text="seen\n")
            if not await marks.mark_once(f"webhook:{provider.name}:task:{task_id}", NUDGE_WINDOW_S):
                return web.Response(status=202, text="seen\n")  # nudged moments ago: its poll is due
            job_id = await indexes.job_for_task(provider.name, task_id)
            nudged = bool(job_id) and await records.nudge_poll(str(job_id))
        except RedisError as exc:  # the provider retries a 5xx; polling covers it anyway
            log.warning(
                "%s webhook for %s: store unavailable (%s)", provider.label, task_id, type(exc).__name__
            )
            return web.Response(status=503)
        log.info(
            "%s webhook for task %s: %s",
            provider.label,
            task_id,
            "poll due now" if nudged else "no job waits",
        )
        return web.Response(status=200, text="ok\n")

    return handle
