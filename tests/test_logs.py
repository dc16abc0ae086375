"""LOG_FORMAT=json: every line the bot writes is one JSON object, and what it logs while working on a job
carries that job's id, provider, workspace and channel as fields."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import redis

from bot.jobs.model import Identity, Job, ProviderOrder
from bot.observe.logs import JsonFormatter, job_context
from tests.fakes.jogg_api import FakeJogg, Outcome
from tests.fakes.server import wait_until
from tests.fakes.slack_api import FakeSlack
from tests.harness import BotProcess, bot_env

VIDEO = "https://cdn.example.com/talk.mp4"
AUDIO = "https://cdn.example.com/voice-fr.mp3"


def test_a_running_bot_logs_json_lines_with_the_jobs_fields(
    slack: FakeSlack, jogg: FakeJogg, redis_url: str, tmp_path: Path
) -> None:
    jogg.default_outcome = Outcome("success", polls=1)
    bot = BotProcess(bot_env(slack, jogg, tmp_path, REDIS_URL=redis_url, LOG_FORMAT="json"), tmp_path).start()
    try:
        bot.command(f"{VIDEO} {AUDIO}", response_url=slack.response_url("r"))
        wait_until(lambda: redis.Redis.from_url(redis_url).keys("{lip}:job:*"), timeout=20)
        wait_until(lambda: "created" in bot.log.read_text(), timeout=20)
    finally:
        bot.stop()
    records = [json.loads(line) for line in bot.log.read_text().splitlines() if line.strip()]
    assert records and all({"time", "level", "logger", "message"} <= set(r) for r in records)
    [created] = [r for r in records if "task" in r["message"] and "created" in r["message"]]
    assert created["job_id"] in created["message"] and created["provider"] == "jogg"
    assert created["team"] == "T0TEST" and created["channel"] == "C0GENERAL"


def test_a_traceback_stays_on_the_records_one_line() -> None:
    record = logging.LogRecord("bot.lanes.worker", logging.ERROR, __file__, 1, "step failed", (), None)
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    with job_context(
        Job(id="j1", order=ProviderOrder(provider="sync"), identity=Identity(team="T1", channel="C1"))
    ):
        line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["error"] == "ValueError: bad\nvalue" and "Traceback" in entry["traceback"]
    assert entry["job_id"] == "j1" and entry["provider"] == "sync"
