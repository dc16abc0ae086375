"""Running the real bot inside a test: its own event loop in a thread, talking to the test servers."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

import httpx

from bot.main import Bot
from bot.settings import Settings
from tests.payloads import form_body, signed_headers, slash_command


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class BotThread:
    """`Bot` as `python -m bot` runs it, on a private event loop so tests stay synchronous."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.bot = Bot(settings)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> BotThread:
        self.thread.start()
        self.call(self.bot.start())
        return self

    def stop(self) -> None:
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
        """Send `/lipsync <text>` exactly as Slack would: a signed form POST to /slack/events."""
        body = form_body(slash_command(text, response_url=response_url, **fields))
        return httpx.post(f"{self.url}/slack/events", content=body, headers=signed_headers(body), timeout=10)
