"""The lip-sync providers, each in its own module behind `base.Provider`; `build` makes the configured ones.

The names here are the words users type (`/lipsync <video> <audio> sync`) and the order in which the
default provider is chosen when DEFAULT_PROVIDER is unset.
"""

from __future__ import annotations

from bot.providers.base import Provider
from bot.providers.jogg import JoggProvider
from bot.providers.lipsyncdev import LipSyncDevProvider
from bot.providers.sync import SyncProvider
from bot.settings import Settings, StartupError, parse_prices

NAMES = ("jogg", "sync", "lipsyncdev")
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
        )
    return built
