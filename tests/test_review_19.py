"""Review of issue 19: gaps found by driving the fixed bot from outside.

The unknown-cost rule at an upgrade: a bot from before the rule admitted a job whose length it could not
learn at 0, and such a job may still wait in the submit lane (in line for the provider's POST slot, its
files being hosted) when the new version takes over. It must reserve its upper estimate before it is paid
for, or be refused, like any job admitted now.

The tenant rule on Enterprise Grid: an org admin counts for a workspace of their own org only, and which
org a workspace is part of is read from the workspace's own object in the payload (`team.enterprise_id`),
not from another field that may name another org (the clicking person's, in a channel shared between orgs).

The link check learns a link's length or refuses it: a ranged answer whose `Content-Range` does not say the
file's length (`bytes 0-262143/*`, which RFC 9110 allows) ends where the range ends, not where the file
does, so its bytes are not the whole file (an hour of audio was measured as 16 s, and quoted so).

A provider's answer is outside text: a cost it reports beyond any budget (LipSync.dev's `creditsUsed` of
1E+12) is settled as the most a budget can hold, not raised on in every settle (the job was stuck in the
send lane, a traceback each round, its reply never marked done).

JoggAI's envelope is outside text too: a `code` written as a string of other digits ("²", Arabic-Indic)
or of thousands of digits is no envelope (a malformed answer, retried as such), not a ValueError out of
the parser (a traceback in the step, the job ended as an internal error).

sync.so's `Retry-After` alike: a value in other digits ("²", Arabic-Indic) is no delay asked for (the 429
is held back by the client's own backoff), never a ValueError out of the create.

One set of checks everywhere: the lint and type commands README and CONTRIBUTING give are exactly the
stages `.ci/run` runs, in its order, and none of them rewrites files.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from decimal import Decimal

import pytest
import redis
from redis.asyncio import Redis

from bot.jobs.model import new_job_id, short_id
from bot.jobs.store import Store
from bot.money.budgets import MAX_AMOUNT, Ledger
from bot.providers.base import ErrorKind, ProviderError
from bot.providers.sync import HOLD_BASE_S
from tests import media_samples
from tests.fakes.jogg_api import FakeJogg, Fault, Outcome
from tests.fakes.lipsyncdev_api import FakeLipSyncDev
from tests.fakes.lipsyncdev_api import Outcome as DevOutcome
from tests.fakes.media_server import Item, MediaServer
from tests.fakes.server import wait_until
from tests.fakes.slack_api import FakeSlack
from tests.fakes.sync_api import FakeSync
from tests.fakes.sync_api import Fault as SyncFault
from tests.harness import REPO, BotThread, stored_job
from tests.test_build import _commands
from tests.test_jogg_provider import ORDER
from tests.test_jogg_provider import call as jogg_call
from tests.test_money import media, money_bot, private, submit, talk  # noqa: F401 (fixtures)
from tests.test_providers import settle
from tests.test_sync_client import ORDER as SYNC_ORDER
from tests.test_sync_client import failure
from tests.test_tenancy import add_people, failed_job, press, reads_as_missing, stored

TEAM = "T0TEST"
CHANNEL = "C0GENERAL"
VIDEO = "https://cdn.example.com/talk.mp4"
AUDIO = "https://cdn.example.com/voice-fr.mp3"
ALICE = "U0ALICE"
ENDED = ("succeeded", "failed", "cancelled", "timed_out")


def _left_by_the_old_version(redis_url: str, slack: FakeSlack, count: int, budget: Decimal) -> list[str]:
    """`count` link jobs as a bot from before the unknown-cost rule left them: let through the gate
    (`checked`) with no quote (the length unknown) and a reservation of 0, not yet sent; and Alice's
    monthly budget."""

    async def store() -> list[str]:
        client = Redis.from_url(redis_url)
        try:
            jobs, ledger = Store.on(client), Ledger(client)
            await ledger.set_limit(TEAM, "user", ALICE, "credits", budget)
            ids = []
            for n in range(count):
                job = stored_job(
                    id=new_job_id(),
                    team_id=TEAM,
                    channel=CHANNEL,
                    user=ALICE,
                    response_url=slack.response_url(f"old{n}"),
                    provider="jogg",
                    video_url=f"https://cdn.example.com/talk{n}.mp4",
                    audio_url=f"https://cdn.example.com/voice{n}.mp3",
                    timeout_s=600,
                    checked=1,
                    quote_unit="credits",
                )
                assert await jobs.records.create(job)
                assert (await ledger.admit(job.id, TEAM, CHANNEL, ALICE, "credits", Decimal(0))).admitted
                ids.append(job.id)
            return ids
        finally:
            await client.aclose()

    return asyncio.run(store())


def _spent(redis_url: str) -> Decimal:
    async def read() -> Decimal:
        client = Redis.from_url(redis_url)
        try:
            return await Ledger(client).spent(TEAM, "user", ALICE, "credits")
        finally:
            await client.aclose()

    return asyncio.run(read())


def test_jobs_an_older_version_admitted_at_zero_reserve_their_estimate_before_they_are_sent(
    start_bot: Callable[..., BotThread],
    slack: FakeSlack,
    jogg: FakeJogg,
    redis_url: str,
    redis_client: redis.Redis,
) -> None:
    # Each dub really costs 0.80 credits (100 s); a length not known counts as 600 s: 4.80 credits.
    jogg.default_outcome = Outcome("success", polls=1, duration_seconds=100)
    first, second = _left_by_the_old_version(redis_url, slack, 2, Decimal("5"))

    start_bot(unknown_length_seconds=600)

    def status(job_id: str) -> str:
        return str(redis_client.hget(f"{{lip}}:job:{job_id}", "status") or "")

    wait_until(lambda: status(first) in ENDED and status(second) in ENDED, timeout=30)
    # The first reserves 4.80 of the 5 and is dubbed; the second may need 4.80 more: refused, never sent.
    assert [status(first), status(second)] == ["succeeded", "failed"]
    assert redis_client.hget(f"{{lip}}:job:{second}", "error_code") == "refused_budget"
    assert len(jogg.creates) == 1
    wait_until(lambda: _spent(redis_url) == Decimal("0.8"), timeout=20)  # settled to the real cost


def test_an_admin_of_another_org_is_nobody_here_whatever_org_the_payload_names_elsewhere(
    start_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg, redis_client: redis.Redis
) -> None:
    add_people(slack)
    other_org = {"enterprise_id": "E0OTHER", "is_admin": True, "is_owner": True}
    slack.add_user("W0SAM", name="sam", team_id="T0ELSEWHERE", enterprise_user=other_org)
    slack.add_user(
        "W0OLGA",
        name="olga",
        team_id="T0SISTER",
        enterprise_user={"enterprise_id": "E0ACME", "is_admin": True},
    )
    bot, job_id = failed_job(start_bot, slack, jogg)
    settle(redis_client)
    before = stored(redis_client)
    # This workspace is part of E0ACME (its own object says so); the top-level field names Sam's org.
    click_from = {
        "team": {"id": TEAM, "domain": "acme", "enterprise_id": "E0ACME", "enterprise_name": "Acme"},
        "enterprise": {"id": "E0OTHER", "name": "Other"},
        "user": {"id": "W0SAM", "username": "sam", "name": "sam", "team_id": "T0ELSEWHERE"},
    }
    for action in ("job_retry", "job_again_anyway", "job_cancel"):
        answer = press(bot, slack, action, job_id, f"sam-{action}", "W0SAM", TEAM, click_from)
        assert reads_as_missing(answer, job_id), (action, answer)
    settle(redis_client)
    assert stored(redis_client) == before and len(jogg.creates) == 1  # no job, no paid task, no retry used

    # E0ACME's own admin still may (the workspace's org was not taken for Sam's).
    acme = {**click_from, "enterprise": {"id": "E0ACME", "name": "Acme"}}
    acme["user"] = {"id": "W0OLGA", "username": "olga", "name": "olga", "team_id": "T0SISTER"}
    answer = press(bot, slack, "job_retry", job_id, "olga", "W0OLGA", TEAM, acme)
    assert f"Retrying job `{short_id(job_id)}`" in str(answer["text"])


def test_a_link_whose_ranged_answer_hides_its_length_is_refused_not_measured_by_its_first_bytes(
    money_bot: Callable[..., BotThread],  # noqa: F811
    slack: FakeSlack,
    jogg: FakeJogg,
    media: MediaServer,  # noqa: F811
    redis_client: redis.Redis,
) -> None:
    # An hour of audio; HEAD not allowed; each range answered with `Content-Range: bytes a-b/*`.
    hour = Item(media_samples.mp3(3600), "audio/mpeg", head_status=405, total_unknown=True)
    audio = media.add("/hour.mp3", hour)
    bot = money_bot()

    job = submit(bot, slack, talk(media), audio, "r1")

    [answer] = private(slack, "r1")
    assert "does not say how large" in answer
    assert redis_client.hget(f"{{lip}}:job:{job.id}", "error_code") == "link_refused"
    assert jogg.creates == []


def test_a_cost_beyond_any_budget_reported_by_a_provider_ends_the_job_and_uses_up_the_budget(
    start_bot: Callable[..., BotThread],
    slack: FakeSlack,
    lipsyncdev_api: FakeLipSyncDev,
    redis_url: str,
    redis_client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    lipsyncdev_api.default_outcome = DevOutcome("success", polls=1, credits=Decimal("1E+12"))
    bot = start_bot(
        jogg_api_key=None,
        lipsyncdev_api_key=lipsyncdev_api.api_key,
        lipsyncdev_api_url=lipsyncdev_api.api_url,
    )
    bot.command(f"{VIDEO} {AUDIO}", response_url=slack.response_url("r"))

    def done() -> bool:
        [key] = redis_client.keys("{lip}:job:*") or [""]
        return (
            bool(key)
            and redis_client.hget(key, "status") == "succeeded"
            and not redis_client.zcard("{lip}:send")
        )

    wait_until(done, timeout=20)  # the reply is posted and the job has left the send lane
    [key] = redis_client.keys("{lip}:job:*")
    assert redis_client.hget(key, "last_error") in (None, "")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]

    async def spent() -> Decimal:
        client = Redis.from_url(redis_url)
        try:
            return await Ledger(client).spent(TEAM, "user", ALICE, "LipSync.dev credits")
        finally:
            await client.aclose()

    assert asyncio.run(spent()) == MAX_AMOUNT  # counted as all a budget can hold


def test_readme_and_contributing_give_exactly_the_checks_ci_runs() -> None:
    checks = [
        c for c in _commands((REPO / ".ci" / "run").read_text()) if re.match(r"\.venv/bin/(ruff|mypy)", c)
    ]
    assert checks and all("--check" in c or " check " in c or c.endswith("mypy") for c in checks)
    for name in ("README.md", "CONTRIBUTING.md"):
        text = (REPO / name).read_text()
        # Every line that runs ruff check or mypy: the one line of CI's checks (`ruff format .` alone, the
        # fix for what the check complains of, is not a check).
        lines = [
            line.split("#")[0].strip()
            for line in text.splitlines()
            if re.search(r"ruff check|bin/mypy|ruff format --check", line)
        ]
        commands = [re.sub(r"^.*?(\.venv/bin/)", r"\1", line).rstrip("`. ") for line in lines]
        assert commands, name
        assert all(c.split(" && ") == checks for c in commands), (name, commands, checks)


@pytest.mark.parametrize(
    "code", ["\u00b2", "\u0661\u0660\u0661\u0660\u0665", "1" * 5000], ids=["superscript", "arabic", "huge"]
)
def test_a_jogg_code_in_other_digits_or_endless_digits_is_a_malformed_answer(
    jogg: FakeJogg, code: str
) -> None:
    jogg.inject("create", Fault("code", code=code))
    with pytest.raises(ProviderError) as caught:
        jogg_call(jogg, "create", ORDER)
    assert (
        caught.value.kind is ErrorKind.TRANSIENT and caught.value.ambiguous
    )  # the create may have been made


@pytest.mark.parametrize("retry_after", ["\u00b2", "\u0661\u0662\u0660"], ids=["superscript", "arabic"])
def test_a_sync_retry_after_in_other_digits_is_no_delay_asked_for(
    sync_api: FakeSync, retry_after: str
) -> None:
    sync_api.inject("generate", SyncFault("http", status=429, retry_after=retry_after))
    refusal = failure(sync_api, lambda provider: provider.create(SYNC_ORDER))
    assert refusal.kind is ErrorKind.RATE_LIMITED and not refusal.ambiguous
    assert refusal.retry_after_s == HOLD_BASE_S  # the client's own first backoff
