"""Never lose a job, never answer twice: real bot processes, killed at random, sharing one real Redis."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import redis

from bot.programs.embedded_redis import EmbeddedRedis
from tests.fakes.jogg_api import FakeJogg, Outcome
from tests.fakes.jogg_api import Fault as JoggFault
from tests.fakes.server import wait_until
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_api import Fault as SlackFault
from tests.harness import BotProcess, BotThread, bot_env, free_port

CHANNEL = "C0GENERAL"


def video(n: int) -> str:
    return f"https://cdn.example.com/talk-{n:03d}.mp4"


def send_commands(bots: list[BotProcess], count: int, slack: FakeSlack) -> None:
    for n in range(count):
        response = bots[n % len(bots)].command(
            f"{video(n)} https://cdn.example.com/voice.mp3", response_url=slack.response_url(f"r{n}")
        )
        assert response.status_code == 200


def replies_per_job(slack: FakeSlack) -> dict[str, int]:
    """Each job has one message in the channel; count the replies in its thread."""
    return {parent["ts"]: len(slack.replies(CHANNEL, parent["ts"])) for parent in slack.messages(CHANNEL)}


def all_answered(slack: FakeSlack, jobs: int) -> bool:
    counts = replies_per_job(slack)
    return len(counts) == jobs and all(n >= 1 for n in counts.values())


def assert_exactly_once(slack: FakeSlack, jogg: FakeJogg, redis_client: redis.Redis, jobs: int) -> None:
    wait_until(
        lambda: all(redis_client.zcard(f"{{lip}}:{lane}") == 0 for lane in ("submit", "poll", "send")),
        timeout=60,
    )
    parents = slack.messages(CHANNEL)
    assert len(parents) == jobs, f"{len(parents)} job messages for {jobs} jobs"
    assert Counter(replies_per_job(slack).values()) == {1: jobs}, replies_per_job(slack)
    created = Counter(c["body"]["video_url"] for c in jogg.creates)
    assert len(created) == jobs and set(created.values()) == {1}, "a job paid for two tasks"


def test_processes_killed_at_random_moments_lose_nothing_and_answer_once(
    slack: FakeSlack, jogg: FakeJogg, redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    jobs, rng = 36, random.Random(7)
    for n in range(jobs):  # renders finishing over the next ~10 s, so kills land in every phase
        jogg.outcome_for_video[video(n)] = Outcome(
            "success", polls=rng.randint(0, 40), duration_seconds=n + 1
        )
    for _ in range(jobs // 3):  # creates that take a while: a kill there must not pay twice
        jogg.inject("create", JoggFault("delay", delay=0.6, after=True))
    for _ in range(3 * jobs):  # Slack stores a post, then is slow to answer: kills leave "maybe posted"
        slack.inject("chat.postMessage", SlackFault("delay", delay=rng.uniform(0, 0.4), store=True))
    env = {"REDIS_URL": redis_url, "JOGG_POSTS_PER_MINUTE": "1000", "HTTP_TIMEOUT_SECONDS": "2"}
    bots = [BotProcess(bot_env(slack, jogg, tmp_path, **env), tmp_path, f"bot{i}").start() for i in range(2)]
    try:
        send_commands(bots, jobs, slack)
        # A fixed number of kills, each once the restarted bot is up again: on a slow machine they simply
        # take longer, and they stop early only when there is nothing left to interrupt.
        for _ in range(6):
            if all_answered(slack, jobs):
                break
            time.sleep(rng.uniform(0.3, 1.2))
            victim = rng.choice(bots)
            victim.kill()
            victim.start()
        wait_until(lambda: all_answered(slack, jobs), timeout=90)
        assert_exactly_once(slack, jogg, redis_client, jobs)
    finally:
        for bot in bots:
            bot.stop()


def test_three_processes_share_the_polling_and_answer_each_job_once(
    slack: FakeSlack, jogg: FakeJogg, redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    jobs = 45
    jogg.default_outcome = Outcome("success", polls=15, duration_seconds=10)
    env = {"REDIS_URL": redis_url, "JOGG_POSTS_PER_MINUTE": "1000"}
    bots = [BotProcess(bot_env(slack, jogg, tmp_path, **env), tmp_path, f"bot{i}").start() for i in range(3)]
    try:
        send_commands(bots[:1], jobs, slack)  # all arrive at one process; the work still spreads
        wait_until(lambda: all_answered(slack, jobs), timeout=60)
        assert_exactly_once(slack, jogg, redis_client, jobs)
        # Every process takes part, and the polls spread beyond one process. Which process polls how much
        # is the claims' race: the one that took every command is busy submitting them, and on a slow
        # machine it may poll none (CI once saw polls per process [0, 455, 265]).
        steps = [bot.health()["steps_done_here"] for bot in bots]
        assert all(sum(done.values()) > 0 for done in steps), f"steps per process: {steps}"
        polls = [done.get("poll", 0) for done in steps]
        assert sum(n > 0 for n in polls) >= 2, f"polls per process: {polls}"
    finally:
        for bot in bots:
            bot.stop()


def test_redis_restarting_mid_run_loses_no_job(
    start_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg, tmp_path: Path
) -> None:
    jobs = 8
    own = EmbeddedRedis(tmp_path / "redis", port=free_port()).start()
    try:
        jogg.default_outcome = Outcome("success", polls=25, duration_seconds=5)
        bot = start_bot(redis_url=own.url, jogg_posts_per_minute=1000)
        for n in range(jobs):
            bot.command(f"{video(n)} https://cdn.example.com/v.mp3", response_url=slack.response_url(f"r{n}"))
        wait_until(lambda: len(jogg.creates) == jobs)
        time.sleep(1.5)  # past appendfsync everysec, so the jobs themselves are on disk
        own.kill()  # SIGKILL: a crash, not a clean shutdown
        wait_until(lambda: httpx.get(f"{bot.url}/healthz", timeout=5).status_code == 503)
        refused = bot.command(
            f"{video(99)} https://cdn.example.com/v.mp3", response_url=slack.response_url("x")
        )
        assert refused.status_code == 200 and "try again" in refused.json()["text"]
        time.sleep(1)
        own.start()  # same port, same append-only file
        wait_until(lambda: httpx.get(f"{bot.url}/healthz", timeout=5).status_code == 200, timeout=20)
        wait_until(lambda: all_answered(slack, jobs), timeout=60)
        assert_exactly_once(slack, jogg, redis.Redis.from_url(own.url), jobs)
    finally:
        own.stop()


def test_timeouts_after_the_work_was_done_cause_no_duplicates(
    start_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg, redis_client: redis.Redis
) -> None:
    # JoggAI creates the task but answers after our timeout; Slack stores the reply but answers late.
    jogg.inject("create", JoggFault("delay", delay=2.5, after=True))
    slack.inject("chat.postMessage", SlackFault("delay", delay=0, store=True))  # the parent: fine
    slack.inject("chat.postMessage", SlackFault("delay", delay=2.5, store=True))  # the reply: stalls
    bot = start_bot(http_timeout_seconds=1)
    bot.command(f"{video(1)} https://cdn.example.com/v.mp3", response_url=slack.response_url("r"))
    wait_until(lambda: all_answered(slack, 1), timeout=40)
    assert_exactly_once(slack, jogg, redis_client, 1)
    assert jogg.lookups  # the lost create answer was recovered by looking the task up
    assert slack.calls_to("conversations.replies")  # the lost post answer by looking in the thread
