"""LipSync.dev's two published APIs end to end: the bot asks at start which one answers (and says so),
then speaks it; version B's jobs carry the bot's webhook, whose delivery brings the reply forward."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis

from bot.providers.lipsyncdev import LipSyncDevProvider
from tests.fakes.lipsyncdev_api import FakeLipSyncDev, Outcome
from tests.fakes.server import wait_until
from tests.fakes.slack_api import FakeSlack
from tests.harness import BotThread, free_port

CHANNEL = "C0GENERAL"
VIDEO = "https://cdn.example.com/talk.mp4"
AUDIO = "https://cdn.example.com/voice-fr.mp3"


def reply_text(slack: FakeSlack, timeout: float = 30) -> str:
    parent = wait_until(lambda: (slack.messages(CHANNEL) or [None])[0], timeout=10)
    [reply] = wait_until(lambda: slack.replies(CHANNEL, parent["ts"]) or None, timeout=timeout)
    return str(reply.get("text", "")) + str(reply.get("blocks", ""))


def test_a_version_b_service_is_found_at_start_and_its_webhook_brings_the_reply(
    start_bot: Callable[..., BotThread],
    slack: FakeSlack,
    redis_client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    with FakeLipSyncDev(versions=("b",)) as service:
        service.default_outcome = Outcome("never", credits=7)
        port = free_port()
        values: dict[str, Any] = {
            "port": port,
            "public_url": f"http://127.0.0.1:{port}",
            "jogg_api_key": None,
            "lipsyncdev_api_key": service.api_key,
            "lipsyncdev_api_url": service.api_url,
            # Polls every 10 min: without the webhook the reply would wait for the next poll.
            "poll_interval_seconds": 600,
            "poll_max_interval_seconds": 600,
            "job_timeout_seconds": 3600,
        }
        bot = start_bot(**values)
        provider = bot.bot.providers["lipsyncdev"]
        assert isinstance(provider, LipSyncDevProvider) and provider.version == "b"
        assert any(
            "LipSync.dev: API version B (X-API-Key, /v1/lipsync/generate) answered at 127.0.0.1"
            in record.getMessage()
            for record in caplog.records
        )

        bot.command(f"{VIDEO} {AUDIO}", response_url=slack.response_url("r"))
        [job] = wait_until(lambda: list(service.jobs.values()) or None)
        assert job.version == "b" and job.webhook_url == f"{bot.url}/webhooks/lipsyncdev"
        wait_until(lambda: redis_client.zcard("{lip}:poll") == 1)  # the job waits for its next poll
        service.finish(job.job_id, Outcome("success", credits=7))

        text = reply_text(slack)
        [delivery] = wait_until(lambda: list(service.webhooks_sent) or None)
        assert delivery.status == 200 and delivery.body["jobId"] == job.job_id
    assert service.output_url(job.job_id) in text and "7 LipSync.dev credits" in text


def test_unsigned_deliveries_for_one_job_make_one_poll_not_a_stream(
    start_bot: Callable[..., BotThread], slack: FakeSlack, redis_client: redis.Redis
) -> None:
    # Version B documents no webhook signature, so anyone may post one: many deliveries about one job
    # (each a little different, so none is a replay) must not become many polls against its rate limit.
    with FakeLipSyncDev(versions=("b",)) as service:
        service.default_outcome = Outcome("never")
        port = free_port()
        bot = start_bot(
            port=port,
            public_url=f"http://127.0.0.1:{port}",
            jogg_api_key=None,
            lipsyncdev_api_key=service.api_key,
            lipsyncdev_api_url=service.api_url,
            poll_interval_seconds=600,
            poll_max_interval_seconds=600,
            job_timeout_seconds=3600,
        )
        bot.command(f"{VIDEO} {AUDIO}", response_url=slack.response_url("r"))
        [job] = wait_until(lambda: list(service.jobs.values()) or None)
        wait_until(lambda: redis_client.zcard("{lip}:poll") == 1)

        answers = [
            httpx.post(f"{bot.url}/webhooks/lipsyncdev", json={"jobId": job.job_id, "n": n}).status_code
            for n in range(5)
        ]
        assert answers == [200, 202, 202, 202, 202]
        wait_until(lambda: service.jobs[job.job_id].polls == 1, message="the one poll the first made due")
