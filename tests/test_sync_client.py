"""The sync.so client against the fake sync.so: every answer becomes a Task or a classified ProviderError."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from decimal import Decimal
from typing import Any, TypeVar

import pytest
from aiohttp import web
from pydantic import SecretStr

from bot.providers.base import Cost, ErrorKind, KeyState, Order, ProviderError, Task, TaskState
from bot.providers.sync import SyncProvider, idempotency_key
from tests.fakes.server import BackgroundServer, lower_headers, wait_until
from tests.fakes.sync_api import UNEXPLAINED_429_BODY, FakeSync, Fault, Outcome, sign_webhook
from tests.harness import free_port
from tests.provider_calls import Redirector, run_with

T = TypeVar("T")

VIDEO = "https://cdn.example.com/talk.mp4"
AUDIO = "https://cdn.example.com/dub.mp3"
ORDER = Order(key="job-1", video=VIDEO, audio=AUDIO, playback="normal")
SECRET = "whsec_test-signing-secret"


@pytest.fixture
def fake() -> Iterator[FakeSync]:
    with FakeSync() as server:
        yield server


def run(
    fake: FakeSync,
    action: Callable[[SyncProvider], Awaitable[T]],
    key: str | None = None,
    base_url: str | None = None,
    **options: Any,
) -> T:
    """Run `action` with a fresh provider pointed at the fake (or `base_url`), closing it afterwards."""
    api_key = SecretStr(key or fake.api_key)
    return run_with(lambda: SyncProvider(api_key, base_url=base_url or fake.base_url, **options), action)


def failure(
    fake: FakeSync, action: Callable[[SyncProvider], Awaitable[object]], **options: Any
) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        run(fake, action, **options)
    return caught.value


def create(order: Order = ORDER) -> Callable[[SyncProvider], Awaitable[Task]]:
    return lambda provider: provider.create(order)


def get(task_id: str) -> Callable[[SyncProvider], Awaitable[Task]]:
    return lambda provider: provider.get(task_id)


def creates(fake: FakeSync) -> list[Any]:
    with fake.lock:
        return [r for r in fake.requests if r.method == "POST" and r.path == "/v2/generate"]


async def chunks(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


# -- generations -----------------------------------------------------------------------------------


def test_create_then_polls_through_pending_and_processing_to_an_exact_result(fake: FakeSync) -> None:
    fake.default_outcome = Outcome("success", polls=2, duration=Decimal("12.345"))
    created = run(fake, create())
    assert created.state is TaskState.RUNNING and created.id in fake.generations

    seen = []
    for _ in range(2):
        assert run(fake, get(created.id)).state is TaskState.RUNNING
        seen.append(fake.generation(created.id).status)
    assert seen == ["PENDING", "PROCESSING"]

    done = run(fake, get(created.id))
    assert done.state is TaskState.SUCCEEDED
    assert done.result_url == fake.output_url(created.id)
    assert done.duration_s == "12.345"  # as written on the wire, not via a float
    assert done.created_at is not None and abs(done.created_at - time.time()) < 60
    provider = SyncProvider(SecretStr("k"))
    assert provider.cost(done, "lipsync-2") == Cost(Decimal("0.61725"), "USD")  # 12.345 * 0.05, exactly
    assert provider.cost(done, "sync-3") == Cost(Decimal("1.641885"), "USD")
    asyncio.run(provider.aclose())


def test_the_create_body_names_model_inputs_mode_webhook_and_key(fake: FakeSync) -> None:
    order = replace(
        ORDER, playback="normal_reverse", model="lipsync-2-pro", webhook_url="https://bot.example/hook"
    )
    run(fake, create(order))
    (request,) = creates(fake)
    assert request.json == {
        "model": "lipsync-2-pro",
        "input": [{"type": "video", "url": VIDEO}, {"type": "audio", "url": AUDIO}],
        "options": {"sync_mode": "bounce"},
        "webhookUrl": "https://bot.example/hook",
    }
    assert request.headers["idempotency-key"] == "lipsync-bot-job-1"
    assert request.headers["x-api-key"] == fake.api_key


def test_the_default_model_is_the_configured_one(fake: FakeSync) -> None:
    run(fake, create(), model="sync-3")
    assert creates(fake)[0].json["model"] == "sync-3"
    assert "webhookUrl" not in creates(fake)[0].json


def test_the_newer_output_media_url_is_read_when_output_url_is_absent(fake: FakeSync) -> None:
    fake.default_outcome = Outcome(polls=0, output_fields=("outputMediaUrl",))
    created = run(fake, create())
    assert run(fake, get(created.id)).result_url == fake.output_url(created.id)


def test_completed_without_an_output_url_is_transient(fake: FakeSync) -> None:
    fake.default_outcome = Outcome(polls=0, output_fields=())
    created = run(fake, create())
    error = failure(fake, get(created.id))
    assert error.kind is ErrorKind.TRANSIENT and not error.ambiguous


@pytest.mark.parametrize("status", ["FAILED", "REJECTED", "CANCELED", "TIMED_OUT"])
def test_a_failed_generation_carries_its_error_and_code(fake: FakeSync, status: Any) -> None:
    fake.default_outcome = Outcome(
        "failed",
        polls=0,
        failed_status=status,
        error="Audio is too long",
        error_code="generation_audio_length_exceeded",
    )
    created = run(fake, create())
    task = run(fake, get(created.id))
    assert task.state is TaskState.FAILED
    assert (task.error, task.error_code) == ("Audio is too long", "generation_audio_length_exceeded")
    assert "5 minutes" in (SyncProvider(SecretStr("k")).explain(task.error_code) or "")


def test_an_outcome_can_be_chosen_per_video(fake: FakeSync) -> None:
    fake.outcome_for_video[VIDEO] = Outcome("failed", polls=0)
    task = run(fake, get(run(fake, create()).id))
    assert task.state is TaskState.FAILED and task.error_code == "generation_pipeline_failed"


def test_an_unknown_generation_is_not_found(fake: FakeSync) -> None:
    error = failure(fake, get("no-such-generation"))
    assert error.kind is ErrorKind.NOT_FOUND and error.code == "http_404"


def test_a_time_based_outcome_finishes_without_polls(fake: FakeSync) -> None:
    fake.default_outcome = Outcome(ready_after=0.2, duration=3)
    created = run(fake, create())
    wait_until(lambda: fake.generation(created.id).status == "COMPLETED", message="finished by its timer")
    task = run(fake, get(created.id))
    assert task.state is TaskState.SUCCEEDED and task.duration_s == "3"


# -- errors ----------------------------------------------------------------------------------------


def test_a_refused_key_is_admin_and_names_the_setting(fake: FakeSync) -> None:
    error = failure(fake, create(), key="wrong-key")
    assert (error.kind, error.code, error.ambiguous) == (ErrorKind.ADMIN, "http_401", False)
    assert "`SYNC_API_KEY`" in (SyncProvider(SecretStr("k")).explain(error.code) or "")


def test_billing_trouble_is_admin(fake: FakeSync) -> None:
    fake.inject("generate", Fault("http", status=402, message="Free generations are used up for this month"))
    error = failure(fake, create())
    assert (error.kind, error.code) == (ErrorKind.ADMIN, "http_402")
    assert error.message == "Free generations are used up for this month"
    assert "Billing" in (SyncProvider(SecretStr("k")).explain(error.code) or "")


def test_the_rate_limit_is_rate_limited_and_the_concurrency_cap_is_busy(fake: FakeSync) -> None:
    fake.creates_per_minute = 1
    run(fake, create())
    error = failure(fake, create(replace(ORDER, key="job-2")))
    assert (error.kind, error.code) == (ErrorKind.RATE_LIMITED, "rate_limit_exceeded")

    fake.reset()
    fake.creates_per_minute = None
    fake.max_concurrent = 1
    fake.default_outcome = Outcome("never")
    first = run(fake, create())
    error = failure(fake, create(replace(ORDER, key="job-2")))
    assert error.kind is ErrorKind.BUSY and error.code == "concurrency_limit_exceeded" and not error.ambiguous
    assert fake.generation_count == 1
    fake.complete(first.id)  # a running generation ends: the cap frees a place
    assert run(fake, create(replace(ORDER, key="job-2"))).state is TaskState.RUNNING


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        (Fault("http", status=429, code="rate_limit_exceeded"), ErrorKind.RATE_LIMITED),
        (Fault("http", status=429), ErrorKind.RATE_LIMITED),
        (Fault("http", status=429, code="CONCURRENCY_LIMIT_REACHED"), ErrorKind.BUSY),
        (
            Fault("http", status=429, message="Max concurrent generations (3) reached for your plan"),
            ErrorKind.BUSY,
        ),
        (Fault("http", status=400, message="input must contain a video item"), ErrorKind.PERMANENT),
        (Fault("http", status=413, message="Payload Too Large"), ErrorKind.PERMANENT),
        (Fault("http", status=422), ErrorKind.PERMANENT),
    ],
)
def test_refusals_are_classified_and_never_ambiguous(fake: FakeSync, fault: Fault, kind: ErrorKind) -> None:
    fake.inject("generate", fault)
    error = failure(fake, create())
    assert error.kind is kind and not error.ambiguous
    assert error.code == (fault.code or f"http_{fault.status}")
    assert fake.generation_count == 0


def test_an_invalid_request_is_permanent_with_the_servers_reasons(fake: FakeSync) -> None:
    error = failure(fake, create(replace(ORDER, model="lipsync-9")))
    assert error.kind is ErrorKind.PERMANENT and error.code == "http_400"
    assert "model must be one of" in error.message and len(error.message) <= 300


@pytest.mark.parametrize(
    "fault",
    [Fault("http", status=500), Fault("http", status=503), Fault("html", status=502), Fault("malformed")],
)
@pytest.mark.parametrize(("endpoint", "ambiguous"), [("generate", True), ("get", False)])
def test_server_trouble_is_transient_and_ambiguous_only_for_a_create(
    fake: FakeSync, fault: Fault, endpoint: Any, ambiguous: bool
) -> None:
    created = run(fake, create())
    fake.inject(endpoint, fault)
    action = create(replace(ORDER, key="job-2")) if endpoint == "generate" else get(created.id)
    error = failure(fake, action)
    assert error.kind is ErrorKind.TRANSIENT and error.ambiguous is ambiguous


@pytest.mark.parametrize(("endpoint", "ambiguous"), [("generate", True), ("get", False)])
def test_no_answer_in_time_is_ambiguous_only_for_a_create(
    fake: FakeSync, endpoint: Any, ambiguous: bool
) -> None:
    created = run(fake, create())
    fake.inject(endpoint, Fault("delay", delay=3, after=True))
    action = create(replace(ORDER, key="job-2")) if endpoint == "generate" else get(created.id)
    error = failure(fake, action, timeout_s=0.5)
    assert error.kind is ErrorKind.TRANSIENT and "no answer" in error.message
    assert error.ambiguous is ambiguous


# -- idempotency -----------------------------------------------------------------------------------


def test_a_create_answered_late_and_retried_makes_exactly_one_generation(fake: FakeSync) -> None:
    fake.inject("generate", Fault("late", delay=1.5))
    error = failure(fake, create(), timeout_s=0.5)
    assert error.kind is ErrorKind.TRANSIENT and error.ambiguous  # the client gave up; sync.so did not
    wait_until(
        lambda: fake.late_in_flight == 0 and fake.generation_count == 1, message="the late create done"
    )

    retried = run(fake, create())
    assert fake.generation_count == 1 and fake.replays == 1
    assert retried.id in fake.generations and retried.state is TaskState.RUNNING
    keys = {request.headers["idempotency-key"] for request in creates(fake)}
    assert keys == {"lipsync-bot-job-1"}


def test_a_retry_while_the_first_create_is_in_flight_waits_and_then_gets_it(fake: FakeSync) -> None:
    fake.inject("generate", Fault("late", delay=2))
    assert failure(fake, create(), timeout_s=0.5).ambiguous
    busy = failure(fake, create())  # the first request still holds the key
    assert busy.kind is ErrorKind.RATE_LIMITED and busy.code == "IDEMPOTENCY_REQUEST_IN_PROGRESS"
    assert fake.generation_count == 0
    wait_until(lambda: fake.generation_count == 1, message="the late create done")
    assert run(fake, create()).id in fake.generations
    assert fake.generation_count == 1


def test_an_answer_lost_after_the_work_is_recovered_by_repeating_the_create(fake: FakeSync) -> None:
    fake.inject("generate", Fault("http", status=502, after=True))
    assert failure(fake, create()).ambiguous
    (made,) = fake.generations
    assert run(fake, create()).id == made
    assert fake.generation_count == 1


def test_an_unknown_outcome_naming_the_generation_returns_it(fake: FakeSync) -> None:
    fake.inject("generate", Fault("outcome_unknown", after=True))
    task = run(fake, create())
    (made,) = fake.generations
    assert task == Task(made, TaskState.RUNNING)


def test_an_unknown_outcome_without_a_generation_is_ambiguous(fake: FakeSync) -> None:
    fake.inject("generate", Fault("outcome_unknown"))
    error = failure(fake, create())
    assert (error.kind, error.code, error.ambiguous) == (
        ErrorKind.TRANSIENT,
        "IDEMPOTENCY_OUTCOME_UNKNOWN",
        True,
    )
    assert fake.generation_count == 0


def test_the_same_key_with_another_body_is_refused(fake: FakeSync) -> None:
    run(fake, create())
    error = failure(fake, create(replace(ORDER, audio="https://cdn.example.com/other.mp3")))
    assert error.kind is ErrorKind.PERMANENT and error.code == "IDEMPOTENCY_KEY_PAYLOAD_MISMATCH"
    assert fake.generation_count == 1
    assert "new `/lipsync`" in (SyncProvider(SecretStr("k")).explain(error.code) or "")


@pytest.mark.parametrize("job_key", ["job-1", "a b/c:d", "é" * 3, "x" * 500, ""])
def test_idempotency_keys_fit_sync_so_and_stay_distinct(job_key: str) -> None:
    key = idempotency_key(job_key)
    assert re.fullmatch(r"[A-Za-z0-9._~-]{1,128}", key)
    assert key == idempotency_key(job_key)  # stable across retries and restarts
    assert key != idempotency_key(job_key + "-other")
    assert idempotency_key("a b") != idempotency_key("a-b")  # cleaning never merges two jobs


# -- uploads ---------------------------------------------------------------------------------------


def test_an_upload_stores_the_bytes_and_the_asset_works_in_a_create(fake: FakeSync) -> None:
    video, audio = b"\x00video" * 5000, b"ID3audio" * 3000

    async def upload_and_create(provider: SyncProvider) -> tuple[str, str, Task]:
        video_ref = await provider.upload("talk.mp4", "video/mp4", len(video), chunks(video))
        audio_ref = await provider.upload("dub.mp3", "audio/mpeg", len(audio), chunks(audio))
        return video_ref, audio_ref, await provider.create(replace(ORDER, video=video_ref, audio=audio_ref))

    video_ref, audio_ref, task = run(fake, upload_and_create)
    assert video_ref.startswith("asset:") and audio_ref.startswith("asset:")
    video_id, audio_id = video_ref.removeprefix("asset:"), audio_ref.removeprefix("asset:")
    assert fake.assets[video_id]["sha256"] == hashlib.sha256(video).hexdigest()
    assert fake.assets[video_id]["type"] == "VIDEO" and fake.assets[audio_id]["type"] == "AUDIO"
    assert [(u.content_type, u.size, u.declared_size) for u in fake.uploads] == [
        ("video/mp4", len(video), len(video)),
        ("audio/mpeg", len(audio), len(audio)),
    ]
    assert task.id in fake.generations
    assert creates(fake)[0].json["input"] == [
        {"type": "video", "assetId": video_id},
        {"type": "audio", "assetId": audio_id},
    ]


def test_the_storage_put_never_carries_the_api_key(fake: FakeSync) -> None:
    data = b"bytes" * 100
    run(fake, lambda provider: provider.upload("a.wav", "audio/wav", len(data), chunks(data)))
    with fake.lock:
        puts = [r for r in fake.requests if r.method == "PUT"]
        posts = [r for r in fake.requests if r.method == "POST"]
    assert len(puts) == 1 and "x-api-key" not in puts[0].headers and not fake.put_had_api_key
    assert len(posts) == 2 and all(r.headers.get("x-api-key") == fake.api_key for r in posts)
    assert fake.uploads[0].headers["content-length"] == str(len(data))


def test_an_upload_of_something_else_than_media_is_refused_before_any_call(fake: FakeSync) -> None:
    error = failure(fake, lambda provider: provider.upload("a.pdf", "application/pdf", 3, chunks(b"pdf")))
    assert error.kind is ErrorKind.PERMANENT and fake.requests == []


@pytest.mark.parametrize("endpoint", ["upload_request", "asset"])
def test_an_upload_answer_without_its_fields_is_transient_and_quotes_no_url(
    fake: FakeSync, endpoint: Any
) -> None:
    fake.inject(endpoint, Fault("http", status=201, message="ok"))  # a 2xx body without uploadUrl/url or id
    error = failure(fake, lambda provider: provider.upload("a.mp4", "video/mp4", 5, chunks(b"video")))
    assert error.kind is ErrorKind.TRANSIENT
    assert "http" not in error.message and "X-Amz-Signature" not in error.message
    assert fake.assets == {}


def test_a_refused_storage_put_is_transient(fake: FakeSync) -> None:
    fake.inject("put", Fault("http", status=500))
    error = failure(fake, lambda provider: provider.upload("a.mp4", "video/mp4", 5, chunks(b"video")))
    assert error.kind is ErrorKind.TRANSIENT and fake.uploads == [] and fake.assets == {}


# -- webhooks --------------------------------------------------------------------------------------


def delivery(generation_id: str = "6f1c1a0e-2b7d-4f7e-9a53-0c1d2e3f4a5b") -> bytes:
    return json.dumps({"id": generation_id, "status": "COMPLETED"}, separators=(",", ":")).encode()


def webhook(secret: str | None, headers: dict[str, str], body: bytes, now_s: float) -> str | None:
    provider = SyncProvider(SecretStr("k"), webhook_secret=SecretStr(secret) if secret is not None else None)
    try:
        return provider.webhook_task_id(headers, body, now_s)
    finally:
        asyncio.run(provider.aclose())


def test_a_well_signed_webhook_names_its_generation() -> None:
    now, body = 1_750_000_000, delivery()
    headers = {"sync-signature": sign_webhook(SECRET, body, now - 10)}
    assert webhook(SECRET, headers, body, now) == "6f1c1a0e-2b7d-4f7e-9a53-0c1d2e3f4a5b"


def test_the_docs_signature_over_re_serialized_json_is_accepted() -> None:
    now = 1_750_000_000
    body = b'{ "id": "gen-1", "status": "FAILED" }'  # spaced: the docs' samples sign JSON.stringify(payload)
    compact = json.dumps(json.loads(body), separators=(",", ":")).encode()
    assert webhook(SECRET, {"sync-signature": sign_webhook(SECRET, compact, now)}, body, now) == "gen-1"
    raw = b'{"id":"gen-5","error":"caf\\u00e9"}'  # escaped: only the raw body itself matches the signature
    assert webhook(SECRET, {"sync-signature": sign_webhook(SECRET, raw, now)}, raw, now) == "gen-5"


@pytest.mark.parametrize(
    "headers",
    [
        {"sync-signature": sign_webhook("whsec_another-secret", delivery(), 1_750_000_000)},
        {"sync-signature": sign_webhook(SECRET, delivery("other"), 1_750_000_000)},
        {"sync-signature": sign_webhook(SECRET, delivery(), 1_750_000_000 - 301)},  # stale
        {"sync-signature": sign_webhook(SECRET, delivery(), 1_750_000_000 + 301)},  # from the future
        {"sync-signature": "t=1750000000"},
        {"sync-signature": "v1=00ff,t=abc"},
        {"sync-signature": "garbage"},
        {},  # unsigned
    ],
)
def test_a_webhook_without_a_good_fresh_signature_is_ignored(headers: dict[str, str]) -> None:
    assert webhook(SECRET, headers, delivery(), 1_750_000_000) is None


def test_without_a_secret_unsigned_webhooks_are_accepted_and_malformed_ones_ignored() -> None:
    assert webhook(None, {}, delivery("gen-2"), 0) == "gen-2"
    assert webhook(None, {}, b'{"result": {"id": "gen-3"}}', 0) == "gen-3"
    assert webhook(None, {}, b'{"data": {"id": "gen-4"}}', 0) == "gen-4"
    for body in (
        b"",
        b"not json",
        b"[1, 2]",
        b'{"id": 5}',
        b'{"id": "has spaces"}',
        b"\xff\xfe",
        b"[" * 100_000,
    ):
        assert webhook(None, {}, body, 0) is None


class Receiver(BackgroundServer):
    """Where the fake sync.so delivers webhooks: records each delivery's headers and raw body."""

    def __init__(self) -> None:
        super().__init__()
        self.deliveries: list[tuple[dict[str, str], bytes]] = []

    def routes(self, app: web.Application) -> None:
        async def hook(request: web.Request) -> web.Response:
            body = await request.read()
            with self.lock:
                self.deliveries.append((lower_headers(request), body))
            return web.Response(text="ok")

        app.router.add_post("/hook", hook)


def test_a_finished_generation_is_delivered_once_signed_even_if_nobody_polls() -> None:
    with FakeSync(webhook_secret=SECRET) as fake, Receiver() as receiver:
        fake.default_outcome = Outcome(ready_after=0.2)
        order = replace(ORDER, webhook_url=f"{receiver.base_url}/hook")
        created = run(fake, create(order))
        wait_until(lambda: len(receiver.deliveries) == 1, message="one webhook delivery")
        headers, body = receiver.deliveries[0]
        assert webhook(SECRET, headers, body, time.time()) == created.id
        assert webhook("whsec_wrong", headers, body, time.time()) is None
        assert run(fake, get(created.id), webhook_secret=SecretStr(SECRET)).state is TaskState.SUCCEEDED
        wait_until(lambda: len(fake.webhooks_sent) == 1, message="the delivery recorded")
        assert [(d.generation_id, d.status) for d in fake.webhooks_sent] == [(created.id, 200)]


def test_a_poll_that_reveals_the_end_triggers_the_webhook_and_lost_ones_are_not_sent() -> None:
    with FakeSync() as fake, Receiver() as receiver:
        fake.default_outcome = Outcome(polls=0)
        created = run(fake, create(replace(ORDER, webhook_url=f"{receiver.base_url}/hook")))
        run(fake, get(created.id))
        wait_until(lambda: len(receiver.deliveries) == 1, message="the webhook after the final poll")
        assert "sync-signature" not in receiver.deliveries[0][0]  # no secret configured: unsigned

        fake.webhooks_enabled = False
        lost = run(fake, create(replace(ORDER, key="job-2", webhook_url=f"{receiver.base_url}/hook")))
        fake.complete(lost.id)
        assert run(fake, get(lost.id)).state is TaskState.SUCCEEDED
        assert not fake.generation(lost.id).webhook_scheduled


# -- options, cost, key check, redirects --------------------------------------------------------------


def test_options_problem_refuses_what_sync_so_cannot_honour() -> None:
    provider = SyncProvider(SecretStr("k"))
    try:
        assert provider.options_problem("normal_reverse_by_audio", "") is not None
        assert provider.options_problem("normal", "lipsync-9") is not None
        assert provider.options_problem("normal_reverse", "sync-3") is None
        assert provider.options_problem("normal", "") is None
    finally:
        asyncio.run(provider.aclose())


def test_cost_needs_a_duration_and_a_price() -> None:
    provider = SyncProvider(SecretStr("k"), prices={"lipsync-2": Decimal("0.04")})
    try:
        done = Task("g", TaskState.SUCCEEDED, duration_s="10")
        assert provider.cost(done, "") == Cost(Decimal("0.40"), "USD")  # "" = the default model
        assert provider.cost(done, "react-1") is None  # no documented price
        assert provider.cost(replace(done, duration_s=""), "lipsync-2") is None
        assert (
            provider.cost_rule("lipsync-2") == "sync.so lipsync-2 at $0.04 per second of output (SYNC_PRICES)"
        )
        assert "no per-second price" in provider.cost_rule("react-1")
    finally:
        asyncio.run(provider.aclose())


def test_check_key_names_the_setting_only_when_the_key_is_refused(fake: FakeSync) -> None:
    assert run(fake, lambda provider: provider.check_key()) is None
    sentence = run(fake, lambda provider: provider.check_key(), key="wrong-key")
    assert sentence is not None and "SYNC_API_KEY" in sentence
    nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    assert run(fake, lambda provider: provider.check_key(), base_url=nobody) is None


def test_the_key_check_uses_only_documented_query_parameters(fake: FakeSync) -> None:
    # The fake refuses parameters the API reference does not document (`limit`), as sync.so's validation
    # does: a key check sending one would read a 400 as "accepted".
    check = run(fake, lambda provider: provider.key_check())
    with fake.lock:
        asked = [(r.path, r.query) for r in fake.requests]
    assert asked == [("/v2/generations", {"status": "PROCESSING"})]
    assert check.state is KeyState.ACCEPTED


def test_a_key_check_without_an_answer_says_why_instead_of_passing(fake: FakeSync) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    unreachable = run(fake, lambda provider: provider.key_check(), base_url=nobody)
    assert unreachable.state is KeyState.UNREACHABLE
    assert unreachable.detail.startswith("cannot reach sync.so (127.0.0.1): the connection failed")
    fake.inject("list", Fault("html", status=503))
    unclear = run(fake, lambda provider: provider.key_check())
    assert unclear.state is KeyState.UNCLEAR and "HTTP 503" in unclear.detail


def test_a_redirect_is_not_followed_so_the_key_stays_home(fake: FakeSync) -> None:
    created = run(fake, create())
    seen_before = len(fake.requests)
    with Redirector(fake.base_url) as redirector:
        error = failure(fake, get(created.id), base_url=redirector.base_url)
        assert error.kind is ErrorKind.TRANSIENT and not error.ambiguous
        assert failure(fake, create(), base_url=redirector.base_url).ambiguous  # a POST may have been done
    assert len(fake.requests) == seen_before  # the other host never saw the requests (nor the key)


# -- a 429 that does not say "concurrency" -----------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_429_without_a_reason_holds_creates_back_instead_of_re_posting(fake: FakeSync) -> None:
    # The plan's cap is reached and sync.so's 429 does not say "concurrency": the jobs waiting for a
    # place must not re-POST every few seconds. The client holds its creates back, longer each time.
    fake.max_concurrent = 1
    fake.concurrency_body = UNEXPLAINED_429_BODY
    fake.default_outcome = Outcome("never")
    clock = Clock()

    async def waiting_jobs(provider: SyncProvider) -> list[ProviderError]:
        await provider.create(ORDER)  # takes the plan's one place
        refusals = []
        for step, advance in enumerate([0, 1, 1, 3, 0, 6, 4]):
            clock.now += advance
            try:
                await provider.create(replace(ORDER, key=f"job-{step + 2}"))
            except ProviderError as exc:
                refusals.append(exc)
        return refusals

    refusals = run(fake, waiting_jobs, clock=clock)
    # At 0 s a POST (429: held 5 s); 1, 2 s none; 5 s a POST (429: held 10 s); 5, 11 s none; 15 s a POST.
    assert len(creates(fake)) == 1 + 3
    assert all(r.kind is ErrorKind.RATE_LIMITED and not r.ambiguous for r in refusals)
    assert [round(r.retry_after_s) for r in refusals] == [5, 4, 3, 10, 10, 4, 20]
    assert "asked again in 4 s" in refusals[1].message
    assert fake.generation_count == 1


def test_a_create_that_gets_through_ends_the_hold(fake: FakeSync) -> None:
    fake.inject("generate", Fault("http", status=429))
    clock = Clock()

    async def steps(provider: SyncProvider) -> Task:
        with pytest.raises(ProviderError):
            await provider.create(ORDER)
        clock.now += 5
        await provider.create(ORDER)
        return await provider.create(replace(ORDER, key="job-2"))  # no hold left: sent at once

    assert run(fake, steps, clock=clock).state is TaskState.RUNNING
    assert len(creates(fake)) == 3


# -- the docs' Python sample signs ASCII-escaped JSON ------------------------------------------------


def test_a_signature_over_the_ascii_escaped_payload_is_accepted() -> None:
    now = 1_750_000_000
    body = '{"id":"gen-6","status":"FAILED","error":"Visage non détecté"}'.encode()  # sent as is
    escaped = json.dumps(json.loads(body), separators=(",", ":")).encode()  # the Python sample's \\u00e9
    assert b"\\u00e9" in escaped and escaped != body
    assert webhook(SECRET, {"sync-signature": sign_webhook(SECRET, escaped, now)}, body, now) == "gen-6"
    assert webhook("whsec_other", {"sync-signature": sign_webhook(SECRET, escaped, now)}, body, now) is None
    assert webhook(SECRET, {}, body, now) is None  # unsigned: never accepted while a secret is set
    tampered = body.replace(b"gen-6", b"gen-7")
    assert webhook(SECRET, {"sync-signature": sign_webhook(SECRET, escaped, now)}, tampered, now) is None


def test_a_delivery_signed_as_the_python_sample_signs_is_accepted_end_to_end() -> None:
    with FakeSync(webhook_secret=SECRET) as fake, Receiver() as receiver:
        fake.webhook_signs = "python"
        fake.default_outcome = Outcome("failed", ready_after=0.2, error="Aucun visage détecté")
        created = run(fake, create(replace(ORDER, webhook_url=f"{receiver.base_url}/hook")))
        wait_until(lambda: len(receiver.deliveries) == 1, message="one webhook delivery")
        headers, body = receiver.deliveries[0]
    assert "détecté".encode() in body  # the body carries the text as is; the signature the escaped form
    assert webhook(SECRET, headers, body, time.time()) == created.id
