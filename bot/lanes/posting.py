"""Post once: the protocol by which a job's message, its reply and a compare's summary reach Slack exactly
once, and what a step does after Slack said "not now", "maybe" or "no".

`chat.postMessage` has no idempotency key. So before posting, the job records its post as `attempted`
(with Redis time); whoever finds that marker later looks for the message by its metadata first
(`SlackOut.find_posted`) and adopts it. A clear refusal removes the marker: nothing was posted.

Writes of job state outside the applied decision (bot/lanes/pipeline.py): the three marks of
`Posting.post_once` (attempted, posted with its ts, or cleared). They must be durable around the Slack call
itself, in the middle of a step, or a crash after posting would post again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from bot.jobs.codec import Moment
from bot.jobs.decisions import Decision, Done, Stay, backoff_ms
from bot.jobs.lanes import Lane, Lanes
from bot.jobs.model import Job, PostKind, PostState
from bot.slack.out import SlackAmbiguous, SlackFailed, SlackOut, SlackRetryLater, SlackUnreachable
from bot.views.text import Message

log = logging.getLogger(__name__)

MAX_SEND_ERRORS = 30  # Slack refusals (auth, scopes) an admin may still fix: keep trying for a while


class Posting:
    def __init__(self, *, lanes: Lanes, slack: SlackOut) -> None:
        self.lanes = lanes
        self.slack = slack

    async def post_once(
        self,
        job: Job,
        kind: PostKind,
        lane: Lane,
        token: str,
        channel: str,
        thread_ts: str | None,
        build: Callable[[bool], Message],
    ) -> str:
        """Post this job's `kind` message unless it is already there; returns its ts.

        `chat.postMessage` has no idempotency key, so before posting the job records its post as
        `attempted`; whoever finds that marker later looks for the message (by its metadata) first.
        A clear refusal removes the marker: nothing was posted."""
        post = job.posts[kind]
        if post.state is PostState.POSTED:
            return post.ts
        if post.state is PostState.ATTEMPTED:
            found = await self.slack.find_posted(job.id, kind, channel, thread_ts, post.attempt_ms)
            if found:
                await self._record(job, lane, token, kind, PostState.POSTED, found)
                return found
        await self._record(job, lane, token, kind, PostState.ATTEMPTED)
        try:
            ts = await self.slack.post(job.id, kind, channel, thread_ts, build)
        except (SlackRetryLater, SlackUnreachable, SlackFailed):
            await self._record(job, lane, token, kind, PostState.NONE)
            raise
        await self._record(job, lane, token, kind, PostState.POSTED, ts)
        return ts

    async def _record(
        self, job: Job, lane: Lane, token: str, kind: PostKind, state: PostState, ts: str = ""
    ) -> None:
        post = job.posts[kind]
        post.state = state
        if ts:
            post.ts = ts
        stamp = Moment.post_attempt(kind) if state is PostState.ATTEMPTED else None
        await self.lanes.update(lane, job, token, stamp=stamp)


def slack_setback(job: Job, exc: Exception) -> Stay:
    """Come back after Slack said "not now" (429), "maybe" (unclear outcome) or "no"."""
    if isinstance(exc, SlackRetryLater):
        return Stay(int(exc.delay_s * 1000))
    if isinstance(exc, SlackAmbiguous):
        log.warning("job %s: Slack post outcome unclear (%s); will look before posting", job.id, exc)
        return Stay(int(exc.settle_s * 1000))
    # A refusal an admin may still fix (token, scopes): back off, keep trying.
    errors = job.progress.errors = job.progress.errors + 1
    job.progress.last_error = f"Slack: {exc}"
    log.error("job %s: Slack refused a post (%s), attempt %d", job.id, exc, errors)
    return Stay(backoff_ms(errors, cap_ms=300_000))


def send_setback(job: Job, kind: PostKind, exc: Exception) -> Decision:
    """Come back later to post, unless Slack has refused it so often that an admin is not coming."""
    if isinstance(exc, SlackFailed) and job.progress.errors + 1 >= MAX_SEND_ERRORS:
        log.error("job %s: giving up on the %s after %d refusals", job.id, kind, MAX_SEND_ERRORS)
        job.progress.last_error = f"Slack: {exc}"
        return Done()
    return slack_setback(job, exc)
