"""The JoggAI provider against its stand-in: every outcome becomes a normalized task or a classified error."""

from __future__ import annotations

import asyncio
from typing import TypeVar

import pytest
from pydantic import SecretStr

from bot.providers.base import ErrorKind, Order, ProviderError, Task, TaskState
from bot.providers.jogg import JoggProvider
from tests.fakes.jogg_api import CODE_MESSAGES, FakeJogg, Fault, Outcome
from tests.harness import free_port
from tests.provider_calls import Redirector, run_with
from tests.provider_calls import call as provider_call

T = TypeVar("T")


def call(jogg: FakeJogg, action: str, *args: object, key: str | None = None) -> Task | None:
    """`action` on a fresh JoggProvider for the fake (with `key` instead of the fake's, if given)."""
    api_key = SecretStr(key or jogg.api_key)
    result: Task | None = provider_call(lambda: JoggProvider(api_key, base_url=jogg.base_url), action, *args)
    return result


ORDER = Order("job1", "https://cdn.example.com/v.mp4", "https://cdn.example.com/a.mp3", "normal")


def test_create_then_get_reads_the_nested_result_exactly(jogg: FakeJogg) -> None:
    jogg.default_outcome = Outcome("success", polls=0, duration_seconds=17.5)
    created = call(jogg, "create", ORDER)
    assert created is not None and created.state is TaskState.RUNNING
    assert jogg.creates[0]["body"] == {
        "video_url": ORDER.video,
        "audio_url": ORDER.audio,
        "playback_type": "normal",
    }
    done = call(jogg, "get", created.id)
    assert done is not None and done.state is TaskState.SUCCEEDED
    assert done.result_url == jogg.result_url(created.id)
    assert done.cover_url == jogg.cover_url(created.id)
    assert done.duration_s == "17.5"  # as written on the wire, for the exact cost rule


def test_lookup_finds_the_task_for_the_same_inputs_or_none(jogg: FakeJogg) -> None:
    assert call(jogg, "find", ORDER) is None
    created = call(jogg, "create", ORDER)
    found = call(jogg, "find", ORDER)
    assert created is not None and found is not None and found.id == created.id


@pytest.mark.parametrize(
    ("fault", "kind", "ambiguous"),
    [
        (Fault("code", code=10105), ErrorKind.ADMIN, False),
        (Fault("code", code=18020), ErrorKind.ADMIN, False),
        (Fault("code", code=18025), ErrorKind.ADMIN, False),
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
    with pytest.raises(ProviderError) as caught:
        call(jogg, "create", ORDER)
    assert caught.value.kind is kind
    assert caught.value.ambiguous is ambiguous  # only unclear answers may hide a created task


def test_wrong_api_key_is_for_the_admin_and_named_at_start(jogg: FakeJogg) -> None:
    with pytest.raises(ProviderError) as caught:
        call(jogg, "create", ORDER, key="wrong")
    assert caught.value.kind is ErrorKind.ADMIN and caught.value.code == "10105"
    provider = JoggProvider(SecretStr("wrong"), base_url=jogg.base_url)
    assert "JOGG_API_KEY" in (provider.explain("10105") or "")

    async def check(key: str) -> str | None:
        client = JoggProvider(SecretStr(key), base_url=jogg.base_url)
        try:
            return await client.check_key()
        finally:
            await client.aclose()

    assert "JOGG_API_KEY" in (asyncio.run(check("wrong")) or "")
    assert asyncio.run(check(jogg.api_key)) is None


def test_unknown_task_is_not_found(jogg: FakeJogg) -> None:
    with pytest.raises(ProviderError) as caught:
        call(jogg, "get", "no-such-task")
    assert caught.value.kind is ErrorKind.NOT_FOUND


def call_with(base_url: str, api_key: str, action: str, *args: object, timeout_s: float = 10.0) -> object:
    return provider_call(
        lambda: JoggProvider(SecretStr(api_key), base_url=base_url, timeout_s=timeout_s), action, *args
    )


def test_a_client_made_outside_an_event_loop_works_inside_one(jogg: FakeJogg) -> None:
    # As bot/programs/main.py does: no loop running yet.
    client = JoggProvider(SecretStr(jogg.api_key), base_url=jogg.base_url)

    async def go() -> Task:
        try:
            return await client.create(ORDER)
        finally:
            await client.aclose()

    assert asyncio.run(go()).state is TaskState.RUNNING


def test_a_refused_connection_is_not_ambiguous() -> None:
    nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(ProviderError) as caught:
        call_with(nobody, "key", "create", ORDER)
    assert caught.value.kind is ErrorKind.TRANSIENT
    assert caught.value.ambiguous is False  # nothing was sent: creating again cannot pay twice


@pytest.mark.parametrize(("endpoint", "ambiguous"), [("create", True), ("get", False)])
def test_no_answer_in_time_is_ambiguous_only_for_a_create(
    jogg: FakeJogg, endpoint: str, ambiguous: bool
) -> None:
    created = call(jogg, "create", ORDER)
    assert created is not None
    jogg.inject("create" if endpoint == "create" else "get", Fault("delay", delay=3, after=True))
    action, args = ("create", (ORDER,)) if endpoint == "create" else ("get", (created.id,))
    with pytest.raises(ProviderError) as caught:
        call_with(jogg.base_url, jogg.api_key, action, *args, timeout_s=0.5)
    assert caught.value.kind is ErrorKind.TRANSIENT and "no answer" in caught.value.message
    assert caught.value.ambiguous is ambiguous


def test_a_redirect_is_not_followed_so_the_key_stays_home(jogg: FakeJogg) -> None:
    created = call(jogg, "create", ORDER)
    assert created is not None
    seen_before = len(jogg.requests)
    with Redirector(jogg.base_url) as redirector, pytest.raises(ProviderError) as caught:
        call_with(redirector.base_url, jogg.api_key, "get", created.id)
    assert caught.value.kind is ErrorKind.TRANSIENT
    assert len(jogg.requests) == seen_before  # the other host never saw the request (nor the key)


# -- the envelope decides, whatever the HTTP status (shared/docs/providers.md §1.2, §1.12) ---------


def test_a_refused_key_answered_with_http_401_is_a_refused_key(jogg: FakeJogg) -> None:
    jogg.refusal_status = 401  # {"code": 10105, "msg": "Invalid API key"} under HTTP 401
    with pytest.raises(ProviderError) as caught:
        call(jogg, "create", ORDER, key="wrong")
    refused = caught.value
    assert (refused.kind, refused.code, refused.message) == (ErrorKind.ADMIN, "10105", "Invalid API key")
    assert "JOGG_API_KEY" in (JoggProvider(SecretStr("k")).explain(refused.code) or "")

    async def check(provider: JoggProvider) -> str | None:
        return await provider.check_key()

    sentence = run_with(lambda: JoggProvider(SecretStr("wrong"), base_url=jogg.base_url), check)
    assert sentence is not None and "JoggAI refused JOGG_API_KEY (Invalid API key)" in sentence
    assert jogg.creates == []


@pytest.mark.parametrize(
    ("fault", "kind", "ambiguous"),
    [
        (Fault("code", code=18020, envelope_status=402), ErrorKind.ADMIN, False),
        (Fault("code", code=18025, envelope_status=403), ErrorKind.ADMIN, False),
        (Fault("code", code=40000, envelope_status=400), ErrorKind.PERMANENT, False),
        (Fault("code", code=429, envelope_status=429), ErrorKind.RATE_LIMITED, False),
        (Fault("code", code=50000, envelope_status=500), ErrorKind.TRANSIENT, True),  # may have been made
    ],
)
def test_the_envelopes_code_is_read_under_any_http_status(
    jogg: FakeJogg, fault: Fault, kind: ErrorKind, ambiguous: bool
) -> None:
    jogg.inject("create", fault)
    with pytest.raises(ProviderError) as caught:
        call(jogg, "create", ORDER)
    error = caught.value
    assert (error.kind, error.code, error.ambiguous) == (kind, str(fault.code), ambiguous)
    assert error.message == CODE_MESSAGES[fault.code]  # JoggAI's own msg, not "HTTP 4xx"


def test_an_unreachable_jogg_is_said_as_cannot_reach_with_its_host() -> None:
    with pytest.raises(ProviderError) as caught:
        call_with("http://api.jogg.invalid", "key", "create", ORDER)
    error = caught.value
    assert error.kind is ErrorKind.TRANSIENT and not error.ambiguous
    assert error.message.startswith("cannot reach JoggAI (api.jogg.invalid): its name does not resolve here")
