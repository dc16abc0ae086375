"""Poll sweep: how fast ONE bot process polls every tracked job once, and what each poll costs Redis.

How: a real Redis (embedded redis-server, own port and temp dir) gets N jobs written straight into the
poll lane in the store's own format (a pipelined HSET of `codec.to_fields(job)` per job, then ZADD into
`{lip}:poll`, all due now), status processing, each with a task id that the fake JoggAI knows and keeps
"processing" forever, so every poll reschedules. The fake JoggAI (tests/fakes, real aiohttp on
127.0.0.1) answers each status GET after 50 ms. The real bot runs as `python -m bot` (env as in
tests/harness.bot_env, POLL_INTERVAL_SECONDS=600 so that one sweep polls each job exactly once; the
claim tick is 1 s either way) and sweeps them with its real Worker and Pipeline. We measure, from the
moment the jobs are due (the bot idles before, so this includes waiting for its next tick):

  * sweep time: until every job has been polled once (the fake counts first polls), and polls/s;
  * CPU seconds per poll of the bot process, of Redis, and of this process (the fake JoggAI);
  * Redis work per poll from `INFO commandstats` deltas (commands inside scripts are counted there
    too; the bench's own commands are subtracted): EVALSHA calls (claims + one transition per poll),
    lane claims (ZRANGEBYSCORE only runs in the claim script, once per lane it claims; the script also
    reads the claimed jobs, HMGET for the poll lane). The transitions of one event-loop turn share a
    round trip (a pipeline), which commandstats cannot see: its counts are commands, not round trips.

Target (2-core machine, client, fakes and Redis sharing it): >= 1,500 polls/s (median of the runs), i.e.
one sweep of 10,000 jobs within 6.7 s, with the claim batched and one state-change script per poll.
`--jobs 1000 10000 100000` shows that the cost per job stays flat.

`--steady` measures the other regime: long-running jobs at the real cadence. N jobs (default 1,000)
created 20 minutes ago, so the bot polls each every 30 s (production defaults: POLL_INTERVAL_SECONDS 5,
ticks every second), due at instants spread evenly over 30 s as in steady state. After a warm-up, for
`--seconds` (60) we take the bot's CPU per poll, Redis's, and the Redis commands per poll: claims that
find nothing cost CPU here, where a sweep hides them in batches of 200. Target: <= 0.9 ms of bot CPU per
poll (median of the runs), as in sweeps.

    .venv/bin/python -m bench.poll_sweep                      # 10,000 jobs
    .venv/bin/python -m bench.poll_sweep --jobs 1000 10000 100000
    .venv/bin/python -m bench.poll_sweep --quick              # 2,000 jobs
    .venv/bin/python -m bench.poll_sweep --repeat 5           # runs per job count (default 3)
    .venv/bin/python -m bench.poll_sweep --steady             # 1,000 long-running jobs, 30 s cadence
    .venv/bin/python -m bench.poll_sweep --profile /tmp/bot.prof   # bot under cProfile (slower)
"""

from __future__ import annotations

import argparse
import os
import pstats
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from bench._sweep_setup import (
    Bench,
    bench_env,
    commandstats,
    enqueue,
    enqueue_spread,
    machine_rows,
    poll_intervals_s,
    print_table,
    redis_cpu_seconds,
    seed_poll_jobs,
    start_bot,
    stats_delta,
    wait_for,
)
from bench.common import cpu_seconds, spread
from bot.jobs.keys import lease_key
from bot.jobs.lanes import Lane

SWEEP_TARGET = 1500  # polls/s

# Commands the bot sends itself on the poll path (scripts; connection set-up: HELLO, CLIENT SETINFO,
# PING); everything else ran inside a script.
CLIENT_COMMANDS = {"evalsha", "eval", "ping", "script", "hello", "client", "get", "set"}


@dataclass
class Sweep:
    jobs: int
    sweep_s: float
    first_get_s: float
    gets: int
    bot_cpu_s: float
    redis_cpu_s: float
    fakes_cpu_s: float
    commands: dict[str, int]
    interval_s: float

    @property
    def polls_per_s(self) -> float:
        return self.jobs / self.sweep_s

    def per_poll(self, name: str) -> float:
        return self.commands.get(name, 0) / self.gets

    @property
    def claims(self) -> int:
        return self.commands.get("zrangebyscore", 0)

    @property
    def client_commands(self) -> int:
        return sum(v for k, v in self.commands.items() if k in CLIENT_COMMANDS)


def run_sweep(bench: Bench, n: int, delay_s: float, poll_interval: str, profile_to: Path | None) -> Sweep:
    r, jogg = bench.r, bench.jogg
    r.flushall()
    jogg.reset()
    jogg.get_delay_seconds = delay_s
    bot = start_bot(bench, profile_to, POLL_INTERVAL_SECONDS=poll_interval, LEASE_SECONDS="")
    try:
        ids = seed_poll_jobs(bench, n)
        time.sleep(1.5)  # let the bot's first ticks pass: the sweep starts idle
        bench_cmds = {"time": 1, "hlen": 0}
        before = commandstats(r)
        bot_cpu, redis_cpu = cpu_seconds(bot.pid), redis_cpu_seconds(r)
        fakes_cpu = cpu_seconds(os.getpid())
        t0 = time.monotonic()
        bench_cmds["zadd"] = enqueue(r, ids)
        timeout = max(120.0, n / 100)
        t_first = wait_for(lambda: jogg.gets_answered > 0, timeout, interval=0.002)
        t_all = wait_for(lambda: jogg.tasks_polled >= n, timeout)

        def drained() -> bool:
            bench_cmds["hlen"] += 1
            return r.hlen(lease_key(Lane.POLL)) == 0

        wait_for(drained, 60, interval=0.02)  # the last transitions have landed
        gets = jogg.gets_answered
        bot_cpu = cpu_seconds(bot.pid) - bot_cpu
        redis_cpu = redis_cpu_seconds(r) - redis_cpu
        fakes_cpu = cpu_seconds(os.getpid()) - fakes_cpu
        delta = stats_delta(before, commandstats(r))
        delta.pop("info", None)
        for name, count in bench_cmds.items():
            delta[name] = delta.get(name, 0) - count
        intervals = poll_intervals_s(r, ids)
    finally:
        bot.stop()
    return Sweep(
        jobs=n,
        sweep_s=t_all - t0,
        first_get_s=t_first - t0,
        gets=gets,
        bot_cpu_s=bot_cpu,
        redis_cpu_s=redis_cpu,
        fakes_cpu_s=fakes_cpu,
        commands={k: v for k, v in delta.items() if v},
        interval_s=statistics.median(intervals) if intervals else float("nan"),
    )


def report(results: list[Sweep], delay_s: float) -> None:
    print_table(
        f"Sweep: every job polled once by one bot process (provider answers after {delay_s * 1000:.0f} ms)",
        [
            "jobs",
            "sweep s",
            "polls/s",
            "first GET s",
            "polls/s from first GET",
            "GETs",
            "bot CPU µs/poll",
            "Redis CPU µs/poll",
            "fake JoggAI CPU µs/poll",
            "Redis cmds/poll (client)",
            "scripts/poll",
            "claims/poll",
            "next poll in (median s)",
        ],
        [
            (
                f"{s.jobs:,}",
                f"{s.sweep_s:.2f}",
                f"{s.polls_per_s:,.0f}",
                f"{s.first_get_s:.2f}",
                f"{s.jobs / (s.sweep_s - s.first_get_s):,.0f}",
                f"{s.gets:,}",
                f"{s.bot_cpu_s / s.gets * 1e6:,.0f}",
                f"{s.redis_cpu_s / s.gets * 1e6:,.0f}",
                f"{s.fakes_cpu_s / s.gets * 1e6:,.0f}",
                f"{s.client_commands / s.gets:.3f}",
                f"{s.per_poll('evalsha') + s.per_poll('eval'):.3f}",
                f"{s.claims / s.gets:.4f}",
                f"{s.interval_s:.1f}",
            )
            for s in results
        ],
    )
    for s in results:
        rows = sorted(s.commands.items(), key=lambda kv: (kv[0] not in CLIENT_COMMANDS, -kv[1]))
        print_table(
            f"Redis commands during the {s.jobs:,}-job sweep ({s.gets:,} polls), from INFO commandstats",
            ["command", "sent by", "calls", "per poll"],
            [
                (name, "client" if name in CLIENT_COMMANDS else "in scripts", f"{n:,}", f"{n / s.gets:.3f}")
                for name, n in rows
            ],
        )
    print(
        "\nclaims = ZRANGEBYSCORE calls (one per lane a claim script looks at); scripts = EVALSHA"
        "\n(claims + one transition per poll; transitions go pipelined);"
        "\nclient commands include connection set-up (HELLO, CLIENT SETINFO, PING)."
    )


STEADY_AGE_S = 20 * 60  # past 15 minutes: polled every POLL_MAX_INTERVAL_SECONDS (30 s)
STEADY_CADENCE_MS = 30_000
STEADY_WARMUP_S = 5.0
STEADY_TARGET_MS = 0.9


@dataclass
class Steady:
    jobs: int
    seconds: float
    gets: int
    bot_cpu_s: float
    redis_cpu_s: float
    commands: dict[str, int]

    def per_poll(self, *names: str) -> float:
        return sum(self.commands.get(name, 0) for name in names) / max(1, self.gets)

    @property
    def bot_ms_per_poll(self) -> float:
        return self.bot_cpu_s / max(1, self.gets) * 1000


def run_steady(bench: Bench, n: int, seconds: float, delay_s: float, profile_to: Path | None) -> Steady:
    """N long-running jobs polled at their real cadence; bot CPU per poll over `seconds`."""
    r, jogg = bench.r, bench.jogg
    r.flushall()
    jogg.reset()
    jogg.get_delay_seconds = delay_s
    bot = start_bot(bench, profile_to, POLL_INTERVAL_SECONDS="", LEASE_SECONDS="")
    try:
        ids = seed_poll_jobs(bench, n, age_s=STEADY_AGE_S)
        enqueue_spread(r, ids, STEADY_CADENCE_MS)
        time.sleep(STEADY_WARMUP_S)  # connections opened, first claims made
        before, gets = commandstats(r), jogg.gets_answered
        bot_cpu, redis_cpu = cpu_seconds(bot.pid), redis_cpu_seconds(r)
        t0 = time.monotonic()
        time.sleep(seconds)
        elapsed = time.monotonic() - t0
        bot_cpu = cpu_seconds(bot.pid) - bot_cpu
        redis_cpu = redis_cpu_seconds(r) - redis_cpu
        gets = jogg.gets_answered - gets
        delta = stats_delta(before, commandstats(r))
        delta.pop("info", None)
    finally:
        bot.stop()
    return Steady(n, elapsed, gets, bot_cpu, redis_cpu, delta)


def report_steady(results: list[Steady], delay_s: float) -> None:
    print_table(
        f"Steady state: long-running jobs polled every 30 s (provider answers after {delay_s * 1000:.0f} ms)",
        [
            "jobs",
            "s",
            "polls",
            "polls/s",
            "bot CPU ms/poll",
            "Redis CPU µs/poll",
            "claims/poll",
            "scripts/poll",
            "ZRANGE/poll",
            "HGETALL+HMGET/poll",
        ],
        [
            (
                f"{s.jobs:,}",
                f"{s.seconds:.0f}",
                f"{s.gets:,}",
                f"{s.gets / s.seconds:,.1f}",
                f"{s.bot_ms_per_poll:.2f}",
                f"{s.redis_cpu_s / max(1, s.gets) * 1e6:,.0f}",
                f"{s.per_poll('zrangebyscore'):.3f}",
                f"{s.per_poll('evalsha', 'eval'):.3f}",
                f"{s.per_poll('zrange'):.3f}",
                f"{s.per_poll('hgetall', 'hmget'):.3f}",
            )
            for s in results
        ],
    )
    for n in sorted({s.jobs for s in results}):
        group = [s for s in results if s.jobs == n]
        figures = [s.bot_ms_per_poll for s in group]
        median = statistics.median(figures)
        verdict = "MET" if median <= STEADY_TARGET_MS else "MISSED"
        claims = [s.per_poll("zrangebyscore") for s in group]
        print(
            f"\n{n:,} jobs, min / median / max of {len(group)}: bot CPU per poll "
            f"{spread(figures, '{:.2f}')} ms, claims per poll {spread(claims, '{:.3f}')}"
            f"\ntarget (<= {STEADY_TARGET_MS} ms of bot CPU per poll, median): {verdict}"
        )


def print_profile(path: Path) -> None:
    stats = pstats.Stats(str(path))
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(30)


def measure_steady(
    counts: list[int], seconds: float, delay_s: float, *, repeat: int, profile: Path | None
) -> None:
    """--steady: `counts` long-running jobs at the 30 s cadence for `seconds`, `repeat` runs of each."""
    with bench_env() as bench:
        print_table("Machine", ["", ""], machine_rows(bench.r))
        steady = []
        for n in counts:
            for attempt in range(repeat):
                print(f"\n{n:,} long-running jobs for {seconds:.0f} s (run {attempt + 1} of {repeat})…")
                steady.append(run_steady(bench, n, seconds, delay_s, profile))
                if profile is not None:
                    print_profile(profile)
        report_steady(steady, delay_s)


def report_spread(results: list[Sweep]) -> None:
    """Each job count's sweeps, min / median / max, and the target on the median at 10,000 jobs."""
    for n in sorted({s.jobs for s in results}):
        group = [s for s in results if s.jobs == n]
        print(
            f"\n{n:,} jobs, min / median / max of {len(group)}: "
            f"sweep {spread([s.sweep_s for s in group], '{:.2f}')} s, "
            f"polls/s {spread([s.polls_per_s for s in group], '{:,.0f}')}, "
            f"bot CPU µs/poll {spread([s.bot_cpu_s / s.gets * 1e6 for s in group], '{:,.0f}')}"
        )
    target = [s.polls_per_s for s in results if s.jobs == 10_000]
    if target:
        median = statistics.median(target)
        verdict = "MET" if median >= SWEEP_TARGET else "MISSED"
        print(
            f"\ntarget (10,000 jobs at >= {SWEEP_TARGET:,} polls/s, median): {verdict} "
            f"(median of {len(target)}: {median:,.0f} polls/s)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, nargs="+", default=None, help="job counts to sweep (10000)")
    parser.add_argument("--quick", action="store_true", help="a smaller run: 2,000 jobs")
    parser.add_argument("--delay-ms", type=float, default=50.0, help="provider answer time per GET")
    parser.add_argument(
        "--poll-interval",
        default="600",
        help="POLL_INTERVAL_SECONDS for the bot (long, so one sweep polls each job once; '' = default)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per job count (the machine is shared)")
    parser.add_argument("--profile", type=Path, default=None, help="run the bot under cProfile, save here")
    parser.add_argument("--steady", action="store_true", help="long-running jobs at the 30 s cadence")
    parser.add_argument("--seconds", type=float, default=60.0, help="--steady: how long to measure")
    args = parser.parse_args()
    delay_s = args.delay_ms / 1000
    if args.steady:
        counts = args.jobs or ([300] if args.quick else [1000])
        seconds = 20.0 if args.quick else args.seconds
        measure_steady(counts, seconds, delay_s, repeat=args.repeat, profile=args.profile)
        return
    counts = args.jobs or ([2000] if args.quick else [10_000])
    with bench_env() as bench:
        print_table("Machine", ["", ""], machine_rows(bench.r))
        results = []
        for n in counts:
            for attempt in range(args.repeat):
                print(f"\nsweeping {n:,} jobs (run {attempt + 1} of {args.repeat})…", flush=True)
                results.append(run_sweep(bench, n, delay_s, args.poll_interval, args.profile))
                if args.profile is not None:
                    print_profile(args.profile)
        report(results, delay_s)
        report_spread(results)


if __name__ == "__main__":
    main()
