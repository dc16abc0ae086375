"""The JoggAI client against the test provider: every outcome becomes a value or a classified error."""

from __future__ import annotations

import asyncio
from typing import TypeVar

import pytest
from aiohttp import web
from pydantic import SecretStr

from bot.jogg import ErrorKind, JoggClient, JoggError, LipSyncTask
from tests.fakes.jogg_api import FakeJogg, Fault, Outcome
from tests.fakes.server import BackgroundServer
from tests.harness import free_port

T = TypeVar("T")


def call(jogg: FakeJogg, action: str, *args: str, key: str | None = None) -> LipSyncTask | None:
    async def go() -> LipSyncTask | None:
        client = JoggClient(jogg.base_url, SecretStr(key or jogg.api_key))
        try:
            method = getattr(client, action)
            result: LipSyncTask | None = await method(*args)
            return result
        finally:
            await client.aclose()

    return asyncio.run(go())


INPUTS = ("https://cdn.example.com/v.mp4", "https://cdn.example.com/a.mp3", "normal")


def test_create_then_get_reads_the_nested_result_exactly(jogg: FakeJogg) -> None:
    jogg.default_outcome = Outcome("success", polls=0, duration_seconds=17.5)
    created = call(jogg, "create_lip_sync", *INPUTS)
    assert created is not None and created.status == "pending"
    done = call(jogg, "get_lip_sync", created.task_id)
    assert done is not None and done.status == "success"
    assert done.result_url == jogg.result_url(created.task_id)
    assert done.cover_url == jogg.cover_url(created.task_id)
    assert done.duration_seconds == "17.5"  # as written on the wire, for the exact cost rule


def test_lookup_finds_the_task_for_the_same_inputs_or_none(jogg: FakeJogg) -> None:
    assert call(jogg, "find_lip_sync", *INPUTS) is None
    created = call(jogg, "create_lip_sync", *INPUTS)
    found = call(jogg, "find_lip_sync", *INPUTS)
    assert created is not None and found is not None and found.task_id == created.task_id


@pytest.mark.parametrize(
    ("fault", "kind", "ambiguous"),
    [
        (Fault("code", code=10105), ErrorKind.PERMANENT, False),
        (Fault("code", code=18020), ErrorKind.PERMANENT, False),
        (Fault("code", code=18025), ErrorKind.PERMANENT, False),
        (Fault("code", code=40000), ErrorKind.PERMANENT, False),
        (Fault("code", code=429), ErrorKind.RATE_LIMITED, False),
        (Fault("code", code=50000), ErrorKind.TRANSIENT, False),
        (Fault("http", status=502), ErrorKind.TRANSIENT, True),
        (Fault("malformed"), ErrorKind.TRANSIENT, True),
        (Fault("malformed_json"), ErrorKind.TRANSIENT, True),
    ],
)
def test_create_errors_are_classified(jogg: FakeJogg, fault: Fault, kind: ErrorKind, ambiguous: bool) -> None:
    jogg.inject("create", fault)
    with pytest.raises(JoggError) as caught:
        call(jogg, "create_lip_sync", *INPUTS)
    assert caught.value.kind is kind
    assert caught.value.ambiguous is ambiguous  # only unclear answers may hide a created task


def test_wrong_api_key_is_permanent(jogg: FakeJogg) -> None:
    with pytest.raises(JoggError) as caught:
        call(jogg, "create_lip_sync", *INPUTS, key="wrong")
    assert caught.value.kind is ErrorKind.PERMANENT and caught.value.code == 10105


def test_unknown_task_is_not_found(jogg: FakeJogg) -> None:
    with pytest.raises(JoggError) as caught:
        call(jogg, "get_lip_sync", "no-such-task")
    assert caught.value.kind is ErrorKind.NOT_FOUND


def call_with(base_url: str, api_key: str, action: str, *args: str, timeout_s: float = 10.0) -> object:
    async def go() -> object:
        client = JoggClient(base_url, SecretStr(api_key), timeout_s)
        try:
            return await getattr(client, action)(*args)
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_a_client_made_outside_an_event_loop_works_inside_one(jogg: FakeJogg) -> None:
    client = JoggClient(jogg.base_url, SecretStr(jogg.api_key))  # as main.py may: no loop running yet

    async def go() -> LipSyncTask:
        try:
            return await client.create_lip_sync(*INPUTS)
        finally:
            await client.aclose()

    assert asyncio.run(go()).status == "pending"


def test_a_refused_connection_is_not_ambiguous() -> None:
    nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(JoggError) as caught:
        call_with(nobody, "key", "create_lip_sync", *INPUTS)
    assert caught.value.kind is ErrorKind.TRANSIENT
    assert caught.value.ambiguous is False  # nothing was sent: creating again cannot pay twice


@pytest.mark.parametrize(("endpoint", "ambiguous"), [("create", True), ("get", False)])
def test_no_answer_in_time_is_ambiguous_only_for_a_create(
    jogg: FakeJogg, endpoint: str, ambiguous: bool
) -> None:
    created = call(jogg, "create_lip_sync", *INPUTS)
    assert created is not None
    jogg.inject("create" if endpoint == "create" else "get", Fault("delay", delay=3, after=True))
    action, args = (
        ("create_lip_sync", INPUTS) if endpoint == "create" else ("get_lip_sync", (created.task_id,))
    )
    with pytest.raises(JoggError) as caught:
        call_with(jogg.base_url, jogg.api_key, action, *args, timeout_s=0.5)
    assert caught.value.kind is ErrorKind.TRANSIENT and "no answer" in caught.value.message
    assert caught.value.ambiguous is ambiguous


class Redirector(BackgroundServer):
    """Answers every API call with a redirect to another host (here: the fake JoggAI)."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target

    def routes(self, app: web.Application) -> None:
        async def redirect(request: web.Request) -> web.Response:
            raise web.HTTPFound(f"{self.target}{request.path_qs}")

        app.router.add_route("*", "/{tail:.*}", redirect)


def test_a_redirect_is_not_followed_so_the_key_stays_home(jogg: FakeJogg) -> None:
    created = call(jogg, "create_lip_sync", *INPUTS)
    assert created is not None
    seen_before = len(jogg.requests)
    with Redirector(jogg.base_url) as redirector, pytest.raises(JoggError) as caught:
        call_with(redirector.base_url, jogg.api_key, "get_lip_sync", created.task_id)
    assert caught.value.kind is ErrorKind.TRANSIENT
    assert len(jogg.requests) == seen_before  # the other host never saw the request (nor the key)
