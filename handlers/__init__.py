"""Slack listeners, grouped by Slack feature. `register(app, ...)` wires them into a Bolt app."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.intake import Intake
from bot.shares import Shares
from handlers import commands, files


def register(app: AsyncApp, intake: Intake, shares: Shares) -> None:
    commands.register(app, intake)
    files.register(app, shares)
