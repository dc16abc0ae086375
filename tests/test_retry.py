"""One retry idiom per layer (bot/retry.py): every delay before trying again comes from `Backoff`, whose waits
stay within their bounds, stop growing at the cap, and honour a server's Retry-After up to its own cap; and no
module computes a delay sequence of its own (a doubling, a `2 **`, its own jitter, `sleep(attempt)`)."""

from __future__ import annotations

import pytest

from bot.retry import Backoff, retry_after_seconds

SAMPLES = 300


def test_each_wait_is_between_its_jittered_floor_and_the_doubled_ceiling() -> None:
    backoff = Backoff(base_s=0.5, cap_s=10.0, jitter=0.5)
    for attempt, ceiling in enumerate([0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0], start=1):
        waits = [backoff.delay_s(attempt) for _ in range(SAMPLES)]
        assert all(ceiling / 2 <= wait <= ceiling for wait in waits), (attempt, min(waits), max(waits))
        assert max(waits) - min(waits) > ceiling / 10  # jittered: jobs that failed together spread out


def test_the_wait_stops_growing_at_the_cap_however_many_failures() -> None:
    backoff = Backoff(base_s=1.0, cap_s=60.0, jitter=0.0)
    assert [backoff.delay_s(n) for n in (0, 1, 2, 7, 1000, 10**9)] == [1.0, 1.0, 2.0, 60.0, 60.0, 60.0]


def test_retry_after_is_honoured_up_to_its_cap() -> None:
    backoff = Backoff(base_s=1.0, cap_s=8.0, jitter=0.0, retry_after_cap_s=30.0)
    assert backoff.delay_s(1, retry_after_s=20.0) == 20.0  # longer than our own wait: the server's
    assert backoff.delay_s(4, retry_after_s=2.0) == 8.0  # shorter: ours
    assert backoff.delay_s(1, retry_after_s=10_000.0) == 30.0  # an absurd ask: the cap
    assert backoff.delay_s(1, retry_after_s=0.0) == 1.0
    assert backoff.delay_ms(1, retry_after_s=20.0) == 20_000
    # A policy without a cap for Retry-After does not take the server's word.
    assert Backoff(base_s=1.0, cap_s=8.0, jitter=0.0).delay_s(1, retry_after_s=20.0) == 1.0


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("3", 3.0),
        (" 12 ", 12.0),
        ("1.5", 1.5),
        (["4"], 4.0),
        (7, 7.0),
        (None, None),
        ("", None),
        ([], None),
        ("inf", None),
        ("nan", None),
        ("1e9", None),
        ("-1", None),
        ("\u00b2", None),  # superscript two: isdigit() says yes
        ("\u0661\u0662\u0660", None),  # Arabic-Indic 120: float() says yes
        ("Wed, 21 Oct 2015 07:28:00 GMT", None),
    ],
)
def test_retry_after_is_read_as_plain_seconds_or_not_at_all(header: object, seconds: float | None) -> None:
    assert retry_after_seconds(header) == seconds


@pytest.mark.parametrize(
    "arguments",
    [
        {"base_s": 0.0, "cap_s": 1.0},
        {"base_s": 2.0, "cap_s": 1.0},
        {"base_s": 1.0, "cap_s": 2.0, "jitter": 1.5},
        {"base_s": 1.0, "cap_s": 2.0, "retry_after_cap_s": -1.0},
    ],
)
def test_a_backoff_that_makes_no_sense_is_refused(arguments: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**arguments)
