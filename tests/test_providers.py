"""sync.so and LipSync.dev end to end beside JoggAI: `/lipsync … <provider>` through the real Bolt app to each
provider's stand-in, the reply with its own cost, failures explained, refused options, and the create answered
late that must not pay twice."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import redis

from bot.settings import StartupError
from tests.fakes.jogg_api import FakeJogg
from tests.fakes.lipsyncdev_api import FakeLipSyncDev
from tests.fakes.lipsyncdev_api import Fault as DevFault
from tests.fakes.lipsyncdev_api import Outcome as DevOutcome
from tests.fakes.server import wait_until
from tests.fakes.slack_api import FakeSlack
from tests.fakes.sync_api import FakeSync
from tests.fakes.sync_api import Fault as SyncFault
from tests.fakes.sync_api import Outcome as SyncOutcome
from tests.harness import BotThread

CHANNEL = "C0GENERAL"
VIDEO = "https://cdn.example.com/talk.mp4"
AUDIO = "https://cdn.example.com/voice-fr.mp3"


def text_of(message: dict[str, Any]) -> str:
    return message.get("text", "") + "\n" + json.dumps(message.get("blocks") or [])


def parent_and_replies(
    slack: FakeSlack, count: int = 1, timeout: float = 20
) -> tuple[dict[str, Any], list[Any]]:
    parent = wait_until(lambda: (slack.messages(CHANNEL) or [None])[0], timeout=10)
    found = wait_until(
        lambda: r if len(r := slack.replies(CHANNEL, parent["ts"])) >= count else None, timeout=timeout
    )
    return parent, found


def settle(redis_client: redis.Redis, timeout: float = 15) -> None:
    wait_until(
        lambda: all(redis_client.zcard(f"{{lip}}:{lane}") == 0 for lane in ("submit", "poll", "send")),
        timeout=timeout,
    )


def ephemeral_text(response: Any) -> str:
    return str(response.json().get("text", "")) if response.text else ""


@pytest.fixture
def all_three(
    start_bot: Callable[..., BotThread], sync_api: FakeSync, lipsyncdev_api: FakeLipSyncDev
) -> Callable[..., BotThread]:
    """A bot with every provider configured (JoggAI comes from the default settings)."""

    def start(**overrides: Any) -> BotThread:
        values: dict[str, Any] = {
            "sync_api_key": sync_api.api_key,
            "sync_api_url": sync_api.base_url,
            "lipsyncdev_api_key": lipsyncdev_api.api_key,
            "lipsyncdev_api_url": lipsyncdev_api.api_url,
        }
        return start_bot(**{**values, **overrides})

    return start


# ------------------------------------------------------------------------------------------- sync.so


def test_sync_command_is_dubbed_with_the_chosen_model_and_costed_in_usd(
    all_three: Callable[..., BotThread], slack: FakeSlack, sync_api: FakeSync, jogg: FakeJogg
) -> None:
    sync_api.default_outcome = SyncOutcome("success", polls=2, duration=12.5)
    bot = all_three()

    response = bot.command(f"{VIDEO} {AUDIO} model=lipsync-2-pro sync", response_url=slack.response_url("r"))

    assert response.status_code == 200 and response.text == ""
    parent, [reply] = parent_and_replies(slack)
    [generation] = sync_api.generations.values()
    assert generation.model == "lipsync-2-pro"
    assert generation.options.get("sync_mode") == "cut_off"  # `normal` in sync.so's words
    assert [i.get("url") for i in generation.input] == [VIDEO, AUDIO]
    [create] = [r for r in sync_api.requests if r.method == "POST" and r.path == "/v2/generate"]
    assert create.headers["idempotency-key"]  # a retried create can never make a second generation
    assert create.headers["x-api-key"] == sync_api.api_key
    assert "sync.so" in text_of(parent)
    reply_text = text_of(reply)
    assert sync_api.output_url(generation.id) in reply_text
    assert "$1.0375" in reply_text  # 12.5 s at $0.083 per second, exactly
    assert "lipsync-2-pro" in reply_text and "12.5 s" in reply_text
    assert jogg.creates == []  # the default provider was not used


def test_sync_failure_is_explained_with_its_code(
    all_three: Callable[..., BotThread], slack: FakeSlack, sync_api: FakeSync
) -> None:
    sync_api.default_outcome = SyncOutcome(
        "failed", polls=1, error="No face was detected in the video.", error_code="generation_face_not_found"
    )
    bot = all_three()
    bot.command(f"{VIDEO} {AUDIO} sync", response_url=slack.response_url("r"))
    _, [reply] = parent_and_replies(slack)
    assert "the lip-sync failed" in text_of(reply)
    assert "No face was detected in the video." in text_of(reply)
    assert "sync.so said" in text_of(reply)


def test_a_sync_create_answered_late_makes_exactly_one_generation(
    all_three: Callable[..., BotThread],
    slack: FakeSlack,
    sync_api: FakeSync,
    redis_client: redis.Redis,
) -> None:
    # sync.so makes the generation, but only answers after our client gave up: the create is retried with
    # the same Idempotency-Key, which finds that generation instead of paying for a second one.
    sync_api.inject("generate", SyncFault("late", delay=2.5))
    bot = all_three(http_timeout_seconds=1)

    bot.command(f"{VIDEO} {AUDIO} sync", response_url=slack.response_url("r"))

    _, [reply] = parent_and_replies(slack, timeout=40)
    settle(redis_client)
    assert sync_api.generation_count == 1
    [generation] = sync_api.generations.values()
    assert sync_api.output_url(generation.id) in text_of(reply)
    creates = [r for r in sync_api.requests if r.method == "POST" and r.path == "/v2/generate"]
    assert len(creates) >= 2 and len({r.headers["idempotency-key"] for r in creates}) == 1


def test_the_plans_concurrency_cap_queues_jobs_instead_of_failing_them(
    all_three: Callable[..., BotThread], slack: FakeSlack, sync_api: FakeSync, redis_client: redis.Redis
) -> None:
    sync_api.max_concurrent = 1  # sync.so answers 429 past it; the bot must not even ask
    sync_api.default_outcome = SyncOutcome("success", polls=3)
    bot = all_three(sync_max_concurrent=1)

    for n in range(3):
        bot.command(f"{VIDEO}?n={n} {AUDIO} sync", response_url=slack.response_url(f"r{n}"))

    wait_until(lambda: len(slack.messages(CHANNEL)) == 3)
    wait_until(
        lambda: all(len(slack.replies(CHANNEL, m["ts"])) == 1 for m in slack.messages(CHANNEL)), timeout=60
    )
    settle(redis_client)
    assert sync_api.generation_count == 3
    refused = [r for r in sync_api.requests if r.path == "/v2/generate" and r.method == "POST"]
    assert len(refused) == 3  # one create each: none was turned away by the cap
    for message in slack.messages(CHANNEL):
        assert "ready" in text_of(slack.replies(CHANNEL, message["ts"])[0])


# --------------------------------------------------------------------------------------- LipSync.dev


def test_lipsyncdev_command_is_dubbed_and_costed_with_credits_used(
    all_three: Callable[..., BotThread], slack: FakeSlack, lipsyncdev_api: FakeLipSyncDev
) -> None:
    lipsyncdev_api.default_outcome = DevOutcome("success", polls=2, credits=38)
    bot = all_three()

    bot.command(f"{VIDEO} {AUDIO} lipsyncdev", response_url=slack.response_url("r"))

    parent, [reply] = parent_and_replies(slack)
    [job] = lipsyncdev_api.jobs.values()
    [submit] = [r for r in lipsyncdev_api.requests if r.method == "POST"]
    assert submit.json["srcVideoUrl"] == VIDEO and submit.json["audioUrl"] == AUDIO
    assert submit.json["videoParams"] == {
        "video_width": 0,
        "video_height": 0,
        "video_enhance": 1,
        "fps": "25",
    }
    assert submit.headers["authorization"] == f"Bearer {lipsyncdev_api.api_key}"
    assert "LipSync.dev" in text_of(parent)
    assert lipsyncdev_api.output_url(job.job_id) in text_of(reply)
    assert "38 LipSync.dev credits" in text_of(reply)


def test_lipsyncdev_failure_says_what_it_said(
    all_three: Callable[..., BotThread], slack: FakeSlack, lipsyncdev_api: FakeLipSyncDev
) -> None:
    lipsyncdev_api.default_outcome = DevOutcome("failed", polls=1, error_message="Audio too long")
    bot = all_three()
    bot.command(f"{VIDEO} {AUDIO} lipsyncdev", response_url=slack.response_url("r"))
    _, [reply] = parent_and_replies(slack)
    assert "LipSync.dev said" in text_of(reply) and "Audio too long" in text_of(reply)


def test_a_lipsyncdev_submit_without_a_clear_answer_is_never_sent_twice(
    all_three: Callable[..., BotThread],
    slack: FakeSlack,
    lipsyncdev_api: FakeLipSyncDev,
    redis_client: redis.Redis,
) -> None:
    # LipSync.dev makes the job but answers too late; it has no lookup and no idempotency key, so the bot
    # cannot tell and must not submit again: it says so honestly instead.
    lipsyncdev_api.inject("submit", DevFault("late", delay=2.5))
    bot = all_three(http_timeout_seconds=1)

    bot.command(f"{VIDEO} {AUDIO} lipsyncdev", response_url=slack.response_url("r"))

    _, [reply] = parent_and_replies(slack, timeout=30)
    settle(redis_client)
    wait_until(lambda: lipsyncdev_api.late_in_flight == 0)
    assert lipsyncdev_api.submits == 1 and len(lipsyncdev_api.jobs) == 1
    assert "did not send it again" in text_of(reply) and "dashboard" in text_of(reply)


# ---------------------------------------------------------------------------------- refused options


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("lipsyncdev normal_reverse", "LipSync.dev has no `normal_reverse` playback"),
        ("sync normal_reverse_by_audio", "sync.so has no `normal_reverse_by_audio` playback"),
        ("sync model=lipsync-9", "sync.so has no model `lipsync-9`"),
        ("jogg model=sync-3", "JoggAI has no model choice"),
    ],
)
def test_an_option_the_provider_cannot_honour_is_refused_at_once(
    all_three: Callable[..., BotThread],
    slack: FakeSlack,
    sync_api: FakeSync,
    lipsyncdev_api: FakeLipSyncDev,
    jogg: FakeJogg,
    redis_client: redis.Redis,
    words: str,
    expected: str,
) -> None:
    bot = all_three()
    response = bot.command(f"{VIDEO} {AUDIO} {words}", response_url=slack.response_url("r"))
    assert response.status_code == 200
    text = ephemeral_text(response)
    assert expected in text and "Nothing was submitted" in text
    assert "`jogg`" in text and "`sync`" in text and "`lipsyncdev`" in text  # what is available
    assert response.json()["response_type"] == "ephemeral"
    assert redis_client.keys("{lip}:job:*") == []
    assert sync_api.generations == {} and lipsyncdev_api.jobs == {} and jogg.creates == []


def test_a_provider_without_a_key_is_refused_naming_those_there_are(
    start_bot: Callable[..., BotThread], slack: FakeSlack, redis_client: redis.Redis
) -> None:
    bot = start_bot()  # JoggAI only
    response = bot.command(f"{VIDEO} {AUDIO} sync", response_url=slack.response_url("r"))
    text = ephemeral_text(response)
    assert "no key for sync.so" in text and "`jogg` (JoggAI)" in text
    assert redis_client.keys("{lip}:job:*") == []
    assert slack.messages(CHANNEL) == []


def test_help_lists_the_configured_providers_with_their_options(
    all_three: Callable[..., BotThread], slack: FakeSlack
) -> None:
    bot = all_three(sync_model="sync-3", default_provider="sync")
    text = ephemeral_text(bot.command("help", response_url=slack.response_url("r")))
    assert "`jogg`: JoggAI" in text and "`lipsyncdev`: LipSync.dev" in text
    assert "`sync`: sync.so (default)" in text
    assert "`sync-3` (default)" in text and "`lipsync-2-pro`" in text
    assert "0.48 credits per minute" in text  # JoggAI's rule (1 per 125 s), in words a user reads


def test_the_default_provider_is_the_first_configured_when_unset(
    start_bot: Callable[..., BotThread], slack: FakeSlack, lipsyncdev_api: FakeLipSyncDev
) -> None:
    bot = start_bot(
        jogg_api_key=None,
        lipsyncdev_api_key=lipsyncdev_api.api_key,
        lipsyncdev_api_url=lipsyncdev_api.api_url,
    )
    bot.command(f"{VIDEO} {AUDIO}", response_url=slack.response_url("r"))
    parent_and_replies(slack)
    assert len(lipsyncdev_api.jobs) == 1


def test_a_provider_key_refused_at_start_is_named(
    make_settings: Callable[..., Any], lipsyncdev_api: FakeLipSyncDev, sync_api: FakeSync
) -> None:
    settings = make_settings(
        lipsyncdev_api_key="not-the-key",
        lipsyncdev_api_url=lipsyncdev_api.api_url,
        sync_api_key="also-wrong",
        sync_api_url=sync_api.base_url,
    )
    bot = BotThread(settings)
    try:
        with pytest.raises(StartupError) as refused:
            bot.start()
    finally:
        bot.stop()
    assert "LIPSYNCDEV_API_KEY" in str(refused.value) and "SYNC_API_KEY" in str(refused.value)
    assert "not-the-key" not in str(refused.value) and "also-wrong" not in str(refused.value)


def test_an_option_in_a_file_share_the_provider_cannot_honour_is_explained(
    all_three: Callable[..., BotThread], slack: FakeSlack, lipsyncdev_api: FakeLipSyncDev
) -> None:
    from tests.payloads import event_callback
    from tests.test_file_shares import replies, share

    bot = all_three()
    shared = share(slack, "talk.mp4", "voice-fr.mp3", text="lipsyncdev normal_reverse please")
    bot.event(event_callback(shared.event()))
    [note] = replies(slack, shared.ts, 1)
    assert "LipSync.dev has no `normal_reverse` playback" in text_of(note)
    assert lipsyncdev_api.jobs == {}


def test_a_job_that_ends_while_its_create_is_in_doubt_says_it_may_have_been_charged(
    all_three: Callable[..., BotThread], slack: FakeSlack, sync_api: FakeSync, redis_client: redis.Redis
) -> None:
    # sync.so makes the generation but every answer is lost, until the job's time is up.
    for _ in range(50):
        sync_api.inject("generate", SyncFault("http", status=502, after=True))
    bot = all_three(job_timeout_seconds=3)

    bot.command(f"{VIDEO} {AUDIO} sync", response_url=slack.response_url("r"))

    _, [reply] = parent_and_replies(slack, timeout=30)
    assert "may have accepted (and charged for) the job" in text_of(reply)
    assert "sync.so dashboard" in text_of(reply)
    assert sync_api.generation_count == 1  # every retry carried the same key: one generation at most
