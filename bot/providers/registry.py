"""The one list of providers: each entry says everything the rest of the bot needs to know about one.

An entry names its client class (whose `name` is the word users type and whose `label` is how messages name
it), the setting that enables it and where to get that key, the settings it reads, and the factory that
builds its client from the settings. Everything else reads the providers from a `Registry`: the words the
parser takes, the labels messages show, the help, the settings' key checks ("set at least one of these
keys"), `doctor`, the terminal `dub`. REGISTRY holds the providers this bot ships; the composition root
(bot/programs/main.py) takes a registry, so a test can run the real bot with one more (CONTRIBUTING.md,
"Adding a provider"). The registry's order is the order in which the default provider is chosen when
DEFAULT_PROVIDER is unset.

bot.settings stays the lowest layer: it knows the settings' fields, and learns which of them enable a
provider from `Registry.settings_type` (a subclass carrying the keys), never by importing this module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeVar, overload

from bot.providers.base import Provider
from bot.providers.jogg import JoggProvider
from bot.providers.lipsyncdev import LipSyncDevProvider
from bot.providers.sync import SyncProvider
from bot.settings import ProviderKey, Settings, StartupError, load_settings, parse_prices

AnySettings = TypeVar("AnySettings", bound=Settings)


@dataclass(frozen=True, kw_only=True)
class ProviderEntry:
    """One provider, as the bot knows it. `settings` are the fields of bot.settings.Settings it reads
    (lower case, as the factory reads them); `key_setting` and `url_setting` are among them."""

    kind: type[Provider]  # its client: `kind.name` is the word users type, `kind.label` how messages name it
    key_setting: str  # the setting whose value enables it, e.g. JOGG_API_KEY
    where: str  # where an admin gets that key
    url_setting: str  # its API's base URL: doctor checks it can be reached even without a key
    settings: tuple[str, ...]
    build: Callable[[Any], Provider]  # the settings (an instance of `Registry.settings_type`) → its client

    @property
    def name(self) -> str:
        return self.kind.name

    @property
    def label(self) -> str:
        return self.kind.label

    @property
    def key(self) -> ProviderKey:
        return ProviderKey(provider=self.name, setting=self.key_setting, where=self.where)


class Registry:
    """The providers one bot knows, in the order the default is chosen. Building one checks that names are
    unique; `settings_type` checks that every setting an entry reads exists."""

    def __init__(self, entries: Iterable[ProviderEntry]) -> None:
        self.entries: tuple[ProviderEntry, ...] = tuple(entries)
        self.names: tuple[str, ...] = tuple(entry.name for entry in self.entries)
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"two providers share a name: {', '.join(self.names)}")
        self.labels: Mapping[str, str] = MappingProxyType({e.name: e.label for e in self.entries})
        self.keys: tuple[ProviderKey, ...] = tuple(entry.key for entry in self.entries)
        self._settings_types: dict[type[Settings], type[Settings]] = {}

    def with_entries(self, *more: ProviderEntry) -> Registry:
        """This registry and `more` after it (a provider added without editing this module)."""
        return Registry((*self.entries, *more))

    def entry(self, name: str) -> ProviderEntry | None:
        return next((entry for entry in self.entries if entry.name == name), None)

    @overload
    def settings_type(self) -> type[Settings]: ...
    @overload
    def settings_type(self, base: type[AnySettings]) -> type[AnySettings]: ...
    def settings_type(self, base: type[Settings] = Settings) -> type[Settings]:
        """`base` (Settings, or a subclass adding a provider's fields) knowing these providers' keys."""
        known = self._settings_types.get(base)
        if known is None:
            for entry in self.entries:
                missing = [f for f in entry.settings if f not in base.model_fields]
                if missing:
                    raise TypeError(
                        f"{entry.label} reads settings {base.__name__} lacks: {', '.join(missing)}"
                    )
            namespace = {"__module__": base.__module__, "provider_keys": self.keys}
            known = self._settings_types[base] = type(base.__name__, (base,), namespace)
        return known

    @overload
    def load_settings(self, base: None = None, /, **overrides: object) -> Settings: ...
    @overload
    def load_settings(self, base: type[AnySettings], /, **overrides: object) -> AnySettings: ...
    def load_settings(self, base: type[Settings] | None = None, /, **overrides: object) -> Settings:
        """The settings (`base`, Settings by default) from the environment and .env, then `overrides`;
        SettingsError says what is wrong."""
        return load_settings(self.settings_type(base or Settings), **overrides)

    def build(self, settings: Settings) -> dict[str, Provider]:
        """One client per configured provider (its key set), in the registry's order."""
        configured = set(settings.configured_providers)
        return {entry.name: entry.build(settings) for entry in self.entries if entry.name in configured}


# -- the providers this bot ships -------------------------------------------------------------------


def _jogg(s: Settings) -> Provider:
    assert s.jogg_api_key is not None  # built only when configured
    return JoggProvider(
        s.jogg_api_key,
        base_url=s.jogg_api_url,
        timeout_s=s.http_timeout_seconds,
        posts_per_minute=s.jogg_posts_per_minute,
    )


def _sync(s: Settings) -> Provider:
    assert s.sync_api_key is not None
    if s.sync_model not in SyncProvider.models:
        raise StartupError(
            f"SYNC_MODEL is {s.sync_model!r}; sync.so offers {', '.join(SyncProvider.models)}."
        )
    return SyncProvider(
        s.sync_api_key,
        base_url=s.sync_api_url,
        model=s.sync_model,
        prices=parse_prices(s.sync_prices),
        max_concurrent=s.sync_max_concurrent,
        webhook_secret=s.sync_webhook_secret,
        timeout_s=s.http_timeout_seconds,
    )


def _lipsyncdev(s: Settings) -> Provider:
    assert s.lipsyncdev_api_key is not None
    return LipSyncDevProvider(
        s.lipsyncdev_api_key,
        base_url=s.lipsyncdev_api_url,
        video_enhance=s.lipsyncdev_video_enhance,
        fps=s.lipsyncdev_fps,
        timeout_s=s.http_timeout_seconds,
        version=s.lipsyncdev_api_version,
    )


JOGG = ProviderEntry(
    kind=JoggProvider,
    key_setting="JOGG_API_KEY",
    where="app.jogg.ai → API → API Keys",
    url_setting="JOGG_API_URL",
    settings=("jogg_api_key", "jogg_api_url", "jogg_posts_per_minute", "http_timeout_seconds"),
    build=_jogg,
)
SYNC = ProviderEntry(
    kind=SyncProvider,
    key_setting="SYNC_API_KEY",
    where="sync.so → Dashboard → API Keys",
    url_setting="SYNC_API_URL",
    settings=(
        "sync_api_key",
        "sync_api_url",
        "sync_model",
        "sync_prices",
        "sync_max_concurrent",
        "sync_webhook_secret",
        "http_timeout_seconds",
    ),
    build=_sync,
)
LIPSYNCDEV = ProviderEntry(
    kind=LipSyncDevProvider,
    key_setting="LIPSYNCDEV_API_KEY",
    where="lipsync.dev → Dashboard → API",
    url_setting="LIPSYNCDEV_API_URL",
    settings=(
        "lipsyncdev_api_key",
        "lipsyncdev_api_url",
        "lipsyncdev_api_version",
        "lipsyncdev_video_enhance",
        "lipsyncdev_fps",
        "http_timeout_seconds",
    ),
    build=_lipsyncdev,
)

REGISTRY = Registry((JOGG, SYNC, LIPSYNCDEV))
