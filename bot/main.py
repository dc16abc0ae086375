"""`python -m bot`: wire settings, Redis, JoggAI, Slack and the worker together, then serve.

HTTP mode (no SLACK_APP_TOKEN) listens on PORT with Slack requests at POST /slack/events; Socket Mode
(SLACK_APP_TOKEN set) connects out to Slack and needs no public URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
from typing import Any

from aiohttp import web
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import RedisError
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_sdk.errors import SlackApiError

from bot.app import build_bolt_app, build_web_app
from bot.embedded_redis import EmbeddedRedis
from bot.intake import Intake
from bot.jogg import JoggClient
from bot.pipeline import Pipeline, Timing
from bot.ratelimit import RateLimiter
from bot.settings import Settings, SettingsError, load_settings
from bot.shares import Shares
from bot.slack_out import SlackOut, make_client
from bot.store import JobStore
from bot.transfer import Transfer
from bot.worker import Worker

log = logging.getLogger("bot")


class StartupError(Exception):
    """Something an operator must fix before the bot can run; `str()` says what."""


class Bot:
    """One running bot process. `start()` then `stop()`; tests drive it the same way `main()` does."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.embedded: EmbeddedRedis | None = None
        self.redis: Redis | None = None
        self.jogg: JoggClient | None = None
        self.transfer: Transfer | None = None
        self.worker: Worker | None = None
        self.site: web.TCPSite | None = None
        self.runner: web.AppRunner | None = None
        self.socket_handler: AsyncSocketModeHandler | None = None
        self.port: int | None = None

    async def start(self) -> None:
        s = self.settings
        url = s.redis_url
        if not url:
            try:
                self.embedded = await asyncio.to_thread(EmbeddedRedis(s.data_dir).start)
            except (RuntimeError, OSError) as exc:
                raise StartupError(
                    f"the embedded Redis could not start in {s.data_dir.resolve()} ({exc}). "
                    "Check that DATA_DIR is writable, or set REDIS_URL to a Redis server."
                ) from None
            url = self.embedded.url
            log.info("using embedded Redis under %s", s.data_dir.resolve())
        self.redis = Redis.from_url(
            url,
            socket_timeout=5,
            socket_connect_timeout=5,
            health_check_interval=30,
            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=1), 3),
        )
        store = JobStore(self.redis)
        slack_client = make_client(
            s.slack_bot_token.get_secret_value(), s.slack_api_url, s.http_timeout_seconds
        )
        await self._check_slack_token(slack_client)
        self.jogg = JoggClient(s.jogg_api_url, s.jogg_api_key, s.http_timeout_seconds)
        limiter = RateLimiter(self.redis, s.jogg_api_key.get_secret_value(), s.jogg_posts_per_minute)
        timing = Timing(
            poll_interval_ms=int(s.poll_interval_seconds * 1000),
            job_timeout_ms=int(s.job_timeout_seconds * 1000),
            lease_ms=int(s.lease_seconds * 1000),
            poll_max_interval_ms=int(s.poll_max_interval_seconds * 1000),
        )
        max_file_bytes = int(s.max_file_mb * 1_000_000)
        self.transfer = Transfer(
            s.slack_bot_token, s.slack_api_url, self.jogg, max_file_bytes, s.http_timeout_seconds
        )
        slack_out = SlackOut(slack_client, store)
        pipeline = Pipeline(store, self.jogg, slack_out, limiter, timing, self.transfer)
        tick = max(0.05, min(1.0, s.poll_interval_seconds / 2))
        self.worker = Worker(store, pipeline, lease_ms=timing.lease_ms, tick_seconds=tick)
        intake = Intake(store, s.job_timeout_seconds, self.worker.kick, max_file_bytes)
        shares = Shares(store, intake, slack_out, timing.lease_ms, s.max_jobs_per_message)
        self.worker.recover_shares = shares.recover
        signing_secret = None if s.socket_mode else s.slack_signing_secret
        bolt = build_bolt_app(
            slack_client, signing_secret.get_secret_value() if signing_secret else None, intake, shares
        )
        await self.worker.start()
        if s.slack_app_token is not None:
            self.socket_handler = AsyncSocketModeHandler(bolt, s.slack_app_token.get_secret_value())
            await self.socket_handler.connect_async()  # type: ignore[no-untyped-call]
            log.info("connected to Slack in Socket Mode")
        else:
            self.runner = web.AppRunner(build_web_app(bolt, self.health), access_log=None)
            await self.runner.setup()
            self.site = web.TCPSite(self.runner, host="0.0.0.0", port=s.port)
            try:
                await self.site.start()
            except OSError as exc:
                raise StartupError(
                    f"cannot listen on port {s.port} ({exc.strerror}). Stop whatever uses it or set PORT."
                ) from None
            self.port = int(self.runner.addresses[0][1])
            log.info("listening for Slack on http://0.0.0.0:%s/slack/events", self.port)

    async def _check_slack_token(self, client: Any) -> None:
        try:
            auth = await client.auth_test()
        except SlackApiError as exc:
            error = exc.response.get("error", "") if exc.response is not None else ""
            if error in ("invalid_auth", "not_authed", "account_inactive", "token_revoked"):
                raise StartupError(
                    f"Slack refused SLACK_BOT_TOKEN ({error}). Copy the Bot User OAuth Token again from "
                    "api.slack.com/apps → your app → OAuth & Permissions, and reinstall the app if needed."
                ) from None
            log.warning("could not check the Slack token (%s); continuing", error)
            return
        except Exception as exc:  # Slack unreachable: Bolt will retry on the first request
            log.warning("could not reach Slack to check the token (%s); continuing", exc)
            return
        log.info("Slack: connected as %s in %s", auth.get("user"), auth.get("team"))

    async def health(self) -> dict[str, Any]:
        report: dict[str, Any] = {"status": "ok", "redis": "ok"}
        try:
            assert self.redis is not None
            await asyncio.wait_for(self.redis.ping(), timeout=2)
        except (RedisError, OSError, TimeoutError, AssertionError) as exc:
            report.update(status="degraded", redis=f"unreachable: {type(exc).__name__}")
        if self.worker is not None:
            report["jobs_in_progress_here"] = self.worker.busy
            report["steps_done_here"] = dict(self.worker.steps_done)
        return report

    async def stop(self) -> None:
        if self.socket_handler is not None:
            with contextlib.suppress(Exception):
                await self.socket_handler.close_async()  # type: ignore[no-untyped-call]
        if self.runner is not None:
            await self.runner.cleanup()
        if self.worker is not None:
            await self.worker.stop()
        if self.transfer is not None:
            await self.transfer.aclose()
        if self.jogg is not None:
            await self.jogg.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        if self.embedded is not None:
            await asyncio.to_thread(self.embedded.stop)


async def serve(settings: Settings) -> None:
    bot = Bot(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await bot.start()
        # Start-up objects live as long as the process: keep them out of the collector's full passes,
        # which otherwise stall the event loop for tens of ms under load (bench/ack_latency.py).
        gc.collect()
        gc.freeze()
        await stop.wait()
        log.info("shutting down")
    finally:
        await bot.stop()


def main() -> None:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        sys.exit(2)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("apscheduler", "httpx"):  # they log every tick and every request at INFO
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        asyncio.run(serve(settings))
    except StartupError as exc:
        print(f"The bot cannot start: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        pass
