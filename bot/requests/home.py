"""App Home: for each person their recent jobs, what they cost this month and the budgets that apply; for
admins, every budget, the providers, their balance where reported, jobs in flight and failures today.

Published when a job ends (for its requester) and when someone opens the tab, never by polling Slack.
`views.publish` is rate limited per workspace (Tier 4), so publishes are coalesced per person (at most one
every PUBLISH_SPACING_SECONDS, the last one always made) and take their turn in a shared budget per
workspace (bot/lanes/ratelimit.py), so a burst of jobs ending does not turn into a storm of 429s.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from redis.asyncio import Redis
from redis.exceptions import RedisError

from bot.jobs.indexes import USER_JOBS_KEPT, Indexes
from bot.jobs.lanes import Lanes, QueueWatch
from bot.jobs.model import Job, Status
from bot.lanes.ratelimit import RateLimiter
from bot.providers.base import Provider
from bot.requests.control import JobControl, Person
from bot.slack.out import SlackOut
from bot.views.home import AdminFacts, home_view

log = logging.getLogger(__name__)

HOME_JOBS = 10
PUBLISH_SPACING_SECONDS = 5.0
# views.publish is Tier 4 (100+ a minute per workspace): keep a margin for app_home_opened and others.
PUBLISHES_PER_MINUTE = 80


def month_costs(jobs: list[Job], now_ms: int) -> dict[str, Decimal]:
    """What a person's succeeded jobs cost since the month began (UTC), per unit, exactly."""
    start = datetime.fromtimestamp(now_ms / 1000, UTC).replace(
        day=1, hour=0, minute=0, second=0, microsecond=0
    )
    since_ms = int(start.timestamp() * 1000)
    totals: dict[str, Decimal] = {}
    for job in jobs:
        if job.status is not Status.SUCCEEDED or job.progress.created_ms < since_ms or not job.result.cost:
            continue
        try:
            totals[job.result.cost_unit] = totals.get(job.result.cost_unit, Decimal(0)) + Decimal(
                job.result.cost
            )
        except InvalidOperation:
            continue
    return totals


class Home:
    def __init__(
        self,
        *,
        lanes: Lanes,
        indexes: Indexes,
        slack: SlackOut,
        control: JobControl,
        providers: Mapping[str, Provider],
        redis: Redis,
        watch: QueueWatch,
    ) -> None:
        self.lanes = lanes
        self.indexes = indexes
        self.slack = slack
        self.control = control
        self.providers = providers
        self._redis = redis
        self._last: dict[tuple[str, str], float] = {}
        self._budgets: dict[str, RateLimiter] = {}
        self._pending: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        watch.listen_ended(self.job_ended)  # a job of theirs ended: refresh their tab

    async def aclose(self) -> None:
        """Drop the publishes waiting or under way (a stopping bot; the next event or opening publishes
        again)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def job_ended(self, job: Job) -> None:
        """Refresh the requester's Home soon (coalesced: one publish for many jobs ending together)."""
        key = (job.identity.team, job.identity.person)
        if not job.identity.person or key in self._pending:
            return
        delay = max(0.0, self._last.get(key, 0.0) + PUBLISH_SPACING_SECONDS - time.monotonic())
        task = self._pending[key] = asyncio.get_running_loop().create_task(self._publish_later(key, delay))
        # Kept until done, also while publishing (it has left `_pending` then), so that stopping cancels it.
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish_later(self, key: tuple[str, str], delay: float) -> None:
        try:
            await asyncio.sleep(delay)
            del self._pending[key]  # a job ending from now on schedules the next publish
            team, user = key
            await self.publish(Person(user=user, team=team))
        except Exception as exc:  # a Home view is a courtesy: the next event publishes it again
            log.warning("App Home for %s not published: %s", key[1], exc)
        finally:
            if self._pending.get(key) is asyncio.current_task():  # not a later one scheduled meanwhile
                del self._pending[key]

    async def publish(self, person: Person) -> None:
        """Build and publish `person`'s Home now (within the workspace's publish budget): their own jobs in
        the workspace, and the admins' part only for an admin of that workspace (bot/requests/control.py)."""
        team_id, user = person.team, person.user
        self._last[(team_id, user)] = time.monotonic()
        wait_ms = await RateLimiter(
            redis=self._redis, name=f"slack:views.publish:{team_id}", limit=PUBLISHES_PER_MINUTE
        ).acquire()
        if wait_ms:
            await asyncio.sleep(wait_ms / 1000)
        jobs, total = await self.control.own_jobs(person, 0, USER_JOBS_KEPT)
        now_ms = int(time.time() * 1000)
        admin = None
        if await self.control.is_admin(person):
            admin = await self._admin_facts()
        limits = await self.control.ledger.limits(team_id)
        if admin is None:
            limits = [b for b in limits if b.scope == "channel" or b.id == user]
        view = home_view(user, jobs[:HOME_JOBS], total, month_costs(jobs, now_ms), admin, limits)
        await self.slack.publish_home(user, view)

    async def _admin_facts(self) -> AdminFacts:
        balances = await asyncio.gather(*(p.balance() for p in self.providers.values()))
        try:
            lanes = await self.lanes.counts()
            failures = await self.indexes.failures_today()
        except RedisError:
            lanes, failures = {}, -1
        return AdminFacts(
            providers=[(p.label, b) for p, b in zip(self.providers.values(), balances, strict=True)],
            in_flight=sum(lanes.values()),
            failures_today=failures,
        )
