"""Stream one Slack file somewhere: to a provider's upload (`rehost`), or to whoever fetches the bot's
signed media link (bot/slack/media_links.py), chunk by chunk.

Slack files are private (the team's Slack notes, shared/docs/slack-platform.md §2.3), so no provider can fetch
them; the bot downloads them with its token. The bytes are never held in memory or on disk: each chunk read
from Slack is written on before the next is read.

Order of work: open the Slack download and check it (status, type, first bytes, size) BEFORE asking the
provider for an upload URL. A failed download then costs no provider POST (JoggAI allows 20 per minute),
and the declared size is the download's real size even when Slack's file object said 0.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass

import httpx
from pydantic import SecretStr

from bot.jobs.files import SlackFile
from bot.providers.base import Provider

log = logging.getLogger(__name__)

CHUNK_BYTES = 256 * 1024  # memory per transfer is a few of these, whatever the file size
MAX_REDIRECTS = 5
_HTML_STARTS = (b"<!doctype", b"<html")

# TransferError codes.
SLACK_FILE_ACCESS = "slack_file_access"  # sign-in page / 401 / 403: files:read scope missing or auth lost
SLACK_FILE_MISSING = "slack_file_missing"  # 404/410: deleted
EMPTY_FILE = "empty_file"  # zero bytes: nothing to re-host
FILE_TOO_LARGE = "file_too_large"
EXTERNAL_FILE = "external_file"  # Google Drive etc., or a URL that is not Slack's: the token stays home
SLACK_DOWNLOAD = "slack_download"  # 5xx, network, timeout, truncated body: try again later
PERMANENT_CODES = frozenset(
    {SLACK_FILE_ACCESS, SLACK_FILE_MISSING, EMPTY_FILE, FILE_TOO_LARGE, EXTERNAL_FILE}
)


class TransferError(Exception):
    """A Slack-side reason the file cannot be passed on. Provider-side failures raise ProviderError."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.permanent = code in PERMANENT_CODES


def is_slack_host(url: str, slack_api_url: str) -> bool:
    """May the bot token be sent to `url`?

    Yes for https://slack.com and its subdomains (files.slack.com, files-origin.slack.com) on the default
    port, and for the exact origin (scheme, host, port) of the configured Slack API URL, which is how tests
    point the bot at a fake Slack. Plain http://slack.com is refused: Slack serves files over https only, so
    an http URL is a downgrade that would put the token on the wire in clear text.
    """
    try:
        target, api = httpx.URL(url), httpx.URL(slack_api_url)
    except (httpx.InvalidURL, TypeError):
        return False
    if not target.host:
        return False
    if _origin(target) == _origin(api):
        return True
    host = target.host  # lower-cased by httpx; userinfo ("slack.com@evil.io") is not part of it
    return (
        target.scheme == "https"
        and target.port in (None, 443)
        and (host == "slack.com" or host.endswith(".slack.com"))
    )


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host, url.port or default


@dataclass(frozen=True)
class Download:
    """A checked Slack download: exactly `size` bytes will come from `body` (or it raises)."""

    size: int
    content_type: str
    body: AsyncIterator[bytes]


class Transfer:
    def __init__(
        self, *, slack_token: SecretStr, slack_api_url: str, max_bytes: int, timeout_s: float = 10.0
    ) -> None:
        self._token = slack_token
        self._slack_api_url = slack_api_url
        self._max_bytes = max_bytes
        # Redirects are followed by hand: httpx drops Authorization on every cross-origin hop, but Slack
        # sends url_private to other Slack hosts (files-origin.slack.com) that need it, while any other
        # host must never get it. The timeout applies per read, not to the whole download.
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=min(5.0, timeout_s)),
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def rehost(self, file: SlackFile, provider: Provider) -> tuple[str, str]:
        """Copy `file` from Slack to `provider`; returns what its upload returned (an asset URL or id) and
        the SHA-256 of the bytes, hashed as they stream (the result cache knows files by it).

        Raises TransferError for Slack-side problems and ProviderError for the provider's.
        """
        digest = hashlib.sha256()
        async with self.download(file) as download:
            log.info("re-hosting Slack file %s (%d bytes) at %s", file.id, download.size, provider.label)
            body = _hashed(download.body, digest)
            reference = await provider.upload(file.name, file.content_type, download.size, body)
        log.info("re-hosted Slack file %s", file.id)
        return reference, digest.hexdigest()

    async def digest(self, file: SlackFile) -> str:
        """The SHA-256 of `file`'s bytes, read from Slack as a stream (never whole in memory)."""
        digest = hashlib.sha256()
        async with self.download(file) as download:
            async for chunk in download.body:
                digest.update(chunk)
        return digest.hexdigest()

    @asynccontextmanager
    async def download(self, file: SlackFile) -> AsyncGenerator[Download, None]:
        """Open `file`'s download from Slack and check it; raises TransferError when it is not the file."""
        if file.size > self._max_bytes:
            raise self._too_large(file.size)
        if file.external or not file.url or not is_slack_host(file.url, self._slack_api_url):
            raise TransferError(EXTERNAL_FILE, "the file is not stored in Slack")
        response = await self._open(file.url)
        try:
            chunks = response.aiter_raw(CHUNK_BYTES)  # one iterator: a second aiter_raw() would refuse
            size, first = await self._check(response, chunks, file)
            async with aclosing(_counted(first, chunks, size)) as body:
                yield Download(size, file.content_type, body)
        finally:
            await response.aclose()

    def _too_large(self, size: int) -> TransferError:
        detail = f"it is {_mb(size)} MB; the limit is {_mb(self._max_bytes)} MB"
        return TransferError(FILE_TOO_LARGE, detail)

    async def _open(self, url: str) -> httpx.Response:
        """GET `url` as a stream, following up to MAX_REDIRECTS redirects; the caller closes it."""
        for _ in range(MAX_REDIRECTS + 1):
            # identity: Content-Length must count the bytes we upload, not a compressed form of them.
            headers = {"Accept-Encoding": "identity"}
            if is_slack_host(url, self._slack_api_url):
                headers["Authorization"] = f"Bearer {self._token.get_secret_value()}"
            request = self._client.build_request("GET", url, headers=headers)
            try:
                response = await self._client.send(request, stream=True)
            except httpx.HTTPError as exc:
                raise TransferError(SLACK_DOWNLOAD, f"download failed: {type(exc).__name__}") from exc
            location = response.headers.get("Location")
            if not (response.is_redirect and location):
                return response
            await response.aclose()
            url = str(response.url.join(location))
        raise TransferError(SLACK_DOWNLOAD, f"more than {MAX_REDIRECTS} redirects")

    async def _check(
        self, response: httpx.Response, chunks: AsyncIterator[bytes], file: SlackFile
    ) -> tuple[int, bytes]:
        """The size to declare and the first chunk, once the download is known to be the file."""
        status = response.status_code
        if status in (401, 403):
            raise TransferError(SLACK_FILE_ACCESS, f"Slack refused the download (HTTP {status})")
        if status in (404, 410):
            raise TransferError(SLACK_FILE_MISSING, f"Slack has no such file (HTTP {status})")
        if status != 200:
            raise TransferError(SLACK_DOWNLOAD, f"Slack answered HTTP {status}")
        if response.headers.get("Content-Type", "").lower().startswith("text/html"):
            raise TransferError(SLACK_FILE_ACCESS, "Slack sent a sign-in page instead of the file")
        if response.headers.get("Content-Encoding", "identity").lower() != "identity":
            raise TransferError(SLACK_DOWNLOAD, "Slack sent the file compressed")
        size = _content_length(response) or file.size
        if size > self._max_bytes:
            raise self._too_large(size)
        try:
            first = await anext(chunks, b"")
        except httpx.HTTPError as exc:
            raise TransferError(SLACK_DOWNLOAD, f"download failed: {type(exc).__name__}") from exc
        if first.lstrip()[:9].lower().startswith(_HTML_STARTS):
            raise TransferError(SLACK_FILE_ACCESS, "Slack sent a sign-in page instead of the file")
        if not first:
            if size:
                raise TransferError(SLACK_DOWNLOAD, f"download ended after 0 of {size} bytes")
            raise TransferError(EMPTY_FILE, "the file is empty")
        if size == 0:
            # Chunked answer and no size in the file object: JoggAI's PUT needs the length up front.
            raise TransferError(SLACK_DOWNLOAD, "Slack sent no file size")
        return size, first


async def _counted(first: bytes, chunks: AsyncIterator[bytes], size: int) -> AsyncGenerator[bytes, None]:
    """The download's bytes, checked against `size`; raising here aborts the PUT mid-body."""
    received = 0
    try:
        chunk = first
        while chunk:
            received += len(chunk)
            if received > size:
                raise TransferError(SLACK_DOWNLOAD, f"Slack sent more than the {size} bytes announced")
            yield chunk
            chunk = await anext(chunks, b"")
    except httpx.HTTPError as exc:  # a dropped connection or a stalled read
        raise TransferError(
            SLACK_DOWNLOAD, f"download broke after {received} of {size} bytes: {type(exc).__name__}"
        ) from exc
    if received < size:
        raise TransferError(SLACK_DOWNLOAD, f"download ended after {received} of {size} bytes")


def _content_length(response: httpx.Response) -> int:
    try:
        return max(0, int(response.headers.get("Content-Length", "")))
    except ValueError:
        return 0


def _mb(size: int) -> str:
    return f"{size / 1_000_000:.1f}".removesuffix(".0")


async def _hashed(body: AsyncIterator[bytes], digest: hashlib._Hash) -> AsyncIterator[bytes]:
    async for chunk in body:
        digest.update(chunk)
        yield chunk
