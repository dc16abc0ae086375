"""The submit step: pass the money gate (bot/lanes/gate.py) → post the job's message once
(bot/lanes/posting.py), wait for a compare's lead to post it, or host shared files for the provider
(bot/lanes/hosting.py); a job from the terminal `dub` has no message → recover an ambiguous create the
provider's way → rate limit and seats (bot/lanes/turns.py) → create the task → move to the poll lane.

Writes of job state outside the applied decision (bot/lanes/pipeline.py), besides those of the protocols
it uses (their docstrings name them):
  * the create mark (`CreateState.ATTEMPTED`, with Redis time), before the provider is called: a lost
    answer is then recovered, by whichever process holds the job, instead of paid for again. It is refused
    when a cancel came first, so a cancel lands either before it (nothing is sent) or after it.
  * a compare follower's copy of its lead's message (its parent post), as soon as the lead has
    posted it, so the rest of the step answers in that thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from bot.jobs.codec import Moment
from bot.jobs.decisions import Decision, Done, Move, Stay, backoff_ms, finish, not_now_ms
from bot.jobs.indexes import Indexes
from bot.jobs.lanes import Cancelled, Lane, Lanes
from bot.jobs.model import CreateState, Job, PostKind, PostState, Source, Status
from bot.jobs.records import JobRecords
from bot.lanes.cached_results import Cached
from bot.lanes.gate import REFUSALS, Gate
from bot.lanes.hosting import Hosting
from bot.lanes.posting import Posting, slack_setback
from bot.lanes.provisions import PROVIDER_OFF, Provisions, provider_label
from bot.lanes.timing import (
    CLOCK_SKEW_S,
    MAX_SUBMIT_ERRORS,
    SETTLE_LOOKUP_BASE_MS,
    SETTLE_LOOKUP_CAP_MS,
    Timing,
)
from bot.lanes.turns import COSMETIC_SHARE, Turns, ordinal, seat_wait_ms
from bot.observe import metrics
from bot.providers.base import ErrorKind, Order, Provider, ProviderError, Recovery, Task, TaskState
from bot.slack.out import SlackAmbiguous, SlackFailed, SlackOut, SlackRetryLater, SlackUnreachable
from bot.views.compare import compare_parent
from bot.views.jobs import cannot_post_here, parent
from bot.views.text import Message

log = logging.getLogger(__name__)

# A compare job waits this long between looks at whether its lead has posted the shared message.
LEAD_WAIT_MS = 500
# Our own error codes (providers' codes are kept as they send them).
SUBMIT_UNKNOWN = "submit_unknown"  # a create with no clear answer at a provider that cannot reconcile it
COMPARE_STOPPED = "compare_stopped"  # a compare's lead was refused before paying: its followers stop too


class SubmitStep:
    def __init__(
        self,
        *,
        lanes: Lanes,
        records: JobRecords,
        indexes: Indexes,
        providers: Mapping[str, Provisions],
        slack: SlackOut,
        gate: Gate,
        posting: Posting,
        hosting: Hosting,
        turns: Turns,
        timing: Timing,
        webhook_base: str,
    ) -> None:
        self.lanes = lanes
        self.records = records
        self.indexes = indexes
        self.providers = providers
        self.slack = slack
        self.gate = gate  # what a job must pass before it is paid for
        self.posting = posting
        self.hosting = hosting
        self.turns = turns
        self.timing = timing
        self.webhook_base = webhook_base  # "{PUBLIC_URL}/webhooks/" when PUBLIC_URL is set

    async def __call__(self, job: Job, token: str, now_ms: int) -> Decision:
        provisions = self.providers.get(job.order.provider)
        if provisions is None:
            return finish(job, Status.FAILED, error_code=PROVIDER_OFF)
        provider = provisions.provider
        if job.progress.cancel_by:
            return finish(job, Status.CANCELLED)
        if self.timing.expired(job, now_ms):
            await self._last_look(job, provider)
            return finish(job, Status.TIMED_OUT, error_code="timeout")
        if (not_ready := await self._prepare(job, token, now_ms, provisions)) is not None:
            return not_ready
        order = self._order(job, provider)
        task: Task | None = None
        if job.progress.create is CreateState.ATTEMPTED:
            recovered = await self._recover(job, now_ms, provider, order)
            if recovered is not None and not isinstance(recovered, Task):
                return recovered
            task = recovered
        if task is None:
            created = await self._create(job, token, now_ms, provisions, order)
            if not isinstance(created, Task):
                return created
            task = created
        return await self._started(job, provider, task)

    async def _prepare(self, job: Job, token: str, now_ms: int, provisions: Provisions) -> Decision | None:
        """Everything before the provider is paid; a decision when the job does not get that far now."""
        # Before the job's message: a refused link or budget is told privately and leaves no trace in the
        # channel; an earlier result still answers in a thread of its own.
        verdict = await self.gate.check(job, token, now_ms, provisions.provider)
        if verdict is not None and not isinstance(verdict, Cached):
            return verdict
        if job.identity.source is Source.FILES:
            setback = await self.hosting.host_files(job, token, now_ms, provisions)
            if setback is None and isinstance(verdict := await self.hosting.cached_files(job, token), Cached):
                return verdict.decision(job)
        elif job.identity.source is Source.COMPARE and job.identity.group != job.id:
            setback = await self._follow_lead(job, token)
        elif job.identity.source is Source.TERMINAL:
            setback = None  # no message in Slack: the terminal shows the job itself
        else:
            setback = await self._ensure_parent(job, token)
        if setback is not None:
            return setback
        if isinstance(verdict, Cached):
            return verdict.decision(job)
        return None

    async def _recover(
        self, job: Job, now_ms: int, provider: Provider, order: Order
    ) -> Task | Decision | None:
        """A create whose answer was lost: the task it made, what to do instead, or None to create (again)."""
        if provider.recovery is Recovery.NONE:
            # Nothing can tell whether that create was carried out: never risk paying twice.
            log.warning("job %s: %s create outcome unknown; not repeating it", job.id, provider.label)
            return finish(job, Status.FAILED, error_code=SUBMIT_UNKNOWN)
        if provider.recovery is Recovery.LOOKUP:
            try:
                task = await self._find_earlier_create(job, provider, order)
            except ProviderError as exc:  # no answer to the lookup: the earlier create is still in doubt
                return self._submit_failed(job, exc, create_in_doubt=True)
            if task is None and (waiting := self._create_unsettled(job, now_ms)) is not None:
                return waiting
            return task
        # Recovery.IDEMPOTENT: the create below carries the same key; it cannot make a second task.
        return None

    async def _create(
        self, job: Job, token: str, now_ms: int, provisions: Provisions, order: Order
    ) -> Task | Decision:
        """Take a seat and a POST turn, mark the attempt, and create the task."""
        provider = provisions.provider
        if provisions.seats is not None and (place := await provisions.seats.take(job.id)):
            log.info("job %s: %s is running its plan's maximum of tasks; waiting", job.id, provider.label)
            cap = provisions.seats.cap
            note = f"{ordinal(place)} in line for {provider.label} (your plan runs {cap} at a time)"
            return await self.turns.in_line(job, now_ms, note, seat_wait_ms())
        if (wait := await self.turns.post_slot(job, token, now_ms, provisions)) is not None:
            return wait
        # Marked before the call, with Redis time, so a lost answer is recovered (by whichever
        # process holds the job then) instead of paid for again.
        job.progress.create, job.progress.create_lookups = CreateState.ATTEMPTED, 0
        try:
            # Refused if someone cancelled meanwhile: a cancel either lands before this mark (nothing is
            # ever sent) or after it (the reply says the provider may have it).
            await self.lanes.update(
                Lane.SUBMIT, job, token, stamp=Moment.CREATE_ATTEMPT, unless_cancelled=True
            )
        except Cancelled:  # the mark was not written, nor kept in the job
            return finish(job, Status.CANCELLED)
        try:
            return await provider.create(order)
        except ProviderError as exc:  # only an unclear answer may hide a created task
            if exc.kind is ErrorKind.BUSY and provisions.seats is not None:
                await provisions.seats.release(job.id)
            return self._submit_failed(job, exc, create_in_doubt=exc.ambiguous)

    async def _started(self, job: Job, provider: Provider, task: Task) -> Decision:
        log.info("job %s: %s task %s created", job.id, provider.label, task.id)
        if provider.accepts_webhook:
            await self.indexes.index_task(provider.name, task.id, job.id, self.timing.job_timeout_ms)
        job.status, job.progress.task_id, job.progress.queue_note = Status.PROCESSING, task.id, ""
        # Skipped when the workspace's update budget is spent (a burst): the final update corrects it.
        if job.identity.source is Source.COMMAND and await self.turns.update_budget(
            job.identity.team
        ).try_acquire(COSMETIC_SHARE):
            await self.slack.update(job.identity.channel, job.posts.parent.ts, parent(job, provider.label))
        job.progress.create, job.progress.errors = CreateState.NONE, 0
        return Move(Lane.POLL, self.timing.poll_interval_ms)

    def _order(self, job: Job, provider: Provider) -> Order:
        webhook = self.webhook_base + provider.name if self.webhook_base and provider.accepts_webhook else ""
        return Order(
            job.id,
            job.inputs.video.link,
            job.inputs.audio.link,
            job.inputs.playback,
            job.order.model,
            webhook,
        )

    async def _ensure_parent(self, job: Job, token: str) -> Decision | None:
        """Post the job's message in the channel once. A decision when the job cannot go on now."""
        if job.identity.source is Source.COMPARE:
            labels = [provider_label(self.providers, name) for name in job.order.providers]
            build: Callable[[bool], Message] = lambda _: compare_parent(job, labels)  # noqa: E731
        else:
            build = lambda _: parent(job, provider_label(self.providers, job.order.provider))  # noqa: E731
        try:
            await self.posting.post_once(
                job, PostKind.PARENT, Lane.SUBMIT, token, job.identity.channel, None, build
            )
            return None
        except SlackUnreachable as exc:
            log.info("job %s: cannot post in %s (%s)", job.id, job.identity.channel, exc)
            await self.slack.respond(job.identity.response_url, cannot_post_here(job.identity.channel))
            return _unreachable(job)
        except (SlackRetryLater, SlackAmbiguous, SlackFailed) as exc:
            return slack_setback(job, exc)

    async def _follow_lead(self, job: Job, token: str) -> Decision | None:
        """A compare job answers in its lead's message thread: wait until the lead has posted it."""
        if job.posts.parent.state is PostState.POSTED:
            return None
        lead = await self.records.get(job.identity.group)
        if lead is not None and lead.posts.parent.state is PostState.POSTED and lead.posts.parent.ts:
            job.posts.parent.state, job.posts.parent.ts = PostState.POSTED, lead.posts.parent.ts
            await self.lanes.update(Lane.SUBMIT, job, token)
            return None
        if lead is not None and lead.result.error_code in REFUSALS:
            # The lead was refused before paying (a link, a budget): the compare stops, and says so.
            return finish(job, Status.FAILED, error_code=COMPARE_STOPPED)
        if lead is None or lead.status.final:
            # The lead ended without a message (the bot cannot post there; it told the user): so do we.
            return _unreachable(job)
        return Stay(LEAD_WAIT_MS)

    async def _find_earlier_create(self, job: Job, provider: Provider, order: Order) -> Task | None:
        """After a create whose answer we never got, adopt the task it made instead of paying twice."""
        task = await provider.find(order)
        if task is None:
            return None
        ours = task.created_at is None or task.created_at >= job.progress.created_ms / 1000 - CLOCK_SKEW_S
        if task.state is TaskState.FAILED and not ours:
            return None  # an old failure with the same inputs: try afresh
        log.info("job %s: adopting %s task %s found by lookup", job.id, provider.label, task.id)
        return task

    async def _last_look(self, job: Job, provider: Provider) -> None:
        """A job that times out while its create is in doubt looks once more, so that a task the provider
        made (and charged for) is named in the reply instead of left unknown."""
        if job.progress.create is not CreateState.ATTEMPTED or provider.recovery is not Recovery.LOOKUP:
            return
        try:
            task = await self._find_earlier_create(job, provider, self._order(job, provider))
        except ProviderError:
            return
        if task:
            job.progress.task_id = task.id

    def _create_unsettled(self, job: Job, now_ms: int) -> Stay | None:
        """None when the last create, whose answer was lost, has had time to land and the lookup just
        found nothing: it was never made, and creating again is safe. Until then, never create: look
        again a little later and adopt the task when it appears."""
        attempt_ms = job.progress.create_attempt_ms or now_ms  # a job marked before attempt times were kept
        settled_ms = attempt_ms + self.timing.create_settle_ms
        if now_ms >= settled_ms:
            waited_s = (now_ms - attempt_ms) // 1000
            log.warning("job %s: no task %d s after the lost create; creating again", job.id, waited_s)
            return None
        lookups = job.progress.create_lookups + 1
        delay = min(settled_ms - now_ms, backoff_ms(lookups, SETTLE_LOOKUP_BASE_MS, SETTLE_LOOKUP_CAP_MS))
        log.info("job %s: no task yet for the lost create; looking again in %d ms", job.id, delay)
        job.progress.create_attempt_ms, job.progress.create_lookups = attempt_ms, lookups
        return Stay(delay)

    def _submit_failed(self, job: Job, exc: ProviderError, create_in_doubt: bool) -> Decision:
        metrics.PROVIDER_ERRORS.labels(job.order.provider, exc.kind.value).inc()
        # A create that may have happened keeps the marker, so the next attempt recovers it. A clear
        # refusal removes it: that create was not made, and any earlier one had settled.
        job.progress.create = CreateState.ATTEMPTED if create_in_doubt else CreateState.NONE
        if exc.kind in (ErrorKind.RATE_LIMITED, ErrorKind.BUSY):
            log.info("job %s: provider says not now (%s); waiting", job.id, exc.kind)
            return Stay(not_now_ms(), why=str(exc))
        if exc.kind is ErrorKind.TRANSIENT and job.progress.errors + 1 < MAX_SUBMIT_ERRORS:
            errors = job.progress.errors + 1
            log.warning("job %s: submit failed (%s), retry %d", job.id, exc, errors)
            job.progress.errors, job.progress.last_error = errors, str(exc)
            return Stay(backoff_ms(errors))
        log.warning("job %s: submit failed for good: %s", job.id, exc)
        code = SUBMIT_UNKNOWN if create_in_doubt and self._cannot_reconcile(job) else exc.code
        return finish(job, Status.FAILED, error_code=code, error=exc.message)

    def _cannot_reconcile(self, job: Job) -> bool:
        provisions = self.providers.get(job.order.provider)
        return provisions is not None and provisions.provider.recovery is Recovery.NONE


def _unreachable(job: Job) -> Done:
    """The bot cannot post the job's message (it told the person privately): the job ends without a reply."""
    job.status, job.result.error_code, job.posts.reply.state = Status.FAILED, "unreachable", PostState.SKIPPED
    return Done()
