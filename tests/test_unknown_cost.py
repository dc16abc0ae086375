"""The unknown-cost rule (bot/lanes/gate.py `quote_for`): a job whose length the bot could not learn is quoted
at a ceiling (as if each unknown input were UNKNOWN_LENGTH_SECONDS long), reserved against budgets, asked
about above CONFIRM_ABOVE, and settled to its real cost; a provider with no price rule is refused wherever a
budget applies. Budgets are never overdrawn, also by many bot processes admitting at once.

Shared files Slack gives no length for are measured from Slack's download with the bot token, by the link
check's own code (bot/money/preflight.py, HostToken).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest
import redis
from redis.asyncio import Redis

from bot.money.budgets import Ledger
from tests import media_samples
from tests.fakes.jogg_api import FakeJogg, Outcome
from tests.fakes.lipsyncdev_api import FakeLipSyncDev
from tests.fakes.media_server import Item, MediaServer
from tests.fakes.server import wait_until
from tests.fakes.slack_api import FakeSlack
from tests.harness import BotProcess, BotThread, bot_env
from tests.payloads import event_callback
from tests.test_file_shares import settle
from tests.test_money import (  # noqa: F401 (fixtures)
    ALICE,
    CHANNEL,
    SHARES,
    TEAM,
    job_field,
    media,
    money_bot,
    private,
    reply_in_thread,
    submit,
    talk,
    voice,
)

ADMIN = "U0ADMIN"
VIDEO = "https://cdn.example.com/talk.mp4"
ENDED = {"succeeded", "failed", "cancelled", "timed_out"}


def spent(redis_url: str, scope: str, scope_id: str, unit: str = "credits") -> Decimal:
    async def read() -> Decimal:
        client = Redis.from_url(redis_url)
        try:
            return await Ledger(client).spent(TEAM, scope, scope_id, unit)
        finally:
            await client.aclose()

    return asyncio.run(read())


def jobs_by_status(redis_client: redis.Redis) -> dict[str, int]:
    counts: dict[str, int] = {}
    for key in redis_client.scan_iter("{lip}:job:*"):
        status = str(redis_client.hget(key, "status") or "")
        counts[status] = counts.get(status, 0) + 1
    return counts


def unknown_length_audio(server: MediaServer, seconds: float = 62.5, name: str = "voice") -> str:
    """A real m4a with its index at the end, from a server that ignores Range: the check sees audio of a
    known size but cannot reach the index, so its length stays unknown."""
    body = media_samples.m4a(seconds, moov_at_end=True, filler=400_000)
    return server.add(f"/{name}.m4a", Item(body, "audio/mp4", ranges=False))


# -------------------------------------------------------- many processes, lengths unknown (PREFLIGHT=off)


@pytest.fixture
def two_bots(
    slack: FakeSlack, jogg: FakeJogg, redis_url: str, tmp_path: Path
) -> Iterator[tuple[BotProcess, BotProcess]]:
    # Each dub really costs 0.10 credits (12.5 s); an unknown length is quoted as 25 s: 0.20.
    jogg.default_outcome = Outcome("success", polls=1, duration_seconds=12.5)
    bots = [
        BotProcess(
            bot_env(
                slack,
                jogg,
                tmp_path,
                REDIS_URL=redis_url,
                UNKNOWN_LENGTH_SECONDS="25",
                JOGG_POSTS_PER_MINUTE="1000",
            ),
            tmp_path,
            name=name,
        )
        for name in ("bot1", "bot2")
    ]
    try:
        for bot in bots:
            bot.start()
        yield bots[0], bots[1]
    finally:
        for bot in bots:
            bot.stop()


def test_forty_link_commands_at_once_on_two_processes_never_overdraw_a_budget_for_ten(
    two_bots: tuple[BotProcess, BotProcess],
    slack: FakeSlack,
    jogg: FakeJogg,
    redis_url: str,
    redis_client: redis.Redis,
) -> None:
    slack.add_user(ADMIN, name="ada", is_admin=True)
    first, second = two_bots
    answer = first.command(f"budget <#{CHANNEL}|general> 1", response_url="", user_id=ADMIN)
    assert "monthly budget of 1.00 credits" in answer.text  # ten dubs at their real 0.10

    def command(n: int) -> int:
        bot = (first, second)[n % 2]
        audio = f"https://cdn.example.com/voice-{n}.mp3"  # no two alike: nothing from the cache
        return bot.command(f"{VIDEO} {audio}", response_url=slack.response_url(f"r{n}")).status_code

    with ThreadPoolExecutor(max_workers=40) as pool:
        assert list(pool.map(command, range(40))) == [200] * 40

    wait_until(lambda: sum(jobs_by_status(redis_client).values()) == 40, timeout=60)
    wait_until(lambda: set(jobs_by_status(redis_client)) <= ENDED, timeout=120)
    settle(redis_client, timeout=60)

    dubbed = len(jogg.creates)
    assert 1 <= dubbed <= 10  # some went through; never more than the budget pays for
    assert spent(redis_url, "channel", CHANNEL) == Decimal("0.10") * dubbed <= 1
    assert list(redis_client.scan_iter("{lip}:budget:job:*")) == []  # every reservation settled
    refusals = [text for n in range(40) for text in map(str, slack.responses.get(f"r{n}", []))]
    refused = [text for text in refusals if "monthly budget" in text]
    assert len(refused) == 40 - dubbed
    assert all("up to 0.20 credits" in text and "upper estimate" in text for text in refused)


# ----------------------------------------------------------------- the link check on, a length unknown


def test_an_audio_link_of_unknown_length_is_held_to_the_budget_that_refuses_its_known_twin(
    money_bot: Callable[..., BotThread],  # noqa: F811
    slack: FakeSlack,
    jogg: FakeJogg,
    media: MediaServer,  # noqa: F811
    redis_client: redis.Redis,
) -> None:
    slack.add_user(ADMIN, name="ada", is_admin=True)
    bot = money_bot()
    bot.command(f"budget <@{ALICE}> 0.4", response_url="", user_id=ADMIN)
    video = talk(media)

    submit(bot, slack, video, voice(media, 62.5), "r1")
    submit(bot, slack, video, unknown_length_audio(media), "r2")

    [known_refusal] = private(slack, "r1")
    [unknown_refusal] = private(slack, "r2")
    assert "needs about 0.50 credits" in known_refusal
    assert "may need up to 4.80 credits" in unknown_refusal  # 600 s at 1 credit per 125 s
    assert "couldn't learn the audio's length" in unknown_refusal
    assert "0.40 credits of 0.40 credits left" in unknown_refusal and "Nothing was charged" in unknown_refusal
    settle(redis_client)
    assert jogg.creates == []
    assert "0.00 credits of 0.40 credits spent" in bot.command("budget", response_url="").text


def test_an_upper_estimate_is_reserved_then_settled_to_the_real_cost(
    money_bot: Callable[..., BotThread],  # noqa: F811
    slack: FakeSlack,
    jogg: FakeJogg,
    media: MediaServer,  # noqa: F811
    redis_client: redis.Redis,
) -> None:
    slack.add_user(ADMIN, name="ada", is_admin=True)
    jogg.default_outcome = Outcome("success", polls=30, duration_seconds=62.5)  # costs 0.50
    bot = money_bot(unknown_length_seconds=100, poll_interval_seconds=0.3)  # quoted at 0.80
    bot.command(f"budget <@{ALICE}> 1", response_url="", user_id=ADMIN)

    job = submit(bot, slack, talk(media), unknown_length_audio(media), "r1")

    wait_until(lambda: job_field(redis_client, job.id, "task_id"), timeout=20)
    assert "0.80 credits of 1.00 credits spent" in bot.command("budget", response_url="").text
    reply = reply_in_thread(slack)
    assert "0.50 credits" in str(reply)
    settle(redis_client)
    assert "0.50 credits of 1.00 credits spent" in bot.command("budget", response_url="").text


def test_confirm_above_asks_about_an_upper_estimate_and_says_it_is_one(
    money_bot: Callable[..., BotThread],  # noqa: F811
    slack: FakeSlack,
    jogg: FakeJogg,
    media: MediaServer,  # noqa: F811
) -> None:
    bot = money_bot(confirm_above="credits=1")

    submit(bot, slack, talk(media), unknown_length_audio(media), "r1")

    [quote] = private(slack, "r1")
    assert "Dub it" in quote and "may cost up to *4.80 credits*" in quote
    assert "an upper estimate: I couldn't learn the audio's length" in quote
    assert jogg.creates == []  # nothing sent before an answer


def test_a_provider_without_a_price_rule_is_refused_where_a_budget_applies(
    start_bot: Callable[..., BotThread],
    slack: FakeSlack,
    lipsyncdev_api: FakeLipSyncDev,
    redis_client: redis.Redis,
) -> None:
    slack.add_user(ADMIN, name="ada", is_admin=True)
    bot = start_bot(lipsyncdev_api_key=lipsyncdev_api.api_key, lipsyncdev_api_url=lipsyncdev_api.api_url)
    set_budget = bot.command(f"budget <#{CHANNEL}|general> 100 lipsyncdev", response_url="", user_id=ADMIN)
    assert "100.00 LipSync.dev credits" in set_budget.text

    bot.command(f"{VIDEO} https://cdn.example.com/voice.mp3 lipsyncdev", response_url=slack.response_url("r"))

    [refusal] = private(slack, "r")
    assert "LipSync.dev's price is not published" in refusal and "must never be overdrawn" in refusal
    assert "Nothing was charged" in refusal
    settle(redis_client)
    assert not lipsyncdev_api.jobs


def test_a_cost_not_known_in_advance_is_asked_about_in_the_default_providers_unit(
    start_bot: Callable[..., BotThread], slack: FakeSlack, lipsyncdev_api: FakeLipSyncDev
) -> None:
    bot = start_bot(
        lipsyncdev_api_key=lipsyncdev_api.api_key,
        lipsyncdev_api_url=lipsyncdev_api.api_url,
        default_provider="lipsyncdev",
        confirm_above="5",  # a bare amount: LipSync.dev credits, the default provider's unit
    )

    bot.command(f"{VIDEO} https://cdn.example.com/voice.mp3", response_url=slack.response_url("r"))

    [quote] = private(slack, "r")
    assert "LipSync.dev does not say what a dub costs before it is done" in quote
    assert "5.00 LipSync.dev credits above which I ask first" in quote and "Dub it" in quote
    assert not lipsyncdev_api.jobs


# ------------------------------------------------------------------------ shared files: measured lengths


def share(bot: BotThread, slack: FakeSlack, files: list[tuple[str, str, str, str, bytes]]) -> str:
    shared = [
        slack.add_file(file_id, name, mimetype, filetype, body, user=ALICE)  # no duration_ms
        for file_id, name, mimetype, filetype, body in files
    ]
    message = slack.add_message(SHARES, "", user=ALICE, files=shared)
    event = {**message, "channel": SHARES, "channel_type": "channel", "event_ts": message["ts"]}
    assert bot.event(event_callback(event)).status_code == 200
    return str(message["ts"])


@pytest.mark.parametrize("preflight", ["off", "on"])
def test_shared_files_without_a_slack_length_are_quoted_by_their_measured_length(
    start_bot: Callable[..., BotThread],
    slack: FakeSlack,
    jogg: FakeJogg,
    redis_client: redis.Redis,
    preflight: str,
) -> None:
    slack.add_user(ADMIN, name="ada", is_admin=True)
    bot = start_bot(preflight=preflight)
    bot.command(f"budget <@{ALICE}> 0.05", response_url="", user_id=ADMIN)
    video = media_samples.mp4(40.0, filler=20_000)
    audio = media_samples.mp3(10.0)  # 383 whole frames: 10.005 s, 0.09 credits

    ts = share(
        bot,
        slack,
        [
            ("FV1", "talk.mp4", "video/mp4", "mp4", video),
            ("FA1", "voice.mp3", "audio/mpeg", "mp3", audio),
        ],
    )

    [refusal] = wait_until(lambda: slack.replies(SHARES, ts), timeout=30)
    text = str(refusal)
    assert "needs about 0.09 credits" in text and "0.05 credits of 0.05 credits left" in text
    assert "upper estimate" not in text
    settle(redis_client)
    assert jogg.creates == [] and jogg.uploads == []
    # The bot token went to Slack's own file host, and only there.
    assert slack.downloads and all(d.had_valid_token for d in slack.downloads)


def test_a_shared_file_that_cannot_be_measured_is_quoted_at_the_ceiling(
    start_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg, redis_client: redis.Redis
) -> None:
    slack.add_user(ADMIN, name="ada", is_admin=True)
    bot = start_bot()
    bot.command(f"budget <@{ALICE}> 1", response_url="", user_id=ADMIN)

    ts = share(
        bot,
        slack,
        [
            ("FV1", "talk.mp4", "video/mp4", "mp4", media_samples.mp4(40.0, filler=20_000)),
            ("FA1", "voice.mp3", "audio/mpeg", "mp3", b"\x00\x01 no frames here " * 4000),
        ],
    )

    [refusal] = wait_until(lambda: slack.replies(SHARES, ts), timeout=30)
    assert re.search(r"may need up to 4\.80 credits .*couldn't learn the audio's length", str(refusal))
    settle(redis_client)
    assert jogg.creates == []
