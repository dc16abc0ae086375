"""Files shared in Slack: a `message` with a video and audio files, or the "Lip-sync these files" shortcut.

Both paths go through `dub_files`, which pairs the files (looking earlier in the thread when the message
has only one kind), stores one job per pair and puts the "working" reaction on the message. Jobs are
keyed by (channel, message ts, file ids), so Slack's redeliveries and a shortcut on a message already
handled start nothing new.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import messages
from bot.file_share import SharedMessage, partner_in_thread, plan_jobs, playback_type_in
from bot.intake import Intake
from bot.jobs import Job
from bot.messages import Message
from bot.slack_files import MediaKind, SlackFile
from bot.slack_out import NETWORK_ERRORS, SlackOut

log = logging.getLogger(__name__)

SHORTCUT_CALLBACK_ID = "lipsync_files"
# Message subtypes a person's post can have; edits, deletions, joins and the like are not shares.
PERSON_POSTS = {None, "file_share", "thread_broadcast"}
MAX_THREAD_MESSAGES = 1000  # how far back in a thread we look for the other file


def register(app: AsyncApp, intake: Intake, slack: SlackOut) -> None:
    app.event("message")(message_listener(intake, slack))
    app.shortcut(SHORTCUT_CALLBACK_ID)(shortcut_listener(intake, slack))


@dataclass
class Outcome:
    jobs: list[Job] = field(default_factory=list)  # jobs started now
    duplicate: bool = False  # the files were already being handled
    advice: Message | None = None  # why nothing was started, for the user
    advice_unasked: bool = False  # worth saying even when nobody mentioned the bot
    no_media: bool = False  # no video or audio at all


def message_listener(intake: Intake, slack: SlackOut) -> Callable[..., Awaitable[None]]:
    async def handle(event: dict[str, Any], context: AsyncBoltContext, client: AsyncWebClient) -> None:
        # Bolt has acked the event already; everything here runs after the ack.
        bot_user = context.bot_user_id or ""
        if event.get("subtype") not in PERSON_POSTS or event.get("user") == bot_user:
            return  # our own posts and uploads (Bolt drops most of them too), edits, joins…
        message = SharedMessage.from_slack(event, str(event.get("channel") or ""), context.team_id or "")
        # A direct message is addressed to the bot even without a mention.
        asked = message.mentions(bot_user) or event.get("channel_type") == "im"
        if not (message.files or message.stubs or asked):
            return  # ordinary conversation
        try:
            outcome = await dub_files(message, intake, slack, client, bot_user)
            if outcome.no_media:
                outcome.advice = messages.file_help()  # they mentioned the bot: say how it works
            wanted = outcome.advice is not None and (asked or outcome.advice_unasked)
            # Marked first, so a redelivered event cannot post the same advice twice.
            if wanted and await intake.store.mark_once(f"advice:{message.channel}:{message.ts}"):
                assert outcome.advice is not None
                await slack.notify(message.channel, message.root, outcome.advice)
        except RedisError as exc:
            log.error("cannot store jobs for %s/%s: %s", message.channel, message.ts, exc)
            # The event is acked and Slack will not resend it: say so, so the user can try again.
            await slack.notify(message.channel, message.root, messages.store_unavailable_for_files())
            return
        for job in outcome.jobs:
            log.info("job %s queued from files shared in %s/%s", job.id, job.channel, job.source_ts)

    return handle


def shortcut_listener(intake: Intake, slack: SlackOut) -> Callable[..., Awaitable[None]]:
    async def handle(
        ack: AsyncAck,
        body: dict[str, Any],
        context: AsyncBoltContext,
        client: AsyncWebClient,
        respond: AsyncRespond,
    ) -> None:
        await ack()
        channel = str((body.get("channel") or {}).get("id") or "")
        raw = dict(body.get("message") or {})
        raw.setdefault("ts", body.get("message_ts"))
        message = SharedMessage.from_slack(raw, channel, context.team_id or "")
        # The person who ran the shortcut asked for the dub, whoever shared the files.
        user = str((body.get("user") or {}).get("id") or message.user)
        message = dataclasses.replace(message, user=user)
        try:
            outcome = await dub_files(
                message, intake, slack, client, context.bot_user_id or "", str(body.get("response_url") or "")
            )
        except RedisError as exc:
            log.error("cannot store jobs for %s/%s: %s", channel, message.ts, exc)
            reply = messages.store_unavailable()
        else:
            if outcome.jobs:
                reply = messages.files_started(len(outcome.jobs))
            elif outcome.duplicate:
                reply = messages.files_already_started()
            else:
                reply = outcome.advice or messages.no_media_in_message()
        await respond(text=reply.text, blocks=reply.blocks, response_type="ephemeral")

    return handle


async def dub_files(
    message: SharedMessage,
    intake: Intake,
    slack: SlackOut,
    client: AsyncWebClient,
    bot_user: str,
    response_url: str = "",
) -> Outcome:
    """Start the jobs `message` asks for, or say why there are none. Raises RedisError."""
    if message.stubs:
        message = message.with_files([*message.files, *await _file_details(client, message.stubs)])
    limit = intake.max_file_bytes
    plan = plan_jobs(message.files, limit)
    partner_text = ""
    if plan.missing is not None and message.is_reply:
        found = await _partner_in_thread(client, message, plan.missing, bot_user)
        if found is not None:
            partner, partner_text = found
            plan = plan_jobs(message.files, limit, partner)
    if not plan.has_media:
        return Outcome(no_media=True)
    if plan.ambiguous:
        return Outcome(advice=messages.ambiguous_files(plan), advice_unasked=True)
    if plan.missing is not None:
        return Outcome(advice=messages.needs_partner(plan))
    if plan.external:
        return Outcome(advice=messages.external_files(plan.external), advice_unasked=True)
    if plan.too_large:
        return Outcome(advice=messages.files_too_large(plan.too_large, limit), advice_unasked=True)
    playback = playback_type_in(message.text, partner_text)
    jobs = await intake.accept_files(message, plan.pairs, playback, response_url)
    if jobs:
        await slack.react(message.channel, message.ts, messages.REACTION_WORKING)
    return Outcome(jobs=jobs, duplicate=not jobs)


async def _file_details(client: AsyncWebClient, file_ids: tuple[str, ...]) -> list[SlackFile]:
    """Full file objects for the stubs Slack Connect channels send (`file_access: check_file_info`)."""
    found = []
    for file_id in file_ids:
        try:
            response = await client.files_info(file=file_id)
        except (SlackApiError, *NETWORK_ERRORS) as exc:
            log.warning("files.info %s failed: %s", file_id, exc)
            continue
        parsed = SlackFile.from_slack(response.get("file") or {})
        if parsed is not None:
            found.append(parsed)
    return found


async def _partner_in_thread(
    client: AsyncWebClient, message: SharedMessage, wanted: MediaKind, bot_user: str
) -> tuple[SlackFile, str] | None:
    """The newest earlier file of the `wanted` kind in the message's thread, with its message's text."""
    thread: list[dict[str, Any]] = []
    cursor = None
    try:
        while len(thread) < MAX_THREAD_MESSAGES:
            page = await client.conversations_replies(
                channel=message.channel, ts=message.thread_ts, cursor=cursor, limit=200
            )
            thread.extend(page.get("messages") or [])
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                break
    except (SlackApiError, *NETWORK_ERRORS) as exc:
        log.warning("cannot read thread %s/%s: %s", message.channel, message.thread_ts, exc)
        return None
    return partner_in_thread(thread, message.ts, wanted, bot_user)
