"""A burst of jobs finishing at once, against a Slack stand-in that enforces Slack's tier limits.

How: a real Redis, the fake JoggAI and the fake Slack (tests/fakes) on 127.0.0.1, and the real bot as a
child process (`python -m bot`, HTTP mode, default cadence, results uploaded into threads). `--jobs`
commands from one person in one channel are accepted and submitted; their tasks stay "processing" until
all are at JoggAI, then all are switched to success at the same instant. Every job then posts its reply,
updates its message (chat.update, Tier 3), uploads its video (files.* Tier 4) and its requester's App Home
is refreshed (views.publish, Tier 4). We count what Slack answered 429 per method, and time from the switch
to the last message showing "Done".

Two rounds per run, in the same run: the fake Slack with the tier limits (the case that matters), and
without any limit (the baseline: how long the same burst takes when Slack never says "slow down").
`--repeat` runs; min/median/max over runs.

Target: no 429 storm: at most a handful of 429s in all (each answered by waiting Retry-After, never a
lost update), every message ends "Done", every thread holds its reply and its video once.

    .venv/bin/python -m bench.slack_burst              # 100 jobs, 3 runs
    .venv/bin/python -m bench.slack_burst --quick      # 40 jobs, 1 run
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from typing import Any

from bench.common import print_machine, print_table, spread, stack, verdict
from tests.fakes.jogg_api import Outcome
from tests.fakes.server import wait_until
from tests.fakes.slack_api import TIERS
from tests.harness import BotProcess

CHANNEL = "C0GENERAL"
AUDIO = "https://cdn.example.com/voice-fr.mp3"


def one_round(jobs: int, limited: bool) -> tuple[float, Counter[str], int, int]:
    """Seconds from the switch to the last "Done", 429s per method, threads with one reply, videos."""
    with stack("burst") as s:
        s.jogg.serve_results = True
        s.jogg.result_size = 100_000
        s.jogg.default_outcome = Outcome("never")
        s.jogg.post_limit_per_minute = None
        if limited:
            s.slack.tier_limits = dict(TIERS)
        env = s.bot_env(LOG_LEVEL="WARNING", MAX_RESULT_UPLOAD_MB="100", JOGG_POSTS_PER_MINUTE="1000")
        bot = BotProcess(env, s.workdir).start()
        try:
            for n in range(jobs):
                bot.command(
                    f"https://cdn.example.com/talk-{n}.mp4 {AUDIO}",
                    response_url=s.slack.response_url(f"r{n}"),
                )
            wait_until(lambda: len(s.jogg.tasks) >= jobs, timeout=600)
            time.sleep(1)  # every job polled once: all are in the poll lane
            switched = time.monotonic()
            for task_id in list(s.jogg.tasks):
                s.jogg.finish(task_id, Outcome("success", duration_seconds=10))

            def messages() -> list[dict[str, Any]]:
                return s.slack.messages(CHANNEL)

            wait_until(lambda: sum("Done" in m.get("text", "") for m in messages()) >= jobs, timeout=900)
            took = time.monotonic() - switched
            wait_until(
                lambda: all(len(s.slack.thread_files(CHANNEL, m["ts"])) == 1 for m in messages()), timeout=300
            )
            replies = sum(
                1
                for m in messages()
                if len([r for r in s.slack.replies(CHANNEL, m["ts"]) if not r.get("files")]) == 1
            )
            videos = sum(len(s.slack.thread_files(CHANNEL, m["ts"])) for m in messages())
            return took, Counter(s.slack.ratelimited_calls), replies, videos
        finally:
            bot.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.repeat = 40, 1
    print_machine()
    results: dict[bool, list[tuple[float, Counter[str], int, int]]] = {True: [], False: []}
    for _ in range(args.repeat):
        for limited in (True, False):
            results[limited].append(one_round(args.jobs, limited))
    rows = []
    for limited in (True, False):
        runs = results[limited]
        totals = Counter[str]()
        for _, counts, _, _ in runs:
            totals.update(counts)
        rows.append(
            [
                "Slack tier limits" if limited else "no limits (baseline)",
                len(runs),
                spread([r[0] for r in runs], "{:.1f}"),
                ", ".join(f"{m} {n}" for m, n in totals.most_common()) or "none",
                f"{min(r[2] for r in runs)}/{args.jobs}",
                f"{min(r[3] for r in runs)}/{args.jobs}",
            ]
        )
    print_table(
        ["Slack", "runs", "switch → last Done s", "429s (all runs)", "threads with 1 reply", "videos"], rows
    )
    limited_429s = sum(sum(c.values()) for _, c, _, _ in results[True])
    complete = all(r[2] == args.jobs and r[3] == args.jobs for r in results[True])
    ok = limited_429s <= 5 * args.repeat and complete
    print(f"target: ≤ 5 429s per run and every job complete: {verdict(ok)}")


if __name__ == "__main__":
    main()
