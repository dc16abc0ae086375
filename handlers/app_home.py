"""The App Home tab: published when a person opens it (and by the core when one of their jobs ends)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext

from bot.requests.control import person_from
from bot.requests.home import Home

log = logging.getLogger(__name__)


def register(app: AsyncApp, home: Home) -> None:
    app.event("app_home_opened")(ack=_nothing, lazy=[home_opened(home)])


async def _nothing() -> None:
    """Nothing to store before the ack: the view is built afresh each time."""


def home_opened(home: Home) -> Callable[..., Awaitable[None]]:
    async def handle(event: dict[str, Any], body: dict[str, Any], context: AsyncBoltContext) -> None:
        user = event.get("user")
        if event.get("tab") != "home" or not isinstance(user, str) or not user:
            return
        person = person_from(body)  # the envelope: the workspace's team_id, the event's user
        if not person.team:
            person = dataclasses.replace(person, team=context.team_id or "")
        try:
            await home.publish(person)
        except Exception as exc:  # a Home view is a courtesy; never a traceback for it
            log.warning("App Home for %s not published: %s", user, exc)

    return handle
