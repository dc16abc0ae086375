"""LipSync.dev client: the one place that knows LipSync.dev's wire format (docs/providers.md §3.4).

What it knows, from the vendor's "Bearer" docs (the seed):
- `Authorization: Bearer <key>` on every call. The docs' code samples use `X-API-Key` instead; a server that
  wants that header answers 401, which is reported like any refused key (ADMIN).
- `POST {base}/v1/lipsync/submit` with `srcVideoUrl`, `audioUrl` and the required `videoParams`
  (`video_width`/`video_height` 0 = keep the original size, `video_enhance` 0|1, `fps` "25"|"original"),
  answered `{jobId, status, estimatedCredits, createdAt}`. `jobId` is a number in the docs: kept as text.
- `GET {base}/v1/lipsync/status/{jobId}` → `{jobId, status, createdAt, outputUrl, creditsUsed, errorMessage}`,
  status pending | processing | completed | failed. The other doc version wraps answers as
  `{"success": true, "data": {...}}` and says "queued": both are accepted.
- `GET {base}/v1/usage` is cheap and needs the key: `check_key` uses it.
- No upload API (the bot serves shared files itself at signed links), no per-request webhook, no lookup by
  inputs, no idempotency key, no documented duration (read if a field carries one). The cost is the
  `creditsUsed` the service reports, kept as exact decimal text.

Errors are read from the HTTP status (the docs give no error vocabulary): 401/403 refused key, 402 credits
(both ADMIN), 429 RATE_LIMITED, 400/422 PERMANENT, 404 NOT_FOUND (a job) or ADMIN (the submit or usage
endpoint itself is missing: a wrong `LIPSYNCDEV_API_URL`; so is a redirect, which is never followed), 5xx and
unreadable answers TRANSIENT (ambiguous for a submit).

Residual risk, for the reader: a submit whose answer is lost (a read timeout after sending, a 5xx, a
truncated body: `ProviderError.ambiguous`) cannot be reconciled. LipSync.dev documents no lookup and no
idempotency key, so nothing can tell whether that job exists: `recovery = Recovery.NONE`, and the pipeline
never repeats such a submit (repeating could pay twice); the job ends and says so.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any

from pydantic import SecretStr

from bot.providers.base import Cost, ErrorKind, Order, Provider, ProviderError, Recovery, Task, TaskState
from bot.providers.http import Answer, ApiSession

DEFAULT_BASE_URL = "https://www.lipsync.dev/api"
SUBMIT_PATH = "/v1/lipsync/submit"
STATUS_PATH = "/v1/lipsync/status"
USAGE_PATH = "/v1/usage"

FPS_CHOICES = ("25", "original")
RUNNING = frozenset({"pending", "processing", "queued"})  # "queued": the other doc version's word
DURATION_FIELDS = ("duration", "outputDuration", "durationSeconds")
MAX_MESSAGE = 300

_KEY_ADVICE = "LipSync.dev refused the API key. An admin needs to check `LIPSYNCDEV_API_KEY`."
_CREDITS_ADVICE = (
    "The LipSync.dev account is out of credits (or its plan does not allow this). "
    "An admin needs to top it up at lipsync.dev."
)
_RATE_ADVICE = "LipSync.dev is rate limiting this account; try again in a minute."
_URL_ADVICE = "LipSync.dev does not know this address. An admin may need to check `LIPSYNCDEV_API_URL`."
_INPUT_ADVICE = (
    "LipSync.dev refused the request as sent: check that both files are a supported video and audio."
)

# Words in an error code the body may carry (the docs give no vocabulary), for `explain`.
_KEY_WORDS = ("api_key", "apikey", "invalid_key", "unauthorized", "unauthenticated", "forbidden")
_CREDIT_WORDS = ("credit", "balance", "payment", "billing", "quota")
_RATE_WORDS = ("rate_limit", "ratelimit", "too_many")


class LipSyncDevProvider(Provider):
    name = "lipsyncdev"
    label = "LipSync.dev"
    unit = "LipSync.dev credits"  # not JoggAI's: budgets keep them apart
    recovery = Recovery.NONE  # no lookup, no idempotency key documented
    playback: Mapping[str, str | None] = MappingProxyType({"normal": None})  # it has no playback option
    models = ()
    hosts_uploads = False  # no upload API: the bot serves shared files itself
    accepts_webhook = False  # the seed's submit documents no webhookUrl
    creates_per_minute = 60  # the free plan's 60 requests per minute

    def __init__(
        self,
        api_key: SecretStr,
        base_url: str = DEFAULT_BASE_URL,
        video_enhance: int = 1,
        fps: str = "25",
        timeout_s: float = 10.0,
    ) -> None:
        if video_enhance not in (0, 1) or isinstance(video_enhance, bool):
            raise ValueError(f"video_enhance must be 0 or 1, not {video_enhance!r}")
        if fps not in FPS_CHOICES:
            raise ValueError(f"fps must be one of {', '.join(FPS_CHOICES)}, not {fps!r}")
        secret = api_key.get_secret_value()
        super().__init__(api_key)
        self._video_params: dict[str, int | str] = {
            "video_width": 0,
            "video_height": 0,
            "video_enhance": video_enhance,
            "fps": fps,
        }
        self._api = ApiSession(self.label, base_url, {"Authorization": f"Bearer {secret}"}, timeout_s)

    async def create(self, order: Order) -> Task:
        body = {"srcVideoUrl": order.video, "audioUrl": order.audio, "videoParams": dict(self._video_params)}
        data = await self._call("POST", SUBMIT_PATH, json=body)
        return _task(data, submitted=True)

    async def get(self, task_id: str) -> Task:
        path = f"{STATUS_PATH}/{urllib.parse.quote(task_id, safe='')}"
        return _task(await self._call("GET", path), submitted=False)

    def cost(self, task: Task, model: str) -> Cost | None:
        if not task.cost:
            return None
        return Cost(Decimal(task.cost), self.unit)

    def cost_rule(self, model: str) -> str:
        return "creditsUsed as reported by LipSync.dev"

    def explain(self, code: str) -> str | None:
        word = code.lower().replace("-", "_")
        if word in ("http_401", "http_403") or any(k in word for k in _KEY_WORDS):
            return _KEY_ADVICE
        if word == "http_402" or any(k in word for k in _CREDIT_WORDS):
            return _CREDITS_ADVICE
        if word == "http_429" or any(k in word for k in _RATE_WORDS):
            return _RATE_ADVICE
        if word == "http_404" or word.startswith("http_3"):
            return _URL_ADVICE
        if word in ("http_400", "http_422"):
            return _INPUT_ADVICE
        return None

    async def check_key(self) -> str | None:
        try:
            answer = await self._api.request("GET", USAGE_PATH)
        except ProviderError:
            return None  # cannot be checked now: not the key's fault
        if answer.status in (401, 403):
            reason = _body_text(_parse(answer.body))
            return f"LipSync.dev refused `LIPSYNCDEV_API_KEY` (HTTP {answer.status}" + (
                f": {reason})." if reason else ")."
            )
        return None

    async def balance(self) -> str | None:
        """The plan's requests used this period, from /v1/usage (LipSync.dev reports no credit balance)."""
        try:
            data = await self._call("GET", USAGE_PATH)
        except ProviderError:
            return None
        period = data.get("current_period")
        if not isinstance(period, dict):
            return None
        used, limit = period.get("requests_used"), period.get("requests_limit")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (used, limit)):
            return None
        return f"{used:,} of {limit:,} requests used this period"

    async def aclose(self) -> None:
        await self._api.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        answer = await self._api.request(method, path, **kwargs)
        is_post = method == "POST"
        if answer.status >= 300:
            raise _http_error(answer, is_post, job_path=path.startswith(STATUS_PATH))
        body = _parse(answer.body)
        if not isinstance(body, dict):
            raise ProviderError(
                ErrorKind.TRANSIENT, f"{self.label} sent a malformed answer", ambiguous=is_post
            )
        if body.get("success") is False:
            # A refusal inside a 200: the request was read and turned down.
            raise ProviderError(
                ErrorKind.PERMANENT,
                _body_text(body) or f"{self.label} refused the request",
                code=_body_code(body) or f"http_{answer.status}",
            )
        data = body.get("data")
        if "jobId" not in body and isinstance(data, dict):
            return data  # the other doc version: {"success": true, "data": {...}}
        return body


def _task(data: dict[str, Any], submitted: bool) -> Task:
    """A job answer as a Task. `submitted`: the answer to a submit, which made the job whatever it says."""
    job_id = data.get("jobId")
    if isinstance(job_id, bool) or not isinstance(job_id, str | int) or str(job_id) == "":
        # Without a jobId a submit's fate is unknown: it may have made a job nobody can name.
        raise ProviderError(
            ErrorKind.TRANSIENT,
            f"LipSync.dev sent no usable jobId (keys: {', '.join(sorted(map(str, data)))[:200] or 'none'})",
            ambiguous=submitted,
        )
    status = str(data.get("status") or "").lower()
    output_url = data.get("outputUrl")
    task_id = str(job_id)
    created_at = _unix_seconds(data.get("createdAt"))
    cost = _decimal_text(data.get("creditsUsed"))
    if status == "completed" and isinstance(output_url, str) and output_url:
        duration = next((_decimal_text(data[f]) for f in DURATION_FIELDS if f in data), "")
        return Task(
            task_id, TaskState.SUCCEEDED, created_at, result_url=output_url, duration_s=duration, cost=cost
        )
    if status == "failed":
        error = _text(data.get("errorMessage")) or "LipSync.dev reported the job as failed"
        return Task(task_id, TaskState.FAILED, created_at, cost=cost, error=error[:MAX_MESSAGE])
    if submitted or status in RUNNING:
        # The status endpoint will tell more; a submit's answer made the job whatever its status says.
        return Task(task_id, TaskState.RUNNING, created_at, cost=cost)
    if status == "completed":
        raise ProviderError(
            ErrorKind.TRANSIENT, "LipSync.dev reported the job completed without an outputUrl"
        )
    raise ProviderError(ErrorKind.TRANSIENT, f"LipSync.dev sent an unknown job status: {status[:50]!r}")


def _http_error(answer: Answer, is_post: bool, job_path: bool) -> ProviderError:
    status = answer.status
    body = _parse(answer.body)
    code = _body_code(body)
    if not code or code == str(status):  # {"code": 401, ...} says no more than the status
        code = f"http_{status}"
    text = _body_text(body)
    message = text or f"LipSync.dev answered HTTP {status}"
    if status in (401, 403, 402):
        return ProviderError(ErrorKind.ADMIN, message, code)
    if status == 429:
        return ProviderError(ErrorKind.RATE_LIMITED, message, code)
    if status == 404:
        # No such job; or, for the submit/usage endpoints, no such endpoint: the API URL is wrong.
        return ProviderError(ErrorKind.NOT_FOUND if job_path else ErrorKind.ADMIN, message, code)
    if status >= 500 or status in (408, 425):
        return ProviderError(ErrorKind.TRANSIENT, message, code, ambiguous=is_post)
    if status >= 400:
        return ProviderError(ErrorKind.PERMANENT, message, code)
    # A 3xx: not followed (the key would travel to wherever it points), so nothing was done here. A
    # moved API is a configuration matter: LIPSYNCDEV_API_URL.
    return ProviderError(ErrorKind.ADMIN, f"LipSync.dev answered HTTP {status} (a redirect)", code)


def _parse(content: bytes) -> Any:
    """The JSON body, numbers with a fraction as Decimal (exact); None when it is not JSON."""
    try:
        return json.loads(content, parse_float=Decimal)
    except ValueError:  # includes UnicodeDecodeError
        return None


def _body_text(body: Any) -> str:
    """The error text of an answer body ({"error": "..."}, {"error": {"message"}}, {"message"}), or ""."""
    if not isinstance(body, dict):
        return ""
    error = body.get("error")
    if isinstance(error, dict):
        error = error.get("message") or error.get("error")
    for value in (error, body.get("message"), body.get("errorMessage")):
        text = _text(value)
        if text:
            return text[:MAX_MESSAGE]
    return ""


def _body_code(body: Any) -> str:
    """An error code the body carries ({"code"}, {"errorCode"}, {"error": {"code"}}), or ""."""
    if not isinstance(body, dict):
        return ""
    error = body.get("error")
    nested = error.get("code") if isinstance(error, dict) else None
    for value in (nested, body.get("code"), body.get("errorCode"), body.get("error_code")):
        if isinstance(value, bool) or value is None or value in ("", 0):
            continue
        if isinstance(value, str | int):
            return str(value)[:100]
    return ""


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def _decimal_text(value: object) -> str:
    """Exact decimal text of a non-negative number (int, Decimal or numeric string), else ""."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        return ""
    try:
        number = Decimal(value)
    except (InvalidOperation, ValueError):
        return ""
    return str(number) if number.is_finite() and number >= 0 else ""


def _unix_seconds(value: object) -> float | None:
    """createdAt as unix seconds: ISO 8601 (naive = UTC), or a number (seconds, or milliseconds)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | Decimal):
        seconds = float(value)
        return seconds / 1000 if seconds > 1e11 else seconds
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
