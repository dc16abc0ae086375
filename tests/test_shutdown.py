"""SIGTERM with steps in flight: the stopping process hands its jobs back at once, so another process
carries on within seconds instead of waiting for their leases (LEASE_SECONDS) to run out."""

from __future__ import annotations

import time
from pathlib import Path

import redis

from tests.fakes.jogg_api import FakeJogg, Fault, Outcome
from tests.fakes.server import wait_until
from tests.fakes.slack_api import FakeSlack
from tests.harness import BotProcess, bot_env, free_port

CHANNEL = "C0GENERAL"
AUDIO = "https://cdn.example.com/voice.mp3"
LEASE_SECONDS = 120  # far longer than the test may take: only a hand-back lets the other process in


def test_a_stopped_process_hands_its_polls_to_another_within_seconds(
    slack: FakeSlack, jogg: FakeJogg, redis_url: str, tmp_path: Path
) -> None:
    jogg.default_outcome = Outcome("success", polls=1)
    env = bot_env(slack, jogg, tmp_path, REDIS_URL=redis_url, LEASE_SECONDS=str(LEASE_SECONDS))
    first = BotProcess(env, tmp_path, name="first").start()
    second: BotProcess | None = None
    try:
        for _ in range(3):
            jogg.inject("get", Fault("delay", delay=60))  # the first polls hang: steps stay in flight
        for n in range(3):
            first.command(f"https://cdn.example.com/talk.mp4?n={n} {AUDIO}", response_url="")
        wait_until(lambda: len([r for r in jogg.requests if r.path.startswith("/v2/lip_sync_video/")]) >= 3)
        second = BotProcess({**env, "PORT": str(free_port())}, tmp_path, name="second").start()

        stopped_at = time.monotonic()
        first.stop()  # SIGTERM
        answered = lambda: [m for m in slack.messages(CHANNEL) if slack.replies(CHANNEL, m["ts"])]  # noqa: E731
        wait_until(lambda: len(answered()) == 3, timeout=30)
        assert time.monotonic() - stopped_at < LEASE_SECONDS / 4
        assert redis.Redis.from_url(redis_url).zcard("{lip}:poll") == 0
    finally:
        first.stop()
        if second is not None:
            second.stop()
