"""What a step decides about its job, and the one retry policy.

Each step of the pipeline (and each check before one, bot/lanes/gate.py) returns exactly one `Decision`: stay
in its lane until later, move to the next lane, or be done. `Pipeline.apply` carries it out in one atomic
store transition.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from bot.jobs.lanes import Lane
from bot.jobs.model import Status


def backoff_ms(errors: int, base_ms: int = 1000, cap_ms: int = 60_000) -> int:
    """Exponential backoff with jitter: about base·2^(errors-1), between half and all of it, capped."""
    ceiling = min(cap_ms, base_ms * 2 ** max(0, errors - 1))
    return int(ceiling * random.uniform(0.5, 1.0))


Fields = Mapping[str, object]


@dataclass(frozen=True)
class Stay:
    """Come back to this lane in `delay_ms`. `why`: what made the step wait, when `fields` do not say it,
    for whoever hears the step (the terminal dub's display, bot/programs/dub_display.py); not stored."""

    delay_ms: int
    fields: Fields = field(default_factory=dict)
    why: str = ""


@dataclass(frozen=True)
class Move:
    """Go on to `lane` in `delay_ms`."""

    lane: Lane
    delay_ms: int = 0
    fields: Fields = field(default_factory=dict)


@dataclass(frozen=True)
class Done:
    """Leave the last lane: the job is over."""

    fields: Fields = field(default_factory=dict)


Decision = Stay | Move | Done


def finish(status: Status, **fields: object) -> Move:
    """End the job and queue its one reply (the send lane), in a single atomic step."""
    return Move(Lane.SEND, 0, {"status": status, "errors": 0, **fields})


def cancelled(decision: Stay | Move) -> Move:
    """The cancelled end of a job whose step meant it to go on: what the step recorded stays (a task it
    created, a create in doubt, a slot it reserved), so the reply and the budget say what happened."""
    return Move(Lane.SEND, 0, {**decision.fields, "status": Status.CANCELLED, "errors": 0})
