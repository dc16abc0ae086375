"""GET /metrics: what a scrape shows after jobs succeed and fail, Slack refuses a call and webhooks arrive.

Counters belong to the process (every bot of a test run shares them), so each test compares a scrape
after with one before."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.jogg_api import FakeJogg, Outcome
from tests.fakes.server import wait_until
from tests.fakes.slack_api import FakeSlack, Fault
from tests.harness import BotThread
from tests.test_file_shares import settle

CHANNEL = "C0GENERAL"
AUDIO = "https://cdn.example.com/voice.mp3"


def scrape(bot: BotThread) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(f"{bot.url}/metrics", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def delta(before: dict, after: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_a_scrape_counts_jobs_costs_errors_webhooks_and_the_queue(
    start_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg, redis_client: redis.Redis
) -> None:
    bot = start_bot(public_url="http://127.0.0.1:9")  # PUBLIC_URL set: the webhook route is served
    before = scrape(bot)

    jogg.default_outcome = Outcome("success", polls=1, duration_seconds=12.5)
    bot.command(f"https://cdn.example.com/a.mp4 {AUDIO}", response_url=slack.response_url("a"))
    wait_until(lambda: len(jogg.creates) == 1)
    jogg.default_outcome = Outcome("failed", polls=1)
    slack.inject("chat.update", Fault("error", error="cant_update_message"))
    bot.command(f"https://cdn.example.com/b.mp4 {AUDIO}", response_url=slack.response_url("b"))
    wait_until(
        lambda: len([m for m in slack.messages(CHANNEL) if slack.replies(CHANNEL, m["ts"])]) == 2, timeout=30
    )
    settle(redis_client)
    assert httpx.post(f"{bot.url}/webhooks/jogg", content=b"{}").status_code == 404  # JoggAI takes none
    after = scrape(bot)

    assert delta(before, after, "lipsync_jobs_finished_total", provider="jogg", status="succeeded") == 1
    assert delta(before, after, "lipsync_jobs_finished_total", provider="jogg", status="failed") == 1
    assert delta(before, after, "lipsync_cost_total", provider="jogg", unit="credits") == pytest.approx(0.1)
    assert (
        delta(before, after, "lipsync_slack_errors_total", method="chat.update", error="cant_update_message")
        == 1
    )
    assert delta(before, after, "lipsync_webhook_deliveries_total", provider="jogg", outcome="unknown") == 1
    assert (
        delta(before, after, "lipsync_provider_request_seconds_count", provider="JoggAI", method="POST") >= 2
    )
    for lane in ("submit", "poll", "send"):
        assert after[("lipsync_queue_depth", (("lane", lane),))] == 0
