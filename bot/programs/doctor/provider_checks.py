"""Doctor's provider checks: each provider's key (its own key check) and balance, what its settings risk,
and, without its key, whether anything answers at its address."""

from __future__ import annotations

from urllib.parse import urlsplit

from bot.programs.doctor.checklist import NETWORK, Check, fail, http_status, ok, unreachable, warn
from bot.providers.base import KeyState, Provider
from bot.providers.registry import Registry
from bot.providers.sync import SyncProvider
from bot.settings import Settings

SYNC_PLAN_CAPS = "Hobbyist 1, Creator 3, Growth 6, Scale 15"


async def check_provider(provider: Provider, settings: Settings, registry: Registry) -> list[Check]:
    """The provider's own key check (which also says which LipSync.dev API version answered), then its
    balance where it reports one, and what its settings risk."""
    entry = registry.entry(provider.name)
    assert entry is not None  # built from this registry
    key, where, url_setting = entry.key_setting, entry.where, entry.url_setting
    check = await provider.key_check()
    if check.state is KeyState.REFUSED:
        return [
            fail(provider.label, check.detail, f"get a key at {where} and set {key}, or fix what it says")
        ]
    if check.state is KeyState.UNREACHABLE:
        return [fail(provider.label, check.detail, f"{NETWORK} {url_setting}")]
    if check.state is KeyState.UNCLEAR:
        fix = f"try again in a while; if it stays, check {url_setting} and the provider's status page"
        return [warn(provider.label, f"{key} not checked: {check.detail}", fix)]
    balance = await provider.balance()
    detail = " · ".join(part for part in (f"{key} accepted", check.detail, balance or "") if part)
    return [ok(provider.label, detail), *concurrency_checks(provider.name, settings)]


def concurrency_checks(provider: str, settings: Settings) -> list[Check]:
    """sync.so without SYNC_MAX_CONCURRENT: jobs past the plan's cap are sent, refused (429) and held."""
    if provider != SyncProvider.name or settings.sync_max_concurrent:
        return []
    return [
        warn(
            "sync.so concurrency",
            "SYNC_MAX_CONCURRENT is not set: jobs past your plan's cap are sent anyway, refused by sync.so "
            "(429) and retried with a growing pause, so they start later than they could",
            f"set SYNC_MAX_CONCURRENT to your plan's cap ({SYNC_PLAN_CAPS}): jobs past it then wait in line",
        )
    ]


async def check_reachable(name: str, url: str, setting: str) -> list[Check]:
    """For a service whose credentials are missing: does anything answer at its address?"""
    answer = await http_status(url)
    if not isinstance(answer, int):
        return [unreachable(name, url, answer, setting)]
    host = urlsplit(url).hostname
    return [ok(name, f"{host} answers (HTTP {answer}); nothing more can be checked without its setting")]
