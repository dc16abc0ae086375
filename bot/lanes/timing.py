"""When the lanes' steps come back: the poll schedule, the job timeout, the claim lease, and the waits and
retry budgets of a create (its recovery after a lost answer included). The bot and the terminal `dub`
both read them from the settings through `timing_from` (bot/programs/wiring.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.jobs.model import Job

MAX_SUBMIT_ERRORS = 8  # about three minutes of backoff before we tell the user the provider is not answering
# A task the lookup finds counts as ours when it was created after our job started, give or take this.
CLOCK_SKEW_S = 120
# The create-recovery rule for lookup providers (RELIABILITY.md, guarantee 2). After a create whose
# answer was lost, JoggAI may still be making the task, and its lookup cannot tell "never made" from "not
# made yet". So no new create until this long after the attempt; until then the lookup is repeated and a
# task adopted as soon as it appears. bot/programs/wiring.py keeps it at least 4 times
# HTTP_TIMEOUT_SECONDS, longer than our own client can hold a create open (pool wait and connect, then each
# read).
CREATE_SETTLE_SECONDS = 120
# Lookups are GETs, which JoggAI does not meter: look again soon, then every 15 s at most.
SETTLE_LOOKUP_BASE_MS = 2000
SETTLE_LOOKUP_CAP_MS = 15_000

# Polling slows down as a task runs long: fresh tasks are answered fast, long ones cost few requests.
# (task age below, multiple of POLL_INTERVAL_SECONDS); older tasks use POLL_MAX_INTERVAL_SECONDS.
POLL_SCHEDULE = ((60, 1), (300, 2), (900, 4))

# Polls are claimed up to this share of POLL_INTERVAL_SECONDS before they are due (at most 1 s): a process
# then claims its polls in batches every so often instead of one claim per poll coming due, which at the
# 30 s cadence cost more CPU than the polls themselves; and none is sent late for it.
POLL_EARLY_FRACTION = 0.1
POLL_EARLY_CAP_MS = 1000


def poll_delay_ms(age_ms: int, base_ms: int, max_ms: int) -> int:
    """How long to wait before asking about a task again, given how long the job has been running."""
    for below_s, factor in POLL_SCHEDULE:
        if age_ms < below_s * 1000:
            return min(max_ms, base_ms * factor)
    return max_ms


@dataclass
class Timing:
    poll_interval_ms: int
    job_timeout_ms: int
    lease_ms: int = 60_000
    poll_max_interval_ms: int = 30_000
    create_settle_ms: int = CREATE_SETTLE_SECONDS * 1000

    @property
    def tick_seconds(self) -> float:
        """How often the worker claims every lane: half the poll interval, within 0.05 s and 1 s."""
        return max(0.05, min(1.0, self.poll_interval_ms / 2000))

    @property
    def poll_early_ms(self) -> int:
        return min(POLL_EARLY_CAP_MS, int(self.poll_interval_ms * POLL_EARLY_FRACTION))

    def poll_delay_ms(self, job: Job, now_ms: int) -> int:
        ceiling = max(self.poll_interval_ms, self.poll_max_interval_ms)
        return poll_delay_ms(now_ms - job.progress.created_ms, self.poll_interval_ms, ceiling)

    def expired(self, job: Job, now_ms: int) -> bool:
        """The job has run out of JOB_TIMEOUT_SECONDS."""
        return now_ms - job.progress.created_ms >= self.job_timeout_ms
