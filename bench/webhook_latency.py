"""Completion → reply, with sync.so webhooks against polling alone.

How: a real Redis, the fake Slack and the fake sync.so (tests/fakes) on 127.0.0.1, and the real bot as a
child process (`python -m bot`, HTTP mode) with the DEFAULT poll cadence (POLL_INTERVAL_SECONDS 5 s at
first), `DEFAULT_PROVIDER=sync`, `PUBLIC_URL` its own loopback address and `SYNC_WEBHOOK_SECRET` set. Each
round sends `--jobs` commands; each generation finishes at a random moment 3 to 9 s after it was made (a
timer in the fake, polled or not), and the fake POSTs the signed webhook at that moment unless webhooks
are off. For each job: latency = the reply's ts in the fake Slack minus the moment the fake marked the
generation done. Rounds alternate webhooks on / off (the baseline, measured in the same run), `--repeat`
times each; we print min/median/max over rounds of each round's median and p95.

Target: with webhooks, p95 completion → reply under 1 s, against up to one poll interval (5 s) without.

    .venv/bin/python -m bench.webhook_latency            # 3 rounds each, 20 jobs per round
    .venv/bin/python -m bench.webhook_latency --quick    # 1 round each, 8 jobs
"""

from __future__ import annotations

import argparse
import json
import random
import time
from typing import Any

from bench.common import percentile, print_machine, print_table, spread, stack, verdict
from tests.fakes.server import wait_until
from tests.fakes.slack_api import FakeSlack
from tests.fakes.sync_api import FakeSync, Generation, Outcome
from tests.harness import BotProcess, free_port

CHANNEL = "C0GENERAL"
VIDEO = "https://cdn.example.com/talk.mp4"
AUDIO = "https://cdn.example.com/voice-fr.mp3"
SECRET = "whsec_bench"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.repeat = 8, 1

    with stack("webhook") as s, FakeSync(webhook_secret=SECRET) as sync:
        port = free_port()
        env = s.bot_env(
            PORT=str(port),
            PUBLIC_URL=f"http://127.0.0.1:{port}",
            SYNC_API_KEY=sync.api_key,
            SYNC_API_URL=sync.base_url,
            SYNC_WEBHOOK_SECRET=SECRET,
            DEFAULT_PROVIDER="sync",
            LOG_LEVEL="WARNING",
        )
        bot = BotProcess(env, s.workdir).start()
        print_machine(s.redis_url)
        results: dict[bool, list[list[float]]] = {True: [], False: []}
        try:
            for round_no in range(args.repeat):
                for webhooks in (True, False):
                    sync.webhooks_enabled = webhooks
                    started = len(sync.generations)
                    for n in range(args.jobs):
                        sync.default_outcome = Outcome(
                            "success", ready_after=random.uniform(3, 9), duration=10
                        )
                        bot.command(
                            f"{VIDEO}?r={round_no}&w={int(webhooks)}&n={n} {AUDIO}",
                            response_url=s.slack.response_url(f"r{round_no}-{n}"),
                        )
                    wanted = started + args.jobs
                    wait_until(lambda w=wanted: len(sync.generations) >= w, timeout=60)  # type: ignore[misc]
                    mine = list(sync.generations.values())[started:]
                    replies = wait_until(lambda m=mine: replies_naming(s.slack, m), timeout=120)  # type: ignore[misc]
                    latencies = [float(replies[g.id]["ts"]) - (g.completed_at or 0) for g in mine]
                    results[webhooks].append(latencies)
                    time.sleep(0.5)
        finally:
            bot.stop()

    rows = []
    for webhooks in (True, False):
        rounds = results[webhooks]
        medians = [percentile(r, 50) for r in rounds]
        p95s = [percentile(r, 95) for r in rounds]
        rows.append(
            [
                "webhooks" if webhooks else "polling only (baseline)",
                len(rounds),
                sum(len(r) for r in rounds),
                spread(medians, "{:.2f}"),
                spread(p95s, "{:.2f}"),
            ]
        )
    print_table(["mode", "rounds", "jobs", "median s (min/median/max)", "p95 s (min/median/max)"], rows)
    best = max(percentile(r, 95) for r in results[True])
    target = "target: with webhooks, p95 completion → reply < 1 s in every round"
    print(f"{target} (worst {best:.2f} s): {verdict(best < 1)}")


def replies_naming(slack: FakeSlack, generations: list[Generation]) -> dict[str, dict[str, Any]] | None:
    """Each generation's threaded reply (its footer names the task), once every one has its reply."""
    found: dict[str, dict[str, Any]] = {}
    for parent in slack.messages(CHANNEL):
        for reply in slack.replies(CHANNEL, parent["ts"]):
            text = json.dumps(reply)
            for generation in generations:
                if generation.id in text:
                    found[generation.id] = reply
    return found if len(found) == len(generations) else None


if __name__ == "__main__":
    main()
