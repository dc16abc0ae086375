"""The send step: post the one result reply in the thread (bot/lanes/posting.py) and the result video
itself (bot/lanes/upload.py) → update the job's message, the reactions on the message that shared the
files, or a compare's summary (bot/lanes/summary.py) → done. A job from the terminal `dub` posts nothing:
the terminal hears its end (QueueWatch) and prints it.

Before that it lets go of what the job held: the gate remembers its result (bot/lanes/gate.py), its seat
at the provider is freed, and a POST slot it had reserved but never used is given back to those waiting.
Its own writes of job state are those of the protocols it uses (their docstrings name them).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from bot.jobs.decisions import Decision, Done, Stay
from bot.jobs.lanes import Lane
from bot.jobs.marks import Marks
from bot.jobs.model import Job, PostKind, PostState, Source, Status
from bot.lanes.gate import Gate
from bot.lanes.posting import Posting, send_setback
from bot.lanes.provisions import Provisions, provider_label
from bot.lanes.summary import CompareSummary
from bot.lanes.turns import Slot, Turns
from bot.lanes.upload import UPLOAD_PENDING, ResultUpload
from bot.slack.out import SlackAmbiguous, SlackFailed, SlackOut, SlackRetryLater, SlackUnreachable
from bot.views.jobs import parent, result
from bot.views.shares import REACTION_DONE, REACTION_FAILED, REACTION_WORKING

log = logging.getLogger(__name__)


class SendStep:
    def __init__(
        self,
        *,
        providers: Mapping[str, Provisions],
        gate: Gate,
        marks: Marks,
        slack: SlackOut,
        posting: Posting,
        turns: Turns,
        summary: CompareSummary,
        upload: ResultUpload | None,
    ) -> None:
        self.providers = providers
        self.gate = gate
        self.marks = marks
        self.slack = slack
        self.posting = posting
        self.turns = turns
        self.summary = summary
        self.upload = upload  # the result video into the thread; None when MAX_RESULT_UPLOAD_MB is 0

    async def __call__(self, job: Job, token: str, now_ms: int) -> Decision:
        await self._let_go(job, now_ms)
        if job.identity.source is Source.TERMINAL:
            job.posts.reply.state = PostState.SKIPPED
            return Done()  # the terminal prints the outcome itself
        provisions = self.providers.get(job.order.provider)
        provider = provisions.provider if provisions else None
        if job.posts.parent.state is not PostState.POSTED:
            # The job ended before its message existed: answer privately instead.
            await self.slack.respond(job.identity.response_url, result(job, provider))
            job.posts.reply.state = PostState.SKIPPED
            return Done()
        try:
            await self.posting.post_once(
                job,
                PostKind.REPLY,
                Lane.SEND,
                token,
                job.identity.channel,
                job.posts.parent.ts,
                lambda rich: result(job, provider, with_cover=rich),
            )
        except SlackUnreachable as exc:
            log.warning("job %s: cannot reply in %s (%s)", job.id, job.identity.channel, exc)
            await self.slack.respond(job.identity.response_url, result(job, provider))
            job.posts.reply.state = PostState.SKIPPED
            return Done()
        except (SlackRetryLater, SlackAmbiguous, SlackFailed) as exc:
            return send_setback(job, PostKind.REPLY, exc)
        uploading = job.status is Status.SUCCEEDED and job.upload.state in UPLOAD_PENDING
        if uploading and self.upload is not None and (setback := await self.upload.put_in_thread(job, token)):
            return setback
        return await self._close(job, token, now_ms)

    async def _let_go(self, job: Job, now_ms: int) -> None:
        """What the job held while it ran: its result is remembered, its seat and unused POST slot freed."""
        await self.gate.remember(job, now_ms)
        provisions = self.providers.get(job.order.provider)
        if provisions is not None and provisions.seats is not None:
            await provisions.seats.release(job.id)  # the task is over (or was never made)
        if provisions is not None and job.progress.post_slot_ms > now_ms:
            await self.turns.give_back_slot(job, provisions.limiter)

    async def _close(self, job: Job, token: str, now_ms: int) -> Decision:
        """After the reply: the message the job came from shows that it is over."""
        if job.identity.source is Source.COMMAND:
            # The message's final state must show: it waits its turn in the workspace's update budget
            # rather than meet Slack's 429s when many jobs end at once.
            budget = self.turns.update_budget(job.identity.team)
            turn = await self.turns.turn(job, token, now_ms, Lane.SEND, budget, Slot.UPDATE)
            if turn.wait_ms:
                if turn.new:
                    job.progress.update_slot_ms = now_ms + turn.wait_ms
                return Stay(turn.wait_ms)
            label = provider_label(self.providers, job.order.provider)
            await self.slack.update(job.identity.channel, job.posts.parent.ts, parent(job, label))
        elif job.identity.source is Source.FILES:
            await self._react_when_group_done(job)
        else:
            return await self.summary.when_group_done(job, token)
        return Done()

    async def _react_when_group_done(self, job: Job) -> None:
        """Swap the "working" reaction for the outcome once every job of the message has answered."""
        entries, _ = await self.marks.group_done(
            job.identity.group, job.id, job.status, job.identity.group_size
        )
        statuses = list(entries.values())
        if len(statuses) < job.identity.group_size:
            return
        channel, ts = job.identity.channel, job.identity.source_ts
        if Status.SUCCEEDED in statuses:
            await self.slack.react(channel, ts, REACTION_DONE)
        if any(status != Status.SUCCEEDED for status in statuses):
            await self.slack.react(channel, ts, REACTION_FAILED)
        await self.slack.react(channel, ts, REACTION_WORKING, remove=True)
