"""What the lanes keep per provider: the provider itself and the limits the bot keeps for it across
processes (its POST rate, and its seats when the account caps tasks running at once)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bot.lanes.ratelimit import RateLimiter, Seats
from bot.providers.base import Provider

PROVIDER_OFF = "provider_off"  # the job's provider has no key any more (our own error code)


@dataclass
class Provisions:
    """One provider and the limits the bot keeps for it across processes."""

    provider: Provider
    limiter: RateLimiter
    seats: Seats | None = None  # when the account caps tasks running at once


def provider_label(providers: Mapping[str, Provisions], name: str) -> str:
    """The provider's name for people; its stored name when it is not configured any more."""
    provisions = providers.get(name)
    return provisions.provider.label if provisions else name
