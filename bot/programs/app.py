"""The Bolt app, and the web server: GET /healthz and /livez in both modes, POST /slack/events in HTTP mode.

/healthz is the readiness check (and Docker's HEALTHCHECK): 503 while Redis is unreachable or, in Socket
Mode, before the first connection to Slack and once it has been down for minutes. /livez only says the
process answers, for a liveness probe: restarting the bot would not bring Slack or Redis back sooner.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

import handlers
from bot.requests.control import JobControl
from bot.requests.home import Home
from bot.requests.intake import Intake
from bot.requests.shares import Shares
from bot.slack.inbound import Refusal, SlackRequestGuard, refusal_response

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"
LIVE_PATH = "/livez"


def build_bolt_app(
    client: AsyncWebClient, intake: Intake, shares: Shares, control: JobControl, home: Home
) -> AsyncApp:
    with _hidden_from_bolt("SLACK_BOT_TOKEN"):
        app = AsyncApp(
            client=client,
            # Socket Mode connections are authenticated by the app token; HTTP requests by their signature,
            # checked in front of Bolt (bot/slack/inbound.py) so that Bolt never logs a forged body. Bolt
            # never sees the signing secret.
            signing_secret="",
            request_verification_enabled=False,
            raise_error_for_unhandled_request=False,
            # The ack leaves when the listener returns, so listeners store what they promise first (durable
            # before acknowledged); slow work goes to lazy listeners. It also skips Bolt's 10 ms ack polling.
            process_before_response=True,
        )

    @app.error
    async def on_error(error: Exception, body: dict[str, Any]) -> None:
        log.exception("unhandled error in a Slack listener", exc_info=error)

    handlers.register(app, intake, shares, control, home)
    return app


@contextlib.contextmanager
def _hidden_from_bolt(name: str) -> Iterator[None]:
    """Bolt looks up SLACK_BOT_TOKEN in the environment when it is given no token, and then logs at every
    start that the client's token wins over it. The client carries the token, so Bolt is built without
    that variable in sight (put back at once: nothing else runs meanwhile)."""
    value = os.environ.pop(name, None)
    try:
        yield
    finally:
        if value is not None:
            os.environ[name] = value


def build_web_app(
    health: Callable[[], Awaitable[dict[str, Any]]],
    bolt: AsyncApp | None = None,
    signing_secret: str = "",
    routes: Sequence[web.RouteDef] = (),
) -> web.Application:
    """GET /healthz and /livez, and with `bolt` (HTTP mode) POST /slack/events, its requests checked against
    `signing_secret`. In Socket Mode Slack's requests come over the WebSocket (bot/slack/socket_mode.py), so
    there is no events route to attack. `routes`: provider webhooks and media links (PUBLIC_URL set)."""

    async def healthz(_: web.Request) -> web.Response:
        report = await health()
        return web.json_response(report, status=200 if report["status"] == "ok" else 503)

    async def livez(_: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    web_app = web.Application()
    web_app.router.add_get(HEALTH_PATH, healthz)
    web_app.router.add_get(LIVE_PATH, livez)
    if bolt is not None:
        web_app.router.add_post(EVENTS_PATH, slack_events_handler(bolt, signing_secret))
    web_app.router.add_routes(routes)
    return web_app


def slack_events_handler(
    bolt: AsyncApp, signing_secret: str
) -> Callable[[web.Request], Awaitable[web.Response]]:
    guard = SlackRequestGuard(signing_secret)

    async def slack_events(request: web.Request) -> web.Response:
        try:
            bolt_request = await guard.admit(request)
        except Refusal as refusal:
            return refusal_response(request, refusal)
        return await to_aiohttp_response(await bolt.async_dispatch(bolt_request))

    return slack_events
