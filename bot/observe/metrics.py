"""`GET /metrics` in the Prometheus text format (prometheus_client), for operators only.

It shows spend, job counts and Slack's error strings, so it has a listener of its own (METRICS_PORT on
METRICS_HOST, 127.0.0.1 by default) and is never served on PORT, which faces Slack and the internet.
Counters are this process's (Prometheus sums replicas); the queue depth is read from Redis at scrape time
with one ZCARD per lane, so a scrape costs the same with ten jobs or a million.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from redis.exceptions import RedisError

from bot.jobs.lanes import Lanes
from bot.jobs.model import Job, Status
from bot.settings import StartupError

METRICS_PATH = "/metrics"
REGISTRY = CollectorRegistry()

JOBS = Counter(
    "lipsync_jobs_finished",
    "Jobs that ended, by provider and final state",
    ["provider", "status"],
    registry=REGISTRY,
)
COST = Counter(
    "lipsync_cost",
    "What succeeded jobs cost, in each provider's own unit",
    ["provider", "unit"],
    registry=REGISTRY,
)
QUEUE = Gauge("lipsync_queue_depth", "Jobs in each lane, all processes together", ["lane"], registry=REGISTRY)
PROVIDER_SECONDS = Histogram(
    "lipsync_provider_request_seconds",
    "Time of each request to a provider's API",
    ["provider", "method"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
PROVIDER_ERRORS = Counter(
    "lipsync_provider_errors", "Provider errors met by jobs, by kind", ["provider", "kind"], registry=REGISTRY
)
SLACK_ERRORS = Counter(
    "lipsync_slack_errors",
    "Slack Web API calls that failed, by method and error",
    ["method", "error"],
    registry=REGISTRY,
)
WEBHOOKS = Counter(
    "lipsync_webhook_deliveries",
    "Provider webhook deliveries, by outcome",
    ["provider", "outcome"],
    registry=REGISTRY,
)


def job_ended(job: Job) -> None:
    JOBS.labels(job.order.provider, job.status.value).inc()
    if job.status is Status.SUCCEEDED and job.result.cost and not job.money.cached_from:
        with contextlib.suppress(ValueError):  # not a number: left out rather than guessed
            COST.labels(job.order.provider, job.result.cost_unit).inc(float(job.result.cost))


def handler(*, lanes: Lanes) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def serve(request: web.Request) -> web.Response:
        try:
            for lane, depth in (await lanes.counts()).items():
                QUEUE.labels(lane).set(depth)
        except RedisError:
            pass  # the counters still answer; the gauge keeps its last reading
        return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return serve


async def listen(host: str, port: int, *, lanes: Lanes) -> tuple[web.AppRunner, int]:
    """Serve GET /metrics, and nothing else, on `host`:`port` (0: a free port); the runner (to clean up)
    and the port it got. Raises StartupError naming the settings when it cannot listen there."""
    app = web.Application()
    app.router.add_get(METRICS_PATH, handler(lanes=lanes))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host=host, port=port).start()
    except OSError as exc:
        await runner.cleanup()
        raise StartupError(
            f"cannot serve /metrics on {host} port {port} ({exc.strerror or exc}). "
            "Stop whatever uses it, or set METRICS_PORT (or METRICS_HOST) to another."
        ) from None
    return runner, int(runner.addresses[0][1])
