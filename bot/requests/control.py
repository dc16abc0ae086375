"""Jobs people can see and steer: cancel, status, list, retry, dub again, a quote's answer, budgets. The
core's entry points for those listeners, and the one rule on who may see or steer a job (`may_steer`).

The rule (README, "Steering jobs"): a job is seen and steered only from its own workspace (the request's
team, or on Enterprise Grid the person's own team, is the job's `team_id`), and only by the person who asked
for it or an admin or owner of that workspace (Slack's `users.info`; on Enterprise Grid also an org admin
or owner of the org the request comes from). Anyone else gets exactly the answer a missing job gets, so a
refusal says nothing about the job, not even that it exists. Every check happens before anything changes.

Listeners store what a click promises before they ack; what is left (the private answer, a note in the
old job's thread) runs after the ack (`after_ack`), since a Slack post may wait out 429s for seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from bot.jobs.indexes import Indexes
from bot.jobs.model import Job, Status
from bot.jobs.records import JobRecords
from bot.money.budgets import Ledger
from bot.parsing.command import BudgetCommand, Options, public_url_problem
from bot.requests.intake import Intake, OptionRefused
from bot.slack.out import SlackOut
from bot.views.actions import DUB_AUDIO_BLOCK, DUB_OPTIONS_BLOCK
from bot.views.actions import dub_again_view as dub_again_modal
from bot.views.control import (
    already_retried,
    cancel_outcome,
    cannot_retry,
    job_list,
    job_status,
    no_such_job,
    retry_note,
    retry_started,
)
from bot.views.money import admins_only, budget_set, budget_usage, budgets_view, quote_answered
from bot.views.text import Message, plain

log = logging.getLogger(__name__)

ADMIN_CACHE_SECONDS = 300
# users.info is asked before the ack (the answer decides what is stored): bounded well inside Slack's 3 s.
ADMIN_LOOKUP_SECONDS = 2.0
# A stopping bot lets the answers and thread notes under way finish for this long, then drops them.
FOLLOW_UP_GRACE_SECONDS = 2.0
LIST_PAGE_SIZE = 10


@dataclass(frozen=True, kw_only=True)
class Person:
    """Who asks, as Slack's (signed or socket-delivered) request names them."""

    user: str
    team: str  # the workspace the request comes from: a command's team_id, an action's team.id
    home_team: str = ""  # user.team_id: the person's own workspace (Enterprise Grid: may differ from `team`)
    enterprise: str = ""  # the Enterprise Grid org the request comes from; "" outside Grid

    def belongs_to(self, team: str) -> bool:
        """Whether the request comes from workspace `team`, or its person is one of that workspace's own."""
        return bool(team) and team in (self.team, self.home_team)


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _ref(value: object, key: str = "id") -> str:
    """An id Slack gives either as a string or as an object with that id ("team": "T1" or {"id": "T1"})."""
    if isinstance(value, Mapping):
        return _text(value.get(key))
    return _text(value)


def person_from(payload: Mapping[str, Any]) -> Person:
    """The person behind a Slack request: a slash command's fields, an interactivity payload (block_actions,
    view_submission) or an Events API envelope. A view's `app_installed_team_id` is left aside on purpose:
    it names the workspace the app is installed in, not the one the person acts from."""
    user = payload.get("user")
    event = payload.get("event")
    user_id = _ref(user) or _text(payload.get("user_id"))
    if not user_id and isinstance(event, Mapping):
        user_id = _ref(event.get("user"))
    team = payload.get("team")
    # The org of the workspace the request names, from that workspace's own object where there is one
    # (an interactivity payload's `team.enterprise_id`): org admins are trusted by it (`JobControl.is_admin`).
    enterprise = _text(team.get("enterprise_id")) if isinstance(team, Mapping) else ""
    enterprise = enterprise or _ref(payload.get("enterprise")) or _text(payload.get("enterprise_id"))
    return Person(
        user=user_id,
        team=_ref(team) or _text(payload.get("team_id")),
        home_team=_ref(user, "team_id") if isinstance(user, Mapping) else "",
        enterprise=enterprise,
    )


@dataclass(frozen=True, kw_only=True)
class Roles:
    """What `users.info` says of a person's standing: admin or owner of their workspace, or of their
    Enterprise Grid org (`enterprise_user`)."""

    team: str = ""
    workspace_admin: bool = False
    enterprise: str = ""
    org_admin: bool = False

    @classmethod
    def from_user_info(cls, info: Mapping[str, Any]) -> Roles:
        org = info.get("enterprise_user")
        org = org if isinstance(org, Mapping) else {}
        return cls(
            team=_text(info.get("team_id")),
            workspace_admin=_any_role(info),
            enterprise=_text(org.get("enterprise_id")),
            org_admin=_any_role(org),
        )

    def admin_of(self, team: str, enterprise: str) -> bool:
        """An admin of workspace `team`, or of org `enterprise` (which that workspace is part of)."""
        if self.workspace_admin and team and self.team == team:
            return True
        return self.org_admin and bool(enterprise) and self.enterprise == enterprise


def _any_role(fields: Mapping[str, Any]) -> bool:
    return any(fields.get(role) is True for role in ("is_admin", "is_owner", "is_primary_owner"))


@dataclass(frozen=True, kw_only=True)
class ThreadNote:
    """A note for an old job's thread (where its retry or new dub is), posted after the ack."""

    channel: str
    thread_ts: str
    message: Message


@dataclass(frozen=True, kw_only=True)
class Answer:
    """What a click did, once stored: the private answer, and maybe a note for the old job's thread. Both
    are sent after the ack."""

    message: Message
    note: ThreadNote | None = None


class JobControl:
    def __init__(
        self, *, records: JobRecords, indexes: Indexes, slack: SlackOut, intake: Intake, ledger: Ledger
    ) -> None:
        self.records = records
        self.indexes = indexes
        self.slack = slack
        self.intake = intake
        self.ledger = ledger
        self._roles: dict[str, tuple[Roles, float]] = {}
        # Workspace → its Enterprise Grid org, as Slack's requests said (a job's end refreshes a Home
        # without a request, and an org admin is known by the org).
        self._orgs: dict[str, str] = {}
        self._follow_ups: set[asyncio.Task[None]] = set()

    # -- who may see and steer

    async def may_steer(self, job: Job, person: Person) -> bool:
        """The one rule for every read of a job and every action on it (module docstring)."""
        if not person.user or not person.belongs_to(job.identity.team):
            return False
        return person.user == job.identity.person or await self.is_admin(person, job.identity.team)

    async def is_admin(self, person: Person, team: str = "") -> bool:
        """Whether `person` is an admin or owner of workspace `team` (default: the one they ask from), or of
        the Enterprise Grid org it belongs to. Unknown (Slack did not answer in time): not an admin."""
        team = team or person.team
        if person.enterprise and person.belongs_to(team):
            self._orgs[team] = person.enterprise
        roles = await self._roles_of(person.user)
        return roles.admin_of(team, self._orgs.get(team, ""))

    async def _roles_of(self, user: str) -> Roles:
        cached = self._roles.get(user)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        try:
            async with asyncio.timeout(ADMIN_LOOKUP_SECONDS):
                info = await self.slack.user_info(user)
        except TimeoutError:
            log.warning("users.info %s: no answer within %s s", user, ADMIN_LOOKUP_SECONDS)
            info = None
        if info is None:
            return Roles()  # not remembered: the next click asks again
        roles = Roles.from_user_info(info)
        self._roles[user] = (roles, time.monotonic() + ADMIN_CACHE_SECONDS)
        return roles

    async def _job_for(self, typed: str, person: Person) -> Job | None:
        """The job `typed` (full or short id) if `person` may see and steer it; None when there is no such
        job or they may not (told alike)."""
        job_id = await self.indexes.find_job_id(typed)
        job = await self.records.get(job_id) if job_id else None
        return job if job is not None and await self.may_steer(job, person) else None

    async def own_jobs(self, person: Person, start: int, count: int) -> tuple[list[Job], int]:
        """The person's own jobs in the workspace they ask from, newest first, and how many in all."""
        ids, total = await self.indexes.recent_ids(person.team, person.user, start, count)
        jobs = await self.records.get_many(ids)
        return [job for job in jobs if await self.may_steer(job, person)], total

    # -- after the ack

    def after_ack(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` (answers, thread notes: courtesies) once the listener has returned and Slack has its
        ack. Kept until done, so that stopping can let it finish or drop it."""
        task = asyncio.get_running_loop().create_task(self._courtesy(work))
        self._follow_ups.add(task)
        task.add_done_callback(self._follow_ups.discard)

    @staticmethod
    async def _courtesy(work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except Exception as exc:  # the click's effect is stored already; never a traceback for a courtesy
            log.warning("a reply after a click failed: %s", type(exc).__name__)

    async def post_note(self, note: ThreadNote | None) -> None:
        """Link the new attempt from the old job's thread (best effort: the new job has its own message)."""
        if note is not None:
            await self.slack.notify(note.channel, note.thread_ts, note.message)

    async def aclose(self) -> None:
        """Let the answers and notes under way finish for a moment, then drop the rest (a stopping bot)."""
        tasks = list(self._follow_ups)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=FOLLOW_UP_GRACE_SECONDS)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    # -- the job's own steering

    async def cancel(self, typed: str, person: Person) -> Message:
        """Cancel the job `typed` (full or short id) for `person`; what to tell them, privately.
        Raises RedisError when the store is down."""
        job = await self._job_for(typed, person)
        if job is None:
            return no_such_job(typed)
        outcome = await self.records.cancel(job.id, person.user)
        log.info("job %s: cancel by %s: %s", job.id, person.user, outcome)
        # Told from the job as it is now: a second Cancel (or one racing the first) finds it cancelled, or
        # still being cancelled, which the job as read before this cancel cannot say.
        now = await self.records.get(job.id) or job
        return cancel_outcome(now, outcome, asked_before=bool(job.progress.cancel_by))

    async def status(self, typed: str, person: Person, domain: str = "") -> Message:
        """`/lipsync status <job>`; `domain` (the workspace's, from the command) makes the thread's link."""
        job = await self._job_for(typed, person)
        return job_status(job, domain) if job is not None else no_such_job(typed)

    async def list_jobs(self, person: Person, page: int, domain: str = "") -> Message:
        page = max(1, page)
        jobs, total = await self.own_jobs(person, (page - 1) * LIST_PAGE_SIZE, LIST_PAGE_SIZE)
        return job_list(jobs, page, total, LIST_PAGE_SIZE, domain)

    async def retry(self, job_id: str, person: Person, response_url: str = "") -> Answer:
        """Start a failed or timed-out job again with the same inputs; once per job, however often the
        button is clicked. Checked before anything is created or the retry used up. Raises RedisError."""
        old = await self._job_for(job_id, person)
        if old is None:
            return Answer(message=no_such_job(job_id))
        if old.status not in (Status.FAILED, Status.TIMED_OUT):
            return Answer(message=cannot_retry(old))
        try:
            job, new = await self.intake.accept_again(old, person.user, f"retry:{old.id}", response_url)
        except OptionRefused as refused:  # its provider has no key any more
            return Answer(message=refused.message)
        if not new:
            return Answer(message=already_retried(old, job.id))
        log.info("job %s: retry of %s by %s", job.id, old.id, person.user)
        return Answer(message=retry_started(old, job.id), note=_note(old, job, person.user, again=False))

    async def dub_again_view(self, job_id: str, person: Person) -> dict[str, Any] | None:
        """The modal for Dub again, or None when the job is gone (or not theirs to dub again)."""
        old = await self._job_for(job_id, person)
        return dub_again_modal(old, list(self.intake.providers.values())) if old else None

    async def dub_again(
        self, job_id: str, person: Person, view_id: str, audio_url: str, playback: str, provider: str
    ) -> tuple[dict[str, str], ThreadNote | None]:
        """Start a new dub from a succeeded job's video with the modal's choices. Returns errors to show in
        the modal, by block id ({} when the job was started, or had been for this modal already), and the
        note for the old job's thread when it was started now."""
        old = await self._job_for(job_id, person)
        if old is None:
            return {DUB_AUDIO_BLOCK: "That job is gone (jobs are kept a week)."}, None
        audio_url = audio_url.strip()
        if audio_url and (problem := public_url_problem(audio_url)):
            return {DUB_AUDIO_BLOCK: problem.replace("`", "")}, None
        options = Options(playback or old.inputs.playback, provider or old.order.provider, "")
        try:
            job, new = await self.intake.accept_again(
                old, person.user, f"dub:{view_id}", audio_url=audio_url, options=options
            )
        except OptionRefused as refused:
            return {DUB_OPTIONS_BLOCK: plain(refused.message.text)[:150]}, None
        if not new:
            return {}, None
        log.info("job %s: dub again of %s by %s", job.id, old.id, person.user)
        return {}, _note(old, job, person.user, again=True)

    # -- money: a quote's answer, a dub afresh instead of the cache, budgets

    async def answer_quote(self, job_id: str, person: Person, go: bool) -> Message:
        """ "Dub it" (`go`) or "Cancel" on a private quote. Raises RedisError."""
        job = await self._job_for(job_id, person)
        if job is None:
            return no_such_job(job_id)
        if not go:
            outcome = await self.records.cancel(job.id, person.user)
            log.info("job %s: quote declined by %s: %s", job.id, person.user, outcome)
            return quote_answered(job, "cancelled" if outcome.startswith("cancelled") else outcome)
        outcome = await self.records.confirm(job.id)
        log.info("job %s: quote confirmed by %s: %s", job.id, person.user, outcome)
        return quote_answered(job, outcome)

    async def again_anyway(self, job_id: str, person: Person, response_url: str = "") -> Answer:
        """A result came from the cache; dub the same inputs afresh (and pay). Once per job."""
        old = await self._job_for(job_id, person)
        if old is None:
            return Answer(message=no_such_job(job_id))
        try:
            job, new = await self.intake.accept_again(
                old, person.user, f"anyway:{old.id}", response_url, no_cache=True
            )
        except OptionRefused as refused:
            return Answer(message=refused.message)
        if not new:
            return Answer(message=already_retried(old, job.id))
        log.info("job %s: dub afresh of cached %s by %s", job.id, old.id, person.user)
        return Answer(
            message=retry_started(old, job.id, again=True),
            note=_note(old, job, person.user, again=True),
        )

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

    async def budget(self, person: Person, request: BudgetCommand) -> Message:
        """Show the workspace's budgets, or set one (admins). Raises RedisError."""
        team, who = person.team, person.user
        admin = await self.is_admin(person)
        if not request.scope:
            limits = await self.ledger.limits(team)
            if not admin:
                limits = [b for b in limits if b.scope == "channel" or b.id == who]
            return budgets_view(limits, await self.ledger.month(), admin)
        if not admin:
            return admins_only()
        unit = self.budget_unit(request.unit)
        if unit is None:
            units = ", ".join(sorted({f"`{p.unit}`" for p in self.intake.providers.values()}))
            return budget_usage(f"I keep no costs in {request.unit!r}; units here: {units}.")
        await self.ledger.set_limit(team, request.scope, request.scope_id, unit, request.amount)
        spent = await self.ledger.spent(team, request.scope, request.scope_id, unit)
        log.info(
            "budget %s %s set to %s %s by %s", request.scope, request.scope_id, request.amount, unit, who
        )
        return budget_set(request.scope, request.scope_id, unit, request.amount, spent)


def _note(old: Job, new: Job, who: str, again: bool) -> ThreadNote | None:
    """Where the new attempt is, for the old job's thread (None when the old job has no thread)."""
    if not (old.identity.channel and old.posts.parent.ts):
        return None
    return ThreadNote(
        channel=old.identity.channel,
        thread_ts=old.posts.parent.ts,
        message=retry_note(old, new.id, who, again),
    )
