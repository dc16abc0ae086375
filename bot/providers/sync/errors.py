"""What sync.so's refusals mean: an error answer read (`read_error`), sorted into the bot's `ErrorKind`s
(`classify`), and the advice people are given for its codes (`advice_for`). The vocabulary and what is
assumed of it: bot/providers/sync/client.py's docstring.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from bot.providers.base import ErrorKind, ProviderError
from bot.providers.http import Answer

MAX_MESSAGE = 300
GENERATION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")

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
_TRY_AGAIN = ("try again", "retry", "later")


@dataclass(frozen=True)
class ErrorBody:
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
        return self.is_idempotency and "INVALID" not in upper and not is_conflict(upper)


def read_error(answer: Answer) -> ErrorBody:
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
    return ErrorBody(
        code=code.strip()[:100],
        message=message.strip()[:MAX_MESSAGE] or f"sync.so answered HTTP {answer.status}",
        generation_id=generation_id if GENERATION_ID.fullmatch(generation_id) else "",
    )


def _values(fields: dict[str, Any], nested: dict[str, Any], *names: str) -> list[Any]:
    return [source.get(name) for name in names for source in (fields, nested) if source.get(name) is not None]


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # class-validator answers list every problem
        return "; ".join(str(item) for item in value if isinstance(item, str))
    return ""


def classify(status: int, error: ErrorBody, is_post: bool) -> ProviderError:
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
        if is_conflict(upper):
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


def is_conflict(upper_code: str) -> bool:
    return any(word in upper_code for word in ("MISMATCH", "CONFLICT", "REUSE", "PAYLOAD", "DIFFERENT"))


def advice_for(code: str) -> str | None:
    """What to tell people about sync.so's error `code`; None when there is nothing better than its words."""
    advice = ADVICE.get(code)
    if advice is not None:
        return advice
    upper = code.upper()
    if "CONCURREN" in upper:
        return "The sync.so plan's concurrency limit is reached; the job waits for a running generation."
    if "IDEMPOTENCY" in upper and is_conflict(upper):
        return _CONFLICT_ADVICE
    return None
