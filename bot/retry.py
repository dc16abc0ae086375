"""Retries: one idiom per layer, and the one delay formula they all use.

Every wait before trying again is a `Backoff`: base·2^(attempt-1), capped, jittered down by up to `jitter` of
it (so processes and jobs that failed together do not come back together), and never shorter than what a
server asked for with Retry-After, up to `retry_after_cap_s`. No other module computes a delay sequence
(tests/test_retry.py scans for one). Who retries what (CONTRIBUTING.md, "Retries: one idiom per layer"):

  job steps      decide with Stay/Move/Done; faults back off with `backoff_ms`, a provider's "not now" waits
                 `not_now_ms` (bot/jobs/decisions.py); the worker carries the decision out in Redis, so a
                 retry survives a restart and never blocks a worker
  provider calls are never retried in the call (bot/providers/base.py): a `ProviderError` says what kind of
                 failure it was and the step decides as above; sync.so's create hold
                 (bot/providers/sync/hold.py `CreateHold`) spaces creates after a 429 with a `Backoff`
  Slack calls    a job's posts raise SlackRetryLater/SlackAmbiguous and the step stays (bot/lanes/posting.py
                 `slack_setback`); courtesy calls wait out a 429 in `SlackOut._best_effort`; both read
                 Retry-After with `retry_after_seconds` (bot/slack/out.py)
  connections    the client libraries: redis-py's `Retry` (bot/redis_client.py), aiohttp for HTTP; the
                 loops that open them again (Socket Mode, the embedded Redis, the worker's claims while Redis
                 is down, the providers' key recheck) wait with a `Backoff`

May import: nothing of the bot (it sits with bot.settings at the base).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

# Retry-After's delay-seconds, in ASCII digits only (str.isdigit() and float() take other scripts' digits).
_DELTA_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")


@dataclass(frozen=True, kw_only=True)
class Backoff:
    """How long to wait before attempt number `attempt` + 1: base_s·2^(attempt-1) capped at cap_s, then
    between (1 - jitter) of it and all of it; at least what Retry-After asked, up to retry_after_cap_s (0:
    the policy does not take a server's word)."""

    base_s: float
    cap_s: float
    jitter: float = 0.5
    retry_after_cap_s: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.base_s <= self.cap_s:
            raise ValueError(f"a backoff needs 0 < base_s <= cap_s, not {self.base_s} and {self.cap_s}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter is a share of the delay, between 0 and 1, not {self.jitter}")
        if self.retry_after_cap_s < 0:
            raise ValueError(f"retry_after_cap_s cannot be negative: {self.retry_after_cap_s}")

    def ceiling_s(self, attempt: int) -> float:
        """The longest wait after `attempt` failures in a row (1 for the first), before jitter."""
        doublings = min(max(0, attempt - 1), 64)  # 2^64 is past any cap; keeps the float finite
        return min(self.cap_s, self.base_s * 2.0**doublings)

    def delay_s(self, attempt: int, retry_after_s: float | None = None) -> float:
        """The wait after `attempt` failures in a row; `retry_after_s` is what the server asked, if it did."""
        delay = self.ceiling_s(attempt) * random.uniform(1.0 - self.jitter, 1.0)
        if retry_after_s is not None and retry_after_s > 0:
            delay = max(delay, min(retry_after_s, self.retry_after_cap_s))
        return delay

    def delay_ms(self, attempt: int, retry_after_s: float | None = None) -> int:
        return int(self.delay_s(attempt, retry_after_s) * 1000)


def retry_after_seconds(value: object) -> float | None:
    """A Retry-After header's seconds (the delta form: ASCII digits, a fraction allowed), None when there is
    none or it says something else (an HTTP date is not worth the trouble here; other scripts' digits,
    "inf" and "nan", which float() would take, are no delay asked for)."""
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    text = str(value).strip() if isinstance(value, str | int | float) else ""
    return float(text) if _DELTA_SECONDS.fullmatch(text) else None
