"""A fourth provider, added the way CONTRIBUTING.md ("Adding a provider") says: its module (here, a small
client class talking to a small real HTTP service on 127.0.0.1), its settings (a Settings subclass with its
fields, as the real ones are fields of bot.settings.Settings) and one registry entry, registered without
editing bot/providers/registry.py. Then the real bot takes `/lipsync <video> <audio> fourth`: the job is
created at the fourth provider and the reply lands in the thread; `/lipsync help` lists it; the settings
name its key where they name every provider's.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from aiohttp import web
from pydantic import SecretStr

from bot.providers.base import (
    Cost,
    ErrorKind,
    KeyCheck,
    KeyState,
    Order,
    Provider,
    ProviderError,
    Recovery,
    Task,
    TaskState,
    unchecked,
)
from bot.providers.http import ApiSession
from bot.providers.registry import REGISTRY, ProviderEntry, Registry
from bot.settings import Settings, SettingsError
from tests.fakes.server import BackgroundServer, wait_until
from tests.fakes.slack_api import FakeSlack
from tests.harness import BotThread
from tests.payloads import SIGNING_SECRET

CHANNEL = "C0GENERAL"
VIDEO = "https://cdn.example.com/talk.mp4"
AUDIO = "https://cdn.example.com/voice-fr.mp3"
FOURTH_KEY = "fourth-secret-key"


# -- the fourth provider's service: a small real HTTP server on 127.0.0.1 --------------------------


@dataclass
class Dub:
    id: str
    video: str
    audio: str
    polls: int = 0


class FourthService(BackgroundServer):
    """POST /v1/dubs makes a dub, GET /v1/dubs/<id> says how it goes (done on the second look), GET /v1/me
    answers the key check. Every call needs `authorization: Key <key>`."""

    def __init__(self) -> None:
        super().__init__()
        self.dubs: dict[str, Dub] = {}
        self.ids = (f"dub-{n}" for n in itertools.count(1))

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/me", self._me)
        app.router.add_post("/v1/dubs", self._create)
        app.router.add_get("/v1/dubs/{id}", self._get)

    def result_url(self, dub_id: str) -> str:
        return f"https://cdn.fourth.example/{dub_id}.mp4"

    def _refused(self, request: web.Request) -> web.Response | None:
        if request.headers.get("authorization") != f"Key {FOURTH_KEY}":
            return web.json_response({"error": "unknown key"}, status=401)
        return None

    async def _me(self, request: web.Request) -> web.Response:
        return self._refused(request) or web.json_response({"account": "test"})

    async def _create(self, request: web.Request) -> web.Response:
        if refused := self._refused(request):
            return refused
        body = await request.json()
        with self.lock:
            dub = Dub(next(self.ids), body["video"], body["audio"])
            self.dubs[dub.id] = dub
        return web.json_response({"id": dub.id, "state": "working"}, status=201)

    async def _get(self, request: web.Request) -> web.Response:
        if refused := self._refused(request):
            return refused
        with self.lock:
            dub = self.dubs.get(request.match_info["id"])
            if dub is None:
                return web.json_response({"error": "no such dub"}, status=404)
            dub.polls += 1
            done = dub.polls >= 2
        if not done:
            return web.json_response({"id": dub.id, "state": "working"})
        return web.json_response(
            {"id": dub.id, "state": "done", "url": self.result_url(dub.id), "seconds": "7.5", "credits": "3"}
        )


# -- its module: the client, as bot/providers/<name>.py would hold it --------------------------------


class FourthProvider(Provider):
    name = "fourth"
    label = "Fourth Dub"
    recovery = Recovery.NONE
    playback = MappingProxyType({"normal": None})

    def __init__(self, api_key: SecretStr, *, base_url: str, timeout_s: float = 10.0) -> None:
        super().__init__(api_key)
        headers = {"authorization": f"Key {api_key.get_secret_value()}"}
        self._api = ApiSession(label=self.label, base_url=base_url, headers=headers, timeout_s=timeout_s)

    async def create(self, order: Order) -> Task:
        return _task(await self._call("POST", "/v1/dubs", json={"video": order.video, "audio": order.audio}))

    async def get(self, task_id: str) -> Task:
        return _task(await self._call("GET", f"/v1/dubs/{task_id}"))

    def cost(self, task: Task, model: str) -> Cost | None:
        return Cost(Decimal(task.cost), self.unit) if task.cost else None

    def cost_rule(self, model: str) -> str:
        return "as Fourth Dub reports it"

    async def key_check(self) -> KeyCheck:
        try:
            await self._call("GET", "/v1/me")
        except ProviderError as exc:
            if exc.kind is ErrorKind.ADMIN:
                return KeyCheck(KeyState.REFUSED, "Fourth Dub refused FOURTH_API_KEY.")
            return unchecked(exc)
        return KeyCheck(KeyState.ACCEPTED)

    async def aclose(self) -> None:
        await self._api.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        answer = await self._api.request(method, path, **kwargs)
        body = json.loads(answer.body or b"{}")
        if answer.status == 401:
            raise ProviderError(ErrorKind.ADMIN, str(body.get("error", "")))
        if answer.status >= 300:
            raise ProviderError(ErrorKind.TRANSIENT, f"HTTP {answer.status}", ambiguous=method == "POST")
        return dict(body)


def _task(body: dict[str, Any]) -> Task:
    state = TaskState.SUCCEEDED if body.get("state") == "done" else TaskState.RUNNING
    return Task(
        id=str(body["id"]),
        state=state,
        result_url=str(body.get("url", "")),
        duration_s=str(body.get("seconds", "")),
        cost=str(body.get("credits", "")),
    )


# -- its settings and its one registry entry ---------------------------------------------------------


class FourthSettings(Settings):
    """What adding FOURTH_API_KEY and FOURTH_API_URL to bot/settings.py would be."""

    fourth_api_key: SecretStr | None = None
    fourth_api_url: str = "https://api.fourth.example"


def build_fourth(settings: FourthSettings) -> Provider:
    assert settings.fourth_api_key is not None  # built only when configured
    return FourthProvider(
        settings.fourth_api_key, base_url=settings.fourth_api_url, timeout_s=settings.http_timeout_seconds
    )


FOURTH = ProviderEntry(
    kind=FourthProvider,
    key_setting="FOURTH_API_KEY",
    where="fourth.example → Account → API keys",
    url_setting="FOURTH_API_URL",
    settings=("fourth_api_key", "fourth_api_url", "http_timeout_seconds"),
    build=build_fourth,
)
WITH_FOURTH: Registry = REGISTRY.with_entries(FOURTH)


# -- the bot with four providers ----------------------------------------------------------------------


@pytest.fixture
def fourth() -> Iterator[FourthService]:
    with FourthService() as service:
        yield service


@pytest.fixture
def four_settings(
    redis_url: str, slack: FakeSlack, fourth: FourthService, jogg: Any, tmp_path: Path
) -> Callable[..., FourthSettings]:
    def make(**overrides: Any) -> FourthSettings:
        values: dict[str, Any] = {
            "slack_bot_token": slack.bot_token,
            "slack_signing_secret": SIGNING_SECRET,
            "slack_api_url": slack.api_url,
            "jogg_api_key": jogg.api_key,  # the default provider stays JoggAI
            "jogg_api_url": jogg.base_url,
            "fourth_api_key": FOURTH_KEY,
            "fourth_api_url": f"http://127.0.0.1:{fourth.port}",
            "redis_url": redis_url,
            "data_dir": tmp_path / "data",
            "port": 0,
            "poll_interval_seconds": 0.1,
            "job_timeout_seconds": 30,
            "lease_seconds": 3,
            "max_result_upload_mb": 0,
            "preflight": "off",
            **overrides,
        }
        return WITH_FOURTH.load_settings(FourthSettings, _env_file=None, **values)

    return make


@pytest.fixture
def bot(four_settings: Callable[..., FourthSettings]) -> Iterator[BotThread]:
    running = BotThread(four_settings(), registry=WITH_FOURTH).start()
    yield running
    running.stop()


def text_of(message: dict[str, Any]) -> str:
    return message.get("text", "") + "\n" + json.dumps(message.get("blocks") or [])


def test_a_fourth_provider_dubs_a_lipsync_command_and_replies_in_the_thread(
    bot: BotThread, slack: FakeSlack, fourth: FourthService, jogg: Any
) -> None:
    response = bot.command(f"{VIDEO} {AUDIO} fourth", response_url=slack.response_url("r"))

    assert response.status_code == 200 and response.text == ""
    parent = wait_until(lambda: (slack.messages(CHANNEL) or [None])[0], timeout=10)
    [reply] = wait_until(lambda: slack.replies(CHANNEL, parent["ts"]), timeout=20)
    [dub] = fourth.dubs.values()
    assert (dub.video, dub.audio) == (VIDEO, AUDIO)
    reply_text = text_of(reply)
    assert fourth.result_url(dub.id) in reply_text
    assert "Fourth Dub" in reply_text and "3 credits" in reply_text and "7.5 s" in reply_text
    assert "Fourth Dub" in text_of(parent)
    assert jogg.creates == []  # the default provider was not used


def test_help_lists_the_fourth_provider(bot: BotThread, slack: FakeSlack) -> None:
    response = bot.command("help", response_url=slack.response_url("r"))
    text = str(response.json().get("text", ""))
    assert "`fourth`: Fourth Dub" in text and "`jogg`: JoggAI" in text


def test_its_key_alone_is_enough_and_it_is_named_when_no_key_is_set(
    four_settings: Callable[..., FourthSettings],
) -> None:
    alone = four_settings(jogg_api_key=None)
    assert alone.configured_providers == ["fourth"] and alone.chosen_default_provider == "fourth"
    with pytest.raises(SettingsError) as missing:
        four_settings(jogg_api_key=None, fourth_api_key=" ")
    assert "FOURTH_API_KEY: get it at fourth.example → Account → API keys" in str(missing.value)
    assert "JOGG_API_KEY: get it at app.jogg.ai" in str(missing.value)
