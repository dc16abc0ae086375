"""The link pre-flight in the real bot under bursts of commands: it must not slow the ack, and it may add
less than 300 ms per job between the ack and the provider's create (issue "money under control").

What it compares: the real bot (`python -m bot`, tests.harness.BotProcess + bot_env, HTTP mode, the
production poll and lease timings of bench/common.py) in two configurations, interleaved run by run
(`--runs`, default 3, each on a fresh bot process and an emptied Redis):

  off   PREFLIGHT=off: the worker goes from the ack straight to the job's message and the JoggAI create
  on    PREFLIGHT=on, PREFLIGHT_ALLOWED_NETWORKS=127.0.0.1/32: before that, each job's two links are
        checked (bot/money/preflight.py: HEAD + ranged GETs of each link, libmediainfo in a thread)

Both with JOGG_POSTS_PER_MINUTE=100000 (JoggAI's 20 POSTs/min would otherwise set the pace) and
CACHE_DAYS=0, and every command's links carry a query string of their own (`?n=123`), so the result cache
never answers. The load (same in both): one warm-up round, then `--rounds` (default 10) rounds of a burst
of `--burst` (50) signed `/lipsync` form POSTs sent at once (tests/payloads, as bench/ack_latency.py's
"bursts"), the rounds starting every `--gap` (1 s) seconds: 50 commands a second, in bursts.

Per run, over the measured rounds' commands:
  ack       client send -> complete HTTP response, p50 / p99 (the bench's aiohttp client, one connection
            per concurrent request, in this process, alone)
  to create the bench's wall clock at the ack -> the fake JoggAI's wall clock when that job's create
            arrived (matched by the `?n=` of its video URL; both clocks are this machine's time.time())
            p50 / p95
  bot CPU   the bot process's utime+stime from the first measured round until the last create, per
            measured command (in `on`, the checks' HTTP and parsing are in it), and as cores (CPU seconds
            over that window's wall time: above 1.0, libmediainfo runs in threads beside the event loop)
  machine   the share of all cores busy over that window (/proc/stat): the bench, the bot, Redis, the
            fakes and the media server share this machine's cores
Each figure is reported as min / median / max over the runs. Each run also prints its rounds' median
ack -> create (does the wait grow round by round, i.e. does the bot fall behind?) and the media server's
CPU per command.

Targets, on the medians over the runs:
  added by the check = on - off of the ack -> create p50 < 300 ms (the issue's figure, for the typical
      job); the same difference of the p95 is shown against the same 300 ms
  does not slow the ack: ack p99 on <= 1.2x off. The 20 % margin is what separates a real slowdown from
      the run-to-run noise of a p99 over 500 acks on a 2-core machine (the 5th-slowest ack); ack p50
      on / off is shown for information.

How: a real Redis (bench/common.py's redis-server), and in processes of their own, so that none holds
another's interpreter lock (the machine's cores are shared by all of them):
  * the fake Slack and JoggAI of tests/fakes, started as `python -m bench.preflight_ack --fakes`; the
    same servers as `python -m bench.common --fakes`, but the JoggAI fake also notes the time each create
    arrives and answers `GET /bench/creates` with those times (bench.common's child cannot report them;
    tests/fakes/jogg_api.py keeps creates without a time)
  * the media server, `python -m bench.preflight_ack --media`: tests.fakes.media_server.MediaServer (HEAD and
    byte ranges like a CDN) serving files built by tests/media_samples.py: /talk.mp4, a 30 s mp4 of
    ~3 MB whose `moov` index is at the end (HEAD, head GET and a tail GET), and /voice.mp3, a 30 s mp3
    of ~480 KB (HEAD, head GET, tail GET)
Slack commands refuse IP-address links (bot/parsing/command.py), so the links are
`http://media.bench.test:<port>/talk.mp4?n=<n>`. The name resolves to 127.0.0.1 in the bot process only,
through bench/preflight_ack_shim/sitecustomize.py, first on the bot's PYTHONPATH: it wraps
socket.getaddrinfo for names ending in `.bench.test`, the same as a hosts-file entry; the bot's own code,
its SSRF guard included, is unchanged. Both configurations run with the shim (in `off` nothing resolves
the name), so the processes differ only in the PREFLIGHT settings.

Checks (exit status 1 if any fails; a missed target is reported, not an exit status): every command was
acked with 200, every command's job (warm-up included) reached the fake JoggAI exactly once, and in `on`
every job has its audio length (`audio_s`) in Redis: the check really ran.

Before each run the bench waits until `pgrep -f pytest` finds nothing (polled every 5 s), so a test suite
running on the same machine does not disturb it; during the run a shell loop (another process) looks for
one every second, and a run during which one ran is measured again (at most 4 attempts; a 4th disturbed
run is kept and marked).

Run from the repo root: `.venv/bin/python -m bench.preflight_ack [--runs N] [--rounds N] [--quick]`
(`--quick`: 1 run each, 3 rounds).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import httpx
import redis
from aiohttp import web

from bench.common import (
    RemoteFakes,
    cpu_seconds,
    json_child,
    print_machine,
    start_redis,
)
from bench.preflight_ack_report import (
    MAX_ATTEMPTS,
    WARMUP_ROUNDS,
    Command,
    Run,
    report,
    run_line,
)
from bot.jobs.keys import job_key, seen_key
from bot.programs.app import EVENTS_PATH
from tests.fakes.jogg_api import FakeJogg
from tests.fakes.media_server import Item, MediaServer
from tests.fakes.slack_api import FakeSlack
from tests.harness import REPO, BotProcess
from tests.media_samples import mp3, mp4
from tests.payloads import form_body, signed_headers, slash_command

RUNS = 3
ROUNDS = 10
QUICK_RUNS, QUICK_ROUNDS = 1, 3
BURST = 50
GAP_SECONDS = 1.0
CREATES_TIMEOUT_SECONDS = 60.0
QUIET_POLL_SECONDS = 5.0

MEDIA_HOST = "media.bench.test"  # resolved to 127.0.0.1 in the bot by the shim
SHIM = Path(__file__).resolve().parent / "preflight_ack_shim"
VIDEO_PATH, AUDIO_PATH = "/talk.mp4", "/voice.mp3"
MEDIA_SECONDS = 30.0
VIDEO_FILLER = 3_000_000  # ~30 s at 800 kbit/s: the index is far past the 256 KB head

COMMON = {"JOGG_POSTS_PER_MINUTE": "100000", "CACHE_DAYS": "0"}
CONFIGS: dict[str, dict[str, str]] = {
    "off": {"PREFLIGHT": "off"},
    "on": {"PREFLIGHT": "on", "PREFLIGHT_ALLOWED_NETWORKS": "127.0.0.1/32"},
}


# -- one run --------------------------------------------------------------------------------------


class Numbers:
    """The `?n=` of each command, unique over the whole bench (the fake JoggAI keeps every run's creates)."""

    def __init__(self) -> None:
        self.next = 1

    def take(self) -> int:
        self.next += 1
        return self.next - 1


def command_text(media_port: int, n: int) -> str:
    base = f"http://{MEDIA_HOST}:{media_port}"
    return f"{base}{VIDEO_PATH}?n={n} {base}{AUDIO_PATH}?n={n}"


async def load(
    url: str,
    response_url: str,
    media_port: int,
    numbers: Numbers,
    run: Run,
    rounds: int,
    burst: int,
    gap: float,
    on_measure: Callable[[], None],
) -> None:
    """The warm-up round and the measured rounds, each a burst of `burst` commands sent at once, the rounds
    starting `gap` seconds apart (or at once after the previous round's responses, if those come later)."""
    connector = aiohttp.TCPConnector(limit=burst, limit_per_host=burst)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(command: Command, body: bytes, headers: dict[str, str]) -> None:
            started = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as response:
                text = await response.read()
            command.latency_s = time.perf_counter() - started
            command.acked_at = time.time()
            # The bot acks a valid command silently: 200 with an empty body.
            command.status = str(response.status) + ("" if not text else " with a body")

        start = time.perf_counter()
        for index in range(WARMUP_ROUNDS + rounds):
            delay = start + index * gap - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if index == WARMUP_ROUNDS:
                on_measure()
            requests = []
            for _ in range(burst):
                n = numbers.take()
                fields = slash_command(command_text(media_port, n), response_url=response_url)
                command = Command(n, fields["trigger_id"], index)
                run.commands.append(command)
                body = form_body(fields)
                requests.append((command, body.encode(), signed_headers(body)))
            await asyncio.gather(*(one(command, body, headers) for command, body, headers in requests))


def creates(creates_url: str, wanted: set[int]) -> dict[int, list[float]]:
    """Arrival times (time.time() of the fakes' process) of the creates for the commands numbered `wanted`."""
    found: dict[int, list[float]] = {}
    for video_url, arrived in httpx.get(creates_url, timeout=10).json():
        values = parse_qs(urlsplit(video_url).query).get("n", [])
        if values and values[0].isdigit() and int(values[0]) in wanted:
            found.setdefault(int(values[0]), []).append(float(arrived))
    return found


def missing_audio_lengths(redis_url: str, triggers: list[str]) -> int:
    """How many of these commands' jobs have no `audio_s` in Redis (or no job at all)."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        pipe = client.pipeline(transaction=False)
        for trigger in triggers:
            pipe.get(seen_key(f"cmd:{trigger}"))  # the intake keeps the job's id under its trigger
        job_ids = pipe.execute()
        pipe = client.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hget(job_key(job_id or "none"), "audio_s")
        return sum(1 for value in pipe.execute() if not value)
    finally:
        client.close()


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine so far, all cores (/proc/stat), in clock ticks."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def measure(
    config: str,
    fakes: RemoteFakes,
    media: dict[str, Any],
    numbers: Numbers,
    rounds: int,
    burst: int,
    gap: float,
) -> Run:
    """Start the bot in `config` on an empty Redis, load it, wait for every create, stop it."""
    redis.Redis.from_url(fakes.redis_url).flushall()  # no jobs left over from an earlier run
    env = fakes.bot_env(**COMMON, **CONFIGS[config], PYTHONPATH=f"{SHIM}{os.pathsep}{REPO}")
    run = Run(config)
    log_name = f"bot-{config}-{numbers.next}"
    bot = BotProcess(env, fakes.workdir, name=log_name).start()
    media_port, media_pid = int(media["port"]), int(media["pid"])
    at_start = (0.0, 0.0, 0.0, (0, 0))  # bot CPU, media CPU, wall clock, machine jiffies

    def on_measure() -> None:
        nonlocal at_start
        at_start = (cpu_seconds(bot.pid), cpu_seconds(media_pid), time.monotonic(), machine_jiffies())

    def window_ends() -> None:
        bot_cpu, media_cpu, started, (busy, total) = at_start
        run.cpu_s = cpu_seconds(bot.pid) - bot_cpu
        run.media_cpu_s = cpu_seconds(media_pid) - media_cpu
        run.window_s = time.monotonic() - started
        busy_now, total_now = machine_jiffies()
        run.machine_busy = (busy_now - busy) / max(1, total_now - total)

    try:
        url = f"{bot.url}{EVENTS_PATH}"
        response_url = fakes.response_url("bench")
        asyncio.run(load(url, response_url, media_port, numbers, run, rounds, burst, gap, on_measure))
        last_ack = max(c.acked_at for c in run.commands)
        wanted = {c.n for c in run.commands}
        creates_url = fakes.info["creates_url"]
        deadline = time.monotonic() + CREATES_TIMEOUT_SECONDS
        while True:
            run.created_at = creates(creates_url, wanted)
            if len(run.created_at) == len(wanted):
                window_ends()
                run.creates_after_s = max(t[0] for t in run.created_at.values()) - last_ack
                break
            if time.monotonic() > deadline:
                window_ends()
                break
            time.sleep(0.2)
        time.sleep(0.5)  # a second create of a job would come right after the first: look again
        run.created_at = creates(creates_url, wanted)
        if config == "on":
            run.audio_missing = missing_audio_lengths(fakes.redis_url, [c.trigger for c in run.commands])
    finally:
        bot.stop()
    run.log_errors = [
        line
        for line in (fakes.workdir / f"{log_name}.log").read_text().splitlines()
        if " ERROR " in line or "Traceback" in line or "refused" in line
    ]
    return run


# -- not disturbed by a test suite ----------------------------------------------------------------


def pytest_running() -> bool:
    return subprocess.run(["pgrep", "-f", "pytest"], capture_output=True).returncode == 0


def wait_for_quiet() -> None:
    """Return once no pytest process runs (polled every 5 s), saying so while waiting."""
    if not pytest_running():
        return
    started = time.monotonic()
    print("waiting: a pytest process is running (pgrep -f pytest); polling every 5 s", flush=True)
    said = started
    while pytest_running():
        time.sleep(QUIET_POLL_SECONDS)
        if time.monotonic() - said >= 60:
            said = time.monotonic()
            print(f"  still waiting for pytest to end ({said - started:.0f} s)", flush=True)
    print(f"  pytest ended after {time.monotonic() - started:.0f} s of waiting; measuring", flush=True)


@contextlib.contextmanager
def pytest_watch(workdir: Path) -> Iterator[Callable[[], bool]]:
    """A shell loop, outside this process, that looks for a pytest process every second while the block
    runs; yields "was one seen?". (`[p]ytest` matches "pytest" but not the loop's own command line.)"""
    marks = workdir / "pytest-seen"
    marks.unlink(missing_ok=True)
    loop = "while :; do pgrep -f '[p]ytest' >/dev/null && echo seen; sleep 1; done"
    with marks.open("wb") as out:
        watcher = subprocess.Popen(["sh", "-c", loop], stdout=out, stderr=subprocess.DEVNULL)
    try:
        yield lambda: marks.stat().st_size > 0
    finally:
        watcher.terminate()
        watcher.wait()


# -- the children: the fakes, the media server ------------------------------------------------------


class TimedJogg(FakeJogg):
    """The fake JoggAI, noting when each create arrives (this process's time.time()); `GET /bench/creates`
    answers [[video_url, arrival], ...]."""

    def _init_state(self) -> None:
        super()._init_state()
        self.arrivals: list[tuple[str, float]] = []

    async def _create(self, request: web.Request, body: Any) -> web.Response:
        arrived = time.time()
        response = await super()._create(request, body)  # raises on a bad create: not noted
        with self.lock:
            self.arrivals.append((str(body["video_url"]), arrived))
        return response

    def routes(self, app: web.Application) -> None:
        super().routes(app)
        app.router.add_get("/bench/creates", self._creates)

    async def _creates(self, request: web.Request) -> web.Response:
        with self.lock:
            arrivals = list(self.arrivals)
        return web.json_response(arrivals)


def serve_fakes() -> None:
    with FakeSlack() as slack, TimedJogg() as jogg:
        info = {
            "slack_bot_token": slack.bot_token,
            "slack_api_url": slack.api_url,
            "slack_base_url": slack.base_url,
            "jogg_api_key": jogg.api_key,
            "jogg_base_url": jogg.base_url,
            "creates_url": f"{jogg.base_url}/bench/creates",
        }
        print(json.dumps(info), flush=True)
        sys.stdin.read()  # until the parent closes the pipe (or dies)


def serve_media() -> None:
    video = mp4(MEDIA_SECONDS, moov_at_end=True, filler=VIDEO_FILLER, listed_sizes=True)
    audio = mp3(MEDIA_SECONDS)
    with MediaServer() as media:
        media.add(VIDEO_PATH, Item(video, "video/mp4"))
        media.add(AUDIO_PATH, Item(audio, "audio/mpeg"))
        print(
            json.dumps({"port": media.port, "video_bytes": len(video), "audio_bytes": len(audio)}), flush=True
        )
        sys.stdin.read()


@contextlib.contextmanager
def child(flag: str, workdir: Path) -> Iterator[dict[str, Any]]:
    """`python -m bench.preflight_ack <flag>` as a child; yields the JSON line it prints, with its pid."""
    with json_child("bench.preflight_ack", flag, workdir / f"{flag.strip('-')}.log") as (info, pid):
        yield {**info, "pid": pid}


def measure_interleaved(
    fakes: RemoteFakes, media: dict[str, Any], runs_each: int, rounds: int, burst: int, gap: float
) -> list[Run]:
    """`runs_each` runs of each configuration, interleaved; a run a test suite disturbed is measured again."""
    numbers = Numbers()
    runs: list[Run] = []
    total = runs_each * len(CONFIGS)
    for _ in range(runs_each):
        for config in CONFIGS:
            for attempt in range(1, MAX_ATTEMPTS + 1):
                wait_for_quiet()
                with pytest_watch(fakes.workdir) as seen:
                    run = measure(config, fakes, media, numbers, rounds, burst, gap)
                run.disturbed = seen() or pytest_running()
                if not run.disturbed:
                    break
                again = "measuring it again" if attempt < MAX_ATTEMPTS else "kept, marked as disturbed"
                print(f"  a pytest process ran during this {config} run: {again}", flush=True)
            runs.append(run)
            print(run_line(len(runs), total, run), flush=True)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--runs", type=int, help=f"runs per configuration (default {RUNS}, --quick {QUICK_RUNS})"
    )
    parser.add_argument(
        "--rounds", type=int, help=f"measured rounds (default {ROUNDS}, --quick {QUICK_ROUNDS})"
    )
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_RUNS} run, {QUICK_ROUNDS} rounds")
    parser.add_argument("--burst", type=int, default=BURST, help=f"commands per round (default {BURST})")
    parser.add_argument("--gap", type=float, default=GAP_SECONDS, help="seconds from round to round")
    parser.add_argument("--fakes", action="store_true", help=argparse.SUPPRESS)  # the children's side
    parser.add_argument("--media", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fakes:
        serve_fakes()
        return
    if args.media:
        serve_media()
        return
    runs_each = args.runs or (QUICK_RUNS if args.quick else RUNS)
    rounds = args.rounds or (QUICK_ROUNDS if args.quick else ROUNDS)

    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory(prefix="bench-preflight-ack-") as tmp:
        workdir = Path(tmp)
        server = start_redis(workdir)
        stack.callback(server.stop)
        info = stack.enter_context(child("--fakes", workdir))
        media = stack.enter_context(child("--media", workdir))
        fakes = RemoteFakes(workdir, server, info)
        print_machine(fakes.redis_url)
        print(
            f"load: {WARMUP_ROUNDS} warm-up round, then {rounds} measured rounds of {args.burst} commands at "
            f"once, {args.gap:g} s apart; {runs_each} runs per configuration, interleaved, each on a fresh "
            "bot process and an emptied Redis"
        )
        print(
            f"links: http://{MEDIA_HOST}:<port>{VIDEO_PATH}?n=<n> ({MEDIA_SECONDS:.0f} s mp4, index at the "
            f"end, {media['video_bytes']:,} bytes) and {AUDIO_PATH}?n=<n> ({MEDIA_SECONDS:.0f} s mp3, "
            f"{media['audio_bytes']:,} bytes), {MEDIA_HOST} -> 127.0.0.1 by bench/preflight_ack_shim\n",
            flush=True,
        )
        runs = measure_interleaved(fakes, media, runs_each, rounds, args.burst, args.gap)
        print()
        ok = report(runs)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
