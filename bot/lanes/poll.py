"""The poll step: ask the provider how the task is doing → stay (on the poll schedule, bot/lanes/timing.py),
or finish as succeeded, failed or timed out. A task whose end a signed webhook stated (kept with the job)
is not asked about again: the delivery is its answer. It writes nothing itself: all it decides is applied by
bot/lanes/pipeline.py."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from bot.jobs.decisions import Decision, Stay, backoff_ms, finish
from bot.jobs.model import Job, Status
from bot.lanes.provisions import PROVIDER_OFF, Provisions
from bot.lanes.timing import Timing
from bot.observe import metrics
from bot.providers.base import ErrorKind, ProviderError, Task, TaskState, task_from_text

log = logging.getLogger(__name__)


class PollStep:
    def __init__(self, *, providers: Mapping[str, Provisions], timing: Timing) -> None:
        self.providers = providers
        self.timing = timing

    async def __call__(self, job: Job, token: str, now_ms: int) -> Decision:
        """Reads only bot.jobs.codec.POLL_FIELDS of the job: the worker claims poll jobs with just those."""
        provisions = self.providers.get(job.order.provider)
        if provisions is None:
            return finish(job, Status.FAILED, error_code=PROVIDER_OFF)
        if job.progress.cancel_by:
            return finish(job, Status.CANCELLED)
        if self.timing.expired(job, now_ms):
            return finish(job, Status.TIMED_OUT, error_code="timeout")
        provider = provisions.provider
        progress = job.progress
        task = _delivered(job)
        polls = progress.polls  # counts the GETs: a delivered result needs none
        if task is None:
            try:
                task = await provider.get(progress.task_id)
            except ProviderError as exc:
                return self._not_answered(job, exc, now_ms)
            polls += 1
        if task.state is TaskState.SUCCEEDED:
            cost = provider.cost(task, job.order.model)
            result = job.result
            result.url, result.cover_url = task.result_url, task.cover_url
            result.duration_s = task.duration_s or None
            result.cost = f"{cost.amount:f}" if cost else None
            result.cost_unit = cost.unit if cost else ""
            result.took_ms = now_ms - progress.created_ms
            progress.polls = polls
            return finish(job, Status.SUCCEEDED)
        if task.state is TaskState.FAILED:
            progress.polls = polls
            return finish(job, Status.FAILED, error=task.error, error_code=task.error_code)
        delay = self.timing.poll_delay_ms(job, now_ms)
        progress.polls, progress.errors = polls, 0
        return Stay(delay)

    def _not_answered(self, job: Job, exc: ProviderError, now_ms: int) -> Decision:
        metrics.PROVIDER_ERRORS.labels(job.order.provider, exc.kind.value).inc()
        if exc.kind in (ErrorKind.NOT_FOUND, ErrorKind.PERMANENT, ErrorKind.ADMIN):
            return finish(job, Status.FAILED, error_code=exc.code, error=exc.message)
        errors = job.progress.errors + 1  # keep trying until the job's timeout: the task may still finish
        log.warning("job %s: poll failed (%s), retry %d", job.id, exc, errors)
        delay = max(self.timing.poll_delay_ms(job, now_ms), backoff_ms(errors))
        job.progress.errors, job.progress.last_error = errors, str(exc)
        return Stay(delay)


def _delivered(job: Job) -> Task | None:
    """How the job's task ended, as a signed webhook stated it (bot/providers/webhooks.py kept it with the
    job, verified); None when none came, or it is about another task."""
    progress = job.progress
    task = task_from_text(progress.delivered) if progress.delivered else None
    return task if task is not None and task.id == progress.task_id else None
