"""A fake sync.so API (generations, idempotency, assets, webhooks) over real HTTP.

Follows the team's provider notes (shared/docs/providers.md §2) and sync.so's guides: `x-api-key` on every API
call; errors are NestJS-style JSON `{"statusCode", "message", "error", "errorCode"?}` with real HTTP statuses.
The presigned upload URL behaves like a storage bucket (no API key, Content-Type must match, Content-Length
required, XML errors).

Wording the docs do not give is this fake's own assumption, kept in one place (the *_BODY constants):
the concurrency 429 and the idempotency errors' codes. `concurrency_body` can be set to a 429 that does
not say "concurrency" (the docs do not promise it will). `GET /v2/generations` takes only the query
parameter the API reference documents (`status`); any other is refused 400, as sync.so's validation does.
Webhook signatures are over the raw body, or (`webhook_signs = "python"`) over the payload as the docs'
Python sample serializes it: compact, with non-ASCII escaped as \\uXXXX, while the body is sent as is.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import quote

import aiohttp
from aiohttp import web

from .server import (
    Handler,
    ProviderFake,
    SlidingWindow,
    consume_body,
    html_error_page,
    lower_headers,
    refuse_put,
    storage_error,
)
from .server import RecordedRequest as RecordedRequest  # re-exported: tests type their records with it

MODELS = ("lipsync-2", "lipsync-2-pro", "lipsync-1.9.0-beta", "sync-3", "react-1")
SYNC_MODES = ("bounce", "loop", "cut_off", "silence", "remap")
ASSET_TYPES = ("VIDEO", "AUDIO", "IMAGE")
OUTPUT_BASE = "https://cdn.sync.so/generations"
IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9._~-]{1,128}")
LIST_QUERY = ("status",)  # what the API reference documents for GET /v2/generations
LIST_STATUSES = ("PENDING", "PROCESSING", "COMPLETED", "FAILED", "REJECTED")

# The documented rate-limit body (guides/rate-limits).
RATE_LIMIT_BODY = {
    "statusCode": 429,
    "errorCode": "rate_limit_exceeded",
    "message": "Rate limit exceeded. Please try again later.",
    "error": "Too Many Requests",
}
# Assumed wording: the docs say only that exceeding the plan's concurrency also answers 429.
CONCURRENCY_BODY = {
    "statusCode": 429,
    "errorCode": "concurrency_limit_exceeded",
    "message": "Concurrency limit reached: wait for a PENDING or PROCESSING generation to finish.",
    "error": "Too Many Requests",
}
# Assumed codes beyond the documented INVALID_IDEMPOTENCY_KEY and IDEMPOTENCY_OUTCOME_UNKNOWN.
IN_PROGRESS_BODY = {
    "statusCode": 409,
    "errorCode": "IDEMPOTENCY_REQUEST_IN_PROGRESS",
    "message": "A request with this Idempotency-Key is still in progress. Retry with the same key and body.",
    "error": "Conflict",
}
MISMATCH_BODY = {
    "statusCode": 409,
    "errorCode": "IDEMPOTENCY_KEY_PAYLOAD_MISMATCH",
    "message": "This Idempotency-Key was already used with a different request body.",
    "error": "Conflict",
}

Endpoint = Literal["generate", "get", "list", "upload_request", "put", "asset"]
FailedStatus = Literal["FAILED", "REJECTED", "CANCELED", "TIMED_OUT"]


@dataclass(frozen=True)
class Outcome:
    """How a generation ends.

    By polls: the GETs answer PENDING, PROCESSING (`polls` non-final answers in all), then the final status.
    By time: with `ready_after` seconds it ends that long after creation, polled or not (a background timer
    finishes it, so its webhook fires even if nobody polls). "never" stays PROCESSING for ever.
    """

    kind: Literal["success", "failed", "never"] = "success"
    polls: int = 2
    duration: float | Decimal | None = 12.5  # outputDuration; a Decimal is written exactly as given
    error: str = "An error occurred in the generation pipeline."
    error_code: str = "generation_pipeline_failed"
    failed_status: FailedStatus = "FAILED"  # FAILED, REJECTED, CANCELED or TIMED_OUT
    ready_after: float | None = None
    output_fields: tuple[str, ...] = ("outputUrl", "outputMediaUrl")  # newer API: both, outputUrl deprecated


@dataclass(frozen=True)
class Fault:
    """One injected failure for the next request to an endpoint (see `FakeSync.inject`).

    kind:
      "http"            -> HTTP `status` with a sync-style JSON error body (`code` → errorCode, `message`).
                           For "put": an S3-style XML error.
      "html"            -> HTTP `status` with an HTML page, as a proxy in front of the API would answer.
      "malformed"       -> HTTP 200 (201 for POSTs) `<html>upstream error</html>` (not JSON).
      "delay"           -> sleep `delay` seconds, then answer normally (nothing is done if the client left).
      "late"            -> the request is admitted (a create claims its Idempotency-Key), then sleeps `delay`
                           seconds and does the work and answers even if the client gave up: "sync.so made it
                           late, nobody heard". `late_in_flight` counts the ones still sleeping.
      "outcome_unknown" -> (generate) HTTP 500 `IDEMPOTENCY_OUTCOME_UNKNOWN`; with after=True the generation
                           is made and the body carries its `generationId`.
    after: do the real work first, then fail the answer: "sync.so did it, the client never heard".
    """

    kind: Literal["http", "html", "malformed", "delay", "late", "outcome_unknown"]
    status: int = 500
    code: str = ""
    message: str = ""
    delay: float = 0.0
    after: bool = False
    retry_after: str = ""  # "http": a Retry-After header, sent as written


@dataclass
class Generation:
    id: str
    model: str
    input: list[dict[str, Any]]
    options: dict[str, Any]
    webhook_url: str | None
    outcome: Outcome
    created_at: float  # time.time()
    idempotency_key: str | None
    polls: int = 0
    status: str = "PENDING"
    completed_at: float | None = None
    webhook_scheduled: bool = False


@dataclass(frozen=True)
class Upload:
    """A PUT to an uploadUrl. `data` is kept only with keep_uploads=True."""

    upload_id: str
    file_name: str
    content_type: str
    declared_size: int
    size: int
    sha256: str
    url: str  # the public url this upload is served at (what POST /v2/assets takes)
    headers: dict[str, str]
    data: bytes | None = None


@dataclass(frozen=True)
class WebhookDelivery:
    generation_id: str
    url: str
    body: bytes
    headers: dict[str, str]
    status: int | None  # the receiver's answer; None when it could not be reached
    at: float  # time.time() when it was sent


@dataclass
class _Claim:
    """An Idempotency-Key: the body it was first sent with, and the generation once made."""

    body_hash: str
    generation_id: str | None = None


class SyncApiError(Exception):
    """Raised by a handler to answer with a sync-style JSON error."""

    def __init__(self, status: int, message: str | list[str], code: str = "", **extra: Any) -> None:
        super().__init__(str(message))
        self.status = status
        self.body: dict[str, Any] = {"statusCode": status, "message": message, "error": _reason(status)}
        if code:
            self.body["errorCode"] = code
        self.body.update(extra)


# A concurrency 429 that says nothing about concurrency: the wording the bot must not depend on.
UNEXPLAINED_429_BODY = {"statusCode": 429, "message": "Too Many Requests", "error": "Too Many Requests"}


def sign_webhook(secret: str, body: bytes, timestamp: int) -> str:
    """The `Sync-Signature` value: `t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">` with the secret as is."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class FakeSync(ProviderFake[Endpoint, Fault]):
    def __init__(
        self, api_key: str = "sync-test-key", webhook_secret: str | None = None, keep_uploads: bool = False
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self.keep_uploads = keep_uploads
        # Configuration.
        self.default_outcome = Outcome()
        self.outcome_for_video: dict[str, Outcome] = {}  # keyed by the video's url or assetId
        self.creates_per_minute: int | None = None  # sliding 60 s window over POST /v2/generate
        self.max_concurrent: int | None = None  # generations in PENDING/PROCESSING at once
        self.webhooks_enabled = True  # False: deliveries are lost (nothing is sent)
        self.webhook_signs: Literal["raw", "python"] = "raw"  # what the signature is over (module doc)
        self.concurrency_body: dict[str, Any] = CONCURRENCY_BODY  # the 429 past max_concurrent
        self.clock: Callable[[], float] = time.monotonic  # for the rate-limit window
        self._webhook_session: aiohttp.ClientSession | None = None
        self._init_state()

    def _init_state(self) -> None:
        super()._init_state()
        self.generations: dict[str, Generation] = {}
        self.uploads: list[Upload] = []
        self.assets: dict[str, dict[str, Any]] = {}  # asset id → {"url", "type", "sha256", "size"}
        self.webhooks_sent: list[WebhookDelivery] = []
        self.replays = 0  # creates answered with an existing generation (same key, same body)
        self.put_had_api_key = False
        self._claims: dict[str, _Claim] = {}
        self._slots: dict[str, dict[str, Any]] = {}  # upload id → the POST /v2/assets/upload request
        self._files: dict[str, Upload] = {}  # public url → the upload that filled it
        self._create_window = SlidingWindow()  # over POST /v2/generate

    # -- test-facing helpers -------------------------------------------------------------------

    @property
    def generation_count(self) -> int:
        with self.lock:
            return len(self.generations)

    def generation(self, generation_id: str) -> Generation:
        with self.lock:
            return self.generations[generation_id]

    def complete(self, generation_id: str) -> None:
        """Finish a generation now, as its outcome says ("never" becomes a success)."""
        with self.lock:
            self._finish(self.generations[generation_id])
        self._schedule_webhook_threadsafe(generation_id)

    def output_url(self, generation_id: str) -> str:
        return f"{OUTPUT_BASE}/{generation_id}/output.mp4?X-Amz-Signature=fake"

    # -- routes --------------------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        app.middlewares.append(self.record_middleware)
        app.router.add_post("/v2/generate", self._endpoint("generate", self._create))
        app.router.add_get("/v2/generate/{generation_id}", self._endpoint("get", self._get))
        app.router.add_get("/v2/generations", self._endpoint("list", self._list))
        app.router.add_post("/v2/assets/upload", self._endpoint("upload_request", self._upload_request))
        app.router.add_post("/v2/assets", self._endpoint("asset", self._create_asset))
        app.router.add_put("/storage/{upload_id}", self._endpoint("put", self._put, needs_key=False))
        app.router.add_get("/files/{upload_id}/{name}", self._serve_file)

    async def on_shutdown(self, app: web.Application) -> None:
        if self._webhook_session is not None:
            await self._webhook_session.close()

    def _refusal(self, request: web.Request, needs_key: bool) -> web.Response | None:
        if needs_key and request.headers.get("x-api-key") != self.api_key:
            return _error(401, "Invalid API key", "")
        return None

    async def _run(self, name: Endpoint, handler: Handler, request: web.Request, body: Any) -> web.Response:
        if name == "generate" and not self._create_window.admit(self.creates_per_minute, self.clock()):
            return web.json_response(RATE_LIMIT_BODY, status=429)
        try:
            return await handler(request, body)
        except SyncApiError as exc:
            return web.json_response(exc.body, status=exc.status)

    async def _run_late(
        self, name: Endpoint, delay: float, handler: Handler, request: web.Request, body: Any
    ) -> web.Response:
        if name == "generate":
            handler = functools.partial(self._create, pause_s=delay)  # claims its key, then pauses
            return await self._run(name, handler, request, body)
        return await super()._run_late(name, delay, handler, request, body)

    def _fault_response(
        self, name: Endpoint, fault: Fault, request: web.Request, made: web.Response | None
    ) -> web.Response:
        if fault.kind == "outcome_unknown":
            extra: dict[str, Any] = {}
            if made is not None and made.status == 201:
                extra["generationId"] = json.loads(made.text or "{}").get("id")
            message = "The outcome of the original request is unknown. Poll generationId if present."
            return _error(500, message, "IDEMPOTENCY_OUTCOME_UNKNOWN", **extra)
        if fault.kind == "http":
            if name == "put":
                return storage_error(
                    fault.status, "InternalError", "We encountered an internal error. Please try again."
                )
            answer = _error(fault.status, fault.message or _reason(fault.status), fault.code)
            if fault.retry_after:
                answer.headers["Retry-After"] = fault.retry_after
            return answer
        if fault.kind == "html":
            return html_error_page(fault.status)
        # malformed
        status = 201 if request.method == "POST" else 200
        return web.Response(status=status, text="<html>upstream error</html>", content_type="text/html")

    # -- generations -----------------------------------------------------------------------------

    async def _create(self, request: web.Request, body: Any, pause_s: float = 0.0) -> web.Response:
        fields = _require_object(body)
        model, inputs, options, webhook_url = self._validate_create(fields)
        key = request.headers.get("Idempotency-Key")
        if key is not None and (
            len(request.headers.getall("Idempotency-Key")) != 1 or not IDEMPOTENCY_KEY.fullmatch(key)
        ):
            raise SyncApiError(
                400, "Idempotency-Key must be 1-128 of [A-Za-z0-9._~-]", "INVALID_IDEMPOTENCY_KEY"
            )
        body_hash = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
        video = inputs[0].get("url") or inputs[0].get("assetId")
        with self.lock:
            claim = self._claims.get(key) if key is not None else None
            if claim is not None:
                if claim.body_hash != body_hash:
                    return web.json_response(MISMATCH_BODY, status=409)
                if claim.generation_id is None:
                    return web.json_response(IN_PROGRESS_BODY, status=409)
                self.replays += 1
                view = self._view(self.generations[claim.generation_id])
                return _json_response(view, status=201, headers={"Idempotent-Replayed": "true"})
            if self.max_concurrent is not None and self._running() >= self.max_concurrent:
                return web.json_response(self.concurrency_body, status=429)
            if key is not None:
                claim = self._claims[key] = _Claim(body_hash)
        try:
            await asyncio.sleep(pause_s)  # a "late" create: admitted, its key claimed, then slow
        except BaseException:
            self._release(key, claim)
            raise
        generation = Generation(
            id=str(uuid.uuid4()),
            model=model,
            input=inputs,
            options=options,
            webhook_url=webhook_url,
            outcome=self.outcome_for_video.get(str(video), self.default_outcome),
            created_at=time.time(),
            idempotency_key=key,
        )
        with self.lock:
            self.generations[generation.id] = generation
            if claim is not None:
                claim.generation_id = generation.id
            view = self._view(generation)
        if generation.outcome.kind != "never" and generation.outcome.ready_after is not None:
            asyncio.get_running_loop().call_later(
                generation.outcome.ready_after, self._finish_by_timer, generation.id
            )
        return _json_response(view, status=201)

    def _release(self, key: str | None, claim: _Claim | None) -> None:
        with self.lock:
            if key is not None and claim is not None and self._claims.get(key) is claim:
                del self._claims[key]

    def _validate_create(
        self, fields: dict[str, Any]
    ) -> tuple[str, list[dict[str, Any]], dict[str, Any], str | None]:
        problems: list[str] = []
        model = fields.get("model")
        if model not in MODELS:
            problems.append(f"model must be one of the following values: {', '.join(MODELS)}")
        raw_inputs = fields.get("input")
        inputs: list[dict[str, Any]] = []
        if not isinstance(raw_inputs, list) or len(raw_inputs) != 2:
            problems.append("input must contain exactly one video and one audio item")
        else:
            by_type = {item.get("type"): item for item in raw_inputs if isinstance(item, dict)}
            for kind in ("video", "audio"):
                item = by_type.get(kind)
                if item is None:
                    problems.append(f"input must contain a {kind} item")
                    continue
                problem = self._input_problem(kind, item)
                if problem:
                    problems.append(problem)
                inputs.append(item)
        options = fields.get("options", {})
        if not isinstance(options, dict):
            problems.append("options must be an object")
            options = {}
        elif "sync_mode" in options and options["sync_mode"] not in SYNC_MODES:
            problems.append(f"options.sync_mode must be one of the following values: {', '.join(SYNC_MODES)}")
        webhook_url = fields.get("webhookUrl")
        if webhook_url is not None and not isinstance(webhook_url, str):
            problems.append("webhookUrl must be a string")
        if problems:
            raise SyncApiError(400, problems)
        return str(model), inputs, options, webhook_url

    def _input_problem(self, kind: str, item: dict[str, Any]) -> str:
        url, asset_id = item.get("url"), item.get("assetId")
        if isinstance(url, str) and url.startswith(("http://", "https://")):
            return ""
        if isinstance(asset_id, str):
            with self.lock:
                asset = self.assets.get(asset_id)
            if asset is None:
                return f"{kind} assetId {asset_id} was not found"
            if asset["type"] != kind.upper():
                return f"{kind} assetId {asset_id} is an {asset['type']} asset"
            return ""
        return f"{kind} input needs a url or an assetId"

    async def _get(self, request: web.Request, body: Any) -> web.Response:
        generation_id = request.match_info["generation_id"]
        with self.lock:
            generation = self.generations.get(generation_id)
            if generation is None:
                raise SyncApiError(404, f"Generation {generation_id} not found")
            generation.polls += 1
            was_final = generation.completed_at is not None
            self._advance(generation)
            view = self._view(generation)
            now_final = not was_final and generation.completed_at is not None
        if now_final:
            self._schedule_webhook(generation_id)
        return _json_response(view)

    async def _list(self, request: web.Request, body: Any) -> web.Response:
        unknown = [name for name in request.query if name not in LIST_QUERY]
        if unknown:
            raise SyncApiError(400, [f"property {name} should not exist" for name in unknown])
        wanted = [part for part in request.query.get("status", "").split(",") if part]
        if any(status not in LIST_STATUSES for status in wanted):
            raise SyncApiError(
                400, [f"status must be one of the following values: {', '.join(LIST_STATUSES)}"]
            )
        with self.lock:
            views = [
                self._view(g) for g in reversed(self.generations.values()) if not wanted or g.status in wanted
            ]
        return _json_response(views)

    # -- generation state (called under self.lock) -----------------------------------------------

    def _advance(self, generation: Generation) -> None:
        """Move a polled generation along its outcome (the GET just counted)."""
        if generation.completed_at is not None:
            return
        outcome = generation.outcome
        if outcome.kind == "never":
            generation.status = "PENDING" if generation.polls <= 1 else "PROCESSING"
            return
        if outcome.ready_after is not None:
            if time.time() - generation.created_at >= outcome.ready_after:
                self._finish(generation)
            else:
                generation.status = "PENDING" if generation.polls <= 1 else "PROCESSING"
            return
        if generation.polls > outcome.polls:
            self._finish(generation)
        else:
            generation.status = "PENDING" if generation.polls <= 1 else "PROCESSING"

    def _finish(self, generation: Generation) -> None:
        if generation.completed_at is not None:
            return
        failed = generation.outcome.kind == "failed"
        generation.status = generation.outcome.failed_status if failed else "COMPLETED"
        generation.completed_at = time.time()

    def _running(self) -> int:
        return sum(1 for g in self.generations.values() if g.completed_at is None)

    def _view(self, generation: Generation) -> dict[str, Any]:
        view: dict[str, Any] = {
            "id": generation.id,
            "createdAt": _iso(generation.created_at),
            "status": generation.status,
            "model": generation.model,
            "input": generation.input,
            "options": generation.options,
            "webhookUrl": generation.webhook_url,
        }
        if generation.status == "COMPLETED":
            for name in generation.outcome.output_fields:
                view[name] = self.output_url(generation.id)
            if generation.outcome.duration is not None:
                view["outputDuration"] = generation.outcome.duration
        elif generation.completed_at is not None:
            view["error"] = generation.outcome.error
            view["error_code"] = generation.outcome.error_code
        return view

    # -- webhooks --------------------------------------------------------------------------------

    def _finish_by_timer(self, generation_id: str) -> None:
        with self.lock:
            generation = self.generations.get(generation_id)
            if generation is None or generation.completed_at is not None:
                return
            self._finish(generation)
        self._schedule_webhook(generation_id)

    def _schedule_webhook_threadsafe(self, generation_id: str) -> None:
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._schedule_webhook, generation_id)

    def _schedule_webhook(self, generation_id: str) -> None:
        """On the server loop: deliver a finished generation once, in the background."""
        with self.lock:
            generation = self.generations[generation_id]
            if generation.webhook_scheduled or not generation.webhook_url or not self.webhooks_enabled:
                return
            generation.webhook_scheduled = True
            url, body = generation.webhook_url, _dumps(self._view(generation)).encode()
        asyncio.get_running_loop().create_task(self._deliver(generation_id, url, body))

    async def _deliver(self, generation_id: str, url: str, body: bytes) -> None:
        headers = {"Content-Type": "application/json"}
        if self.webhook_secret is not None:
            signed = body
            if self.webhook_signs == "python":
                signed = json.dumps(json.loads(body), separators=(",", ":")).encode()  # ensure_ascii
            headers["Sync-Signature"] = sign_webhook(self.webhook_secret, signed, int(time.time()))
        if self._webhook_session is None:
            self._webhook_session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        status: int | None = None
        sent_at = time.time()
        try:
            async with self._webhook_session.post(url, data=body, headers=headers) as response:
                status = response.status
        except (aiohttp.ClientError, TimeoutError):
            status = None
        with self.lock:
            self.webhooks_sent.append(WebhookDelivery(generation_id, url, body, headers, status, sent_at))

    # -- assets ----------------------------------------------------------------------------------

    async def _upload_request(self, request: web.Request, body: Any) -> web.Response:
        fields = _require_object(body)
        file_name, content_type, size = fields.get("fileName"), fields.get("contentType"), fields.get("size")
        problems = []
        if not isinstance(file_name, str) or not file_name:
            problems.append("fileName should not be empty")
        if not isinstance(content_type, str) or "/" not in content_type:
            problems.append("contentType must be a MIME type")
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            problems.append("size must be a positive integer")
        if problems:
            raise SyncApiError(400, problems)
        upload_id, signature = uuid.uuid4().hex, secrets.token_hex(16)
        public_url = f"{self.base_url}/files/{upload_id}/{quote(str(file_name))}"
        with self.lock:
            self._slots[upload_id] = {
                "file_name": file_name,
                "content_type": content_type,
                "size": size,
                "signature": signature,
                "url": public_url,
            }
        answer = {
            "uploadUrl": f"{self.base_url}/storage/{upload_id}?X-Amz-Signature={signature}",
            "url": public_url,
            "expiresIn": 3600,
        }
        return _json_response(answer, status=201)

    async def _put(self, request: web.Request, body: Any) -> web.Response:
        upload_id = request.match_info["upload_id"]
        with self.lock:
            if "x-api-key" in request.headers:
                self.put_had_api_key = True  # a leak: the key must never go to the storage URL
            slot = self._slots.get(upload_id)
        signed_for = None  # the content type the URL was signed for, if it is a good URL
        if slot is not None and request.query.get("X-Amz-Signature") == slot["signature"]:
            signed_for = slot["content_type"]
        refusal = await refuse_put(request, signed_for, require_length=True)
        if refusal is not None:
            return refusal
        assert slot is not None  # an unknown or badly signed URL was refused
        digest, size, data = await consume_body(request, keep=self.keep_uploads)
        upload = Upload(
            upload_id=upload_id,
            file_name=slot["file_name"],
            content_type=slot["content_type"],
            declared_size=slot["size"],
            size=size,
            sha256=digest,
            url=slot["url"],
            headers=lower_headers(request),
            data=data,
        )
        with self.lock:
            self.uploads.append(upload)
            self._files[upload.url] = upload
        return web.Response(status=200, headers={"ETag": f'"{digest[:32]}"'})

    async def _create_asset(self, request: web.Request, body: Any) -> web.Response:
        fields = _require_object(body)
        url, asset_type = fields.get("url"), fields.get("type")
        if asset_type not in ASSET_TYPES:
            raise SyncApiError(400, [f"type must be one of the following values: {', '.join(ASSET_TYPES)}"])
        with self.lock:
            upload = self._files.get(url) if isinstance(url, str) else None
        if upload is None:
            raise SyncApiError(400, "No uploaded file was found at this url. Upload it first.")
        if upload.content_type.split("/", 1)[0].upper() != asset_type:
            raise SyncApiError(400, f"The uploaded file is {upload.content_type}, not {asset_type}.")
        asset_id = str(uuid.uuid4())
        asset = {"url": upload.url, "type": asset_type, "sha256": upload.sha256, "size": upload.size}
        with self.lock:
            self.assets[asset_id] = asset
        now = _iso(time.time())
        answer = {"id": asset_id, "url": upload.url, "type": asset_type, "createdAt": now, "updatedAt": now}
        return _json_response(answer, status=201)

    async def _serve_file(self, request: web.Request) -> web.Response:
        """The public `url` of an upload: its bytes, when they were kept (keep_uploads=True)."""
        with self.lock:
            upload = next((u for u in self.uploads if u.upload_id == request.match_info["upload_id"]), None)
        if upload is None or upload.data is None:
            return storage_error(404, "NoSuchKey", "The specified key does not exist.")
        return web.Response(body=upload.data, content_type=upload.content_type)


# -- module helpers ------------------------------------------------------------------------------


def _reason(status: int) -> str:
    return web.Response(status=status).reason or "Error"


def _error(status: int, message: str, code: str, **extra: Any) -> web.Response:
    return web.json_response(SyncApiError(status, message, code, **extra).body, status=status)


def _iso(unix_s: float) -> str:
    return datetime.fromtimestamp(unix_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _dumps(value: Any) -> str:
    """Compact JSON like JSON.stringify (what sync.so sends and signs); a Decimal is written exactly."""
    exact: dict[str, str] = {}

    def default(obj: object) -> str:
        if isinstance(obj, Decimal):
            token = f"@@decimal{len(exact)}@@"
            exact[token] = format(obj, "f")
            return token
        raise TypeError(f"not JSON serializable: {type(obj).__name__}")

    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=default)
    for token, number in exact.items():
        text = text.replace(f'"{token}"', number)
    return text


def _json_response(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=_dumps(value), content_type="application/json", headers=headers)


def _require_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise SyncApiError(400, "Request body must be a JSON object")
    return body
