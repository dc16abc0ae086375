"""What a step decides about its job, and the one retry policy of job steps.

Each step of the pipeline (and each check before one, bot/lanes/gate.py) returns exactly one `Decision`: stay
in its lane until later, move to the next lane, or be done. What the step learnt it writes into its claimed
copy of the job (typed parts, bot.jobs.model); `Pipeline.apply` carries the decision out in one atomic store
transition that also writes what the step changed in the job (bot.jobs.codec works out which fields). A
step that meets a fault stays for `backoff_ms`; one told "not now" (a rate limit, a provider's concurrency
cap) stays for `not_now_ms`. Both are a `bot.retry.Backoff`, the one delay formula.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.jobs.lanes import Lane
from bot.jobs.model import Job, Status
from bot.retry import Backoff

# A fault (5xx, timeout, an unclear answer): 1 s, doubling with each error in a row, up to a minute.
FAULT_BASE_MS = 1000
FAULT_CAP_MS = 60_000
# "Not now" from a provider (rate limit, or its concurrency cap): nothing happened; come back in 5 to 15 s,
# however often it was said (no error is counted).
NOT_NOW = Backoff(base_s=15.0, cap_s=15.0, jitter=2 / 3)


def backoff_ms(errors: int, base_ms: int = FAULT_BASE_MS, cap_ms: int = FAULT_CAP_MS) -> int:
    """Exponential backoff with jitter: about base·2^(errors-1), between half and all of it, capped."""
    return Backoff(base_s=base_ms / 1000, cap_s=cap_ms / 1000).delay_ms(errors)


def not_now_ms() -> int:
    """How long a job told "not now" waits before asking again."""
    return NOT_NOW.delay_ms(1)


@dataclass(frozen=True)
class Stay:
    """Come back to this lane in `delay_ms`. `why`: what made the step wait, when the job does not say it
    (its last error), for whoever hears the step (the terminal dub's display, bot/programs/dub_display.py);
    not stored."""

    delay_ms: int
    why: str = ""


@dataclass(frozen=True)
class Move:
    """Go on to `lane` in `delay_ms`."""

    lane: Lane
    delay_ms: int = 0


@dataclass(frozen=True)
class Done:
    """Leave the last lane: the job is over."""


Decision = Stay | Move | Done


def finish(
    job: Job,
    status: Status,
    *,
    error_code: str | None = None,
    error: str | None = None,
    error_file: str | None = None,
) -> Move:
    """End the job and queue its one reply (the send lane), in a single atomic step."""
    job.status = status
    job.progress.errors = 0
    if error_code is not None:
        job.result.error_code = error_code
    if error is not None:
        job.result.error = error
    if error_file is not None:
        job.result.error_file = error_file
    return Move(Lane.SEND, 0)


def cancelled(job: Job) -> Move:
    """The cancelled end of a job whose step meant it to go on: what the step recorded stays (a task it
    created, a create in doubt, a slot it reserved), so the reply and the budget say what happened."""
    return finish(job, Status.CANCELLED)
