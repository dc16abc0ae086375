"""Rate turns and queue notes: a job's turn at a shared limit (its provider's POST rate, a workspace's
chat.update budget), the place in line shown on its message while it waits, and a reserved turn given
back when the job ends before using it.

Writes of job state outside the applied decision (bot/lanes/pipeline.py): `turn` clears a reserved slot
the moment it is used (`Slot.clear`), before the call it was reserved for, so a job that comes back
after that call (a crash, a setback) asks for a new turn instead of using the same slot twice.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from redis.asyncio import Redis

from bot.jobs.decisions import Decision, Stay
from bot.jobs.lanes import Lane, Lanes, QueueWatch
from bot.jobs.model import Job, PostState, Source
from bot.lanes.provisions import Provisions, provider_label
from bot.lanes.ratelimit import RateLimiter
from bot.retry import Backoff
from bot.slack.out import SlackOut
from bot.views.jobs import parent

log = logging.getLogger(__name__)

# A reserved POST slot is used if the job comes back for it within this long; later, it takes a new one.
SLOT_STALE_MS = 5_000
# A job waiting for a seat (the provider's cap on running tasks) looks again this soon: taking a seat is one
# Redis script and no provider call, so a freed seat is taken within a second or two.
SEAT_WAIT = Backoff(base_s=2.0, cap_s=2.0)
# A job's place in line is shown on its message at most this often; and all such updates of a workspace
# share a budget below Slack's Tier 3 for chat.update (50+ a minute), keeping room for the updates that
# must happen (a job's start and end).
QUEUE_NOTE_SPACING_MS = 10_000
UPDATES_PER_MINUTE = 45
# Updates that may be skipped (a job's place in line, "processing") use at most this share of the budget,
# so a burst of them never delays the updates that must happen (a job's final state).
COSMETIC_SHARE = 0.5


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def seat_wait_ms() -> int:
    return SEAT_WAIT.delay_ms(1)


class Slot(Enum):
    """The turns a job reserves: its provider POST, its final chat.update."""

    POST = "post"
    UPDATE = "update"

    def of(self, job: Job) -> int:
        return job.progress.post_slot_ms if self is Slot.POST else job.progress.update_slot_ms

    def clear(self, job: Job) -> None:
        if self is Slot.POST:
            job.progress.post_slot_ms = 0
        else:
            job.progress.update_slot_ms = 0


@dataclass(frozen=True)
class Turn:
    wait_ms: int  # 0: go now
    ahead: int = 0  # reservations ahead of this one
    new: bool = False  # a slot was reserved just now: store its time in the job


class Turns:
    def __init__(
        self,
        *,
        redis: Redis,
        lanes: Lanes,
        watch: QueueWatch,
        slack: SlackOut,
        providers: Mapping[str, Provisions],
        updates_per_minute: int = UPDATES_PER_MINUTE,
    ) -> None:
        self.redis = redis  # the workspaces' chat.update budgets
        self.lanes = lanes
        self.watch = watch
        self.slack = slack
        self.providers = providers
        self.updates_per_minute = updates_per_minute
        self._update_budgets: dict[str, RateLimiter] = {}

    async def post_slot(self, job: Job, token: str, now_ms: int, provisions: Provisions) -> Decision | None:
        """None when the job may make its provider POST now. Otherwise it has a slot reserved for later and
        stays until then; when it comes back it uses that slot (once) without asking again."""
        turn = await self.turn(job, token, now_ms, Lane.SUBMIT, provisions.limiter, Slot.POST)
        if not turn.wait_ms:
            return None
        if not turn.new:  # early for its slot (claimed by a tick): wait on
            return Stay(turn.wait_ms)
        # Our turn has not come: wait in line, in the order the slots were handed out.
        label = provisions.provider.label
        note = f"{ordinal(turn.ahead + 1)} in line for {label}, about {max(1, round(turn.wait_ms / 1000))} s"
        job.progress.post_slot_ms = now_ms + turn.wait_ms
        return await self.in_line(job, now_ms, note, turn.wait_ms)

    async def turn(
        self, job: Job, token: str, now_ms: int, lane: Lane, limiter: RateLimiter, slot: Slot
    ) -> Turn:
        """The job's turn at a shared limit: now (wait 0), or a slot reserved for later whose time the caller
        stores in the job's `slot` (`new`). A job coming back for its slot uses it once without asking
        again; one coming back long after it (a restart, a backlog) takes a new one."""
        slot_ms = slot.of(job)
        if slot_ms:
            if now_ms < slot_ms:
                return Turn(slot_ms - now_ms)
            slot.clear(job)
            await self.lanes.update(lane, job, token)  # used up
            if now_ms - slot_ms <= SLOT_STALE_MS:
                return Turn(0)
        wait_ms, ahead = await limiter.reserve(job.id)
        return Turn(wait_ms, ahead, new=wait_ms > 0)

    async def give_back_slot(self, job: Job, limiter: RateLimiter) -> None:
        """The job ended (cancelled) before the POST slot it had reserved: the jobs waiting behind it in
        line move up one slot each, so the next one posts when this one would have, not a window later."""
        moved = await limiter.give_back(job.id)
        if moved:
            log.info("job %s: its reserved slot passed on; %d job(s) waiting moved up", job.id, len(moved))
            # This process's worker claims the first of them in time.
            self.watch.queued(Lane.SUBMIT, min(moved.values()))

    def update_budget(self, team_id: str) -> RateLimiter:
        """The workspace's chat.update budget, shared by every process (see QUEUE_NOTE_SPACING_MS)."""
        budget = self._update_budgets.get(team_id)
        if budget is None:
            budget = RateLimiter(
                redis=self.redis, name=f"slack:chat.update:{team_id}", limit=self.updates_per_minute
            )
            self._update_budgets[team_id] = budget
        return budget

    async def in_line(self, job: Job, now_ms: int, note: str, delay_ms: int) -> Stay:
        """Wait for a turn at the provider, saying where the job stands. The job's message shows it, at most
        every QUEUE_NOTE_SPACING_MS per job and within a per-workspace budget of chat.update calls (Slack's
        Tier 3): a skipped update only means the message lags a little; `/lipsync status` always has it."""
        due = now_ms - job.progress.queue_note_ms >= QUEUE_NOTE_SPACING_MS and note != job.progress.queue_note
        shown = due and job.identity.source is Source.COMMAND and job.posts.parent.state is PostState.POSTED
        if shown and await self.update_budget(job.identity.team).try_acquire(COSMETIC_SHARE):
            job.progress.queue_note = note
            await self.slack.update(
                job.identity.channel,
                job.posts.parent.ts,
                parent(job, provider_label(self.providers, job.order.provider)),
            )
            job.progress.queue_note_ms = now_ms
        job.progress.queue_note = note
        return Stay(delay_ms)
