"""The result video, streamed from the provider into the job's thread with Slack's external upload, so it
plays inline and outlives the provider's link.

Slack's flow (the team's Slack notes, shared/docs/slack-platform.md §2.5): `files.getUploadURLExternal` (name,
length) → the bytes to the upload URL → `files.completeUploadExternal` (file id, channel, thread). A file
appears in the thread only when it is completed, so exactly-once rests on the last step: the pipeline records
`upload_state=sent` with the file id once the bytes are up, `completing` before the completion call, and after
an unclear answer asks `files.info` whether the file is shared in the thread before completing again. Slack
shares asynchronously (bolt-js#2115, python-slack-sdk#1277): `files.info` may show no share, or no file, for a
while after a completion that took. So "not shared" counts only after SHARE_SETTLE_S of looking (the pipeline
looks again with backoff meanwhile), and a repeated completion answered `file_not_found` for a file Slack
knows means the first one took. A crash mid-upload leaves an uncompleted file that never shows; the next
attempt starts afresh.

The bytes are never held whole: each chunk read from the provider is written to Slack before the next.
Slack wants the length before the bytes, so a result link that does not say it (chunked) is first
spooled to an anonymous temporary file, refused as soon as it passes MAX_RESULT_UPLOAD_MB, and read back
from there; the file has no name on disk and goes when closed, whatever happens to the step.
The result URL comes from the provider, not from a user, so the user-link rules do not apply to it; it
is fetched without any credential.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any
from urllib.parse import urlsplit

import httpx
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.out import NETWORK_ERRORS

log = logging.getLogger(__name__)

CHUNK_BYTES = 256 * 1024
# How long files.info may show a completed file without its share (or not show the file at all) before
# we take it that the completion never reached Slack and complete again.
SHARE_SETTLE_S = 60.0
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
    def __init__(
        self,
        *,
        client: AsyncWebClient,
        max_bytes: int,
        timeout_s: float = 10.0,
        spool_dir: Path | None = None,
        share_settle_s: float = SHARE_SETTLE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._slack = client
        self.max_bytes = max_bytes
        self._spool_dir = spool_dir  # where results without a length wait; None: the system's temp dir
        self._share_settle_s = share_settle_s
        self._clock = clock
        self._looking_since: dict[str, float] = {}  # file id → this process's first look for its share
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
        with ExitStack() as spooled:
            async with self._http.stream(
                "GET", result_url, headers={"Accept-Encoding": "identity"}
            ) as response:
                if response.status_code != 200:
                    raise UploadFailed(f"the provider's result link answered HTTP {response.status_code}")
                content_type = response.headers.get("Content-Type", "").split(";")[0].strip() or "video/mp4"
                size = _declared_size(response)
                if size is not None:  # passed through as it arrives
                    self._check_size(size)
                    body = _exactly(response.aiter_raw(CHUNK_BYTES), size)
                    return await self._send(name, Source(size, content_type), body)
                spool = spooled.enter_context(
                    tempfile.TemporaryFile(dir=self._spool_dir, prefix="lipsync-result-")
                )
                size = await self._spool(response.aiter_raw(CHUNK_BYTES), spool)
            # The provider's connection is done with; the spool is read back as Slack takes it.
            return await self._send(name, Source(size, content_type), _read_back(spool))
        raise AssertionError("unreachable")

    async def _send(self, name: str, source: Source, body: AsyncIterator[bytes]) -> str:
        """Ask Slack for an upload address for `source.size` bytes and post `body` there."""
        try:
            answer = await self._slack.files_getUploadURLExternal(filename=name, length=source.size)
        except SlackApiError as exc:
            raise _refused(exc) from exc
        except NETWORK_ERRORS as exc:
            raise UploadFailed(f"no answer from Slack ({type(exc).__name__})") from exc
        upload_url, file_id = str(answer.get("upload_url") or ""), str(answer.get("file_id") or "")
        if not (upload_url and file_id):
            raise UploadFailed("Slack gave no upload address")
        headers = {"Content-Type": source.content_type, "Content-Length": str(source.size)}
        try:
            sent = await self._http.post(upload_url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise UploadFailed(f"the upload to Slack broke off ({type(exc).__name__})") from exc
        if sent.status_code != 200:
            raise UploadFailed(f"Slack refused the upload (HTTP {sent.status_code})", sent.status_code == 413)
        return file_id

    def _check_size(self, size: int) -> None:
        if size <= 0:
            raise UploadFailed("the provider sent an empty video", permanent=True)
        if size > self.max_bytes:
            raise self._over_limit(size)

    def _over_limit(self, size: int | None) -> UploadFailed:
        """Refused for size; `size` None when the provider did not say it (we stopped reading at the cap)."""
        limit = f"the {self.max_bytes / 1_000_000:,.0f} MB upload limit (MAX_RESULT_UPLOAD_MB)"
        if size is None:
            return UploadFailed(f"the video is over {limit}", permanent=True)
        return UploadFailed(f"the video is {size / 1_000_000:,.0f} MB, over {limit}", permanent=True)

    async def _spool(self, chunks: AsyncIterator[bytes], spool: IO[bytes]) -> int:
        """Write the download to `spool`, refusing it once past the limit; returns its size, rewound."""
        received = 0
        try:
            async for chunk in chunks:
                received += len(chunk)
                if received > self.max_bytes:
                    raise self._over_limit(None)
                # One chunk into the page cache: well under a millisecond, not worth a thread.
                spool.write(chunk)
        except httpx.HTTPError as exc:
            raise UploadFailed(f"the download from the provider broke off ({type(exc).__name__})") from exc
        self._check_size(received)
        spool.seek(0)
        return received

    async def complete(self, file_id: str, channel: str, thread_ts: str, title: str) -> None:
        """Share the uploaded file in the thread. Raises UploadFailed; unclear outcomes (5xx, network) are
        not permanent and must be reconciled with `is_shared` before completing again.

        Completion is once only: a repeat is answered `file_not_found` when the first one took (its share
        may still be on its way). If Slack knows the file, that is done, not failed."""
        try:
            await self._slack.files_completeUploadExternal(
                files=[{"id": file_id, "title": title}], channel_id=channel, thread_ts=thread_ts
            )
        except SlackApiError as exc:
            if _error(exc) == "file_not_found" and await self._known(file_id):
                log.info("file %s was completed before (its answer was lost); Slack is sharing it", file_id)
                return
            raise _refused(exc) from exc
        except NETWORK_ERRORS as exc:
            raise UploadFailed(f"no answer from Slack ({type(exc).__name__})") from exc

    async def is_shared(self, file_id: str, channel: str, thread_ts: str) -> bool | None:
        """True when the file is in the thread. None: look again later (Slack would not say, or the share
        may still be on its way). False once files.info has shown no share in the thread for
        SHARE_SETTLE_S of looking: the completion never took, so complete (again)."""
        try:
            file = await self._file(file_id)
        except _NoAnswer:
            return None
        if file is not None and _shared_in(file, channel, thread_ts):
            self._looking_since.pop(file_id, None)
            return True
        now = self._clock()
        since = self._first_look(file_id, now)
        if now - since < self._share_settle_s:
            return None
        del self._looking_since[file_id]
        log.warning(
            "file %s: not in its thread after %.0f s of looking; completing again", file_id, now - since
        )
        return False

    def _first_look(self, file_id: str, now: float) -> float:
        """When this process first looked for the file's share; forgets looks long given up (a job
        cancelled or moved to another process meanwhile)."""
        stale = [f for f, since in self._looking_since.items() if now - since > 10 * self._share_settle_s]
        for forgotten in stale:
            del self._looking_since[forgotten]
        return self._looking_since.setdefault(file_id, now)

    async def _known(self, file_id: str) -> bool:
        """Whether Slack knows the file as a completed one (files.info finds it)."""
        try:
            return await self._file(file_id) is not None
        except _NoAnswer:
            return False

    async def _file(self, file_id: str) -> dict[str, Any] | None:
        """The file as files.info shows it; None for `file_not_found`. Raises _NoAnswer otherwise."""
        try:
            answer = await self._slack.files_info(file=file_id)
        except SlackApiError as exc:
            if _error(exc) == "file_not_found":
                return None
            raise _NoAnswer(_error(exc)) from exc
        except NETWORK_ERRORS as exc:
            raise _NoAnswer(type(exc).__name__) from exc
        file = answer.get("file")
        return file if isinstance(file, dict) else None


class _NoAnswer(Exception):
    """files.info did not say (network, 5xx, rate limit, another error)."""


def _shared_in(file: dict[str, Any], channel: str, thread_ts: str) -> bool:
    shares = file.get("shares")
    for where in ("public", "private"):
        found = shares.get(where) if isinstance(shares, dict) else None
        in_channel = found.get(channel) if isinstance(found, dict) else None
        for share in in_channel if isinstance(in_channel, list) else []:
            if isinstance(share, dict) and share.get("thread_ts") == thread_ts:
                return True
    return False


def _error(exc: SlackApiError) -> str:
    data: Any = exc.response.data if exc.response is not None else None
    return str(data.get("error") or "") if isinstance(data, dict) else ""


def _refused(exc: SlackApiError) -> UploadFailed:
    error = _error(exc)
    return UploadFailed(f"Slack answered `{error or 'an error'}`", error in PERMANENT_SLACK_ERRORS)


def _declared_size(response: httpx.Response) -> int | None:
    """The Content-Length the provider sent, or None when it said none (chunked) or nothing readable."""
    value = response.headers.get("Content-Length", "").strip()
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 18 else None


async def _read_back(spool: IO[bytes]) -> AsyncIterator[bytes]:
    while chunk := spool.read(CHUNK_BYTES):
        yield chunk


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
