"""Socket Mode: one WebSocket to Slack, kept open by us, with envelopes handed to Bolt.

slack_sdk's client reconnects by itself every ping interval forever, logging a traceback each time, and
does not return while Slack is unreachable (a bot stuck in it ignored SIGTERM). So `connect()` here makes
one attempt, and `SocketModeConnection` owns the retries: capped exponential backoff, one log line per
failed attempt, a refused app token stops the start-up, and it knows whether it has connected yet and how
long it has been down (GET /healthz: not ready before the first connection). `dispatch_to_bolt` is the
envelope listener: it drops what Bolt cannot read (`payload_problem`) before Bolt builds a request from
it, and acks everything so Slack never redelivers; an ack that meets a closed connection is one warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from slack_bolt.adapter.socket_mode.async_internals import run_async_bolt_app
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from bot.retry import Backoff
from bot.settings import StartupError
from bot.slack.inbound import payload_problem
from bot.slack.out import REFUSED_TOKEN_ERRORS

log = logging.getLogger(__name__)

# How often to ping, the backoff between connection attempts, the longest one attempt may take
# (aiohttp's own default is 5 minutes), and how long a socket that was connected may be down (a refresh, a
# network blip) before /healthz says 503. Before the first connection /healthz says 503 at once.
PING_SECONDS = 10.0
RECONNECT = Backoff(base_s=1.0, cap_s=60.0)
ATTEMPT_TIMEOUT_SECONDS = 30.0
DOWN_UNHEALTHY_SECONDS = 120.0


class SingleAttemptSocketModeClient(SocketModeClient):
    """slack_sdk's aiohttp Socket Mode client without its reconnect loop: `connect()` makes one
    attempt and raises; `SocketModeConnection` decides when to try again."""

    def __init__(self, *, app_token: str, web_client: AsyncWebClient) -> None:
        super().__init__(
            app_token,
            logger=log,
            web_client=web_client,
            auto_reconnect_enabled=False,
            ping_interval=PING_SECONDS,
        )
        self.reconnect_requested = asyncio.Event()

    async def connect(self) -> None:
        if self.current_session is not None:
            with contextlib.suppress(Exception):  # a broken session may fail to close; it is dropped anyway
                await self.current_session.close()
        if self.aiohttp_client_session.closed:
            self.aiohttp_client_session = aiohttp.ClientSession()
        url = self.wss_uri or await self.issue_new_wss_url()
        self.wss_uri = None  # Slack's URL is good for one connection
        ssl = self.web_client.ssl if self.web_client.ssl is not None else True
        self.current_session = await self.aiohttp_client_session.ws_connect(
            url, autoping=False, heartbeat=self.ping_interval, proxy=self.proxy, ssl=ssl
        )
        # A fresh grace period: the last pong of the old connection must not mark this one stale.
        self.stale, self.last_ping_pong_time = False, time.time()
        for task in (self.current_session_monitor, self.message_receiver):
            if task is not None:
                task.cancel()
        self.current_session_monitor = asyncio.ensure_future(self.monitor_current_session())
        self.message_receiver = asyncio.ensure_future(self.receive_messages())

    async def connect_to_new_endpoint(self, force: bool = False) -> None:
        # With auto-reconnect off, only Slack's "disconnect" message (e.g. refresh_requested) gets here.
        self.reconnect_requested.set()

    async def send_message(self, message: str) -> None:
        """Send on the current connection, and once more on a newer one if a refresh replaced it meanwhile.
        Raises ConnectionError when no open connection takes it; unlike the SDK's, logs nothing itself
        (`dispatch_to_bolt` says it once)."""
        session = self.current_session
        if session is None:
            raise ConnectionError("no Socket Mode connection")
        try:
            await session.send_str(message)
        except ConnectionError:
            replaced = self.current_session
            if replaced is None or replaced is session or not await self.is_connected():
                raise
            await replaced.send_str(message)


class SocketModeConnection:
    """Keeps the Socket Mode connection open: reconnects with capped exponential backoff and one log
    line per failed attempt, and knows how long it has been down (for /healthz)."""

    def __init__(self, *, client: SingleAttemptSocketModeClient, on_fatal: Callable[[str], None]) -> None:
        self.client = client
        self.on_fatal = on_fatal
        self.down_since: float | None = time.monotonic()
        self.ever_connected = False
        self._keeper: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Connect once now, then keep connected in the background. Raises StartupError if Slack
        refuses the app token; if Slack is unreachable, the background retries begin at once."""
        failure = await self._attempt()
        delay = RECONNECT.delay_s(1)
        if failure:
            self._log_retry(failure, delay)
        self._keeper = asyncio.create_task(self._stay_connected(failures=1 if failure else 0, delay=delay))

    def down_seconds(self) -> float | None:
        return None if self.down_since is None else time.monotonic() - self.down_since

    def describe(self) -> str:
        down = self.down_seconds()
        if down is None:
            return "connected"
        if not self.ever_connected:
            return f"not connected yet (trying for {down:.0f} s)"
        return f"disconnected for {down:.0f} s"

    def healthy(self) -> bool:
        """Ready for Slack's requests: False until the first connection (nothing reaches the bot yet), and
        once a connection has been down too long for a refresh or a blip."""
        down = self.down_seconds()
        return down is None or (self.ever_connected and down <= DOWN_UNHEALTHY_SECONDS)

    async def close(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        await self.client.close()  # type: ignore[no-untyped-call]

    async def _stay_connected(self, failures: int, delay: float) -> None:
        """`failures`: attempts failed in a row so far; `delay`: the wait before the next attempt."""
        while True:
            if self.down_since is None:  # connected: look again in a second, or when Slack asks
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.client.reconnect_requested.wait(), timeout=1)
                if self.client.reconnect_requested.is_set() or not await self.client.is_connected():
                    self.client.reconnect_requested.clear()
                    self.down_since = time.monotonic()
                    log.info("Socket Mode connection lost; reconnecting")
                    failures, delay = 0, 0.0
            else:
                await asyncio.sleep(delay)
                try:
                    failure = await self._attempt()
                except StartupError as exc:
                    self.on_fatal(str(exc))
                    return
                if failure:
                    failures += 1
                    delay = RECONNECT.delay_s(failures)
                    self._log_retry(failure, delay)
                else:
                    failures = 0

    async def _attempt(self) -> str:
        """One connection attempt: "" when connected, else why not. Raises StartupError on a refused token."""
        try:
            async with asyncio.timeout(ATTEMPT_TIMEOUT_SECONDS):
                opened = await self.client.web_client.apps_connections_open(app_token=self.client.app_token)
                self.client.wss_uri = str(opened["url"])
                await self.client.connect()
        except SlackApiError as exc:
            error = str(exc.response.get("error", "")) if exc.response is not None else ""
            if error in REFUSED_TOKEN_ERRORS:
                raise StartupError(
                    f"Slack refused SLACK_APP_TOKEN ({error}). Generate an app-level token with the "
                    "connections:write scope at api.slack.com/apps → your app → Basic Information → "
                    "App-Level Tokens, or unset it and set SLACK_SIGNING_SECRET to use HTTP mode."
                ) from None
            return f"Slack answered {error or exc.response.status_code}"
        except Exception as exc:  # unreachable, timed out, or an odd answer: all worth another try
            return f"{type(exc).__name__}: {exc}".rstrip(": ")
        self.down_since, self.ever_connected = None, True
        log.info("connected to Slack in Socket Mode")
        return ""

    @staticmethod
    def _log_retry(failure: str, delay: float) -> None:
        log.warning("cannot connect to Slack in Socket Mode (%s); next try in %.0f s", failure, delay)


EnvelopeListener = Callable[[AsyncBaseSocketModeClient, SocketModeRequest], Awaitable[None]]


def dispatch_to_bolt(bolt: AsyncApp) -> EnvelopeListener:
    """The envelope listener: hands each envelope to Bolt and acks it with Bolt's answer. Every
    envelope is acked, even one Bolt has no listener for: Slack would only deliver it again."""

    async def dispatch(client: AsyncBaseSocketModeClient, req: SocketModeRequest) -> None:
        if req.type not in ("events_api", "slash_commands", "interactive"):
            return  # hello, disconnect…: the client handles those
        payload = req.payload
        problem = payload_problem(payload) if isinstance(payload, dict) else "payload is not an object"
        if problem is not None:
            # The connection is Slack's own, so this is Slack's oddity: dropped in one short line,
            # never logged with its body.
            log.warning("ignored a Slack payload Bolt cannot read: %s", problem)
            await _ack(client, req, None)
            return
        response = await run_async_bolt_app(bolt, req)
        await _ack(client, req, _ack_payload(response))

    return dispatch


async def _ack(
    client: AsyncBaseSocketModeClient, req: SocketModeRequest, payload: dict[str, Any] | None
) -> None:
    try:
        await client.send_socket_mode_response(
            SocketModeResponse(envelope_id=req.envelope_id, payload=payload)
        )
    except ConnectionError as exc:
        # Slack closed the connection first (the end of a refresh): what the envelope asked for is done and
        # stored, and a copy Slack sends again is recognised. One line, no traceback.
        log.warning(
            "could not acknowledge a Slack %s envelope: the connection closed first (%s)", req.type, exc
        )


def _ack_payload(response: BoltResponse) -> dict[str, Any] | None:
    """What the ack carries: the listener's answer (e.g. a private reply to a command), if any."""
    if response.status != 200 or not response.body:
        return None
    if response.headers.get("content-type", [""])[0].startswith("application/json"):
        payload = json.loads(response.body)
        return payload if isinstance(payload, dict) else None
    return {"text": response.body}
