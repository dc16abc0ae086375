"""Shared set-up for the sweep benchmarks (poll_sweep, memory_jobs, e2e_latency).

Each run starts its own real Redis (the embedded redis-server, on a free TCP port, in a temporary
directory, with the bot's durability settings), the fake JoggAI and fake Slack from tests/fakes on
127.0.0.1, seeds jobs straight into Redis in the store's own format, and runs the real bot as
`python -m bot` in a child process, configured as tests/harness.bot_env does.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from bench.common import cpu_model, status_kb
from bot.jobs import codec
from bot.jobs.keys import job_key, lease_key, queue_key
from bot.jobs.lanes import Lane
from bot.jobs.model import AudioTrack, Identity, Job, Media, Post, Posts, PostState, Progress, Status
from bot.programs.embedded_redis import EmbeddedRedis
from tests.fakes.jogg_api import FakeJogg, Outcome
from tests.fakes.slack_api import FakeSlack
from tests.harness import BotProcess, bot_env, free_port

BATCH = 1000  # jobs per pipelined write
NEVER = Outcome("never")  # the task stays "processing": every poll reschedules


# -- reporting -------------------------------------------------------------------------------------


def machine_rows(r: redis.Redis) -> list[tuple[str, str]]:
    server = r.info("server")
    return [
        ("cores (nproc)", str(len(os.sched_getaffinity(0)))),
        ("CPU", cpu_model()),
        ("Python", platform.python_version()),
        ("Redis", f"{server['redis_version']} (embedded, appendonly everysec)"),
        ("kernel", platform.release()),
        ("load average at start (1/5/15 min)", " / ".join(f"{x:.2f}" for x in os.getloadavg())),
    ]


def print_table(title: str, headers: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    body = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h) for i, h in enumerate(headers)]
    print(f"\n{title}")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in body:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    sys.stdout.flush()


# -- Redis measurements ----------------------------------------------------------------------------


def commandstats(r: redis.Redis) -> dict[str, int]:
    """Calls per command since the server started (commands run inside scripts are counted too)."""
    stats: dict[str, Any] = r.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


def stats_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}


def redis_cpu_seconds(r: redis.Redis) -> float:
    cpu: dict[str, Any] = r.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in kB."""
    return {field: status_kb(pid, field) for field in ("VmRSS", "VmHWM")}


def redis_time_ms(r: redis.Redis) -> int:
    seconds, micros = r.time()
    return int(seconds) * 1000 + int(micros) // 1000


# -- the environment --------------------------------------------------------------------------------


@dataclass
class Bench:
    workdir: Path
    redis_server: EmbeddedRedis
    r: redis.Redis
    jogg: FakeJogg
    slack: FakeSlack


@contextlib.contextmanager
def bench_env(jogg: FakeJogg | None = None) -> Iterator[Bench]:
    """A temporary directory, a Redis on a free port, FakeJogg (or `jogg`) and FakeSlack; all torn down
    after."""
    with tempfile.TemporaryDirectory(prefix="lipsync-bench-") as tmp:
        workdir = Path(tmp)
        server = EmbeddedRedis(workdir / "redis", port=free_port()).start()
        r = redis.Redis.from_url(server.url, decode_responses=True)
        jogg, slack = jogg or FakeJogg(), FakeSlack()
        jogg.record_requests = False  # 100,000 polls must not keep 100,000 request records
        try:
            jogg.start()
            slack.start()
            yield Bench(workdir, server, r, jogg, slack)
        finally:
            slack.stop()
            jogg.stop()
            r.close()
            server.stop()


class BenchBot(BotProcess):
    """`python -m bot` as a child process, optionally under cProfile (`profile_to`)."""

    def __init__(self, env: dict[str, str], cwd: Path, profile_to: Path | None = None) -> None:
        profile = ["-m", "cProfile", "-o", str(profile_to)] if profile_to is not None else []
        super().__init__(env, cwd, name="bench-bot", argv=[sys.executable, *profile, "-m", "bot"])

    def stop(self) -> None:
        super().stop()
        if self.proc is not None and self.proc.returncode not in (0, None):
            print(f"(bot exited with {self.proc.returncode})", file=sys.stderr)
        self.report_log()

    def report_log(self, show: int = 5) -> None:
        """Say how many warnings and errors the bot logged, with the first few of them."""
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        bad = [line for line in lines if " WARNING " in line or " ERROR " in line or "Traceback" in line]
        if bad:
            print(f"  (the bot logged {len(bad)} warnings/errors; first {min(show, len(bad))}:)")
            for line in bad[:show]:
                print(f"    {line[:200]}")
        self.log.unlink(missing_ok=True)  # the next run starts a fresh log


def start_bot(bench: Bench, profile_to: Path | None = None, **env_overrides: str) -> BenchBot:
    """The real bot against this bench's Redis and fakes. Empty override values fall back to defaults
    (bot_env sets test-speed POLL_INTERVAL_SECONDS and LEASE_SECONDS; pass "" to use the defaults)."""
    overrides = {"REDIS_URL": bench.redis_server.url, **env_overrides}
    env = bot_env(bench.slack, bench.jogg, bench.workdir, **overrides)
    return BenchBot(env, bench.workdir, profile_to).start()


# -- jobs ------------------------------------------------------------------------------------------


def job_ids(n: int, base_ms: int) -> list[str]:
    # Time-ordered like bot.jobs.model.new_job_id, and unique without randomness.
    return [f"{base_ms:012x}{i:08x}" for i in range(n)]


def task_id_for(job_id: str) -> str:
    return f"bench-{job_id}"


def seed_poll_jobs(
    bench: Bench,
    n: int,
    *,
    channels: int = 50,
    with_parents: bool = False,
    outcome: Outcome = NEVER,
    age_s: float = 0.0,
) -> list[str]:
    """Write `n` jobs that are being polled, in the store's format, and make their tasks exist in the
    fake JoggAI. The hashes are written here; `enqueue` puts them in the poll lane.

    Jobs look like the ones the submit step (bot/lanes/submit.py) hands to the poll lane: status
    processing, a task id, a posted parent message (`with_parents` posts a real one in the fake Slack so
    the reply can go in its thread), created `age_s` ago (the poll cadence slows with age). Pipelined: one
    round trip per BATCH jobs.
    """
    r, slack = bench.r, bench.slack
    now = redis_time_ms(r)
    ids = job_ids(n, now)
    created_ms = now - int(age_s * 1000)
    bench.jogg.seed_tasks((task_id_for(i) for i in ids), outcome)
    for start in range(0, n, BATCH):
        with r.pipeline(transaction=False) as pipe:
            for index in range(start, min(n, start + BATCH)):
                job_id = ids[index]
                channel = f"C{index % channels:06d}"
                parent_ts = f"{now // 1000}.{index:06d}"
                if with_parents:
                    parent = slack.add_message(channel, "Dubbing…", user=slack.bot_user_id, bot_id="B0BOT")
                    parent_ts = str(parent["ts"])
                job = Job(
                    id=job_id,
                    status=Status.PROCESSING,
                    identity=Identity(
                        team=slack.team_id,
                        channel=channel,
                        person="U0USER",
                        response_url=slack.response_url(f"bench-{index}"),
                    ),
                    inputs=AudioTrack(
                        video=Media(link="https://cdn.example.com/bench.mp4"),
                        audio=Media(link="https://cdn.example.com/bench.mp3"),
                    ),
                    progress=Progress(
                        created_ms=created_ms,
                        updated_ms=created_ms,
                        timeout_s=1800,
                        task_id=task_id_for(job_id),
                    ),
                    posts=Posts(parent=Post(ts=parent_ts, state=PostState.POSTED)),
                )
                pipe.hset(job_key(job_id), mapping=dict[Any, Any](codec.to_fields(job)))
            pipe.execute()
    return ids


def enqueue(r: redis.Redis, ids: Sequence[str], due_ms: int | None = None, chunk: int = 10_000) -> int:
    """Put the jobs in the poll lane, due at `due_ms` (now by default). Returns the commands sent."""
    due = redis_time_ms(r) if due_ms is None else due_ms
    sent = 0
    for start in range(0, len(ids), chunk):
        r.zadd(queue_key(Lane.POLL), dict.fromkeys(ids[start : start + chunk], due))
        sent += 1
    return sent


def enqueue_spread(r: redis.Redis, ids: Sequence[str], over_ms: int) -> None:
    """Put the jobs in the poll lane due at instants spread evenly over the next `over_ms`, as they are
    in steady state."""
    now = redis_time_ms(r)
    step = over_ms / max(1, len(ids))
    r.zadd(queue_key(Lane.POLL), {job_id: now + int(i * step) for i, job_id in enumerate(ids)})


def poll_intervals_s(r: redis.Redis, ids: Sequence[str], sample: int = 500) -> list[float]:
    """For a sample of jobs, seconds from their last update to when they are next due: the poll
    interval the bot chose at their last reschedule (jobs not polled yet, or claimed now, are skipped)."""
    step = max(1, len(ids) // sample)
    chosen = list(ids[::step])[:sample]
    with r.pipeline(transaction=False) as pipe:
        for job_id in chosen:
            pipe.zscore(queue_key(Lane.POLL), job_id)
            pipe.hmget(job_key(job_id), ["updated_ms", "polls"])
            pipe.hexists(lease_key(Lane.POLL), job_id)
        replies = pipe.execute()
    out = []
    for score, (updated, polls), leased in zip(replies[0::3], replies[1::3], replies[2::3], strict=True):
        if score is not None and updated and int(polls or 0) > 0 and not leased:
            out.append((float(score) - int(updated)) / 1000)
    return out


def wait_for(predicate: Any, timeout: float, interval: float = 0.01) -> float:
    """Wait until predicate() is true; the monotonic time it was first seen true."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(f"not done within {timeout:.0f}s")
        time.sleep(interval)
