"""The result video, streamed from the provider into the job's thread with Slack's external upload, so it
plays inline and outlives the provider's link.

Slack's flow (slack-platform.md §2.5): `files.getUploadURLExternal` (name, length) → the bytes to the
upload URL → `files.completeUploadExternal` (file id, channel, thread). A file appears in the thread only
when it is completed, so exactly-once rests on the last step: the pipeline records `upload_state=sent`
with the file id once the bytes are up, `completing` before the completion call, and after an unclear
answer asks `files.info` whether the file is shared in the thread before completing again. A crash
mid-upload leaves an uncompleted file that never shows; the next attempt starts afresh.

The bytes are never held whole: each chunk read from the provider is written to Slack before the next.
The result URL comes from the provider, not from a user, so the user-link rules do not apply to it; it
is fetched without any credential.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import urlsplit

import httpx
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack_out import NETWORK_ERRORS

log = logging.getLogger(__name__)

CHUNK_BYTES = 256 * 1024
VIDEO_TYPES = {".mp4": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm"}
# Slack errors after which another try cannot help; anything else (429, 5xx, network) is tried again.
PERMANENT_SLACK_ERRORS = {
    "not_in_channel",
    "channel_not_found",
    "is_archived",
    "missing_scope",
    "not_allowed_token_type",
    "file_upload_size_restricted",
    "storage_limit_reached",
    "file_type_not_allowed",
    "invalid_auth",
    "token_revoked",
}


class UploadFailed(Exception):
    """The upload did not happen; `permanent` when trying again cannot help. `reason` is for the user."""

    def __init__(self, reason: str, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


@dataclass(frozen=True)
class Source:
    size: int
    content_type: str


def file_name(job_id: str, result_url: str) -> str:
    suffix = PurePosixPath(urlsplit(result_url).path).suffix.lower()
    return f"lipsync-{job_id[-8:]}{suffix if suffix in VIDEO_TYPES else '.mp4'}"


class ResultUploader:
    def __init__(self, client: AsyncWebClient, max_bytes: int, timeout_s: float = 10.0) -> None:
        self._slack = client
        self.max_bytes = max_bytes
        # No credential ever goes with these requests: the provider's result host and Slack's upload URL
        # (itself a one-time credential) get none. Timeouts apply per read, not to the whole transfer.
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, connect=min(5.0, timeout_s)))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def upload(self, result_url: str, name: str) -> str:
        """Stream the result to a new Slack upload; returns its file id (not yet in any channel)."""
        try:
            return await self._upload(result_url, name)
        except httpx.HTTPError as exc:
            raise UploadFailed(f"the provider's result link failed ({type(exc).__name__})") from exc

    async def _upload(self, result_url: str, name: str) -> str:
        async with self._http.stream("GET", result_url, headers={"Accept-Encoding": "identity"}) as response:
            source = self._check(response)
            try:
                answer = await self._slack.files_getUploadURLExternal(filename=name, length=source.size)
            except SlackApiError as exc:
                raise _refused(exc) from exc
            except NETWORK_ERRORS as exc:
                raise UploadFailed(f"no answer from Slack ({type(exc).__name__})") from exc
            upload_url, file_id = str(answer.get("upload_url") or ""), str(answer.get("file_id") or "")
            if not (upload_url and file_id):
                raise UploadFailed("Slack gave no upload address")
            body = _exactly(response.aiter_raw(CHUNK_BYTES), source.size)
            headers = {"Content-Type": source.content_type, "Content-Length": str(source.size)}
            try:
                sent = await self._http.post(upload_url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                raise UploadFailed(f"the upload to Slack broke off ({type(exc).__name__})") from exc
        if sent.status_code != 200:
            raise UploadFailed(f"Slack refused the upload (HTTP {sent.status_code})", sent.status_code == 413)
        return file_id

    def _check(self, response: httpx.Response) -> Source:
        if response.status_code != 200:
            raise UploadFailed(f"the provider's result link answered HTTP {response.status_code}")
        try:
            size = int(response.headers.get("Content-Length", ""))
        except ValueError:
            raise UploadFailed("the provider did not say how large the video is", permanent=True) from None
        if size <= 0:
            raise UploadFailed("the provider sent an empty video", permanent=True)
        if size > self.max_bytes:
            raise UploadFailed(
                f"the video is {size / 1_000_000:,.0f} MB, over the {self.max_bytes / 1_000_000:,.0f} MB "
                "upload limit (MAX_RESULT_UPLOAD_MB)",
                permanent=True,
            )
        content_type = response.headers.get("Content-Type", "").split(";")[0].strip() or "video/mp4"
        return Source(size, content_type)

    async def complete(self, file_id: str, channel: str, thread_ts: str, title: str) -> None:
        """Share the uploaded file in the thread. Raises UploadFailed; SlackAmbiguous-like outcomes (5xx,
        network) are not permanent and must be reconciled with `is_shared` before completing again."""
        try:
            await self._slack.files_completeUploadExternal(
                files=[{"id": file_id, "title": title}], channel_id=channel, thread_ts=thread_ts
            )
        except SlackApiError as exc:
            raise _refused(exc) from exc
        except NETWORK_ERRORS as exc:
            raise UploadFailed(f"no answer from Slack ({type(exc).__name__})") from exc

    async def is_shared(self, file_id: str, channel: str, thread_ts: str) -> bool | None:
        """Whether the file is in the thread already (True/False), or None when Slack would not say."""
        try:
            answer = await self._slack.files_info(file=file_id)
        except SlackApiError as exc:
            if (exc.response.get("error") if exc.response is not None else "") == "file_not_found":
                return False
            return None
        except NETWORK_ERRORS:
            return None
        file = answer.get("file") or {}
        shares = file.get("shares") or {} if isinstance(file, dict) else {}
        for where in ("public", "private"):
            for share in (shares.get(where) or {}).get(channel) or []:
                if isinstance(share, dict) and share.get("thread_ts") == thread_ts:
                    return True
        return False


def _refused(exc: SlackApiError) -> UploadFailed:
    error = str(exc.response.get("error") or "") if exc.response is not None else ""
    return UploadFailed(f"Slack answered `{error or 'an error'}`", error in PERMANENT_SLACK_ERRORS)


async def _exactly(chunks: AsyncIterator[bytes], size: int) -> AsyncIterator[bytes]:
    """The download's bytes, checked against the size declared to Slack; raising aborts the upload."""
    received = 0
    try:
        async for chunk in chunks:
            received += len(chunk)
            if received > size:
                raise UploadFailed("the provider sent more bytes than it announced")
            yield chunk
    except httpx.HTTPError as exc:
        raise UploadFailed(f"the download from the provider broke off ({type(exc).__name__})") from exc
    if received < size:
        raise UploadFailed(f"the download from the provider ended after {received} of {size} bytes")
