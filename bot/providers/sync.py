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
import hmac
import json
import math
import re
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
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
MAX_MESSAGE = 300
SIGNATURE_TOLERANCE_S = 300
# After a 429 to a create: no create for HOLD_BASE_S, doubling with each 429 in a row, up to HOLD_CAP_S
# (or what Retry-After asks, up to RETRY_AFTER_CAP_S).
HOLD_BASE_S = 5.0
HOLD_CAP_S = 120.0
RETRY_AFTER_CAP_S = 600.0

RUNNING = frozenset({"PENDING", "PROCESSING"})
FAILED = frozenset({"FAILED", "REJECTED", "CANCELED", "TIMED_OUT"})
ASSET_TYPES = {"video": "VIDEO", "audio": "AUDIO"}

_KEY_ADVICE = "sync.so refused the bot's API key. An admin needs to check `SYNC_API_KEY`."
_BILLING_ADVICE = (
    "The sync.so account cannot start another generation (billing or plan: no credit or free generations "
    "left, an unpaid invoice, or a plan limit). An admin needs to top it up or change the plan on sync.so's "
    "Billing page."
)
_FORBIDDEN_ADVICE = "sync.so refused this for the account. An admin needs to check the sync.so plan and key."
_CONFLICT_ADVICE = (
    "sync.so refused a retry of this job because the request changed between attempts. Start it again "
    "with a new `/lipsync`."
)
ADVICE: Mapping[str, str] = MappingProxyType(
    {
        "http_401": _KEY_ADVICE,
        "unauthorized": _KEY_ADVICE,
        "invalid_api_key": _KEY_ADVICE,
        "http_402": _BILLING_ADVICE,
        "payment_required": _BILLING_ADVICE,
        "insufficient_credits": _BILLING_ADVICE,
        "http_403": _FORBIDDEN_ADVICE,
        "rate_limit_exceeded": "sync.so is rate limiting this account; the bot tries again in a moment.",
        "generation_unsupported_model": "sync.so does not support this model here. Try another `model=`.",
        "generation_media_metadata_missing": (
            "sync.so could not read the media's duration or frame rate. Re-export the files (e.g. MP4 + "
            "WAV/MP3) and try again."
        ),
        "generation_audio_length_exceeded": "The audio is too long for sync.so (at most 5 minutes).",
        "generation_audio_missing": "sync.so found no usable audio in the request.",
        "generation_video_missing": "sync.so found no usable video in the request.",
        "generation_input_video_inaccessible": (
            "sync.so could not download the video. Check that the link is public and points at the file."
        ),
        "generation_timeout": "sync.so ran out of time under high load. Try again in a while.",
        "generation_pipeline_failed": "sync.so's processing failed. Check the inputs, then try again.",
        "generation_unhandled_error": "sync.so failed unexpectedly. Try again; if it recurs, tell an admin.",
    }
)

_KEY_CHARS = re.compile(r"[^A-Za-z0-9._~-]")
_TASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_TRY_AGAIN = ("try again", "retry", "later")


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
        self._api = ApiSession(self.label, base_url, {"x-api-key": secret}, timeout_s)
        self._storage = StorageUploader(self.label, timeout_s)
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
            error = _read_error(answer)
            if error.generation_id and error.names_ours:
                # "In progress" or "outcome unknown" naming the generation made under this key: it is ours.
                return Task(id=error.generation_id, state=TaskState.RUNNING)
            refusal = _classify(answer.status, error, is_post=True)
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
        advice = ADVICE.get(code)
        if advice is not None:
            return advice
        upper = code.upper()
        if "CONCURREN" in upper:
            return "The sync.so plan's concurrency limit is reached; the job waits for a running generation."
        if "IDEMPOTENCY" in upper and _is_conflict(upper):
            return _CONFLICT_ADVICE
        return None

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
        said = _read_error(answer).message
        return KeyCheck(KeyState.UNCLEAR, f"sync.so answered HTTP {answer.status} to the key check: {said}")

    # -- webhooks ----------------------------------------------------------------------------------

    def webhook_task_id(self, headers: Mapping[str, str], body: bytes, now_s: float) -> str | None:
        try:
            if self._webhook_key is not None and not _signed(
                self._webhook_key, headers.get("sync-signature", ""), body, now_s
            ):
                return None
            return _delivery_id(json.loads(body))
        except (ValueError, TypeError, RecursionError):  # UnicodeDecodeError is a ValueError
            return None

    def webhook_result(self, headers: Mapping[str, str], body: bytes, now_s: float) -> Task | None:
        """The Generation a signed delivery carries, read as a GET's answer is; None without a secret."""
        if self._webhook_key is None:
            return None  # unsigned: anyone could have sent it, so it is only a hint
        try:
            if not _signed(self._webhook_key, headers.get("sync-signature", ""), body, now_s):
                return None
            task = _task(_delivered_generation(json.loads(body, parse_float=Decimal)))
        except (ValueError, TypeError, RecursionError, ProviderError):
            return None
        return None if task.state is TaskState.RUNNING else task

    # -- HTTP --------------------------------------------------------------------------------------

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One API call: the answer's JSON, or a ProviderError saying what to do about it."""
        is_post = method == "POST"
        answer = await self._api.request(method, path, **kwargs)
        if not 200 <= answer.status < 300:
            raise _classify(answer.status, _read_error(answer), is_post)
        return _json(answer, is_post)


class CreateHold:
    """Creates held back after sync.so answered one with 429, for this process: HOLD_BASE_S, doubling with
    each 429 in a row up to HOLD_CAP_S (longer when Retry-After asks, up to RETRY_AFTER_CAP_S); a create
    that gets through ends it. While held, a create is refused here with the 429's own kind and words."""

    def __init__(self, *, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._until = 0.0
        self._in_a_row = 0
        self._last: ProviderError | None = None

    def refusal(self) -> ProviderError | None:
        left = self._until - self._clock()
        if self._last is None or left <= 0:
            return None
        last = self._last
        message = f"{last.message} (sync.so is asked again in {math.ceil(left)} s)"
        return ProviderError(last.kind, message, code=last.code, retry_after_s=left)

    def start(self, refusal: ProviderError, retry_after: str | None) -> None:
        self._in_a_row += 1
        hold = min(HOLD_CAP_S, HOLD_BASE_S * 2 ** (self._in_a_row - 1))
        asked = _seconds(retry_after)
        if asked is not None:
            hold = max(hold, min(asked, RETRY_AFTER_CAP_S))
        self._until = self._clock() + hold
        self._last = refusal
        refusal.retry_after_s = hold

    def clear(self) -> None:
        self._in_a_row, self._until, self._last = 0, 0.0, None


def _header(headers: Mapping[str, str], wanted: str) -> str | None:
    return next((value for name, value in headers.items() if name.lower() == wanted), None)


def _seconds(value: str | None) -> float | None:
    """Retry-After as seconds (the delta form; an HTTP date is not worth the trouble here)."""
    digits = (value or "").strip()
    # ASCII digits only: float() takes other scripts' digits and refuses "²", which isdigit() lets by.
    if not (digits.isascii() and digits.isdigit()):
        return None
    return float(digits)


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


# -- errors ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Error:
    code: str  # sync.so's error code, "" when the body has none
    message: str
    generation_id: str  # an idempotency answer may name the generation made under the key

    @property
    def is_idempotency(self) -> bool:
        return "IDEMPOTENCY" in self.code.upper()

    @property
    def names_ours(self) -> bool:
        """An idempotency answer about this very request (not a refusal of another body or a bad key)."""
        upper = self.code.upper()
        return self.is_idempotency and "INVALID" not in upper and not _is_conflict(upper)


def _read_error(answer: Answer) -> _Error:
    try:
        data = json.loads(answer.body)
    except (ValueError, RecursionError):
        data = None
    fields = data if isinstance(data, dict) else {}
    inner = fields.get("error")
    nested: dict[str, Any] = inner if isinstance(inner, dict) else {}
    code = next(
        (v for v in _values(fields, nested, "errorCode", "code", "error_code") if isinstance(v, str)), ""
    )
    message = next((_text(v) for v in _values(fields, nested, "message") if _text(v)), "")
    if not message and isinstance(fields.get("error"), str):
        message = fields["error"]  # NestJS's reason phrase ("Too Many Requests"), better than nothing
    generation_id = next(
        (v for v in _values(fields, nested, "generationId", "generation_id") if isinstance(v, str)), ""
    )
    return _Error(
        code=code.strip()[:100],
        message=message.strip()[:MAX_MESSAGE] or f"sync.so answered HTTP {answer.status}",
        generation_id=generation_id if _TASK_ID.fullmatch(generation_id) else "",
    )


def _values(fields: dict[str, Any], nested: dict[str, Any], *names: str) -> list[Any]:
    return [source.get(name) for name in names for source in (fields, nested) if source.get(name) is not None]


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # class-validator answers list every problem
        return "; ".join(str(item) for item in value if isinstance(item, str))
    return ""


def _classify(status: int, error: _Error, is_post: bool) -> ProviderError:
    code = error.code or f"http_{status}"
    upper = error.code.upper()
    says_retry = any(word in error.message.lower() for word in _TRY_AGAIN)

    def fail(kind: ErrorKind, ambiguous: bool = False) -> ProviderError:
        return ProviderError(kind, error.message, code=code, ambiguous=ambiguous)

    if error.is_idempotency:
        if "INVALID" in upper:
            return fail(ErrorKind.PERMANENT)  # a malformed key: our bug, repeating cannot help
        if "OUTCOME_UNKNOWN" in upper:
            return fail(ErrorKind.TRANSIENT, ambiguous=True)  # maybe created: repeat only with the same key
        if any(word in upper for word in ("IN_PROGRESS", "IN_USE", "IN_FLIGHT", "PROCESSING", "LOCKED")):
            return fail(ErrorKind.RATE_LIMITED, ambiguous=True)  # the first request may still create it
        if _is_conflict(upper):
            return fail(ErrorKind.PERMANENT)  # the same key with another body: never a second generation
        if says_retry:
            return fail(ErrorKind.RATE_LIMITED, ambiguous=True)
    if status in (401, 402, 403):
        return fail(ErrorKind.ADMIN)  # refused key; billing or plan state; a key or plan without the right
    if status == 404:
        return fail(ErrorKind.NOT_FOUND)
    if status == 429:
        busy = "CONCURREN" in upper or "concurren" in error.message.lower()
        return fail(ErrorKind.BUSY if busy else ErrorKind.RATE_LIMITED)
    if status in (409, 423, 425) and says_retry:
        return fail(ErrorKind.RATE_LIMITED)
    if status == 408 or status >= 500 or status < 400:
        # 5xx, a redirect that was not followed, a timeout answer: a POST may have been carried out.
        return fail(ErrorKind.TRANSIENT, ambiguous=is_post)
    return fail(ErrorKind.PERMANENT)  # 400, 413, 422 and the rest: this request cannot succeed as sent


def _is_conflict(upper_code: str) -> bool:
    return any(word in upper_code for word in ("MISMATCH", "CONFLICT", "REUSE", "PAYLOAD", "DIFFERENT"))


# -- webhooks ----------------------------------------------------------------------------------------


def _signed(key: bytes, header: str, body: bytes, now_s: float) -> bool:
    """`Sync-Signature: t=<unix>,v1=<hex>` over "<t>.<payload>", within SIGNATURE_TOLERANCE_S of now."""
    parts = [item.strip().partition("=") for item in header.split(",")]
    stamps = [value for name, _, value in parts if name == "t"]
    signatures = [value.lower() for name, _, value in parts if name == "v1" and value]
    if len(stamps) != 1 or not stamps[0].isdigit() or len(stamps[0]) > 12 or not signatures:
        return False
    if abs(now_s - int(stamps[0])) > SIGNATURE_TOLERANCE_S:
        return False
    prefix = stamps[0].encode() + b"."
    forms = _signed_forms(body)
    expected = [hmac.new(key, prefix + form, hashlib.sha256).hexdigest() for form in forms]
    return any(hmac.compare_digest(want, got) for want in expected for got in signatures)


def _signed_forms(body: bytes) -> list[bytes]:
    """What a signature may be over: the raw body as received, and the payload re-serialized compactly as
    the docs' samples do it, by JSON.stringify (non-ASCII as is) and by Python's json.dumps (non-ASCII
    escaped as \\uXXXX). ValueError for a body that is not JSON."""
    payload = json.loads(body)
    forms = [body]
    for ascii_only in (False, True):
        form = json.dumps(payload, separators=(",", ":"), ensure_ascii=ascii_only).encode()
        if form not in forms:
            forms.append(form)
    return forms


def _delivery_id(data: Any) -> str | None:
    generation = _delivered_generation(data)
    return None if generation is None else str(generation["id"])


def _delivered_generation(data: Any) -> dict[str, Any] | None:
    """The Generation in a delivery: the body itself, or its `result` or `data` (SDK versions differ)."""
    if not isinstance(data, dict):
        return None
    for source in (data, data.get("result"), data.get("data")):
        if isinstance(source, dict):
            value = source.get("id")
            if isinstance(value, str) and _TASK_ID.fullmatch(value):
                return source
    return None
