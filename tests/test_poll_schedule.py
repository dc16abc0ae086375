"""How often a running task is checked: fast while it is fresh, slower as it runs long."""

from __future__ import annotations

import pytest

from bot.jobs.model import Job, Progress
from bot.lanes.timing import Timing, poll_delay_ms

S = 1000
MIN = 60 * S


@pytest.mark.parametrize(
    ("age_ms", "expected_ms"),
    [
        (0, 5 * S),
        (59 * S, 5 * S),  # the first minute: every 5 s, so a quick task is answered quickly
        (1 * MIN, 10 * S),
        (4 * MIN + 59 * S, 10 * S),
        (5 * MIN, 20 * S),
        (14 * MIN, 20 * S),
        (15 * MIN, 30 * S),  # long-running: every 30 s, a sixth of the requests
        (29 * MIN, 30 * S),
    ],
)
def test_polling_slows_down_as_a_task_runs_long(age_ms: int, expected_ms: int) -> None:
    assert poll_delay_ms(age_ms, base_ms=5 * S, max_ms=30 * S) == expected_ms


def test_requests_per_task_over_half_an_hour_stay_reasonable() -> None:
    age, polls = 0, 0
    while age < 30 * MIN:
        age += poll_delay_ms(age, base_ms=5 * S, max_ms=30 * S)
        polls += 1
    # A flat 5 s cadence would be 360 requests; the schedule needs about a quarter of that (96).
    assert polls <= 100


def test_the_ceiling_never_undercuts_the_base_interval() -> None:
    timing = Timing(poll_interval_ms=40 * S, job_timeout_ms=30 * MIN, poll_max_interval_ms=30 * S)
    job = Job(id="j", progress=Progress(created_ms=0))
    assert timing.poll_delay_ms(job, now_ms=20 * MIN) == 40 * S
