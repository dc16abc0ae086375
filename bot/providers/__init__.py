"""The lip-sync providers, each in its own module (or package, once it grows parts: `sync`, `lipsyncdev`)
behind `base.Provider`; `registry` lists them (the words users type, their labels, their settings and keys,
how each is built) and is the one place that names them. `webhooks` receives the providers' callbacks.
Here: the key checks at start-up and after.

May import: bot.settings, bot.redis_client, bot.jobs, bot.observe.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from bot.providers.base import KeyCheck, KeyState, Provider
from bot.retry import Backoff

log = logging.getLogger(__name__)

# A provider the start-up check could not ask is asked again after 15 s, doubling up to 5 minutes (no jitter:
# one loop per process, and the start-up log says when).
KEY_RECHECK = Backoff(base_s=15.0, cap_s=300.0, jitter=0.0)


async def check_keys(built: Sequence[Provider]) -> list[KeyCheck]:
    """Each provider's key check, all at once, in the order given."""
    return list(await asyncio.gather(*(provider.key_check() for provider in built)))


async def recheck_keys(waiting: Sequence[Provider], backoff: Backoff = KEY_RECHECK) -> None:
    """Ask the providers the start-up check could not ask again, with a growing pause, until each has
    answered; say once what it answered. A key refused now cannot stop a bot that serves the others: it is
    logged as an error, and that provider's jobs end with the refusal's advice."""
    pending = list(waiting)
    unanswered = 1  # the start-up check
    pause = backoff.delay_s(unanswered)
    while pending:
        await asyncio.sleep(pause)
        unanswered += 1
        pause = backoff.delay_s(unanswered)
        still: list[Provider] = []
        for provider, check in zip(pending, await check_keys(pending), strict=True):
            if check.state is KeyState.ACCEPTED:
                log.info("%s answers now%s", provider.label, f": {check.detail}" if check.detail else "")
            elif check.state is KeyState.REFUSED:
                log.error(
                    "%s answers now, and refuses: %s Fix it and restart the bot.",
                    provider.label,
                    check.detail,
                )
            else:
                log.warning(
                    "%s still cannot be checked (%s); asking again in %.0f s",
                    provider.label,
                    check.detail,
                    pause,
                )
                still.append(provider)
        pending = still
