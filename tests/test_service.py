"""`python -m bot` as a service: it answers --help and --version, refuses a revoked app token at once,
waits out an unreachable Slack quietly (alive, not ready), stops promptly on SIGTERM/SIGINT whatever it is
doing, reports its health in both modes, starts and refreshes its Socket Mode connection without noise,
names a DATA_DIR it cannot write, and survives the death of its embedded Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import pytest
import redis

from tests.fakes.jogg_api import FakeJogg
from tests.fakes.server import wait_until
from tests.fakes.slack_api import FakeSlack, Fault
from tests.harness import REPO, BotProcess, bot_env, free_port

CHANNEL = "C0GENERAL"  # where tests.payloads' slash commands come from
RETRY_LINE = "cannot connect to Slack in Socket Mode"


def socket_mode_env(slack: FakeSlack, jogg: FakeJogg, workdir: Path, **overrides: str) -> dict[str, str]:
    """The default path: bot token, app token and JoggAI key; no signing secret."""
    return bot_env(
        slack, jogg, workdir, SLACK_APP_TOKEN=slack.app_token, SLACK_SIGNING_SECRET="", **overrides
    )


class UnreadyBot(BotProcess):
    """A bot that cannot reach Slack: /healthz answers 503 (not ready), so it counts as started once its
    liveness check answers."""

    def _healthy(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
        try:
            return httpx.get(f"{self.url}/livez", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False


def exit_code_after(bot: BotProcess, signum: int) -> int:
    """Send `signum` and wait for the exit; the 15 s bound is generous, a hang fails the test."""
    assert bot.proc is not None
    os.kill(bot.pid, signum)
    try:
        return bot.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        bot.kill()
        raise AssertionError(f"still running 15 s after {signal.Signals(signum).name}") from None


def test_help_and_version_print_and_exit_without_starting_anything(
    slack: FakeSlack, jogg: FakeJogg, tmp_path: Path
) -> None:
    env = socket_mode_env(slack, jogg, tmp_path)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "bot", *args]
        return subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30)

    usage = run("--help")
    assert usage.returncode == 0, usage.stderr
    for words in ("LipSync Bot", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET", ".env.example", "README"):
        assert words in usage.stdout
    assert run("-h").stdout == usage.stdout

    version = run("--version")
    released = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert (version.returncode, version.stdout) == (0, f"lipsync-bot {released}\n")

    unknown = run("--verbose")
    assert unknown.returncode == 2 and "usage:" in unknown.stderr and "--verbose" in unknown.stderr

    # Nothing was started: no call to Slack or JoggAI, no embedded Redis data directory.
    assert slack.calls == [] and jogg.requests == []
    assert not (tmp_path / "data").exists()


def test_a_revoked_app_token_stops_the_start_with_one_clear_line(
    slack: FakeSlack, jogg: FakeJogg, redis_url: str, tmp_path: Path
) -> None:
    slack.revoked_tokens.add(slack.app_token)
    env = socket_mode_env(slack, jogg, tmp_path, REDIS_URL=redis_url)
    result = subprocess.run(
        [sys.executable, "-m", "bot"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    [line] = [line for line in result.stderr.splitlines() if "SLACK_APP_TOKEN" in line]
    assert line.startswith("The bot cannot start: Slack refused SLACK_APP_TOKEN (token_revoked)")
    assert "App-Level Tokens" in line and "connections:write" in line
    assert len(slack.calls_to("apps.connections.open")) == 1  # refused for good: not retried


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_unreachable_slack_is_retried_quietly_and_a_signal_still_stops_the_bot(
    slack: FakeSlack, jogg: FakeJogg, redis_url: str, tmp_path: Path, signum: int
) -> None:
    closed_port = free_port()  # nothing listens there: Slack is unreachable
    env = socket_mode_env(
        slack, jogg, tmp_path, REDIS_URL=redis_url, SLACK_API_URL=f"http://127.0.0.1:{closed_port}/api/"
    )
    bot = UnreadyBot(env, tmp_path).start()  # it serves /healthz while it waits for Slack
    try:
        answer = httpx.get(f"{bot.url}/healthz", timeout=5)
        assert answer.status_code == 503 and answer.json()["slack_socket"].startswith("not connected yet")
        # It keeps trying (backing off), one line per attempt.
        wait_until(lambda: bot.log.read_text().count(RETRY_LINE) >= 2, timeout=30)
        assert exit_code_after(bot, signum) == 0
        log = bot.log.read_text()
        assert "Traceback" not in log
        assert all(len(line) < 300 for line in log.splitlines() if RETRY_LINE in line)
    finally:
        bot.stop()


def test_sigterm_while_slack_is_slow_to_open_the_connection_stops_the_bot(
    slack: FakeSlack, jogg: FakeJogg, redis_url: str, tmp_path: Path
) -> None:
    slack.inject("apps.connections.open", Fault("delay", delay=60))
    bot = UnreadyBot(socket_mode_env(slack, jogg, tmp_path, REDIS_URL=redis_url), tmp_path).start()
    try:
        wait_until(lambda: slack.calls_to("apps.connections.open"))  # the bot is waiting for Slack
        assert exit_code_after(bot, signal.SIGTERM) == 0
    finally:
        bot.stop()


def test_socket_mode_serves_healthz_reconnects_when_asked_and_stops_on_sigterm(
    slack: FakeSlack, jogg: FakeJogg, redis_url: str, tmp_path: Path
) -> None:
    bot = BotProcess(socket_mode_env(slack, jogg, tmp_path, REDIS_URL=redis_url), tmp_path).start()
    try:
        wait_until(lambda: bot.health()["slack_socket"] == "connected")
        assert bot.health()["status"] == "ok" and slack.socket_connected
        # Only /healthz: Slack's requests come over the socket, and nothing unsigned gets in by HTTP.
        assert httpx.post(f"{bot.url}/slack/events", content=b"{}", timeout=5).status_code == 404

        slack.disconnect_socket()  # Slack's periodic "refresh_requested": open a new connection
        wait_until(lambda: len(slack.calls_to("apps.connections.open")) == 2, timeout=15)
        wait_until(lambda: slack.socket_connected and bot.health()["slack_socket"] == "connected")

        assert exit_code_after(bot, signal.SIGTERM) == 0
        # A quiet start and refresh: no warning from Bolt about how it was built, nothing at ERROR level.
        log = bot.log.read_text()
        assert "will be unused" not in log and "ERROR" not in log and "Traceback" not in log, log
    finally:
        bot.stop()


def test_a_data_dir_the_bot_cannot_write_is_named_at_start_without_a_traceback(
    slack: FakeSlack, jogg: FakeJogg, tmp_path: Path
) -> None:
    # Running as root, no permission bit stops a write: a DATA_DIR whose parent is a regular file cannot
    # be made or written by anyone, as /app/data cannot by the image's user.
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    data_dir = blocker / "data"
    env = bot_env(slack, jogg, tmp_path, DATA_DIR=str(data_dir))  # REDIS_URL unset: the embedded Redis
    result = subprocess.run(
        [sys.executable, "-m", "bot"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    [line] = [line for line in result.stderr.splitlines() if "DATA_DIR" in line]
    named = f"DATA_DIR {data_dir} is not a directory this user (uid {os.getuid()}) can write"
    assert line.startswith(f"The bot cannot start: {named}"), line
    assert "REDIS_URL" in line and "/data" in line  # what to do instead
    assert slack.calls == [] and jogg.requests == []  # stopped before anything else


def test_the_embedded_redis_is_restarted_when_it_dies_and_commands_still_work(
    slack: FakeSlack, jogg: FakeJogg, tmp_path: Path
) -> None:
    bot = BotProcess(bot_env(slack, jogg, tmp_path), tmp_path).start()  # REDIS_URL unset: embedded
    server = redis.Redis(unix_socket_path=str(tmp_path / "data" / "redis.sock"), socket_timeout=2)

    def redis_pid() -> int | None:
        try:
            return int(server.info("server")["process_id"])
        except (redis.RedisError, OSError):
            return None

    try:
        first_pid = wait_until(redis_pid)
        os.kill(first_pid, signal.SIGKILL)  # as a crash or the OOM killer would

        wait_until(lambda: (redis_pid() or first_pid) != first_pid, timeout=30, message="a new redis")
        wait_until(lambda: httpx.get(f"{bot.url}/healthz", timeout=5).status_code == 200, timeout=30)
        text = "https://cdn.example.com/a.mp4 https://cdn.example.com/b.mp3"
        assert bot.command(text, response_url=slack.response_url("r")).status_code == 200
        wait_until(lambda: slack.messages(CHANNEL), timeout=30)  # stored, worked on, posted
        assert "restarting it" in bot.log.read_text()
    finally:
        server.close()
        bot.stop()
