"""JoggAI v2 lip-sync client: the one place that knows JoggAI's wire format.

Errors arrive as HTTP 200 with `code != 0`; this module turns every outcome into either a value or a
`JoggError` whose `kind` tells the caller what to do. Retrying is the caller's job (it reschedules the job
in Redis with backoff), so a retry survives a restart and never blocks a worker.

API calls go through one aiohttp session: at a few hundred polls in flight, httpx's connection pool
spends most of its time in an O(n²) scan (encode/httpx#3215; bench/poll_sweep.py measured 11 ms of CPU
per poll with httpx and 87 polls/s). The key-less storage upload (`put_asset`) stays on httpx, which
streams a body of declared length simply and is used a few times per job at most.
"""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

import aiohttp
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


# Connections to the JoggAI API per process: enough for every poll and submission the worker runs at
# once (bot/worker.py CAPACITY), so a request never queues for a connection behind slow ones.
MAX_CONNECTIONS = 250


class JoggClient:
    def __init__(
        self,
        base_url: str,
        api_key: SecretStr,
        timeout_s: float = 10.0,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._headers = {"x-api-key": api_key.get_secret_value(), "accept": "application/json"}
        connect_s = min(5.0, timeout_s)
        # As before with httpx: connecting may take up to 5 s, each read up to timeout_s; waiting for a
        # free connection from the pool is bounded too (`connect` covers the wait plus the connect).
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=timeout_s + connect_s, sock_connect=connect_s, sock_read=timeout_s
        )
        self._max_connections = max_connections
        # HTTP(S)_PROXY / NO_PROXY are honoured as httpx did, looked up once: aiohttp's trust_env would
        # look them up (and ~/.netrc) in a thread on every request.
        self._proxy = _env_proxy(self._base_url)
        # Created on first use: an aiohttp session belongs to the event loop it was made in.
        self._http: aiohttp.ClientSession | None = None
        # The signed upload URLs live on a storage host that must never see the API key, which the
        # client above sends on every request: a second client with no default headers or auth.
        # httpx timeouts apply per read/write, not to the whole transfer, so big files are fine.
        self._storage = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=min(5.0, timeout_s)),
            follow_redirects=False,
        )

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                # Certificates are checked exactly as httpx did (certifi, or SSL_CERT_FILE/SSL_CERT_DIR).
                ssl=httpx.create_ssl_context(),
            )
            self._http = aiohttp.ClientSession(
                connector=connector,
                headers=self._headers,
                timeout=self._timeout,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._http

    async def aclose(self) -> None:
        try:
            if self._http is not None:
                await self._http.close()
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
            async with self._session().request(
                method,
                self._base_url + path,
                allow_redirects=False,  # a redirect would carry the API key to another host
                proxy=self._proxy,
                **kwargs,
            ) as response:
                status = response.status
                content = await response.read()
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            # No connection, or none within the connect timeout: nothing was sent.
            raise JoggError(ErrorKind.TRANSIENT, f"cannot connect to JoggAI: {_describe(exc)}") from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            # Read timeouts, resets, a truncated body: the request may have been processed.
            raise JoggError(
                ErrorKind.TRANSIENT, f"no answer from JoggAI: {_describe(exc)}", ambiguous=is_post
            ) from exc
        if status == 429:
            raise JoggError(ErrorKind.RATE_LIMITED, "rate limit exceeded", code=429)
        if status >= 500:
            raise JoggError(ErrorKind.TRANSIENT, f"JoggAI answered HTTP {status}", ambiguous=is_post)
        if status >= 400:
            kind = ErrorKind.NOT_FOUND if status == 404 else ErrorKind.PERMANENT
            raise JoggError(kind, f"JoggAI answered HTTP {status}")
        try:
            # Decimal keeps duration_seconds exactly as written on the wire.
            envelope = json.loads(content, parse_float=Decimal)
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


def _env_proxy(url: str) -> str | None:
    """The proxy the environment sets for `url` (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY).

    Only HTTP(S) proxies: aiohttp cannot speak SOCKS (httpx could not either without an extra)."""
    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or not proxy.startswith(("http://", "https://")):
        return None
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    return proxy


def _describe(exc: BaseException) -> str:
    """A short reason for a transport failure, without the URL (which is ours, not news)."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "ConnectTimeout"
    if isinstance(exc, TimeoutError):
        return "ReadTimeout"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"{type(exc).__name__} ({exc.os_error.strerror or exc.os_error})"
    return type(exc).__name__


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
