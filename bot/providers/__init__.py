"""The lip-sync providers, each in its own module behind `base.Provider`; `build` makes the configured ones.

The names here are the words users type (`/lipsync <video> <audio> sync`) and the order in which the
default provider is chosen when DEFAULT_PROVIDER is unset. `webhooks` receives the providers' callbacks.

May import: bot.settings, bot.redis_client, bot.jobs, bot.observe.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from bot.providers.base import KeyCheck, KeyState, Provider
from bot.providers.jogg import JoggProvider
from bot.providers.lipsyncdev import LipSyncDevProvider
from bot.providers.sync import SyncProvider
from bot.settings import Settings, StartupError, parse_prices

log = logging.getLogger(__name__)

NAMES = ("jogg", "sync", "lipsyncdev")
# A provider the start-up check could not ask is asked again after this long, doubling up to the cap.
RECHECK_FIRST_S = 15.0
RECHECK_CAP_S = 300.0
LABELS = {"jogg": JoggProvider.label, "sync": SyncProvider.label, "lipsyncdev": LipSyncDevProvider.label}


def build(settings: Settings) -> dict[str, Provider]:
    """One client per configured provider, in NAMES order."""
    s, timeout = settings, settings.http_timeout_seconds
    built: dict[str, Provider] = {}
    if s.jogg_api_key is not None:
        built["jogg"] = JoggProvider(s.jogg_api_key, s.jogg_api_url, timeout, s.jogg_posts_per_minute)
    if s.sync_api_key is not None:
        if s.sync_model not in SyncProvider.models:
            raise StartupError(
                f"SYNC_MODEL is {s.sync_model!r}; sync.so offers {', '.join(SyncProvider.models)}."
            )
        built["sync"] = SyncProvider(
            s.sync_api_key,
            s.sync_api_url,
            model=s.sync_model,
            prices=parse_prices(s.sync_prices),
            max_concurrent=s.sync_max_concurrent,
            webhook_secret=s.sync_webhook_secret,
            timeout_s=timeout,
        )
    if s.lipsyncdev_api_key is not None:
        built["lipsyncdev"] = LipSyncDevProvider(
            s.lipsyncdev_api_key,
            s.lipsyncdev_api_url,
            video_enhance=s.lipsyncdev_video_enhance,
            fps=s.lipsyncdev_fps,
            timeout_s=timeout,
            version=s.lipsyncdev_api_version,
        )
    return built


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
