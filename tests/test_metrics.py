"""GET /metrics: served only on the operators' listener (METRICS_PORT on METRICS_HOST), never on PORT; what
a scrape shows after jobs succeed and fail, Slack refuses a call and webhooks arrive.

Counters belong to the process (every bot of a test run shares them), so each test compares a scrape
after with one before."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from bot.settings import Settings, SettingsError
from tests.fakes.jogg_api import FakeJogg, Outcome
from tests.fakes.server import wait_until
from tests.fakes.slack_api import FakeSlack, Fault
from tests.harness import BotThread
from tests.test_file_shares import settle

CHANNEL = "C0GENERAL"
AUDIO = "https://cdn.example.com/voice.mp3"


def metrics_url(bot: BotThread, host: str = "127.0.0.1") -> str:
    return f"http://{host}:{bot.bot.metrics_port}/metrics"


def scrape(bot: BotThread) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(metrics_url(bot), timeout=10)
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
    bot = start_bot(public_url="http://127.0.0.1:9", metrics_port=0)  # PUBLIC_URL set: webhooks served
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


def test_metrics_are_served_to_operators_only_and_never_on_the_public_port(
    start_bot: Callable[..., BotThread],
) -> None:
    # PUBLIC_URL set: PORT is where the internet reaches the bot. Spend, job counts and Slack's error
    # strings must not be readable there.
    bot = start_bot(public_url="http://127.0.0.1:9", metrics_port=0)
    assert httpx.get(f"{bot.url}/metrics", timeout=10).status_code == 404
    assert httpx.get(f"{bot.url}/healthz", timeout=10).status_code == 200  # PORT itself still answers
    assert "lipsync_jobs_finished_total" in httpx.get(metrics_url(bot), timeout=10).text
    # Bound to METRICS_HOST (127.0.0.1 by default) only: another address of this host gets no answer,
    # while PORT (bound to every address) does.
    assert httpx.get(f"http://127.0.0.2:{bot.bot.port}/healthz", timeout=10).status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(metrics_url(bot, host="127.0.0.2"), timeout=10)


def test_without_metrics_port_no_metrics_are_served(start_bot: Callable[..., BotThread]) -> None:
    bot = start_bot()
    assert bot.bot.metrics_port is None
    assert httpx.get(f"{bot.url}/metrics", timeout=10).status_code == 404


def test_metrics_port_must_not_be_the_public_port(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(SettingsError, match="METRICS_PORT"):
        make_settings(port=3000, metrics_port=3000)
    assert make_settings(metrics_port="").metrics_port is None  # METRICS_PORT= in .env: off
