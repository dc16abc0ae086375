"""`/lipsync` end to end: a signed request into the real Bolt app, JoggAI and Slack as real test servers."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import redis

from tests.fakes.jogg_api import FakeJogg, Outcome
from tests.fakes.jogg_api import Fault as JoggFault
from tests.fakes.server import wait_until
from tests.fakes.slack_api import FakeSlack
from tests.harness import BotThread
from tests.payloads import form_body, signed_headers, slash_command

CHANNEL = "C0GENERAL"
VIDEO = "https://cdn.example.com/talk.mp4"
AUDIO = "https://cdn.example.com/voice-fr.mp3"


def text_of(message: dict[str, Any]) -> str:
    """Everything a person would read in a message: fallback text plus all block text."""
    return message.get("text", "") + "\n" + json.dumps(message.get("blocks") or [])


def the_parent(slack: FakeSlack) -> dict[str, Any]:
    return wait_until(lambda: (slack.messages(CHANNEL) or [None])[0], timeout=10)


def final_reply(slack: FakeSlack, timeout: float = 15) -> dict[str, Any]:
    parent = the_parent(slack)
    return wait_until(lambda: (slack.replies(CHANNEL, parent["ts"]) or [None])[0], timeout=timeout)


def image_blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for b in message.get("blocks") or [] if b.get("type") == "image"]


def create_requests(jogg: FakeJogg) -> list[Any]:
    return [r for r in jogg.requests if r.method == "POST" and r.path == "/v2/create_lip_sync_video"]


def settle(bot: BotThread, redis_client: redis.Redis, timeout: float = 10) -> None:
    """Wait until no job is waiting in any lane: everything the bot will do has been done."""
    wait_until(
        lambda: all(redis_client.zcard(f"{{lip}}:{lane}") == 0 for lane in ("submit", "poll", "send")),
        timeout=timeout,
    )


# --------------------------------------------------------------------------------------------- success


def test_command_is_dubbed_and_answered_in_the_thread(
    bot: BotThread, slack: FakeSlack, jogg: FakeJogg, redis_client: redis.Redis
) -> None:
    jogg.default_outcome = Outcome("success", polls=2, duration_seconds=12.5)

    response = bot.command(
        f"<{VIDEO}> <{AUDIO}|voice-fr.mp3> normal_reverse", response_url=slack.response_url("r1")
    )

    assert response.status_code == 200
    assert response.text == ""  # acknowledged silently; the job's own message says the rest
    parent = the_parent(slack)
    assert "<@U0ALICE>" in text_of(parent)
    assert VIDEO in text_of(parent) and AUDIO in text_of(parent) and "normal_reverse" in text_of(parent)

    reply = final_reply(slack)
    [task] = jogg.tasks.values()
    assert reply["thread_ts"] == parent["ts"]
    assert [b["image_url"] for b in image_blocks(reply)] == [jogg.cover_url(task.task_id)]
    assert f"<{jogg.result_url(task.task_id)}|" in text_of(reply)
    assert "0.10 credits" in text_of(reply)
    assert "12.5 s" in text_of(reply)

    # The provider got exactly one task, with the unwrapped inputs and the API key.
    [create] = jogg.creates
    assert create["body"] == {"video_url": VIDEO, "audio_url": AUDIO, "playback_type": "normal_reverse"}
    assert {k.lower(): v for k, v in create["headers"].items()}["x-api-key"] == jogg.api_key

    # The parent message went queued → processing → done, by chat.update.
    settle(bot, redis_client)
    statuses = [u.text for u in slack.updates if u.ts == parent["ts"]]
    assert any("Processing" in s for s in statuses)
    assert "Done" in slack.message(CHANNEL, parent["ts"])["text"]
    assert len(slack.messages(CHANNEL)) == 1 and len(slack.replies(CHANNEL, parent["ts"])) == 1


@pytest.mark.parametrize(("seconds", "credits"), [(17.5, "0.14"), (125, "1.00"), (13, "0.11")])
def test_cost_in_the_reply_is_rounded_up_exactly(
    bot: BotThread, slack: FakeSlack, jogg: FakeJogg, seconds: float, credits: str
) -> None:
    jogg.default_outcome = Outcome("success", polls=1, duration_seconds=seconds)
    bot.command(f"{VIDEO} {AUDIO}", response_url=slack.response_url("r"))
    assert f"{credits} credits" in text_of(final_reply(slack))


def test_default_playback_type_is_normal(bot: BotThread, slack: FakeSlack, jogg: FakeJogg) -> None:
    bot.command(f"{VIDEO} {AUDIO}", response_url=slack.response_url("r"))
    final_reply(slack)
    assert jogg.creates[0]["body"]["playback_type"] == "normal"


def test_cover_slack_cannot_fetch_falls_back_to_a_link(
    bot: BotThread, slack: FakeSlack, jogg: FakeJogg
) -> None:
    slack.unfetchable_image_hosts.add("res.jogg.ai")
    bot.command(f"{VIDEO} {AUDIO}", response_url=slack.response_url("r"))
    reply = final_reply(slack)
    [task] = jogg.tasks.values()
    assert image_blocks(reply) == []
    assert jogg.cover_url(task.task_id) in text_of(reply)
    assert jogg.result_url(task.task_id) in text_of(reply)


# --------------------------------------------------------------------------------------------- failures


def test_provider_failure_is_explained_with_a_hint(bot: BotThread, slack: FakeSlack, jogg: FakeJogg) -> None:
    jogg.default_outcome = Outcome(
        "failed", polls=1, error_message="consume retry limit reached: audio duration fetch failed"
    )
    bot.command(f"{VIDEO} {AUDIO}", response_url=slack.response_url("r"))
    reply = final_reply(slack)
    assert "audio duration fetch failed" in text_of(reply)
    assert "could not read the audio" in text_of(reply)
    assert image_blocks(reply) == []
    wait_until(lambda: "Failed" in slack.message(CHANNEL, the_parent(slack)["ts"])["text"])


def test_unreachable_media_failure_hints_at_public_direct_links(
    bot: BotThread, slack: FakeSlack, jogg: FakeJogg
) -> None:
    jogg.default_outcome = Outcome("failed", polls=1, error_message="video download failed: 403 Forbidden")
    bot.command(f"{VIDEO} {AUDIO}", response_url=slack.response_url("r"))
    assert "public and point straight at the media file" in text_of(final_reply(slack))


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (18020, "out of credits"),
        (10105, "API key was refused"),
        (18025, "no API access"),
        (40000, "rejected the request"),
    ],
)
def test_provider_refusal_ends_the_job_with_a_clear_message(
    bot: BotThread, slack: FakeSlack, jogg: FakeJogg, redis_client: redis.Redis, code: int, expected: str
) -> None:
    jogg.inject("create", JoggFault("code", code=code))
    bot.command(f"{VIDEO} {AUDIO}", response_url=slack.response_url("r"))
    assert expected in text_of(final_reply(slack))
    settle(bot, redis_client)
    assert jogg.tasks == {}  # nothing was created, so nothing is polled
    assert len(create_requests(jogg)) == 1  # and it was not retried


def test_transient_provider_faults_are_retried_until_the_task_exists(
    start_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg, redis_client: redis.Redis
) -> None:
    # A short settle window: after the unclear 502 the bot looks until it has passed, then creates.
    bot = start_bot(http_timeout_seconds=1, create_settle_seconds=4)
    jogg.inject("create", JoggFault("http", status=502))
    jogg.inject("create", JoggFault("code", code=50000))
    jogg.inject("create", JoggFault("code", code=429))
    jogg.inject("get", JoggFault("malformed"))
    jogg.inject("get", JoggFault("http", status=503))
    bot.command(f"{VIDEO} {AUDIO}", response_url=slack.response_url("r"))
    reply = final_reply(slack, timeout=40)
    assert "ready" in text_of(reply)
    assert len(jogg.tasks) == 1
    # The 502 left it unclear whether a task was made, so the bot looked before creating again.
    assert len(jogg.lookups) >= 1


def test_job_that_never_finishes_times_out_with_the_task_id(
    start_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg
) -> None:
    jogg.default_outcome = Outcome("never")
    bot = start_bot(job_timeout_seconds=1.5)
    bot.command(f"{VIDEO} {AUDIO}", response_url=slack.response_url("r"))
    reply = final_reply(slack)
    [task] = jogg.tasks.values()
    assert "stopped waiting" in text_of(reply)
    assert task.task_id in text_of(reply)
    wait_until(lambda: "Timed out" in slack.message(CHANNEL, the_parent(slack)["ts"])["text"])


def test_submissions_wait_their_turn_under_the_post_limit(
    start_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg, redis_client: redis.Redis
) -> None:
    jogg.default_outcome = Outcome("never")
    bot = start_bot(jogg_posts_per_minute=2)
    for n in range(3):
        bot.command(f"{VIDEO}?n={n} {AUDIO}", response_url=slack.response_url(f"r{n}"))
    wait_until(lambda: len(jogg.creates) == 2)
    wait_until(lambda: len(slack.messages(CHANNEL)) == 3)  # everyone sees their job queued at once
    time.sleep(1)
    assert len(jogg.creates) == 2
    # The third is not dropped: it is still queued, due when the window frees a slot.
    waiting = redis_client.zrange("{lip}:submit", 0, -1, withscores=True)
    assert len(waiting) == 1
    # It holds the next slot (about a minute out) and is due then, so it asks the limiter only once.
    [(job_id, due_ms)] = waiting
    slot_ms = int(redis_client.hget(f"{{lip}}:job:{job_id}", "post_slot_ms") or 0)
    assert 50_000 < slot_ms - int(redis_client.hget(f"{{lip}}:job:{job_id}", "created_ms") or 0) <= 61_000
    assert abs(due_ms - slot_ms) < 2_000
    assert not [r for r in slack.replies(CHANNEL, slack.messages(CHANNEL)[2]["ts"])]


def test_channel_the_bot_cannot_post_in_gets_a_private_explanation(
    bot: BotThread, slack: FakeSlack, jogg: FakeJogg, redis_client: redis.Redis
) -> None:
    slack.not_in_channel.add("G0PRIVATE")
    bot.command(f"{VIDEO} {AUDIO}", response_url=slack.response_url("priv"), channel_id="G0PRIVATE")
    [response] = wait_until(lambda: slack.responses.get("priv"))
    assert response["response_type"] == "ephemeral"
    assert "/invite" in response["text"]
    settle(bot, redis_client)
    assert jogg.creates == []  # nothing submitted, nothing charged


def test_store_down_gets_try_again_and_changes_nothing(
    start_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg, tmp_path: Any
) -> None:
    from bot.programs.embedded_redis import EmbeddedRedis
    from tests.harness import free_port

    own_redis = EmbeddedRedis(tmp_path / "own-redis", port=free_port()).start()
    bot = start_bot(redis_url=own_redis.url)
    own_redis.kill()
    response = bot.command(f"{VIDEO} {AUDIO}", response_url=slack.response_url("down"))
    # The job could not be stored, so the ack itself says so (Slack shows it to the user privately).
    assert response.status_code == 200
    assert response.json()["response_type"] == "ephemeral" and "try again" in response.json()["text"]
    health = httpx.get(f"{bot.url}/healthz", timeout=10)
    assert health.status_code == 503 and health.json()["status"] == "degraded"
    assert slack.messages(CHANNEL) == [] and jogg.creates == []


# --------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (VIDEO, "audio"),
        ("hello world", "hello"),
        (f"ftp://example.com/a.mp4 {AUDIO}", "ftp"),
        (f"{VIDEO} {AUDIO} sideways", "sideways"),
        (f"{VIDEO} {AUDIO} normal please", "please"),
        (f"{VIDEO} {AUDIO} " + "x" * 3000, "long"),
        (f"http://127.0.0.1/a.mp4 {AUDIO}", "127.0.0.1"),
        (f"http://localhost:8080/a.mp4 {AUDIO}", "localhost"),
        (f"{VIDEO} http://10.1.2.3/voice.mp3", "10.1.2.3"),
        (f"http://169.254.169.254/latest {AUDIO}", "169.254.169.254"),
        (f"http://media.internal/a.mp4 {AUDIO}", "media.internal"),
        (f"http://[::1]/a.mp4 {AUDIO}", "::1"),
        (f"<https://files.slack.com/files-pri/T0-F0/talk.mp4> {AUDIO}", "Slack"),
    ],
)
def test_bad_input_is_refused_privately_and_changes_nothing(
    bot: BotThread, slack: FakeSlack, jogg: FakeJogg, redis_client: redis.Redis, text: str, reason: str
) -> None:
    response = bot.command(text, response_url=slack.response_url("bad"))
    assert response.status_code == 200
    answer = response.json()
    assert answer["response_type"] == "ephemeral"
    assert reason.lower() in answer["text"].lower()
    assert "/lipsync &lt;video_url&gt; &lt;audio_url&gt;" in answer["text"]  # and how to do it right
    time.sleep(0.3)
    assert slack.calls_to("chat.postMessage") == []
    assert jogg.work_requests == []
    assert redis_client.keys("{lip}:job:*") == []


@pytest.mark.parametrize("text", ["", "help", "  HELP  "])
def test_help_shows_usage_privately(bot: BotThread, slack: FakeSlack, jogg: FakeJogg, text: str) -> None:
    answer = bot.command(text, response_url=slack.response_url("h")).json()
    assert answer["response_type"] == "ephemeral"
    assert "normal_reverse_by_audio" in answer["text"] and "Example" in answer["text"]
    assert jogg.work_requests == []


# --------------------------------------------------------------------------------------------- signatures


def _post(bot: BotThread, body: str, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{bot.url}/slack/events", content=body, headers=headers, timeout=10)


def test_forged_signature_is_refused(bot: BotThread, slack: FakeSlack, jogg: FakeJogg) -> None:
    body = form_body(slash_command(f"{VIDEO} {AUDIO}", response_url=slack.response_url("f")))
    response = _post(bot, body, signed_headers(body, secret="not-the-secret"))
    assert response.status_code == 401
    time.sleep(0.3)
    assert jogg.work_requests == [] and slack.calls_to("chat.postMessage") == []


def test_stale_timestamp_is_refused(bot: BotThread, slack: FakeSlack, jogg: FakeJogg) -> None:
    body = form_body(slash_command(f"{VIDEO} {AUDIO}", response_url=slack.response_url("s")))
    response = _post(bot, body, signed_headers(body, timestamp=int(time.time()) - 600))
    assert response.status_code == 401
    time.sleep(0.3)
    assert jogg.work_requests == []


def test_tampered_body_is_refused(bot: BotThread, slack: FakeSlack, jogg: FakeJogg) -> None:
    body = form_body(slash_command(f"{VIDEO} {AUDIO}", response_url=slack.response_url("t")))
    headers = signed_headers(body)
    tampered = body.replace(parse_qs(body)["user_id"][0], "U0MALLORY")
    assert _post(bot, tampered, headers).status_code == 401


def test_the_same_command_delivered_twice_makes_one_job(
    bot: BotThread, slack: FakeSlack, jogg: FakeJogg, redis_client: redis.Redis
) -> None:
    body = form_body(slash_command(f"{VIDEO} {AUDIO}", response_url=slack.response_url("d")))
    assert _post(bot, body, signed_headers(body)).status_code == 200
    assert _post(bot, body, signed_headers(body)).status_code == 200  # e.g. a proxy retried it
    final_reply(slack)
    settle(bot, redis_client)
    assert len(slack.messages(CHANNEL)) == 1 and len(jogg.creates) == 1


def test_healthz_reports_ok(bot: BotThread) -> None:
    health = httpx.get(f"{bot.url}/healthz", timeout=5)
    assert health.status_code == 200 and health.json()["redis"] == "ok"


def test_the_bot_talks_to_slack_over_kept_alive_connections(
    bot: BotThread, slack: FakeSlack, jogg: FakeJogg, redis_client: redis.Redis
) -> None:
    # Each new connection to Slack is a TLS handshake in production: a job's calls reuse a pool. One job
    # after the other, so that at most a call or two are ever in flight together.
    for n in range(3):
        bot.command(f"{VIDEO}?n={n} {AUDIO}", response_url=slack.response_url(f"r{n}"))
        wait_until(lambda n=n: len(slack.messages(CHANNEL)) == n + 1)
        parent = slack.messages(CHANNEL)[n]
        wait_until(lambda parent=parent: slack.replies(CHANNEL, parent["ts"]), timeout=20)
        settle(bot, redis_client)
    calls = [call for call in slack.calls if call.method.startswith("chat.")]
    assert len(calls) >= 9  # a message, its reply and its update per job
    connections = {call.peer for call in calls}
    assert len(connections) <= 3, f"{len(calls)} calls on {len(connections)} connections"
