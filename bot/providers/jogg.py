"""JoggAI v2 lip-sync: the one place that knows JoggAI's wire format, errors, cost rule and uploads.

Errors arrive as `code != 0` in the envelope, usually under HTTP 200 but whatever the status (a 401
carrying 10105 is a refused key: the team's provider notes, shared/docs/providers.md §1.2, §1.12); every
outcome becomes a `Task` or a
`ProviderError`. JoggAI has no idempotency key, but it can look a task up by its inputs (§1.5): after a
create whose answer was lost, the pipeline adopts the task it finds (Recovery.LOOKUP). Uploads are POSTs
and share the 20 POSTs/min limit with creates (§1.8).
"""

from __future__ import annotations

import decimal
import json
from collections.abc import AsyncIterator
from decimal import ROUND_CEILING, Decimal
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
from bot.providers.http import ApiSession, StorageUploader, is_http_url

CREATE_PATH = "/v2/create_lip_sync_video"
TASK_PATH = "/v2/lip_sync_video"
UPLOAD_PATH = "/v2/upload/asset"
WHOAMI_PATH = "/v2/user/whoami"
QUOTA_PATH = "/v2/user/remaining_quota"

PLAYBACK_TYPES = ("normal", "normal_reverse", "normal_reverse_by_audio")

# Business code → what it means for the bot (shared/docs/providers.md §1.2); JoggAI's msg is kept too.
BUSINESS_CODES: dict[int, ErrorKind] = {
    429: ErrorKind.RATE_LIMITED,
    10104: ErrorKind.NOT_FOUND,
    17003: ErrorKind.NOT_FOUND,  # the lookup endpoint's "no matching task" (official runner)
    10105: ErrorKind.ADMIN,
    18020: ErrorKind.ADMIN,
    18025: ErrorKind.ADMIN,
    40000: ErrorKind.PERMANENT,
    50000: ErrorKind.TRANSIENT,
}

REFUSED_KEY_CODES = ("10105", "18025")  # the key, or the account behind it, may not call the API

ADVICE = {
    "10105": "The bot's JoggAI API key was refused. An admin needs to check `JOGG_API_KEY`.",
    "18020": "The JoggAI account is out of credits. An admin needs to top it up, then you can try again.",
    "18025": "The JoggAI account has no API access. An admin needs to enable it in JoggAI.",
    "40000": "JoggAI rejected the request's parameters.",
}

_STATES = {
    "pending": TaskState.RUNNING,
    "processing": TaskState.RUNNING,
    "success": TaskState.SUCCEEDED,
    "failed": TaskState.FAILED,
}


class JoggProvider(Provider):
    name = "jogg"
    label = "JoggAI"
    recovery = Recovery.LOOKUP
    playback = MappingProxyType({p: p for p in PLAYBACK_TYPES})
    hosts_uploads = True
    uploads_use_create_limit = True

    def __init__(
        self,
        api_key: SecretStr,
        *,
        base_url: str = "https://api.jogg.ai",
        timeout_s: float = 10.0,
        posts_per_minute: int = 20,
    ) -> None:
        super().__init__(api_key)
        self.creates_per_minute = posts_per_minute
        self._api = ApiSession(
            label=self.label,
            base_url=base_url,
            headers={"x-api-key": api_key.get_secret_value()},
            timeout_s=timeout_s,
        )
        self._storage = StorageUploader(label=self.label, timeout_s=timeout_s)

    async def aclose(self) -> None:
        try:
            await self._api.aclose()
        finally:
            await self._storage.aclose()

    async def create(self, order: Order) -> Task:
        body = {"video_url": order.video, "audio_url": order.audio, "playback_type": order.playback}
        return _task(await self._call("POST", CREATE_PATH, json=body), status_default="pending")

    async def get(self, task_id: str) -> Task:
        return _task(await self._call("GET", f"{TASK_PATH}/{task_id}"))

    async def find(self, order: Order) -> Task | None:
        params = {"video_url": order.video, "audio_url": order.audio, "playback_type": order.playback}
        try:
            return _task(await self._call("GET", TASK_PATH, params=params))
        except ProviderError as exc:
            if exc.kind is ErrorKind.NOT_FOUND:
                return None
            raise

    async def upload(self, name: str, content_type: str, size: int, body: AsyncIterator[bytes]) -> str:
        """Ask for a signed URL (a POST: it counts against 20/min), then PUT the bytes there."""
        request = {"filename": name, "content_type": content_type, "file_size": size}
        data = await self._call("POST", UPLOAD_PATH, json=request)
        sign_url, asset_url = data.get("sign_url"), data.get("asset_url")
        if not (is_http_url(sign_url) and is_http_url(asset_url)):
            # The values are not quoted: a sign_url is a credential for the storage bucket.
            keys = ", ".join(sorted(data)) or "none"
            raise ProviderError(
                ErrorKind.TRANSIENT, f"JoggAI sent no usable sign_url/asset_url (keys: {keys})"
            )
        await self._storage.put(str(sign_url), content_type, size, body)
        return str(asset_url)

    def cost(self, task: Task, model: str) -> Cost | None:
        try:
            return Cost(credits_for(task.duration_s or "0"), self.unit)
        except ValueError:
            return None

    def quote(
        self, video_s: Decimal | None, audio_s: Decimal | None, playback: str, model: str
    ) -> Cost | None:
        # Every playback type plays the video for as long as the new audio runs (shared/docs/providers.md
        # §1.10): the audio's length is the output's.
        if audio_s is None:
            return None
        try:
            return Cost(credits_for(audio_s), self.unit)
        except ValueError:
            return None

    def cost_rule(self, model: str) -> str:
        return "1 credit per 125 s of output, rounded up"

    def explain(self, code: str) -> str | None:
        return ADVICE.get(code)

    async def key_check(self) -> KeyCheck:
        """GET /v2/user/whoami (§1.9): cheap, and needs the key."""
        try:
            await self._call("GET", WHOAMI_PATH)
        except ProviderError as exc:
            if exc.code in REFUSED_KEY_CODES:
                return KeyCheck(
                    KeyState.REFUSED,
                    f"JoggAI refused JOGG_API_KEY ({exc.message}). Copy it again from app.jogg.ai → API.",
                )
            return unchecked(exc)
        return KeyCheck(KeyState.ACCEPTED)

    async def balance(self) -> str | None:
        left = await self.remaining()
        return f"{left.amount} credits" if left else None

    async def remaining(self) -> Cost | None:
        try:
            data = await self._call("GET", QUOTA_PATH)
        except ProviderError:
            return None
        left = decimal_text(data.get("remaining_quota"))
        return Cost(Decimal(left), self.unit) if left else None

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """The envelope's `data`, or a ProviderError. The `code`/`msg` envelope decides whatever the HTTP
        status (§1.2: a 401 carrying 10105 is a refused key); the status alone only when there is none."""
        is_post = method == "POST"
        answer = await self._api.request(method, path, **kwargs)
        status = answer.status
        envelope = _envelope(answer.body)
        if envelope is None:
            if 200 <= status < 300:
                raise ProviderError(ErrorKind.TRANSIENT, "JoggAI sent a malformed answer", ambiguous=is_post)
            raise _status_error(status, is_post)
        code = envelope["code"]
        if code != 0:
            kind = BUSINESS_CODES.get(code, ErrorKind.PERMANENT)
            # A 5xx with a code that refuses nothing in particular: a POST may have been carried out.
            ambiguous = is_post and status >= 500 and kind is ErrorKind.TRANSIENT
            message = str(envelope.get("msg") or "unknown error")
            raise ProviderError(kind, message, code=str(code), ambiguous=ambiguous)
        if not 200 <= status < 300:  # "success" under an error status: believe neither
            raise _status_error(status, is_post)
        data = envelope.get("data")
        if not isinstance(data, dict):
            raise ProviderError(ErrorKind.TRANSIENT, "JoggAI sent an answer without data", ambiguous=is_post)
        return data


def _envelope(body: bytes) -> dict[str, Any] | None:
    """The `{"code", "msg", "data"}` envelope with an integer code, or None when the body is not one.
    Decimal keeps duration_seconds exactly as written on the wire."""
    try:
        envelope = json.loads(body, parse_float=Decimal)
    except (ValueError, RecursionError):  # includes UnicodeDecodeError
        return None
    if not isinstance(envelope, dict):
        return None
    code = envelope.get("code")
    if isinstance(code, str):
        digits = code.strip().removeprefix("-")
        # ASCII digits only, and few: int() takes other scripts' digits, refuses "²" and 4300+ digits.
        if digits.isascii() and digits.isdigit() and len(digits) <= 18:
            code = int(code)
    if not isinstance(code, int) or isinstance(code, bool):
        return None
    return {**envelope, "code": code}


def _status_error(status: int, is_post: bool) -> ProviderError:
    """An answer without a JoggAI envelope (a proxy's page, a bare error), read by its HTTP status."""
    if status == 429:
        return ProviderError(ErrorKind.RATE_LIMITED, "rate limit exceeded", code="429")
    if status >= 500 or status < 400:  # a 5xx, or a redirect that was not followed
        return ProviderError(ErrorKind.TRANSIENT, f"JoggAI answered HTTP {status}", ambiguous=is_post)
    kind = ErrorKind.NOT_FOUND if status == 404 else ErrorKind.PERMANENT
    return ProviderError(kind, f"JoggAI answered HTTP {status}")


def _task(data: dict[str, Any], status_default: str = "") -> Task:
    task_id = data.get("task_id")
    state = _STATES.get(str(data.get("status") or status_default))
    if not task_id or state is None:
        raise ProviderError(ErrorKind.TRANSIENT, f"JoggAI sent an unexpected task: {str(data)[:200]}")
    result = _dict(data.get("data"))
    error = _dict(data.get("error"))
    task = Task(
        id=str(task_id),
        state=state,
        created_at=_number_or_none(data.get("created_at")),
        result_url=str(result.get("result_url") or ""),
        cover_url=str(result.get("cover_url") or ""),
        duration_s=decimal_text(result.get("duration_seconds")),
        error=str(error.get("message") or ""),
    )
    if task.state is TaskState.SUCCEEDED and not task.result_url:
        raise ProviderError(ErrorKind.TRANSIENT, "JoggAI reported success without a result_url")
    return task


# --------------------------------------------------------------------------------------- cost rule
# 1 credit per 125 s of output, shown rounded up to 2 decimals (shared/docs/providers.md §1.10). All
# arithmetic is exact: binary floats get it wrong (35 / 125 * 100 is 28.000000000000004, which rounds up to
# 0.29).

SECONDS_PER_CREDIT = 125
# Far beyond any real video; it bounds the work done on hostile input such as "1e999999999".
_MAX_SECONDS = Decimal(10) ** 9


def credits_for(duration_seconds: float | int | str | Decimal) -> Decimal:
    """Credits for ``duration_seconds`` of output, quantized to 0.01 and rounded up (12.5 → Decimal("0.10")).

    Raises ValueError for negative, NaN, infinite, absurdly large or non-numeric input.
    """
    seconds = to_decimal(duration_seconds)
    if seconds < 0:
        raise ValueError(f"duration must not be negative, got {duration_seconds!r}")
    if seconds > _MAX_SECONDS:
        raise ValueError(f"duration is implausibly large: {duration_seconds!r}")
    # hundredths = ceil(seconds * 100 / 125) = ceil(seconds * 4 / 5). Dividing by 5 always terminates, so
    # with enough precision every step is exact; the Inexact trap turns any mistake into an error.
    with decimal.localcontext() as ctx:
        ctx.prec = len(seconds.as_tuple().digits) + 40
        ctx.Emax = decimal.MAX_EMAX
        ctx.Emin = decimal.MIN_EMIN
        ctx.traps[decimal.Inexact] = True
        hundredths = int((seconds * 4 / 5).to_integral_value(rounding=ROUND_CEILING))
    # Built from a string, so no context rounding applies and -0 cannot leak through as "-0.00".
    return Decimal(f"{hundredths}E-2")


def to_decimal(value: object) -> Decimal:
    """A finite Decimal from a number or its text; ValueError otherwise."""
    # bool is an int subclass, but True seconds is a bug upstream, not a duration.
    if isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        # repr() is the shortest string that round-trips, i.e. the number the JSON actually said.
        result = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except decimal.InvalidOperation:
            raise ValueError(f"not a number: {value!r}") from None
    else:
        raise ValueError(f"not a number: {value!r}")
    if not result.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return result


def decimal_text(value: object) -> str:
    """A non-negative number from the wire as exact decimal text; "" when it is not one."""
    if value is None or isinstance(value, bool):
        return ""
    try:
        number = Decimal(str(value))
    except ArithmeticError:
        return ""
    return str(number) if number.is_finite() and number >= 0 else ""


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _number_or_none(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
