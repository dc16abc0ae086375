"""The link check's parser process (bot/money/parser_process.py): the container parser runs in a process of
its own, and one that died is replaced."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
from collections.abc import Iterator
from decimal import Decimal

import pytest

from bot.money.preflight import Preflight
from tests import media_samples as samples
from tests.fakes.media_server import Item, MediaServer
from tests.fakes.server import wait_until


@pytest.fixture(scope="module")
def server() -> Iterator[MediaServer]:
    with MediaServer() as media:
        yield media


def duration(url: str) -> Decimal | None:
    async def go() -> Decimal | None:
        preflight = Preflight(allowed_networks=["127.0.0.1/32"])
        try:
            return (await preflight.check(url)).duration_s
        finally:
            await preflight.aclose()

    return asyncio.run(go())


def test_a_parser_process_that_died_is_replaced(server: MediaServer) -> None:
    url = server.add("/voice.wav", Item(samples.wav(60.0), "audio/wav"))
    assert duration(url) == Decimal("60.000")
    parsers = [child for child in multiprocessing.active_children() if child.name == "link-check-parser"]
    assert parsers  # the parse ran in a process of its own

    for parser in parsers:
        os.kill(parser.pid or 0, signal.SIGKILL)  # as the kernel's out-of-memory killer would
    wait_until(lambda: not any(parser.is_alive() for parser in parsers))

    assert duration(url) is None  # the parse it was given: unknown, not a refusal or a crash
    assert duration(url) == Decimal("60.000")  # a new process parses the next
