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
has ended, the bot is stopped and we sum `MEMORY USAGE` over every key left in Redis (nothing is left out:
`SCAN` over the whole keyspace, the bot's cached scripts flushed) and divide by F, by kind of key: the job
summary hashes, the result-cache entries, the budget reservations (none once settled) and the month's
spend, the short ids, the person's index, the dedupe markers. A kind shared by many jobs (the person's
index, the day's short ids, the month's spend) is one container per run, whose `MEMORY USAGE` over F is
the cost of a job's entry in it (the delta from an empty Redis, the container's own overhead shared out).
Keys that expire within the hour (JoggAI's shared rate-limit window, a command's dedupe marker) are
transient: shown, and left out of what a finished job leaves behind. Also shown: what a finished job's
hash keeps, its encoding and each kind's TTL. Run with the embedded Redis's settings
(bot/programs/embedded_redis.py, RELIABILITY "What Redis must be": compact hashes up to 512-byte values),
the target's setting, and for comparison with Redis's default limit (64-byte values).

`--baseline REV` runs the bot of another commit (its `bot/` and `handlers/`, exported with `git archive`)
in the same run, back to back with this tree's, each repeat alternating: the same fakes, Redis and load.

Targets: bot RSS under 250 MB with 10,000 jobs tracked; at most 1.5 KB of Redis per finished job.

    .venv/bin/python -m bench.memory_jobs                # 10,000 tracked for 30 s, 500 finished; 3 runs
    .venv/bin/python -m bench.memory_jobs --quick        # 2,000 tracked for 10 s, 100 finished; 1 run
    .venv/bin/python -m bench.memory_jobs --jobs 10000 --seconds 60 --finished 1000 --repeat 5
    .venv/bin/python -m bench.memory_jobs --finished-only --repeat 5 --baseline 0242f60
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
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
from bench.against import export_tree
from bench.common import spread
from bot.jobs.keys import PREFIX, job_key, queue_key
from bot.jobs.lanes import Lane
from bot.programs.embedded_redis import COMPACT_ARGS
from tests.fakes.jogg_api import FakeJogg, Outcome
from tests.harness import REPO

TARGET_MB = 250
TARGET_FINISHED_BYTES = 1500
REDIS_DEFAULT_VALUE_LIMIT = "64"  # hash-max-ziplist-value (hash-max-listpack-value on Redis 7)
# Keys that go by themselves within the hour are transient, not left behind (JoggAI's shared POST window,
# a command's dedupe marker).
TRANSIENT_TTL_S = 3600
# Kinds of key that many jobs share (one container per run here): their size over the jobs is an entry's cost.
SHARED = {"user", "shorts", "budget:spent", "failed"}
# Kinds whose name has two parts: `{lip}:seen:cmd:<trigger>` → "seen:cmd".
TWO_PART = {"seen", "budget"}


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
    tree: str  # "this tree", or the baseline's revision
    value_limit: str
    jobs: int
    per_job: float  # bytes: every key left in Redis once the transient ones have gone, over the jobs
    with_transient: float  # bytes: every key in Redis, over the jobs
    by_kind: dict[str, float]  # bytes per job, by key kind
    encodings: Counter[str]  # of the job hashes
    sample: dict[str, str]  # one finished job's fields
    ttl_s: dict[str, int]  # the longest TTL of each kind of key (-1: none)
    seconds: float

    def transient(self, kind: str) -> bool:
        return 0 <= self.ttl_s[kind] <= TRANSIENT_TTL_S


def _kind(key: str) -> str:
    """`{lip}:job:<id>` → "job", `{lip}:seen:cmd:<trigger>` → "seen:cmd"."""
    parts = key.removeprefix(f"{PREFIX}:").split(":")
    return ":".join(parts[:2]) if parts[0] in TWO_PART else parts[0]


def run_finished(bench: Bench, n: int, value_limit: str, tree: Path | None, label: str) -> Finished:
    r, slack, jogg = bench.r, bench.slack, bench.jogg
    r.flushall()
    jogg.reset()
    jogg.get_delay_seconds = 0.0
    jogg.default_outcome = Outcome("success", polls=1, duration_seconds=37.4)
    r.config_set("hash-max-ziplist-value", value_limit)
    # A baseline's bot is imported from its exported tree: PYTHONPATH comes before the editable install.
    bot = start_bot(
        bench, JOGG_POSTS_PER_MINUTE="100000", POLL_INTERVAL_SECONDS="0.5", PYTHONPATH=str(tree or REPO)
    )
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
        left = int(r.ttl(key))
        ttl[_kind(key)] = max(ttl.get(_kind(key), left), left) if left >= 0 else -1
    job_keys = [key for key in sizes if _kind(key) == "job"]
    encodings = Counter(str(r.object("encoding", key)) for key in job_keys)
    sample = {str(k): str(v) for k, v in r.hgetall(job_keys[0]).items()} if job_keys else {}
    staying = [kind for kind in by_kind if not 0 <= ttl[kind] <= TRANSIENT_TTL_S]
    return Finished(
        tree=label,
        value_limit=value_limit,
        jobs=n,
        per_job=sum(by_kind[kind] for kind in staying) / n,
        with_transient=sum(by_kind.values()) / n,
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


def _ttl_text(ttl_s: int) -> str:
    if ttl_s < 0:
        return "none"
    return (
        f"{ttl_s / 86400:.1f} d"
        if ttl_s >= 86400
        else f"{ttl_s / 3600:.1f} h"
        if ttl_s >= 3600
        else f"{ttl_s} s"
    )


def _kind_text(kind: str, transient: bool) -> str:
    if transient:
        return f"{kind} (transient)"
    return f"{kind} (shared; container ÷ jobs)" if kind in SHARED else kind


def _cell(runs: list[Finished], kind: str) -> str:
    """One kind of key over runs: bytes per job, min / median / max, and its longest TTL left."""
    group = [f for f in runs if kind in f.by_kind]
    if not group:
        return "—"
    return f"{spread([f.by_kind[kind] for f in group], '{:,.0f}')} ({_ttl_text(group[-1].ttl_s[kind])})"


def report_finished(runs: list[Finished]) -> None:
    trees = list(dict.fromkeys(f.tree for f in runs))
    for limit in sorted({f.value_limit for f in runs}, key=int):
        groups = {tree: [f for f in runs if f.value_limit == limit and f.tree == tree] for tree in trees}
        kinds = sorted({kind for group in groups.values() for f in group for kind in f.by_kind})
        last = {tree: group[-1] for tree, group in groups.items()}

        rows = []
        for kind in kinds:
            transient = any(f.transient(kind) for tree in trees for f in groups[tree] if kind in f.by_kind)
            rows.append((_kind_text(kind, transient), *(_cell(groups[tree], kind) for tree in trees)))
        rows.append(
            (
                "left behind per finished job (without the transient keys)",
                *(spread([f.per_job for f in groups[tree]], "{:,.0f}") for tree in trees),
            )
        )
        rows.append(
            (
                "every key, transient ones included",
                *(spread([f.with_transient for f in groups[tree]], "{:,.0f}") for tree in trees),
            )
        )
        print_table(
            f"Finished jobs, compact hashes up to {limit}-byte values: Redis bytes per job, min / median / "
            f"max of {len(next(iter(groups.values())))} runs of {runs[-1].jobs:,} jobs (longest TTL left)",
            ["keys", *trees],
            rows,
        )
        for tree in trees:
            took = spread([f.seconds for f in groups[tree]])
            print(f"{tree}: job hash encodings {dict(last[tree].encodings)}; each run took {took} s")
    for tree in trees:
        sample = [f for f in runs if f.tree == tree][-1].sample
        print_table(
            f"What a finished job's hash keeps, {tree} ({len(sample)} fields, one sample)",
            ["field", "value"],
            [(k, v if len(v) <= 80 else f"{v[:77]}…") for k, v in sorted(sample.items())],
        )


def report_targets(
    tracked: list[Tracked],
    finished: list[Finished],
    *,
    n: int,
    limits: list[str],
    documented: str,
    trees: list[tuple[Path | None, str]],
) -> None:
    """The targets, on the medians of the runs: the bot's peak RSS while tracking, Redis left per finished
    job (for each hash value limit and each tree)."""
    if tracked:
        peak_mb = statistics.median(t.final["VmHWM"] / 1024 for t in tracked)
        verdict = "MET" if peak_mb < TARGET_MB else "MISSED"
        print(
            f"\ntarget (bot RSS < {TARGET_MB} MB with {n:,} jobs, median peak): {verdict} ({peak_mb:.1f} MB)"
        )
    for limit in limits:
        for _, label in trees:
            per_job = statistics.median(
                f.per_job for f in finished if f.value_limit == limit and f.tree == label
            )
            verdict = "MET" if per_job <= TARGET_FINISHED_BYTES else "MISSED"
            setting = "the documented setting" if limit == documented else "Redis's default, for comparison"
            print(
                f"{label}: target (<= {TARGET_FINISHED_BYTES:,} B of Redis left per finished job, median), "
                f"compact hashes up to {limit}-byte values ({setting}): {verdict} ({per_job:,.0f} B)"
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
    parser.add_argument("--finished-only", action="store_true", help="only the finished jobs")
    parser.add_argument(
        "--baseline", metavar="REV", default="", help="also run the bot of this commit, back to back"
    )
    parser.add_argument("--delay-ms", type=float, default=50.0, help="provider answer time per GET")
    args = parser.parse_args()
    n = args.jobs or (2000 if args.quick else 10_000)
    seconds = args.seconds or (10.0 if args.quick else 30.0)
    finished_n = args.finished or (100 if args.quick else 500)
    repeat = args.repeat or (1 if args.quick else 3)
    documented = COMPACT_ARGS[COMPACT_ARGS.index("--hash-max-ziplist-value") + 1]
    limits = [REDIS_DEFAULT_VALUE_LIMIT, documented]

    with bench_env(jogg=SignedUrlJogg()) as bench, tempfile.TemporaryDirectory() as exported:
        trees: list[tuple[Path | None, str]] = [(None, "this tree")]
        if args.baseline:
            trees.append(
                (export_tree(args.baseline, Path(exported), "bot", "handlers"), f"baseline {args.baseline}")
            )
        print_table("Machine", ["", ""], machine_rows(bench.r))
        tracked = []
        for attempt in range(0 if args.finished_only else repeat):
            print(f"\ntracking {n:,} jobs for {seconds:.0f} s (run {attempt + 1} of {repeat})…", flush=True)
            tracked.append(run_tracked(bench, n, seconds, args.delay_ms / 1000))
        finished = []
        for attempt in range(repeat):
            for limit in limits:
                for tree, label in trees:
                    print(
                        f"\n{finished_n:,} jobs to the end, limit {limit}, {label} "
                        f"(run {attempt + 1} of {repeat})…",
                        flush=True,
                    )
                    finished.append(run_finished(bench, finished_n, limit, tree, label))

    if tracked:
        report_tracked(tracked, n, args.delay_ms)
    report_finished(finished)
    report_targets(tracked, finished, n=n, limits=limits, documented=documented, trees=trees)


if __name__ == "__main__":
    main()
