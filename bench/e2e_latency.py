"""End-to-end latency: from "the provider reports success" to "the threaded reply is posted in Slack".

How: a real Redis (embedded redis-server, own port and temp dir), the fake JoggAI and fake Slack from
tests/fakes on 127.0.0.1, and the real bot as a child process (`python -m bot`, env as in
tests/harness.bot_env, with the DEFAULT poll cadence: POLL_INTERVAL_SECONDS and
POLL_MAX_INTERVAL_SECONDS unset). 1,000 jobs are written into the poll lane in the store's own format,
each with its job message already posted in the fake Slack (by the bot user) and a task that stays
"processing"; their first polls are spread over one poll interval, as in steady state. The provider
answers each GET after 50 ms. After a warm-up, a sample of tasks is switched to "success" in the fake
provider at known instants spread over a window; for each we take

  * the poll interval in force for that job: the delay the bot chose at its last reschedule before the
    switch (its lane score minus its `updated_ms`, read from Redis just before);
  * detection: when the provider first answered a GET with "success" (recorded by the fake);
  * the reply: the `ts` of the threaded reply in the fake Slack (its clock at chat.postMessage).

Target: every reply within one poll interval + 1 s of the provider reporting success. Jobs are fresh
(created at the start) unless `--age` says otherwise; the adaptive cadence gives fresh jobs the shortest
interval, which is the hardest budget.

    .venv/bin/python -m bench.e2e_latency               # 1,000 jobs, 100 samples over 30 s
    .venv/bin/python -m bench.e2e_latency --quick       # 300 jobs, 30 samples over 12 s
    .venv/bin/python -m bench.e2e_latency --age 120     # jobs two minutes old: the next cadence step
"""

from __future__ import annotations

import argparse
import random
import time
from dataclasses import dataclass

import redis

from bench._sweep_setup import (
    Bench,
    bench_env,
    enqueue,
    machine_rows,
    poll_intervals_s,
    print_table,
    redis_time_ms,
    seed_poll_jobs,
    start_bot,
    task_id_for,
    wait_for,
)
from bench.common import percentile
from bot.jobs.keys import job_key, lease_key, queue_key
from bot.jobs.lanes import Lane
from bot.settings import Settings
from tests.fakes.jogg_api import Outcome

SUCCESS = Outcome("success", polls=0, duration_seconds=12.5)


@dataclass
class Sample:
    job_id: str
    channel: str
    parent_ts: str
    interval_s: float
    marked_at: float
    detected_at: float = 0.0
    replied_at: float = 0.0

    @property
    def latency_s(self) -> float:
        return self.replied_at - self.marked_at

    @property
    def over_budget_s(self) -> float:
        return self.latency_s - (self.interval_s + 1.0)


def scheduled_interval_s(r: redis.Redis, job_id: str) -> float | None:
    """The delay the bot chose at this job's last reschedule; None while the job is claimed (or was
    never polled)."""
    with r.pipeline(transaction=False) as pipe:
        pipe.zscore(queue_key(Lane.POLL), job_id)
        pipe.hmget(job_key(job_id), ["updated_ms", "polls"])
        pipe.hexists(lease_key(Lane.POLL), job_id)
        score, (updated, polls), leased = pipe.execute()
    if score is None or not updated or not int(polls or 0) or leased:
        return None
    return (float(score) - int(updated)) / 1000


def age_jobs(r: redis.Redis, ids: list[str], age_s: float) -> None:
    """Make the jobs look `age_s` old (created_ms in the past), for the cadence of older tasks."""
    created = redis_time_ms(r) - int(age_s * 1000)
    with r.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hset(job_key(job_id), "created_ms", created)
        pipe.execute()


def mark_samples(bench: Bench, ids: list[str], count: int, window_s: float) -> list[Sample]:
    """Switch `count` random tasks to success at instants spread evenly over `window_s`."""
    r, jogg = bench.r, bench.jogg
    chosen = random.sample(ids, count)
    start = time.monotonic()
    samples: list[Sample] = []
    for index, job_id in enumerate(chosen):
        due = start + window_s * (index + random.random()) / count
        time.sleep(max(0.0, due - time.monotonic()))
        interval = scheduled_interval_s(r, job_id)
        while interval is None:  # claimed right now: the next reschedule tells us the interval
            time.sleep(0.005)
            interval = scheduled_interval_s(r, job_id)
        channel, parent_ts = r.hmget(job_key(job_id), ["channel", "parent_ts"])
        marked_at = time.time()
        jogg.finish(task_id_for(job_id), SUCCESS)
        samples.append(Sample(job_id, str(channel), str(parent_ts), interval, marked_at))
    return samples


def collect(bench: Bench, samples: list[Sample], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    waiting = list(samples)
    while waiting and time.monotonic() < deadline:
        time.sleep(0.05)
        still = []
        for sample in waiting:
            replies = bench.slack.replies(sample.channel, sample.parent_ts)
            if replies:
                sample.replied_at = float(replies[0]["ts"])
                sample.detected_at = bench.jogg.final_reported_at.get(task_id_for(sample.job_id), 0.0)
            else:
                still.append(sample)
        waiting = still
    if waiting:
        raise TimeoutError(f"{len(waiting)} of {len(samples)} replies never came")


@dataclass
class Measured:
    samples: list[Sample]
    intervals: list[float]  # every job's next-poll delay after the warm-up, in seconds
    gets: int  # GETs the fake JoggAI answered during the run


def measure(bench: Bench, *, n: int, count: int, window: float, age_s: float, interval_s: float) -> Measured:
    """`n` jobs polled by the real bot; `count` of their tasks switched to success over `window` seconds,
    each timed until its threaded reply is posted."""
    r = bench.r
    bot = start_bot(bench, POLL_INTERVAL_SECONDS="", LEASE_SECONDS="")
    try:
        ids = seed_poll_jobs(bench, n, with_parents=True)
        if age_s:
            age_jobs(r, ids, age_s)
        now = redis_time_ms(r)
        spread_ms = int(interval_s * 1000)
        by_due: dict[int, list[str]] = {}
        for job_id in ids:  # first polls spread over one interval, as in steady state
            by_due.setdefault(now + random.randrange(spread_ms), []).append(job_id)
        for due, group in by_due.items():
            enqueue(r, group, due)
        print(f"\n{n:,} jobs polled; warming up, then {count} successes over {window:.0f} s")
        # Warm-up: every job polled once (so each has a real next-poll delay), then a little more.
        wait_for(lambda: bench.jogg.tasks_polled >= n, timeout=120)
        time.sleep(interval_s / 2)
        intervals = poll_intervals_s(r, ids)
        samples = mark_samples(bench, ids, count, window)
        collect(bench, samples, timeout_s=4 * max(s.interval_s for s in samples) + 30)
        return Measured(samples, intervals, bench.jogg.gets_answered)
    finally:
        bot.stop()


def report(
    measured: Measured,
    *,
    n: int,
    count: int,
    age_s: float,
    default_interval: float,
    default_max: float | None,
) -> None:
    samples, intervals = measured.samples, measured.intervals
    latencies = [s.latency_s for s in samples]
    detect = [s.detected_at - s.marked_at for s in samples]
    send = [s.replied_at - s.detected_at for s in samples]
    in_force = sorted({round(s.interval_s, 1) for s in samples})
    print_table(
        "Poll cadence",
        ["", ""],
        [
            ("POLL_INTERVAL_SECONDS default", f"{default_interval:g} s"),
            ("POLL_MAX_INTERVAL_SECONDS default", f"{default_max:g} s" if default_max else "(none)"),
            ("job age at start", f"{age_s:g} s"),
            (
                "interval in force for the samples (chosen at last reschedule)",
                ", ".join(f"{i:g} s" for i in in_force),
            ),
            (
                "median next-poll delay over all jobs after warm-up",
                f"{sorted(intervals)[len(intervals) // 2]:.1f} s",
            ),
            ("GETs answered during the run", f"{measured.gets:,}"),
        ],
    )
    print_table(
        f"Provider success → threaded reply posted ({count} samples, {n:,} active jobs)",
        ["", "p50 s", "p90 s", "p99 s", "max s"],
        [
            (name, *(f"{percentile(values, p):.2f}" for p in (50, 90, 99)), f"{max(values):.2f}")
            for name, values in (
                ("success → reply posted", latencies),
                ("  success → first GET seeing it (poll wait)", detect),
                ("  that GET → reply posted (send lane)", send),
                ("reply minus budget (interval + 1 s)", [s.over_budget_s for s in samples]),
            )
        ],
    )
    late = [s for s in samples if s.over_budget_s > 0]
    verdict = "MET" if not late else "MISSED"
    print(
        f"\ntarget (each reply within the poll interval in force + 1 s): {verdict} "
        f"({len(late)} of {count} late; worst {max(s.over_budget_s for s in samples):+.2f} s vs budget)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=None, help="active jobs being polled (1000)")
    parser.add_argument("--samples", type=int, default=None, help="tasks switched to success (100)")
    parser.add_argument("--window", type=float, default=None, help="seconds over which they are switched")
    parser.add_argument("--age", type=float, default=0.0, help="how old the jobs are at the start (s)")
    parser.add_argument("--quick", action="store_true", help="a smaller run: 300 jobs, 30 samples")
    parser.add_argument("--delay-ms", type=float, default=50.0, help="provider answer time per GET")
    args = parser.parse_args()
    n = args.jobs or (300 if args.quick else 1000)
    count = args.samples or (30 if args.quick else 100)
    window = args.window or (12.0 if args.quick else 30.0)
    defaults = Settings.model_fields
    default_interval = defaults["poll_interval_seconds"].default
    default_max = (
        defaults["poll_max_interval_seconds"].default if "poll_max_interval_seconds" in defaults else None
    )

    with bench_env() as bench:
        print_table("Machine", ["", ""], machine_rows(bench.r))
        bench.jogg.get_delay_seconds = args.delay_ms / 1000
        measured = measure(
            bench, n=n, count=count, window=window, age_s=args.age, interval_s=default_interval
        )
    report(
        measured, n=n, count=count, age_s=args.age, default_interval=default_interval, default_max=default_max
    )


if __name__ == "__main__":
    main()
