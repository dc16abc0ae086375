"""The `/lipsync` slash command."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError
from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.parsing.command import BudgetCommand, InvalidCommand, JobCommand, parse_lipsync_text
from bot.requests.control import JobControl, person_from
from bot.requests.intake import Intake, OptionRefused
from bot.views.control import store_unavailable_now
from bot.views.help import store_unavailable, usage_error
from bot.views.text import Message

log = logging.getLogger(__name__)


def register(app: AsyncApp, intake: Intake, control: JobControl) -> None:
    app.command("/lipsync")(lipsync_command(intake, control))


async def _job_command(
    control: JobControl, command: dict[str, Any], request: JobCommand | BudgetCommand
) -> Message:
    """`list`, `status`, `cancel`, `budget`: answered privately in the ack (a change is stored before it),
    each for the person and workspace the command comes from."""
    person = person_from(command)
    domain = command.get("team_domain")
    domain = domain if isinstance(domain, str) else ""  # for links to jobs' threads
    if isinstance(request, BudgetCommand):
        return await control.budget(person, request)
    if request.verb == "list":
        return await control.list_jobs(person, request.page, domain)
    if request.verb == "status":
        return await control.status(request.job, person, domain)
    return await control.cancel(request.job, person)


def lipsync_command(intake: Intake, control: JobControl) -> Callable[..., Awaitable[None]]:
    async def handle(ack: AsyncAck, command: dict[str, Any]) -> None:
        # The app runs with process_before_response: the ack goes out when this returns, so the job is in
        # Redis before Slack hears "accepted" (Slack never re-sends an acknowledged command).
        try:
            request = parse_lipsync_text(str(command.get("text") or ""), providers=intake.registry.names)
        except InvalidCommand as exc:
            await _ack_with(ack, usage_error(exc.reason))
            return
        if request is None:
            await _ack_with(ack, intake.usage())
            return
        if isinstance(request, JobCommand | BudgetCommand):
            try:
                await _ack_with(ack, await _job_command(control, command, request))
            except RedisError as exc:
                log.error("cannot answer /lipsync %s: %s", type(request).__name__, exc)
                await _ack_with(ack, store_unavailable_now())
            return
        try:
            jobs = await intake.accept_command(command, request)
        except OptionRefused as refused:
            await _ack_with(ack, refused.message)
            return
        except RedisError as exc:
            log.error("cannot store a /lipsync job: %s", exc)
            await _ack_with(ack, store_unavailable())
            return
        await ack()
        if not jobs:
            log.info("duplicate delivery of a /lipsync command ignored")
        for job in jobs:
            log.info(
                "job %s queued for %s in %s (%s)",
                job.id,
                job.identity.person,
                job.identity.channel,
                job.order.provider,
            )

    return handle


async def _ack_with(ack: AsyncAck, reply: Message) -> None:
    await ack(text=reply.text, blocks=reply.blocks, response_type="ephemeral")
