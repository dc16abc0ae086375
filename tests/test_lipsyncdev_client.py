"""The LipSync.dev client against the fake LipSync.dev: every answer becomes a Task or a classified error."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

import pytest
from aiohttp import web
from pydantic import SecretStr

from bot.providers.base import Cost, ErrorKind, Order, ProviderError, Recovery, Task, TaskState
from bot.providers.lipsyncdev import LipSyncDevProvider
from tests.fakes.lipsyncdev_api import FakeLipSyncDev, Fault, Outcome
from tests.fakes.server import BackgroundServer, wait_until
from tests.harness import free_port
from tests.provider_calls import Redirector, run_with

T = TypeVar("T")

VIDEO = "https://files.example.com/face.mp4"
AUDIO = "https://files.example.com/voice.mp3"
ORDER = Order(key="job-1", video=VIDEO, audio=AUDIO, playback="normal")


@pytest.fixture
def fake() -> Iterator[FakeLipSyncDev]:
    with FakeLipSyncDev() as server:
        yield server


def run(
    fake: FakeLipSyncDev,
    steps: Callable[[LipSyncDevProvider], Awaitable[T]],
    key: str | None = None,
    base_url: str | None = None,
    **options: Any,
) -> T:
    """Run `steps` with a fresh provider on a fresh event loop, as one worker turn would."""
    api_key = SecretStr(key or fake.api_key)
    return run_with(lambda: LipSyncDevProvider(api_key, base_url=base_url or fake.api_url, **options), steps)


def create(fake: FakeLipSyncDev, order: Order = ORDER, **options: Any) -> Task:
    return run(fake, lambda p: p.create(order), **options)


def get(fake: FakeLipSyncDev, task_id: str, **options: Any) -> Task:
    return run(fake, lambda p: p.get(task_id), **options)


def fails(
    fake: FakeLipSyncDev, steps: Callable[[LipSyncDevProvider], Awaitable[Any]], **kw: Any
) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        run(fake, steps, **kw)
    return caught.value


def submits_seen(fake: FakeLipSyncDev) -> list[Any]:
    with fake.lock:
        return [r for r in fake.requests if r.path == "/api/v1/lipsync/submit"]


# -- the happy path ----------------------------------------------------------------------------


def test_a_job_runs_pending_processing_then_completes_with_its_exact_credits(fake: FakeLipSyncDev) -> None:
    created = create(fake)
    assert created.state is TaskState.RUNNING
    assert created.id.isdigit()  # the number the docs show, kept as text
    sent_at = datetime.fromisoformat(fake.jobs[created.id].created_at)  # ISO 8601 on the wire
    assert created.created_at == sent_at.timestamp()  # unix seconds

    async def poll_three_times(p: LipSyncDevProvider) -> list[Task]:
        return [await p.get(created.id) for _ in range(3)]

    states = run(fake, poll_three_times)
    assert [t.state for t in states] == [TaskState.RUNNING, TaskState.RUNNING, TaskState.SUCCEEDED]
    done = states[-1]
    assert done.result_url == fake.output_url(created.id)
    assert done.cost == "38" and done.duration_s == ""  # no duration is documented, none was sent
    provider = LipSyncDevProvider(SecretStr("k"))
    assert provider.cost(done, "") == Cost(Decimal(38), "LipSync.dev credits")
    assert provider.cost_rule("") == "creditsUsed as reported by LipSync.dev"


def test_fractional_credits_and_a_duration_are_kept_digit_for_digit(fake: FakeLipSyncDev) -> None:
    fake.default_outcome = Outcome("success", polls=0, credits=Decimal("12.5"), duration=Decimal("7.040"))
    done = get(fake, create(fake).id)
    assert done.state is TaskState.SUCCEEDED
    assert done.cost == "12.5" and done.duration_s == "7.040"
    cost = LipSyncDevProvider(SecretStr("k")).cost(done, "")
    assert cost is not None and cost.amount == Decimal("12.5") and str(cost.amount) == "12.5"


def test_no_credits_reported_means_no_cost(fake: FakeLipSyncDev) -> None:
    fake.default_outcome = Outcome("success", polls=0, credits=None)
    done = get(fake, create(fake).id)
    assert done.state is TaskState.SUCCEEDED and done.cost == ""
    assert LipSyncDevProvider(SecretStr("k")).cost(done, "") is None


def test_a_failed_job_carries_the_services_error_message(fake: FakeLipSyncDev) -> None:
    fake.outcome_for_video[VIDEO] = Outcome("failed", polls=1, error_message="No face found in frame 1")
    created = create(fake)
    assert get(fake, created.id).state is TaskState.RUNNING
    failed = get(fake, created.id)
    assert failed.state is TaskState.FAILED and failed.error == "No face found in frame 1"
    assert failed.result_url == ""


def test_the_other_doc_versions_wrapped_answers_are_read_too(fake: FakeLipSyncDev) -> None:
    fake.wrap_answers = True  # {"success": true, "data": {...}}
    fake.default_outcome = Outcome("success", polls=0, credits=Decimal("3.25"))
    created = create(fake)
    assert created.state is TaskState.RUNNING
    done = get(fake, created.id)
    assert done.state is TaskState.SUCCEEDED and done.cost == "3.25"
    assert done.result_url == fake.output_url(created.id)


def test_completed_without_an_output_url_is_transient(fake: FakeLipSyncDev) -> None:
    fake.default_outcome = Outcome("success", polls=0, output_url=None)
    created = create(fake)
    error = fails(fake, lambda p: p.get(created.id))
    assert error.kind is ErrorKind.TRANSIENT and not error.ambiguous


def test_an_unknown_job_is_not_found(fake: FakeLipSyncDev) -> None:
    error = fails(fake, lambda p: p.get("999999"))
    assert error.kind is ErrorKind.NOT_FOUND and error.message == "Job not found" and error.code == "http_404"


# -- what goes on the wire -----------------------------------------------------------------------


def test_every_call_carries_the_bearer_key_and_never_x_api_key(fake: FakeLipSyncDev) -> None:
    created = create(fake)
    get(fake, created.id)
    assert run(fake, lambda p: p.check_key()) is None
    with fake.lock:
        seen = list(fake.requests)
    assert {r.path for r in seen} == {
        "/api/v1/lipsync/submit",
        f"/api/v1/lipsync/status/{created.id}",
        "/api/v1/usage",
    }
    for request in seen:
        assert request.headers["authorization"] == f"Bearer {fake.api_key}"
        assert "x-api-key" not in request.headers


def test_video_params_are_sent_as_configured(fake: FakeLipSyncDev) -> None:
    create(fake)
    create(fake, video_enhance=0, fps="original")
    bodies = [r.json for r in submits_seen(fake)]
    assert bodies == [
        {
            "srcVideoUrl": VIDEO,
            "audioUrl": AUDIO,
            "videoParams": {"video_width": 0, "video_height": 0, "video_enhance": 1, "fps": "25"},
        },
        {
            "srcVideoUrl": VIDEO,
            "audioUrl": AUDIO,
            "videoParams": {"video_width": 0, "video_height": 0, "video_enhance": 0, "fps": "original"},
        },
    ]
    assert [job.video_params["fps"] for job in fake.jobs.values()] == ["25", "original"]


@pytest.mark.parametrize("options", [{"video_enhance": 2}, {"fps": "30"}])
def test_impossible_video_params_are_refused_at_construction(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        LipSyncDevProvider(SecretStr("k"), **options)


def test_the_key_id_is_a_stable_digest_that_does_not_show_the_key() -> None:
    one = LipSyncDevProvider(SecretStr("secret-key-1")).key_id
    assert one == LipSyncDevProvider(SecretStr("secret-key-1")).key_id
    assert one == hashlib.sha256(b"secret-key-1").hexdigest()[:16]
    assert one != LipSyncDevProvider(SecretStr("secret-key-2")).key_id
    assert "secret" not in one


def test_what_the_provider_says_about_itself() -> None:
    provider = LipSyncDevProvider(SecretStr("k"))
    assert (provider.name, provider.label) == ("lipsyncdev", "LipSync.dev")
    assert provider.recovery is Recovery.NONE
    assert provider.hosts_uploads is False and provider.accepts_webhook is False
    assert provider.creates_per_minute == 60 and provider.models == ()
    assert provider.webhook_task_id({}, b"{}", 0.0) is None


def test_options_only_normal_playback_and_no_model() -> None:
    provider = LipSyncDevProvider(SecretStr("k"))
    assert provider.options_problem("normal", "") is None
    reverse = provider.options_problem("normal_reverse", "")
    assert reverse is not None and "`normal_reverse`" in reverse and "`normal`" in reverse
    model = provider.options_problem("normal", "lipsync-2")
    assert model is not None and "model" in model


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "kind", "ambiguous"),
    [
        (Fault("http", status=401), ErrorKind.ADMIN, False),
        (Fault("http", status=403), ErrorKind.ADMIN, False),
        (Fault("http", status=402), ErrorKind.ADMIN, False),
        (Fault("http", status=429), ErrorKind.RATE_LIMITED, False),
        (Fault("http", status=400), ErrorKind.PERMANENT, False),
        (Fault("http", status=422), ErrorKind.PERMANENT, False),
        (Fault("http", status=500), ErrorKind.TRANSIENT, True),
        (Fault("http", status=502), ErrorKind.TRANSIENT, True),
        (Fault("http", status=503), ErrorKind.TRANSIENT, True),
        (Fault("malformed"), ErrorKind.TRANSIENT, True),
    ],
)
def test_submit_errors_are_classified(
    fake: FakeLipSyncDev, fault: Fault, kind: ErrorKind, ambiguous: bool
) -> None:
    fake.inject("submit", fault)
    error = fails(fake, lambda p: p.create(ORDER))
    assert error.kind is kind
    assert error.ambiguous is ambiguous  # only an unclear answer may hide a job that was made
    if fault.kind == "http":
        assert error.code == f"http_{fault.status}"
    assert fake.submits == 0  # none of these made a job


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        (Fault("http", status=500), ErrorKind.TRANSIENT),
        (Fault("http", status=503), ErrorKind.TRANSIENT),
        (Fault("malformed"), ErrorKind.TRANSIENT),
        (Fault("http", status=429), ErrorKind.RATE_LIMITED),
        (Fault("http", status=401), ErrorKind.ADMIN),
    ],
)
def test_status_errors_are_never_ambiguous(fake: FakeLipSyncDev, fault: Fault, kind: ErrorKind) -> None:
    created = create(fake)
    fake.inject("status", fault)
    error = fails(fake, lambda p: p.get(created.id))
    assert error.kind is kind and error.ambiguous is False  # a GET changes nothing: asking again is safe


def test_a_5xx_after_the_job_was_made_is_ambiguous_and_the_job_exists(fake: FakeLipSyncDev) -> None:
    fake.inject("submit", Fault("http", status=502, after=True))
    error = fails(fake, lambda p: p.create(ORDER))
    assert error.kind is ErrorKind.TRANSIENT and error.ambiguous is True
    assert fake.submits == 1  # the service did make it: that is what "ambiguous" warns about


def test_the_body_gives_the_message_and_code(fake: FakeLipSyncDev) -> None:
    body = {"error": "Insufficient credits: 38 needed, 5 left", "code": "INSUFFICIENT_CREDITS"}
    fake.inject("submit", Fault("http", status=402, body=body))
    error = fails(fake, lambda p: p.create(ORDER))
    assert error.kind is ErrorKind.ADMIN
    assert (error.message, error.code) == ("Insufficient credits: 38 needed, 5 left", "INSUFFICIENT_CREDITS")
    advice = LipSyncDevProvider(SecretStr("k")).explain(error.code)
    assert advice is not None and "credits" in advice


def test_a_long_error_text_is_cut_to_300_characters(fake: FakeLipSyncDev) -> None:
    fake.inject("submit", Fault("http", status=400, body={"message": "x" * 5000}))
    error = fails(fake, lambda p: p.create(ORDER))
    assert error.kind is ErrorKind.PERMANENT and error.message == "x" * 300


def test_a_refused_key_is_an_admin_error_with_advice(fake: FakeLipSyncDev) -> None:
    error = fails(fake, lambda p: p.create(ORDER), key="wrong-key")
    assert error.kind is ErrorKind.ADMIN and error.message == "Invalid API key" and error.code == "http_401"
    provider = LipSyncDevProvider(SecretStr("k"))
    assert (
        provider.explain(error.code)
        == "LipSync.dev refused the API key. An admin needs to check `LIPSYNCDEV_API_KEY`."
    )
    assert provider.explain("http_402") is not None and provider.explain("no-such-code") is None
    assert fake.submits == 0


class XApiKeyServer(BackgroundServer):
    """A service that wants the docs' sample header `X-API-Key` and refuses anything else with 401."""

    def routes(self, app: web.Application) -> None:
        async def refuse(request: web.Request) -> web.Response:
            if request.headers.get("X-API-Key") == "the-key":
                return web.json_response({"jobId": 1, "status": "processing"})
            return web.json_response({"success": False, "error": "Missing X-API-Key header"}, status=401)

        app.router.add_route("*", "/{tail:.*}", refuse)


def test_a_server_wanting_x_api_key_is_reported_as_a_refused_key(fake: FakeLipSyncDev) -> None:
    with XApiKeyServer() as other:
        error = fails(fake, lambda p: p.create(ORDER), key="the-key", base_url=other.base_url)
        sentence = run(fake, lambda p: p.check_key(), key="the-key", base_url=other.base_url)
    assert error.kind is ErrorKind.ADMIN and error.message == "Missing X-API-Key header"
    assert sentence is not None and "`LIPSYNCDEV_API_KEY`" in sentence


def test_a_wrong_api_url_is_an_admin_error_not_a_missing_job(fake: FakeLipSyncDev) -> None:
    error = fails(fake, lambda p: p.create(ORDER), base_url=fake.base_url)  # "/api" left out
    assert error.kind is ErrorKind.ADMIN and error.code == "http_404" and not error.ambiguous
    advice = LipSyncDevProvider(SecretStr("k")).explain(error.code)
    assert advice is not None and "`LIPSYNCDEV_API_URL`" in advice


def test_a_redirect_is_not_followed_so_the_key_stays_home(fake: FakeLipSyncDev) -> None:
    with Redirector(fake.base_url, web.HTTPTemporaryRedirect) as redirector:
        error = fails(fake, lambda p: p.create(ORDER), base_url=f"{redirector.base_url}/api")
    assert error.kind is ErrorKind.ADMIN and error.code == "http_307" and not error.ambiguous
    with fake.lock:
        assert fake.requests == [] and fake.submits == 0  # the other host never saw the key


def test_a_numeric_code_equal_to_the_status_still_gets_advice(fake: FakeLipSyncDev) -> None:
    fake.inject("submit", Fault("http", status=401, body={"code": 401, "message": "Unauthorized"}))
    error = fails(fake, lambda p: p.create(ORDER))
    assert (error.kind, error.code, error.message) == (ErrorKind.ADMIN, "http_401", "Unauthorized")
    assert LipSyncDevProvider(SecretStr("k")).explain(error.code) is not None


def test_the_rate_limit_answers_429_and_makes_no_job(fake: FakeLipSyncDev) -> None:
    fake.requests_per_minute = 1
    create(fake)
    error = fails(fake, lambda p: p.create(ORDER))
    assert error.kind is ErrorKind.RATE_LIMITED and not error.ambiguous
    assert fake.submits == 1


def test_a_refused_connection_is_not_ambiguous(fake: FakeLipSyncDev) -> None:
    nobody = f"http://127.0.0.1:{free_port()}/api"  # nothing listens there
    error = fails(fake, lambda p: p.create(ORDER), base_url=nobody)
    assert error.kind is ErrorKind.TRANSIENT and error.ambiguous is False  # nothing was sent


def test_a_slow_status_answer_is_transient_and_not_ambiguous(fake: FakeLipSyncDev) -> None:
    created = create(fake)
    fake.inject("status", Fault("delay", delay=3))
    error = fails(fake, lambda p: p.get(created.id), timeout_s=0.3)
    assert error.kind is ErrorKind.TRANSIENT and "no answer" in error.message and not error.ambiguous


def test_a_submit_answered_too_late_is_ambiguous_and_cannot_be_repeated_safely(fake: FakeLipSyncDev) -> None:
    fake.inject("submit", Fault("late", delay=1.0))
    error = fails(fake, lambda p: p.create(ORDER), timeout_s=0.3)
    assert error.kind is ErrorKind.TRANSIENT and error.ambiguous is True
    # The service made the job after the client gave up: nobody heard its jobId.
    wait_until(lambda: fake.submits == 1, message="the late submit made a job")
    # Nothing can find it again: no lookup (find is not implemented), no idempotency key...
    assert LipSyncDevProvider.recovery is Recovery.NONE
    with pytest.raises(NotImplementedError):
        run(fake, lambda p: p.find(ORDER))
    # ...so submitting the same order again makes (and bills) a second job: the pipeline must not repeat it.
    again = create(fake)
    assert fake.submits == 2 and again.id in fake.jobs
    assert len({(job.src_video_url, job.audio_url) for job in fake.jobs.values()}) == 1


# -- check_key ------------------------------------------------------------------------------------


def test_check_key_names_the_setting_when_refused_and_is_quiet_otherwise(fake: FakeLipSyncDev) -> None:
    sentence = run(fake, lambda p: p.check_key(), key="wrong-key")
    assert sentence is not None and "`LIPSYNCDEV_API_KEY`" in sentence and "401" in sentence
    assert run(fake, lambda p: p.check_key()) is None
    fake.inject("usage", Fault("http", status=503))
    assert run(fake, lambda p: p.check_key()) is None  # cannot tell now: not the key's fault
    nobody = f"http://127.0.0.1:{free_port()}/api"
    assert run(fake, lambda p: p.check_key(), base_url=nobody) is None
    with fake.lock:
        usage_calls = [r for r in fake.requests if r.path == "/api/v1/usage"]
    assert len(usage_calls) == 3


# -- the service downloads the inputs itself ------------------------------------------------------


class FileServer(BackgroundServer):
    """Serves fixed bytes, like the bot's signed links for shared Slack files; /denied/... answers 403."""

    def __init__(self, files: dict[str, tuple[bytes, str]]) -> None:
        super().__init__()
        self.files = files

    def routes(self, app: web.Application) -> None:
        async def serve(request: web.Request) -> web.Response:
            name = request.match_info["name"]
            if name not in self.files:
                return web.Response(status=404)
            data, content_type = self.files[name]
            return web.Response(body=data, content_type=content_type)

        async def denied(request: web.Request) -> web.Response:
            return web.Response(status=403, text="AccessDenied")

        app.router.add_get("/files/{name}", serve)
        app.router.add_get("/denied/{name}", denied)


VIDEO_BYTES = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 300
AUDIO_BYTES = b"ID3\x04\x00" + b"\xff\xfb" * 20_000


@pytest.fixture
def files() -> Iterator[FileServer]:
    with FileServer(
        {"face.mp4": (VIDEO_BYTES, "video/mp4"), "voice.mp3": (AUDIO_BYTES, "audio/mpeg")}
    ) as server:
        yield server


def settle(fake: FakeLipSyncDev, task_id: str) -> Task:
    """Poll like the pipeline until the job is no longer running."""

    def finished() -> Task | None:
        task = get(fake, task_id)
        return task if task.state is not TaskState.RUNNING else None

    return wait_until(finished, message=f"job {task_id} finished")


def test_the_service_downloads_both_inputs_before_finishing(fake: FakeLipSyncDev, files: FileServer) -> None:
    fake.fetch_inputs = True
    fake.default_outcome = Outcome("success", polls=0)
    order = Order(
        key="job-2",
        video=f"{files.base_url}/files/face.mp4",
        audio=f"{files.base_url}/files/voice.mp3",
        playback="normal",
    )
    created = create(fake, order)
    done = settle(fake, created.id)
    assert done.state is TaskState.SUCCEEDED
    fetched = {f.field: f for f in fake.fetches_for(created.id)}
    assert set(fetched) == {"srcVideoUrl", "audioUrl"}  # both were done before the job completed
    video, audio = fetched["srcVideoUrl"], fetched["audioUrl"]
    assert (video.url, video.status, video.content_type) == (order.video, 200, "video/mp4")
    assert (video.sha256, video.size) == (hashlib.sha256(VIDEO_BYTES).hexdigest(), len(VIDEO_BYTES))
    assert (audio.status, audio.content_type) == (200, "audio/mpeg")
    assert (audio.sha256, audio.size) == (hashlib.sha256(AUDIO_BYTES).hexdigest(), len(AUDIO_BYTES))


def test_an_input_the_service_cannot_download_fails_the_job(fake: FakeLipSyncDev, files: FileServer) -> None:
    fake.fetch_inputs = True
    order = Order(
        key="job-3",
        video=f"{files.base_url}/files/face.mp4",
        audio=f"{files.base_url}/denied/voice.mp3",
        playback="normal",
    )
    created = create(fake, order)
    failed = settle(fake, created.id)
    assert failed.state is TaskState.FAILED and failed.error == "could not download audioUrl (HTTP 403)"
    statuses = {f.field: f.status for f in fake.fetches_for(created.id)}
    assert statuses == {"srcVideoUrl": 200, "audioUrl": 403}


# -- the two API versions (shared/docs/providers.md §3) --------------------------------------------


@pytest.fixture
def fake_b() -> Iterator[FakeLipSyncDev]:
    with FakeLipSyncDev(versions=("b",)) as server:
        yield server


def run_version(fake: FakeLipSyncDev, version: str, steps: Callable[[LipSyncDevProvider], Awaitable[T]]) -> T:
    return run(fake, steps, version=version)


def probes_and_posts(fake: FakeLipSyncDev) -> tuple[list[str], list[str]]:
    with fake.lock:
        gets = [r.path for r in fake.requests if r.method == "GET"]
        posts = [r.path for r in fake.requests if r.method == "POST"]
    return gets, posts


def test_version_b_speaks_x_api_key_and_generate_and_reads_its_envelope(fake_b: FakeLipSyncDev) -> None:
    fake_b.default_outcome = Outcome("success", polls=1, credits=Decimal("4.5"))
    order = Order(key="job-b", video=VIDEO, audio=AUDIO, playback="normal", webhook_url="https://bot/hook")

    async def steps(p: LipSyncDevProvider) -> list[Task]:
        return [await p.create(order), await p.get("job_101"), await p.get("job_101")]

    created, polled, done = run_version(fake_b, "b", steps)
    assert (created.id, created.state, created.estimated_cost) == ("job_101", TaskState.RUNNING, "38")
    assert polled.state is TaskState.RUNNING
    assert done.state is TaskState.SUCCEEDED and done.result_url == fake_b.output_url("job_101")
    assert done.cost == "4.5"
    with fake_b.lock:
        submit = next(r for r in fake_b.requests if r.method == "POST")
        seen = list(fake_b.requests)
    assert submit.path == "/api/v1/lipsync/generate"
    assert submit.json == {
        "videoUrl": VIDEO,
        "audioUrl": AUDIO,
        "settings": {"fps": 25},
        "webhookUrl": "https://bot/hook",
    }
    assert all(r.headers["x-api-key"] == fake_b.api_key and "authorization" not in r.headers for r in seen)


def test_version_b_takes_the_bots_webhook_and_reads_a_delivery_as_a_hint(fake_b: FakeLipSyncDev) -> None:
    b = LipSyncDevProvider(SecretStr("k"), version="b")
    a = LipSyncDevProvider(SecretStr("k"), version="a")
    assert b.accepts_webhook is True and a.accepts_webhook is False
    assert b.webhook_task_id({}, b'{"jobId": "job_7", "status": "completed"}', 0.0) == "job_7"
    assert b.webhook_task_id({}, b'{"success": true, "data": {"jobId": 12}}', 0.0) == "12"
    for body in (b"", b"not json", b'{"jobId": "has spaces"}', b'{"jobId": true}', b"[1]"):
        assert b.webhook_task_id({}, body, 0.0) is None
    assert a.webhook_task_id({}, b'{"jobId": "job_7"}', 0.0) is None  # version A has no webhooks


def test_version_b_failures_and_refusals_are_read_from_its_envelope(fake_b: FakeLipSyncDev) -> None:
    fake_b.default_outcome = Outcome("failed", polls=0, error_message="No face in the video")
    created = run_version(fake_b, "b", lambda p: p.create(ORDER))
    failed = run_version(fake_b, "b", lambda p: p.get(created.id))
    assert failed.state is TaskState.FAILED and failed.error == "No face in the video"
    refused = fails(fake_b, lambda p: p.create(ORDER), key="wrong-key", version="b")
    assert (refused.kind, refused.message, refused.code) == (ErrorKind.ADMIN, "Invalid API key", "http_401")
    sentence = run(fake_b, lambda p: p.check_key(), key="wrong-key", version="b")
    assert sentence is not None and "API version B" in sentence and "`LIPSYNCDEV_API_KEY`" in sentence


@pytest.mark.parametrize(
    ("versions", "answered", "submit_path"),
    [
        (("a",), "API version A (Bearer, /v1/lipsync/submit)", "/api/v1/lipsync/submit"),
        (("b",), "API version B (X-API-Key, /v1/lipsync/generate)", "/api/v1/lipsync/generate"),
        (("a", "b"), "API version A (Bearer, /v1/lipsync/submit)", "/api/v1/lipsync/submit"),
    ],
)
def test_auto_asks_which_version_answers_by_a_read_and_remembers_it(
    versions: tuple[Any, ...], answered: str, submit_path: str
) -> None:
    with FakeLipSyncDev(versions=versions) as server:

        async def steps(p: LipSyncDevProvider) -> tuple[Any, Task, Task]:
            check = await p.key_check()
            return check, await p.create(ORDER), await p.create(ORDER)

        check, first, second = run(server, steps, version="auto")
        gets, posts = probes_and_posts(server)
    assert check.state.value == "accepted" and check.detail == f"{answered} answered at 127.0.0.1"
    assert first.state is TaskState.RUNNING and second.state is TaskState.RUNNING
    assert posts == [submit_path, submit_path]  # the check read, it never submitted
    assert len(gets) <= 2  # one read per version at most, once: the answer is remembered


def test_auto_asks_before_its_first_submit_when_nobody_asked_yet(fake_b: FakeLipSyncDev) -> None:
    created = run(fake_b, lambda p: p.create(ORDER), version="auto")
    gets, posts = probes_and_posts(fake_b)
    assert created.id in fake_b.jobs and posts == ["/api/v1/lipsync/generate"]
    assert gets == ["/api/v1/usage", "/api/v1/lipsync/status/lipsync-bot-version-probe"]


@pytest.mark.parametrize("versions", [("a",), ("b",)])
def test_auto_names_a_refused_key_for_whichever_version_answers(versions: tuple[Any, ...]) -> None:
    with FakeLipSyncDev(versions=versions) as server:
        check = run(server, lambda p: p.key_check(), key="wrong-key", version="auto")
        error = fails(server, lambda p: p.create(ORDER), key="wrong-key", version="auto")
    assert check.state.value == "refused" and "`LIPSYNCDEV_API_KEY`" in check.detail
    assert error.kind is ErrorKind.ADMIN and server.submits == 0


def test_a_configured_version_the_server_does_not_speak_is_refused_naming_the_setting(
    fake_b: FakeLipSyncDev,
) -> None:
    check = run(fake_b, lambda p: p.key_check(), version="a")
    assert check.state.value == "refused"
    assert "LIPSYNCDEV_API_VERSION is a" in check.detail and "LIPSYNCDEV_API_VERSION=b" in check.detail


def test_auto_with_nothing_answering_says_cannot_reach_and_submits_nothing() -> None:
    nobody = f"http://127.0.0.1:{free_port()}/api"
    with FakeLipSyncDev() as server:
        check = run(server, lambda p: p.key_check(), base_url=nobody, version="auto")
        error = fails(server, lambda p: p.create(ORDER), base_url=nobody, version="auto")
    assert check.state.value == "unreachable" and check.detail.startswith(
        "cannot reach LipSync.dev (127.0.0.1)"
    )
    assert error.kind is ErrorKind.TRANSIENT and not error.ambiguous  # only reads were tried


def test_the_settings_version_reaches_the_provider() -> None:
    from bot.providers.registry import REGISTRY

    def built(**values: str) -> LipSyncDevProvider:
        settings = REGISTRY.load_settings(
            _env_file=None,
            slack_bot_token="xoxb-1",
            slack_signing_secret="s",
            lipsyncdev_api_key="k",
            **values,
        )
        provider = REGISTRY.build(settings)["lipsyncdev"]
        assert isinstance(provider, LipSyncDevProvider)
        return provider

    chosen, auto = built(lipsyncdev_api_version="b"), built()
    assert chosen.version == "b" and chosen.accepts_webhook is True
    assert auto.version is None and auto.accepts_webhook is False  # asked at start
