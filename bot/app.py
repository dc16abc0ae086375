"""The Bolt app and, for HTTP mode, the web server in front of it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

import handlers
from bot.intake import Intake
from bot.slack_out import SlackOut
from handlers.commands import RESPONDED

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"


def build_bolt_app(
    client: AsyncWebClient, signing_secret: str | None, intake: Intake, slack: SlackOut
) -> AsyncApp:
    app = AsyncApp(
        client=client,
        # Socket Mode connections are authenticated by the app token; HTTP requests by their signature.
        signing_secret=signing_secret or "",
        request_verification_enabled=signing_secret is not None,
        raise_error_for_unhandled_request=False,
    )

    @app.error
    async def on_error(error: Exception, body: dict[str, Any]) -> None:
        log.exception("unhandled error in a Slack listener", exc_info=error)

    handlers.register(app, intake, slack)
    return app


def build_web_app(bolt: AsyncApp, health: Callable[[], Awaitable[dict[str, Any]]]) -> web.Application:
    async def slack_events(request: web.Request) -> web.Response:
        bolt_request = await to_bolt_request(request)
        # Listeners that do I/O after their ack wait for this, so that under a burst of requests the
        # acks are not queued behind that I/O (see handlers/commands.py).
        responded = asyncio.Event()
        bolt_request.context[RESPONDED] = responded
        try:
            return await to_aiohttp_response(await bolt.async_dispatch(bolt_request))
        finally:
            # aiohttp writes the response as soon as this returns, before any waiter resumes.
            responded.set()

    async def healthz(_: web.Request) -> web.Response:
        report = await health()
        return web.json_response(report, status=200 if report["status"] == "ok" else 503)

    web_app = web.Application()
    web_app.router.add_post(EVENTS_PATH, slack_events)
    web_app.router.add_get(HEALTH_PATH, healthz)
    return web_app
