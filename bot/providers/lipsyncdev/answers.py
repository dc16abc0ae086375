"""LipSync.dev's answers read: a job answer as a `Task` (`read_task`), an HTTP refusal as a
`ProviderError` (`http_error`), and the bodies' error text and code. The statuses and fields:
bot/providers/lipsyncdev/client.py's docstring.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from bot.providers.base import ErrorKind, ProviderError, Task, TaskState
from bot.providers.http import Answer

RUNNING = frozenset({"pending", "processing", "queued"})  # "queued": version B's word
DURATION_FIELDS = ("duration", "outputDuration", "durationSeconds")
MAX_MESSAGE = 300
JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def read_task(data: dict[str, Any], submitted: bool) -> Task:
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
    estimate = _decimal_text(data.get("estimatedCredits"))
    if status == "completed" and isinstance(output_url, str) and output_url:
        duration = next((_decimal_text(data[f]) for f in DURATION_FIELDS if f in data), "")
        return Task(
            task_id,
            TaskState.SUCCEEDED,
            created_at,
            result_url=output_url,
            duration_s=duration,
            cost=cost,
            estimated_cost=estimate,
        )
    if status == "failed":
        error = (
            _text(data.get("errorMessage"))
            or body_text({"error": data.get("error")})
            or "LipSync.dev reported the job as failed"
        )
        return Task(task_id, TaskState.FAILED, created_at, cost=cost, error=error[:MAX_MESSAGE])
    if submitted or status in RUNNING:
        # The status endpoint will tell more; a submit's answer made the job whatever its status says.
        return Task(task_id, TaskState.RUNNING, created_at, cost=cost, estimated_cost=estimate)
    if status == "completed":
        raise ProviderError(
            ErrorKind.TRANSIENT, "LipSync.dev reported the job completed without an outputUrl"
        )
    raise ProviderError(ErrorKind.TRANSIENT, f"LipSync.dev sent an unknown job status: {status[:50]!r}")


def http_error(answer: Answer, is_post: bool, job_path: bool) -> ProviderError:
    status = answer.status
    body = parse(answer.body)
    code = body_code(body)
    if not code or code == str(status):  # {"code": 401, ...} says no more than the status
        code = f"http_{status}"
    text = body_text(body)
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


def parse(content: bytes) -> Any:
    """The JSON body, numbers with a fraction as Decimal (exact); None when it is not JSON."""
    try:
        return json.loads(content, parse_float=Decimal)
    except ValueError:  # includes UnicodeDecodeError
        return None


def body_text(body: Any) -> str:
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


def body_code(body: Any) -> str:
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
