"""Slack listeners, grouped by Slack feature. `register(app, ...)` wires them into a Bolt app."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.requests.control import JobControl
from bot.requests.home import Home
from bot.requests.intake import Intake
from bot.requests.shares import Shares
from handlers import actions, app_home, commands, files


def register(app: AsyncApp, intake: Intake, shares: Shares, control: JobControl, home: Home) -> None:
    commands.register(app, intake, control)
    files.register(app, shares)
    actions.register(app, control)
    app_home.register(app, home)
