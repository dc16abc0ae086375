"""`lipsync-bot doctor`: check everything a setup needs and print a checklist, one line per check.

Each `check_*` coroutine asks one thing for real (Slack, a provider, Redis, the PUBLIC_URL host) and returns
`Check`s (`checklist`), one module per concern: `slack_checks`, `provider_checks`, `redis_checks`,
`public_url_checks`; the `*_check` functions there are pure: what was read → a verdict and its fix. Here,
the command: `diagnose` runs the checks all at once, each bounded by CHECK_SECONDS so that a hung service
cannot hang doctor; `render` makes the checklist; `run` exits 0 only when nothing failed (warnings do not
fail).

Nothing printed carries a secret: tokens are named by their kind ("xoxb-…"), URLs lose their passwords, and
`run` removes every configured secret from the text as a last guard.

Missing or wrong settings do not stop the checks: each one is a ✗ line of its own (with where to get the
value), a harmless stand-in takes its place, and whatever does not depend on it is still checked (Redis,
whether Slack and the providers can be reached). `run` then exits 2.
"""

from __future__ import annotations

import asyncio
import re
import sys
import textwrap
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from bot.programs.doctor.checklist import Check, Status, fail
from bot.programs.doctor.provider_checks import check_provider, check_reachable
from bot.programs.doctor.public_url_checks import check_public_url
from bot.programs.doctor.redis_checks import check_redis
from bot.programs.doctor.slack_checks import check_mode, check_slack_token
from bot.providers.base import Provider
from bot.providers.registry import REGISTRY, Registry
from bot.settings import (
    MISSING_MARKER,
    NO_PROVIDER,
    WHERE_TO_GET,
    Settings,
    SettingsError,
    StartupError,
    describe_problems,
)

CHECK_SECONDS = 10.0  # each check as a whole: a hung service gets a ✗, not a hung doctor

# Stand-ins for settings that are missing or wrong, so that the rest can still be checked. The Slack
# token's stand-in has the right shape but is never sent (its check is replaced by a reachability check);
# with no provider key at all, the first provider's key gets PROVIDER_KEY_STAND_IN.
STAND_INS: dict[str, object] = {
    "slack_bot_token": "xoxb-doctor-stand-in",
    "slack_signing_secret": "doctor-stand-in",
}
PROVIDER_KEY_STAND_IN = "doctor-stand-in"
UNSET_PROVIDERS = "provider keys"  # the stand-in name for "no provider key at all"
SETTING_ROUNDS = 8  # each round of stand-ins may uncover problems the previous ones hid


# -- the command ---------------------------------------------------------------------------------


def run() -> int:
    """`lipsync-bot doctor` (parsed by bot.programs.cli.parse_args): 0 when every required check passes, 1
    when one fails, 2 when settings are missing or wrong (each a ✗ line; the rest is checked all the same)."""
    try:
        loaded = load_for_doctor()
    except SettingsError as exc:  # not even stand-ins make the settings usable
        print(exc, file=sys.stderr)
        return 2
    checks = asyncio.run(diagnose(loaded.settings, stand_ins=loaded.stand_ins))
    every = [*loaded.problems, *checks]
    print(scrub(render(every), configured_secrets(loaded.settings)))
    return 2 if loaded.problems else exit_code(every)


@dataclass(frozen=True)
class Loaded:
    """The settings, with a stand-in (`STAND_INS` or the field's default) for each one missing or wrong:
    `problems` says what is wrong, one ✗ line each; `stand_ins` names what the checks must not trust
    (field names, or UNSET_PROVIDERS)."""

    settings: Settings
    problems: list[Check]
    stand_ins: frozenset[str]


def load_for_doctor(*, registry: Registry = REGISTRY, **overrides: object) -> Loaded:
    """The settings as the bot reads them (the environment and .env, then `overrides`), with `registry`'s
    providers; SettingsError when even stand-ins cannot make them usable."""
    kind = registry.settings_type()
    values = dict(overrides)
    problems: list[Check] = []
    stand_ins: set[str] = set()
    for _ in range(SETTING_ROUNDS):
        try:
            settings = kind(**values)  # type: ignore[arg-type]
        except ValidationError as exc:
            found = setting_problems(exc, registry)
            fresh = [(field, check) for field, check in found if field not in stand_ins]
            if not fresh:
                raise SettingsError(describe_problems(exc, registry.keys)) from None
            for field, check in fresh:
                problems.append(check)
                stand_ins.add(field)
                if field == UNSET_PROVIDERS:
                    values[registry.keys[0].field] = PROVIDER_KEY_STAND_IN
                else:
                    values[field] = _stand_in(field)
            continue
        return Loaded(settings, problems, frozenset(stand_ins))
    raise SettingsError("The settings could not be read.")  # not reached: each round stands in a field


def setting_problems(exc: ValidationError, registry: Registry) -> list[tuple[str, Check]]:
    """Each missing or wrong setting as (the field to stand in for, its ✗ line)."""
    found: list[tuple[str, Check]] = []
    for error in exc.errors():
        message = error["msg"].removeprefix("Value error, ")
        if message.startswith(MISSING_MARKER):
            for name in message.removeprefix(MISSING_MARKER).split(","):
                found.append(_missing(name, registry))
            continue
        field = str(error["loc"][0]) if error["loc"] else _named_field(message)
        if field:
            name = field.upper()
            found.append((field, fail(name, message, f"correct {name} (.env.example says what it takes)")))
    return found


def _missing(name: str, registry: Registry) -> tuple[str, Check]:
    if name == NO_PROVIDER:
        keys = ", ".join(key.setting for key in registry.keys)
        where = "; ".join(f"{key.setting} at {key.where}" for key in registry.keys)
        return UNSET_PROVIDERS, fail("Provider keys", f"none is set ({keys})", f"set at least one: {where}")
    field = "slack_signing_secret" if name == "SLACK_APP_TOKEN" else name.lower()
    return field, fail(name, "not set", f"get it at {WHERE_TO_GET[name]}")


def _named_field(message: str) -> str:
    """The setting a whole-model check names ("DEFAULT_PROVIDER is sync, but …"), as a field name."""
    words: list[str] = re.findall(r"\b[A-Z][A-Z0-9_]{2,}\b", message)
    return next((word.lower() for word in words if word.lower() in Settings.model_fields), "")


def _stand_in(field: str) -> object:
    if field in STAND_INS:
        return STAND_INS[field]
    info = Settings.model_fields.get(field)
    return None if info is None or info.is_required() else info.get_default(call_default_factory=True)


async def diagnose(
    settings: Settings,
    timeout_s: float = CHECK_SECONDS,
    stand_ins: frozenset[str] = frozenset(),
    *,
    registry: Registry = REGISTRY,
) -> list[Check]:
    """Every check, run at once (none depends on another); the result in a fixed order. Whatever rests on
    a stand-in (`load_for_doctor`) is not asked: Slack and the providers are then only checked for being
    reachable."""
    built: dict[str, Provider] = {}
    groups: list[tuple[str, Coroutine[Any, Any, list[Check]]]] = []
    if "slack_bot_token" in stand_ins:
        groups.append(
            ("Slack", check_reachable("Slack", settings.slack_api_url + "api.test", "SLACK_API_URL"))
        )
    else:
        groups.append(("Slack bot token", check_slack_token(settings)))
    if not stand_ins & {"slack_bot_token", "slack_app_token", "slack_signing_secret"}:
        groups.append(("Slack mode", check_mode(settings)))
    if UNSET_PROVIDERS in stand_ins:
        groups += [
            (e.label, check_reachable(e.label, getattr(settings, e.url_setting.lower()), e.url_setting))
            for e in registry.entries
        ]
    else:
        try:
            built = registry.build(settings)
            groups += [(p.label, check_provider(p, settings, registry)) for p in built.values()]
        except StartupError as exc:  # a provider setting the bot would refuse (SYNC_MODEL)
            groups.append(("Providers", _constant(fail("Providers", str(exc), "correct that setting"))))
    if "redis_url" not in stand_ins:
        groups.append(("Redis", check_redis(settings)))
    if "public_url" not in stand_ins:
        groups.append(("PUBLIC_URL", check_public_url(settings, registry)))
    try:
        results = await asyncio.gather(*(_bounded(name, work, timeout_s) for name, work in groups))
    finally:
        for provider in built.values():
            await provider.aclose()
    return [check for group in results for check in group]


def render(checks: Sequence[Check]) -> str:
    width = max(len(check.name) for check in checks)
    pad = " " * (width + 4)  # fixes go under the details
    lines = []
    for check in checks:
        lines.append(f"{check.status} {check.name:<{width}}  {check.detail}")
        if check.status is not Status.OK:
            lines.append(textwrap.fill("fix: " + check.fix, 110, initial_indent=pad, subsequent_indent=pad))
    failed = sum(check.status is Status.FAIL for check in checks)
    warned = sum(check.status is Status.WARN for check in checks)
    warnings = f"{warned} warning{'s' * (warned != 1)} (!)"
    if failed:
        lines += ["", f"{failed} check{'s' * (failed != 1)} failed (✗), {warnings}: fix them and run again."]
    else:
        lines += ["", "Every required check passed" + (f"; {warnings}." if warned else ".")]
    return "\n".join(lines)


def exit_code(checks: Sequence[Check]) -> int:
    return 1 if any(check.status is Status.FAIL for check in checks) else 0


def configured_secrets(settings: Settings) -> list[str]:
    s = settings
    values = [s.slack_bot_token, s.slack_app_token, s.slack_signing_secret, s.sync_webhook_secret]
    values += s.provider_secrets
    found = [value.get_secret_value() for value in values if value is not None]
    return [secret for secret in [*found, urlsplit(s.redis_url or "").password or ""] if secret]


def scrub(text: str, secrets: Sequence[str]) -> str:
    """`text` with each secret replaced by "…": the checks never print one, and this makes sure."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "…")
    return text


async def _bounded(name: str, work: Coroutine[Any, Any, list[Check]], timeout_s: float) -> list[Check]:
    try:
        return await asyncio.wait_for(work, timeout_s)
    except TimeoutError:
        return [fail(name, f"no answer within {timeout_s:g} s", "check that the service is up and reachable")]
    except Exception as exc:  # one check that breaks must not hide the others
        return [fail(name, f"the check itself failed ({type(exc).__name__})", "please report it")]


async def _constant(check: Check) -> list[Check]:
    return [check]
