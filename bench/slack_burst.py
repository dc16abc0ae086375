"""A burst of jobs finishing at once, against a Slack stand-in that enforces Slack's tier limits.

How: a real Redis, the fake JoggAI and the fake Slack (tests/fakes) on 127.0.0.1, and the real bot as a
child process (`python -m bot`, HTTP mode, default cadence, results uploaded into threads). `--jobs`
commands from one person in one channel are accepted and submitted; their tasks stay "processing" until
all are at JoggAI, then all are switched to success at the same instant. Every job then posts its reply,
updates its message (chat.update, Tier 3), uploads its video (files.* Tier 4) and its requester's App Home
is refreshed (views.publish, Tier 4). We count what Slack answered 429 per method, and time from the switch
to the last message showing "Done".

Two rounds per run, both against the fake Slack enforcing the tier limits: the bot as shipped (every
chat.update within its per-workspace budget, SLACK_UPDATES_PER_MINUTE=45), and the baseline without that
budget (SLACK_UPDATES_PER_MINUTE=100000: each update goes out at once and meets whatever Slack answers, as
before this change). `--repeat` runs; min/median/max over runs.

Target: no 429 storm: at most a handful of 429s per run, every job message ends showing "Done" (no lost
final update), every thread holds its reply and its video once.

    .venv/bin/python -m bench.slack_burst              # 100 jobs, 3 runs
    .venv/bin/python -m bench.slack_burst --quick      # 40 jobs, 1 run
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from typing import Any

import redis

from bench.common import print_machine, print_table, spread, stack, verdict
from tests.fakes.jogg_api import Outcome
from tests.fakes.server import wait_until
from tests.fakes.slack_api import TIERS
from tests.harness import BotProcess

CHANNEL = "C0GENERAL"
AUDIO = "https://cdn.example.com/voice-fr.mp3"


def one_round(jobs: int, budget: bool) -> tuple[float, Counter[str], int, int, int]:
    """Seconds from the switch until every job has ended and answered, 429s per method, threads with one
    reply, videos in threads, and job messages that show "Done" (a lost final update shows "Processing")."""
    with stack("burst") as s:
        s.jogg.serve_results = True
        s.jogg.result_size = 100_000
        s.jogg.default_outcome = Outcome("never")
        s.jogg.post_limit_per_minute = None
        s.slack.tier_limits = dict(TIERS)
        env = s.bot_env(
            LOG_LEVEL="WARNING",
            MAX_RESULT_UPLOAD_MB="100",
            JOGG_POSTS_PER_MINUTE="1000",
            SLACK_UPDATES_PER_MINUTE="" if budget else "100000",
        )
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

            lanes = redis.Redis.from_url(s.redis_url)
            wait_until(
                lambda: all(lanes.zcard(f"{{lip}}:{lane}") == 0 for lane in ("poll", "send")), timeout=900
            )
            took = time.monotonic() - switched
            done = sum("Done" in m.get("text", "") for m in messages())
            replies = sum(
                1
                for m in messages()
                if len([r for r in s.slack.replies(CHANNEL, m["ts"]) if not r.get("files")]) == 1
            )
            videos = sum(len(s.slack.thread_files(CHANNEL, m["ts"])) for m in messages())
            return took, Counter(s.slack.ratelimited_calls), replies, videos, done
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
    results: dict[bool, list[tuple[float, Counter[str], int, int, int]]] = {True: [], False: []}
    for _ in range(args.repeat):
        for budget in (True, False):
            results[budget].append(one_round(args.jobs, budget))
    rows = []
    for budget in (True, False):
        runs = results[budget]
        totals = Counter[str]()
        for _, counts, _, _, _ in runs:
            totals.update(counts)
        rows.append(
            [
                "with the update budget" if budget else "no budget (baseline)",
                len(runs),
                spread([r[0] for r in runs], "{:.1f}"),
                ", ".join(f"{m} {n}" for m, n in totals.most_common()) or "none",
                f"{min(r[2] for r in runs)}/{args.jobs}",
                f"{min(r[3] for r in runs)}/{args.jobs}",
                f"{min(r[4] for r in runs)}/{args.jobs}",
            ]
        )
    headers = ["bot", "runs", "switch → all ended s", "429s (all runs)", "1 reply", "videos", "shows Done"]
    print_table(headers, rows)
    limited_429s = sum(sum(c.values()) for _, c, _, _, _ in results[True])
    complete = all(r[2] == r[3] == r[4] == args.jobs for r in results[True])
    ok = limited_429s <= 5 * args.repeat and complete
    print(f"target: ≤ 5 429s per run and every job complete: {verdict(ok)}")


if __name__ == "__main__":
    main()
