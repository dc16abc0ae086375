"""A provider that cannot be reached (no network, DNS down, a service that is not up yet) is said to be
unreachable, by name, everywhere: in its errors, at the bot's start (which goes on and asks again until it
answers), and in a terminal dub, which stops before the link check instead of blaming the links."""

from __future__ import annotations

import asyncio
import io
import logging
import socket
import time
from collections.abc import Callable

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from pydantic import SecretStr

from bot import providers
from bot.money.preflight import Preflight
from bot.parsing.command import Options
from bot.programs.terminal_dub import UNUSED_SETTINGS, Console, DubRequest, dub_async
from bot.providers.base import ErrorKind, KeyState, ProviderError, ProviderUnreachable
from bot.providers.registry import REGISTRY
from bot.providers.sync import SyncProvider
from bot.retry import Backoff
from tests.fakes.jogg_api import FakeJogg
from tests.fakes.sync_api import FakeSync
from tests.harness import BotThread, free_port
from tests.provider_calls import call

VIDEO = "https://cdn.example.com/talk.mp4"
AUDIO = "https://cdn.example.com/voice-fr.mp3"


class DnsDown(AbstractResolver):
    """Every name lookup fails as on a machine whose DNS server does not answer."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    async def close(self) -> None:
        pass


def test_a_provider_that_cannot_be_reached_is_named_with_its_host() -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ProviderUnreachable) as caught:
        call(lambda: SyncProvider(SecretStr("k"), base_url=nobody), "get", "gen-1")
    error = caught.value
    assert isinstance(error, ProviderError) and error.kind is ErrorKind.TRANSIENT and not error.ambiguous
    assert error.message == "cannot reach sync.so (127.0.0.1): the connection failed (Connection refused)"
    check = call(lambda: SyncProvider(SecretStr("k"), base_url="http://api.sync.invalid"), "key_check")
    assert check.state is KeyState.UNREACHABLE
    assert check.detail.startswith("cannot reach sync.so (api.sync.invalid): its name does not resolve here")


def test_the_bot_starts_with_a_provider_it_cannot_reach_and_says_so(
    start_bot: Callable[..., BotThread], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    nobody = f"http://127.0.0.1:{free_port()}"  # sync.so is down; JoggAI answers

    bot = start_bot(sync_api_key="sync-key", sync_api_url=nobody)

    assert set(bot.bot.providers) == {"jogg", "sync"}  # started, with both
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING and "sync.so" in r.getMessage()]
    said = warning.getMessage()
    assert said.startswith("sync.so could not be checked at start: cannot reach sync.so (127.0.0.1)")
    assert "Starting anyway" in said and "asked again in 15 s" in said
    assert bot.bot.key_recheck is not None and not bot.bot.key_recheck.done()  # it keeps asking


def test_a_provider_unreachable_at_start_is_asked_again_until_it_answers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    port = free_port()
    later = FakeSync()
    later.bind_port = port  # sync.so comes up on this port only after the bot started

    def said(words: str) -> bool:
        return any(words in record.getMessage() for record in caplog.records)

    async def start_then_come_up() -> None:
        provider = SyncProvider(SecretStr(later.api_key), base_url=f"http://127.0.0.1:{port}")
        recheck = asyncio.create_task(providers.recheck_keys([provider], Backoff(base_s=0.05, cap_s=0.2)))
        try:
            deadline = time.monotonic() + 10
            while not said("sync.so still cannot be checked") and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            await asyncio.to_thread(later.start)
            await asyncio.wait_for(recheck, timeout=10)  # ends once every provider has answered
        finally:
            recheck.cancel()
            await provider.aclose()

    try:
        asyncio.run(start_then_come_up())
    finally:
        later.stop()
    assert said("sync.so still cannot be checked (cannot reach sync.so (127.0.0.1)")
    assert said("sync.so answers now")
    with later.lock:
        assert [r.path for r in later.requests] == ["/v2/generations"]


def test_a_dub_without_network_says_it_cannot_reach_the_provider_not_that_the_links_are_bad(
    jogg: FakeJogg,
) -> None:
    settings = REGISTRY.load_settings(
        _env_file=None,
        **UNUSED_SETTINGS,
        jogg_api_key=jogg.api_key,
        jogg_api_url="http://api.jogg.invalid",  # its name does not resolve: no DNS here
        preflight="on",
    )
    err = io.StringIO()
    status = asyncio.run(
        dub_async(
            DubRequest(VIDEO, AUDIO, Options()),
            settings,
            Console(io.StringIO(), err),
            preflight=Preflight(resolver=DnsDown()),  # and no link's name resolves either
        )
    )

    said = err.getvalue()
    assert status == 1, said
    assert said.startswith("Cannot reach JoggAI (api.jogg.invalid): its name does not resolve here"), said
    assert "so nothing was sent" in said and "JOGG_API_URL" in said
    assert "link" not in said and "does not exist" not in said
    assert jogg.requests == []
