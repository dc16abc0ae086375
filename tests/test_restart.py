"""A bot killed mid-job (SIGKILL, as a crash or an OOM kill would) and started again still answers once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes.jogg_api import FakeJogg, Outcome
from tests.fakes.jogg_api import Fault as JoggFault
from tests.fakes.server import wait_until
from tests.fakes.slack_api import FakeSlack
from tests.harness import BotProcess, bot_env
from tests.payloads import event_callback

CHANNEL = "C0GENERAL"


@pytest.mark.parametrize("redis_mode", ["REDIS_URL", "embedded"])
def test_bot_killed_mid_job_still_delivers_exactly_one_reply(
    slack: FakeSlack, jogg: FakeJogg, redis_url: str, tmp_path: Path, redis_mode: str
) -> None:
    env = bot_env(slack, jogg, tmp_path, REDIS_URL=redis_url if redis_mode == "REDIS_URL" else "")
    jogg.default_outcome = Outcome("never")
    bot = BotProcess(env, tmp_path).start()
    try:
        text = "https://cdn.example.com/a.mp4 https://cdn.example.com/b.mp3"
        assert bot.command(text, response_url=slack.response_url("r")).status_code == 200
        task = wait_until(lambda: next(iter(jogg.tasks.values()), None))
        wait_until(lambda: jogg.polls.get(task.task_id, 0) >= 2)
        bot.kill()  # mid-job: submitted, being polled, no reply yet

        jogg.finish(task.task_id, Outcome("success", duration_seconds=30))
        bot.start()
        parent = slack.messages(CHANNEL)[0]
        reply = wait_until(lambda: (slack.replies(CHANNEL, parent["ts"]) or [None])[0], timeout=30)
        assert jogg.result_url(task.task_id) in reply["text"]
        assert "0.24 credits" in reply["text"]
        wait_until(lambda: "Done" in slack.message(CHANNEL, parent["ts"])["text"])
        assert len(slack.messages(CHANNEL)) == 1
        assert len(slack.replies(CHANNEL, parent["ts"])) == 1
        assert len(jogg.creates) == 1
    finally:
        bot.stop()


def test_bot_killed_mid_upload_starts_the_upload_again_and_answers_once(
    slack: FakeSlack, jogg: FakeJogg, redis_url: str, tmp_path: Path
) -> None:
    files = [
        slack.add_file("FVID", "talk.mp4", "video/mp4", "mp4", b"v" * 400_000),
        slack.add_file("FAUD", "voice.mp3", "audio/mpeg", "mp3", b"a" * 90_000),
    ]
    shared = slack.add_message(CHANNEL, "", files=files)
    event = {**shared, "channel_type": "channel", "event_ts": shared["ts"]}
    jogg.inject("put", JoggFault("delay", delay=30))  # the first PUT hangs: the bot dies during it
    bot = BotProcess(bot_env(slack, jogg, tmp_path, REDIS_URL=redis_url), tmp_path).start()
    try:
        assert bot.event(event_callback(event)).status_code == 200
        wait_until(lambda: len(jogg.assets) >= 1, timeout=10)
        bot.kill()

        bot.start()
        reply = wait_until(lambda: (slack.replies(CHANNEL, shared["ts"]) or [None])[0], timeout=30)
        assert "talk.mp4" in reply["text"] + str(reply["blocks"])
        assert len(slack.replies(CHANNEL, shared["ts"])) == 1
        assert len(jogg.creates) == 1
        # Both files arrived whole; the video's interrupted upload was simply done again.
        assert sorted(u.size for u in jogg.uploads) == [90_000, 400_000]
    finally:
        bot.stop()
