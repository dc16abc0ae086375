"""After sync.so answers a create with 429, no create is sent for a while (`CreateHold`): jobs waiting
for a place then do not re-POST every few seconds (bot/providers/sync/client.py's docstring says why).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from bot.providers.base import ProviderError

# After a 429 to a create: no create for HOLD_BASE_S, doubling with each 429 in a row, up to HOLD_CAP_S
# (or what Retry-After asks, up to RETRY_AFTER_CAP_S).
HOLD_BASE_S = 5.0
HOLD_CAP_S = 120.0
RETRY_AFTER_CAP_S = 600.0


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
        hold = min(HOLD_CAP_S, HOLD_BASE_S * 2 ** (self._in_a_row - 1))
        asked = _seconds(retry_after)
        if asked is not None:
            hold = max(hold, min(asked, RETRY_AFTER_CAP_S))
        self._until = self._clock() + hold
        self._last = refusal
        refusal.retry_after_s = hold

    def clear(self) -> None:
        self._in_a_row, self._until, self._last = 0, 0.0, None


def _seconds(value: str | None) -> float | None:
    """Retry-After as seconds (the delta form; an HTTP date is not worth the trouble here)."""
    digits = (value or "").strip()
    # ASCII digits only: float() takes other scripts' digits and refuses "²", which isdigit() lets by.
    if not (digits.isascii() and digits.isdigit()):
        return None
    return float(digits)
