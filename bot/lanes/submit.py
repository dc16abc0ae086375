"""The submit step: pass the money gate (bot/lanes/gate.py) → post the job's message once
(bot/lanes/posting.py), wait for a compare's lead to post it, or host shared files for the provider
(bot/lanes/hosting.py); a job from the terminal `dub` has no message → recover an ambiguous create the
provider's way → rate limit and seats (bot/lanes/turns.py) → create the task → move to the poll lane.

Writes of job state outside the applied decision (bot/lanes/pipeline.py), besides those of the protocols
it uses (their docstrings name them):
  * the create mark (`submit_state = attempted`, with Redis time), before the provider is called: a lost
    answer is then recovered, by whichever process holds the job, instead of paid for again. It is refused
    when a cancel came first, so a cancel lands either before it (nothing is sent) or after it.
  * a compare follower's copy of its lead's message (`parent_state`, `parent_ts`), as soon as the lead has
    posted it, so the rest of the step answers in that thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from bot.jobs.decisions import Decision, Done, Move, Stay, backoff_ms, finish, not_now_ms
from bot.jobs.indexes import Indexes
from bot.jobs.lanes import NOW, Cancelled, Lane, Lanes
from bot.jobs.model import Job, PostState, Source, Status
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
        provisions = self.providers.get(job.provider)
        if provisions is None:
            return finish(Status.FAILED, error_code=PROVIDER_OFF)
        provider = provisions.provider
        if job.cancel_by:
            return finish(Status.CANCELLED)
        if self.timing.expired(job, now_ms):
            return finish(Status.TIMED_OUT, error_code="timeout", **await self._last_look(job, provider))
        if (not_ready := await self._prepare(job, token, now_ms, provisions)) is not None:
            return not_ready
        order = self._order(job, provider)
        task: Task | None = None
        if job.submit_state is PostState.ATTEMPTED:
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
        if job.source is Source.FILES:
            setback = await self.hosting.host_files(job, token, now_ms, provisions)
            if setback is None and isinstance(verdict := await self.hosting.cached_files(job, token), Cached):
                return verdict.decision()
        elif job.source is Source.COMPARE and job.group != job.id:
            setback = await self._follow_lead(job, token)
        elif job.source is Source.TERMINAL:
            setback = None  # no message in Slack: the terminal shows the job itself
        else:
            setback = await self._ensure_parent(job, token)
        if setback is not None:
            return setback
        if isinstance(verdict, Cached):
            return verdict.decision()
        return None

    async def _recover(
        self, job: Job, now_ms: int, provider: Provider, order: Order
    ) -> Task | Decision | None:
        """A create whose answer was lost: the task it made, what to do instead, or None to create (again)."""
        if provider.recovery is Recovery.NONE:
            # Nothing can tell whether that create was carried out: never risk paying twice.
            log.warning("job %s: %s create outcome unknown; not repeating it", job.id, provider.label)
            return finish(Status.FAILED, error_code=SUBMIT_UNKNOWN)
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
        attempt = {"submit_state": PostState.ATTEMPTED, "submit_attempt_ms": NOW, "submit_lookups": 0}
        try:
            # Refused if someone cancelled meanwhile: a cancel either lands before this mark (nothing is
            # ever sent) or after it (the reply says the provider may have it).
            await self.lanes.update(Lane.SUBMIT, job.id, token, attempt, unless="cancel_by")
        except Cancelled:
            return finish(Status.CANCELLED)
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
        job.status, job.task_id, job.queue_note = Status.PROCESSING, task.id, ""
        # Skipped when the workspace's update budget is spent (a burst): the final update corrects it.
        if job.source is Source.COMMAND and await self.turns.update_budget(job.team_id).try_acquire(
            COSMETIC_SHARE
        ):
            await self.slack.update(job.channel, job.parent_ts, parent(job, provider.label))
        fields = {
            "status": Status.PROCESSING,
            "task_id": task.id,
            "submit_state": "",
            "errors": 0,
            "queue_note": "",
        }
        return Move(Lane.POLL, self.timing.poll_interval_ms, fields)

    def _order(self, job: Job, provider: Provider) -> Order:
        webhook = self.webhook_base + provider.name if self.webhook_base and provider.accepts_webhook else ""
        return Order(job.id, job.video_url, job.audio_url, job.playback_type, job.model, webhook)

    async def _ensure_parent(self, job: Job, token: str) -> Decision | None:
        """Post the job's message in the channel once. A decision when the job cannot go on now."""
        if job.source is Source.COMPARE:
            names = (job.compare_with or job.provider).split(",")
            labels = [provider_label(self.providers, name) for name in names]
            build: Callable[[bool], Message] = lambda _: compare_parent(job, labels)  # noqa: E731
        else:
            build = lambda _: parent(job, provider_label(self.providers, job.provider))  # noqa: E731
        try:
            await self.posting.post_once(job, "parent", Lane.SUBMIT, token, job.channel, None, build)
            return None
        except SlackUnreachable as exc:
            log.info("job %s: cannot post in %s (%s)", job.id, job.channel, exc)
            await self.slack.respond(job.response_url, cannot_post_here(job.channel))
            return Done(
                {"status": Status.FAILED, "error_code": "unreachable", "reply_state": PostState.SKIPPED}
            )
        except (SlackRetryLater, SlackAmbiguous, SlackFailed) as exc:
            return slack_setback(job, exc)

    async def _follow_lead(self, job: Job, token: str) -> Decision | None:
        """A compare job answers in its lead's message thread: wait until the lead has posted it."""
        if job.parent_state is PostState.POSTED:
            return None
        # created_ms is always stored: without it, the lead is gone (fields at their default are not stored).
        names = ("created_ms", "parent_state", "parent_ts", "status", "error_code")
        lead = await self.records.get_fields(job.group, names)
        if lead.get("parent_state") == PostState.POSTED and lead.get("parent_ts"):
            job.parent_state, job.parent_ts = PostState.POSTED, lead["parent_ts"]
            fields = {"parent_state": PostState.POSTED, "parent_ts": job.parent_ts}
            await self.lanes.update(Lane.SUBMIT, job.id, token, fields)
            return None
        if lead.get("error_code") in REFUSALS:
            # The lead was refused before paying (a link, a budget): the compare stops, and says so.
            return finish(Status.FAILED, error_code=COMPARE_STOPPED)
        if "created_ms" not in lead or Status(lead.get("status") or Status.QUEUED).final:
            # The lead ended without a message (the bot cannot post there; it told the user): so do we.
            return Done(
                {"status": Status.FAILED, "error_code": "unreachable", "reply_state": PostState.SKIPPED}
            )
        return Stay(LEAD_WAIT_MS)

    async def _find_earlier_create(self, job: Job, provider: Provider, order: Order) -> Task | None:
        """After a create whose answer we never got, adopt the task it made instead of paying twice."""
        task = await provider.find(order)
        if task is None:
            return None
        ours = task.created_at is None or task.created_at >= job.created_ms / 1000 - CLOCK_SKEW_S
        if task.state is TaskState.FAILED and not ours:
            return None  # an old failure with the same inputs: try afresh
        log.info("job %s: adopting %s task %s found by lookup", job.id, provider.label, task.id)
        return task

    async def _last_look(self, job: Job, provider: Provider) -> dict[str, object]:
        """A job that times out while its create is in doubt looks once more, so that a task the provider
        made (and charged for) is named in the reply instead of left unknown."""
        if job.submit_state is not PostState.ATTEMPTED or provider.recovery is not Recovery.LOOKUP:
            return {}
        try:
            task = await self._find_earlier_create(job, provider, self._order(job, provider))
        except ProviderError:
            return {}
        return {"task_id": task.id} if task else {}

    def _create_unsettled(self, job: Job, now_ms: int) -> Stay | None:
        """None when the last create, whose answer was lost, has had time to land and the lookup just
        found nothing: it was never made, and creating again is safe. Until then, never create: look
        again a little later and adopt the task when it appears."""
        attempt_ms = job.submit_attempt_ms or now_ms  # a job marked before attempt times were kept
        settled_ms = attempt_ms + self.timing.create_settle_ms
        if now_ms >= settled_ms:
            waited_s = (now_ms - attempt_ms) // 1000
            log.warning("job %s: no task %d s after the lost create; creating again", job.id, waited_s)
            return None
        lookups = job.submit_lookups + 1
        delay = min(settled_ms - now_ms, backoff_ms(lookups, SETTLE_LOOKUP_BASE_MS, SETTLE_LOOKUP_CAP_MS))
        log.info("job %s: no task yet for the lost create; looking again in %d ms", job.id, delay)
        return Stay(delay, {"submit_attempt_ms": attempt_ms, "submit_lookups": lookups})

    def _submit_failed(self, job: Job, exc: ProviderError, create_in_doubt: bool) -> Decision:
        metrics.PROVIDER_ERRORS.labels(job.provider, exc.kind.value).inc()
        # A create that may have happened keeps the marker, so the next attempt recovers it. A clear
        # refusal removes it: that create was not made, and any earlier one had settled.
        marker = PostState.ATTEMPTED if create_in_doubt else ""
        if exc.kind in (ErrorKind.RATE_LIMITED, ErrorKind.BUSY):
            log.info("job %s: provider says not now (%s); waiting", job.id, exc.kind)
            return Stay(not_now_ms(), {"submit_state": marker}, why=str(exc))
        if exc.kind is ErrorKind.TRANSIENT and job.errors + 1 < MAX_SUBMIT_ERRORS:
            errors = job.errors + 1
            log.warning("job %s: submit failed (%s), retry %d", job.id, exc, errors)
            fields = {"errors": errors, "last_error": str(exc), "submit_state": marker}
            return Stay(backoff_ms(errors), fields)
        log.warning("job %s: submit failed for good: %s", job.id, exc)
        code = SUBMIT_UNKNOWN if create_in_doubt and self._cannot_reconcile(job) else exc.code
        return finish(Status.FAILED, error_code=code, error=exc.message, submit_state=marker)

    def _cannot_reconcile(self, job: Job) -> bool:
        provisions = self.providers.get(job.provider)
        return provisions is not None and provisions.provider.recovery is Recovery.NONE
