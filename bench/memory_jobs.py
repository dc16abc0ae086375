"""Memory: the bot process's RSS while it tracks 10,000 jobs, and Redis memory per job.

How: a real Redis (embedded redis-server, own port and temp dir), the fake JoggAI and fake Slack from
tests/fakes on 127.0.0.1, and the real bot as a child process (`python -m bot`, env as in
tests/harness.bot_env, default POLL_INTERVAL_SECONDS and LEASE_SECONDS). With the bot started and idle we
read its VmRSS/VmHWM (/proc/<pid>/status) and Redis `used_memory`; then N jobs are written into the poll
lane in the store's own format (tasks that stay "processing"; the provider answers each GET after 50 ms)
and the bot polls them for a while at its normal cadence. Sampled every second: polls answered, VmRSS,
VmHWM (the peak, so a spike between samples still shows).

Target: bot RSS under 250 MB with 10,000 jobs tracked. Redis per job is reported (hash + lane entry).

    .venv/bin/python -m bench.memory_jobs                # 10,000 jobs, polled for 30 s
    .venv/bin/python -m bench.memory_jobs --quick        # 2,000 jobs, 10 s
    .venv/bin/python -m bench.memory_jobs --jobs 10000 --seconds 60
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench._sweep_setup import (
    bench_env,
    enqueue,
    machine_rows,
    memory_kb,
    poll_intervals_s,
    print_table,
    seed_poll_jobs,
    start_bot,
)

TARGET_MB = 250


def used_memory(info: dict[str, Any]) -> int:
    return int(info["used_memory"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=None, help="jobs tracked (10000)")
    parser.add_argument("--seconds", type=float, default=None, help="how long to poll them (30)")
    parser.add_argument("--quick", action="store_true", help="a smaller run: 2,000 jobs for 10 s")
    parser.add_argument("--delay-ms", type=float, default=50.0, help="provider answer time per GET")
    args = parser.parse_args()
    n = args.jobs or (2000 if args.quick else 10_000)
    seconds = args.seconds or (10.0 if args.quick else 30.0)

    with bench_env() as bench:
        r, jogg = bench.r, bench.jogg
        print_table("Machine", ["", ""], machine_rows(r))
        jogg.get_delay_seconds = args.delay_ms / 1000
        bot = start_bot(bench, POLL_INTERVAL_SECONDS="", LEASE_SECONDS="")
        try:
            time.sleep(2)  # settle: imports done, first ticks run
            idle = memory_kb(bot.pid)
            redis_before = used_memory(r.info("memory"))
            ids = seed_poll_jobs(bench, n)
            redis_hashes = used_memory(r.info("memory"))
            enqueue(r, ids)
            redis_after = used_memory(r.info("memory"))

            samples: list[tuple[float, int, dict[str, int]]] = []
            start = time.monotonic()
            while (elapsed := time.monotonic() - start) < seconds:
                samples.append((elapsed, jogg.gets_answered, memory_kb(bot.pid)))
                time.sleep(1.0)
            final = memory_kb(bot.pid)
            samples.append((time.monotonic() - start, jogg.gets_answered, final))
            polled = jogg.tasks_polled
            intervals = sorted(poll_intervals_s(r, ids))
        finally:
            bot.stop()

    print_table(
        f"Bot process memory while tracking {n:,} jobs (poll lane, provider answers after "
        f"{args.delay_ms:.0f} ms)",
        ["t (s)", "polls answered", "VmRSS MB", "VmHWM MB"],
        [("idle", "0", f"{idle['VmRSS'] / 1024:.1f}", f"{idle['VmHWM'] / 1024:.1f}")]
        + [
            (f"{t:.0f}", f"{gets:,}", f"{mem['VmRSS'] / 1024:.1f}", f"{mem['VmHWM'] / 1024:.1f}")
            for t, gets, mem in samples[:: max(1, len(samples) // 15)] + samples[-1:]
        ],
    )
    interval = intervals[len(intervals) // 2] if intervals else float("nan")
    peak_mb = final["VmHWM"] / 1024
    print_table(
        "Summary",
        ["measure", "value"],
        [
            ("jobs tracked", f"{n:,} ({polled:,} of them polled at least once)"),
            ("poll interval in force (median next-poll delay)", f"{interval:.1f} s"),
            ("bot VmRSS idle → with jobs", f"{idle['VmRSS'] / 1024:.1f} → {final['VmRSS'] / 1024:.1f} MB"),
            ("bot VmHWM (peak RSS)", f"{peak_mb:.1f} MB"),
            (
                "bot RSS growth ÷ jobs (jobs live in Redis: this is in-flight steps and connections)",
                f"{(final['VmRSS'] - idle['VmRSS']) * 1024 / n:,.0f} B",
            ),
            (
                "Redis used_memory before → after",
                f"{redis_before / 1e6:.1f} → {redis_after / 1e6:.1f} MB",
            ),
            ("Redis per job: hash", f"{(redis_hashes - redis_before) / n:,.0f} B"),
            ("Redis per job: poll-lane entry", f"{(redis_after - redis_hashes) / n:,.0f} B"),
            ("Redis per job: total", f"{(redis_after - redis_before) / n:,.0f} B"),
        ],
    )
    verdict = "MET" if peak_mb < TARGET_MB else "MISSED"
    print(f"\ntarget (bot RSS < {TARGET_MB} MB with {n:,} jobs): {verdict} (peak {peak_mb:.1f} MB)")


if __name__ == "__main__":
    main()
