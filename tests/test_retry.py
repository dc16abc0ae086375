"""One retry idiom per layer (bot/retry.py): every delay before trying again comes from `Backoff`, whose waits
stay within their bounds, stop growing at the cap, and honour a server's Retry-After up to its own cap; and no
module computes a delay sequence of its own (a doubling, a `2 **`, its own jitter, `sleep(attempt)`)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.jobs.decisions import backoff_ms, not_now_ms
from bot.lanes.turns import seat_wait_ms
from bot.retry import Backoff, retry_after_seconds

ROOT = Path(__file__).resolve().parent.parent
HELPER = ROOT / "bot" / "retry.py"
SAMPLES = 300
# Names of values that hold a wait: doubling one of them is a hand-rolled backoff.
DELAY_WORDS = ("delay", "pause", "wait", "backoff", "hold", "sleep", "retry")
# Names of counters of attempts: sleeping for one of them is a hand-rolled backoff.
COUNTER_WORDS = ("attempt", "tries", "errors", "failures", "in_a_row")


def test_each_wait_is_between_its_jittered_floor_and_the_doubled_ceiling() -> None:
    backoff = Backoff(base_s=0.5, cap_s=10.0, jitter=0.5)
    for attempt, ceiling in enumerate([0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0], start=1):
        waits = [backoff.delay_s(attempt) for _ in range(SAMPLES)]
        assert all(ceiling / 2 <= wait <= ceiling for wait in waits), (attempt, min(waits), max(waits))
        assert max(waits) - min(waits) > ceiling / 10  # jittered: jobs that failed together spread out


def test_the_wait_stops_growing_at_the_cap_however_many_failures() -> None:
    backoff = Backoff(base_s=1.0, cap_s=60.0, jitter=0.0)
    assert [backoff.delay_s(n) for n in (0, 1, 2, 7, 1000, 10**9)] == [1.0, 1.0, 2.0, 60.0, 60.0, 60.0]


def test_retry_after_is_honoured_up_to_its_cap() -> None:
    backoff = Backoff(base_s=1.0, cap_s=8.0, jitter=0.0, retry_after_cap_s=30.0)
    assert backoff.delay_s(1, retry_after_s=20.0) == 20.0  # longer than our own wait: the server's
    assert backoff.delay_s(4, retry_after_s=2.0) == 8.0  # shorter: ours
    assert backoff.delay_s(1, retry_after_s=10_000.0) == 30.0  # an absurd ask: the cap
    assert backoff.delay_s(1, retry_after_s=0.0) == 1.0
    assert backoff.delay_ms(1, retry_after_s=20.0) == 20_000
    # A policy without a cap for Retry-After does not take the server's word.
    assert Backoff(base_s=1.0, cap_s=8.0, jitter=0.0).delay_s(1, retry_after_s=20.0) == 1.0


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("3", 3.0),
        (" 12 ", 12.0),
        ("1.5", 1.5),
        (["4"], 4.0),
        (7, 7.0),
        (None, None),
        ("", None),
        ([], None),
        ("inf", None),
        ("nan", None),
        ("1e9", None),
        ("-1", None),
        ("\u00b2", None),  # superscript two: isdigit() says yes
        ("\u0661\u0662\u0660", None),  # Arabic-Indic 120: float() says yes
        ("Wed, 21 Oct 2015 07:28:00 GMT", None),
    ],
)
def test_retry_after_is_read_as_plain_seconds_or_not_at_all(header: object, seconds: float | None) -> None:
    assert retry_after_seconds(header) == seconds


@pytest.mark.parametrize(
    "arguments",
    [
        {"base_s": 0.0, "cap_s": 1.0},
        {"base_s": 2.0, "cap_s": 1.0},
        {"base_s": 1.0, "cap_s": 2.0, "jitter": 1.5},
        {"base_s": 1.0, "cap_s": 2.0, "retry_after_cap_s": -1.0},
    ],
)
def test_a_backoff_that_makes_no_sense_is_refused(arguments: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**arguments)


def test_job_steps_keep_their_documented_waits() -> None:
    """RELIABILITY.md guarantee 4: faults back off from 1 s doubling to a minute, "not now" waits 5 to 15 s,
    a job waiting for a seat looks again within 1 to 2 s."""
    for errors, ceiling in ((1, 1000), (2, 2000), (5, 16_000), (9, 60_000), (50, 60_000)):
        waits = [backoff_ms(errors) for _ in range(SAMPLES)]
        assert all(ceiling // 2 <= wait <= ceiling for wait in waits)
    assert all(5000 <= not_now_ms() <= 15_000 for _ in range(SAMPLES))
    assert all(1000 <= seat_wait_ms() <= 2000 for _ in range(SAMPLES))


def _names(node: ast.AST) -> Iterator[str]:
    for inner in ast.walk(node):
        if isinstance(inner, ast.Name):
            yield inner.id.lower()
        elif isinstance(inner, ast.Attribute):
            yield inner.attr.lower()


def _is_two(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value in (2, 2.0) and not isinstance(node.value, bool)


def _mentions(node: ast.AST, words: tuple[str, ...]) -> bool:
    return any(word in name for name in _names(node) for word in words)


def hand_rolled_delays(source: str, filename: str = "<source>") -> list[str]:
    """Where `source` computes a wait of its own: `2 ** n`, a wait doubled (`delay * 2`, `pause *= 2`),
    a sleep for an attempt counter (`sleep(attempt)`), or jitter drawn from `random`."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow) and _is_two(node.left):
            found.append(f"{filename}:{line}: 2 ** …")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
            other = node.right if _is_two(node.left) else node.left if _is_two(node.right) else None
            if other is not None and _mentions(other, DELAY_WORDS):
                found.append(f"{filename}:{line}: a wait doubled")
        elif isinstance(node, ast.AugAssign) and isinstance(node.op, ast.Mult) and _is_two(node.value):
            if _mentions(node.target, DELAY_WORDS):
                found.append(f"{filename}:{line}: a wait doubled")
        elif isinstance(node, ast.Call) and _callee(node) == "sleep" and node.args:
            # A wait computed from the counter in place; one asked of a policy (a call) is fine.
            computed = any(isinstance(inner, ast.Call) for inner in ast.walk(node.args[0]))
            if _mentions(node.args[0], COUNTER_WORDS) and not computed:
                found.append(f"{filename}:{line}: sleep for an attempt count")
        elif isinstance(node, ast.Import | ast.ImportFrom):
            modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module]
            if "random" in modules:
                found.append(f"{filename}:{line}: jitter drawn from random")
    return found


def _callee(call: ast.Call) -> str:
    function = call.func
    return function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")


@pytest.mark.parametrize(
    "snippet",
    [
        "import random\ndelay = base + random.randint(0, base)",
        "wait = min(10.0, 0.25 * 2**failures)",
        "ceiling = min(cap_ms, base_ms * 2 ** max(0, errors - 1))",
        "pause = min(cap_s, pause * 2)",
        "delay = min(max(delay * 2, FIRST), MAX)",
        "self.delay *= 2",
        "await asyncio.sleep(attempt)",
        "time.sleep(0.1 * tries)",
    ],
)
def test_the_scan_finds_the_hand_rolled_delays_it_replaced(snippet: str) -> None:
    assert hand_rolled_delays(f"async def f():\n    {snippet.replace(chr(10), chr(10) + '    ')}\n") != []


def test_no_module_computes_a_delay_of_its_own() -> None:
    """Every wait comes from `bot.retry.Backoff` (CONTRIBUTING.md, "Retries: one idiom per layer")."""
    found = [
        hit
        for top in ("bot", "handlers")
        for path in sorted((ROOT / top).rglob("*.py"))
        if path != HELPER
        for hit in hand_rolled_delays(path.read_text(), str(path.relative_to(ROOT)))
    ]
    assert found == []
