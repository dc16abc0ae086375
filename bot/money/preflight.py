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
says its index is, and we note when it reads a part we do not have (`SparseFile`): that is where the
second GET goes. A duration that rests on bytes we could not get is dropped (None), never guessed.

The bot fetches user-chosen URLs, so every connection is checked (SSRF): names are resolved by
`GuardedResolver`, which drops loopback, private, link-local (incl. the 169.254.169.254 metadata
address), CGNAT, multicast, reserved and unspecified addresses before aiohttp connects, so the address
checked is the address used (no DNS-rebinding gap). IP literals, which aiohttp never resolves, and each
redirect hop (followed here, never by aiohttp) are checked before the request. `allowed_networks` exempts
given CIDRs: the tests' 127.0.0.1, or an internal media server. The name `localhost` is refused whatever
is allowed: it always means this machine.

A checker made with a `HostToken` measures files the bot may read with a token instead (shared Slack files,
with the bot token): the same requests and parser, but it fetches only the URLs the token is for (the
initial one and every redirect hop), sends the token with each, and skips the address check, since those
hosts are the bot's own configuration, not a user's choice.

Here: the check's steps and its requests. Beside it: bot/money/link_http.py (refusals, the address check,
reading answers), bot/money/media_probe.py (the container parser and the sparse file it reads) and
bot/money/parser_process.py (the process the parser runs in).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

import aiohttp
import httpx
from aiohttp.abc import AbstractResolver
from pydantic import SecretStr
from yarl import URL

from bot.money.link_http import (
    GENERIC_TYPES,
    HEAD_REFUSED,
    REDIRECT_STATUSES,
    USER_AGENT,
    Code,
    ForbiddenAddress,
    GuardedResolver,
    IpAddress,
    LinkRefused,
    content_type_of,
    loggable,
    looks_like_html,
    lookup_failure,
    parse_url,
    range_start,
    range_total,
    read_at_most,
    refuse_size,
    refuse_status,
    refuse_type,
)
from bot.money.media_probe import Piece, Probe, tail_foreseen
from bot.money.parser_process import parsed, start_parser, stop_parser

__all__ = ["Code", "HostToken", "LinkRefused", "MediaFacts", "Preflight", "start_parser", "stop_parser"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MediaFacts:
    size: int | None  # bytes: Content-Length of HEAD, or the total of a Content-Range; None when unknown
    content_type: str  # as served, lower-case, parameters stripped ("video/mp4")
    duration_s: Decimal | None  # from the container header; None when it cannot be read (not a refusal)


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
            self._resolver = inner if self._host_token else GuardedResolver(inner=inner, permits=self.permits)
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
        where = loggable(url)
        try:
            target = parse_url(url)
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
            if head.status not in HEAD_REFUSED:
                refuse_status(head.status)
                content_type = content_type_of(head)
                refuse_type(content_type)
                # A HEAD saying 0 is not trusted (some handlers answer HEAD without a body length).
                size = head.content_length or None
                refuse_size(size, max_size)

        async with self._open("GET", url, {"Range": f"bytes=0-{self._head_bytes - 1}"}) as got:
            if got.status == 416:  # there is no byte 0
                raise LinkRefused("empty", "points to an empty file")
            refuse_status(got.status)
            content_type = content_type_of(got) or content_type
            refuse_type(content_type)
            served_size = range_total(got) if got.status == 206 else got.content_length
            size = served_size if served_size is not None else size  # what GET says wins: HEAD may lie
            refuse_size(size, max_size)
            data, complete = await read_at_most(got, self._head_bytes)
            # A ranged answer ends where its range does: only a whole-file answer that ended is the file.
            whole = complete and got.status != 206
            source = got.url  # where the bytes came from, after redirects: the tail comes from there too

        if size == 0 or not data:
            raise LinkRefused("empty", "points to an empty file")
        if looks_like_html(data):
            raise LinkRefused("web_page", "answers with a web page, not a media file")
        if size is None and whole:
            size = len(data)  # nobody said, but we have it all
        if size is None:
            # No length said (no byte ranges, or ranges of a length "*"), and more body than the head
            # window, perhaps without end: neither the size limit nor the duration can be checked.
            raise LinkRefused("unknown_size", "does not say how large the file is (its server sends no size)")
        probe, duration = await self._inspect(source, data, size)
        if content_type in GENERIC_TYPES and probe.not_media:
            raise LinkRefused("not_media", f"is a {probe.format} file, not video or audio")
        return MediaFacts(size, content_type, duration)

    async def _inspect(self, source: URL, head: bytes, size: int) -> tuple[Probe, Decimal | None]:
        """What the parser makes of the file, and its duration: None unless it rests on real bytes.

        Where the head's own headers say the parser will want the tail (`tail_foreseen`), the tail is
        fetched before the one parse; otherwise the parse says whether it wanted more, and only then is
        the tail fetched and the file parsed again. Either way at most one tail is read.
        """
        window = tail_foreseen(head, size, self._tail_bytes)
        probe: Probe | None = None
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

    def _tail_window(self, probe: Probe, have: int, size: int) -> tuple[int, int] | None:
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

    async def _parsed(self, size: int, pieces: Sequence[Piece]) -> Probe:
        self.parses += 1
        return await parsed(size, pieces)

    async def _tail(self, url: URL, start: int, end: int) -> bytes:
        """Bytes [start, end) of the file, or b"" if the server will not give exactly those."""
        try:
            async with self._open("GET", url, {"Range": f"bytes={start}-{end - 1}"}) as got:
                if got.status != 206 or range_start(got) != start:
                    return b""  # a 200 would be the whole file again: not read
                data, _ = await read_at_most(got, end - start)
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
            if response.status not in REDIRECT_STATUSES or not location:
                break
            response.release()
            try:
                url = url.join(parse_url(location))
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
            return  # a name: its addresses are checked as it is resolved, see GuardedResolver
        if not self.permits(ip):
            raise LinkRefused("private_address", "points to a private network address")

    def _refusal(self, exc: Exception) -> LinkRefused | None:
        """A transport failure in words; None for an exception that is a bug, not the link's fault."""
        if isinstance(exc, TimeoutError):  # ours, or aiohttp's connect timeout
            return LinkRefused("timeout", f"did not answer within {self._timeout_s:g} s", transient=True)
        if isinstance(exc, aiohttp.ClientConnectorDNSError):
            if isinstance(exc.os_error, ForbiddenAddress):
                return LinkRefused("private_address", "points to a private network address")
            return lookup_failure(exc.host, exc.os_error.errno)
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
