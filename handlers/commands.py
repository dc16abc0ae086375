"""The `/lipsync` slash command."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond

from bot import messages
from bot.command import InvalidCommand, parse_lipsync_text
from bot.intake import Intake

log = logging.getLogger(__name__)


def register(app: AsyncApp, intake: Intake) -> None:
    app.command("/lipsync")(lipsync_command(intake))


def lipsync_command(intake: Intake) -> Callable[..., Awaitable[None]]:
    async def handle(ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond) -> None:
        # Parsing is pure and fast, so its verdict can ride on the ack; all I/O comes after the ack.
        try:
            request = parse_lipsync_text(str(command.get("text") or ""))
        except InvalidCommand as exc:
            reply = messages.usage_error(exc.reason)
            await ack(text=reply.text, blocks=reply.blocks, response_type="ephemeral")
            return
        if request is None:
            reply = messages.usage()
            await ack(text=reply.text, blocks=reply.blocks, response_type="ephemeral")
            return
        await ack()
        try:
            job = await intake.accept_command(command, request)
        except RedisError as exc:
            log.error("cannot store a /lipsync job: %s", exc)
            reply = messages.store_unavailable()
            await respond(text=reply.text, blocks=reply.blocks, response_type="ephemeral")
            return
        if job is None:
            log.info("duplicate delivery of a /lipsync command ignored")
        else:
            log.info("job %s queued for %s in %s", job.id, job.user, job.channel)

    return handle
