"""Money under control, end to end through the running bot: links checked before anything is paid, a
quote asked about when it is high, monthly budgets, the result cache, and the provider's balance.

Links here point at a media server on 127.0.0.1 (PREFLIGHT_ALLOWED_NETWORKS lets the check reach it), so
jobs are handed to the bot's intake directly: a Slack command would refuse an IP address as a link before
the check ever saw it (tests/test_command.py). Everything after that is the bot as it runs.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis

from bot.jobs.model import Job, short_id
from bot.parsing.command import LipSyncRequest
from bot.settings import parse_thresholds
from tests import media_samples
from tests.fakes.jogg_api import FakeJogg, Outcome
from tests.fakes.media_server import Item, MediaServer
from tests.fakes.server import wait_until
from tests.fakes.slack_api import FakeSlack
from tests.harness import BotProcess, BotThread, bot_env
from tests.payloads import block_actions, event_callback
from tests.test_file_shares import settle

CHANNEL = "C0GENERAL"
SHARES = "C0MEDIA"
TEAM = "T0TEST"
ALICE = "U0ALICE"


@pytest.fixture
def media() -> Iterator[MediaServer]:
    with MediaServer() as server:
        yield server


@pytest.fixture
def money_bot(start_bot: Callable[..., BotThread]) -> Callable[..., BotThread]:
    def start(**overrides: Any) -> BotThread:
        return start_bot(preflight="on", preflight_allowed_networks="127.0.0.1/32", **overrides)

    return start


def talk(media: MediaServer, seconds: float = 40, name: str = "talk") -> str:
    return media.add(f"/{name}.mp4", Item(media_samples.mp4(seconds), "video/mp4"))


def voice(media: MediaServer, seconds: float = 62.5, name: str = "voice") -> str:
    return media.add(f"/{name}.wav", Item(media_samples.wav(seconds), "audio/wav"))


def submit(bot: BotThread, slack: FakeSlack, video: str, audio: str, key: str, user: str = ALICE) -> Job:
    """What `/lipsync <video> <audio>` in CHANNEL stores, answered privately at response_url `key`."""
    assert bot.bot.intake is not None
    command = {
        "team_id": TEAM,
        "channel_id": CHANNEL,
        "user_id": user,
        "response_url": slack.response_url(key),
        "trigger_id": f"trigger-{key}",
    }
    [job] = bot.call(bot.bot.intake.accept_command(command, LipSyncRequest(video, audio)))
    return job


def text_of(message: dict[str, Any]) -> str:
    return message.get("text", "") + "\n" + json.dumps(message.get("blocks") or [])


def private(slack: FakeSlack, key: str, count: int = 1) -> list[str]:
    """The private answers sent to response_url `key` (waits for `count` of them)."""

    def answers() -> list[Any] | None:
        found = list(slack.responses.get(key, []))
        return found if len(found) >= count else None

    return [text_of(m) for m in wait_until(answers, timeout=20)]


def buttons(message: dict[str, Any]) -> dict[str, str]:
    return {
        e["action_id"]: e["value"]
        for b in message.get("blocks") or []
        if b.get("type") == "actions"
        for e in b.get("elements") or []
    }


def click(
    bot: BotThread | BotProcess, slack: FakeSlack, action: str, job_id: str, key: str, user: str = ALICE
) -> None:
    payload = block_actions(
        action, job_id, user_id=user, message_ts="1.0", response_url=slack.response_url(key)
    )
    assert bot.shortcut(payload).status_code == 200


def reply_in_thread(slack: FakeSlack, index: int = 0) -> dict[str, Any]:
    parent = wait_until(lambda: m[index] if len(m := slack.messages(CHANNEL)) > index else None, timeout=20)
    return wait_until(lambda: (slack.replies(CHANNEL, parent["ts"]) or [None])[0], timeout=30)


def job_field(redis_client: redis.Redis, job_id: str, name: str) -> str:
    return str(redis_client.hget(f"{{lip}}:job:{job_id}", name) or "")


# ------------------------------------------------------------------------------------ checked links


@pytest.mark.parametrize(
    ("serve", "expected"),
    [
        (lambda m: m.add("/page", Item(b"<!doctype html><html>Drive</html>", "text/html")), "web page"),
        (lambda m: m.base_url + "/missing.mp3", "404"),
        (lambda m: m.add("/empty.wav", Item(b"", "audio/wav")), "empty"),
        (lambda m: m.add("/data.json", Item(b'{"audio": "no"}', "application/json")), "not a"),
    ],
    ids=["html", "404", "empty", "not-media"],
)
def test_a_bad_audio_link_is_refused_privately_before_anything_is_paid(
    money_bot: Callable[..., BotThread],
    slack: FakeSlack,
    jogg: FakeJogg,
    media: MediaServer,
    redis_client: redis.Redis,
    serve: Callable[[MediaServer], str],
    expected: str,
) -> None:
    bot = money_bot()
    submit(bot, slack, talk(media), serve(media), "r1")

    [answer] = private(slack, "r1")
    assert "audio link" in answer and expected in answer and "Nothing was charged" in answer
    settle(redis_client)
    assert jogg.creates == [] and jogg.uploads == []
    assert slack.messages(CHANNEL) == []  # nothing in the channel: only the requester heard of it
    assert media.sent["/talk.mp4"] <= 384 * 1024  # the check reads a little of each file, never all


def test_a_file_larger_than_the_limit_is_refused(
    money_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg, media: MediaServer
) -> None:
    bot = money_bot(max_file_mb=0.5)
    big = media.add("/long.wav", Item(media_samples.wav(70, rate=8000), "audio/wav"))  # 1.1 MB
    submit(bot, slack, talk(media), big, "r1")

    [answer] = private(slack, "r1")
    assert "audio link" in answer and "limit" in answer and "Nothing was charged" in answer
    assert jogg.creates == []


def test_a_redirect_to_a_private_address_is_refused(
    money_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg, media: MediaServer
) -> None:
    with MediaServer("127.0.0.2") as inside:  # "another host on a private network", serving real audio
        secret = inside.add("/voice.wav", Item(media_samples.wav(10), "audio/wav"))
        bot = money_bot()
        submit(bot, slack, talk(media), media.add("/go", Item(redirect=secret)), "r1")

        [answer] = private(slack, "r1")
        assert "audio link" in answer and "private" in answer
        assert inside.requests == []  # refused before connecting
    assert jogg.creates == []


def test_good_links_are_measured_and_the_dub_goes_through(
    money_bot: Callable[..., BotThread],
    slack: FakeSlack,
    jogg: FakeJogg,
    media: MediaServer,
    redis_client: redis.Redis,
) -> None:
    jogg.default_outcome = Outcome("success", polls=1, duration_seconds=62.5)
    bot = money_bot()
    job = submit(bot, slack, talk(media, 40), voice(media, 62.5), "r1")

    reply = reply_in_thread(slack)
    assert "0.50 credits" in text_of(reply)
    [create] = jogg.creates
    assert create["body"]["audio_url"] == media.base_url + "/voice.wav"
    assert Decimal(job_field(redis_client, job.id, "audio_s")) == Decimal("62.5")
    assert abs(Decimal(job_field(redis_client, job.id, "video_s")) - 40) < Decimal("0.1")
    assert job_field(redis_client, job.id, "quote") == "0.50"  # 62.5 s at 1 credit per 125 s


# ------------------------------------------------------------------------------------------ the quote


def test_an_expensive_dub_waits_for_dub_it_and_a_cancelled_one_is_never_sent(
    money_bot: Callable[..., BotThread],
    slack: FakeSlack,
    jogg: FakeJogg,
    media: MediaServer,
    redis_client: redis.Redis,
) -> None:
    jogg.default_outcome = Outcome("success", polls=1, duration_seconds=62.5)
    bot = money_bot(confirm_above="credits=0.25")
    first = submit(bot, slack, talk(media), voice(media, 62.5), "r1")
    second = submit(bot, slack, talk(media), voice(media, 70, name="other"), "r2")

    [quote] = private(slack, "r1")
    assert "0.50 credits" in quote and "Dub it" in quote and "expires in 15 minutes" in quote
    private(slack, "r2")
    assert jogg.creates == []  # nothing is sent before an answer
    assert slack.messages(CHANNEL) == []
    status = bot.command(f"status {short_id(first.id)}", response_url="").text
    assert "Quote about 0.50 credits" in status and "waiting for your Dub it" in status

    click(bot, slack, "quote_cancel", second.id, "c2")
    assert "nothing was sent or charged" in private(slack, "c2")[0]
    click(bot, slack, "quote_ok", first.id, "c1")
    assert "Dubbing it" in private(slack, "c1")[0]

    reply = reply_in_thread(slack)
    assert "0.50 credits" in text_of(reply)
    settle(redis_client)
    assert [c["body"]["audio_url"] for c in jogg.creates] == [media.base_url + "/voice.wav"]
    assert job_field(redis_client, second.id, "status") == "cancelled"


def test_only_the_requester_answers_a_quote_and_an_unanswered_one_expires(
    money_bot: Callable[..., BotThread],
    slack: FakeSlack,
    jogg: FakeJogg,
    media: MediaServer,
    redis_client: redis.Redis,
) -> None:
    slack.add_user("U0BOB", name="bob")
    bot = money_bot(confirm_above="credits=0.25", quote_expires_minutes=0.05)  # 3 s
    job = submit(bot, slack, talk(media), voice(media, 62.5), "r1")
    private(slack, "r1")

    click(bot, slack, "quote_ok", job.id, "bob", user="U0BOB")
    assert "I have no job" in private(slack, "bob")[0]  # a refusal says what a missing job would

    expired = private(slack, "r1", count=2)[1]
    assert "not answered in time" in expired and "nothing was charged" in expired
    click(bot, slack, "quote_ok", job.id, "late")
    assert "can no longer be started" in private(slack, "late")[0]
    settle(redis_client)
    assert jogg.creates == []


# ------------------------------------------------------------------------------------------- budgets


def test_a_channel_budget_admits_dubs_until_it_is_spent_and_shows_what_is_left(
    money_bot: Callable[..., BotThread],
    slack: FakeSlack,
    jogg: FakeJogg,
    media: MediaServer,
    redis_client: redis.Redis,
) -> None:
    slack.add_user("U0ADMIN", name="ada", is_admin=True)
    jogg.default_outcome = Outcome("success", polls=1, duration_seconds=62.5)
    bot = money_bot()
    # What Slack sends with should_escape: the channel picked from its suggestions.
    refused = bot.command(f"budget <#{CHANNEL}|general> 1", response_url="", user_id=ALICE)
    assert "Only workspace admins" in refused.text
    answer = bot.command(f"budget <#{CHANNEL}|general> 1", response_url="", user_id="U0ADMIN")
    assert f"<#{CHANNEL}> now has a monthly budget of 1.00 credits" in answer.text

    video = talk(media)
    submit(bot, slack, video, voice(media, 62.5), "r1")  # quote 0.50
    reply_in_thread(slack, 0)
    settle(redis_client)
    submit(bot, slack, video, voice(media, 62.5, name="voice2"), "r2")
    reply_in_thread(slack, 1)
    settle(redis_client)
    submit(bot, slack, video, voice(media, 10, name="voice3"), "r3")  # 0.08 more would overdraw 1.00

    [refusal] = private(slack, "r3")
    assert "budget" in refusal and "0.00 credits of 1.00 credits left" in refusal
    assert "Nothing was charged" in refusal
    assert len(jogg.creates) == 2
    shown = bot.command("budget", response_url="", user_id=ALICE).text
    assert "1.00 credits of 1.00 credits spent" in shown
    # App Home, published as Alice's jobs ended, shows the channel's budget too.
    wait_until(
        lambda: "1.00 credits of 1.00 credits spent" in json.dumps(slack.home_views.get(ALICE)), timeout=20
    )


def test_a_job_that_fails_before_it_is_sent_gives_its_reservation_back(
    money_bot: Callable[..., BotThread],
    slack: FakeSlack,
    jogg: FakeJogg,
    media: MediaServer,
    redis_client: redis.Redis,
) -> None:
    slack.add_user("U0ADMIN", name="ada", is_admin=True)
    bot = money_bot(confirm_above="credits=0.25")
    bot.command(f"budget <@{ALICE}> 2", response_url="", user_id="U0ADMIN")
    job = submit(bot, slack, talk(media), voice(media, 62.5), "r1")
    private(slack, "r1")
    assert "0.50 credits of 2.00 credits spent" in bot.command("budget", response_url="").text  # reserved

    click(bot, slack, "quote_cancel", job.id, "c1")
    private(slack, "c1")
    settle(redis_client)
    assert "0.00 credits of 2.00 credits spent" in bot.command("budget", response_url="").text


# ----------------------------------------------------------------------------------- the result cache


def test_the_same_dub_again_comes_from_the_cache_at_no_cost_until_asked_afresh(
    money_bot: Callable[..., BotThread],
    slack: FakeSlack,
    jogg: FakeJogg,
    media: MediaServer,
    redis_client: redis.Redis,
) -> None:
    jogg.default_outcome = Outcome("success", polls=1, duration_seconds=62.5)
    jogg.serve_results = True  # a cached result is offered only while its link still serves the video
    bot = money_bot()
    video, audio = talk(media), voice(media, 62.5)
    submit(bot, slack, video, audio, "r1")
    reply_in_thread(slack, 0)
    settle(redis_client)

    again = submit(bot, slack, video, audio, "r2")
    cached = reply_in_thread(slack, 1)
    assert "From the cache" in text_of(cached) and "nothing was charged" in text_of(cached)
    assert "0 credits" in text_of(cached) or "0.00 credits" in text_of(cached)
    assert len(jogg.creates) == 1  # no second call to the provider
    parent = slack.messages(CHANNEL)[1]
    wait_until(lambda: "job_again_anyway" in buttons(slack.message(CHANNEL, parent["ts"]) or {}))

    click(bot, slack, "job_again_anyway", again.id, "a1")
    assert "Dubbing again" in private(slack, "a1")[0]
    wait_until(lambda: len(jogg.creates) == 2, timeout=20)
    reply_in_thread(slack, 2)
    settle(redis_client)
    assert "From the cache" not in text_of(slack.replies(CHANNEL, slack.messages(CHANNEL)[2]["ts"])[0])


def test_a_result_cached_by_the_previous_version_still_answers_and_new_ones_are_stored_compactly(
    money_bot: Callable[..., BotThread],
    slack: FakeSlack,
    jogg: FakeJogg,
    media: MediaServer,
    redis_client: redis.Redis,
) -> None:
    jogg.default_outcome = Outcome("success", polls=1, duration_seconds=62.5)
    jogg.serve_results = True
    bot = money_bot()
    video, audio = talk(media), voice(media, 62.5)
    first = submit(bot, slack, video, audio, "r1")
    reply_in_thread(slack, 0)
    settle(redis_client)
    [key] = redis_client.keys("{lip}:result:*")
    assert len(key) == len("{lip}:result:") + 32  # named by the identity's first 128 bits
    stored = json.loads(redis_client.get(key))
    # Compact: the values only, in a fixed order (no names repeated in every entry, kept 30 days), and
    # the cover link as the part it does not share with the result link.
    job_id, result_url, shared, cover_rest, duration_s, cost_unit, task_id, made_ms = stored
    assert job_id == first.id and result_url == jogg.result_url(task_id)
    assert result_url[:shared] + cover_rest == jogg.cover_url(task_id)
    # As the previous version wrote it: an object with names, the whole cover link.
    old = {
        "job": job_id,
        "result_url": result_url,
        "cover_url": jogg.cover_url(task_id),
        "duration_s": duration_s,
        "cost_unit": cost_unit,
        "task_id": task_id,
        "made_ms": made_ms,
    }
    redis_client.set(key, json.dumps(old), keepttl=True)

    submit(bot, slack, video, audio, "r2")
    cached = reply_in_thread(slack, 1)
    assert "From the cache" in text_of(cached) and short_id(first.id) in text_of(cached)
    assert jogg.cover_url(task_id) in json.dumps(cached)  # the same cover as the first reply
    assert len(jogg.creates) == 1


def test_a_cached_result_whose_link_is_gone_is_dubbed_afresh(
    money_bot: Callable[..., BotThread],
    slack: FakeSlack,
    jogg: FakeJogg,
    media: MediaServer,
    redis_client: redis.Redis,
) -> None:
    jogg.default_outcome = Outcome("success", polls=1, duration_seconds=62.5)
    jogg.serve_results = True
    bot = money_bot()
    video, audio = talk(media), voice(media, 62.5)
    submit(bot, slack, video, audio, "r1")
    reply_in_thread(slack, 0)
    settle(redis_client)
    jogg.tasks.clear()  # the provider no longer serves that result: its link answers 404

    submit(bot, slack, video, audio, "r2")
    second = reply_in_thread(slack, 1)
    assert "From the cache" not in text_of(second) and "0.50 credits" in text_of(second)
    assert len(jogg.creates) == 2


# ------------------------------------------------------------------------------------------ balances


def test_a_low_balance_refuses_before_paying_and_tells_the_admins_once(
    money_bot: Callable[..., BotThread],
    slack: FakeSlack,
    jogg: FakeJogg,
    media: MediaServer,
    redis_client: redis.Redis,
) -> None:
    jogg.remaining_quota = 0.3
    bot = money_bot(admin_channel="C0ADMINS", balance_warn_below="credits=5")
    video = talk(media)
    submit(bot, slack, video, voice(media, 62.5), "r1")  # needs 0.50
    [refusal] = private(slack, "r1")
    assert "JoggAI has 0.30 credits left" in refusal and "needs about 0.50 credits" in refusal
    assert jogg.creates == []

    submit(bot, slack, video, voice(media, 10, name="short"), "r2")  # needs 0.08: fits
    reply_in_thread(slack, 0)
    settle(redis_client)
    [warning] = slack.messages("C0ADMINS")  # once, though both jobs saw the low balance
    assert "JoggAI has 0.30 credits left" in text_of(warning) and "BALANCE_WARN_BELOW" in text_of(warning)


def test_the_same_files_shared_again_are_answered_from_the_cache_by_their_bytes(
    start_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg, redis_client: redis.Redis
) -> None:
    jogg.default_outcome = Outcome("success", polls=1, duration_seconds=30)
    jogg.serve_results = True
    bot = start_bot()  # PREFLIGHT=off: the cache does not need the link check
    video, audio = os.urandom(200_000), os.urandom(90_000)

    def share_copy(n: int) -> str:
        """The same bytes uploaded to Slack again: new file ids, new message."""
        files = [
            slack.add_file(f"FV{n}", "talk.mp4", "video/mp4", "mp4", video, user=ALICE),
            slack.add_file(f"FA{n}", "voice.mp3", "audio/mpeg", "mp3", audio, user=ALICE),
        ]
        message = slack.add_message(SHARES, "", user=ALICE, files=files)
        event = {**message, "channel": SHARES, "channel_type": "channel", "event_ts": message["ts"]}
        assert bot.event(event_callback(event)).status_code == 200
        return str(message["ts"])

    first = share_copy(1)
    wait_until(lambda: slack.replies(SHARES, first), timeout=30)
    settle(redis_client)
    second = share_copy(2)
    [reply] = wait_until(lambda: slack.replies(SHARES, second), timeout=30)

    assert "From the cache" in text_of(reply) and "job_again_anyway" in buttons(reply)
    assert len(jogg.creates) == 1


def test_a_quote_outlives_a_killed_bot_and_its_budget_is_reserved_once(
    slack: FakeSlack, jogg: FakeJogg, redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    slack.add_user("U0ADMIN", name="ada", is_admin=True)
    jogg.default_outcome = Outcome("success", polls=1, duration_seconds=30)  # costs 0.24
    env = bot_env(slack, jogg, tmp_path, REDIS_URL=redis_url, CONFIRM_ABOVE="credits=0.25")
    bot = BotProcess(env, tmp_path).start()
    try:
        bot.command(f"budget <@{ALICE}> 5", response_url="", user_id="U0ADMIN")
        # Shared files: their lengths come from Slack (no link check needed for a quote).
        files = [
            slack.add_file(
                "FV1", "talk.mp4", "video/mp4", "mp4", os.urandom(90_000), user=ALICE, duration_ms=62_500
            ),
            slack.add_file(
                "FA1", "voice.mp3", "audio/mpeg", "mp3", os.urandom(40_000), user=ALICE, duration_ms=62_500
            ),
        ]
        message = slack.add_message(SHARES, "", user=ALICE, files=files)
        event = {**message, "channel": SHARES, "channel_type": "channel", "event_ts": message["ts"]}
        assert bot.event(event_callback(event)).status_code == 200
        [quote] = wait_until(lambda: [e for e in slack.ephemerals if "Dub it" in text_of(e)], timeout=20)
        assert quote["user"] == ALICE and "0.50 credits" in text_of(quote)
        job_id = buttons(quote)["quote_ok"]
        bot.kill()  # kill -9 while the job waits for its answer

        bot.start()
        assert "0.50 credits of 5.00 credits spent" in bot.command("budget", response_url="").text
        click(bot, slack, "quote_ok", job_id, "ok")
        assert "Dubbing it" in private(slack, "ok")[0]
        [reply] = wait_until(lambda: slack.replies(SHARES, message["ts"]), timeout=30)
        settle(redis_client)
        assert "0.24 credits" in text_of(reply) and len(jogg.creates) == 1
        # The reservation (0.50, once: not 1.00 after the restart's second look) became the real cost.
        assert "0.24 credits of 5.00 credits spent" in bot.command("budget", response_url="").text
    finally:
        bot.stop()


def test_a_link_whose_file_changed_is_dubbed_afresh(
    money_bot: Callable[..., BotThread],
    slack: FakeSlack,
    jogg: FakeJogg,
    media: MediaServer,
    redis_client: redis.Redis,
) -> None:
    jogg.default_outcome = Outcome("success", polls=1, duration_seconds=30)
    jogg.serve_results = True
    bot = money_bot()
    video, audio = talk(media), voice(media, 30)
    submit(bot, slack, video, audio, "r1")
    reply_in_thread(slack, 0)
    settle(redis_client)
    voice(media, 31)  # a new take uploaded over the old one, at the same link

    submit(bot, slack, video, audio, "r2")
    second = reply_in_thread(slack, 1)
    assert "From the cache" not in text_of(second) and len(jogg.creates) == 2


def test_the_link_checks_parser_process_ends_with_the_bot_even_when_killed(
    slack: FakeSlack, jogg: FakeJogg, redis_url: str, tmp_path: Path
) -> None:
    env = bot_env(slack, jogg, tmp_path, REDIS_URL=redis_url, PREFLIGHT="on")
    bot = BotProcess(env, tmp_path).start()

    def children() -> set[int]:
        found = set()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == bot.pid:
                        found.add(int(entry.name))
        return found

    try:
        parser = wait_until(children, timeout=20)  # started with the bot, not on the first link
        bot.kill()
    finally:
        bot.stop()
    wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in parser), timeout=20)


# ---------------------------------------------------------------------------- settings and amounts


def test_an_endless_link_is_refused_before_anything_is_paid(
    money_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg, media: MediaServer
) -> None:
    bot = money_bot()
    # 200 video/mp4, no Content-Length, an ftyp header, then zeros without end.
    endless = media.add("/live.mp4", Item(media_samples.mp4(3.0, filler=1000), "video/mp4", endless=True))

    submit(bot, slack, endless, voice(media), "r1")

    [answer] = private(slack, "r1")
    assert "video link does not say how large the file is" in answer and "Nothing was charged" in answer
    assert jogg.creates == []


def test_confirm_above_as_a_bare_number_is_in_the_default_providers_unit(
    money_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg, media: MediaServer
) -> None:
    bot = money_bot(confirm_above="0.25")  # JoggAI's credits

    submit(bot, slack, talk(media), voice(media, 62.5), "r1")

    [quote] = private(slack, "r1")
    assert "0.50 credits" in quote and "more than the 0.25 credits above which I ask first" in quote
    assert jogg.creates == []


def test_confirm_above_amounts_in_units_or_alone() -> None:
    assert parse_thresholds("2", "credits") == {"credits": Decimal(2)}
    assert parse_thresholds("0.5, USD=5", "USD") == {"USD": Decimal(5)}  # a unit named wins
    assert parse_thresholds("1.5,USD=5", "credits") == {"credits": Decimal("1.5"), "USD": Decimal(5)}
    assert parse_thresholds("", "credits") == {}
    for bad in ("credits", "2,3", "\u0662", "\uff12", "1e3", "-1", "credits=x"):
        with pytest.raises(ValueError, match="is not unit=amount"):
            parse_thresholds(bad, "credits")


# Arabic-Indic 10, fullwidth 10, Arabic-Indic 3.5, and ASCII shapes that are no amount.
@pytest.mark.parametrize(
    "typed", ["\u0661\u0660", "\uff11\uff10", "1,,,0", "1e3", "1,0", "\u0663.\u0665", "+5"]
)
def test_a_budget_in_anything_but_ascii_decimals_is_refused_and_sets_nothing(
    bot: BotThread, slack: FakeSlack, typed: str
) -> None:
    slack.add_user("U0ADMIN", name="ada", is_admin=True)

    answer = bot.command(f"budget <#{CHANNEL}|general> {typed}", response_url="", user_id="U0ADMIN").text

    assert "is not an amount" in answer
    assert "none set" in bot.command("budget", response_url="", user_id="U0ADMIN").text
