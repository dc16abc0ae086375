"""sync.so done → reply in the thread, with signed webhooks, against another commit (and polling alone).

How: a real Redis, the fake Slack and the fake sync.so (tests/fakes) on 127.0.0.1, and the real bot as a
child process (`python -m bot`, HTTP mode) with the DEFAULT poll cadence (POLL_INTERVAL_SECONDS 5 s at
first), `DEFAULT_PROVIDER=sync`, `PUBLIC_URL` its own loopback address and `SYNC_WEBHOOK_SECRET` set. Each
round starts a bot and sends `--jobs` commands; each generation finishes at a random moment 3 to 9 s after
it was made (a timer in the fake, polled or not), and the fake POSTs the signed webhook at that moment
(unless polling alone is measured). For each job: latency = the reply's ts in the fake Slack minus the
moment the fake marked the generation done, just before its POST. `--baseline REV` also runs the bot of
that commit (its `bot/` and `handlers/`, exported with `git archive`), each run alternating the trees back
to back on the same fakes and Redis; `--polling` adds rounds of this tree with webhooks lost. We print, per
tree, min/median/max over runs of each round's p50 and p95, and the p95 of all its jobs together.

Target (issue 20): with webhooks, p95 completion → reply ≤ 100 ms.

    .venv/bin/python -m bench.webhook_latency --baseline 6ce9d90   # 5 runs, 20 jobs a round
    .venv/bin/python -m bench.webhook_latency --quick             # 1 run, 8 jobs
    .venv/bin/python -m bench.webhook_latency --jobs 40 --repeat 3 --polling
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.against import export_tree
from bench.common import Stack, percentile, print_machine, print_table, spread, stack, verdict
from tests.fakes.server import wait_until
from tests.fakes.slack_api import FakeSlack
from tests.fakes.sync_api import FakeSync, Generation, Outcome
from tests.harness import BotProcess, free_port

CHANNEL = "C0GENERAL"
VIDEO = "https://cdn.example.com/talk.mp4"
AUDIO = "https://cdn.example.com/voice-fr.mp3"
SECRET = "whsec_bench"


TARGET_P95_S = 0.1


@dataclass(frozen=True)
class Mode:
    label: str
    tree: Path | None  # None: this tree
    webhooks: bool = True


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--baseline", metavar="REV", default="", help="also run this commit's bot")
    parser.add_argument("--polling", action="store_true", help="also rounds with webhooks lost")
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.repeat = 8, 1

    with (
        stack("webhook") as s,
        FakeSync(webhook_secret=SECRET) as sync,
        tempfile.TemporaryDirectory() as exported,
    ):
        modes = [Mode("this tree", None)]
        if args.baseline:
            baseline_bot = export_tree(args.baseline, Path(exported), "bot", "handlers")
            modes.append(Mode(f"baseline {args.baseline}", baseline_bot))
        if args.polling:
            modes.append(Mode("this tree, polling only", None, webhooks=False))
        print_machine(s.redis_url)
        results: dict[str, list[list[float]]] = {mode.label: [] for mode in modes}
        for run in range(args.repeat):
            for number, mode in enumerate(modes):
                print(f"run {run + 1} of {args.repeat}: {mode.label}…", flush=True)
                results[mode.label].append(run_round(s, sync, mode, args.jobs, f"{run}-{number}"))
    report(results)


def run_round(s: Stack, sync: FakeSync, mode: Mode, jobs: int, tag: str) -> list[float]:
    """A bot of `mode`'s tree, `jobs` commands: each job's seconds from its generation's end to its reply."""
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
    if mode.tree is not None:  # the baseline's packages come before the editable install
        env["PYTHONPATH"] = str(mode.tree)
    bot = BotProcess(env, s.workdir, name=f"bot-{tag}").start()
    try:
        sync.webhooks_enabled = mode.webhooks
        started, channel = len(sync.generations), f"C0ROUND{tag.replace('-', 'X')}"
        for n in range(jobs):
            sync.default_outcome = Outcome("success", ready_after=random.uniform(3, 9), duration=10)
            response_url = s.slack.response_url(f"{tag}-{n}")
            bot.command(f"{VIDEO}?r={tag}&n={n} {AUDIO}", response_url=response_url, channel_id=channel)
        wanted = started + jobs
        wait_until(lambda: len(sync.generations) >= wanted, timeout=60)
        mine = list(sync.generations.values())[started:]
        # Looked for 10 times a second, in a channel of the round's own: the fakes answer in this process,
        # and a busier wait (copying every round's messages) would hold them up, stamping replies late.
        replies = wait_until(lambda: replies_naming(s.slack, mine, channel), timeout=120, interval=0.1)
        return [float(replies[g.id]["ts"]) - (g.completed_at or 0) for g in mine]
    finally:
        bot.stop()


def report(results: dict[str, list[list[float]]]) -> None:
    rows = []
    for label, rounds in results.items():
        every = [latency for one in rounds for latency in one]
        rows.append(
            [
                label,
                len(rounds),
                len(every),
                spread([percentile(r, 50) * 1000 for r in rounds], "{:.0f}"),
                spread([percentile(r, 95) * 1000 for r in rounds], "{:.0f}"),
                f"{percentile(every, 95) * 1000:.0f}",
            ]
        )
    headers = ["tree", "runs", "jobs", "p50 ms (min/median/max)", "p95 ms (min/median/max)", "p95 ms, all"]
    print_table(headers, rows)
    print(f"load average at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    ours = [latency for one in results["this tree"] for latency in one]
    p95 = percentile(ours, 95)
    target = f"target: with webhooks, p95 completion → reply ≤ {TARGET_P95_S * 1000:.0f} ms"
    print(f"{target} (this tree, all jobs: {p95 * 1000:.0f} ms): {verdict(p95 <= TARGET_P95_S)}")


def replies_naming(
    slack: FakeSlack, generations: list[Generation], channel: str = CHANNEL
) -> dict[str, dict[str, Any]] | None:
    """Each generation's threaded reply (its footer names the task), once every one has its reply."""
    found: dict[str, dict[str, Any]] = {}
    for parent in slack.messages(channel):
        for reply in slack.replies(channel, parent["ts"]):
            text = json.dumps(reply)
            for generation in generations:
                if generation.id in text:
                    found[generation.id] = reply
    return found if len(found) == len(generations) else None


if __name__ == "__main__":
    main()
