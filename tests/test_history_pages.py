"""Reading history as a commercially distributed app outside the Marketplace: `conversations.history` and
`conversations.replies` at Tier 1 (one call a minute) and at most 15 messages a page. The bot still finds
the other file of a share in a long thread, and its own post after an unclear answer in a busy channel.

The fake Slack's rate-limit clock runs a minute per call here, so Slack's "one a minute" costs the test
about a second (its Retry-After) instead of a minute.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import redis

from tests.fakes.jogg_api import FakeJogg
from tests.fakes.server import wait_until
from tests.fakes.slack_api import TIER_1, FakeSlack, Fault
from tests.harness import BotThread
from tests.payloads import event_callback
from tests.test_file_shares import CHANNEL, creates, share
from tests.test_providers import settle

PAGE = 15  # Slack's maximum and default `limit` for such apps
COMMAND_CHANNEL = "C0GENERAL"  # where tests.payloads sends /lipsync from


VIDEO = "https://cdn.example.com/talk.mp4"
AUDIO = "https://cdn.example.com/voice.mp3"


def bot_posts(slack: FakeSlack) -> list[dict[str, Any]]:
    return [m for m in slack.messages(COMMAND_CHANNEL) if m.get("user") == slack.bot_user_id]


def tier_1_and_short_pages(slack: FakeSlack, method: str) -> None:
    slack.max_page_size = PAGE
    slack.tier_limits = {method: TIER_1}
    minutes = itertools.count(0, 59)  # each call comes 59 s after the last, as the fake's window sees it
    slack.clock = lambda: float(next(minutes))


def test_the_other_file_is_found_in_a_long_thread_read_15_at_a_time(
    bot: BotThread, slack: FakeSlack, jogg: FakeJogg
) -> None:
    tier_1_and_short_pages(slack, "conversations.replies")
    video = share(slack, "talk.mp4")
    for n in range(2 * PAGE):
        slack.add_message(CHANNEL, f"what do you think {n}", user="U0BOB", thread_ts=video.ts)
    voice = share(slack, "voice.mp3", thread_ts=video.ts)
    bot.event(event_callback(voice.event()))
    wait_until(lambda: creates(jogg), timeout=20, message="a dub of the thread's video and the voice")
    assert len(creates(jogg)) == 1 and len(jogg.uploads) == 2  # the parent's video and the reply's audio
    assert slack.ratelimited_calls["conversations.replies"] >= 1  # it met Tier 1 and waited it out


def test_an_unclear_post_is_found_in_a_busy_channel_read_15_at_a_time(
    start_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg, redis_client: redis.Redis
) -> None:
    tier_1_and_short_pages(slack, "conversations.history")
    slack.chatter_after_posts = 2 * PAGE  # the job's message is on the third page, newest first
    slack.inject("chat.postMessage", Fault("http", status=500, store=True))  # posted; the answer lost
    bot = start_bot()
    bot.command(f"{VIDEO} {AUDIO}", response_url=slack.response_url("r"))
    [own] = wait_until(lambda: bot_posts(slack) or None, timeout=10)
    wait_until(lambda: slack.replies(COMMAND_CHANNEL, own["ts"]) or None, timeout=30, message="the result")
    settle(redis_client)
    assert len(bot_posts(slack)) == 1  # found, not posted twice
    assert slack.ratelimited_calls["conversations.history"] >= 1
