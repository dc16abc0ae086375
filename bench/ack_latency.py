"""Ack latency and throughput of `/lipsync` in HTTP mode, against a bare Bolt app in the same run.

What it measures: for each request, the time from the client's send to the complete HTTP response (the
ack, which Slack waits for 3 s at most), as p50/p99; the requests answered per second; and the server
process's CPU time per request over the measured rounds (utime+stime from /proc/<pid>/stat), which
includes the work each command sets off after its ack (the worker posting its message...). Each server
is measured `--repeat` times (default 3), interleaved with the others so that a noisy moment of the
machine falls on all of them, and every figure is reported as min / median / max over those runs.

Three arrival patterns (`--modes`), each on a fresh server process and an emptied Redis, after ~100
warm-up requests that are not counted:
  single        one sender, one request at a time (500 requests; `--quick` 125): the ack of a lone
                command, which Bolt's default ack polling (every 10 ms) keeps above 10 ms.
  back-to-back  50 senders; each round is sent as soon as the previous round's 50 responses are in
                (20 rounds; `--quick` 5): a sustained load that keeps the server's event loop saturated,
                so latency and throughput follow the CPU each request costs.
  bursts        the rounds are `--gap` seconds apart (default 0.5): 50 commands at once, then quiet, the
                way Slack traffic peaks; latency is what a burst costs while earlier work is done.

How: a real Redis (bench/common.py) and the fake Slack and JoggAI (tests/fakes, in a process of their own
so they never hold the client's interpreter lock) on 127.0.0.1. Each server runs alone in its own
subprocess, in turn, and gets the same load from the same aiohttp client (one kept-alive connection per
concurrent request); every request is a signed form POST to /slack/events built with tests/payloads, with
valid input and a unique trigger_id.

  aiohttp only   an aiohttp server that reads the body and answers 200: the floor set by the client,
                 loopback and aiohttp (so the client's own overhead is inside this figure).
  bare Bolt ack  what a Bolt user writes first: AsyncApp with its defaults (signature checked by Bolt,
                 ack sent as soon as the listener calls ack()) served by Bolt's aiohttp adapter, with a
                 /lipsync listener that only acks.
  bot            `python -m bot` as in production (tests.harness.BotProcess + bot_env, production poll and
                 lease timings, REDIS_URL = the bench's Redis): check the signature, parse, store the job
                 in Redis, then ack (durable before acknowledged); the worker starts on it (posting its
                 message, JoggAI's rate limit…) while later requests arrive. Afterwards the bench checks
                 that every request's job is in Redis.

Targets, on the medians of the runs: single: bot p50 <= 5 ms. back-to-back and bursts: bot p99 < 100 ms
and <= 1.5x the bare app's. back-to-back: bot commands/s >= 0.7x the bare app's, CPU <= 0.9 ms a command.

Run from the repo root: `.venv/bin/python -m bench.ack_latency [--quick] [--repeat N] [--modes single,...]
[--servers raw,bare,bot] [--gap S] [--profile DIR]`.
With `--profile DIR` the bare app and the bot run under cProfile during the measured rounds only (slower:
those latencies are not the benchmark's); the hottest functions are printed and the .prof files kept.
The exit status is 1 if a request failed or a job was not stored, whatever the latencies.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import redis
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncAck, AsyncApp

from bench.ack_latency_report import (
    SERVERS,
    WARMUP_REQUESTS,
    Mode,
    Run,
    print_profile,
    report,
)
from bench.common import (
    RemoteFakes,
    cpu_seconds,
    print_machine,
    remote_stack,
)
from bot.jobs.keys import seen_key
from bot.programs.app import EVENTS_PATH, HEALTH_PATH
from bot.programs.main import main as bot_main
from bot.providers.registry import REGISTRY
from bot.settings import Settings
from bot.slack.out import make_client
from tests.fakes.server import wait_until
from tests.harness import BotProcess
from tests.payloads import form_body, signed_headers, slash_command

CONCURRENCY = 50
ROUNDS = 20
QUICK_ROUNDS = 5
REPEATS = 3
SINGLE_SENDER_REQUESTS = 500
BURST_GAP_SECONDS = 0.5
TEXT = "https://cdn.example.com/talk.mp4 https://cdn.example.com/voice-fr.mp3 normal_reverse"

SERVE = ["-m", "bench.ack_latency", "--serve"]
PROFILE_ENV = "BENCH_PROFILE"  # where a `--serve` child writes its profile of the measured rounds

log = logging.getLogger("bench.ack_latency")


# -- the load -------------------------------------------------------------------------------------


async def hammer(
    url: str, response_url: str, run: Run, on_measure: Callable[[bool], None] = lambda starting: None
) -> Run:
    """The warm-up rounds, then the measured rounds of `run.mode`, timed. `on_measure(True)` runs before
    the first measured round, `on_measure(False)` after the last."""
    mode = run.mode
    concurrency, gap, warmup = mode.concurrency, mode.gap, mode.warmup_rounds
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(body: bytes, headers: dict[str, str]) -> tuple[float, str]:
            started = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as response:
                text = await response.read()
            elapsed = time.perf_counter() - started
            # The bot acks a valid command silently: 200 with an empty body.
            return elapsed, str(response.status) + ("" if not text else " with a body")

        for index in range(warmup + mode.rounds):
            if index and gap:
                await asyncio.sleep(gap)
            if index == warmup:
                on_measure(True)
            requests = []
            for _ in range(concurrency):
                fields = slash_command(TEXT, response_url=response_url)
                run.triggers.append(fields["trigger_id"])
                body = form_body(fields)
                requests.append((body.encode(), signed_headers(body)))
            started = time.perf_counter()
            results = await asyncio.gather(*(one(body, headers) for body, headers in requests))
            if index >= warmup:
                run.seconds += time.perf_counter() - started
                for elapsed, status in results:
                    run.latencies.append(elapsed)
                    run.statuses[status] += 1
        on_measure(False)
    return run


def stored_jobs(redis_url: str, triggers: list[str]) -> int:
    """How many of these slash commands have their job in Redis (the intake writes its dedupe marker in the
    same atomic step as the job)."""
    client = redis.Redis.from_url(redis_url)
    try:
        pipe = client.pipeline(transaction=False)
        for trigger in triggers:
            pipe.exists(seen_key(f"cmd:{trigger}"))
        return sum(int(found) for found in pipe.execute())
    finally:
        client.close()


def measure(kind: str, mode: Mode, fakes: RemoteFakes, profile: Path | None) -> Run:
    """Start the `kind` server on an empty Redis, load it, stop it."""
    redis.Redis.from_url(fakes.redis_url).flushall()  # no jobs left over from an earlier run
    env = fakes.bot_env()
    argv = [sys.executable, "-m", "bot"] if kind == "bot" else [sys.executable, *SERVE, kind]
    run = Run(SERVERS[kind], mode)
    if profile is not None:
        # The same server, started through this module so that it profiles the measured rounds only.
        run.profile = profile.resolve() / f"{kind}-{mode.key}.prof"
        run.profile.unlink(missing_ok=True)
        env[PROFILE_ENV] = str(run.profile)
        argv = [sys.executable, *SERVE, kind]
    server = BotProcess(env, fakes.workdir, name=kind, argv=argv).start()
    cpu_at_start = 0.0

    def on_measure(starting: bool) -> None:
        nonlocal cpu_at_start
        if starting:
            cpu_at_start = cpu_seconds(server.pid)
        else:
            run.cpu = cpu_seconds(server.pid) - cpu_at_start
        if run.profile is not None:
            os.kill(server.pid, signal.SIGUSR1 if starting else signal.SIGUSR2)

    try:
        url = f"{server.url}{EVENTS_PATH}"
        asyncio.run(hammer(url, fakes.response_url("bench"), run, on_measure))
        if run.profile is not None:
            wait_until(run.profile.exists, timeout=30, message=f"{run.profile} written")
        if kind == "bot":
            waited = time.perf_counter()
            with contextlib.suppress(AssertionError):
                wait_until(lambda: stored_jobs(fakes.redis_url, run.triggers) == len(run.triggers), 20)
                run.stored_after = time.perf_counter() - waited
            run.stored = stored_jobs(fakes.redis_url, run.triggers)
    finally:
        server.stop()
    if kind == "bot":
        run.store_errors = [line for line in server.log.read_text().splitlines() if "cannot store" in line]
    return run


# -- the reference servers and profiling (the child's side: `--serve raw|bare|bot`) ----------------


def reference_app(kind: str) -> web.Application:
    """POST /slack/events answered by plain aiohttp (`raw`) or a bare Bolt app (`bare`), and GET /healthz
    (the harness waits for it)."""
    settings = REGISTRY.load_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = web.Application()
    app.router.add_post(EVENTS_PATH, raw_events if kind == "raw" else bare_bolt_events(settings))
    app.router.add_get(HEALTH_PATH, lambda _: healthy())
    return app


async def healthy() -> web.Response:
    return web.json_response({"status": "ok"})


async def raw_events(request: web.Request) -> web.Response:
    await request.read()
    return web.Response()


def bare_bolt_events(settings: Settings) -> Callable[[web.Request], Awaitable[web.Response]]:
    assert settings.slack_signing_secret is not None
    token, url = settings.slack_bot_token.get_secret_value(), settings.slack_api_url
    client = make_client(token, url, settings.http_timeout_seconds, shared=False)  # Bolt's default client
    bolt = AsyncApp(client=client, signing_secret=settings.slack_signing_secret.get_secret_value())

    @bolt.command("/lipsync")
    async def lipsync(ack: AsyncAck) -> None:
        await ack()

    async def slack_events(request: web.Request) -> web.Response:  # Bolt's aiohttp adapter, as documented
        return await to_aiohttp_response(await bolt.async_dispatch(await to_bolt_request(request)))

    return slack_events


async def serve_reference(kind: str) -> None:
    app = reference_app(kind)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host="0.0.0.0", port=REGISTRY.load_settings().port)
    await site.start()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    await stop.wait()
    await runner.cleanup()


def profile_on_signals(path: str) -> None:
    """SIGUSR1 starts cProfile in this (the event loop's) thread; SIGUSR2 stops it and writes `path`."""
    profiler = cProfile.Profile()

    def start(signum: int, frame: object) -> None:
        profiler.enable()

    def stop(signum: int, frame: object) -> None:
        profiler.disable()
        profiler.dump_stats(path)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)


def serve(kind: str) -> None:
    if path := os.environ.get(PROFILE_ENV):
        profile_on_signals(path)
    if kind == "bot":
        bot_main([])  # exactly what `python -m bot` runs
        return
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_reference(kind))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ROUNDS} rounds instead of {ROUNDS}")
    parser.add_argument(
        "--rounds", type=int, help=f"measured rounds (default {ROUNDS}, --quick {QUICK_ROUNDS})"
    )
    parser.add_argument("--repeat", type=int, default=REPEATS, help=f"runs per server (default {REPEATS})")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument(
        "--gap", type=float, default=BURST_GAP_SECONDS, help="seconds between bursts (0: no bursts run)"
    )
    parser.add_argument("--modes", default="single,back-to-back,bursts", help="which arrival patterns")
    parser.add_argument("--servers", default="raw,bare,bot", help="which servers, in order (raw,bare,bot)")
    parser.add_argument("--profile", type=Path, metavar="DIR", help="profile the servers' measured rounds")
    parser.add_argument("--serve", choices=list(SERVERS), help=argparse.SUPPRESS)  # the child's side
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    rounds = args.rounds or (QUICK_ROUNDS if args.quick else ROUNDS)
    repeat = 1 if args.profile else args.repeat
    kinds = [k.strip() for k in args.servers.split(",") if k.strip()]
    if unknown := [k for k in kinds if k not in SERVERS]:
        parser.error(f"unknown servers: {unknown}")
    scale = rounds / ROUNDS
    n = args.concurrency
    all_modes = {
        "single": Mode("single", "1 sender, one request at a time", 1, int(SINGLE_SENDER_REQUESTS * scale)),
        "back-to-back": Mode("back-to-back", f"back-to-back, {n} senders", n, rounds),
        "bursts": Mode("bursts", f"bursts of {n}, {args.gap:g} s apart", n, rounds, args.gap),
    }
    chosen = [m.strip() for m in args.modes.split(",") if m.strip()]
    if unknown_modes := [m for m in chosen if m not in all_modes]:
        parser.error(f"unknown modes: {unknown_modes}")
    modes = [all_modes[m] for m in chosen if not (m == "bursts" and args.gap <= 0)]
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    with remote_stack("ack") as fakes:
        print_machine(fakes.redis_url)
        print(
            f"measured requests per run: {', '.join(f'{m.name}: {m.rounds * m.concurrency}' for m in modes)} "
            f"(after ~{WARMUP_REQUESTS} warm-up requests); each server alone in its own subprocess, started "
            f"afresh for each of its {repeat} runs, the servers interleaved\n"
        )
        runs = [
            measure(kind, mode, fakes, args.profile)
            for mode in modes
            for _ in range(repeat)
            for kind in kinds
        ]
        ok = report(runs)
    for run in runs:
        if run.profile is not None and run.server != SERVERS["raw"]:
            print_profile(run)
    if args.profile:
        print("\n(profiled run: cProfile slows the servers, so the latencies above are not the benchmark's)")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
