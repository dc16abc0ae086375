"""How `lipsync-bot dub` (bot/programs/terminal_dub.py) shows itself on a terminal: the status line on stderr,
and outside text made safe and plain for it. No I/O but the stream it is given."""

from __future__ import annotations

import asyncio
import html
import shutil
import time
import unicodedata
from collections.abc import Callable
from decimal import Decimal
from typing import TextIO

from bot.providers.base import Cost, ProviderError
from bot.views import formats


class StatusLine:
    """The current step on stderr, with the seconds since the start. On a terminal one line rewritten in
    place (a ticker keeps the seconds current); otherwise, e.g. in a log file, one line per change.
    `note` writes a line that stays (the quote, the task id)."""

    def __init__(
        self, stream: TextIO, clock: Callable[[], float] = time.monotonic, tty: bool | None = None
    ) -> None:
        self.stream = stream
        self.clock = clock
        self.tty = stream.isatty() if tty is None else tty
        self.started = clock()
        self._text = ""
        self._drawn = False  # a status is on screen without its newline (terminal only)
        self._ticker: asyncio.Task[None] | None = None

    def status(self, text: str) -> None:
        if text == self._text:
            return
        self._text = text
        if self.tty:
            self._draw()
        else:
            self._write(f"{self._line()}\n")

    def note(self, text: str) -> None:
        self._erase()
        self._write(f"{text}\n")
        if self.tty and self._text:
            self._draw()

    def close(self) -> None:
        """Take the status line off the screen (terminal), before the outcome is printed."""
        self._erase()
        self._text = ""

    def start_ticker(self) -> None:
        if self.tty and self._ticker is None:
            self._ticker = asyncio.create_task(self._tick())

    async def aclose(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
            self._ticker = None
        self.close()

    def refresh(self) -> None:
        """Redraw the status with the seconds now (terminal only; the ticker calls it every second)."""
        if self.tty and self._text:
            self._draw()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(1)
            self.refresh()

    def _line(self) -> str:
        return f"{self._text} {elapsed_text(self.clock() - self.started)}"

    def _draw(self) -> None:
        width = shutil.get_terminal_size().columns - 1
        line = self._line()
        if len(line) > width > 1:
            line = line[: width - 1] + "…"  # a wrapped line could not be rewritten in place
        self._write(f"\r\x1b[K{line}")
        self._drawn = True

    def _erase(self) -> None:
        if self._drawn:
            self._write("\r\x1b[K")
            self._drawn = False

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


def elapsed_text(seconds: float) -> str:
    whole = max(0, int(seconds))
    return f"{whole} s" if whole < 120 else f"{whole // 60} min {whole % 60:02d} s"


def plain(text: str) -> str:
    """A message written for Slack (bot/parsing/command.py, bot/views/) as terminal text: without
    the backticks of code spans and with the entities Slack needs turned back into characters."""
    return html.unescape(text.replace("`", ""))


def clean(text: str) -> str:
    """Outside text (provider messages, ids, links) without control characters: an escape sequence from
    a provider must not reach the terminal."""
    return "".join(ch if unicodedata.category(ch)[0] != "C" else "?" for ch in text)


def why(exc: ProviderError) -> str:
    """A provider error as the middle of a sentence: "Rate limit exceeded (code 429)"."""
    return clean(str(exc)).replace(". (code", " (code").rstrip(".")


def cost_text(cost: Cost | None) -> str:
    return plain(formats.cost_text(f"{cost.amount:f}", cost.unit)) if cost else "unknown"


def duration_text(seconds: Decimal | str | None) -> str:
    try:
        return f"{Decimal(seconds):f} s" if seconds not in (None, "") else "unknown"
    except ArithmeticError:
        return "unknown"
