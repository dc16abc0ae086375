"""The composition root's builders that need nothing but the settings (and Redis): the lanes' timing and the
money rules. `Bot.start` (bot/programs/main.py) calls them and builds the rest.
"""

from __future__ import annotations

from decimal import Decimal

from bot.lanes.gate import MoneyRules
from bot.lanes.timing import Timing
from bot.settings import Settings, parse_amounts, parse_thresholds


def timing_from(settings: Settings) -> Timing:
    s = settings
    return Timing(
        poll_interval_ms=int(s.poll_interval_seconds * 1000),
        job_timeout_ms=int(s.job_timeout_seconds * 1000),
        lease_ms=int(s.lease_seconds * 1000),
        poll_max_interval_ms=int(s.poll_max_interval_seconds * 1000),
        create_settle_ms=int(max(s.create_settle_seconds, 4 * s.http_timeout_seconds) * 1000),
    )


def money_rules(settings: Settings, *, default_unit: str, max_input_bytes: int) -> MoneyRules:
    """The gate's rules; `default_unit` is the default provider's, for a CONFIRM_ABOVE without a unit."""
    s = settings
    return MoneyRules(
        confirm_above=parse_thresholds(s.confirm_above, default_unit),
        warn_below=parse_amounts(s.balance_warn_below, "unit=amount"),
        cache_ttl_s=int(s.cache_days * 86400),
        admin_channel=s.admin_channel or "",
        max_input_bytes=max_input_bytes,
        quote_ttl_ms=int(s.quote_expires_minutes * 60_000),
        unknown_length_s=Decimal(str(s.unknown_length_seconds)),
    )
