"""Running the real bot inside a test: its own event loop in a thread, talking to the test servers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from enum import Enum
from pathlib import Path
from typing import Any, Self

import httpx

from bot.jobs import codec
from bot.jobs.model import Job
from bot.programs.main import Bot
from bot.providers.registry import REGISTRY, Registry
from bot.settings import Settings
from tests.fakes.jogg_api import FakeJogg
from tests.fakes.server import wait_until
from tests.fakes.slack_api import FakeSlack
from tests.payloads import SIGNING_SECRET, form_body, signed_headers, slash_command

REPO = Path(__file__).resolve().parents[1]


def send_command(bot_url: str, text: str, *, response_url: str, **fields: str) -> httpx.Response:
    """Send `/lipsync <text>` exactly as Slack would: a signed form POST to /slack/events."""
    body = form_body(slash_command(text, response_url=response_url, **fields))
    return httpx.post(f"{bot_url}/slack/events", content=body, headers=signed_headers(body), timeout=10)


def send_event(bot_url: str, payload: dict[str, Any], retry_num: int | None = None) -> httpx.Response:
    """POST an Events API payload as Slack does: signed JSON, with Slack's retry headers if a retry."""
    body = json.dumps(payload)
    headers = signed_headers(body, content_type="application/json")
    if retry_num is not None:
        headers.update({"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"})
    return httpx.post(f"{bot_url}/slack/events", content=body, headers=headers, timeout=10)


def send_shortcut(bot_url: str, payload: dict[str, Any]) -> httpx.Response:
    """POST an interactivity payload as Slack does: a signed form with one `payload` field (JSON)."""
    body = form_body({"payload": json.dumps(payload)})
    return httpx.post(f"{bot_url}/slack/events", content=body, headers=signed_headers(body), timeout=10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class BotThread:
    """`Bot` as `python -m bot` runs it, on a private event loop so tests stay synchronous."""

    def __init__(self, settings: Settings, *, registry: Registry = REGISTRY) -> None:
        self.settings = settings
        self.bot = Bot(settings, registry=registry)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> BotThread:
        self.thread.start()
        self.call(self.bot.start())
        return self

    def stop(self) -> None:
        if not self.thread.is_alive():
            return  # stopped already (a test may stop a bot before the fixture does)
        try:
            self.call(self.bot.stop(), timeout=30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)

    def call(self, coro: Any, timeout: float = 20) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.bot.port}"

    def command(self, text: str, *, response_url: str, **fields: str) -> httpx.Response:
        return send_command(self.url, text, response_url=response_url, **fields)

    def event(self, payload: dict[str, Any], retry_num: int | None = None) -> httpx.Response:
        return send_event(self.url, payload, retry_num)

    def shortcut(self, payload: dict[str, Any]) -> httpx.Response:
        return send_shortcut(self.url, payload)


def bot_env(slack: FakeSlack, jogg: FakeJogg, workdir: Path, **overrides: str) -> dict[str, str]:
    """The environment for `python -m bot` pointed at the test servers (empty values are dropped)."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(workdir),
        "PYTHONPATH": str(REPO),
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.api_url,
        "JOGG_API_KEY": jogg.api_key,
        "JOGG_API_URL": jogg.base_url,
        "PORT": str(free_port()),
        "POLL_INTERVAL_SECONDS": "0.2",
        "LEASE_SECONDS": "2",
        "DATA_DIR": str(workdir / "data"),
        # As in tests/conftest.py: results go into threads only where a test turns it on.
        "MAX_RESULT_UPLOAD_MB": "0",
        "SLACK_UPDATES_PER_MINUTE": "10000",
        "PREFLIGHT": "off",  # as in tests/conftest.py
        **overrides,
    }
    return {k: v for k, v in env.items() if v}


class BotProcess:
    """`python -m bot` (or `argv`, e.g. the bot under cProfile) as a child process, logging to a file."""

    def __init__(
        self, env: dict[str, str], cwd: Path, name: str = "bot", argv: list[str] | None = None
    ) -> None:
        self.env, self.cwd = env, cwd
        self.argv = argv or [sys.executable, "-m", "bot"]
        self.url = f"http://127.0.0.1:{env['PORT']}"
        self.log = cwd / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdout=log, stderr=log)
        try:
            wait_until(self._healthy, timeout=60)
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

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def health(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.url}/healthz", timeout=5).json())

    def command(self, text: str, *, response_url: str, **fields: str) -> httpx.Response:
        return send_command(self.url, text, response_url=response_url, **fields)

    def event(self, payload: dict[str, Any]) -> httpx.Response:
        return send_event(self.url, payload)

    def shortcut(self, payload: dict[str, Any]) -> httpx.Response:
        return send_shortcut(self.url, payload)


def stored_job(**fields: object) -> Job:
    """A job as the store reads it from a hash holding `fields` (today's hash field names and encodings,
    bot.jobs.codec): values are written as their text, enums as their values."""
    return codec.from_fields({"id": "0190abcdef1234", **{k: _stored_text(v) for k, v in fields.items()}})


def _stored_text(value: object) -> str:
    return str(value.value) if isinstance(value, Enum) else str(value)
