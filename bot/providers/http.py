"""The HTTP plumbing every provider client shares: one aiohttp session per provider for API calls, a
key-less httpx client for presigned storage uploads, and one reading of transport failures.

API calls go through aiohttp: at a few hundred polls in flight, httpx's connection pool spends most of
its time in an O(n²) scan (encode/httpx#3215; bench/poll_sweep.py measured 11 ms of CPU per poll with
httpx). Presigned uploads stay on httpx, which streams a body of declared length simply.
"""

from __future__ import annotations

import os
import re
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx

from bot.observe.metrics import PROVIDER_SECONDS
from bot.providers.base import ErrorKind, ProviderError, ProviderUnreachable

# Connections to one provider's API per process: enough for every poll and submission the worker runs
# at once (bot/lanes/worker.py CAPACITY), so a request never queues for a connection behind slow ones.
MAX_CONNECTIONS = 250


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes


class ApiSession:
    """Requests to one provider's API, with its auth headers on every call and nowhere else."""

    def __init__(
        self,
        *,
        label: str,
        base_url: str,
        headers: Mapping[str, str],
        timeout_s: float = 10.0,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.label = label
        self.base_url = base_url.rstrip("/")
        self.host = urllib.parse.urlsplit(self.base_url).hostname or self.base_url
        self._headers = {"accept": "application/json", **headers}
        connect_s = min(5.0, timeout_s)
        # Connecting may take up to 5 s, each read up to timeout_s; waiting for a free connection from
        # the pool is bounded too (`connect` covers the wait plus the connect).
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=timeout_s + connect_s, sock_connect=connect_s, sock_read=timeout_s
        )
        self._max_connections = max_connections
        # HTTP(S)_PROXY / NO_PROXY are honoured, looked up once: aiohttp's trust_env would look them up
        # (and ~/.netrc) in a thread on every request.
        self._proxy = _env_proxy(self.base_url)
        # Created on first use: an aiohttp session belongs to the event loop it was made in.
        self._http: aiohttp.ClientSession | None = None

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                ssl=httpx.create_ssl_context(),  # certifi, or SSL_CERT_FILE/SSL_CERT_DIR
            )
            self._http = aiohttp.ClientSession(
                connector=connector,
                headers=self._headers,
                timeout=self._timeout,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()

    async def request(
        self, method: str, path: str, headers: Mapping[str, str] | None = None, **kwargs: Any
    ) -> Answer:
        """Send one request; transport failures raise ProviderError (TRANSIENT), ambiguous for a POST
        that may have been carried out. Any HTTP status is returned for the caller to read."""
        is_post = method == "POST"
        started = time.perf_counter()
        try:
            async with self._session().request(
                method,
                self.base_url + path,
                headers=headers,
                allow_redirects=False,  # a redirect would carry the API key to another host
                proxy=self._proxy,
                **kwargs,
            ) as response:
                answer = Answer(response.status, dict(response.headers), await response.read())
                PROVIDER_SECONDS.labels(self.label, method).observe(time.perf_counter() - started)
                return answer
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            # No connection, or none within the connect timeout: nothing was sent. Said as "cannot reach"
            # with the host, so that a machine without network (DNS down) is told apart from a bad link.
            why = network_error(exc, self._timeout.sock_connect)
            raise ProviderUnreachable(f"cannot reach {self.label} ({self.host}): {why}") from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            # Read timeouts, resets, a truncated body: the request may have been processed.
            if isinstance(exc, TimeoutError):
                why = f" within {self._timeout.sock_read:g} s (ReadTimeout)"
            else:
                why = f": {network_error(exc)}"
            raise ProviderError(
                ErrorKind.TRANSIENT, f"no answer from {self.label} ({self.host}){why}", ambiguous=is_post
            ) from exc


class StorageUploader:
    """PUTs to presigned storage URLs. A separate client with no default headers: the storage host must
    never see an API key. httpx timeouts apply per read/write, not to the whole transfer."""

    def __init__(self, *, label: str, timeout_s: float = 10.0) -> None:
        self.label = label
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=min(5.0, timeout_s)), follow_redirects=False
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def put(self, url: str, content_type: str, size: int, body: AsyncIterator[bytes]) -> None:
        """Stream `size` bytes to a presigned URL.

        Content-Length is set explicitly: httpx would otherwise send an async iterator chunked, and
        presigned storage URLs refuse chunked bodies (411). With the header set, h11 refuses to send more
        or fewer bytes than declared. An exception raised by `body` aborts the request and propagates
        unchanged, so the storage never sees a complete upload. A refusal is TRANSIENT: a fresh upload URL
        (expired or mismatched signature) fixes it.
        """
        headers = {"Content-Type": content_type, "Content-Length": str(size)}
        try:
            response = await self._client.put(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            message = f"upload to {self.label} storage failed: {type(exc).__name__}"
            raise ProviderError(ErrorKind.TRANSIENT, message) from exc
        status = response.status_code
        if 200 <= status < 300:
            return
        if 400 <= status < 500:
            reason = _storage_code(response.text)
            raise ProviderError(
                ErrorKind.TRANSIENT,
                f"{self.label} storage refused the upload: HTTP {status}" + (f" {reason}" if reason else ""),
            )
        raise ProviderError(ErrorKind.TRANSIENT, f"{self.label} storage answered HTTP {status}")


def is_http_url(value: object) -> bool:
    if not isinstance(value, str) or not value:
        return False
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL:
        return False
    return url.scheme in ("http", "https") and bool(url.host)


def _env_proxy(url: str) -> str | None:
    """The proxy the environment sets for `url` (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY).

    Only HTTP(S) proxies: aiohttp cannot speak SOCKS."""
    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or not proxy.startswith(("http://", "https://")):
        return None
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    return proxy


def network_error(exc: BaseException, timeout_s: float | None = None) -> str:
    """What kind of transport failure this is, in words, without the URL (the caller names the host):
    the one reading of it for provider calls, `doctor` and the start-up check."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return "its TLS certificate is not valid here"
    if isinstance(exc, aiohttp.ClientSSLError):
        return "the TLS handshake failed"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        # EAI_AGAIN ("Temporary failure in name resolution") is what a machine without DNS gets.
        return f"its name does not resolve here ({exc.os_error.strerror or type(exc.os_error).__name__})"
    if isinstance(exc, aiohttp.ClientConnectorError):
        errno = exc.os_error.errno  # its strerror is asyncio's "Connect call failed (address)"
        return f"the connection failed ({os.strerror(errno) if errno else type(exc.os_error).__name__})"
    within = f" within {timeout_s:g} s" if timeout_s else ""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return f"no connection{within}"
    if isinstance(exc, TimeoutError):
        return f"no answer{within} (ReadTimeout)"
    return f"the connection failed ({type(exc).__name__})"


def _storage_code(body: str) -> str:
    """The `<Code>` of an S3-style XML error (e.g. SignatureDoesNotMatch), or ""."""
    match = re.search(r"<Code>([^<]{1,100})</Code>", body[:4096])
    return match.group(1) if match else ""
