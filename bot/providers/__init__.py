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

log = logging.getLogger(__name__)

# A provider the start-up check could not ask is asked again after this long, doubling up to the cap.
RECHECK_FIRST_S = 15.0
RECHECK_CAP_S = 300.0


async def check_keys(built: Sequence[Provider]) -> list[KeyCheck]:
    """Each provider's key check, all at once, in the order given."""
    return list(await asyncio.gather(*(provider.key_check() for provider in built)))


async def recheck_keys(
    waiting: Sequence[Provider], first_s: float = RECHECK_FIRST_S, cap_s: float = RECHECK_CAP_S
) -> None:
    """Ask the providers the start-up check could not ask again, with a growing pause, until each has
    answered; say once what it answered. A key refused now cannot stop a bot that serves the others: it is
    logged as an error, and that provider's jobs end with the refusal's advice."""
    pending = list(waiting)
    pause = first_s
    while pending:
        await asyncio.sleep(pause)
        pause = min(cap_s, pause * 2)
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
