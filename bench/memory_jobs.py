"""Memory: the bot's RSS while it tracks 10,000 jobs, and Redis memory per tracked and per finished job.

How: a real Redis (embedded redis-server, own port and temp dir, started as the bot starts its own), the
fake JoggAI and fake Slack from tests/fakes on 127.0.0.1, and the real bot as a child process
(`python -m bot`, env as in tests/harness.bot_env).

Tracked jobs: with the bot started and idle we read its VmRSS/VmHWM (/proc/<pid>/status) and Redis
`used_memory`; then N jobs are written into the poll lane in the store's own format (tasks that stay
"processing"; the provider answers each GET after 50 ms) and the bot polls them for a while at its normal
cadence (default POLL_INTERVAL_SECONDS and LEASE_SECONDS). Sampled every second: polls answered, VmRSS,
VmHWM (the peak, so a spike between samples still shows). Redis per tracked job: hash + lane entry.

Finished jobs: F jobs go all the way through the real bot: a signed `/lipsync` command each (realistic
link and response_url lengths), the job message, the JoggAI create, polls, a success whose result and
cover links are signed CDN URLs like JoggAI's (about 220 characters), the threaded reply. Once every job
has ended, the bot is stopped and we sum `MEMORY USAGE` over every key left in Redis (the job hashes and
the command dedupe markers; also JoggAI's shared rate-limit window, which is not per job and expires
within a minute, so it is shown but left out of the total) and divide by F, and show what a finished job
keeps, its encoding and its TTL. Run twice: with Redis's default compact-hash limit (64-byte values, what a
production Redis has unless told otherwise) and with the embedded Redis's (bot/programs/embedded_redis.py).

Targets: bot RSS under 250 MB with 10,000 jobs tracked; at most 1.5 KB of Redis per finished job.

    .venv/bin/python -m bench.memory_jobs                # 10,000 tracked for 30 s, 500 finished; 3 runs
    .venv/bin/python -m bench.memory_jobs --quick        # 2,000 tracked for 10 s, 100 finished; 1 run
    .venv/bin/python -m bench.memory_jobs --jobs 10000 --seconds 60 --finished 1000 --repeat 5
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import redis

from bench._sweep_setup import (
    Bench,
    bench_env,
    enqueue,
    machine_rows,
    memory_kb,
    poll_intervals_s,
    print_table,
    seed_poll_jobs,
    start_bot,
    wait_for,
)
from bench.common import spread
from bot.jobs.keys import PREFIX, job_key, queue_key
from bot.jobs.lanes import Lane
from bot.programs.embedded_redis import COMPACT_ARGS
from tests.fakes.jogg_api import FakeJogg, Outcome

TARGET_MB = 250
TARGET_FINISHED_BYTES = 1500
REDIS_DEFAULT_VALUE_LIMIT = "64"  # hash-max-ziplist-value (hash-max-listpack-value on Redis 7)
# Keys that are not per job and go by themselves within a minute: JoggAI's shared POST window.
TRANSIENT = {"ratelimit"}


class SignedUrlJogg(FakeJogg):
    """The fake JoggAI with result and cover links as long as JoggAI's signed CDN URLs."""

    def result_url(self, task_id: str) -> str:
        return _signed(f"https://res.jogg.ai/lipsync/2026/12/02/{task_id}/output.mp4", task_id)

    def cover_url(self, task_id: str) -> str:
        return _signed(f"https://res.jogg.ai/lipsync/2026/12/02/{task_id}/cover.jpg", task_id)


def _signed(url: str, task_id: str) -> str:
    signature = hashlib.sha256(url.encode()).hexdigest()
    return (
        f"{url}?x-oss-date=20261202T120000Z&x-oss-expires=604800"
        f"&x-oss-credential=LTAI5tExampleKey%2F20261202%2Fus-west-1%2Foss&x-oss-signature={signature}"
    )


def used_memory(r: redis.Redis) -> int:
    info: dict[str, Any] = r.info("memory")
    return int(info["used_memory"])


# -- tracked jobs ----------------------------------------------------------------------------------


@dataclass
class Tracked:
    idle: dict[str, int]
    final: dict[str, int]
    samples: list[tuple[float, int, dict[str, int]]]
    polled: int
    interval_s: float
    hash_bytes: float  # per job
    lane_bytes: float


def run_tracked(bench: Bench, n: int, seconds: float, delay_s: float) -> Tracked:
    r, jogg = bench.r, bench.jogg
    r.flushall()
    jogg.reset()
    jogg.get_delay_seconds = delay_s
    bot = start_bot(bench, POLL_INTERVAL_SECONDS="", LEASE_SECONDS="")
    try:
        time.sleep(2)  # settle: imports done, first ticks run
        idle = memory_kb(bot.pid)
        redis_before = used_memory(r)
        ids = seed_poll_jobs(bench, n)
        redis_hashes = used_memory(r)
        enqueue(r, ids)
        redis_after = used_memory(r)
        samples: list[tuple[float, int, dict[str, int]]] = []
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < seconds:
            samples.append((elapsed, jogg.gets_answered, memory_kb(bot.pid)))
            time.sleep(1.0)
        final = memory_kb(bot.pid)
        samples.append((time.monotonic() - start, jogg.gets_answered, final))
        intervals = sorted(poll_intervals_s(r, ids))
    finally:
        bot.stop()
    return Tracked(
        idle=idle,
        final=final,
        samples=samples,
        polled=jogg.tasks_polled,
        interval_s=statistics.median(intervals) if intervals else float("nan"),
        hash_bytes=(redis_hashes - redis_before) / n,
        lane_bytes=(redis_after - redis_hashes) / n,
    )


# -- finished jobs ---------------------------------------------------------------------------------


@dataclass
class Finished:
    value_limit: str
    jobs: int
    per_job: float  # bytes: every key left in Redis, over the jobs
    by_kind: dict[str, float]  # bytes per job, by key kind
    encodings: Counter[str]  # of the job hashes
    sample: dict[str, str]  # one finished job's fields
    ttl_s: dict[str, int]  # the TTL of each kind of key (one sample)
    seconds: float


def _kind(key: str) -> str:
    """`{lip}:job:<id>` → "job", `{lip}:seen:cmd:<trigger>` → "seen:cmd"."""
    parts = key.removeprefix(f"{PREFIX}:").split(":")
    return ":".join(parts[:2]) if parts[0] == "seen" else parts[0]


def run_finished(bench: Bench, n: int, value_limit: str) -> Finished:
    r, slack, jogg = bench.r, bench.slack, bench.jogg
    r.flushall()
    jogg.reset()
    jogg.get_delay_seconds = 0.0
    jogg.default_outcome = Outcome("success", polls=1, duration_seconds=37.4)
    r.config_set("hash-max-ziplist-value", value_limit)
    bot = start_bot(bench, JOGG_POSTS_PER_MINUTE="100000", POLL_INTERVAL_SECONDS="0.5")
    started = time.monotonic()
    try:

        def command(i: int) -> None:
            # Lengths as in real use: a CDN link each, and Slack's response_url (about 90 characters).
            video = f"https://media.example-cdn.com/uploads/2026/12/02/keynote-{i:05d}/master-en.mp4"
            audio = f"https://media.example-cdn.com/uploads/2026/12/02/keynote-{i:05d}/voice-fr.mp3"
            key = f"T0TEST/{8_000_000_000_000 + i}/{hashlib.sha1(str(i).encode()).hexdigest()[:24]}"
            response = bot.command(f"{video} {audio}", response_url=slack.response_url(key))
            response.raise_for_status()

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(command, range(n)))

        def all_ended() -> bool:
            lanes = sum(int(r.zcard(queue_key(lane))) for lane in Lane)
            return lanes == 0 and len(r.keys(job_key("*"))) == n

        wait_for(all_ended, timeout=max(120.0, n / 5), interval=0.2)
    finally:
        bot.stop()
    seconds = time.monotonic() - started
    r.script_flush()  # the bot's cached scripts are not job data
    sizes: dict[str, int] = {}
    for key in r.scan_iter(count=1000):
        sizes[key] = int(r.memory_usage(key, samples=0) or 0)
    by_kind: Counter[str] = Counter()
    ttl: dict[str, int] = {}
    for key, size in sizes.items():
        by_kind[_kind(key)] += size
        ttl.setdefault(_kind(key), int(r.ttl(key)))
    job_keys = [key for key in sizes if _kind(key) == "job"]
    encodings = Counter(str(r.object("encoding", key)) for key in job_keys)
    sample = {str(k): str(v) for k, v in r.hgetall(job_keys[0]).items()} if job_keys else {}
    return Finished(
        value_limit=value_limit,
        jobs=n,
        per_job=sum(size for kind, size in by_kind.items() if kind not in TRANSIENT) / n,
        by_kind={kind: total / n for kind, total in by_kind.items()},
        encodings=encodings,
        sample=sample,
        ttl_s=ttl,
        seconds=seconds,
    )


# -- report ----------------------------------------------------------------------------------------


def report_tracked(runs: list[Tracked], n: int, delay_ms: float) -> None:
    last = runs[-1]
    print_table(
        f"Bot process memory while tracking {n:,} jobs (poll lane, provider answers after {delay_ms:.0f} ms; "
        f"last of {len(runs)} runs)",
        ["t (s)", "polls answered", "VmRSS MB", "VmHWM MB"],
        [("idle", "0", f"{last.idle['VmRSS'] / 1024:.1f}", f"{last.idle['VmHWM'] / 1024:.1f}")]
        + [
            (f"{t:.0f}", f"{gets:,}", f"{mem['VmRSS'] / 1024:.1f}", f"{mem['VmHWM'] / 1024:.1f}")
            for t, gets, mem in last.samples[:: max(1, len(last.samples) // 15)] + last.samples[-1:]
        ],
    )
    print_table(
        f"Tracked jobs, min / median / max of {len(runs)} runs",
        ["measure", "value"],
        [
            ("jobs tracked (polled at least once, last run)", f"{n:,} ({last.polled:,})"),
            ("poll interval in force (median next-poll delay)", spread([t.interval_s for t in runs])),
            ("bot VmRSS idle, MB", spread([t.idle["VmRSS"] / 1024 for t in runs])),
            ("bot VmRSS with the jobs, MB", spread([t.final["VmRSS"] / 1024 for t in runs])),
            ("bot VmHWM (peak RSS), MB", spread([t.final["VmHWM"] / 1024 for t in runs])),
            (
                "bot RSS growth ÷ jobs, B (in-flight steps and connections: jobs live in Redis)",
                spread([(t.final["VmRSS"] - t.idle["VmRSS"]) * 1024 / n for t in runs], "{:,.0f}"),
            ),
            ("Redis per tracked job: hash, B", spread([t.hash_bytes for t in runs], "{:,.0f}")),
            ("Redis per tracked job: poll-lane entry, B", spread([t.lane_bytes for t in runs], "{:,.0f}")),
        ],
    )


def report_finished(runs: list[Finished]) -> None:
    for limit in sorted({f.value_limit for f in runs}, key=int):
        group = [f for f in runs if f.value_limit == limit]
        kinds = sorted({kind for f in group for kind in f.by_kind})
        last = group[-1]
        print_table(
            f"Finished jobs, compact hashes up to {limit}-byte values: Redis bytes per job "
            f"(min / median / max of {len(group)} runs of {last.jobs:,} jobs)",
            ["keys", "bytes per finished job", "TTL (s)"],
            [
                (kind, spread([f.by_kind.get(kind, 0) for f in group], "{:,.0f}"), last.ttl_s[kind])
                for kind in kinds
            ]
            + [("total (without the rate-limit window)", spread([f.per_job for f in group], "{:,.0f}"), "")],
        )
        took = spread([f.seconds for f in group])
        print(f"job hash encodings: {dict(last.encodings)}; each run took {took} s")
    last = runs[-1]
    print_table(
        f"What a finished job keeps ({len(last.sample)} fields, one sample)",
        ["field", "value"],
        [(k, v if len(v) <= 80 else f"{v[:77]}…") for k, v in sorted(last.sample.items())],
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=None, help="jobs tracked (10000)")
    parser.add_argument("--seconds", type=float, default=None, help="how long to poll them (30)")
    parser.add_argument("--finished", type=int, default=None, help="jobs taken to the end (500)")
    parser.add_argument("--repeat", type=int, default=None, help="runs of each part (3)")
    parser.add_argument(
        "--quick", action="store_true", help="a smaller run: 2,000 tracked for 10 s, 100 finished"
    )
    parser.add_argument("--delay-ms", type=float, default=50.0, help="provider answer time per GET")
    args = parser.parse_args()
    n = args.jobs or (2000 if args.quick else 10_000)
    seconds = args.seconds or (10.0 if args.quick else 30.0)
    finished_n = args.finished or (100 if args.quick else 500)
    repeat = args.repeat or (1 if args.quick else 3)
    limits = [REDIS_DEFAULT_VALUE_LIMIT, COMPACT_ARGS[COMPACT_ARGS.index("--hash-max-ziplist-value") + 1]]

    with bench_env(jogg=SignedUrlJogg()) as bench:
        print_table("Machine", ["", ""], machine_rows(bench.r))
        tracked = []
        for attempt in range(repeat):
            print(f"\ntracking {n:,} jobs for {seconds:.0f} s (run {attempt + 1} of {repeat})…", flush=True)
            tracked.append(run_tracked(bench, n, seconds, args.delay_ms / 1000))
        finished = []
        for attempt in range(repeat):
            for limit in limits:
                print(
                    f"\n{finished_n:,} jobs to the end, limit {limit} (run {attempt + 1} of {repeat})…",
                    flush=True,
                )
                finished.append(run_finished(bench, finished_n, limit))

    report_tracked(tracked, n, args.delay_ms)
    report_finished(finished)
    peak_mb = statistics.median(t.final["VmHWM"] / 1024 for t in tracked)
    verdict = "MET" if peak_mb < TARGET_MB else "MISSED"
    print(f"\ntarget (bot RSS < {TARGET_MB} MB with {n:,} jobs, median peak): {verdict} ({peak_mb:.1f} MB)")
    for limit in limits:
        per_job = statistics.median(f.per_job for f in finished if f.value_limit == limit)
        verdict = "MET" if per_job <= TARGET_FINISHED_BYTES else "MISSED"
        print(
            f"target (<= {TARGET_FINISHED_BYTES:,} B of Redis per finished job, median), "
            f"compact hashes up to {limit}-byte values: {verdict} ({per_job:,.0f} B)"
        )


if __name__ == "__main__":
    main()
