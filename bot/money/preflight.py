"""Check a user's media link before any money is spent: does it answer, with a media file, of an allowed
size, and how long is it?

Per link, at most three small requests: a HEAD (status, type, size: the cheap refusals), a GET of the first
`head_bytes`, and, only when the container parser wants bytes past them, a GET of `tail_bytes` more (an
mp4's `moov` index written after the data, from where it starts; otherwise the end of the file, e.g. an Ogg
file's last page). Where the head's own headers already say so (an mp4's boxes running past it, an Ogg or
MP3 file), the tail is fetched before the file is parsed, so it is parsed once; otherwise a first parse
tells. Never more than `head_bytes + tail_bytes` of body are read, even from a server that ignores Range.

The duration comes from libmediainfo (pymediainfo, whose wheel bundles it) run on a sparse file: the bytes
we have, at their offsets in a file of the real size, zeros elsewhere. The parser seeks where the container
says its index is, and we note when it reads a part we do not have (`_SparseFile`): that is where the
second GET goes. A duration that rests on bytes we could not get is dropped (None), never guessed.

The bot fetches user-chosen URLs, so every connection is checked (SSRF): names are resolved by
`_GuardedResolver`, which drops loopback, private, link-local (incl. the 169.254.169.254 metadata
address), CGNAT, multicast, reserved and unspecified addresses before aiohttp connects, so the address
checked is the address used (no DNS-rebinding gap). IP literals, which aiohttp never resolves, and each
redirect hop (followed here, never by aiohttp) are checked before the request. `allowed_networks` exempts
given CIDRs: the tests' 127.0.0.1, or an internal media server. The name `localhost` is refused whatever
is allowed: it always means this machine.

A checker made with a `HostToken` measures files the bot may read with a token instead (shared Slack files,
with the bot token): the same requests and parser, but it fetches only the URLs the token is for (the
initial one and every redirect hop), sends the token with each, and skips the address check, since those
hosts are the bot's own configuration, not a user's choice.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import http
import io
import ipaddress
import logging
import multiprocessing
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Literal

import aiohttp
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult
from pydantic import SecretStr
from pymediainfo import MediaInfo
from yarl import URL

log = logging.getLogger(__name__)

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
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Servers that refuse HEAD (or a URL presigned for GET only, 403): the ranged GET answers instead.
_HEAD_REFUSED = frozenset({403, 405, 501})
_TRANSIENT_STATUSES = frozenset({408, 429})  # and every 5xx
# Types that say nothing of the content: the bytes decide.
_GENERIC_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream"})
_MEDIA_TYPES = _GENERIC_TYPES | {"application/mp4", "application/ogg"}  # and video/*, audio/*
_PAGE_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_HTML_STARTS = (b"<!doctype html", b"<html")
# Zeros the parser may read where we have no bytes before it sees the end of the file. libmediainfo
# reads a few hundred KB of an unknown region (WAV, Ogg) and up to 16 MB of a WebM's clusters; this
# bounds its CPU time whatever size the server claims.
_GAP_BUDGET = 4 * 1024 * 1024

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# getaddrinfo's answers that mean "no such name" (NXDOMAIN, or a name without addresses). Any other failure
# of the lookup (EAI_AGAIN: no DNS server answered, as when the network is down) says nothing of the name.
_NO_SUCH_NAME = frozenset(
    code for code in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", None)) if code is not None
)


@dataclass(frozen=True)
class MediaFacts:
    size: int | None  # bytes: Content-Length of HEAD, or the total of a Content-Range; None when unknown
    content_type: str  # as served, lower-case, parameters stripped ("video/mp4")
    duration_s: Decimal | None  # from the container header; None when it cannot be read (not a refusal)


class LinkRefused(Exception):
    """Why a link is refused: a machine `code`, a plain-text `reason` that completes "The link …" (it
    never quotes the URL or the response body), and whether trying again later may help."""

    def __init__(self, code: Code, reason: str, transient: bool = False) -> None:
        super().__init__(reason)
        self.code: Code = code
        self.reason = reason
        self.transient = transient


@dataclass(frozen=True, kw_only=True)
class HostToken:
    """A bearer token and the URLs it may be sent to (the bot token and Slack's file hosts)."""

    token: SecretStr
    admits: Callable[[str], bool]  # may the token go to this URL?


class Preflight:
    """Checks links; one instance (one connection pool) for the whole process.

    `allowed_networks` (CIDRs, e.g. "127.0.0.1/32", "10.20.0.0/16") are exempt from the address check:
    for the tests, or an internal media server. `resolver` is the name lookup the address check wraps
    (default aiohttp's); the tests give a fixed table, or one that fails as a dead DNS server does.
    `host_token`: measure files behind that token instead of users' links (see the module's doc).
    """

    def __init__(
        self,
        *,
        timeout_s: float = 5.0,
        head_bytes: int = 256 * 1024,
        tail_bytes: int = 128 * 1024,
        max_redirects: int = 3,
        allowed_networks: Sequence[str] = (),
        resolver: AbstractResolver | None = None,
        host_token: HostToken | None = None,
    ) -> None:
        self._timeout_s = timeout_s
        self._head_bytes = head_bytes
        self._tail_bytes = tail_bytes
        self._max_redirects = max_redirects
        self._allowed = tuple(ipaddress.ip_network(cidr) for cidr in allowed_networks)
        self._inner_resolver = resolver
        self._host_token = host_token
        # Created on first use: an aiohttp session belongs to the event loop it was made in.
        self._http: aiohttp.ClientSession | None = None
        self._resolver: AbstractResolver | None = None
        self.parses = 0  # how often the container parser ran, over all checks (tests and the bench)

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            inner = self._inner_resolver or aiohttp.DefaultResolver()
            # A token's hosts are the bot's own configuration: only users' links get the address check.
            self._resolver = inner if self._host_token else _GuardedResolver(inner, self.permits)
            connector = aiohttp.TCPConnector(resolver=self._resolver, ssl=httpx.create_ssl_context())
            self._http = aiohttp.ClientSession(
                connector=connector,
                # Each connection attempt gets half the budget, so one dead address leaves time for the
                # next; check() bounds the whole.
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._timeout_s / 2),
                # Never through the providers' proxy, and nothing of one user's link kept for the next.
                trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                # identity: byte ranges and counts are of the file itself, not of a compressed stream.
                headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
            )
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()
        if self._resolver is not None:
            await self._resolver.close()  # the connector only closes resolvers it made itself

    def permits(self, ip: IpAddress) -> bool:
        """May the bot connect to this address?"""
        if any(ip in network for network in self._allowed):
            return True
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            return self.permits(ip.ipv4_mapped)  # ::ffff:127.0.0.1 is 127.0.0.1
        return ip.is_global and not (
            ip.is_loopback
            or ip.is_private
            or ip.is_link_local
            or ip.is_multicast
            or ip.is_reserved
            or ip.is_unspecified
        )

    async def check(self, url: str, max_size: int | None = None) -> MediaFacts:
        """The facts of the media file at `url`, or LinkRefused saying why it cannot be used."""
        where = _loggable(url)
        try:
            target = _parse_url(url)
        except ValueError:
            raise LinkRefused("bad_url", "is not a valid web address") from None
        try:
            async with asyncio.timeout(self._timeout_s):
                facts = await self._check(target, max_size)
        except LinkRefused as refusal:
            log.info("preflight refused %s: %s", where, refusal.code)
            raise
        except Exception as exc:
            translated = self._refusal(exc)
            if translated is None:
                raise
            log.info("preflight refused %s: %s (%s)", where, translated.code, type(exc).__name__)
            # `from None`: aiohttp's messages carry the URL, which may hold a signed token.
            raise translated from None
        log.debug("preflight %s: %s", where, facts)
        return facts

    async def _check(self, url: URL, max_size: int | None) -> MediaFacts:
        size: int | None = None
        content_type = ""
        async with self._open("HEAD", url) as head:
            if head.status not in _HEAD_REFUSED:
                _refuse_status(head.status)
                content_type = _content_type(head)
                _refuse_type(content_type)
                # A HEAD saying 0 is not trusted (some handlers answer HEAD without a body length).
                size = head.content_length or None
                _refuse_size(size, max_size)

        async with self._open("GET", url, {"Range": f"bytes=0-{self._head_bytes - 1}"}) as got:
            if got.status == 416:  # there is no byte 0
                raise LinkRefused("empty", "points to an empty file")
            _refuse_status(got.status)
            content_type = _content_type(got) or content_type
            _refuse_type(content_type)
            served_size = _range_total(got) if got.status == 206 else got.content_length
            size = served_size if served_size is not None else size  # what GET says wins: HEAD may lie
            _refuse_size(size, max_size)
            data, complete = await _read(got, self._head_bytes)
            # A ranged answer ends where its range does: only a whole-file answer that ended is the file.
            whole = complete and got.status != 206
            source = got.url  # where the bytes came from, after redirects: the tail comes from there too

        if size == 0 or not data:
            raise LinkRefused("empty", "points to an empty file")
        if _looks_like_html(data):
            raise LinkRefused("web_page", "answers with a web page, not a media file")
        if size is None and whole:
            size = len(data)  # nobody said, but we have it all
        if size is None:
            # No length said (no byte ranges, or ranges of a length "*"), and more body than the head
            # window, perhaps without end: neither the size limit nor the duration can be checked.
            raise LinkRefused("unknown_size", "does not say how large the file is (its server sends no size)")
        probe, duration = await self._inspect(source, data, size)
        if content_type in _GENERIC_TYPES and probe.not_media:
            raise LinkRefused("not_media", f"is a {probe.format} file, not video or audio")
        return MediaFacts(size, content_type, duration)

    async def _inspect(self, source: URL, head: bytes, size: int) -> tuple[_Probe, Decimal | None]:
        """What the parser makes of the file, and its duration: None unless it rests on real bytes.

        Where the head's own headers say the parser will want the tail (`_tail_foreseen`), the tail is
        fetched before the one parse; otherwise the parse says whether it wanted more, and only then is
        the tail fetched and the file parsed again. Either way at most one tail is read.
        """
        window = _tail_foreseen(head, size, self._tail_bytes)
        probe: _Probe | None = None
        if window is None:
            probe = await self._parsed(size, [(0, head)])
            window = self._tail_window(probe, len(head), size)
            if window is None:
                return probe, probe.duration_s
        tail = await self._tail(source, *window)
        if not tail:
            if probe is None:
                probe = await self._parsed(size, [(0, head)])
                if self._tail_window(probe, len(head), size) is None:
                    return probe, probe.duration_s  # it did not want the tail after all
            return probe, None  # what the parser made of zeros where it wanted more is a guess
        probe = await self._parsed(size, [(0, head), (window[0], tail)])
        if probe.format == "MPEG-4" and any(len(head) <= jump < window[0] for jump in probe.jumps):
            return probe, None  # it sought an index before the tail we foresaw: a guess again
        return probe, probe.duration_s

    def _tail_window(self, probe: _Probe, have: int, size: int) -> tuple[int, int] | None:
        """The [start, end) past the head worth fetching, if the parser asked for bytes there.

        An MP4/MOV/M4A index (`moov`) starts where the parser jumped to, and its duration comes first:
        tail_bytes from there read even an index too large to take whole (a long phone recording's).
        Anything else wants the end of the file (an Ogg file's last page): the last tail_bytes.
        """
        if size <= have:
            return None
        jumps = [offset for offset in probe.jumps if offset >= have]
        if probe.format == "MPEG-4" and jumps:
            return jumps[0], min(size, jumps[0] + self._tail_bytes)
        start = max(have, size - self._tail_bytes)
        return (start, size) if probe.wanted(start, size) else None

    async def _parsed(self, size: int, pieces: Sequence[tuple[int, bytes]]) -> _Probe:
        self.parses += 1
        return await _parsed(size, pieces)

    async def _tail(self, url: URL, start: int, end: int) -> bytes:
        """Bytes [start, end) of the file, or b"" if the server will not give exactly those."""
        try:
            async with self._open("GET", url, {"Range": f"bytes={start}-{end - 1}"}) as got:
                if got.status != 206 or _range_start(got) != start:
                    return b""  # a 200 would be the whole file again: not read
                data, _ = await _read(got, end - start)
                return data
        except (aiohttp.ClientError, LinkRefused) as exc:
            # The head already showed a media file; without its end we only lack the duration.
            log.debug("preflight tail not fetched: %s", type(exc).__name__)
            return b""

    @contextlib.asynccontextmanager
    async def _open(
        self, method: str, url: URL, headers: Mapping[str, str] | None = None
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """One request, following at most max_redirects redirects, each target checked before it is
        asked. The body is left unread, and the connection closed if it was not read to the end."""
        session = self._session()
        sent = dict(headers or {})
        if self._host_token is not None:
            sent["Authorization"] = f"Bearer {self._host_token.token.get_secret_value()}"
        for _ in range(self._max_redirects + 1):
            self._check_target(url)  # before the token goes anywhere
            response = await session.request(method, url, headers=sent, allow_redirects=False)
            location = response.headers.get("Location")
            if response.status not in _REDIRECT_STATUSES or not location:
                break
            response.release()
            try:
                url = url.join(_parse_url(location))
            except ValueError:
                raise LinkRefused("bad_url", "redirects to an address that is not valid") from None
        else:
            raise LinkRefused("too_many_redirects", f"redirects more than {self._max_redirects} times")
        try:
            yield response
        finally:
            response.release()

    def _check_target(self, url: URL) -> None:
        if url.scheme not in ("http", "https") or not url.host:
            raise LinkRefused("bad_url", "is not an http or https link to a file")
        if self._host_token is not None:
            if not self._host_token.admits(str(url)):
                raise LinkRefused("bad_url", "leads to a host its token is not for")
            return
        host = url.host.rstrip(".").lower()
        if host == "localhost" or host.endswith(".localhost"):
            raise LinkRefused("private_address", "points to a private network address")
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return  # a name: its addresses are checked as it is resolved, see _GuardedResolver
        if not self.permits(ip):
            raise LinkRefused("private_address", "points to a private network address")

    def _refusal(self, exc: Exception) -> LinkRefused | None:
        """A transport failure in words; None for an exception that is a bug, not the link's fault."""
        if isinstance(exc, TimeoutError):  # ours, or aiohttp's connect timeout
            return LinkRefused("timeout", f"did not answer within {self._timeout_s:g} s", transient=True)
        if isinstance(exc, aiohttp.ClientConnectorDNSError):
            if isinstance(exc.os_error, _ForbiddenAddress):
                return LinkRefused("private_address", "points to a private network address")
            return _lookup_failure(exc.host, exc.os_error.errno)
        if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
            return LinkRefused(
                "unreachable", "could not be reached securely (its TLS certificate is not valid)"
            )
        if isinstance(exc, aiohttp.ClientConnectorError):
            # strerror alone: aiohttp's message names the address.
            why = os.strerror(exc.os_error.errno).lower() if exc.os_error.errno else "connection failed"
            return LinkRefused("unreachable", f"could not be reached ({why})", transient=True)
        if isinstance(exc, aiohttp.InvalidURL):  # e.g. 2130706433, 127.1: legacy forms of an address
            return LinkRefused("bad_url", "is not a valid web address")
        if isinstance(exc, aiohttp.ClientResponseError):
            return LinkRefused("unreachable", "did not answer with valid HTTP")
        if isinstance(exc, aiohttp.ClientError):
            return LinkRefused("unreachable", "broke off the connection", transient=True)
        return None


# -- addresses ----------------------------------------------------------------------------------------


def _lookup_failure(host: str, errno: int | None) -> LinkRefused:
    """A failed name lookup in words: only an answer that the name does not exist says so. Anything else
    (no DNS server reachable, a timeout, a server failure) means the host could not be reached: transient."""
    if errno in _NO_SUCH_NAME:
        return LinkRefused("unresolvable", f"names a host that does not exist ({host})")
    return LinkRefused(
        "unreachable", f"could not be reached (looking up {host} got no answer from DNS)", transient=True
    )


class _ForbiddenAddress(OSError):
    """Every address of the name is one the bot must not connect to (aiohttp wraps it in a
    ClientConnectorDNSError)."""


class _GuardedResolver(AbstractResolver):
    """Resolves with `inner`, then drops the addresses `permits` refuses. aiohttp connects only to what
    this returns, so no second lookup can swap in another address."""

    def __init__(self, inner: AbstractResolver, permits: Callable[[IpAddress], bool]) -> None:
        self._inner = inner
        self._permits = permits

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        kept = [r for r in results if self._permits(ipaddress.ip_address(r["host"]))]
        if not kept:
            raise _ForbiddenAddress(f"{host} resolves only to forbidden addresses")
        return kept

    async def close(self) -> None:
        await self._inner.close()


# -- HTTP answers -------------------------------------------------------------------------------------


def _parse_url(url: str) -> URL:
    # An already-encoded link is sent byte for byte: re-quoting would turn e.g. %2F into / in a signed
    # query string, and the signature would no longer match.
    encoded = url.isascii() and not any(c.isspace() or c in '"<>\\^`{|}' for c in url)
    return URL(url, encoded=encoded)


def _loggable(url: str) -> str:
    """scheme://host/path: never the query or fragment (signed tokens), nor user:password."""
    try:
        parsed = URL(url)
        return str(parsed.with_user(None).with_query(None).with_fragment(None))
    except (ValueError, TypeError):
        return "<not a URL>"


def _refuse_status(status: int) -> None:
    if 200 <= status < 300:
        return
    try:
        words = f" ({http.HTTPStatus(status).phrase.lower()})"
    except ValueError:
        words = ""
    transient = status >= 500 or status in _TRANSIENT_STATUSES
    raise LinkRefused("http_error", f"answered HTTP {status}{words}", transient)


def _content_type(response: aiohttp.ClientResponse) -> str:
    # The raw header: aiohttp's `content_type` says application/octet-stream when there is none.
    return response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()


def _refuse_type(content_type: str) -> None:
    if content_type in _PAGE_TYPES:
        raise LinkRefused("web_page", "answers with a web page, not a media file")
    if not (content_type.startswith(("video/", "audio/")) or content_type in _MEDIA_TYPES):
        raise LinkRefused("not_media", f"is served as {content_type}, not as video or audio")


def _refuse_size(size: int | None, max_size: int | None) -> None:
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


def _range_start(response: aiohttp.ClientResponse) -> int | None:
    return _content_range(response)[0]


def _range_total(response: aiohttp.ClientResponse) -> int | None:
    return _content_range(response)[1]


async def _read(response: aiohttp.ClientResponse, limit: int) -> tuple[bytes, bool]:
    """At most `limit` bytes of the body, and whether that was all of it."""
    data = bytearray()
    while len(data) < limit:
        chunk = await response.content.read(limit - len(data))
        if not chunk:
            return bytes(data), True
        data += chunk
    return bytes(data), response.content.at_eof()


def _looks_like_html(data: bytes) -> bool:
    start = data[:1024].removeprefix(b"\xef\xbb\xbf").lstrip().lower()
    return start.startswith(_HTML_STARTS)


# -- the container ------------------------------------------------------------------------------------


# Top-level boxes of an MP4/MOV/M4A file that may come first (QuickTime files may start without `ftyp`).
_MP4_FIRST_BOXES = frozenset({b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot"})


def _tail_foreseen(head: bytes, size: int, tail_bytes: int) -> tuple[int, int] | None:
    """The [start, end) past the head that the parser will want, where the head's own headers say so
    before any parse: the same window `Preflight._tail_window` finds after one. Fetching it first spares
    a second parse (it costs as much as the first).

    An MP4 whose top-level boxes run past the head without a `moov` among them: its index starts where
    they end. An Ogg file (its duration is on its last page) and an MP3 (tags at the end): the last
    `tail_bytes`. Anything else: None, and the parse decides.
    """
    have = len(head)
    if size <= have:
        return None
    if head[4:8] in _MP4_FIRST_BOXES:
        index = _mp4_box_past(head)
        return None if index is None or index >= size else (index, min(size, index + tail_bytes))
    if head.startswith((b"OggS", b"ID3")) or (head[:1] == b"\xff" and head[1:2] >= b"\xe0"):
        return max(have, size - tail_bytes), size
    return None


def _mp4_box_past(head: bytes) -> int | None:
    """Where the first top-level box past the head starts, if no `moov` came before it."""
    offset = 0
    while offset + 8 <= len(head):
        box_size, kind = int.from_bytes(head[offset : offset + 4], "big"), head[offset + 4 : offset + 8]
        if box_size == 1 and offset + 16 <= len(head):  # a 64-bit size follows the type
            box_size = int.from_bytes(head[offset + 8 : offset + 16], "big")
        if kind == b"moov" or box_size < 8 or not kind.isalnum():
            return None  # the index is here, or the box runs to the end (0), or this is not a box
        offset += box_size
    return offset if offset >= len(head) else None


@dataclass(frozen=True)
class _Probe:
    """What libmediainfo made of the bytes we have."""

    duration_s: Decimal | None
    format: str | None  # "MPEG-4", "PDF"…; None when not recognised
    tracks: frozenset[str]  # "Video", "Audio", "Image", "Text"…
    missing: tuple[tuple[int, int], ...]  # [start, end) spans it read where we had no bytes
    jumps: tuple[int, ...]  # where it sought to and read, where we had no bytes

    def wanted(self, start: int, end: int) -> bool:
        """Did the parser read anywhere in [start, end) that we did not have?"""
        return any(s < end and e > start for s, e in self.missing)

    @property
    def not_media(self) -> bool:
        """Recognised as something else (a PDF, an image). An unrecognised file passes: a media file cut
        to its first bytes (an mp3 behind a large cover picture) may not be recognisable."""
        return not self.tracks & {"Video", "Audio"} and bool(self.tracks & {"Image", "Text"})


# What libmediainfo reports, as one line: asking for just these fields instead of its full XML report
# saves a third of a parse's CPU (bench/preflight.py), which bursts of jobs pay in the bot's process.
_REPORT = "General;%Duration%|%Format%|%VideoCount%|%AudioCount%|%ImageCount%|%TextCount%"
_COUNTED = ("Video", "Audio", "Image", "Text")
# How much the parser is handed at a time. It works through each piece it is handed before it looks at
# whether it knows enough, so pieces of 16 KB instead of pymediainfo's 64 KB cost an MP3 half the CPU, a
# WAV a third less (bench/preflight.py), and tell us more closely which bytes it wanted.
_PARSE_STEP = 16 * 1024


# One process parses for the whole bot process: a burst of checks then takes at most one core and never the
# event loop's interpreter lock (parsing in a thread slowed acks under bursts: BENCHMARKS.md, "The link check
# before paying"), and queues instead. Started on first use; a worker that died is replaced.
_parser: concurrent.futures.ProcessPoolExecutor | None = None


def _parser_pool() -> concurrent.futures.ProcessPoolExecutor:
    global _parser
    if _parser is None:
        spawn = multiprocessing.get_context("spawn")  # no fork of a process with threads and a loop
        _parser = concurrent.futures.ProcessPoolExecutor(
            max_workers=1, mp_context=spawn, initializer=_follow_parent, initargs=(os.getpid(),)
        )
    return _parser


def _follow_parent(parent: int) -> None:
    """In the parser process: end when the bot process is gone (a kill -9 leaves no orphan behind)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=watch, name="follow-parent", daemon=True).start()


def start_parser() -> None:
    """Start the parser process now (it takes about half a second), not on the first user's link."""
    _parser_pool().submit(_probe, 0, [])


def stop_parser() -> None:
    """Stop the parser process (the bot is stopping); a later check would start another."""
    global _parser
    if _parser is not None:
        _parser.shutdown(wait=False, cancel_futures=True)
        _parser = None


async def _parsed(size: int, pieces: Sequence[tuple[int, bytes]]) -> _Probe:
    global _parser
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(_parser_pool(), _probe, size, list(pieces))
    except concurrent.futures.BrokenExecutor:
        _parser = None  # the parser process died (killed, out of memory): the next check starts another
        log.warning("preflight: the parser process died; the duration is unknown")
        return _Probe(None, None, frozenset(), (), ())


def _probe(size: int, pieces: Sequence[tuple[int, bytes]]) -> _Probe:
    """Run libmediainfo over a file of `size` bytes of which we have `pieces` (offset, bytes). Blocking."""
    sparse = _SparseFile(size, pieces)
    try:
        # parse_speed 0: read what the headers say (a WAV's length from its header) without scanning on.
        report = MediaInfo.parse(sparse, output=_REPORT, parse_speed=0, buffer_size=_PARSE_STEP)
    except (OSError, RuntimeError) as exc:  # the library would not load, or failed
        log.warning("preflight: libmediainfo failed: %s", exc)
        return _Probe(None, None, frozenset(), (), ())
    duration, format_, *counts = (str(report).strip().split("|") + [""] * 6)[:6]
    return _Probe(
        duration_s=_seconds(duration or None),
        format=format_ or None,
        tracks=frozenset(
            kind for kind, count in zip(_COUNTED, counts, strict=True) if count not in ("", "0")
        ),
        missing=tuple(sparse.missing),
        jumps=tuple(sparse.jumps),
    )


def _seconds(milliseconds: object) -> Decimal | None:
    """libmediainfo's duration (ms: an int, or a string such as "12346.667") in seconds."""
    if milliseconds is None:
        return None
    try:
        seconds = (Decimal(str(milliseconds)) / 1000).quantize(Decimal("0.001"))
    except InvalidOperation:
        return None
    return seconds if seconds > 0 else None


class _SparseFile(io.RawIOBase):
    """A read-only file of `size` bytes of which only `pieces` are known; the rest reads as zeros.

    Reads that touch an unknown span are recorded in `missing`, and in `jumps` when the parser sought
    there (rather than read on): that is how we learn it wanted an index or the end of the file. After
    _GAP_BUDGET bytes of zeros the file reads as ended.
    """

    def __init__(self, size: int, pieces: Sequence[tuple[int, bytes]]) -> None:
        super().__init__()
        self._size = size
        self._pieces = pieces
        self._position = 0
        self._gap_budget = _GAP_BUDGET
        self._sought = False
        self.missing: list[tuple[int, int]] = []
        self.jumps: list[int] = []

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        position = max(0, base + offset)
        self._sought = self._sought or position != self._position
        self._position = position
        return position

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        start = self._position
        end = min(self._size, start + len(buffer))
        if end <= start:
            return 0
        out = memoryview(buffer).cast("B")
        out[: end - start] = bytes(end - start)
        known = 0
        for offset, data in self._pieces:
            low, high = max(offset, start), min(offset + len(data), end)
            if low < high:
                out[low - start : high - start] = data[low - offset : high - offset]
                known += high - low
        sought, self._sought = self._sought, False
        if known < end - start:
            self.missing.append((start, end))
            if sought:
                self.jumps.append(start)
            self._gap_budget -= end - start - known
            if self._gap_budget < 0:
                return 0
        self._position = end
        return end - start
