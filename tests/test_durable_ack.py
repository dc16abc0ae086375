"""Durable before acknowledged: whatever Slack saw acknowledged survives a kill -9 right after the ack.

Slack never re-sends an acknowledged slash command, event or shortcut, so a bot that dies between its ack and
storing the work loses it in silence. These tests kill `python -m bot` (SIGKILL) the moment an ack arrives,
start it again, and check that every acknowledged request is still carried out.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import redis

from tests.fakes.jogg_api import FakeJogg
from tests.fakes.server import wait_until
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_api import Fault as SlackFault
from tests.harness import BotProcess, bot_env, send_command
from tests.payloads import event_callback, message_shortcut

CHANNEL = "C0GENERAL"
MEDIA = "C0MEDIA"


def video(n: int) -> str:
    return f"https://cdn.example.com/acked-{n:03d}.mp4"


def stored_videos(redis_client: redis.Redis) -> set[str]:
    found = set()
    for key in redis_client.scan_iter("{lip}:job:*"):
        url = redis_client.hget(key, "video_url")
        if url:
            found.add(url)
    return found


def test_commands_acknowledged_before_a_kill_are_all_carried_out(
    slack: FakeSlack, jogg: FakeJogg, redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    bot = BotProcess(bot_env(slack, jogg, tmp_path, REDIS_URL=redis_url), tmp_path).start()
    acked: list[int] = []
    first_ack = threading.Event()
    lock = threading.Lock()

    def send(n: int) -> None:
        try:
            response = send_command(
                bot.url,
                f"{video(n)} https://cdn.example.com/voice.mp3",
                response_url=slack.response_url(f"r{n}"),
            )
        except httpx.HTTPError:
            return  # the bot died before answering: Slack would tell the user it failed
        if response.status_code == 200:
            with lock:
                acked.append(n)
            first_ack.set()

    try:
        with ThreadPoolExecutor(max_workers=40) as pool:
            futures = [pool.submit(send, n) for n in range(40)]
            assert first_ack.wait(timeout=30), "no command was acknowledged"
            bot.kill()  # the moment the first ack arrives, as an OOM kill or a dying host would
            for future in futures:
                future.result()
        assert acked
        # Every acknowledged command is already stored...
        missing = {video(n) for n in acked} - stored_videos(redis_client)
        assert not missing, f"{len(missing)} of {len(acked)} acknowledged commands were lost"
        # ...and the restarted bot posts each one's message in the channel.
        bot.start()

        def unposted() -> set[str]:
            posted = json.dumps([m.get("blocks") for m in slack.messages(CHANNEL)])
            return {video(n) for n in acked if video(n) not in posted}

        wait_until(lambda: not unposted(), timeout=60, message="every acknowledged command posted")
    finally:
        bot.stop()


def test_a_file_share_acknowledged_before_a_kill_is_still_dubbed(
    slack: FakeSlack, jogg: FakeJogg, redis_url: str, tmp_path: Path
) -> None:
    video_file = slack.add_file("FVID", "talk.mp4", "video/mp4", "mp4", b"v" * 50_000)
    audio_file = slack.add_file("FAUD", "voice.mp3", "audio/mpeg", "mp3", b"a" * 20_000)
    parent = slack.add_message(MEDIA, "the talk", files=[video_file])
    # The audio arrives as a thread reply, so pairing has to read the thread: that read hangs, and the bot is
    # killed while it does, after Slack got its ack.
    reply = slack.add_message(MEDIA, "", thread_ts=parent["ts"], files=[audio_file])
    slack.inject("conversations.replies", SlackFault("delay", delay=30))
    bot = BotProcess(bot_env(slack, jogg, tmp_path, REDIS_URL=redis_url), tmp_path).start()
    try:
        event = {**reply, "channel": MEDIA, "channel_type": "channel", "event_ts": reply["ts"]}
        assert bot.event(event_callback(event)).status_code == 200
        wait_until(lambda: slack.calls_to("conversations.replies"), timeout=10)
        bot.kill()

        bot.start()
        answer = wait_until(lambda: (slack.replies(MEDIA, parent["ts"])[1:] or [None])[0], timeout=60)
        assert "talk.mp4" in answer["text"] + str(answer.get("blocks"))
        assert len(jogg.creates) == 1
    finally:
        bot.stop()


def test_a_shortcut_acknowledged_before_a_kill_is_still_carried_out(
    slack: FakeSlack, jogg: FakeJogg, redis_url: str, tmp_path: Path
) -> None:
    video_file = slack.add_file("FVID2", "pitch.mp4", "video/mp4", "mp4", b"v" * 50_000)
    audio_file = slack.add_file("FAUD2", "voix.mp3", "audio/mpeg", "mp3", b"a" * 20_000)
    parent = slack.add_message(MEDIA, "", files=[video_file])
    reply = slack.add_message(MEDIA, "", thread_ts=parent["ts"], files=[audio_file])
    slack.inject("conversations.replies", SlackFault("delay", delay=30))
    bot = BotProcess(bot_env(slack, jogg, tmp_path, REDIS_URL=redis_url), tmp_path).start()
    try:
        payload = message_shortcut(
            {**reply, "channel": MEDIA}, channel_id=MEDIA, response_url=slack.response_url("sc")
        )
        assert bot.shortcut(payload).status_code == 200
        wait_until(lambda: slack.calls_to("conversations.replies"), timeout=10)
        bot.kill()

        bot.start()
        answer = wait_until(lambda: (slack.replies(MEDIA, parent["ts"])[1:] or [None])[0], timeout=60)
        assert "pitch.mp4" in answer["text"] + str(answer.get("blocks"))
        [private] = wait_until(lambda: slack.responses.get("sc"), timeout=30)
        assert "Started" in private["text"]
        assert len(jogg.creates) == 1
    finally:
        bot.stop()
