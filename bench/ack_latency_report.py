"""What one run of bench/ack_latency.py measured (`Run`, under an arrival pattern, `Mode`), and the report
over the runs: the figures by server, the targets, the profiles.
"""

from __future__ import annotations

import io
import pstats
import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import percentile, print_table, spread, verdict

WARMUP_REQUESTS = 100  # not counted: the first requests of a fresh process pay for imports and connections
# The targets (on the medians of the runs): the ack of a lone command below today's bare Bolt (whose
# ack polling alone costs ~10 ms); under 50 back-to-back senders p99 < 100 ms and within 1.5x the bare
# app's, at least 0.7x its throughput, and at most 0.9 ms of CPU per command.
SINGLE_P50_TARGET_MS = 5.0
P99_TARGET_MS = 100.0
RATIO_TARGET = 1.5
RATE_TARGET = 0.7
CPU_TARGET_MS = 0.9

SERVERS = {
    "raw": "aiohttp only (no Bolt)",
    "bare": "bare Bolt ack",
    "bot": "bot (python -m bot)",
}


@dataclass(frozen=True)
class Mode:
    """An arrival pattern: `rounds` of `concurrency` simultaneous requests, `gap` seconds apart."""

    key: str  # single, back-to-back or bursts: which targets apply
    name: str
    concurrency: int
    rounds: int
    gap: float = 0.0

    @property
    def warmup_rounds(self) -> int:  # about WARMUP_REQUESTS, whatever the concurrency
        return max(1, WARMUP_REQUESTS // self.concurrency)


@dataclass
class Run:
    server: str
    mode: Mode
    latencies: list[float] = field(default_factory=list)  # seconds, measured rounds only
    statuses: Counter[str] = field(default_factory=Counter)
    triggers: list[str] = field(default_factory=list)  # every request sent, warm-up included
    seconds: float = 0.0  # time spent in the measured rounds (pauses between bursts excluded)
    cpu: float = 0.0  # server CPU seconds over the measured rounds (pauses included)
    stored: int | None = None  # bot: how many of `triggers` have their job in Redis
    stored_after: float | None = None  # bot: seconds from the last response until they were all there
    store_errors: list[str] = field(default_factory=list)  # bot: "cannot store" lines in its log
    profile: Path | None = None

    def ms(self, pct: float) -> float:
        return percentile(self.latencies, pct) * 1000


def report(runs: list[Run]) -> bool:
    """Print the figures (min / median / max over the repeats) and the targets (on the medians); False if
    a request failed or a job was not stored."""
    ok = all(set(run.statuses) == {"200"} for run in runs)
    checks = []
    for mode in dict.fromkeys(run.mode for run in runs):
        by_server: dict[str, list[Run]] = {}
        for run in runs:
            if run.mode == mode:
                by_server.setdefault(run.server, []).append(run)
        rows = [
            [
                server,
                f"{len(group)} x {len(group[0].latencies)}",
                spread([run.ms(50) for run in group]),
                spread([run.ms(99) for run in group]),
                spread([max(run.latencies) * 1000 for run in group]),
                spread([run.cpu / len(run.latencies) * 1000 for run in group], "{:.2f}"),
                spread([len(run.latencies) / run.seconds for run in group], "{:.0f}"),
                ", ".join(
                    f"{n} x {s}" for s, n in sorted(sum((r.statuses for r in group), Counter()).items())
                ),
            ]
            for server, group in by_server.items()
        ]
        print(f"{mode.name}: latency = client send -> HTTP response")
        print("(each figure: min / median / max over the runs)")
        headers = [
            "server",
            "runs x requests",
            "p50 ms",
            "p99 ms",
            "max ms",
            "CPU ms/req",
            "requests/s",
            "HTTP",
        ]
        print_table(headers, rows)
        bots, bares = by_server.get(SERVERS["bot"], []), by_server.get(SERVERS["bare"], [])
        for bot in bots:
            if bot.stored is not None and bot.stored_after is None:
                print(
                    f"bot: only {bot.stored} of {len(bot.triggers)} jobs (warm-up included) "
                    "were stored in Redis"
                )
                ok = False
            if bot.store_errors:
                print(
                    f"bot: {len(bot.store_errors)} commands answered 'cannot store': {bot.store_errors[0]!r}"
                )
        if bots and all(bot.stored_after is not None for bot in bots):
            worst = max(bot.stored_after or 0.0 for bot in bots)
            print(f"bot: every job of every run was in Redis, at most {worst:.2f} s after the last response")
        print()
        if bots:
            checks += targets(mode, bots, bares)
    if checks:
        print_table(["target", "measured", "target", "verdict"], checks)
    return ok


def targets(mode: Mode, bots: list[Run], bares: list[Run]) -> list[list[str]]:
    """The issue's targets for this arrival pattern, on the medians of the runs: [what, measured,
    target, verdict] rows. Ratios to the bare Bolt app of the same run wherever it ran."""

    def median(runs: list[Run], figure: Callable[[Run], float]) -> float:
        return statistics.median(figure(run) for run in runs)

    def p50(run: Run) -> float:
        return run.ms(50)

    def p99(run: Run) -> float:
        return run.ms(99)

    def per_second(run: Run) -> float:
        return len(run.latencies) / run.seconds

    def cpu_ms(run: Run) -> float:
        return run.cpu / len(run.latencies) * 1000

    def row(what: str, value: float, unit: str, target: str, ok: bool | None) -> list[str]:
        return [f"{mode.name}: {what}", f"{value:.2f}{unit}", target, "" if ok is None else verdict(ok)]

    rows = []
    if mode.key == "single":
        bot_p50 = median(bots, p50)
        rows.append(
            row(
                "bot p50",
                bot_p50,
                " ms",
                f"<= {SINGLE_P50_TARGET_MS:.0f} ms",
                bot_p50 <= SINGLE_P50_TARGET_MS,
            )
        )
        if bares:
            rows.append(row("bot p50 / bare p50", bot_p50 / median(bares, p50), "x", "(info)", None))
        return rows
    bot_p99 = median(bots, p99)
    rows.append(row("bot p99", bot_p99, " ms", f"< {P99_TARGET_MS:.0f} ms", bot_p99 < P99_TARGET_MS))
    if bares:
        ratio = bot_p99 / median(bares, p99)
        rows.append(row("bot p99 / bare p99", ratio, "x", f"<= {RATIO_TARGET}x", ratio <= RATIO_TARGET))
    if mode.key == "back-to-back":
        cpu = median(bots, cpu_ms)
        rows.append(row("bot CPU per command", cpu, " ms", f"<= {CPU_TARGET_MS} ms", cpu <= CPU_TARGET_MS))
        if bares:
            rate = median(bots, per_second) / median(bares, per_second)
            rows.append(row("bot commands/s / bare", rate, "x", f">= {RATE_TARGET}x", rate >= RATE_TARGET))
    return rows


def print_profile(run: Run, limit: int = 25) -> None:
    assert run.profile is not None
    for order, what in (("tottime", "own time"), ("cumulative", "cumulative time")):
        out = io.StringIO()
        stats = pstats.Stats(str(run.profile), stream=out)
        stats.strip_dirs().sort_stats(order).print_stats(limit)
        print(f"\n--- cProfile, {run.server}, {run.mode.name}, measured rounds: top {limit} by {what} ---")
        print("\n".join(line for line in out.getvalue().splitlines()[4:] if line.strip()))
