"""Shared fixtures: a real Redis server, the fake Slack and provider servers, and the bot itself."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from bot.programs.embedded_redis import EmbeddedRedis
from bot.providers.registry import REGISTRY
from bot.settings import Settings
from tests.fakes.jogg_api import FakeJogg
from tests.fakes.lipsyncdev_api import FakeLipSyncDev
from tests.fakes.slack_api import FakeSlack
from tests.fakes.sync_api import FakeSync
from tests.harness import BotThread, free_port
from tests.payloads import SIGNING_SECRET


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), port=free_port()).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    redis.Redis.from_url(redis_server.url).flushall()
    return redis_server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as server:
        yield server


@pytest.fixture
def jogg() -> Iterator[FakeJogg]:
    with FakeJogg() as server:
        yield server


@pytest.fixture
def sync_api() -> Iterator[FakeSync]:
    with FakeSync(webhook_secret="whsec_test") as server:
        yield server


@pytest.fixture
def lipsyncdev_api() -> Iterator[FakeLipSyncDev]:
    with FakeLipSyncDev() as server:
        yield server


@pytest.fixture
def make_settings(
    redis_url: str, slack: FakeSlack, jogg: FakeJogg, tmp_path: Path
) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "slack_bot_token": slack.bot_token,
            "slack_signing_secret": SIGNING_SECRET,
            "slack_api_url": slack.api_url,
            "jogg_api_key": jogg.api_key,
            "jogg_api_url": jogg.base_url,
            "redis_url": redis_url,
            "data_dir": tmp_path / "data",
            "port": 0,
            "poll_interval_seconds": 0.1,
            "job_timeout_seconds": 30,
            "lease_seconds": 3,
            # Results are uploaded into threads only where a test turns it on (tests/test_job_control.py):
            # elsewhere a thread holds exactly the reply the test looks for.
            "max_result_upload_mb": 0,
            # Bursts of jobs in tests end within seconds; the update budget has its own test and bench.
            "slack_updates_per_minute": 10_000,
            # Test links point at hosts that do not exist (example.com): the link check has its own tests
            # (tests/test_preflight.py, tests/test_money.py), against media servers on 127.0.0.1.
            "preflight": "off",
        }
        values.update(overrides)
        return REGISTRY.load_settings(_env_file=None, **values)

    return make


@pytest.fixture
def start_bot(make_settings: Callable[..., Settings]) -> Iterator[Callable[..., BotThread]]:
    started: list[BotThread] = []

    def start(**overrides: Any) -> BotThread:
        bot = BotThread(make_settings(**overrides)).start()
        started.append(bot)
        return bot

    yield start
    for bot in started:
        bot.stop()


@pytest.fixture
def bot(start_bot: Callable[..., BotThread]) -> BotThread:
    return start_bot()
