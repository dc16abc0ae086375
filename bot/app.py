"""The Bolt app and, for HTTP mode, the web server in front of it."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

import handlers
from bot.intake import Intake
from bot.shares import Shares
from bot.slack_requests import DropMalformedPayloads, Refusal, SlackRequestGuard, refusal_response

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"


def build_bolt_app(
    client: AsyncWebClient, signing_secret: str | None, intake: Intake, shares: Shares
) -> AsyncApp:
    app = AsyncApp(
        client=client,
        # Socket Mode connections are authenticated by the app token; HTTP requests by their signature,
        # checked in front of Bolt (bot/slack_requests.py) so that Bolt never logs a forged body.
        signing_secret=signing_secret or "",
        request_verification_enabled=False,
        before_authorize=DropMalformedPayloads(),
        raise_error_for_unhandled_request=False,
        # The ack leaves when the listener returns, so listeners store what they promise first (durable
        # before acknowledged); slow work goes to lazy listeners. It also skips Bolt's 10 ms ack polling.
        process_before_response=True,
    )

    @app.error
    async def on_error(error: Exception, body: dict[str, Any]) -> None:
        log.exception("unhandled error in a Slack listener", exc_info=error)

    handlers.register(app, intake, shares)
    return app


def build_web_app(bolt: AsyncApp, health: Callable[[], Awaitable[dict[str, Any]]]) -> web.Application:
    guard = SlackRequestGuard(bolt._signing_secret)  # the secret build_bolt_app gave Bolt

    async def slack_events(request: web.Request) -> web.Response:
        try:
            bolt_request = await guard.admit(request)
        except Refusal as refusal:
            return refusal_response(request, refusal)
        return await to_aiohttp_response(await bolt.async_dispatch(bolt_request))

    async def healthz(_: web.Request) -> web.Response:
        report = await health()
        return web.json_response(report, status=200 if report["status"] == "ok" else 503)

    web_app = web.Application()
    web_app.router.add_post(EVENTS_PATH, slack_events)
    web_app.router.add_get(HEALTH_PATH, healthz)
    return web_app
