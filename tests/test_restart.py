"""A bot killed mid-job (SIGKILL, as a crash or an OOM kill would) and started again still answers once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.fakes.jogg_api import FakeJogg, Outcome
from tests.fakes.server import wait_until
from tests.fakes.slack_api import FakeSlack
from tests.harness import free_port
from tests.payloads import SIGNING_SECRET, form_body, signed_headers, slash_command

CHANNEL = "C0GENERAL"
REPO = Path(__file__).resolve().parents[1]


class BotProcess:
    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env, self.cwd = env, cwd
        self.url = f"http://127.0.0.1:{env['PORT']}"
        self.log = cwd / "bot.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> BotProcess:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bot"], env=self.env, cwd=self.cwd, stdout=log, stderr=log
            )
        try:
            wait_until(self._healthy, timeout=30)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- bot log ---\n{self.log.read_text()}") from None
        return self

    def _healthy(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)


@pytest.mark.parametrize("redis_mode", ["REDIS_URL", "embedded"])
def test_bot_killed_mid_job_still_delivers_exactly_one_reply(
    slack: FakeSlack, jogg: FakeJogg, redis_url: str, tmp_path: Path, redis_mode: str
) -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.api_url,
        "JOGG_API_KEY": jogg.api_key,
        "JOGG_API_URL": jogg.base_url,
        "PORT": str(free_port()),
        "POLL_INTERVAL_SECONDS": "0.2",
        "LEASE_SECONDS": "2",
        "DATA_DIR": str(tmp_path / "data"),
        "PYTHONPATH": str(REPO),
    }
    if redis_mode == "REDIS_URL":
        env["REDIS_URL"] = redis_url
    jogg.default_outcome = Outcome("never")
    bot = BotProcess(env, tmp_path).start()
    try:
        body = form_body(
            slash_command(
                "https://cdn.example.com/a.mp4 https://cdn.example.com/b.mp3",
                response_url=slack.response_url("r"),
            )
        )
        assert (
            httpx.post(f"{bot.url}/slack/events", content=body, headers=signed_headers(body)).status_code
            == 200
        )
        task = wait_until(lambda: next(iter(jogg.tasks.values()), None))
        wait_until(lambda: jogg.polls.get(task.task_id, 0) >= 2)
        bot.kill()  # mid-job: submitted, being polled, no reply yet

        jogg.finish(task.task_id, Outcome("success", duration_seconds=30))
        bot.start()
        parent = slack.messages(CHANNEL)[0]
        reply = wait_until(lambda: (slack.replies(CHANNEL, parent["ts"]) or [None])[0], timeout=30)
        assert jogg.result_url(task.task_id) in reply["text"]
        assert "0.24 credits" in reply["text"]
        wait_until(lambda: "Done" in slack.message(CHANNEL, parent["ts"])["text"])
        assert len(slack.messages(CHANNEL)) == 1
        assert len(slack.replies(CHANNEL, parent["ts"])) == 1
        assert len(jogg.creates) == 1
    finally:
        bot.stop()
