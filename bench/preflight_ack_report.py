"""What one run of bench/preflight_ack.py measured (`Run`, its `Command`s), and the report over the runs:
each run's line, the figures by configuration, the checks, the targets.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.common import percentile, print_table, spread, verdict

WARMUP_ROUNDS = 1
ADDED_TARGET_MS = 300.0
ACK_RATIO_TARGET = 1.2
MAX_ATTEMPTS = 4  # a run disturbed by a test suite is measured again, at most 3 times


@dataclass
class Command:
    n: int
    trigger: str
    round: int  # 0: the warm-up round
    latency_s: float = 0.0  # client send -> complete response
    acked_at: float = 0.0  # time.time() when the response was in
    status: str = ""


@dataclass
class Run:
    config: str
    commands: list[Command] = field(default_factory=list)
    created_at: dict[int, list[float]] = field(default_factory=dict)  # n -> arrival times of its creates
    cpu_s: float = 0.0  # bot CPU from the first measured round to the last create
    media_cpu_s: float = 0.0  # the media server's CPU over the same window
    window_s: float = 0.0  # that window's wall time
    machine_busy: float = 0.0  # share of the machine's CPU time (all cores) busy over that window
    audio_missing: int | None = None  # on: jobs without audio_s in Redis
    creates_after_s: float | None = None  # from the last ack until every create was in; None: never
    log_errors: list[str] = field(default_factory=list)
    disturbed: bool = False  # a pytest process ran at some point of the run

    @property
    def measured(self) -> list[Command]:
        return [c for c in self.commands if c.round >= WARMUP_ROUNDS]

    def ack_ms(self, pct: float) -> float:
        return percentile([c.latency_s for c in self.measured], pct) * 1000

    def to_create_ms(self) -> list[float]:
        return [
            (self.created_at[c.n][0] - c.acked_at) * 1000 for c in self.measured if c.n in self.created_at
        ]

    def create_ms(self, pct: float) -> float:
        return percentile(self.to_create_ms(), pct)

    def create_p50_by_round(self) -> list[float]:
        """Each measured round's median ack -> create: does the wait grow from round to round?"""
        medians = []
        for index in sorted({c.round for c in self.measured}):
            waits = [self.created_at[c.n][0] - c.acked_at for c in self.measured if c.round == index]
            if len(waits) == sum(1 for c in self.measured if c.round == index):
                medians.append(statistics.median(waits) * 1000)
        return medians

    def cpu_ms_per_command(self) -> float:
        return self.cpu_s * 1000 / len(self.measured)

    def bot_cores(self) -> float:
        """The bot's CPU over the window in cores (1.0: one core busy all the time)."""
        return self.cpu_s / self.window_s if self.window_s else 0.0

    @property
    def missing_creates(self) -> int:
        return sum(1 for c in self.commands if c.n not in self.created_at)

    @property
    def double_creates(self) -> int:
        return sum(1 for times in self.created_at.values() if len(times) > 1)

    @property
    def statuses(self) -> Counter[str]:
        return Counter(c.status for c in self.commands)


def run_line(index: int, total: int, run: Run) -> str:
    creates_in = (
        f"all {len(run.commands)} creates in {run.creates_after_s:.2f} s after the last ack"
        if run.creates_after_s is not None
        else f"{len(run.commands) - run.missing_creates} of {len(run.commands)} creates"
    )
    audio = "" if run.audio_missing is None else f"; audio_s missing on {run.audio_missing} jobs"
    audio += "; DISTURBED: a pytest process ran during it" if run.disturbed else ""
    by_round = ", ".join(f"{ms:.0f}" for ms in run.create_p50_by_round())
    return (
        f"run {index}/{total} {run.config:>3}: ack p50 {run.ack_ms(50):.1f} ms, p99 {run.ack_ms(99):.1f} ms; "
        f"ack -> create p50 {run.create_ms(50):.0f} ms, p95 {run.create_ms(95):.0f} ms\n"
        f"    to create p50 by round (ms): {by_round}\n"
        f"    bot CPU {run.cpu_ms_per_command():.2f} ms/command ({run.bot_cores():.2f} cores), media server "
        f"{run.media_cpu_s * 1000 / len(run.measured):.2f} ms/command, machine {run.machine_busy:.0%} busy, "
        f"over {run.window_s:.1f} s; {creates_in}{audio}"
    )


def report(runs: list[Run]) -> bool:
    """Print the figures and the targets; False if an ack failed, a job got no create (or two), or a job
    in `on` has no audio length."""
    by_config = {
        config: [r for r in runs if r.config == config] for config in dict.fromkeys(r.config for r in runs)
    }
    print_figures(by_config)
    ok = print_checks(runs)
    print_targets(by_config)
    return ok


def print_figures(by_config: dict[str, list[Run]]) -> None:
    """Each configuration's figures, min / median / max over its runs."""
    rows = []
    for config, group in by_config.items():
        statuses = sum((r.statuses for r in group), Counter())
        rows.append(
            [
                config,
                f"{len(group)} x {len(group[0].measured)}",
                spread([r.ack_ms(50) for r in group]),
                spread([r.ack_ms(99) for r in group]),
                spread([max(c.latency_s for c in r.measured) * 1000 for r in group]),
                spread([r.create_ms(50) for r in group], "{:.0f}"),
                spread([r.create_ms(95) for r in group], "{:.0f}"),
                spread([r.cpu_ms_per_command() for r in group], "{:.2f}"),
                spread([r.bot_cores() for r in group], "{:.2f}"),
                spread([r.machine_busy * 100 for r in group], "{:.0f}"),
                ", ".join(f"{n} x {s}" for s, n in sorted(statuses.items())),
            ]
        )
    print("ack = client send -> HTTP response; to create = ack -> that job's create at the fake JoggAI")
    print("(each figure: min / median / max over the runs)")
    headers = [
        "config",
        "runs x commands",
        "ack p50 ms",
        "ack p99 ms",
        "ack max ms",
        "to create p50 ms",
        "to create p95 ms",
        "bot CPU ms/cmd",
        "bot cores",
        "machine % busy",
        "HTTP",
    ]
    print_table(headers, rows)
    print()


def print_checks(runs: list[Run]) -> bool:
    """Say what went wrong in any run; False if an ack failed, a job got no create (or two), or a job in
    `on` has no audio length."""
    ok = True
    for run in runs:
        if set(run.statuses) != {"200"}:
            ok = False
        if run.missing_creates:
            print(f"{run.config}: {run.missing_creates} of {len(run.commands)} jobs never reached JoggAI")
            ok = False
        if run.double_creates:
            print(f"{run.config}: {run.double_creates} jobs were created twice at JoggAI")
            ok = False
        if run.audio_missing:
            print(f"{run.config}: {run.audio_missing} jobs have no audio_s in Redis: the check did not run")
            ok = False
        if run.disturbed:
            print(f"{run.config}: one run was disturbed by a pytest process ({MAX_ATTEMPTS} attempts)")
        if run.log_errors:
            print(
                f"{run.config}: {len(run.log_errors)} error lines in the bot's log, "
                f"e.g. {run.log_errors[0]!r}"
            )
    if ok:
        total = sum(len(r.commands) for r in runs)
        print(
            f"every command of every run (warm-up included, {total}) was acked 200 and its job created at "
            "JoggAI exactly once; in `on`, every job has its audio length (audio_s) in Redis"
        )
    print()
    return ok


def print_targets(by_config: dict[str, list[Run]]) -> None:
    """The targets, on the medians over the runs."""

    def median(config: str, figure: Callable[[Run], float]) -> float:
        return statistics.median(figure(r) for r in by_config[config])

    added_p50 = median("on", lambda r: r.create_ms(50)) - median("off", lambda r: r.create_ms(50))
    added_p95 = median("on", lambda r: r.create_ms(95)) - median("off", lambda r: r.create_ms(95))
    ack_p99 = median("on", lambda r: r.ack_ms(99)) / median("off", lambda r: r.ack_ms(99))
    ack_p50 = median("on", lambda r: r.ack_ms(50)) / median("off", lambda r: r.ack_ms(50))
    cpu = median("on", Run.cpu_ms_per_command) - median("off", Run.cpu_ms_per_command)
    checks = [
        [
            "added by the check: to create p50 (on - off)",
            f"{added_p50:+.0f} ms",
            f"< {ADDED_TARGET_MS:.0f} ms",
            verdict(added_p50 < ADDED_TARGET_MS),
        ],
        [
            "added by the check: to create p95 (on - off)",
            f"{added_p95:+.0f} ms",
            f"< {ADDED_TARGET_MS:.0f} ms",
            verdict(added_p95 < ADDED_TARGET_MS),
        ],
        [
            "does not slow the ack: ack p99 on / off",
            f"{ack_p99:.2f}x",
            f"<= {ACK_RATIO_TARGET}x",
            verdict(ack_p99 <= ACK_RATIO_TARGET),
        ],
        ["ack p50 on / off", f"{ack_p50:.2f}x", "(info)", ""],
        ["bot CPU per command, on - off", f"{cpu:+.2f} ms", "(info)", ""],
    ]
    print("targets, on the medians over the runs")
    print_table(["target", "measured", "target", "verdict"], checks)
