"""Slack misbehaving while the bot answers: every job still gets exactly one reply."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from tests.fakes.jogg_api import FakeJogg
from tests.fakes.server import wait_until
from tests.fakes.slack_api import FakeSlack, Fault
from tests.harness import BotThread

CHANNEL = "C0GENERAL"
INPUTS = "https://cdn.example.com/a.mp4 https://cdn.example.com/b.mp3"


def run_one_job(bot: BotThread, slack: FakeSlack, redis_client: redis.Redis) -> dict[str, Any]:
    bot.command(INPUTS, response_url=slack.response_url("r"))
    parent = wait_until(lambda: (slack.messages(CHANNEL) or [None])[0])
    wait_until(
        lambda: redis_client.zcard("{lip}:send") == 0 and slack.replies(CHANNEL, parent["ts"]), timeout=30
    )
    wait_until(lambda: "Done" in slack.message(CHANNEL, parent["ts"])["text"], timeout=10)
    return parent


@pytest.mark.parametrize(
    "fault",
    [
        Fault("ratelimit", retry_after=1),  # nothing posted: wait Retry-After, post once
        Fault("http", status=503),  # nothing posted, but the bot cannot know: look, then post
        Fault("error", error="fatal_error", store=True),  # posted although Slack said it failed
        Fault("http", status=500, store=True),  # stored, then a 5xx
    ],
    ids=["429", "503-not-stored", "fatal_error-stored", "500-stored"],
)
def test_reply_lands_exactly_once_whatever_slack_answers(
    bot: BotThread, slack: FakeSlack, jogg: FakeJogg, redis_client: redis.Redis, fault: Fault
) -> None:
    # Let the parent post through, then hit the reply with the fault.
    slack.inject("chat.postMessage", Fault("delay", delay=0.0, store=True))
    slack.inject("chat.postMessage", fault)
    parent = run_one_job(bot, slack, redis_client)
    assert len(slack.messages(CHANNEL)) == 1
    assert len(slack.replies(CHANNEL, parent["ts"])) == 1
    if fault.kind != "ratelimit":
        assert slack.calls_to("conversations.replies")  # it looked before posting again


def test_parent_stored_despite_an_error_is_not_posted_twice(
    bot: BotThread, slack: FakeSlack, jogg: FakeJogg, redis_client: redis.Redis
) -> None:
    slack.inject("chat.postMessage", Fault("error", error="fatal_error", store=True))
    parent = run_one_job(bot, slack, redis_client)
    assert len(slack.messages(CHANNEL)) == 1
    assert slack.calls_to("conversations.history")
    assert len(slack.replies(CHANNEL, parent["ts"])) == 1
    assert len(jogg.creates) == 1


def test_an_unclear_parent_post_is_found_in_a_busy_channel(
    bot: BotThread, slack: FakeSlack, jogg: FakeJogg, redis_client: redis.Redis
) -> None:
    # Slack stores the job's message but answers fatal_error; by the time the bot looks, 450 people's
    # messages (more than two pages of history) have followed it.
    slack.chatter_after_posts = 450
    slack.inject("chat.postMessage", Fault("error", error="fatal_error", store=True))
    parent = run_one_job(bot, slack, redis_client)
    ours = [m for m in slack.messages(CHANNEL) if m.get("user") == slack.bot_user_id]
    assert len(ours) == 1, "the job's message was posted twice"
    assert len(slack.calls_to("conversations.history")) >= 3  # it paged back to the post
    assert len(slack.replies(CHANNEL, parent["ts"])) == 1


@pytest.mark.parametrize("unclear", ["parent", "reply"])
def test_exactly_once_in_a_public_channel_the_bot_has_not_joined(
    bot: BotThread, slack: FakeSlack, jogg: FakeJogg, redis_client: redis.Redis, unclear: str
) -> None:
    # chat:write.public lets the bot post there, but reading history needs membership.
    slack.not_joined.add(CHANNEL)
    if unclear == "reply":
        slack.inject("chat.postMessage", Fault("delay", delay=0.0, store=True))
    slack.inject("chat.postMessage", Fault("error", error="fatal_error", store=True))
    parent = run_one_job(bot, slack, redis_client)
    assert len(slack.messages(CHANNEL)) == 1
    assert len(slack.replies(CHANNEL, parent["ts"])) == 1
    assert slack.joined == [CHANNEL]  # it joined to look, once
