"""The `/lipsync` slash command."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext, AsyncRespond

from bot import messages
from bot.command import InvalidCommand, parse_lipsync_text
from bot.intake import Intake

log = logging.getLogger(__name__)

# In HTTP mode bot/app.py puts an asyncio.Event under this key of the Bolt context, set once the request's
# HTTP response (the ack) is written. Socket Mode requests have none.
RESPONDED = "lipsync_responded"
RESPONSE_WAIT_SECONDS = 5.0  # Bolt answers within its 3 s ack timeout; this only guards against a bug


def register(app: AsyncApp, intake: Intake) -> None:
    app.command("/lipsync")(lipsync_command(intake))


def lipsync_command(intake: Intake) -> Callable[..., Awaitable[None]]:
    async def handle(
        ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond, context: AsyncBoltContext
    ) -> None:
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
        await _after_response(context)
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


async def _after_response(context: AsyncBoltContext) -> None:
    """Wait until the ack has been written (HTTP mode), so the I/O it triggers does not delay other acks.

    Bolt writes an HTTP ack only when its dispatch loop next sees it, up to 10 ms after `ack()`. Storing the
    job meanwhile (and the worker starting on it) competes for the event loop with every other request of a
    burst still waiting for its ack: with bursts of 50 concurrent commands (bench/ack_latency.py) the acks'
    p50 was 48 ms instead of 33 and their p99 117 ms instead of 53. The job is stored a few ms later instead.
    """
    responded = context.get(RESPONDED)
    if isinstance(responded, asyncio.Event):
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(RESPONSE_WAIT_SECONDS):
                await responded.wait()
