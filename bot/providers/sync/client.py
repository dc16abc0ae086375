"""sync.so (Sync Labs) lip-sync: the one place that knows sync.so's wire format (the team's provider
notes, shared/docs/providers.md §2).

What it knows:
- `x-api-key` on every API call; answers are plain JSON with real HTTP statuses. Errors carry
  `{"statusCode", "message" (text or a list), "error", "errorCode"?}`.
- `POST /v2/generate` `{"model", "input": [video, audio], "options": {"sync_mode"}, "webhookUrl"?}` answers
  201 with the Generation; each input is `{"type", "url"}` or `{"type", "assetId"}` (an upload, below).
- Idempotency (sync.so guides/idempotency): every create carries `Idempotency-Key` derived from `Order.key`,
  so repeating a create whose answer was lost returns the first generation instead of paying twice
  (Recovery.IDEMPOTENT). The same key with another body is refused (PERMANENT); a request still in progress
  under the key, or anything else that says "try again", is RATE_LIMITED; `IDEMPOTENCY_OUTCOME_UNKNOWN` with
  a `generationId` is that generation, without one it is TRANSIENT and ambiguous (retry with the same key).
- `GET /v2/generate/{id}` → status PENDING | PROCESSING | COMPLETED | FAILED | REJECTED | CANCELED |
  TIMED_OUT, `outputUrl` (newer: `outputMediaUrl`), `outputDuration` (read as exact decimal text), `error`,
  `error_code` (newer: `errorCode`).
- 429 is either the request rate (`errorCode` "rate_limit_exceeded": RATE_LIMITED) or the plan's concurrency
  cap on PENDING/PROCESSING generations (BUSY); only the body tells them apart (guides/rate-limits), and
  its wording for the cap is not documented. So after any 429 to a create, no create is sent for a while
  (`CreateHold`: 5 s, doubling with each 429 in a row up to 2 min, longer if `Retry-After` says so): jobs
  waiting for a place then do not re-POST every few seconds. Set SYNC_MAX_CONCURRENT to avoid the 429s.
- Uploads: `POST /v2/assets/upload` → presigned `uploadUrl` + public `url`; PUT the bytes there (no key);
  `POST /v2/assets` `{url, type}` → `{id}`; the order then names it `asset:<id>`.
- Webhooks (guides/webhooks): the Generation is POSTed to `webhookUrl` when it ends, signed in
  `Sync-Signature: t=<unix>,v1=<hex HMAC-SHA256>` over `"<t>.<JSON payload>"` with the signing secret
  (`whsec_…`, used as is). Accepted: the raw body as received, and the docs' samples' compact
  re-serialization of the payload, both as JSON.stringify writes it (non-ASCII as is) and as Python's
  json.dumps does (non-ASCII escaped as \\uXXXX). An unsigned or badly signed delivery is refused when a
  secret is set. A signed delivery's Generation, read as a GET's answer is, is the result (the poll step
  does not fetch it again); without a secret a delivery is only a hint to poll now.
- Key check: `GET /v2/generations?status=PROCESSING` (a documented filter only; the list is short).
- Cost: billed per output frame; per-second prices at 25 fps (the upper end of each plan range, §2.6),
  overridable (SYNC_PRICES). No documented price for `lipsync-1.9.0-beta` or `react-1`: no cost for them.

Assumed, because the docs at hand do not spell it out: the concurrency 429's wording (an `errorCode` or
message mentioning "concurren…" is the cap), and the idempotency codes other than `INVALID_IDEMPOTENCY_KEY`
and `IDEMPOTENCY_OUTCOME_UNKNOWN` (an `IDEMPOTENCY_*` code saying IN_PROGRESS / IN_USE is "in progress", one
saying MISMATCH / CONFLICT / REUSE / PAYLOAD is "another body").
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any

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
from bot.providers.http import Answer, ApiSession, StorageUploader, is_http_url
from bot.providers.sync.errors import MAX_MESSAGE, advice_for, classify, read_error
from bot.providers.sync.hold import CreateHold
from bot.providers.sync.webhook import delivered_generation, delivery_id, signed

DEFAULT_BASE_URL = "https://api.sync.so"
GENERATE_PATH = "/v2/generate"
LIST_PATH = "/v2/generations"
UPLOAD_REQUEST_PATH = "/v2/assets/upload"
ASSETS_PATH = "/v2/assets"

MODELS = ("lipsync-2", "lipsync-2-pro", "lipsync-1.9.0-beta", "sync-3", "react-1")
# USD per second of output at 25 fps, the upper end of each plan's range (shared/docs/providers.md §2.6).
DEFAULT_PRICES: Mapping[str, Decimal] = MappingProxyType(
    {"lipsync-2": Decimal("0.05"), "lipsync-2-pro": Decimal("0.083"), "sync-3": Decimal("0.133")}
)

ASSET_PREFIX = "asset:"
IDEMPOTENCY_PREFIX = "lipsync-bot-"

RUNNING = frozenset({"PENDING", "PROCESSING"})
FAILED = frozenset({"FAILED", "REJECTED", "CANCELED", "TIMED_OUT"})
ASSET_TYPES = {"video": "VIDEO", "audio": "AUDIO"}


_KEY_CHARS = re.compile(r"[^A-Za-z0-9._~-]")


class SyncProvider(Provider):
    name = "sync"
    label = "sync.so"
    unit = "USD"
    recovery = Recovery.IDEMPOTENT
    # Our playback type → sync_mode. `normal_reverse_by_audio` is deliberately absent: sync.so's `bounce`
    # already plays the video forth and back until the audio ends, so there is nothing honest to map it to.
    playback: Mapping[str, str | None] = MappingProxyType({"normal": "cut_off", "normal_reverse": "bounce"})
    models = MODELS
    hosts_uploads = True
    accepts_webhook = True
    creates_per_minute = 60  # POST /v2/generate per key (guides/rate-limits)

    def __init__(
        self,
        api_key: SecretStr,
        *,
        base_url: str = DEFAULT_BASE_URL,
        model: str = "lipsync-2",
        prices: Mapping[str, Decimal] | None = None,
        max_concurrent: int = 0,
        webhook_secret: SecretStr | None = None,
        timeout_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if model not in MODELS:
            raise ValueError(f"model must be one of {', '.join(MODELS)}, not {model!r}")
        if max_concurrent < 0:
            raise ValueError(f"max_concurrent must be 0 (no cap known) or more, not {max_concurrent}")
        secret = api_key.get_secret_value()
        super().__init__(api_key)
        self.default_model = model
        self.max_concurrent = max_concurrent
        self._prices: Mapping[str, Decimal] = MappingProxyType(
            dict(DEFAULT_PRICES if prices is None else prices)
        )
        self._webhook_key = webhook_secret.get_secret_value().encode() if webhook_secret is not None else None
        self._api = ApiSession(
            label=self.label, base_url=base_url, headers={"x-api-key": secret}, timeout_s=timeout_s
        )
        self._storage = StorageUploader(label=self.label, timeout_s=timeout_s)
        self._hold = CreateHold(clock=clock)

    async def aclose(self) -> None:
        try:
            await self._api.aclose()
        finally:
            await self._storage.aclose()

    # -- generations -------------------------------------------------------------------------------

    async def create(self, order: Order) -> Task:
        body = self._generate_body(order)
        held = self._hold.refusal()
        if held is not None:
            raise held  # sync.so said "too many" moments ago: asking again now would only repeat that
        headers = {"Idempotency-Key": idempotency_key(order.key)}
        answer = await self._api.request("POST", GENERATE_PATH, headers=headers, json=body)
        if not 200 <= answer.status < 300:
            error = read_error(answer)
            if error.generation_id and error.names_ours:
                # "In progress" or "outcome unknown" naming the generation made under this key: it is ours.
                return Task(id=error.generation_id, state=TaskState.RUNNING)
            refusal = classify(answer.status, error, is_post=True)
            if answer.status == 429:
                self._hold.start(refusal, _header(answer.headers, "retry-after"))
            raise refusal
        self._hold.clear()
        return _task(_json(answer, is_post=True), status_default="PENDING")

    async def get(self, task_id: str) -> Task:
        return _task(await self._call("GET", f"{GENERATE_PATH}/{urllib.parse.quote(task_id, safe='')}"))

    def _generate_body(self, order: Order) -> dict[str, Any]:
        if order.playback not in self.playback:
            raise ProviderError(ErrorKind.PERMANENT, f"sync.so has no `{order.playback}` playback")
        body: dict[str, Any] = {
            "model": order.model or self.default_model,
            "input": [_input("video", order.video), _input("audio", order.audio)],
        }
        sync_mode = self.playback[order.playback]
        if sync_mode is not None:
            body["options"] = {"sync_mode": sync_mode}
        if order.webhook_url:
            body["webhookUrl"] = order.webhook_url
        return body

    # -- uploads -----------------------------------------------------------------------------------

    async def upload(self, name: str, content_type: str, size: int, body: AsyncIterator[bytes]) -> str:
        """Ask for a presigned URL, PUT the bytes there (never with the key), then register the asset."""
        asset_type = ASSET_TYPES.get(content_type.split("/", 1)[0].strip().lower())
        if asset_type is None:
            raise ProviderError(
                ErrorKind.PERMANENT, f"sync.so takes video or audio files, not {content_type}"
            )
        request = {"fileName": name, "contentType": content_type, "size": size}
        slot = _object(await self._call("POST", UPLOAD_REQUEST_PATH, json=request), "upload answer")
        upload_url, public_url = slot.get("uploadUrl"), slot.get("url")
        if not (is_http_url(upload_url) and is_http_url(public_url)):
            # The values are not quoted: an uploadUrl is a credential for the storage bucket.
            keys = ", ".join(sorted(slot)) or "none"
            raise ProviderError(ErrorKind.TRANSIENT, f"sync.so sent no usable uploadUrl/url (keys: {keys})")
        await self._storage.put(str(upload_url), content_type, size, body)
        asset = _object(
            await self._call("POST", ASSETS_PATH, json={"url": public_url, "type": asset_type}), "asset"
        )
        asset_id = asset.get("id")
        if not isinstance(asset_id, str | int) or isinstance(asset_id, bool) or not str(asset_id):
            raise ProviderError(ErrorKind.TRANSIENT, "sync.so registered the upload without an asset id")
        return f"{ASSET_PREFIX}{asset_id}"

    # -- cost and advice ---------------------------------------------------------------------------

    def cost(self, task: Task, model: str) -> Cost | None:
        price = self._prices.get(model or self.default_model)
        if price is None or not task.duration_s:
            return None
        try:
            seconds = Decimal(task.duration_s)
        except InvalidOperation:
            return None
        if not seconds.is_finite() or seconds < 0:
            return None
        return Cost(seconds * price, self.unit)

    def quote(
        self, video_s: Decimal | None, audio_s: Decimal | None, playback: str, model: str
    ) -> Cost | None:
        price = self._prices.get(model or self.default_model)
        known = [s for s in (video_s, audio_s) if s is not None]
        if price is None or not known:
            return None
        # cut_off (our `normal`) stops at the shorter input; bounce runs as long as the audio
        # (shared/docs/providers.md §2). With one length unknown, the known one bounds a cut_off from above.
        if self.playback.get(playback) == "cut_off":
            seconds = min(known)
        elif audio_s is not None:
            seconds = audio_s
        else:
            return None
        return Cost(seconds * price, self.unit)

    def cost_rule(self, model: str) -> str:
        chosen = model or self.default_model
        price = self._prices.get(chosen)
        if price is None:
            return f"sync.so {chosen}: no per-second price known (SYNC_PRICES)"
        return f"sync.so {chosen} at ${price} per second of output (SYNC_PRICES)"

    def explain(self, code: str) -> str | None:
        return advice_for(code)

    async def key_check(self) -> KeyCheck:
        """Lists the generations running now: an authenticated read with only a documented query parameter
        (`status`; `limit` is not in every version of the reference), whose list is short (the plan's cap)."""
        try:
            answer = await self._api.request("GET", LIST_PATH, params={"status": "PROCESSING"})
        except ProviderError as exc:
            return unchecked(exc)
        if answer.status == 401:
            return KeyCheck(
                KeyState.REFUSED,
                "sync.so refused SYNC_API_KEY (HTTP 401). Copy it again from sync.so → Settings → API Keys.",
            )
        if 200 <= answer.status < 300:
            return KeyCheck(KeyState.ACCEPTED)
        said = read_error(answer).message
        return KeyCheck(KeyState.UNCLEAR, f"sync.so answered HTTP {answer.status} to the key check: {said}")

    # -- webhooks ----------------------------------------------------------------------------------

    def webhook_task_id(self, headers: Mapping[str, str], body: bytes, now_s: float) -> str | None:
        try:
            if self._webhook_key is not None and not signed(
                self._webhook_key, headers.get("sync-signature", ""), body, now_s
            ):
                return None
            return delivery_id(json.loads(body))
        except (ValueError, TypeError, RecursionError):  # UnicodeDecodeError is a ValueError
            return None

    def webhook_result(self, headers: Mapping[str, str], body: bytes, now_s: float) -> Task | None:
        """The Generation a signed delivery carries, read as a GET's answer is; None without a secret."""
        if self._webhook_key is None:
            return None  # unsigned: anyone could have sent it, so it is only a hint
        try:
            if not signed(self._webhook_key, headers.get("sync-signature", ""), body, now_s):
                return None
            task = _task(delivered_generation(json.loads(body, parse_float=Decimal)))
        except (ValueError, TypeError, RecursionError, ProviderError):
            return None
        return None if task.state is TaskState.RUNNING else task

    # -- HTTP --------------------------------------------------------------------------------------

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One API call: the answer's JSON, or a ProviderError saying what to do about it."""
        is_post = method == "POST"
        answer = await self._api.request(method, path, **kwargs)
        if not 200 <= answer.status < 300:
            raise classify(answer.status, read_error(answer), is_post)
        return _json(answer, is_post)


def _header(headers: Mapping[str, str], wanted: str) -> str | None:
    return next((value for name, value in headers.items() if name.lower() == wanted), None)


def idempotency_key(order_key: str) -> str:
    """`lipsync-bot-<key>`, within sync.so's 1 to 128 chars of [A-Za-z0-9._~-]. When the job id needs cleaning
    or shortening, a digest of the original keeps two different ids from ever sharing a key."""
    clean = _KEY_CHARS.sub("-", order_key)
    key = f"{IDEMPOTENCY_PREFIX}{clean}"
    if clean != order_key or not order_key or len(key) > 128:
        key = f"{IDEMPOTENCY_PREFIX}{clean[:60]}-{hashlib.sha256(order_key.encode()).hexdigest()[:32]}"
    return key


def _input(kind: str, value: str) -> dict[str, str]:
    if value.startswith(ASSET_PREFIX) and len(value) > len(ASSET_PREFIX):
        return {"type": kind, "assetId": value[len(ASSET_PREFIX) :]}
    if is_http_url(value):
        return {"type": kind, "url": value}
    raise ProviderError(ErrorKind.PERMANENT, f"the {kind} is neither a link nor a sync.so upload")


# -- answers -----------------------------------------------------------------------------------------


def _json(answer: Answer, is_post: bool) -> Any:
    try:
        # Decimal keeps outputDuration exactly as written on the wire.
        return json.loads(answer.body, parse_float=Decimal)
    except (ValueError, RecursionError) as exc:
        raise ProviderError(
            ErrorKind.TRANSIENT, "sync.so sent a malformed answer", ambiguous=is_post
        ) from exc


def _object(data: Any, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ProviderError(ErrorKind.TRANSIENT, f"sync.so sent an unexpected {what}")
    return data


def _task(data: Any, status_default: str = "") -> Task:
    fields = _object(data, "generation")
    task_id = fields.get("id")
    status = str(fields.get("status") or status_default).upper()
    if not isinstance(task_id, str) or not task_id:
        raise ProviderError(ErrorKind.TRANSIENT, "sync.so sent a generation without an id")
    created_at = _unix(fields.get("createdAt"))
    if status in RUNNING:
        return Task(task_id, TaskState.RUNNING, created_at=created_at)
    if status in FAILED:
        code = str(fields.get("error_code") or fields.get("errorCode") or "")[:100]
        error = str(fields.get("error") or status.lower().replace("_", " "))[:MAX_MESSAGE]
        return Task(task_id, TaskState.FAILED, created_at=created_at, error=error, error_code=code)
    if status == "COMPLETED":
        url = next(
            (u for u in (fields.get("outputUrl"), fields.get("outputMediaUrl")) if is_http_url(u)), None
        )
        if url is None:
            raise ProviderError(ErrorKind.TRANSIENT, "sync.so reported COMPLETED without an output URL")
        duration = _decimal_text(fields.get("outputDuration"))
        return Task(
            task_id, TaskState.SUCCEEDED, created_at=created_at, result_url=str(url), duration_s=duration
        )
    raise ProviderError(ErrorKind.TRANSIENT, f"sync.so sent an unknown status {status[:40]!r}")


def _decimal_text(value: object) -> str:
    """A non-negative number from the wire as exact decimal text; "" when it is not one."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
        return ""
    try:
        number = Decimal(value)
    except InvalidOperation:
        return ""
    return f"{number:f}" if number.is_finite() and number >= 0 else ""


def _unix(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
