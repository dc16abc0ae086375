"""`/lipsync compare`: the same dub on every configured provider, one thread, one reply per provider as each
finishes, then one summary table."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import redis

from tests.fakes.jogg_api import FakeJogg
from tests.fakes.jogg_api import Outcome as JoggOutcome
from tests.fakes.lipsyncdev_api import FakeLipSyncDev
from tests.fakes.lipsyncdev_api import Outcome as DevOutcome
from tests.fakes.server import wait_until
from tests.fakes.slack_api import FakeSlack
from tests.fakes.sync_api import FakeSync
from tests.fakes.sync_api import Outcome as SyncOutcome
from tests.harness import BotThread
from tests.test_providers import CHANNEL, all_three, ephemeral_text, settle  # noqa: F401 (fixture)

VIDEO = "https://cdn.example.com/talk.mp4"
AUDIO = "https://cdn.example.com/voice-fr.mp3"


def text_of(message: dict[str, Any]) -> str:
    return message.get("text", "") + "\n" + json.dumps(message.get("blocks") or [])


def kinds(messages: list[dict[str, Any]]) -> list[str]:
    return [str((m.get("metadata") or {}).get("event_payload", {}).get("kind")) for m in messages]


def test_compare_runs_every_provider_and_sums_them_up_in_one_thread(
    all_three: Callable[..., BotThread],  # noqa: F811
    slack: FakeSlack,
    jogg: FakeJogg,
    sync_api: FakeSync,
    lipsyncdev_api: FakeLipSyncDev,
    redis_client: redis.Redis,
) -> None:
    jogg.default_outcome = JoggOutcome("success", polls=1, duration_seconds=12.5)
    sync_api.default_outcome = SyncOutcome("success", polls=3, duration=12.5)
    lipsyncdev_api.default_outcome = DevOutcome("failed", polls=2, error_message="No face found")
    bot = all_three()

    response = bot.command(f"compare {VIDEO} {AUDIO}", response_url=slack.response_url("r"))

    assert response.status_code == 200 and response.text == ""
    parent = wait_until(lambda: (slack.messages(CHANNEL) or [None])[0])
    thread = wait_until(
        lambda: r if len(r := slack.replies(CHANNEL, parent["ts"])) >= 4 else None, timeout=40
    )
    settle(redis_client)
    assert len(slack.messages(CHANNEL)) == 1  # one message for the whole compare
    thread = slack.replies(CHANNEL, parent["ts"])
    assert sorted(kinds(thread)) == ["reply", "reply", "reply", "summary"]
    assert kinds(thread)[-1] == "summary"  # the table comes after every reply
    # Each provider got the dub once, with the same inputs.
    assert len(jogg.creates) == 1 and sync_api.generation_count == 1 and len(lipsyncdev_api.jobs) == 1
    assert jogg.creates[0]["body"]["video_url"] == VIDEO
    [generation] = sync_api.generations.values()
    assert [i.get("url") for i in generation.input] == [VIDEO, AUDIO]

    replies = "\n".join(text_of(m) for m in thread[:-1])
    assert "0.10 credits" in replies and "$0.625" in replies and "No face found" in replies
    summary = text_of(thread[-1])
    for label in ("JoggAI", "sync.so", "LipSync.dev"):
        assert label in summary
    assert "0.10 credits" in summary and "$0.625" in summary and "lipsync-2" in summary
    assert "failed" in summary
    assert "Done" in slack.message(CHANNEL, parent["ts"])["text"]  # the compare's message says it is over


def test_compare_refuses_a_playback_some_provider_cannot_do(
    all_three: Callable[..., BotThread],  # noqa: F811
    slack: FakeSlack,
    redis_client: redis.Redis,
) -> None:
    bot = all_three()
    text = ephemeral_text(bot.command(f"compare {VIDEO} {AUDIO} normal_reverse", response_url=""))
    assert "LipSync.dev cannot do `normal_reverse` playback" in text and "Nothing was submitted" in text
    assert redis_client.keys("{lip}:job:*") == [] and slack.messages(CHANNEL) == []


def test_compare_needs_two_providers(
    start_bot: Callable[..., BotThread], slack: FakeSlack, redis_client: redis.Redis
) -> None:
    bot = start_bot()  # JoggAI only
    text = ephemeral_text(bot.command(f"compare {VIDEO} {AUDIO}", response_url=""))
    assert "at least two providers" in text and "SYNC_API_KEY" in text
    assert redis_client.keys("{lip}:job:*") == []


def test_a_compare_delivered_twice_runs_once(
    all_three: Callable[..., BotThread],  # noqa: F811
    slack: FakeSlack,
    jogg: FakeJogg,
    sync_api: FakeSync,
    lipsyncdev_api: FakeLipSyncDev,
    redis_client: redis.Redis,
) -> None:
    bot = all_three()
    for _ in range(2):  # the same trigger_id: a redelivered request
        bot.command(f"compare {VIDEO} {AUDIO}", response_url="", trigger_id="trig-compare-1")
    parent = wait_until(lambda: (slack.messages(CHANNEL) or [None])[0])
    wait_until(lambda: len(slack.replies(CHANNEL, parent["ts"])) >= 4, timeout=40)
    settle(redis_client)
    assert len(slack.messages(CHANNEL)) == 1 and len(slack.replies(CHANNEL, parent["ts"])) == 4
    assert len(jogg.creates) == 1 and sync_api.generation_count == 1 and len(lipsyncdev_api.jobs) == 1
    # A trigger_id is only redelivered within seconds: its markers go after an hour, not a day.
    markers = redis_client.keys("{lip}:seen:cmd:*")
    assert len(markers) == 3 and all(0 < redis_client.ttl(key) <= 3600 for key in markers)


def test_a_compare_whose_first_provider_is_over_budget_stops_and_says_why(
    all_three: Callable[..., BotThread],  # noqa: F811
    slack: FakeSlack,
    jogg: FakeJogg,
    sync_api: FakeSync,
    lipsyncdev_api: FakeLipSyncDev,
    redis_client: redis.Redis,
) -> None:
    slack.add_user("U0ADMIN", name="ada", is_admin=True)
    bot = all_three()
    # The channel has no JoggAI credits this month; sync.so and LipSync.dev have no budget.
    bot.command(f"budget <#{CHANNEL}|general> 0 jogg", response_url="", user_id="U0ADMIN")

    bot.command(f"compare {VIDEO} {AUDIO}", response_url=slack.response_url("r"))

    answers = wait_until(lambda: r if len(r := slack.responses.get("r", [])) >= 3 else None, timeout=30)
    settle(redis_client)
    texts = [text_of(a) for a in answers]
    assert sum("monthly budget" in t for t in texts) == 1  # JoggAI's refusal
    assert sum("The compare stopped before I sent it to" in t for t in texts) == 2
    assert all("Nothing was charged" in t or "nothing was charged" in t.lower() for t in texts)
    assert slack.messages(CHANNEL) == []
    assert jogg.creates == [] and sync_api.generation_count == 0 and not lipsyncdev_api.jobs
