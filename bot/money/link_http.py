"""The link check's HTTP side (bot/money/preflight.py uses it): why a link is refused (`LinkRefused`), the
address check every connection passes (`GuardedResolver`, SSRF), and reading servers' answers (status, type,
size, ranges) without trusting them.
"""

from __future__ import annotations

import http
import ipaddress
import socket
from collections.abc import Callable
from typing import Literal

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

Code = Literal[
    "bad_url",
    "unresolvable",
    "private_address",
    "unreachable",
    "timeout",
    "too_many_redirects",
    "http_error",
    "web_page",
    "not_media",
    "empty",
    "too_large",
    "unknown_size",
]

USER_AGENT = "lipsync-bot-preflight/1.0"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Servers that refuse HEAD (or a URL presigned for GET only, 403): the ranged GET answers instead.
HEAD_REFUSED = frozenset({403, 405, 501})
_TRANSIENT_STATUSES = frozenset({408, 429})  # and every 5xx
# Types that say nothing of the content: the bytes decide.
GENERIC_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream"})
_MEDIA_TYPES = GENERIC_TYPES | {"application/mp4", "application/ogg"}  # and video/*, audio/*
_PAGE_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_HTML_STARTS = (b"<!doctype html", b"<html")
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# getaddrinfo's answers that mean "no such name" (NXDOMAIN, or a name without addresses). Any other failure
# of the lookup (EAI_AGAIN: no DNS server answered, as when the network is down) says nothing of the name.
_NO_SUCH_NAME = frozenset(
    code for code in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", None)) if code is not None
)


class LinkRefused(Exception):
    """Why a link is refused: a machine `code`, a plain-text `reason` that completes "The link …" (it
    never quotes the URL or the response body), and whether trying again later may help."""

    def __init__(self, code: Code, reason: str, transient: bool = False) -> None:
        super().__init__(reason)
        self.code: Code = code
        self.reason = reason
        self.transient = transient


# -- addresses ----------------------------------------------------------------------------------------


def lookup_failure(host: str, errno: int | None) -> LinkRefused:
    """A failed name lookup in words: only an answer that the name does not exist says so. Anything else
    (no DNS server reachable, a timeout, a server failure) means the host could not be reached: transient."""
    if errno in _NO_SUCH_NAME:
        return LinkRefused("unresolvable", f"names a host that does not exist ({host})")
    return LinkRefused(
        "unreachable", f"could not be reached (looking up {host} got no answer from DNS)", transient=True
    )


class ForbiddenAddress(OSError):
    """Every address of the name is one the bot must not connect to (aiohttp wraps it in a
    ClientConnectorDNSError)."""


class GuardedResolver(AbstractResolver):
    """Resolves with `inner`, then drops the addresses `permits` refuses. aiohttp connects only to what
    this returns, so no second lookup can swap in another address."""

    def __init__(self, *, inner: AbstractResolver, permits: Callable[[IpAddress], bool]) -> None:
        self._inner = inner
        self._permits = permits

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        kept = [r for r in results if self._permits(ipaddress.ip_address(r["host"]))]
        if not kept:
            raise ForbiddenAddress(f"{host} resolves only to forbidden addresses")
        return kept

    async def close(self) -> None:
        await self._inner.close()


# -- HTTP answers -------------------------------------------------------------------------------------


def parse_url(url: str) -> URL:
    # An already-encoded link is sent byte for byte: re-quoting would turn e.g. %2F into / in a signed
    # query string, and the signature would no longer match.
    encoded = url.isascii() and not any(c.isspace() or c in '"<>\\^`{|}' for c in url)
    return URL(url, encoded=encoded)


def loggable(url: str) -> str:
    """scheme://host/path: never the query or fragment (signed tokens), nor user:password."""
    try:
        parsed = URL(url)
        return str(parsed.with_user(None).with_query(None).with_fragment(None))
    except (ValueError, TypeError):
        return "<not a URL>"


def refuse_status(status: int) -> None:
    if 200 <= status < 300:
        return
    try:
        words = f" ({http.HTTPStatus(status).phrase.lower()})"
    except ValueError:
        words = ""
    transient = status >= 500 or status in _TRANSIENT_STATUSES
    raise LinkRefused("http_error", f"answered HTTP {status}{words}", transient)


def content_type_of(response: aiohttp.ClientResponse) -> str:
    # The raw header: aiohttp's `content_type` says application/octet-stream when there is none.
    return response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()


def refuse_type(content_type: str) -> None:
    if content_type in _PAGE_TYPES:
        raise LinkRefused("web_page", "answers with a web page, not a media file")
    if not (content_type.startswith(("video/", "audio/")) or content_type in _MEDIA_TYPES):
        raise LinkRefused("not_media", f"is served as {content_type}, not as video or audio")


def refuse_size(size: int | None, max_size: int | None) -> None:
    if size is not None and max_size is not None and size > max_size:
        actual, limit = _human(size), _human(max_size)
        if actual == limit:  # 1.04 GB against 1 GB would read "is 1 GB; the limit is 1 GB"
            actual, limit = f"{size:,} bytes", f"{max_size:,} bytes"
        raise LinkRefused("too_large", f"is {actual}; the limit is {limit}")


def _human(size: int) -> str:
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if size >= scale:
            return f"{size / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} bytes"


def _content_range(response: aiohttp.ClientResponse) -> tuple[int | None, int | None]:
    """(first byte, total size) of `Content-Range: bytes 0-99/1234`; None where absent or "*"."""
    value = response.headers.get("Content-Range", "")
    unit, _, rest = value.partition(" ")
    span, _, total = rest.partition("/")
    first = span.partition("-")[0]
    if unit.strip().lower() != "bytes":
        return None, None
    return (int(first) if first.isdigit() else None), (int(total) if total.isdigit() else None)


def range_start(response: aiohttp.ClientResponse) -> int | None:
    return _content_range(response)[0]


def range_total(response: aiohttp.ClientResponse) -> int | None:
    return _content_range(response)[1]


async def read_at_most(response: aiohttp.ClientResponse, limit: int) -> tuple[bytes, bool]:
    """At most `limit` bytes of the body, and whether that was all of it."""
    data = bytearray()
    while len(data) < limit:
        chunk = await response.content.read(limit - len(data))
        if not chunk:
            return bytes(data), True
        data += chunk
    return bytes(data), response.content.at_eof()


def looks_like_html(data: bytes) -> bool:
    start = data[:1024].removeprefix(b"\xef\xbb\xbf").lstrip().lower()
    return start.startswith(_HTML_STARTS)
