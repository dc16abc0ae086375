"""JoggAI v2 lip-sync client: the one place that knows JoggAI's wire format.

Errors arrive as HTTP 200 with `code != 0`; this module turns every outcome into either a value or a
`JoggError` whose `kind` tells the caller what to do. Retrying is the caller's job (it reschedules the job
in Redis with backoff), so a retry survives a restart and never blocks a worker.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

import httpx
from pydantic import SecretStr

CREATE_PATH = "/v2/create_lip_sync_video"
TASK_PATH = "/v2/lip_sync_video"
UPLOAD_PATH = "/v2/upload/asset"


class ErrorKind(StrEnum):
    PERMANENT = "permanent"  # configuration or input problem: tell the user, do not retry
    TRANSIENT = "transient"  # 5xx, timeouts, malformed bodies, code 50000: retry with backoff
    RATE_LIMITED = "rate_limited"  # code 429: nothing happened, try again later
    NOT_FOUND = "not_found"  # code 10104 (or 17003 on the lookup endpoint)


# code → (kind, what it means); msg from the provider is kept alongside.
BUSINESS_CODES: dict[int, ErrorKind] = {
    429: ErrorKind.RATE_LIMITED,
    10104: ErrorKind.NOT_FOUND,
    17003: ErrorKind.NOT_FOUND,
    10105: ErrorKind.PERMANENT,
    18020: ErrorKind.PERMANENT,
    18025: ErrorKind.PERMANENT,
    40000: ErrorKind.PERMANENT,
    50000: ErrorKind.TRANSIENT,
}


class JoggError(Exception):
    def __init__(self, kind: ErrorKind, message: str, code: int | None = None, ambiguous: bool = False):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.code = code
        # True when a POST may have been carried out although we got no clear answer.
        self.ambiguous = ambiguous

    def __str__(self) -> str:
        return f"{self.message} (code {self.code})" if self.code is not None else self.message


@dataclass(frozen=True)
class LipSyncTask:
    task_id: str
    status: str  # pending | processing | success | failed
    created_at: int | None = None
    result_url: str = ""
    cover_url: str = ""
    duration_seconds: str = ""  # exact decimal text, for the cost rule
    error_message: str = ""

    @property
    def finished(self) -> bool:
        return self.status in ("success", "failed")


@dataclass(frozen=True)
class UploadTarget:
    """Where to PUT a file's bytes (sign_url, a presigned storage URL) and how JoggAI will know it."""

    sign_url: str
    asset_url: str  # pass as video_url / audio_url


class JoggClient:
    def __init__(self, base_url: str, api_key: SecretStr, timeout_s: float = 10.0) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"x-api-key": api_key.get_secret_value(), "accept": "application/json"},
            timeout=httpx.Timeout(timeout_s, connect=min(5.0, timeout_s)),
            follow_redirects=False,  # a redirect would carry the API key to another host
            limits=httpx.Limits(max_connections=50, max_keepalive_connections=50),
        )
        # The signed upload URLs live on a storage host that must never see the API key, which the
        # client above sends on every request: a second client with no default headers or auth.
        # httpx timeouts apply per read/write, not to the whole transfer, so big files are fine.
        self._storage = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=min(5.0, timeout_s)),
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        try:
            await self._client.aclose()
        finally:
            await self._storage.aclose()

    async def create_lip_sync(self, video_url: str, audio_url: str, playback_type: str) -> LipSyncTask:
        body = {"video_url": video_url, "audio_url": audio_url, "playback_type": playback_type}
        data = await self._call("POST", CREATE_PATH, json=body)
        return _task(data, status_default="pending")

    async def get_lip_sync(self, task_id: str) -> LipSyncTask:
        return _task(await self._call("GET", f"{TASK_PATH}/{task_id}"))

    async def find_lip_sync(self, video_url: str, audio_url: str, playback_type: str) -> LipSyncTask | None:
        """The latest task with exactly these inputs (JoggAI's lookup endpoint), or None."""
        params = {"video_url": video_url, "audio_url": audio_url, "playback_type": playback_type}
        try:
            return _task(await self._call("GET", TASK_PATH, params=params))
        except JoggError as exc:
            if exc.kind is ErrorKind.NOT_FOUND:
                return None
            raise

    async def request_upload(self, filename: str, content_type: str, size: int) -> UploadTarget:
        """Ask JoggAI for a signed URL to upload one file to (a POST: it counts against 20/min)."""
        body = {"filename": filename, "content_type": content_type, "file_size": size}
        data = await self._call("POST", UPLOAD_PATH, json=body)
        sign_url, asset_url = data.get("sign_url"), data.get("asset_url")
        if not (_is_http_url(sign_url) and _is_http_url(asset_url)):
            # The values are not quoted: a sign_url is a credential for the storage bucket.
            keys = ", ".join(sorted(data)) or "none"
            raise JoggError(ErrorKind.TRANSIENT, f"JoggAI sent no usable sign_url/asset_url (keys: {keys})")
        return UploadTarget(sign_url=str(sign_url), asset_url=str(asset_url))

    async def put_asset(
        self, sign_url: str, content_type: str, size: int, body: AsyncIterator[bytes]
    ) -> None:
        """Stream `size` bytes to a signed URL from `request_upload`.

        Content-Length is set explicitly: httpx would otherwise send an async iterator chunked, and
        presigned storage URLs refuse chunked bodies (411). With the header set, httpx sends the body
        as is and h11 refuses to send more or fewer bytes than declared. An exception raised by `body`
        aborts the request and propagates unchanged, so the storage never sees a complete upload.
        """
        headers = {"Content-Type": content_type, "Content-Length": str(size)}
        try:
            response = await self._storage.put(sign_url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            message = f"upload to JoggAI storage failed: {type(exc).__name__}"
            raise JoggError(ErrorKind.TRANSIENT, message) from exc
        status = response.status_code
        if 200 <= status < 300:
            return
        if 400 <= status < 500:
            # Expired or mismatched signature (or a bucket policy): a fresh request_upload fixes it.
            reason = _storage_code(response.text)
            raise JoggError(
                ErrorKind.TRANSIENT,
                f"JoggAI storage refused the upload: HTTP {status}" + (f" {reason}" if reason else ""),
            )
        raise JoggError(ErrorKind.TRANSIENT, f"JoggAI storage answered HTTP {status}")

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        is_post = method == "POST"
        try:
            response = await self._client.request(method, path, **kwargs)
        except httpx.ConnectError as exc:  # nothing was sent
            raise JoggError(ErrorKind.TRANSIENT, f"cannot connect to JoggAI: {exc}") from exc
        except httpx.HTTPError as exc:  # timeouts, resets: the request may have been processed
            raise JoggError(
                ErrorKind.TRANSIENT, f"no answer from JoggAI: {type(exc).__name__}", ambiguous=is_post
            ) from exc
        if response.status_code == 429:
            raise JoggError(ErrorKind.RATE_LIMITED, "rate limit exceeded", code=429)
        if response.status_code >= 500:
            raise JoggError(
                ErrorKind.TRANSIENT, f"JoggAI answered HTTP {response.status_code}", ambiguous=is_post
            )
        if response.status_code >= 400:
            kind = ErrorKind.NOT_FOUND if response.status_code == 404 else ErrorKind.PERMANENT
            raise JoggError(kind, f"JoggAI answered HTTP {response.status_code}")
        try:
            # Decimal keeps duration_seconds exactly as written on the wire.
            envelope = json.loads(response.content, parse_float=Decimal)
            code = int(envelope["code"])
        except (ValueError, KeyError, TypeError) as exc:
            raise JoggError(ErrorKind.TRANSIENT, "JoggAI sent a malformed answer", ambiguous=is_post) from exc
        if code != 0:
            kind = BUSINESS_CODES.get(code, ErrorKind.PERMANENT)
            raise JoggError(kind, str(envelope.get("msg") or "unknown error"), code=code)
        data = envelope.get("data")
        if not isinstance(data, dict):
            raise JoggError(ErrorKind.TRANSIENT, "JoggAI sent an answer without data", ambiguous=is_post)
        return data


def _task(data: dict[str, Any], status_default: str = "") -> LipSyncTask:
    task_id = data.get("task_id")
    status = str(data.get("status") or status_default)
    if not task_id or status not in ("pending", "processing", "success", "failed"):
        raise JoggError(ErrorKind.TRANSIENT, f"JoggAI sent an unexpected task: {str(data)[:200]}")
    result = _dict(data.get("data"))
    error = _dict(data.get("error"))
    task = LipSyncTask(
        task_id=str(task_id),
        status=status,
        created_at=_int_or_none(data.get("created_at")),
        result_url=str(result.get("result_url") or ""),
        cover_url=str(result.get("cover_url") or ""),
        duration_seconds=_decimal_text(result.get("duration_seconds")),
        error_message=str(error.get("message") or ""),
    )
    if task.status == "success" and not task.result_url:
        raise JoggError(ErrorKind.TRANSIENT, "JoggAI reported success without a result_url")
    return task


def _is_http_url(value: object) -> bool:
    if not isinstance(value, str) or not value:
        return False
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL:
        return False
    return url.scheme in ("http", "https") and bool(url.host)


def _storage_code(body: str) -> str:
    """The `<Code>` of an S3-style XML error (e.g. SignatureDoesNotMatch), or ""."""
    match = re.search(r"<Code>([^<]{1,100})</Code>", body[:4096])
    return match.group(1) if match else ""


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _decimal_text(value: object) -> str:
    if value is None or isinstance(value, bool):
        return ""
    try:
        number = Decimal(str(value))
    except ArithmeticError:
        return ""
    return str(number) if number.is_finite() and number >= 0 else ""


def _int_or_none(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload,no-any-return]
    except (TypeError, ValueError):
        return None
