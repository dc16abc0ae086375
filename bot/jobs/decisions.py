"""What a step decides about its job, and the one retry policy.

Each step of the pipeline (and each check before one, bot/lanes/gate.py) returns exactly one `Decision`: stay
in its lane until later, move to the next lane, or be done. What the step learnt it writes into its claimed
copy of the job (typed parts, bot.jobs.model); `Pipeline.apply` carries the decision out in one atomic store
transition that also writes what the step changed in the job (bot.jobs.codec works out which fields).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from bot.jobs.lanes import Lane
from bot.jobs.model import Job, Status


def backoff_ms(errors: int, base_ms: int = 1000, cap_ms: int = 60_000) -> int:
    """Exponential backoff with jitter: about base·2^(errors-1), between half and all of it, capped."""
    ceiling = min(cap_ms, base_ms * 2 ** max(0, errors - 1))
    return int(ceiling * random.uniform(0.5, 1.0))


@dataclass(frozen=True)
class Stay:
    """Come back to this lane in `delay_ms`."""

    delay_ms: int


@dataclass(frozen=True)
class Move:
    """Go on to `lane` in `delay_ms`."""

    lane: Lane
    delay_ms: int = 0


@dataclass(frozen=True)
class Done:
    """Leave the last lane: the job is over."""


Decision = Stay | Move | Done


def retry(job: Job, delay_ms: int, last_error: str) -> Stay:
    """Come back after a transient fault, counted in `progress.errors` (the caller's backoff uses it)."""
    job.progress.errors += 1
    job.progress.last_error = last_error
    return Stay(delay_ms)


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
