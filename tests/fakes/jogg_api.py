"""A fake JoggAI OpenAPI v2 (lip-sync tasks, lookup, asset upload) over real HTTP.

Follows the team's provider notes (shared/docs/providers.md §1): every API answer is HTTP 200 with the
envelope {"code", "msg", "data"}; business errors are non-zero codes. The signed upload URL behaves like a
storage bucket (no API key, Content-Type must match, XML errors).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

from aiohttp import web

from .server import (
    CHUNK_SIZE,
    Handler,
    ProviderFake,
    RecordedRequest,
    SlidingWindow,
    consume_body,
    html_error_page,
    lower_headers,
    refuse_put,
    storage_error,
)

PLAYBACK_TYPES = ("normal", "normal_reverse", "normal_reverse_by_audio")
RESULT_BASE = "https://res.jogg.ai/lipsync"

# msg texts for the business codes of shared/docs/providers.md §1.2 / §1.8.
CODE_MESSAGES: dict[int, str] = {
    0: "Success",
    429: "Rate limit exceeded. Please try again later.",
    10104: "Record not found",
    10105: "Invalid API key",
    17003: "Record not found",
    18020: "Insufficient credit",
    18025: "No permission to call APIs",
    40000: "Parameter error",
    50000: "System error",
}

Endpoint = Literal["create", "get", "lookup", "upload", "put", "whoami", "quota"]


@dataclass(frozen=True)
class Outcome:
    """How a task ends. `polls` = number of GETs answered with a non-terminal status.

    With polls=2 the GETs answer: pending, processing, <final>. "never" stays processing forever.
    """

    kind: Literal["success", "failed", "never"] = "success"
    polls: int = 2
    duration_seconds: float = 12.5
    error_message: str = "consume retry limit reached: audio duration fetch failed"
    cover_url: str = ""  # the success's cover URL; empty: the usual one (`FakeJogg.cover_url`)


@dataclass(frozen=True)
class Fault:
    """One injected failure for the next request to an endpoint (see `FakeJogg.inject`).

    kind:
      "http"           -> HTTP `status` with an HTML body (XML for "put", like a storage bucket).
      "code"           -> an envelope with business `code` and its usual msg, under HTTP `envelope_status`
                          (200 unless given: the envelope, not the status, carries the outcome).
      "malformed"      -> HTTP 200 `<html>upstream error</html>` (not JSON).
      "malformed_json" -> HTTP 200 {"code":0,"msg":"Success","data":null}.
      "delay"          -> sleep `delay` seconds, then answer normally.
      "late"           -> sleep `delay` seconds, then do the work and answer, even if the client gave
                          up meanwhile: "the provider finished it late, nobody heard". Until then a
                          lookup finds nothing (`late_in_flight` counts the ones still sleeping).
    after: do the real work first (e.g. create the task / store the upload), then fail or sleep:
      "the provider did it, the client never heard". Without it, a failing request has no effect, and a
      delayed one has none either if the client disconnected during the sleep (the request was dropped).
    """

    kind: Literal["http", "code", "malformed", "malformed_json", "delay", "late"]
    status: int = 500
    code: int | str = 0  # a str goes out as a JSON string, as a proxy or another version might send it
    delay: float = 0.0
    after: bool = False
    envelope_status: int = 200


@dataclass
class Task:
    task_id: str
    video_url: str
    audio_url: str
    playback_type: str | None
    outcome: Outcome
    created_at: int
    polls: int = 0
    forced: bool = False
    completed_at: int | None = None


@dataclass(frozen=True)
class Upload:
    """A PUT to a sign_url. `data` is kept only with keep_uploads=True."""

    asset_id: str
    filename: str
    content_type: str
    declared_size: int | None
    size: int
    sha256: str
    headers: dict[str, str]
    data: bytes | None = None


class JoggError(Exception):
    """Raised by a handler to answer HTTP 200 with a non-zero envelope code."""

    def __init__(self, code: int, msg: str | None = None) -> None:
        super().__init__(msg or CODE_MESSAGES.get(code, "Error"))
        self.code = code
        self.msg = msg or CODE_MESSAGES.get(code, "Error")


class FakeJogg(ProviderFake[Endpoint, Fault]):
    def __init__(self, api_key: str = "jogg-test-key", keep_uploads: bool = False) -> None:
        super().__init__()
        self.api_key = api_key
        self.keep_uploads = keep_uploads
        # Configuration.
        self.default_outcome = Outcome("success", polls=2, duration_seconds=12.5)
        self.outcome_for_video: dict[str, Outcome] = {}
        self.post_limit_per_minute: int | None = None
        self.require_content_length = False  # True: chunked PUTs get 411, as S3 presigned URLs do
        self.remaining_quota = 1000.0
        # The HTTP status of the envelope that refuses a wrong key (code 10105): 200 as the docs show, or
        # e.g. 401, as an API gateway in front of it may answer; the envelope says the same either way.
        self.refusal_status = 200
        # Result videos served by this server (127.0.0.1) instead of res.jogg.ai, for the bot's upload
        # of results into Slack: their size, and whether the answer says it (Content-Length).
        self.serve_results = False
        self.result_size = 300_000
        self.result_sends_length = True
        self.clock: Callable[[], float] = time.monotonic  # for the POST rate-limit window
        # Benchmarks: every status GET (GET /v2/lip_sync_video/<id>) answers after this many seconds,
        # like a provider that is a round trip away; and recording of every request can be turned off
        # so a run of 100,000 polls does not keep 100,000 request records.
        self.get_delay_seconds = 0.0
        self.record_requests = True
        self._init_state()

    def _init_state(self) -> None:
        super()._init_state()
        self.tasks: dict[str, Task] = {}
        self.creates: list[dict[str, Any]] = []
        self.polls: defaultdict[str, int] = defaultdict(int)
        self.lookups: list[dict[str, str]] = []
        self.assets: dict[str, dict[str, Any]] = {}
        self.uploads: list[Upload] = []
        self.put_had_api_key = False
        self._post_window = SlidingWindow()  # over accepted POSTs (shared/docs/providers.md §1.8)
        # Counters for benchmarks: status GETs answered, tasks polled at least once, and when (wall
        # clock, time.time()) each task's final status was first reported.
        self.gets_answered = 0
        self.tasks_polled = 0
        self.final_reported_at: dict[str, float] = {}
        self.result_downloads: list[str] = []  # task ids whose result video was fetched (GET or HEAD)

    # -- test-facing helpers -------------------------------------------------------------------

    def finish(self, task_id: str, outcome: Outcome) -> None:
        """Force a task to `outcome`'s final state from its next GET/lookup on ("never": processing)."""
        with self.lock:
            task = self.tasks[task_id]
            task.outcome = outcome
            task.forced = True

    def seed_tasks(
        self,
        task_ids: Iterable[str],
        outcome: Outcome | None = None,
        video_url: str = "https://cdn.example.com/bench.mp4",
        audio_url: str = "https://cdn.example.com/bench.mp3",
    ) -> None:
        """Make tasks exist as if created through the API (benchmarks seed thousands at once)."""
        chosen = outcome or self.default_outcome
        created_at = int(time.time())
        with self.lock:
            for task_id in task_ids:
                self.tasks[task_id] = Task(task_id, video_url, audio_url, "normal", chosen, created_at)

    @property
    def work_requests(self) -> list[RecordedRequest]:
        """Requests other than the account check the bot makes once at start-up (whoami)."""
        with self.lock:
            return [r for r in self.requests if r.path != "/v2/user/whoami"]

    def task(self, task_id: str) -> Task:
        with self.lock:
            return self.tasks[task_id]

    def result_url(self, task_id: str) -> str:
        if self.serve_results:
            return f"{self.base_url}/results/{task_id}.mp4"
        return f"{RESULT_BASE}/{task_id}.mp4"

    def result_bytes(self, task_id: str) -> bytes:
        """The result video's bytes when `serve_results` is on: `result_size` bytes made from the task id."""
        seed = hashlib.sha256(task_id.encode()).digest()
        return (seed * (self.result_size // len(seed) + 1))[: self.result_size]

    def cover_url(self, task_id: str) -> str:
        return f"{RESULT_BASE}/{task_id}.jpg"

    # -- routes --------------------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        app.middlewares.append(self.record_middleware)
        app.router.add_post("/v2/create_lip_sync_video", self._endpoint("create", self._create))
        app.router.add_get("/v2/lip_sync_video/{task_id}", self._endpoint("get", self._get))
        app.router.add_get("/v2/lip_sync_video", self._endpoint("lookup", self._lookup))
        app.router.add_post("/v2/upload/asset", self._endpoint("upload", self._upload_asset))
        app.router.add_get("/v2/user/whoami", self._endpoint("whoami", self._whoami))
        app.router.add_get("/v2/user/remaining_quota", self._endpoint("quota", self._quota))
        app.router.add_put("/upload/{asset_id}", self._endpoint("put", self._put, needs_key=False))
        app.router.add_get("/assets/{asset_id}/{filename}", self._serve_asset)
        app.router.add_get("/results/{task_id}.mp4", self._serve_result)

    def _refusal(self, request: web.Request, needs_key: bool) -> web.Response | None:
        if needs_key and request.headers.get("x-api-key") != self.api_key:
            return _envelope(10105, status=self.refusal_status)
        return None

    async def _run(self, name: Endpoint, handler: Handler, request: web.Request, body: Any) -> web.Response:
        if request.method == "POST" and not self._post_window.admit(self.post_limit_per_minute, self.clock()):
            return _envelope(429)
        try:
            return await handler(request, body)
        except JoggError as exc:
            return _envelope(exc.code, exc.msg)

    def _fault_response(
        self, name: Endpoint, fault: Fault, request: web.Request, made: web.Response | None
    ) -> web.Response:
        if fault.kind == "http":
            if name == "put":
                return storage_error(
                    fault.status, "InternalError", "We encountered an internal error. Please try again."
                )
            return html_error_page(fault.status)
        if fault.kind == "code":
            return _envelope(fault.code, status=fault.envelope_status)
        if fault.kind == "malformed":
            return web.Response(text="<html>upstream error</html>", content_type="text/html")
        return web.json_response({"code": 0, "msg": "Success", "data": None})  # malformed_json

    # -- endpoint handlers -----------------------------------------------------------------------

    async def _create(self, request: web.Request, body: Any) -> web.Response:
        fields = _require_object(body)
        video_url = _require_str(fields, "video_url")
        audio_url = _require_str(fields, "audio_url")
        playback_type = fields.get("playback_type")
        if playback_type is not None and playback_type not in PLAYBACK_TYPES:
            raise JoggError(
                40000, f"Parameter error: playback_type must be one of {', '.join(PLAYBACK_TYPES)}"
            )
        task = Task(
            task_id=str(uuid.uuid4()),
            video_url=video_url,
            audio_url=audio_url,
            playback_type=playback_type,
            outcome=self.outcome_for_video.get(video_url, self.default_outcome),
            created_at=int(time.time()),
        )
        with self.lock:
            self.tasks[task.task_id] = task
            self.creates.append({"task_id": task.task_id, "body": body, "headers": lower_headers(request)})
        return _envelope(0, data={"task_id": task.task_id, "status": "pending"})

    async def _get(self, request: web.Request, body: Any) -> web.Response:
        if self.get_delay_seconds > 0:
            await asyncio.sleep(self.get_delay_seconds)
        task_id = request.match_info["task_id"]
        with self.lock:
            task = self.tasks.get(task_id)
            if task is None:
                raise JoggError(10104)
            task.polls += 1
            self.polls[task_id] = task.polls
            self.gets_answered += 1
            if task.polls == 1:
                self.tasks_polled += 1
            view = self._task_view(task)
            if view["status"] in ("success", "failed") and task_id not in self.final_reported_at:
                self.final_reported_at[task_id] = time.time()
            return _envelope(0, data=view)

    async def _lookup(self, request: web.Request, body: Any) -> web.Response:
        query = dict(request.query)
        with self.lock:
            self.lookups.append(query)
            wanted = (query.get("video_url"), query.get("audio_url"), query.get("playback_type") or "normal")
            # Latest matching task; an omitted playback_type means the default, "normal".
            for task in reversed(self.tasks.values()):
                if (task.video_url, task.audio_url, task.playback_type or "normal") == wanted:
                    return _envelope(0, data=self._task_view(task))
        raise JoggError(10104)

    async def _upload_asset(self, request: web.Request, body: Any) -> web.Response:
        fields = _require_object(body)
        filename = _require_str(fields, "filename")
        content_type = _require_str(fields, "content_type")
        file_size = fields.get("file_size")
        if file_size is not None and (
            not isinstance(file_size, int) or isinstance(file_size, bool) or file_size < 1
        ):
            raise JoggError(40000, "Parameter error: file_size must be an integer >= 1")
        asset_id = uuid.uuid4().hex
        with self.lock:
            self.assets[asset_id] = {
                "filename": filename,
                "content_type": content_type,
                "file_size": file_size,
            }
        return _envelope(
            0,
            data={
                "sign_url": f"{self.base_url}/upload/{asset_id}",
                "asset_url": f"{self.base_url}/assets/{asset_id}/{quote(filename)}",
            },
        )

    async def _put(self, request: web.Request, body: Any) -> web.Response:
        asset_id = request.match_info["asset_id"]
        with self.lock:
            if "x-api-key" in request.headers:
                self.put_had_api_key = True  # a leak: the key must never go to the storage URL
            asset = self.assets.get(asset_id)
        signed_for = asset["content_type"] if asset is not None else None
        refusal = await refuse_put(request, signed_for, require_length=self.require_content_length)
        if refusal is not None:
            return refusal
        assert asset is not None  # an unknown asset was refused
        digest, size, data = await consume_body(request, keep=self.keep_uploads)
        upload = Upload(
            asset_id=asset_id,
            filename=asset["filename"],
            content_type=asset["content_type"],
            declared_size=asset["file_size"],
            size=size,
            sha256=digest,
            headers=lower_headers(request),
            data=data,
        )
        with self.lock:
            self.uploads.append(upload)
        return web.Response(status=200, headers={"ETag": f'"{digest[:32]}"'})

    async def _serve_asset(self, request: web.Request) -> web.Response:
        """The asset_url: the uploaded bytes, when they were kept (keep_uploads=True)."""
        asset_id = request.match_info["asset_id"]
        with self.lock:
            upload = next((u for u in reversed(self.uploads) if u.asset_id == asset_id), None)
        if upload is None or upload.data is None:
            return storage_error(404, "NoSuchKey", "The specified key does not exist.")
        return web.Response(body=upload.data, content_type=upload.content_type)

    async def _serve_result(self, request: web.Request) -> web.StreamResponse:
        """A result video, like a CDN: Content-Length known, streamed; HEAD answers the headers only."""
        task_id = request.match_info["task_id"]
        with self.lock:
            self.result_downloads.append(task_id)
            known = task_id in self.tasks
        if not known:
            return web.Response(status=404)
        body = self.result_bytes(task_id)
        headers = {"Content-Type": "video/mp4"}
        if self.result_sends_length:
            headers["Content-Length"] = str(len(body))
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        if request.method != "HEAD":
            for start in range(0, len(body), CHUNK_SIZE):
                await response.write(body[start : start + CHUNK_SIZE])
        await response.write_eof()
        return response

    async def _whoami(self, request: web.Request, body: Any) -> web.Response:
        return _envelope(0, data={"email": "tester@example.com", "username": "tester"})

    async def _quota(self, request: web.Request, body: Any) -> web.Response:
        return _envelope(0, data={"remaining_quota": self.remaining_quota})

    # -- task state (called under self.lock) -----------------------------------------------------

    def _status(self, task: Task) -> str:
        outcome = task.outcome
        final = task.forced or (outcome.kind != "never" and task.polls > outcome.polls)
        if final and outcome.kind != "never":
            return outcome.kind
        return "pending" if task.polls <= 1 else "processing"

    def _task_view(self, task: Task) -> dict[str, Any]:
        status = self._status(task)
        view: dict[str, Any] = {"task_id": task.task_id, "status": status, "created_at": task.created_at}
        if status in ("success", "failed"):
            if task.completed_at is None:
                task.completed_at = int(time.time())
            view["completed_at"] = task.completed_at
        if status == "success":
            view["data"] = {
                "result_url": self.result_url(task.task_id),
                "cover_url": task.outcome.cover_url or self.cover_url(task.task_id),
                "duration_seconds": task.outcome.duration_seconds,
            }
        elif status == "failed":
            view["error"] = {"message": task.outcome.error_message}
        return view


# -- module helpers ------------------------------------------------------------------------------


def _envelope(code: int | str, msg: str | None = None, data: Any = None, status: int = 200) -> web.Response:
    known = CODE_MESSAGES.get(code) if isinstance(code, int) else None
    body = {"code": code, "msg": msg or known or "Error", "data": data}
    return web.json_response(body, status=status)


def _require_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise JoggError(40000, "Parameter error: request body must be a JSON object")
    return body


def _require_str(fields: dict[str, Any], name: str) -> str:
    value = fields.get(name)
    if not isinstance(value, str) or not value:
        raise JoggError(40000, f"Parameter error: {name} is required")
    return value
