"""Slack listeners, grouped by Slack feature. `register(app, ...)` wires them into a Bolt app."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.intake import Intake
from handlers import commands


def register(app: AsyncApp, intake: Intake) -> None:
    commands.register(app, intake)
