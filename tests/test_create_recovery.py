"""Never paid twice: a JoggAI create whose answer was lost is recovered before anything is created again.

JoggAI's lookup by inputs cannot tell "never made" from "still being made", so after an unanswered create the
bot keeps looking until the create has settled (RELIABILITY.md, "The create-recovery rule"). These run the
real bot against the fake JoggAI, whose "late" fault finishes a create after the client has given up.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import redis

from bot.lanes.timing import CREATE_SETTLE_SECONDS
from tests.fakes.jogg_api import FakeJogg, Fault, RecordedRequest
from tests.fakes.server import wait_until
from tests.fakes.slack_api import FakeSlack
from tests.harness import BotThread

CHANNEL = "C0GENERAL"  # where tests/payloads.py sends commands from
COMMAND = "https://cdn.example.com/talk.mp4 https://cdn.example.com/voice-fr.mp3"
HTTP_TIMEOUT_S = 1


def create_requests(jogg: FakeJogg) -> list[RecordedRequest]:
    return [r for r in jogg.requests if r.method == "POST" and r.path == "/v2/create_lip_sync_video"]


def replies(slack: FakeSlack) -> list[dict[str, Any]]:
    """The replies in the threads of the bot's messages in the channel."""
    return [reply for parent in slack.messages(CHANNEL) for reply in slack.replies(CHANNEL, parent["ts"])]


def assert_one_task_and_its_reply(slack: FakeSlack, jogg: FakeJogg) -> None:
    assert len(slack.messages(CHANNEL)) == 1  # the job's message
    assert len(jogg.creates) == 1, f"{len(jogg.creates)} paid tasks for one dub"
    [reply] = replies(slack)
    assert jogg.result_url(jogg.creates[0]["task_id"]) in json.dumps(reply)


def test_a_create_that_lands_after_the_timeout_is_adopted_not_paid_again(
    start_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg
) -> None:
    # The create takes 4 s at JoggAI; we stop waiting after 1 s, and our first lookup comes before 4 s.
    jogg.inject("create", Fault("late", delay=4))
    bot = start_bot(http_timeout_seconds=HTTP_TIMEOUT_S)
    bot.command(COMMAND, response_url=slack.response_url("r"))
    wait_until(lambda: replies(slack) and jogg.late_in_flight == 0, timeout=60)
    assert_one_task_and_its_reply(slack, jogg)
    assert len(create_requests(jogg)) == 1  # the late task was found and adopted: no second create


def test_a_create_that_lands_long_after_the_timeout_is_still_adopted(
    start_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg
) -> None:
    late_s = 8  # eight timeouts late, several lookups in: still well inside the settle window
    assert late_s < CREATE_SETTLE_SECONDS
    jogg.inject("create", Fault("late", delay=late_s))
    bot = start_bot(http_timeout_seconds=HTTP_TIMEOUT_S)
    bot.command(COMMAND, response_url=slack.response_url("r"))
    wait_until(lambda: replies(slack) and jogg.late_in_flight == 0, timeout=90)
    assert_one_task_and_its_reply(slack, jogg)
    assert len(jogg.lookups) >= 2  # it looked, found nothing yet, and looked again


def test_a_create_that_never_landed_is_made_again_once_the_window_has_passed(
    start_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg
) -> None:
    settle_s = 6  # above the floor of 4 HTTP timeouts, so this is the window the bot uses
    jogg.inject("create", Fault("delay", delay=3))  # dropped: the client left before JoggAI got to it
    bot = start_bot(http_timeout_seconds=HTTP_TIMEOUT_S, create_settle_seconds=settle_s)
    bot.command(COMMAND, response_url=slack.response_url("r"))
    wait_until(lambda: replies(slack), timeout=60)
    assert_one_task_and_its_reply(slack, jogg)
    first, second = create_requests(jogg)
    # Not before the window: until then the first create might still have landed.
    assert second.at - first.at >= settle_s - 0.5, f"created again after {second.at - first.at:.1f} s"
    assert len(jogg.lookups) >= 2


def test_lookup_errors_while_a_create_is_in_doubt_never_lead_to_a_create(
    start_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg
) -> None:
    jogg.inject("create", Fault("http", status=502))  # no task made, but the client cannot know that
    jogg.inject("lookup", Fault("http", status=503))
    jogg.inject("lookup", Fault("malformed"))
    bot = start_bot(http_timeout_seconds=HTTP_TIMEOUT_S)  # the default window: 120 s
    bot.command(COMMAND, response_url=slack.response_url("r"))
    # Two failed lookups, then two that found nothing: all within seconds of the create.
    wait_until(lambda: len(jogg.lookups) >= 2, timeout=60)
    assert len(create_requests(jogg)) == 1, "created again while the first create could still land"
    assert jogg.creates == [] and replies(slack) == []


def test_a_job_that_times_out_while_its_create_is_in_doubt_names_the_task_it_paid_for(
    start_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg, redis_client: redis.Redis
) -> None:
    jogg.inject("create", Fault("late", delay=4))
    first = start_bot(http_timeout_seconds=HTTP_TIMEOUT_S)
    first.command(COMMAND, response_url=slack.response_url("r"))

    def create_answer_lost() -> bool:
        return any(redis_client.hget(key, "last_error") for key in redis_client.scan_iter("{lip}:job:*"))

    wait_until(create_answer_lost, timeout=30)
    first.stop()  # down before the task lands: no lookup of the first bot can have seen it
    wait_until(lambda: jogg.late_in_flight == 0, timeout=30)
    # The next bot finds the job past its time (2 s, the task landed 4 s after the command).
    start_bot(http_timeout_seconds=HTTP_TIMEOUT_S, job_timeout_seconds=2)
    wait_until(lambda: replies(slack), timeout=30)
    [reply] = replies(slack)
    [task] = jogg.creates
    assert task["task_id"] in json.dumps(reply)  # the user knows which paid task to look for
    assert "stopped waiting" in json.dumps(reply)
    assert len(create_requests(jogg)) == 1
