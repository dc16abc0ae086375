"""What the lanes keep per provider: the provider itself and the limits the bot keeps for it across
processes (its POST rate, and its seats when the account caps tasks running at once)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from redis.asyncio import Redis

from bot.lanes.ratelimit import RateLimiter, Seats
from bot.lanes.timing import Timing
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


def provisions_for(redis: Redis, provider: Provider, timing: Timing) -> Provisions:
    """A provider with its limits, shared by every process using the same key."""
    account = f"{provider.name}:{provider.key_id}"
    limiter = RateLimiter(redis=redis, name=account, limit=provider.creates_per_minute)
    seats = None
    if provider.max_concurrent:
        # A seat a vanished job never gave back is freed once no job could still be running on it.
        stale_ms = timing.job_timeout_ms + 2 * timing.lease_ms
        seats = Seats(redis=redis, name=account, cap=provider.max_concurrent, stale_ms=stale_ms)
    return Provisions(provider, limiter, seats)
