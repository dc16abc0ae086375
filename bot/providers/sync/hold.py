"""After sync.so answers a create with 429, no create is sent for a while (`CreateHold`): jobs waiting
for a place then do not re-POST every few seconds (bot/providers/sync/client.py's docstring says why).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from bot.providers.base import ProviderError
from bot.retry import Backoff, retry_after_seconds

# After a 429 to a create: no create for HOLD_BASE_S, doubling with each 429 in a row, up to HOLD_CAP_S
# (or what Retry-After asks, up to RETRY_AFTER_CAP_S). No jitter: it is one hold for the whole process, and
# the jobs it holds come back at their own jittered times.
HOLD_BASE_S = 5.0
HOLD_CAP_S = 120.0
RETRY_AFTER_CAP_S = 600.0
CREATE_HOLD = Backoff(base_s=HOLD_BASE_S, cap_s=HOLD_CAP_S, jitter=0.0, retry_after_cap_s=RETRY_AFTER_CAP_S)


class CreateHold:
    """Creates held back after sync.so answered one with 429, for this process: HOLD_BASE_S, doubling with
    each 429 in a row up to HOLD_CAP_S (longer when Retry-After asks, up to RETRY_AFTER_CAP_S); a create
    that gets through ends it. While held, a create is refused here with the 429's own kind and words."""

    def __init__(self, *, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._until = 0.0
        self._in_a_row = 0
        self._last: ProviderError | None = None

    def refusal(self) -> ProviderError | None:
        left = self._until - self._clock()
        if self._last is None or left <= 0:
            return None
        last = self._last
        message = f"{last.message} (sync.so is asked again in {math.ceil(left)} s)"
        return ProviderError(last.kind, message, code=last.code, retry_after_s=left)

    def start(self, refusal: ProviderError, retry_after: str | None) -> None:
        self._in_a_row += 1
        hold = CREATE_HOLD.delay_s(self._in_a_row, retry_after_seconds(retry_after))
        self._until = self._clock() + hold
        self._last = refusal
        refusal.retry_after_s = hold

    def clear(self) -> None:
        self._in_a_row, self._until, self._last = 0, 0.0, None
