"""Files shared in Slack, from delivery to jobs: made durable first, then worked out.

A share is a `message` event that carries files (or mentions the bot), or the "Lip-sync these files"
shortcut on a message. Slack never re-sends a delivery it saw acknowledged, so `receive` writes the share to
the store's inbox before the ack leaves the process (one Redis round trip). `process` then does the slow
part: `files.info` for Slack Connect stubs, the thread looked up for the other file, one job per pair, the
working reaction, a note when nothing can start. It runs in a Bolt lazy listener right after the ack; if the
process dies first, any process's worker runs it from the inbox once the grace time is over (`recover`).

Processing is idempotent, so running it twice is harmless: jobs are keyed by (channel, message ts, file ids)
and notes are marked once before they are posted.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError

from bot.jobs.files import MediaKind, SlackFile
from bot.jobs.inbox import Inbox
from bot.jobs.marks import Marks
from bot.jobs.model import Job
from bot.parsing.file_share import SharedMessage, options_in, partner_in_thread, plan_jobs
from bot.requests.intake import Intake, OptionRefused
from bot.slack.out import SlackOut
from bot.views.help import store_unavailable
from bot.views.shares import (
    REACTION_WORKING,
    ambiguous_files,
    external_files,
    file_help,
    files_already_started,
    files_started,
    files_too_large,
    needs_partner,
    no_media_in_message,
    store_unavailable_for_files,
    too_many_dubs,
)
from bot.views.text import Message

log = logging.getLogger(__name__)

# Message subtypes a person's post can have; edits, deletions, joins and the like are not shares.
PERSON_POSTS = {None, "file_share", "thread_broadcast"}
MAX_THREAD_MESSAGES = 1000  # how far back in a thread we look for the other file
RECOVER_BATCH = 20


@dataclass(frozen=True)
class Share:
    """One delivery that may start dubs, as stored in the inbox."""

    message: dict[str, Any]  # the Slack message as delivered (event or shortcut payload)
    channel: str
    team_id: str
    bot_user: str
    asked: bool = False  # the bot was mentioned (or DMed): worth a note when nothing can start
    requester: str = ""  # who ran the shortcut; empty for a plain share
    response_url: str = ""  # the shortcut's, for its private answer

    @property
    def via_shortcut(self) -> bool:
        return bool(self.requester)

    @property
    def key(self) -> str:
        origin = "shortcut" if self.via_shortcut else "message"
        return f"{origin}:{self.channel}:{self.message.get('ts') or ''}"

    def parsed(self) -> SharedMessage:
        message = SharedMessage.from_slack(self.message, self.channel, self.team_id)
        if self.requester:  # the person who ran the shortcut asked for the dub, whoever shared the files
            message = SharedMessage(
                message.channel,
                message.ts,
                self.requester,
                message.team_id,
                message.text,
                message.thread_ts,
                message.files,
                message.stubs,
            )
        return message

    def to_json(self) -> str:
        return json.dumps(self.__dict__, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Share:
        return cls(**json.loads(text))


def share_from_event(event: dict[str, Any], team_id: str, bot_user: str) -> Share | None:
    """The share a `message` event is, or None for ordinary conversation and the bot's own posts."""
    if event.get("subtype") not in PERSON_POSTS or event.get("user") == bot_user:
        return None
    channel = str(event.get("channel") or "")
    message = SharedMessage.from_slack(event, channel, team_id)
    # A direct message is addressed to the bot even without a mention.
    asked = message.mentions(bot_user) or event.get("channel_type") == "im"
    if not (message.files or message.stubs or asked) or not (channel and message.ts):
        return None
    return Share(event, channel, team_id, bot_user, asked=asked)


def share_from_shortcut(body: dict[str, Any], team_id: str, bot_user: str) -> Share | None:
    """The share a message shortcut asks for, or None when the payload names no message."""
    channel_obj, user_obj = body.get("channel"), body.get("user")
    channel = str(channel_obj.get("id") or "") if isinstance(channel_obj, dict) else ""
    user = str(user_obj.get("id") or "") if isinstance(user_obj, dict) else ""
    raw = body.get("message")
    message = dict(raw) if isinstance(raw, dict) else {}
    message.setdefault("ts", body.get("message_ts"))
    if not (channel and user and isinstance(message.get("ts"), str)):
        return None
    response_url = body.get("response_url")
    return Share(
        message,
        channel,
        team_id,
        bot_user,
        asked=True,
        requester=user,
        response_url=response_url if isinstance(response_url, str) else "",
    )


@dataclass
class Outcome:
    jobs: list[Job] = field(default_factory=list)  # jobs started now
    duplicate: bool = False  # the files were already being handled
    advice: Message | None = None  # why nothing was started, for the user
    advice_unasked: bool = False  # worth saying even when nobody mentioned the bot
    no_media: bool = False  # no video or audio at all


class Shares:
    def __init__(
        self,
        *,
        inbox: Inbox,
        marks: Marks,
        intake: Intake,
        slack: SlackOut,
        grace_ms: int,
        max_jobs_per_message: int,
    ) -> None:
        self.inbox = inbox
        self.marks = marks
        self.intake = intake
        self.slack = slack
        self.grace_ms = grace_ms  # how long a stored share waits for its lazy listener before recovery
        self.max_jobs_per_message = max_jobs_per_message

    async def receive(self, share: Share) -> None:
        """Store the share durably; called before Slack's delivery is acknowledged. Raises RedisError."""
        await self.inbox.stash(share.key, share.to_json(), self.grace_ms)

    async def process(self, share: Share) -> None:
        """Start the jobs the share asks for and tell the user; then forget the stored share."""
        message = share.parsed()
        try:
            outcome = await self._dub(message, share)
            if share.via_shortcut:
                await self.slack.respond(share.response_url, _shortcut_answer(outcome))
            elif outcome.jobs:
                # Only the person who shared sees it: the jobs' ids, and a Cancel button for each, while
                # the thread holds nothing of the bot's until a dub ends.
                started = files_started(outcome.jobs)
                await self.slack.tell(message.channel, message.user, message.root, started)
            else:
                await self._advise(share, message, outcome)
            await self.inbox.unstash(share.key)
        except RedisError as exc:
            log.error("cannot store jobs for %s/%s: %s", message.channel, message.ts, exc)
            # Still in the inbox if it got there: a worker retries once Redis is back. If it did not, the
            # delivery is acked and Slack will not resend it: say so, so the user can try again.
            if not await self.inbox.is_stashed(share.key):
                reply = store_unavailable() if share.via_shortcut else None
                if reply is not None:
                    await self.slack.respond(share.response_url, reply)
                else:
                    await self.slack.notify(message.channel, message.root, store_unavailable_for_files())
            return
        for job in outcome.jobs:
            log.info(
                "job %s queued from files shared in %s/%s",
                job.id,
                job.identity.channel,
                job.identity.source_ts,
            )

    async def recover(self, lease_ms: int) -> int:
        """Process shares whose lazy listener never finished (the process died); returns how many."""
        entries = await self.inbox.claim_stashed(RECOVER_BATCH, lease_ms)
        for key, payload in entries:
            try:
                share = Share.from_json(payload)
            except (ValueError, TypeError) as exc:
                log.error("dropping an unreadable stored share %s: %s", key, exc)
                await self.inbox.unstash(key)
                continue
            log.info("recovering shared files %s (their first handling did not finish)", key)
            await self.process(share)
        return len(entries)

    async def _advise(self, share: Share, message: SharedMessage, outcome: Outcome) -> None:
        if outcome.no_media:
            outcome.advice = file_help()  # they mentioned the bot: say how it works
        if outcome.advice is None or not (share.asked or outcome.advice_unasked):
            return
        # Marked first, so a redelivered event cannot post the same advice twice.
        if await self.marks.mark_once(f"advice:{message.channel}:{message.ts}"):
            await self.slack.notify(message.channel, message.root, outcome.advice)

    async def _dub(self, message: SharedMessage, share: Share) -> Outcome:
        """Start the jobs `message` asks for, or say why there are none. Raises RedisError."""
        if message.stubs:
            details = await self.slack.file_details(message.stubs)
            message = message.with_files([*message.files, *filter(None, map(SlackFile.from_slack, details))])
        limit = self.intake.max_file_bytes
        plan = plan_jobs(message.files, limit)
        partner_text = ""
        if plan.missing is not None and message.is_reply:
            found = await self._partner_in_thread(message, plan.missing, share.bot_user)
            if found is not None:
                partner, partner_text = found
                plan = plan_jobs(message.files, limit, partner)
        if not plan.has_media:
            return Outcome(no_media=True)
        if plan.ambiguous:
            return Outcome(advice=ambiguous_files(plan), advice_unasked=True)
        if plan.missing is not None:
            return Outcome(advice=needs_partner(plan))
        if len(plan.pairs) > self.max_jobs_per_message:
            return Outcome(
                advice=too_many_dubs(len(plan.pairs), self.max_jobs_per_message), advice_unasked=True
            )
        if plan.external:
            return Outcome(advice=external_files(plan.external), advice_unasked=True)
        if plan.too_large:
            return Outcome(advice=files_too_large(plan.too_large, limit), advice_unasked=True)
        try:
            jobs = await self.intake.accept_files(
                message,
                plan.pairs,
                options_in(message.text, partner_text, providers=self.intake.registry.names),
                share.response_url,
            )
        except OptionRefused as refused:
            return Outcome(advice=refused.message, advice_unasked=True)
        if jobs:
            await self.slack.react(message.channel, message.ts, REACTION_WORKING)
        return Outcome(jobs=jobs, duplicate=not jobs)

    async def _partner_in_thread(
        self, message: SharedMessage, wanted: MediaKind, bot_user: str
    ) -> tuple[SlackFile, str] | None:
        """The newest earlier file of the `wanted` kind in the message's thread, with its message's text."""
        thread = await self.slack.thread_messages(
            message.channel, message.thread_ts, MAX_THREAD_MESSAGES, before_ts=message.ts
        )
        if thread is None:
            return None
        return partner_in_thread(thread, message.ts, wanted, bot_user)


def _shortcut_answer(outcome: Outcome) -> Message:
    if outcome.jobs:
        return files_started(outcome.jobs)
    if outcome.duplicate:
        return files_already_started()
    return outcome.advice or no_media_in_message()
