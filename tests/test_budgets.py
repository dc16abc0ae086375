"""Monthly budgets against a real Redis: reservations that fit every budget, exact amounts, months by
Redis time, and no overdraft when several processes admit at once."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
from redis.asyncio import Redis

from bot.jobs.keys import budget_reservation_key, budget_spent_key
from bot.money.budgets import (
    RESERVATION_TTL_SECONDS,
    SPENT_TTL_SECONDS,
    Admission,
    Ledger,
    Limit,
    from_micros,
    to_micros,
)
from bot.parsing.command import BudgetCommand, InvalidCommand, parse_lipsync_text
from bot.providers.jogg import credits_for

T = TypeVar("T")
D = Decimal
TEAM = "T1"
REPO = Path(__file__).resolve().parent.parent


def run(redis_url: str, body: Callable[[Redis], Awaitable[T]], *, decode: bool = False) -> T:
    async def main() -> T:
        client = Redis.from_url(redis_url, decode_responses=decode)
        try:
            return await body(client)
        finally:
            await client.aclose()

    return asyncio.run(main())


def unix(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


def snapshot(client: redis.Redis) -> dict[str, Any]:
    """Every budget key with its contents: to show that a refusal changed nothing at all."""
    return {key: client.hgetall(key) for key in sorted(client.scan_iter("{lip}:budget:*"))}


async def spends(ledger: Ledger, channel: str, user: str, unit: str = "credits") -> tuple[Decimal, Decimal]:
    return (
        await ledger.spent(TEAM, "channel", channel, unit),
        await ledger.spent(TEAM, "user", user, unit),
    )


# ------------------------------------------------------------------------------------------- limits


def test_limits_are_set_shown_changed_and_removed(redis_url: str) -> None:
    async def body(r: Redis) -> None:
        ledger = Ledger(r)
        assert await ledger.limits(TEAM) == []
        await ledger.set_limit(TEAM, "user", "U1", "credits", D("20"))
        await ledger.set_limit(TEAM, "channel", "C1", "credits", D("50"))
        await ledger.set_limit(TEAM, "user", "U1", "USD", D("12.50"))
        await ledger.set_limit("T2", "channel", "C9", "credits", D("1"))
        assert await ledger.limits(TEAM) == [
            Limit("channel", "C1", "credits", D("50"), D("0")),
            Limit("user", "U1", "USD", D("12.5"), D("0")),
            Limit("user", "U1", "credits", D("20"), D("0")),
        ]
        await ledger.set_limit(TEAM, "channel", "C1", "credits", D("15"))
        await ledger.set_limit(TEAM, "user", "U1", "USD", None)
        await ledger.set_limit(TEAM, "user", "U404", "USD", None)  # removing what is not there is fine
        limits = await ledger.limits(TEAM)
        assert limits == [
            Limit("channel", "C1", "credits", D("15"), D("0")),
            Limit("user", "U1", "credits", D("20"), D("0")),
        ]
        assert [str(lim.amount) for lim in limits] == ["15", "20"]  # never "1.5E+1" or "15.000000"
        assert await ledger.limits("T2") == [Limit("channel", "C9", "credits", D("1"), D("0"))]

        for scope, scope_id, unit, amount in [
            ("team", "T1", "credits", D(1)),
            ("user", "U1", "credits", D(-1)),
            ("user", "U1", "credits", D("NaN")),
            ("user", "U:1", "credits", D(1)),
            ("user", "U1", "", D(1)),
        ]:
            with pytest.raises(ValueError):
                await ledger.set_limit(TEAM, scope, scope_id, unit, amount)
        assert len(await ledger.limits(TEAM)) == 2

    run(redis_url, body)


def test_units_are_opaque_even_with_colons(redis_url: str) -> None:
    async def body(r: Redis) -> None:
        ledger = Ledger(r)
        await ledger.set_limit(TEAM, "user", "U1", "sync:USD", D("2"))
        assert (await ledger.admit("j1", TEAM, "C1", "U1", "sync:USD", D("1.5"))).admitted
        assert await ledger.limits(TEAM) == [Limit("user", "U1", "sync:USD", D("2"), D("1.5"))]

    run(redis_url, body)


# ---------------------------------------------------------------------------------------- admission


def test_admission_within_limits_reserves_on_channel_and_person(
    redis_url: str, redis_client: redis.Redis
) -> None:
    async def body(r: Redis) -> Admission:
        ledger = Ledger(r)
        await ledger.set_limit(TEAM, "channel", "C1", "credits", D("50"))
        await ledger.set_limit(TEAM, "user", "U1", "credits", D("20"))
        got = await ledger.admit("j1", TEAM, "C1", "U1", "credits", D("3.2"))
        assert got == Admission(True, month=await ledger.month())
        assert await spends(ledger, "C1", "U1") == (D("3.2"), D("3.2"))
        # The person's spend counts across channels; other units are apart.
        assert (await ledger.admit("j2", TEAM, "C2", "U1", "credits", D("1"))).admitted
        assert await spends(ledger, "C1", "U1") == (D("3.2"), D("4.2"))
        assert await ledger.spent(TEAM, "channel", "C2", "credits") == D("1")
        assert await ledger.spent(TEAM, "user", "U1", "USD") == 0
        assert await ledger.limits(TEAM) == [
            Limit("channel", "C1", "credits", D("50"), D("3.2")),
            Limit("user", "U1", "credits", D("20"), D("4.2")),
        ]
        return got

    got = run(redis_url, body)
    record = redis_client.hgetall(budget_reservation_key("j1"))
    assert record == {
        "month": got.month,
        "team": TEAM,
        "channel": "C1",
        "user": "U1",
        "unit": "credits",
        "micros": "3200000",
    }
    assert (
        RESERVATION_TTL_SECONDS - 5
        < redis_client.ttl(budget_reservation_key("j1"))
        <= RESERVATION_TTL_SECONDS
    )
    assert SPENT_TTL_SECONDS - 5 < redis_client.ttl(budget_spent_key(TEAM, got.month)) <= SPENT_TTL_SECONDS
    assert redis_client.ttl(f"{{lip}}:budget:limits:{TEAM}") == -1  # limits stay until removed


@pytest.mark.parametrize(
    ("channel_budget", "user_budget", "refused_scope"),
    [("10", "20", "channel"), ("20", "10", "user"), ("10", "10", "channel")],
)
def test_a_quote_that_would_overdraw_either_budget_is_refused_and_changes_nothing(
    redis_url: str, redis_client: redis.Redis, channel_budget: str, user_budget: str, refused_scope: str
) -> None:
    async def body(r: Redis) -> None:
        ledger = Ledger(r)
        await ledger.set_limit(TEAM, "channel", "C1", "credits", D(channel_budget))
        await ledger.set_limit(TEAM, "user", "U1", "credits", D(user_budget))
        assert (await ledger.admit("j1", TEAM, "C1", "U1", "credits", D("7.5"))).admitted
        before = snapshot(redis_client)

        got = await ledger.admit("j2", TEAM, "C1", "U1", "credits", D("3"))

        assert not got.admitted and got.refused_by is not None
        scope_id = "C1" if refused_scope == "channel" else "U1"
        budget = channel_budget if refused_scope == "channel" else user_budget
        assert got.refused_by == Limit(refused_scope, scope_id, "credits", D(budget), D("7.5"))
        assert got.refused_by.left == D("2.5")
        assert snapshot(redis_client) == before
        assert redis_client.exists(budget_reservation_key("j2")) == 0
        assert await spends(ledger, "C1", "U1") == (D("7.5"), D("7.5"))
        # What still fits is admitted.
        assert (await ledger.admit("j3", TEAM, "C1", "U1", "credits", D("2.5"))).admitted
        assert await spends(ledger, "C1", "U1") == (D("10"), D("10"))

    run(redis_url, body)


def test_a_quote_of_0_is_admitted_only_while_there_is_room(redis_url: str) -> None:
    async def body(r: Redis) -> None:
        ledger = Ledger(r)
        await ledger.set_limit(TEAM, "user", "U1", "credits", D("5"))
        assert (await ledger.admit("j1", TEAM, "C1", "U1", "credits", D("4"))).admitted
        assert (await ledger.admit("j2", TEAM, "C1", "U1", "credits", D("0"))).admitted
        assert (await ledger.admit("j3", TEAM, "C1", "U1", "credits", D("1"))).admitted  # fills it exactly
        full = await ledger.admit("j4", TEAM, "C1", "U1", "credits", D("0"))
        assert full.refused_by == Limit("user", "U1", "credits", D("5"), D("5"))
        await ledger.set_limit(TEAM, "channel", "C2", "credits", D("0"))  # a budget of 0 stops everything
        assert not (await ledger.admit("j5", TEAM, "C2", "U2", "credits", D("0"))).admitted
        assert await spends(ledger, "C1", "U1") == (D("5"), D("5"))

    run(redis_url, body)


def test_admitting_the_same_job_twice_reserves_once(redis_url: str) -> None:
    async def body(r: Redis) -> None:
        ledger = Ledger(r)
        await ledger.set_limit(TEAM, "user", "U1", "credits", D("3"))
        first = await ledger.admit("j1", TEAM, "C1", "U1", "credits", D("2"))
        again = await ledger.admit("j1", TEAM, "C1", "U1", "credits", D("2"))  # would not fit twice
        assert first.admitted and not first.repeated
        assert again.admitted and again.repeated and again.month == first.month
        assert await spends(ledger, "C1", "U1") == (D("2"), D("2"))

    run(redis_url, body)


def test_without_budgets_every_job_is_admitted_and_counted(redis_url: str) -> None:
    async def body(r: Redis) -> None:
        ledger = Ledger(r)
        assert (await ledger.admit("j1", TEAM, "CGEN", "U1", "credits", D("1.25"))).admitted
        assert (await ledger.admit("j2", TEAM, "CGEN", "U2", "credits", D("1.95"))).admitted
        assert await ledger.spent(TEAM, "channel", "CGEN", "credits") == D("3.2")
        assert await ledger.spent(TEAM, "user", "U1", "credits") == D("1.25")
        assert await ledger.spent(TEAM, "user", "U2", "credits") == D("1.95")
        assert await ledger.spent("T2", "channel", "CGEN", "credits") == 0  # teams are apart
        assert await ledger.limits(TEAM) == []
        assert f"{await ledger.spent(TEAM, 'channel', 'CGEN', 'credits'):.2f}" == "3.20"

    run(redis_url, body, decode=True)  # either kind of client


# ------------------------------------------------------------------------------------------- settle


def test_settling_moves_the_reservation_to_the_actual_cost_once(redis_url: str) -> None:
    async def body(r: Redis) -> None:
        ledger = Ledger(r)
        await ledger.set_limit(TEAM, "channel", "C1", "credits", D("10"))
        assert (await ledger.admit("low", TEAM, "C1", "U1", "credits", D("5"))).admitted
        assert await ledger.settle("low", D("3.5"))
        assert await spends(ledger, "C1", "U1") == (D("3.5"), D("3.5"))
        assert not await ledger.settle("low", D("3.5"))  # a retried settle does nothing
        assert not await ledger.settle("low", D("9"))
        assert await spends(ledger, "C1", "U1") == (D("3.5"), D("3.5"))

        # A job that costs more than quoted counts what it cost, past the budget if need be.
        assert (await ledger.admit("high", TEAM, "C1", "U1", "credits", D("6"))).admitted
        assert await ledger.settle("high", D("7.25"))
        assert await spends(ledger, "C1", "U1") == (D("10.75"), D("10.75"))
        [limit] = await ledger.limits(TEAM)
        assert limit.spent == D("10.75") and limit.left == 0
        assert not (await ledger.admit("next", TEAM, "C1", "U1", "credits", D("0"))).admitted

        # Released (actual 0): as if it never ran.
        await ledger.set_limit(TEAM, "channel", "C1", "credits", D("20"))
        assert (await ledger.admit("failed", TEAM, "C1", "U1", "credits", D("4"))).admitted
        assert await spends(ledger, "C1", "U1") == (D("14.75"), D("14.75"))
        assert await ledger.settle("failed", D("0"))
        assert await spends(ledger, "C1", "U1") == (D("10.75"), D("10.75"))

        assert not await ledger.settle("never-admitted", D("1"))

    run(redis_url, body)


# -------------------------------------------------------------------------------------------- months


def test_the_month_is_redis_time_in_utc(redis_url: str, redis_client: redis.Redis) -> None:
    def month_of(seconds: int) -> str:
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m")

    before = int(redis_client.time()[0])
    month = run(redis_url, lambda r: Ledger(r).month())
    after = int(redis_client.time()[0])
    assert month in {month_of(before), month_of(after)}


def test_the_month_conversion_is_right_on_every_boundary(redis_url: str) -> None:
    cases: list[tuple[int, str]] = [
        (0, "1970-01"),
        (unix("2000-02-29T23:59:59"), "2000-02"),  # divisible by 400: leap
        (unix("2024-02-29T00:00:00"), "2024-02"),
        (unix("2024-02-29T23:59:59"), "2024-02"),
        (unix("2024-03-01T00:00:00"), "2024-03"),
        (unix("2100-02-28T23:59:59"), "2100-02"),  # divisible by 100 only: no Feb 29
        (unix("2100-03-01T00:00:00"), "2100-03"),
        (unix("2025-12-31T23:59:59"), "2025-12"),
        (unix("2026-01-01T00:00:00"), "2026-01"),
    ]
    for year in range(1999, 2102):
        for month in range(1, 13):
            start = unix(f"{year:04d}-{month:02d}-01T00:00:00")
            cases += [(start, f"{year:04d}-{month:02d}"), (start - 1, _previous_month(year, month))]

    async def body(r: Redis) -> list[str]:
        return [await Ledger(r, now_s=seconds).month() for seconds, _ in cases]

    assert run(redis_url, body) == [expected for _, expected in cases]


def _previous_month(year: int, month: int) -> str:
    return f"{year - 1:04d}-12" if month == 1 else f"{year:04d}-{month - 1:02d}"


def test_a_job_settles_in_the_month_it_was_admitted_and_budgets_restart_monthly(redis_url: str) -> None:
    async def body(r: Redis) -> None:
        november = Ledger(r, now_s=unix("2025-11-30T23:59:59"))
        december = Ledger(r, now_s=unix("2025-12-01T00:00:00"))
        await november.set_limit(TEAM, "user", "U1", "credits", D("5"))
        got = await november.admit("j1", TEAM, "C1", "U1", "credits", D("4"))
        assert got.admitted and got.month == "2025-11"
        assert not (await november.admit("j2", TEAM, "C1", "U1", "credits", D("2"))).admitted
        # A new month: the same budget, all of it left.
        assert (await december.admit("j3", TEAM, "C1", "U1", "credits", D("5"))).admitted
        assert await december.settle("j1", D("3"))  # settled in December, against November
        assert await spends(november, "C1", "U1") == (D("3"), D("3"))
        assert await spends(december, "C1", "U1") == (D("5"), D("5"))
        assert [lim.spent for lim in await november.limits(TEAM)] == [D("3")]
        assert [lim.spent for lim in await december.limits(TEAM)] == [D("5")]

    run(redis_url, body)


# ------------------------------------------------------------------------------------------ exactness


def test_amounts_are_exact(redis_url: str) -> None:
    async def body(r: Redis) -> None:
        ledger = Ledger(r)
        await ledger.set_limit(TEAM, "channel", "C1", "credits", D("0.5"))
        assert (await ledger.admit("a", TEAM, "C1", "U1", "credits", D("0.248"))).admitted
        assert (await ledger.admit("b", TEAM, "C1", "U1", "credits", D("0.252"))).admitted
        assert await ledger.spent(TEAM, "channel", "C1", "credits") == D("0.5")
        assert str(await ledger.spent(TEAM, "channel", "C1", "credits")) == "0.5"
        assert not (await ledger.admit("c", TEAM, "C1", "U1", "credits", D("0.000001"))).admitted

        # 35 s of JoggAI output is quoted 0.28 credits; three of them fill 0.84 exactly (in floats
        # 0.28 * 3 is 0.8400000000000001, which would refuse the third).
        quote = credits_for(35)
        assert quote == D("0.28")
        await ledger.set_limit(TEAM, "channel", "C2", "credits", D("0.84"))
        got = [await ledger.admit(f"j{n}", TEAM, "C2", "U2", "credits", quote) for n in range(4)]
        assert [a.admitted for a in got] == [True, True, True, False]
        assert await ledger.spent(TEAM, "channel", "C2", "credits") == D("0.84")

    run(redis_url, body)


def test_micro_unit_rounding_never_favours_overspending() -> None:
    assert to_micros(D("0.0000001"), round_up=True) == 1  # a quote or cost rounds up
    assert to_micros(D("1.0000009"), round_up=False) == 1_000_000  # a budget rounds down
    assert to_micros(D("100000000.000000000000000000000000000001"), round_up=True) == 100_000_000_000_001
    assert to_micros(D("1E+3"), round_up=True) == 1_000_000_000
    assert from_micros(20_000_000) == D("20") and str(from_micros(20_000_000)) == "20"
    assert str(from_micros(1)) == "0.000001"
    for bad in (D(-1), D("Infinity"), D("1E+10")):
        with pytest.raises(ValueError):
            to_micros(bad, round_up=True)


# ---------------------------------------------------------------------------------------- concurrency

# Admits `count` jobs at once, each quoting 1 credit, in a process of its own: opens its connections and
# loads the script first, says it is ready, waits for the go (so that both processes admit at the same
# time), then prints [admitted, refusing scope, its spent] per job.
_ADMITTER = """
import asyncio, json, sys
from decimal import Decimal
import redis
from bot.money.budgets import Ledger
from bot.redis_client import connect

url, name, count, channel, user = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]

async def main():
    client = connect(url)
    ledger = Ledger(client)
    await asyncio.gather(*(client.ping() for _ in range(count)))
    await ledger.admit(f'warm-{name}', 'T-warm', channel, user, 'credits', Decimal(0))
    sync = redis.Redis.from_url(url)
    sync.rpush('budget-test:ready', name)
    assert sync.blpop(['budget-test:go'], timeout=60), 'no go'
    results = await asyncio.gather(*(
        ledger.admit(f'{name}-{n}', 'T1', channel, user, 'credits', Decimal(1)) for n in range(count)
    ))
    await client.aclose()
    return [
        [a.admitted, a.refused_by and a.refused_by.scope, a.refused_by and str(a.refused_by.spent)]
        for a in results
    ]

print(json.dumps(asyncio.run(main())))
"""


@pytest.mark.parametrize(
    ("channel_budget", "user_budget", "refusing"),
    [("20", None, "channel"), ("30", "20", "user")],
    ids=["channel-budget", "tighter-user-budget"],
)
def test_two_processes_admitting_at_once_never_overdraw(
    redis_url: str,
    redis_client: redis.Redis,
    channel_budget: str,
    user_budget: str | None,
    refusing: str,
) -> None:
    async def set_limits(r: Redis) -> None:
        ledger = Ledger(r)
        await ledger.set_limit(TEAM, "channel", "C1", "credits", D(channel_budget))
        if user_budget is not None:
            await ledger.set_limit(TEAM, "user", "U1", "credits", D(user_budget))

    run(redis_url, set_limits)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _ADMITTER, redis_url, name, "25", "C1", "U1"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in ("p1", "p2")
    ]
    try:
        ready = [redis_client.blpop(["budget-test:ready"], timeout=60) for _ in procs]
        assert all(ready), "an admitter did not start"
        redis_client.rpush("budget-test:go", *(["go"] * len(procs)))
        outputs = [proc.communicate(timeout=60)[0] for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert [proc.returncode for proc in procs] == [0, 0]

    results = [row for out in outputs for row in json.loads(out)]
    assert len(results) == 50
    assert sum(1 for admitted, _, _ in results if admitted) == 20
    # Each refusal saw the budget full, never past it.
    assert {(scope, spent) for admitted, scope, spent in results if not admitted} == {(refusing, "20")}

    async def final(r: Redis) -> tuple[tuple[Decimal, Decimal], int]:
        ledger = Ledger(r)
        return await spends(ledger, "C1", "U1"), len(await r.keys("{lip}:budget:job:p*"))

    assert run(redis_url, final) == ((D("20"), D("20")), 20)


def test_a_cost_nothing_bounds_is_refused_by_any_budget_and_reserves_nothing_elsewhere(
    redis_url: str, redis_client: redis.Redis
) -> None:
    async def body(r: Redis) -> None:
        ledger = Ledger(r)
        await ledger.set_limit(TEAM, "user", "U1", "credits", D("1000"))
        before = snapshot(redis_client)
        refused = await ledger.admit("j1", TEAM, "C1", "U1", "credits", None)
        assert refused.refused_by == Limit("user", "U1", "credits", D("1000"), D("0"))
        assert snapshot(redis_client) == before
        # No budget in that unit, for that channel or person: admitted, reserving nothing.
        assert (await ledger.admit("j2", TEAM, "C2", "U2", "credits", None)).admitted
        assert (await ledger.admit("j3", TEAM, "C1", "U1", "USD", None)).admitted
        assert await spends(ledger, "C2", "U2") == (D("0"), D("0"))
        assert await ledger.settle("j2", D("7"))  # settled to what it really cost
        assert await spends(ledger, "C2", "U2") == (D("7"), D("7"))

    run(redis_url, body)


@pytest.mark.parametrize(
    ("typed", "amount"),
    [
        ("50", "50"),
        ("12.5", "12.5"),
        ("$20", "20"),
        ("1,000", "1000"),
        ("1,000.25", "1000.25"),
        (".5", "0.5"),
    ],
)
def test_budget_amounts_in_ascii_decimals(typed: str, amount: str) -> None:
    command = parse_lipsync_text(f"budget <#C0DUB|dubbing> {typed}")
    assert isinstance(command, BudgetCommand) and command.amount == D(amount)


# Arabic-Indic 10, fullwidth 10, Arabic-Indic 3.5, superscript 2, and ASCII shapes that are no amount.
@pytest.mark.parametrize(
    "typed",
    ["\u0661\u0660", "\uff11\uff10", "1,,,0", "1,0", "10,00", "1e3", "\u0663.\u0665", "\u00b2", "5,", "$"],
)
def test_budget_amounts_in_other_digits_or_shapes_are_refused(typed: str) -> None:
    with pytest.raises(InvalidCommand, match="is not an amount"):
        parse_lipsync_text(f"budget <#C0DUB|dubbing> {typed}")
