"""The `/lipsync` slash command."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError
from slack_bolt.async_app import AsyncAck, AsyncApp

from bot import messages
from bot.command import InvalidCommand, parse_lipsync_text
from bot.intake import Intake, OptionRefused
from bot.messages import Message

log = logging.getLogger(__name__)


def register(app: AsyncApp, intake: Intake) -> None:
    app.command("/lipsync")(lipsync_command(intake))


def lipsync_command(intake: Intake) -> Callable[..., Awaitable[None]]:
    async def handle(ack: AsyncAck, command: dict[str, Any]) -> None:
        # The app runs with process_before_response: the ack goes out when this returns, so the job is in
        # Redis before Slack hears "accepted" (Slack never re-sends an acknowledged command).
        try:
            request = parse_lipsync_text(str(command.get("text") or ""))
        except InvalidCommand as exc:
            await _ack_with(ack, messages.usage_error(exc.reason))
            return
        if request is None:
            await _ack_with(ack, intake.usage())
            return
        try:
            jobs = await intake.accept_command(command, request)
        except OptionRefused as refused:
            await _ack_with(ack, refused.message)
            return
        except RedisError as exc:
            log.error("cannot store a /lipsync job: %s", exc)
            await _ack_with(ack, messages.store_unavailable())
            return
        await ack()
        if not jobs:
            log.info("duplicate delivery of a /lipsync command ignored")
        for job in jobs:
            log.info("job %s queued for %s in %s (%s)", job.id, job.user, job.channel, job.provider)

    return handle


async def _ack_with(ack: AsyncAck, reply: Message) -> None:
    await ack(text=reply.text, blocks=reply.blocks, response_type="ephemeral")
