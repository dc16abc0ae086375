"""A fake LipSync.dev API (the team's provider notes, shared/docs/providers.md §3) over real HTTP, speaking
version A, version B, or both (`versions=`).

Routes live under `/api`, so the bot is configured with `api_url` (= base_url + "/api") as its
`LIPSYNCDEV_API_URL`, like the real `https://www.lipsync.dev/api`.
- Version A (§3.1, §3.4): `Authorization: Bearer <key>`; `POST /api/v1/lipsync/submit`, `GET /api/v1/usage`.
  Errors are plain HTTP statuses with `{"error": "..."}` bodies; a wrong or missing key is 401
  `{"error": "Invalid API key"}`.
- Version B (§3.2): `X-API-Key: <key>`; `POST /api/v1/lipsync/generate` answered `{"success": true, "data":
  {jobId, status: "queued", inputType, estimatedCredits, estimatedTime}}`; errors `{"success": false,
  "error": "..."}`. A job with a `webhookUrl` is POSTed `{jobId, status, outputUrl?, error?}` (unsigned: no
  signature is documented) once it ends (`webhooks_sent`).
- Both: `GET /api/v1/lipsync/status/{jobId}`. Serving both, the key's header says which version asks.

With `fetch_inputs = True` the fake downloads `srcVideoUrl` and `audioUrl` itself after a submit, as the real
service does, and records what it got in `fetches`: that is how tests check the signed links the bot serves
shared files at. A download that does not answer 200 fails the job ("could not download srcVideoUrl (HTTP
403)"); such a job finishes only once its downloads are done.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

import aiohttp
from aiohttp import web

from .server import CHUNK_SIZE, Handler, ProviderFake, SlidingWindow, html_error_page
from .server import RecordedRequest as RecordedRequest  # re-exported: tests type their records with it

OUTPUT_BASE = "https://cdn.lipsync.dev/out"
FPS_CHOICES = ("25", "original")
VIDEO_PARAMS = ("video_width", "video_height", "video_enhance", "fps")

Endpoint = Literal["submit", "generate", "status", "usage"]
Version = Literal["a", "b"]
RESOLUTIONS = ("480p", "720p", "1080p")


@dataclass(frozen=True)
class Outcome:
    """How a job ends. `polls` = number of status GETs answered with a non-terminal status.

    With polls=2 the GETs answer: pending, processing, <final>. "never" stays processing forever.
    `credits` is sent as `creditsUsed` exactly as written (a Decimal keeps its digits; None sends null).
    `duration`, when set, is sent as `duration` (the docs name no duration field).
    `output_url`: "" sends the usual `output_url(jobId)`; None sends a completed job with `outputUrl: null`.
    """

    kind: Literal["success", "failed", "never"] = "success"
    polls: int = 2
    credits: int | Decimal | None = 38
    error_message: str = "Lip sync failed: no face detected in the source video"
    duration: int | Decimal | None = None
    output_url: str | None = ""


@dataclass(frozen=True)
class Fault:
    """One injected failure for the next request to an endpoint (see `FakeLipSyncDev.inject`).

    kind:
      "http"      -> HTTP `status` with `body` as JSON; without a body, `{"error": <reason>}` for a 4xx and
                     an HTML error page for a 5xx (as a proxy in front of the service would send).
      "malformed" -> HTTP 200 `<html>upstream error</html>` (not JSON).
      "delay"     -> sleep `delay` seconds, then answer normally (no work if the client left meanwhile).
      "late"      -> sleep `delay` seconds, then do the work and answer, even if the client gave up
                     meanwhile: "the service did it late, nobody heard" (`late_in_flight` counts them).
    after: do the real work first (e.g. make the job), then fail or sleep: "the service did it, the client
      never heard".
    """

    kind: Literal["http", "malformed", "delay", "late"]
    status: int = 500
    body: Any = None
    delay: float = 0.0
    after: bool = False


@dataclass(frozen=True)
class Fetch:
    """One download of a submitted input (fetch_inputs=True). `status` 0: no HTTP answer (see `error`)."""

    job_id: str
    field: str  # "srcVideoUrl" or "audioUrl"
    url: str
    status: int
    sha256: str  # of the bytes received, whatever the status
    size: int
    content_type: str  # the response's Content-Type header, as sent
    error: str = ""  # the transport failure, when status is 0


@dataclass(frozen=True)
class WebhookDelivery:
    job_id: str
    url: str
    body: dict[str, Any]
    status: int | None  # the receiver's answer; None when it could not be reached


@dataclass
class Job:
    job_id: str
    src_video_url: str
    audio_url: str
    video_params: dict[str, Any]
    vocal_audio_url: str | None
    outcome: Outcome
    created_at: str  # ISO 8601, as answered
    polls: int = 0
    forced: bool = False
    fetching: bool = False  # fetch_inputs: downloads still in progress
    fetch_error: str = ""  # the first failed download, which fails the job
    version: Version = "a"  # the version it was made with
    settings: dict[str, Any] | None = None  # version B's `settings`, as sent
    webhook_url: str | None = None  # version B's `webhookUrl`
    webhook_sent: bool = False


class ApiError(Exception):
    """Raised by a handler to answer `status` with `{"error": message}`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class FakeLipSyncDev(ProviderFake[Endpoint, Fault]):
    def __init__(self, api_key: str = "lipsyncdev-test-key", versions: tuple[Version, ...] = ("a",)) -> None:
        super().__init__()
        if not versions or not set(versions) <= {"a", "b"}:
            raise ValueError(f"versions must be some of 'a', 'b', not {versions!r}")
        self.api_key = api_key
        self.versions = versions
        self._webhook_session: aiohttp.ClientSession | None = None
        # Configuration.
        self.default_outcome = Outcome()
        self.outcome_for_video: dict[str, Outcome] = {}
        self.submit_status: Literal["processing", "pending"] = "processing"
        self.estimated_credits = 38
        self.wrap_answers = False  # True: {"success": true, "data": {...}}, the other doc version's shape
        self.fetch_inputs = False
        self.fetch_timeout_s = 10.0
        self.requests_per_minute: int | None = None  # every authenticated API request counts
        self.requests_limit = 1000  # /v1/usage's current_period.requests_limit
        self.clock: Callable[[], float] = time.monotonic  # for the rate-limit window
        self._background: set[asyncio.Task[None]] = set()
        self._init_state()

    def _init_state(self) -> None:
        super()._init_state()
        self.jobs: dict[str, Job] = {}
        self.submits = 0  # accepted submits (jobs made), either version
        self.webhooks_sent: list[WebhookDelivery] = []
        self.fetches: list[Fetch] = []
        self.requests_used = 0  # authenticated API requests answered (for /v1/usage)
        self._next_job = 101
        self._request_window = SlidingWindow()  # over authenticated requests ("requests per minute")

    # -- test-facing helpers -------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        """What the bot is configured with (LIPSYNCDEV_API_URL)."""
        return f"{self.base_url}/api"

    def finish(self, job_id: str, outcome: Outcome) -> None:
        """Force a job to `outcome`'s final state from its next status GET on ("never": processing); a
        version B job with a webhookUrl is told at once."""
        with self.lock:
            job = self.jobs[job_id]
            job.outcome = outcome
            job.forced = True
        loop = self._loop
        if loop is not None and outcome.kind != "never":
            loop.call_soon_threadsafe(self._schedule_webhook, job_id)

    @staticmethod
    def output_url(job_id: str) -> str:
        return f"{OUTPUT_BASE}/{job_id}.mp4"

    def fetches_for(self, job_id: str) -> list[Fetch]:
        with self.lock:
            return [f for f in self.fetches if f.job_id == job_id]

    # -- server ----------------------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        app.middlewares.append(self.record_middleware)
        if "a" in self.versions:
            app.router.add_post("/api/v1/lipsync/submit", self._endpoint("submit", self._submit))
            app.router.add_get("/api/v1/usage", self._endpoint("usage", self._usage))
        if "b" in self.versions:
            app.router.add_post("/api/v1/lipsync/generate", self._endpoint("generate", self._generate))
        app.router.add_get("/api/v1/lipsync/status/{job_id}", self._endpoint("status", self._status))

    async def on_shutdown(self, app: web.Application) -> None:
        if self._webhook_session is not None:
            await self._webhook_session.close()

    def _version_of(self, request: web.Request) -> Version:
        """Which version a request speaks: its route, or for the status route (both versions have it)
        the header its key comes in."""
        if request.path.endswith(("/submit", "/usage")):
            return "a"
        if request.path.endswith("/generate"):
            return "b"
        if len(self.versions) == 1:
            return self.versions[0]
        return "b" if "X-API-Key" in request.headers else "a"

    def _refusal(self, request: web.Request, needs_key: bool) -> web.Response | None:
        version = self._version_of(request)
        if version == "a" and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error(401, "Invalid API key")
        if version == "b" and request.headers.get("X-API-Key") != self.api_key:
            return _error(401, "Invalid API key", version="b")
        if not self._request_window.admit(self.requests_per_minute, self.clock()):
            return _error(429, "Rate limit exceeded", headers={"Retry-After": "60"}, version=version)
        return None

    async def _run(self, name: Endpoint, handler: Handler, request: web.Request, body: Any) -> web.Response:
        with self.lock:
            self.requests_used += 1
        try:
            return await handler(request, body)
        except ApiError as exc:
            return _error(exc.status, exc.message, version=self._version_of(request))

    def _fault_response(
        self, name: Endpoint, fault: Fault, request: web.Request, made: web.Response | None
    ) -> web.Response:
        if fault.kind == "malformed":
            return web.Response(text="<html>upstream error</html>", content_type="text/html")
        if fault.body is not None:
            return web.Response(status=fault.status, text=_dumps(fault.body), content_type="application/json")
        if fault.status < 500:
            reason = web.Response(status=fault.status).reason
            return _error(fault.status, reason, version=self._version_of(request))
        return html_error_page(fault.status)

    # -- endpoint handlers -----------------------------------------------------------------------

    async def _submit(self, request: web.Request, body: Any) -> web.Response:
        if not isinstance(body, dict):
            raise ApiError(400, "Request body must be a JSON object")
        src_video_url = _require_str(body, "srcVideoUrl")
        audio_url = _require_str(body, "audioUrl")
        vocal = body.get("vocalAudioUrl")
        if vocal is not None and not isinstance(vocal, str):
            raise ApiError(400, "vocalAudioUrl must be a string")
        params = _require_video_params(body.get("videoParams"))
        fetch = self.fetch_inputs
        with self.lock:
            job_id = str(self._next_job)
            self._next_job += 1
            job = Job(
                job_id=job_id,
                src_video_url=src_video_url,
                audio_url=audio_url,
                video_params=params,
                vocal_audio_url=vocal,
                outcome=self.outcome_for_video.get(src_video_url, self.default_outcome),
                created_at=_iso_now(),
                fetching=fetch,
            )
            self.jobs[job_id] = job
            self.submits += 1
        if fetch:
            task = asyncio.get_running_loop().create_task(self._fetch_inputs(job))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        data = {
            "jobId": int(job_id),
            "status": self.submit_status,
            "estimatedCredits": self.estimated_credits,
            "createdAt": job.created_at,
        }
        return self._answer(data)

    async def _generate(self, request: web.Request, body: Any) -> web.Response:
        """Version B's create."""
        if not isinstance(body, dict):
            raise ApiError(400, "Request body must be a JSON object")
        video_url = body.get("videoUrl") or body.get("imageUrl")
        if not isinstance(video_url, str) or not video_url:
            raise ApiError(400, "videoUrl or imageUrl is required")
        audio_url = _require_str(body, "audioUrl")
        settings = _require_settings(body.get("settings", {}))
        webhook_url = body.get("webhookUrl")
        if webhook_url is not None and not isinstance(webhook_url, str):
            raise ApiError(400, "webhookUrl must be a string")
        with self.lock:
            job_id = f"job_{self._next_job}"
            self._next_job += 1
            job = Job(
                job_id=job_id,
                src_video_url=video_url,
                audio_url=audio_url,
                video_params={},
                vocal_audio_url=None,
                outcome=self.outcome_for_video.get(video_url, self.default_outcome),
                created_at=_iso_now(),
                version="b",
                settings=settings,
                webhook_url=webhook_url,
            )
            self.jobs[job_id] = job
            self.submits += 1
        data = {
            "jobId": job_id,
            "status": "queued",
            "inputType": "video",
            "estimatedCredits": self.estimated_credits,
            "estimatedTime": 120,
        }
        return _json({"success": True, "data": data})

    async def _status(self, request: web.Request, body: Any) -> web.Response:
        job_id = request.match_info["job_id"]
        version = self._version_of(request)
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None:
                raise ApiError(404, "Job not found")
            job.polls += 1
            view = self._job_view(job)
            ended = view["status"] in ("completed", "failed")
        if ended:
            self._schedule_webhook(job_id)
        if version == "b":
            return _json({"success": True, "data": _b_view(view)})
        return self._answer(view)

    async def _usage(self, request: web.Request, body: Any) -> web.Response:
        today = datetime.now(UTC).date()
        start = today.replace(day=1)
        with self.lock:
            used = self.requests_used
        return web.json_response(
            {
                "current_period": {
                    "start_date": start.isoformat(),
                    "end_date": (start.replace(day=28) + timedelta(days=4)).replace(day=1).isoformat(),
                    "requests_used": used,
                    "requests_limit": self.requests_limit,
                },
                "total_requests": used,
            }
        )

    def _answer(self, data: dict[str, Any]) -> web.Response:
        payload: dict[str, Any] = {"success": True, "data": data} if self.wrap_answers else data
        return web.Response(text=_dumps(payload), content_type="application/json")

    # -- version B's webhook ----------------------------------------------------------------------

    def _schedule_webhook(self, job_id: str) -> None:
        """On the server loop: tell a version B job's webhookUrl once that it ended."""
        with self.lock:
            job = self.jobs[job_id]
            if job.webhook_sent or not job.webhook_url:
                return
            job.webhook_sent = True
            url, body = job.webhook_url, _b_view(self._job_view(job))
        asyncio.get_running_loop().create_task(self._deliver(job_id, url, body))

    async def _deliver(self, job_id: str, url: str, body: dict[str, Any]) -> None:
        if self._webhook_session is None:
            self._webhook_session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        status: int | None = None
        try:
            async with self._webhook_session.post(url, json=body) as response:
                status = response.status
        except (aiohttp.ClientError, TimeoutError):
            status = None
        with self.lock:
            self.webhooks_sent.append(WebhookDelivery(job_id, url, body, status))

    # -- input downloads (fetch_inputs) -----------------------------------------------------------

    async def _fetch_inputs(self, job: Job) -> None:
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.fetch_timeout_s, sock_read=self.fetch_timeout_s
        )
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                fetches = await asyncio.gather(
                    self._fetch(session, job.job_id, "srcVideoUrl", job.src_video_url),
                    self._fetch(session, job.job_id, "audioUrl", job.audio_url),
                )
        finally:
            with self.lock:
                job.fetching = False
        for fetch in fetches:  # in field order: the video's failure is named first
            if fetch.status != 200:
                reason = f"HTTP {fetch.status}" if fetch.status else fetch.error
                with self.lock:
                    job.fetch_error = f"could not download {fetch.field} ({reason})"
                break

    async def _fetch(self, session: aiohttp.ClientSession, job_id: str, name: str, url: str) -> Fetch:
        digest = hashlib.sha256()
        size = 0
        try:
            async with session.get(url) as response:
                async for chunk in response.content.iter_chunked(CHUNK_SIZE):
                    digest.update(chunk)
                    size += len(chunk)
                fetch = Fetch(
                    job_id,
                    name,
                    url,
                    response.status,
                    digest.hexdigest(),
                    size,
                    response.headers.get("Content-Type", ""),
                )
        except Exception as exc:  # any failure to download is the job's failure, as at the real service
            fetch = Fetch(job_id, name, url, 0, digest.hexdigest(), size, "", error=type(exc).__name__)
        with self.lock:
            self.fetches.append(fetch)
        return fetch

    # -- job state (called under self.lock) -------------------------------------------------------

    def _state(self, job: Job) -> str:
        if job.fetching:
            return "pending" if job.polls <= 1 else "processing"
        if job.fetch_error:
            return "failed"
        outcome = job.outcome
        final = job.forced or (outcome.kind != "never" and job.polls > outcome.polls)
        if final and outcome.kind != "never":
            return "completed" if outcome.kind == "success" else "failed"
        return "pending" if job.polls <= 1 else "processing"

    def _job_view(self, job: Job) -> dict[str, Any]:
        state = self._state(job)
        view: dict[str, Any] = {
            "jobId": int(job.job_id) if job.job_id.isdigit() else job.job_id,
            "status": state,
            "createdAt": job.created_at,
            "outputUrl": None,
            "creditsUsed": None,
            "errorMessage": None,
        }
        if state == "completed":
            url = job.outcome.output_url
            view["outputUrl"] = self.output_url(job.job_id) if url == "" else url
            view["creditsUsed"] = job.outcome.credits
            if job.outcome.duration is not None:
                view["duration"] = job.outcome.duration
        elif state == "failed":
            view["creditsUsed"] = 0
            view["errorMessage"] = job.fetch_error or job.outcome.error_message
        return view


# -- module helpers ------------------------------------------------------------------------------


def _error(
    status: int, message: str, headers: dict[str, str] | None = None, version: Version = "a"
) -> web.Response:
    body: dict[str, Any] = {"error": message} if version == "a" else {"success": False, "error": message}
    return web.json_response(body, status=status, headers=headers)


def _json(payload: dict[str, Any]) -> web.Response:
    return web.Response(text=_dumps(payload), content_type="application/json")


def _b_view(view: dict[str, Any]) -> dict[str, Any]:
    """A job as version B shows it: `queued` for A's `pending`, its own field names, no null fields."""
    status = "queued" if view["status"] == "pending" else view["status"]
    shown: dict[str, Any] = {"jobId": str(view["jobId"]), "status": status, "inputType": "video"}
    shown["createdAt"] = view["createdAt"]
    if status == "completed":
        shown.update(outputUrl=view["outputUrl"], processingTime=42)
        if view.get("creditsUsed") is not None:
            shown["creditsUsed"] = view["creditsUsed"]
    if status == "failed":
        shown["error"] = view["errorMessage"]
    return shown


_DECIMAL_MARK = "\u0000decimal:"


def _dumps(value: Any) -> str:
    """JSON with Decimals written as bare numbers, digit for digit (json.dumps cannot)."""

    def mark(item: Any) -> Any:
        if isinstance(item, Decimal):
            return f"{_DECIMAL_MARK}{item}"
        if isinstance(item, dict):
            return {key: mark(val) for key, val in item.items()}
        if isinstance(item, list | tuple):
            return [mark(val) for val in item]
        return item

    text = json.dumps(mark(value), ensure_ascii=True)
    return re.sub(r'"\\u0000decimal:([^"]+)"', r"\1", text)


def _require_str(fields: dict[str, Any], name: str) -> str:
    value = fields.get(name)
    if not isinstance(value, str) or not value:
        raise ApiError(400, f"{name} is required")
    return value


def _require_video_params(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ApiError(400, "videoParams is required")
    missing = [name for name in VIDEO_PARAMS if name not in value]
    if missing:
        raise ApiError(400, f"videoParams.{missing[0]} is required")
    for name in ("video_width", "video_height"):
        size = value[name]
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ApiError(400, f"videoParams.{name} must be an integer >= 0 (0 keeps the original)")
    enhance = value["video_enhance"]
    if not isinstance(enhance, int) or isinstance(enhance, bool) or enhance not in (0, 1):
        raise ApiError(400, "videoParams.video_enhance must be 0 or 1")
    if value["fps"] not in FPS_CHOICES:
        raise ApiError(400, 'videoParams.fps must be "25" or "original"')
    return dict(value)


def _require_settings(value: Any) -> dict[str, Any]:
    """Version B's `settings`: resolution 480p|720p|1080p, fps 24-60, maxDuration a positive integer."""
    if not isinstance(value, dict):
        raise ApiError(400, "settings must be an object")
    resolution = value.get("resolution", "720p")
    if resolution not in RESOLUTIONS:
        raise ApiError(400, "settings.resolution must be 480p, 720p or 1080p")
    fps = value.get("fps", 25)
    if not isinstance(fps, int) or isinstance(fps, bool) or not 24 <= fps <= 60:
        raise ApiError(400, "settings.fps must be an integer from 24 to 60")
    max_duration = value.get("maxDuration", 60)
    if not isinstance(max_duration, int) or isinstance(max_duration, bool) or max_duration < 1:
        raise ApiError(400, "settings.maxDuration must be a positive integer")
    return dict(value)


def _iso_now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
