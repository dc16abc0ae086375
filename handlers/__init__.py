"""Slack listeners, grouped by Slack feature. `register(app, ...)` wires them into a Bolt app."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.intake import Intake
from bot.slack_out import SlackOut
from handlers import commands, files


def register(app: AsyncApp, intake: Intake, slack: SlackOut) -> None:
    commands.register(app, intake)
    files.register(app, intake, slack)
