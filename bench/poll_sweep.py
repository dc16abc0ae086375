"""Poll sweep: how fast ONE bot process polls every tracked job once, and what each poll costs Redis.

How: a real Redis (embedded redis-server, own port and temp dir) gets N jobs written straight into the
poll lane in the store's own format (a pipelined HSET of `Job.to_fields()` per job, then ZADD into
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
    HGETALLs (sent pipelined, one pipeline per claim), claims (ZRANGEBYSCORE only runs in the claim
    script, for all three lanes), and round trips per poll counting a pipeline as one.

Target (2-core machine, client, fakes and Redis sharing it): >= 1,000 polls/s, i.e. one sweep of 10,000
jobs within 10 s, with the claim batched and one state-change script per poll. `--jobs 1000 10000 100000`
shows that the cost per job stays flat.

    .venv/bin/python -m bench.poll_sweep                      # 10,000 jobs
    .venv/bin/python -m bench.poll_sweep --jobs 1000 10000 100000
    .venv/bin/python -m bench.poll_sweep --quick              # 2,000 jobs
    .venv/bin/python -m bench.poll_sweep --repeat 3           # the machine is shared: take the median
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
    machine_rows,
    poll_intervals_s,
    print_table,
    redis_cpu_seconds,
    seed_poll_jobs,
    start_bot,
    stats_delta,
    wait_for,
)
from bench.common import cpu_seconds
from bot.store import Lane, lease_key

# Commands the bot sends itself (the poll path; the worker's next-due ZRANGEs, pipelined per claim
# round; connection set-up: HELLO, CLIENT SETINFO, PING); everything else ran inside a script.
CLIENT_COMMANDS = {"evalsha", "eval", "hgetall", "zrange", "ping", "script", "hello", "client", "get", "set"}


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

    @property
    def round_trips(self) -> int:
        # Every client command is a round trip, except HGETALLs, which go in one pipeline per claim
        # (an upper bound: ZRANGEs are pipelined too, up to three per round trip).
        return self.client_commands - self.commands.get("hgetall", 0) + self.claims


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
            "round trips/poll",
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
                f"{s.round_trips / s.gets:.3f}",
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
        "\nclaims = ZRANGEBYSCORE calls (the claim script, all three lanes); scripts = EVALSHA (claims"
        "\n+ one transition per poll); round trips = client commands, each claim's pipelined HGETALLs"
        "\ncounting as one (ZRANGE: the worker's next-due look-ups, counted one each, an upper bound);"
        "\nclient commands include connection set-up (HELLO, CLIENT SETINFO, PING)."
    )


def print_profile(path: Path) -> None:
    stats = pstats.Stats(str(path))
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(30)


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
    parser.add_argument("--repeat", type=int, default=1, help="sweeps per job count (the machine is shared)")
    parser.add_argument("--profile", type=Path, default=None, help="run the bot under cProfile, save here")
    args = parser.parse_args()
    counts = args.jobs or ([2000] if args.quick else [10_000])
    delay_s = args.delay_ms / 1000
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
        target = [s.sweep_s for s in results if s.jobs == 10_000]
        if target:
            median = statistics.median(target)
            verdict = "MET" if median <= 10 else "MISSED"
            print(
                f"\ntarget (10,000 jobs in <= 10 s, i.e. >= 1,000 polls/s): {verdict} "
                f"(median of {len(target)}: {median:.2f} s, {10_000 / median:,.0f} polls/s)"
            )


if __name__ == "__main__":
    main()
