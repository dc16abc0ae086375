"""Jobs people can see and steer: cancel, status, list. The core's entry points for those listeners.

Who may cancel: the person who asked for the job, or a workspace admin or owner (Slack's `users.info`,
remembered for a few minutes). Reading a job's status is open to anyone who can type its id: the same people
see its message in the channel.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from bot import messages
from bot.budgets import Ledger
from bot.command import BudgetCommand, Options, public_url_problem
from bot.intake import Intake, OptionRefused
from bot.jobs import Job, Status
from bot.messages import Message
from bot.slack_out import SlackOut
from bot.store import JobStore

log = logging.getLogger(__name__)

ADMIN_CACHE_SECONDS = 300
LIST_PAGE_SIZE = 10


class JobControl:
    def __init__(
        self, store: JobStore, slack: SlackOut, intake: Intake, ledger: Ledger | None = None
    ) -> None:
        self.store = store
        self.slack = slack
        self.intake = intake
        self.ledger = ledger or Ledger(store.redis)
        self._admins: dict[str, tuple[bool, float]] = {}

    async def is_admin(self, user: str) -> bool:
        cached = self._admins.get(user)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        admin = await self.slack.is_admin(user)
        self._admins[user] = (admin, time.monotonic() + ADMIN_CACHE_SECONDS)
        return admin

    async def cancel(self, typed: str, who: str) -> Message:
        """Cancel the job `typed` (full or short id) for `who`; what to tell them, privately.
        Raises RedisError when the store is down."""
        job_id = await self.store.find_job_id(typed)
        job = await self.store.get(job_id) if job_id else None
        if job is None:
            return messages.no_such_job(typed)
        if who != job.user and not await self.is_admin(who):
            return messages.not_yours(job)
        outcome = await self.store.cancel(job.id, who)
        log.info("job %s: cancel by %s: %s", job.id, who, outcome)
        return messages.cancel_outcome(job, outcome)

    async def status(self, typed: str) -> Message:
        job_id = await self.store.find_job_id(typed)
        job = await self.store.get(job_id) if job_id else None
        return messages.job_status(job) if job is not None else messages.no_such_job(typed)

    async def list_jobs(self, team_id: str, user: str, page: int) -> Message:
        page = max(1, page)
        jobs, total = await self.store.recent_jobs(team_id, user, (page - 1) * LIST_PAGE_SIZE, LIST_PAGE_SIZE)
        return messages.job_list(jobs, page, total, LIST_PAGE_SIZE)

    async def retry(self, job_id: str, who: str, response_url: str = "") -> Message:
        """Start a failed or timed-out job again with the same inputs; once per job, however often the
        button is clicked. Raises RedisError."""
        old = await self.store.get(job_id)
        if old is None:
            return messages.no_such_job(job_id)
        if old.status not in (Status.FAILED, Status.TIMED_OUT):
            return messages.cannot_retry(old)
        try:
            job, new = await self.intake.accept_again(old, who, f"retry:{old.id}", response_url)
        except OptionRefused as refused:  # its provider has no key any more
            return refused.message
        if not new:
            return messages.already_retried(old, job.id)
        log.info("job %s: retry of %s by %s", job.id, old.id, who)
        await self._note_in_thread(old, job, who, again=False)
        return messages.retry_started(old, job.id)

    async def dub_again_view(self, job_id: str) -> dict[str, Any] | None:
        """The modal for Dub again, or None when the job is gone."""
        old = await self.store.get(job_id)
        return messages.dub_again_view(old, list(self.intake.providers.values())) if old else None

    async def dub_again(
        self, job_id: str, who: str, view_id: str, audio_url: str, playback: str, provider: str
    ) -> dict[str, str]:
        """Start a new dub from a succeeded job's video with the modal's choices. Returns errors to show in
        the modal, by block id ({} when the job was started, or had been for this modal already)."""
        old = await self.store.get(job_id)
        if old is None:
            return {messages.DUB_AUDIO_BLOCK: "That job is gone (jobs are kept a week)."}
        audio_url = audio_url.strip()
        if audio_url and (problem := public_url_problem(audio_url)):
            return {messages.DUB_AUDIO_BLOCK: problem.replace("`", "")}
        options = Options(playback or old.playback_type, provider or old.provider, "")
        try:
            job, new = await self.intake.accept_again(
                old, who, f"dub:{view_id}", audio_url=audio_url, options=options
            )
        except OptionRefused as refused:
            return {messages.DUB_OPTIONS_BLOCK: messages.plain(refused.message.text)[:150]}
        if new:
            log.info("job %s: dub again of %s by %s", job.id, old.id, who)
            await self._note_in_thread(old, job, who, again=True)
        return {}

    async def _note_in_thread(self, old: Job, new: Job, who: str, again: bool) -> None:
        """Link the new attempt from the old job's thread (best effort: the new job has its own message)."""
        if old.channel and old.parent_ts:
            await self.slack.notify(old.channel, old.parent_ts, messages.retry_note(old, new.id, who, again))

    # -- money: a quote's answer, a dub afresh instead of the cache, budgets

    async def answer_quote(self, job_id: str, who: str, go: bool) -> Message:
        """ "Dub it" (`go`) or "Cancel" on a private quote. Raises RedisError."""
        job = await self.store.get(job_id)
        if job is None:
            return messages.no_such_job(job_id)
        if who != job.user and not await self.is_admin(who):
            return messages.not_your_quote(job)
        if not go:
            outcome = await self.store.cancel(job.id, who)
            log.info("job %s: quote declined by %s: %s", job.id, who, outcome)
            return messages.quote_answered(job, "cancelled" if outcome.startswith("cancelled") else outcome)
        outcome = await self.store.confirm(job.id)
        log.info("job %s: quote confirmed by %s: %s", job.id, who, outcome)
        return messages.quote_answered(job, outcome)

    async def again_anyway(self, job_id: str, who: str, response_url: str = "") -> Message:
        """A result came from the cache; dub the same inputs afresh (and pay). Once per job."""
        old = await self.store.get(job_id)
        if old is None:
            return messages.no_such_job(job_id)
        try:
            job, new = await self.intake.accept_again(
                old, who, f"anyway:{old.id}", response_url, no_cache=True
            )
        except OptionRefused as refused:
            return refused.message
        if not new:
            return messages.already_retried(old, job.id)
        log.info("job %s: dub afresh of cached %s by %s", job.id, old.id, who)
        await self._note_in_thread(old, job, who, again=True)
        return messages.retry_started(old, job.id, again=True)

    def budget_unit(self, typed: str) -> str | None:
        """The unit a budget is kept in, from what was typed: a unit or a provider's name; None if unknown."""
        providers = self.intake.providers
        if not typed:
            return providers[self.intake.default_provider].unit
        word = typed.strip().lower()
        for provider in providers.values():
            if word in (provider.name, provider.label.lower(), provider.unit.lower()):
                return provider.unit
        return None

    async def budget(self, team: str, who: str, request: BudgetCommand) -> Message:
        """Show the workspace's budgets, or set one (admins). Raises RedisError."""
        admin = await self.is_admin(who)
        if not request.scope:
            limits = await self.ledger.limits(team)
            if not admin:
                limits = [b for b in limits if b.scope == "channel" or b.id == who]
            return messages.budgets_view(limits, await self.ledger.month(), admin)
        if not admin:
            return messages.admins_only()
        unit = self.budget_unit(request.unit)
        if unit is None:
            units = ", ".join(sorted({f"`{p.unit}`" for p in self.intake.providers.values()}))
            return messages.budget_usage(f"I keep no costs in {request.unit!r}; units here: {units}.")
        await self.ledger.set_limit(team, request.scope, request.scope_id, unit, request.amount)
        spent = await self.ledger.spent(team, request.scope, request.scope_id, unit)
        log.info(
            "budget %s %s set to %s %s by %s", request.scope, request.scope_id, request.amount, unit, who
        )
        return messages.budget_set(request.scope, request.scope_id, unit, request.amount, spent)
