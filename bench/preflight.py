"""Time the link preflight (bot/money/preflight.py) adds to a job, against a bare ranged GET in the same run.

What it measures: per job, the wall time to check both links at once, as the pipeline does
(`asyncio.gather` of the video and the audio link's `check()`), on one long-lived Preflight with its
production settings (256 KB head, 128 KB tail, 5 s timeout). The baseline, interleaved job by job with the
checks: both links fetched at once with one plain aiohttp GET of their first 256 KB each on a kept-alive
session: the floor of any check that reads a file's header. Each job kind runs `--jobs` jobs per round,
`--repeat` rounds; we print min/median/max over rounds of each round's median and p95, and the client
process's CPU time per checked job (HTTP here, libmediainfo parsing in its parser process).

How: tests.fakes.media_server.MediaServer (a real aiohttp server that honours Range like a CDN) in a
process of its own (`python -m bench.preflight --serve`) so it never holds this process's interpreter lock, on
127.0.0.1 (allowed through `allowed_networks`). The files are built in memory by tests/media_samples.py:

  index last + mp3    a 5-minute mp4 whose `moov` (an encoder-sized index, ~80 KB) follows 30 MB of data,
                      and a 5-minute mp3: HEAD, head GET and a tail GET each (the worst case)
  fast start + ogg    the same mp4 with its index first (HEAD + head GET), and a 5-minute Ogg Opus (its
                      last page is at the end: HEAD, head, tail)
  fast start + wav    the fast-start mp4 and a 5-minute WAV: HEAD and head GET each

Loopback hides the network: against a real host each request adds a round trip (three at most per link,
the two links in parallel), plus the TLS handshake of a new connection.

Target: every round's p95 per job < 300 ms.

    .venv/bin/python -m bench.preflight              # 5 rounds of 40 jobs per kind
    .venv/bin/python -m bench.preflight --quick      # 2 rounds of 10 jobs
    .venv/bin/python -m bench.preflight --baseline ae51ab6 --runs 5   # this tree vs that commit

`--baseline REV` compares CPU per job with another commit: the whole of REV (its bot, bench and tests)
exported with `git archive` into a temporary directory, and each tree's own bench run there as a child
process (PYTHONPATH comes before the editable install), alternating REV and this tree `--runs` times; we
print min/median/max of the runs' "CPU per checked job" and container parses per job.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench.against import export_tree, run_in
from bench.common import cpu_seconds, json_child, percentile, print_machine, print_table, spread, verdict
from bot.money.preflight import Preflight
from tests.fakes.media_server import Item, MediaServer
from tests.harness import REPO
from tests.media_samples import mp3, mp4, opus, wav

HEAD_BYTES = 256 * 1024
TARGET_MS = 300.0
BASELINE, PREFLIGHT = "bare GET (baseline)", "preflight"
JOBS = {
    "index last + mp3": ("/index-last.mp4", "/voice.mp3"),
    "fast start + ogg": ("/fast-start.mp4", "/voice.ogg"),
    "fast start + wav": ("/fast-start.mp4", "/voice.wav"),
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--baseline", metavar="REV", default="", help="compare CPU per job with this commit")
    parser.add_argument("--runs", type=int, default=5, help="with --baseline: runs of each tree, alternating")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    if args.quick:
        args.jobs, args.repeat = 10, 2
    if args.baseline:
        compare(args.baseline, args.runs, ["--jobs", str(args.jobs), "--repeat", str(args.repeat)])
        return

    print_machine()
    with media_server() as base_url:
        figures = asyncio.run(measure(base_url, args.jobs, args.repeat))

    rows = []
    worst = 0.0
    for kind in JOBS:
        for mode in (BASELINE, PREFLIGHT):
            rounds = figures.rounds[(kind, mode)]
            p95s = [percentile(r, 95) for r in rounds]
            if mode == PREFLIGHT:
                worst = max(worst, *p95s)
            medians = [percentile(r, 50) for r in rounds]
            rows.append(
                [f"{kind}: {mode}", len(rounds), sum(map(len, rounds)), spread(medians), spread(p95s)]
            )
    print_table(["job (both links at once)", "rounds", "jobs", "median ms (min/med/max)", "p95 ms"], rows)
    print()
    for kind in JOBS:
        pairs = zip(figures.rounds[(kind, PREFLIGHT)], figures.rounds[(kind, BASELINE)], strict=True)
        added = [percentile(check, 50) - percentile(bare, 50) for check, bare in pairs]
        print(f"added by the preflight, {kind}: {spread(added)} ms (round medians, minus the baseline's)")
    print(f"CPU per checked job (HTTP here + parsing in the parser process): {figures.cpu_ms_per_job:.1f} ms")
    print(f"container parses per checked job (two links): {figures.parses_per_job:.2f}")
    print(f"first job on a fresh Preflight (connecting, loading libmediainfo): {figures.cold_ms:.1f} ms")
    target = f"target: every round's p95 per job < {TARGET_MS:.0f} ms (worst {worst:.1f} ms)"
    print(f"{target}: {verdict(worst < TARGET_MS)}")


@dataclass
class Figures:
    rounds: dict[tuple[str, str], list[list[float]]]  # (job kind, mode) → each round's job times, ms
    cpu_ms_per_job: float
    parses_per_job: float
    cold_ms: float


async def measure(base_url: str, jobs: int, repeat: int) -> Figures:
    rounds: dict[tuple[str, str], list[list[float]]] = {}
    urls = {kind: (base_url + video, base_url + audio) for kind, (video, audio) in JOBS.items()}
    preflight = Preflight(allowed_networks=["127.0.0.1/32"])
    try:
        async with aiohttp.ClientSession() as bare:
            started = time.perf_counter()
            await check_job(preflight, urls["index last + mp3"])
            cold_ms = (time.perf_counter() - started) * 1000
            for pair in urls.values():  # warm: every connection open, every code path run once
                await check_job(preflight, pair)
                await bare_job(bare, pair)

            cpu_s, checked, parses = 0.0, 0, preflight.parses
            for _ in range(repeat):
                for kind, pair in urls.items():
                    checks: list[float] = []
                    bares: list[float] = []
                    for _ in range(jobs):  # interleaved: a noisy moment falls on both
                        started = time.perf_counter()
                        await bare_job(bare, pair)
                        bares.append((time.perf_counter() - started) * 1000)
                        cpu = cpu_now()
                        started = time.perf_counter()
                        await check_job(preflight, pair)
                        checks.append((time.perf_counter() - started) * 1000)
                        cpu_s += cpu_now() - cpu
                        checked += 1
                    rounds.setdefault((kind, PREFLIGHT), []).append(checks)
                    rounds.setdefault((kind, BASELINE), []).append(bares)
    finally:
        await preflight.aclose()
    return Figures(rounds, cpu_s * 1000 / checked, (preflight.parses - parses) / checked, cold_ms)


def cpu_now() -> float:
    """CPU seconds used so far by this process and its children (the link check's parser process)."""
    children = multiprocessing.active_children()
    return time.process_time() + sum(cpu_seconds(child.pid) for child in children if child.pid)


async def check_job(preflight: Preflight, pair: tuple[str, str]) -> None:
    video, audio = await asyncio.gather(*(preflight.check(url, 2 * 10**9) for url in pair))
    if video.duration_s is None or audio.duration_s is None:
        raise SystemExit(f"no duration read: {video}, {audio}")


async def bare_job(session: aiohttp.ClientSession, pair: tuple[str, str]) -> None:
    async def get(url: str) -> None:
        async with session.get(url, headers={"Range": f"bytes=0-{HEAD_BYTES - 1}"}) as response:
            await response.read()

    await asyncio.gather(*(get(url) for url in pair))


# -- against another commit -------------------------------------------------------------------------

_CPU_LINE = re.compile(r"CPU per checked job[^:]*: ([0-9.]+) ms")
_PARSES_LINE = re.compile(r"container parses per checked job[^:]*: ([0-9.]+)")
_COLD_LINE = re.compile(r"first job on a fresh Preflight[^:]*: ([0-9.]+) ms")
_MEDIAN_LINE = re.compile(r"^(.+): preflight +\d+ +\d+ +[0-9.]+ / ([0-9.]+) / ", re.MULTILINE)


def compare(rev: str, runs: int, bench_args: list[str]) -> None:
    """This tree's bench and REV's, each in a child process, alternating `runs` times."""
    print_machine()
    figures: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-preflight-baseline-") as exported:
        trees = {f"baseline {rev}": export_tree(rev, Path(exported)), "this tree": REPO}
        for run in range(runs):
            for label, tree in trees.items():
                found = read_figures(run_in(tree, "bench.preflight", bench_args), label)
                for name, value in found.items():
                    figures.setdefault(label, {}).setdefault(name, []).append(value)
                print(f"run {run + 1}, {label}: CPU per job {found['cpu']:.1f} ms", flush=True)
    names = {"cpu": "CPU per job ms", "parses": "parses per job", "cold": "first job ms"}
    names |= {kind: f"{kind}: job median ms" for kind in JOBS}
    rows = [[label, *(spread(figures[label][name]) for name in names)] for label in trees]
    print_table(["tree (min/med/max of the runs)", *names.values()], rows)
    cpu = {label: statistics.median(figures[label]["cpu"]) for label in trees}
    print(f"CPU per job, this tree / baseline (medians): {cpu['this tree'] / cpu[f'baseline {rev}']:.2f}x")


def read_figures(output: str, label: str) -> dict[str, float]:
    """The figures a run of the bench printed (parses: NaN from a bench that did not count them)."""
    found = {"cpu": float(_found(_CPU_LINE, output, label)), "cold": float(_found(_COLD_LINE, output, label))}
    parses = _PARSES_LINE.search(output)
    found["parses"] = float(parses.group(1)) if parses else math.nan
    medians = {kind.strip(): float(median) for kind, median in _MEDIAN_LINE.findall(output)}
    return found | {kind: medians.get(kind, math.nan) for kind in JOBS}


def _found(pattern: re.Pattern[str], output: str, label: str) -> str:
    match = pattern.search(output)
    if match is None:
        raise SystemExit(f"no figure in the output of {label}:\n{output}")
    return match.group(1)


# -- the media server, in its own process ---------------------------------------------------------


@contextlib.contextmanager
def media_server() -> Iterator[str]:
    """`python -m bench.preflight --serve` as a child; yields its base URL."""
    with (
        tempfile.TemporaryDirectory(prefix="bench-preflight-") as tmp,
        json_child("bench.preflight", "--serve", Path(tmp) / "media.log") as (info, _),
    ):
        yield str(info["base_url"])


def serve() -> None:
    index_last = mp4(300.0, moov_at_end=True, filler=30_000_000, listed_sizes=True)
    fast_start = mp4(300.0, filler=30_000_000, listed_sizes=True)
    with MediaServer() as media:
        media.add("/index-last.mp4", Item(index_last, "video/mp4"))
        media.add("/fast-start.mp4", Item(fast_start, "video/mp4"))
        media.add("/voice.mp3", Item(mp3(300.0), "audio/mpeg"))
        media.add("/voice.ogg", Item(opus(300.0, packet_size=60), "audio/ogg"))
        media.add("/voice.wav", Item(wav(300.0), "audio/wav"))
        print(json.dumps({"base_url": media.base_url}), flush=True)
        sys.stdin.read()  # until the parent closes the pipe (or dies)


if __name__ == "__main__":
    main()
