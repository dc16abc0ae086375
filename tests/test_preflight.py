"""The link preflight (bot/money/preflight.py) against real HTTP servers on loopback addresses.

The media server is reached as 127.0.0.1 with `allowed_networks=["127.0.0.1/32"]`; every other loopback,
private or link-local address must be refused, including behind a redirect or a name. Media files are
built by tests/media_samples.py; small head/tail windows keep them small while exercising the tail fetch.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from pydantic import SecretStr

from bot.money.preflight import HostToken, LinkRefused, MediaFacts, Preflight
from tests import media_samples as samples
from tests.fakes.media_server import Item, MediaServer
from tests.fakes.server import wait_until
from tests.fakes.slack_api import FakeSlack
from tests.harness import free_port

# Small windows (several of the 16 KiB steps the parser is fed in) keep the sample files small.
HEAD, TAIL = 64 * 1024, 32 * 1024
ALLOWED = ["127.0.0.1/32"]
TOLERANCE = Decimal("0.05")  # whole frames and packets: the files end on a frame boundary


@pytest.fixture(scope="module")
def server() -> Iterator[MediaServer]:
    with MediaServer() as media:
        yield media


@pytest.fixture(scope="module")
def other_loopback(server: MediaServer) -> Iterator[MediaServer]:
    """A server on 127.0.0.2, same port: reaching it would mean an address check was skipped."""
    with MediaServer("127.0.0.2", port=server.port) as media:
        yield media


@pytest.fixture
def path(request: pytest.FixtureRequest) -> str:
    """A path of this test's own, so counts from other tests never mix in."""
    return "/" + request.node.name.replace("[", "-").rstrip("]") + ".bin"


class StaticResolver(AbstractResolver):
    """Name lookups from a fixed table, as /etc/hosts would give them: the preflight's address check
    wraps whatever resolver it is given."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
            )
            for address in self.table[host]
        ]

    async def close(self) -> None:
        pass


def check(url: str, max_size: int | None = None, **options: Any) -> MediaFacts:
    options.setdefault("allowed_networks", ALLOWED)
    options.setdefault("head_bytes", HEAD)
    options.setdefault("tail_bytes", TAIL)

    async def go() -> MediaFacts:
        preflight = Preflight(**options)
        try:
            return await preflight.check(url, max_size)
        finally:
            await preflight.aclose()

    return asyncio.run(go())


def refused(url: str, code: str, max_size: int | None = None, **options: Any) -> LinkRefused:
    """The refusal, checked for what every refusal must be: its code, and one plain sentence for the user
    that quotes neither the URL nor the server's body."""
    with pytest.raises(LinkRefused) as caught:
        check(url, max_size, **options)
    refusal = caught.value
    assert refusal.code == code, refusal.reason
    reason = refusal.reason
    assert reason and reason == reason.strip() and "\n" not in reason and len(reason) < 100
    assert "://" not in reason and "127.0.0" not in reason and "<" not in reason
    return refusal


def near(duration: Decimal | None, seconds: float) -> bool:
    return duration is not None and abs(duration - Decimal(str(seconds))) <= TOLERANCE


def body_bytes(server: MediaServer, path: str) -> int:
    with server.lock:
        return server.sent[path]


# -- durations ------------------------------------------------------------------------------------

BIG = 200_000  # larger than HEAD + TAIL: the middle of the file is never fetched

FORMATS: dict[str, tuple[Callable[[], bytes], str, float]] = {
    "wav": (lambda: samples.wav(12.5), "audio/wav", 12.5),
    "mp4-moov-first": (lambda: samples.mp4(7.2, filler=BIG), "video/mp4", 7.2),
    "mp4-moov-last": (lambda: samples.mp4(7.2, moov_at_end=True, filler=BIG), "video/mp4", 7.2),
    "mp4-video-only": (lambda: samples.mp4(4.0, audio=False, moov_at_end=True, filler=BIG), "video/mp4", 4.0),
    "mov": (lambda: samples.mov(5.0, moov_at_end=True, filler=BIG), "video/quicktime", 5.0),
    "m4a": (lambda: samples.m4a(6.0, moov_at_end=True, filler=BIG), "audio/mp4", 6.0),
    "mp3": (lambda: samples.mp3(30.0), "audio/mpeg", 30.0),
    "opus": (lambda: samples.opus(60.0, packet_size=100), "audio/ogg", 60.0),
    "vorbis": (lambda: samples.vorbis(8.0), "audio/ogg", 8.0),
    "webm": (lambda: samples.webm(11.5), "video/webm", 11.5),
    "webm-audio": (lambda: samples.webm(2.5, video=False), "audio/webm", 2.5),
}


@pytest.mark.parametrize("kind", FORMATS)
def test_reads_the_duration_of_each_format_within_the_byte_budget(
    server: MediaServer, path: str, kind: str
) -> None:
    make, content_type, seconds = FORMATS[kind]
    body = make()
    url = server.add(path, Item(body, content_type))

    facts = check(url)

    assert facts.size == len(body)
    assert facts.content_type == content_type
    assert near(facts.duration_s, seconds), facts
    assert body_bytes(server, path) <= HEAD + TAIL


def test_fetches_the_index_where_the_parser_jumped_to(server: MediaServer, path: str) -> None:
    body = samples.mp4(7.2, moov_at_end=True, filler=BIG)
    moov = body.rindex(b"moov") - 4
    url = server.add(path, Item(body, "video/mp4"))

    check(url)

    ranges = [r for method, r in server.hits(path) if method == "GET"]
    assert ranges == [f"bytes=0-{HEAD - 1}", f"bytes={moov}-{len(body) - 1}"]  # the index, no more


def test_fetches_the_end_of_an_ogg_file(server: MediaServer, path: str) -> None:
    body = samples.opus(60.0, packet_size=100)
    url = server.add(path, Item(body, "audio/ogg"))

    check(url)

    ranges = [r for method, r in server.hits(path) if method == "GET"]
    assert ranges == [f"bytes=0-{HEAD - 1}", f"bytes={len(body) - TAIL}-{len(body) - 1}"]
    assert body_bytes(server, path) == HEAD + TAIL


def test_an_index_larger_than_the_tail_window_still_gives_the_duration(
    server: MediaServer, path: str
) -> None:
    body = samples.mp4(600.0, moov_at_end=True, filler=BIG, listed_sizes=True)
    moov_size = len(body) - body.rindex(b"moov") + 4
    assert moov_size > 4 * TAIL
    url = server.add(path, Item(body, "video/mp4"))

    facts = check(url)

    assert near(facts.duration_s, 600)
    assert body_bytes(server, path) == HEAD + TAIL


def measured(url: str, **options: Any) -> tuple[MediaFacts, int]:
    """The facts of `url`, and how often the container parser ran for them."""
    options.setdefault("head_bytes", HEAD)
    options.setdefault("tail_bytes", TAIL)

    async def go() -> tuple[MediaFacts, int]:
        preflight = Preflight(allowed_networks=ALLOWED, **options)
        try:
            return await preflight.check(url), preflight.parses
        finally:
            await preflight.aclose()

    return asyncio.run(go())


ENDS_WANTED: dict[str, tuple[Callable[[], bytes], str, float]] = {
    "mp4-moov-last": FORMATS["mp4-moov-last"],
    "mov": FORMATS["mov"],
    "m4a": FORMATS["m4a"],
    "mp3": FORMATS["mp3"],
    "opus": FORMATS["opus"],
}


@pytest.mark.parametrize("kind", ENDS_WANTED)
def test_a_file_whose_end_is_wanted_is_parsed_once_with_its_tail(
    server: MediaServer, path: str, kind: str
) -> None:
    make, content_type, seconds = ENDS_WANTED[kind]
    body = make()
    url = server.add(path, Item(body, content_type))

    facts, parses = measured(url)

    assert near(facts.duration_s, seconds), facts
    assert parses == 1  # the tail was fetched before the parse, not after a first one asked for it
    assert [method for method, _ in server.hits(path)] == ["HEAD", "GET", "GET"]
    assert body_bytes(server, path) <= HEAD + TAIL


def test_a_long_ogg_file_read_with_production_windows(server: MediaServer, path: str) -> None:
    # The parser looks for the last page from 256 KB before the end: before the tail, which it still finds.
    body = samples.opus(300.0, packet_size=60)
    url = server.add(path, Item(body, "audio/ogg"))

    facts, parses = measured(url, head_bytes=256 * 1024, tail_bytes=128 * 1024)

    assert near(facts.duration_s, 300.0) and parses == 1
    assert body_bytes(server, path) == 256 * 1024 + 128 * 1024


def test_a_file_needing_no_tail_is_parsed_once(server: MediaServer, path: str) -> None:
    url = server.add(path, Item(samples.wav(60.0), "audio/wav"))  # its length is in its header

    facts, parses = measured(url, head_bytes=256 * 1024, tail_bytes=128 * 1024)

    assert near(facts.duration_s, 60.0) and parses == 1
    assert [method for method, _ in server.hits(path)] == ["HEAD", "GET"]


def test_a_file_with_its_index_first_costs_a_head_and_one_ranged_get(server: MediaServer, path: str) -> None:
    url = server.add(path, Item(samples.mp4(7.2, filler=BIG), "video/mp4"))

    assert near(check(url).duration_s, 7.2)

    assert server.hits(path) == [("HEAD", ""), ("GET", f"bytes=0-{HEAD - 1}")]


def test_production_windows_read_a_long_video_with_its_index_last(server: MediaServer, path: str) -> None:
    body = samples.mp4(95.0, moov_at_end=True, filler=2_000_000)
    url = server.add(path, Item(body, "video/mp4"))

    facts = check(url, head_bytes=256 * 1024, tail_bytes=128 * 1024)

    assert near(facts.duration_s, 95)
    assert body_bytes(server, path) <= 256 * 1024 + 128 * 1024


def test_octet_stream_and_small_whole_files(server: MediaServer, path: str) -> None:
    body = samples.webm(3.0)  # smaller than the head window: one GET has it all
    url = server.add(path, Item(body, "application/octet-stream"))

    facts = check(url)

    assert facts == MediaFacts(len(body), "application/octet-stream", Decimal("3"))


def test_a_body_of_unsaid_length(server: MediaServer, path: str) -> None:
    whole = samples.webm(3.0)
    cut = samples.wav(30.0)  # longer than the head window: its size stays unknown
    whole_url = server.add(path, Item(whole, "video/webm", chunked=True))
    cut_url = server.add(path + "-cut", Item(cut, "audio/wav", chunked=True))

    assert check(whole_url) == MediaFacts(len(whole), "video/webm", Decimal("3"))
    # The header says 30 s, but without the file's size neither it nor the size limit can be checked.
    refusal = refused(cut_url, "unknown_size")
    assert refusal.reason == "does not say how large the file is (its server sends no size)"
    assert not refusal.transient


def test_media_whose_duration_cannot_be_read_is_not_refused(server: MediaServer, path: str) -> None:
    url = server.add(path, Item(b"\x00\x01 not a container we know " * 100, "video/mp4"))

    facts = check(url)

    assert facts.duration_s is None and facts.size == 2700


@pytest.mark.parametrize("status", [405, 501, 403])  # 403: a link presigned for GET only
def test_head_refused_falls_back_to_the_ranged_get(server: MediaServer, path: str, status: int) -> None:
    url = server.add(path, Item(samples.wav(1.0), "audio/x-wav", head_status=status))  # within the head

    facts = check(url)

    assert facts.duration_s == Decimal("1") and facts.content_type == "audio/x-wav"
    assert [method for method, _ in server.hits(path)] == ["HEAD", "GET"]


@pytest.mark.parametrize("moov_at_end", [False, True], ids=["index-first", "index-last"])
def test_a_server_ignoring_range(server: MediaServer, path: str, moov_at_end: bool) -> None:
    body = samples.mp4(7.2, moov_at_end=moov_at_end, filler=BIG)
    url = server.add(path, Item(body, "video/mp4", ranges=False))

    facts = check(url)

    assert facts.size == len(body)
    if moov_at_end:  # the tail came as the whole file again (200): not read, so no duration
        assert facts.duration_s is None
        assert [method for method, _ in server.hits(path)] == ["HEAD", "GET", "GET"]
    else:
        assert near(facts.duration_s, 7.2)


def test_an_endless_body_is_refused_after_the_head_window(server: MediaServer, path: str) -> None:
    head = samples.mp4(3.0, filler=1000)  # 200 video/mp4, an ftyp header, no length, then zeros forever
    url = server.add(path, Item(head, "video/mp4", endless=True))

    # Had it read on, the check would have run into its timeout: the body has no end.
    refusal = refused(url, "unknown_size", timeout_s=30)

    assert not refusal.transient
    wait_until(lambda: path in server.gone, message="the client closed the endless stream")
    # What the server got out: the head window plus what the sockets' buffers absorbed.
    assert body_bytes(server, path) < 64 * 1024 * 1024


def test_redirects_are_followed_within_the_limit(server: MediaServer, path: str) -> None:
    url = server.add(path, Item(samples.wav(1.5), "audio/wav"))
    server.add(path + "-1", Item(redirect=path))  # relative
    first = server.add(path + "-2", Item(redirect=url))

    assert check(first, max_redirects=2).duration_s == Decimal("1.5")


def test_two_links_checked_at_once_share_one_preflight(server: MediaServer, path: str) -> None:
    video = server.add(path + ".mp4", Item(samples.mp4(4.0, moov_at_end=True, filler=BIG), "video/mp4"))
    audio = server.add(path + ".ogg", Item(samples.opus(4.0), "audio/ogg"))

    async def go() -> list[MediaFacts]:
        preflight = Preflight(allowed_networks=ALLOWED, head_bytes=HEAD, tail_bytes=TAIL)
        try:
            return list(await asyncio.gather(preflight.check(video), preflight.check(audio)))
        finally:
            await preflight.aclose()

    assert [near(facts.duration_s, 4.0) for facts in asyncio.run(go())] == [True, True]


# -- refusals: what the link serves ----------------------------------------------------------------


def test_html_page(server: MediaServer, path: str) -> None:
    url = server.add(path, Item(b"<!DOCTYPE html><html>sign in</html>", "text/html; charset=utf-8"))

    refusal = refused(url, "web_page")

    assert refusal.reason == "answers with a web page, not a media file" and not refusal.transient
    assert body_bytes(server, path) == 0  # the HEAD said enough


def test_html_served_as_octet_stream(server: MediaServer, path: str) -> None:
    url = server.add(path, Item(b"\n  <html><body>Download will start shortly</body></html>"))

    refused(url, "web_page")


def test_not_media_type(server: MediaServer, path: str) -> None:
    url = server.add(path, Item(b'{"error": "nope"}', "application/json"))

    refusal = refused(url, "not_media")

    assert "application/json" in refusal.reason


def test_a_document_served_as_octet_stream_is_not_media(server: MediaServer, path: str) -> None:
    url = server.add(path, Item(b"%PDF-1.4\n" + bytes(3000)))

    assert "PDF" in refused(url, "not_media").reason


@pytest.mark.parametrize(
    ("status", "words", "transient"),
    [
        (404, "answered HTTP 404 (not found)", False),
        (410, "answered HTTP 410 (gone)", False),
        (429, "answered HTTP 429 (too many requests)", True),
        (500, "answered HTTP 500 (internal server error)", True),
        (503, "answered HTTP 503 (service unavailable)", True),
    ],
)
def test_http_errors(server: MediaServer, path: str, status: int, words: str, transient: bool) -> None:
    url = server.add(path, Item(b"x", "video/mp4", status=status))

    refusal = refused(url, "http_error")

    assert (refusal.reason, refusal.transient) == (words, transient)


@pytest.mark.parametrize("ranges", [True, False], ids=["416", "200-empty"])
def test_empty_file(server: MediaServer, path: str, ranges: bool) -> None:
    url = server.add(path, Item(b"", "video/mp4", ranges=ranges))

    assert refused(url, "empty").reason == "points to an empty file"


def test_too_large_by_head(server: MediaServer, path: str) -> None:
    url = server.add(path, Item(samples.wav(1.0), "audio/wav", head_length=2_100_000_000))

    refusal = refused(url, "too_large", max_size=1_000_000_000)

    assert refusal.reason == "is 2.1 GB; the limit is 1 GB" and not refusal.transient
    assert body_bytes(server, path) == 0


def test_too_large_by_content_range_when_head_lies(server: MediaServer, path: str) -> None:
    body = samples.mp4(3.0, filler=2_500_000)
    url = server.add(path, Item(body, "video/mp4", head_length=1000))

    refusal = refused(url, "too_large", max_size=100_000)

    assert refusal.reason == "is 2.5 MB; the limit is 100 KB"
    assert body_bytes(server, path) <= HEAD


# -- refusals: where the link points -----------------------------------------------------------------


def test_localhost_by_name(server: MediaServer, path: str) -> None:
    server.add(path, Item(samples.wav(1.0), "audio/wav"))

    refusal = refused(f"http://localhost:{server.port}{path}", "private_address", allowed_networks=[])

    assert refusal.reason == "points to a private network address" and not refusal.transient
    assert server.hits(path) == []


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]", "169.254.169.254", "10.0.0.1", "[::ffff:10.0.0.1]"])
def test_ip_literals_are_refused_before_any_connection(server: MediaServer, path: str, host: str) -> None:
    server.add(path, Item(samples.wav(1.0), "audio/wav"))

    # A connection attempt to 10.0.0.1 would end in "timeout" or "unreachable", not in this refusal.
    refused(f"http://{host}:{server.port}{path}", "private_address", allowed_networks=[], timeout_s=2)

    assert server.hits(path) == []


def test_a_name_resolving_to_loopback_is_refused(server: MediaServer, path: str) -> None:
    server.add(path, Item(samples.wav(1.0), "audio/wav"))
    names = StaticResolver({"media.example": ["127.0.0.1"], "metadata.example": ["169.254.169.254"]})

    for name in ("media.example", "metadata.example"):
        url = f"http://{name}:{server.port}{path}"
        refused(url, "private_address", allowed_networks=[], resolver=names, timeout_s=2)

    assert server.hits(path) == []


def test_only_the_permitted_addresses_of_a_name_are_connected_to(
    server: MediaServer, other_loopback: MediaServer, path: str
) -> None:
    server.add(path, Item(samples.wav(1.0), "audio/wav"))
    other_loopback.add(path, Item(samples.wav(1.0), "audio/wav"))
    names = StaticResolver({"cdn.example": ["127.0.0.2", "127.0.0.1", "127.0.0.2"]})

    facts = check(f"http://cdn.example:{server.port}{path}", resolver=names)

    assert facts.duration_s == Decimal("1")
    assert other_loopback.hits(path) == [] and len(server.hits(path)) == 2


def test_redirect_to_another_loopback_address(
    server: MediaServer, other_loopback: MediaServer, path: str
) -> None:
    target = other_loopback.add(path, Item(samples.wav(1.0), "audio/wav"))
    url = server.add(path + "-go", Item(redirect=target))

    refused(url, "private_address")

    assert other_loopback.hits(path) == []


def test_redirect_to_localhost(server: MediaServer, path: str) -> None:
    server.add(path, Item(samples.wav(1.0), "audio/wav"))
    url = server.add(path + "-go", Item(redirect=f"http://localhost:{server.port}{path}"))

    refused(url, "private_address")

    assert server.hits(path) == []


def test_redirect_to_another_scheme(server: MediaServer, path: str) -> None:
    url = server.add(path, Item(redirect="file:///etc/passwd"))

    refused(url, "bad_url")


def test_redirect_loop(server: MediaServer, path: str) -> None:
    url = server.add(path, Item(redirect=path))

    assert refused(url, "too_many_redirects", max_redirects=3).reason == "redirects more than 3 times"

    assert server.hits(path) == [("HEAD", "")] * 4


@pytest.mark.parametrize(
    "url", ["ftp://example.com/a.mp4", "http:///a.mp4", "not a url", "http://2130706433/"]
)
def test_bad_urls(url: str) -> None:
    refused(url, "bad_url", allowed_networks=[])


def test_unresolvable_name() -> None:
    refusal = refused("http://nonexistent.invalid/a.mp4", "unresolvable", allowed_networks=[])

    assert refusal.reason == "names a host that does not exist (nonexistent.invalid)"


class DeadDns(AbstractResolver):
    """What getaddrinfo answers when no DNS server can be reached (the network is down): EAI_AGAIN."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    async def close(self) -> None:
        pass


def test_a_lookup_without_answer_is_unreachable_not_a_missing_host(server: MediaServer, path: str) -> None:
    server.add(path, Item(samples.wav(1.0), "audio/wav"))

    refusal = refused(f"http://media.example:{server.port}{path}", "unreachable", resolver=DeadDns())

    assert refusal.transient
    assert refusal.reason == "could not be reached (looking up media.example got no answer from DNS)"
    assert "does not exist" not in refusal.reason
    assert server.hits(path) == []


def test_a_name_that_does_not_exist_is_said_so_for_good(server: MediaServer) -> None:
    names = StaticResolver({})  # answers EAI_NONAME, as for NXDOMAIN

    refusal = refused(f"http://gone.example:{server.port}/a.wav", "unresolvable", resolver=names)

    assert refusal.reason == "names a host that does not exist (gone.example)" and not refusal.transient


# -- a file behind a token (shared Slack files) ------------------------------------------------------


def measure(
    url: str, admits: Callable[[str], bool], token: str = "xoxb-secret", **options: Any
) -> MediaFacts:
    host_token = HostToken(token=SecretStr(token), admits=admits)
    return check(url, host_token=host_token, allowed_networks=[], **options)


def test_a_token_goes_with_every_request_to_its_hosts_only(server: MediaServer, path: str) -> None:
    with MediaServer() as elsewhere:
        audio = server.add(path, Item(samples.wav(2.0), "audio/wav"))
        moved = elsewhere.add(path, Item(samples.wav(2.0), "audio/wav"))
        server.add(path + "-away", Item(redirect=moved))
        mine = server.base_url + "/"

        # Reached at 127.0.0.1 with no network allowed: the token's hosts are not users' links.
        facts = measure(audio, lambda url: url.startswith(mine))
        with pytest.raises(LinkRefused) as caught:
            measure(server.base_url + path + "-away", lambda url: url.startswith(mine))

        assert facts.duration_s == Decimal("2")
        assert caught.value.code == "bad_url"
        assert elsewhere.requests == []  # the redirect off the token's hosts was never followed


def test_a_token_is_sent_as_a_bearer_header(slack: FakeSlack) -> None:
    body = samples.mp3(10.0)  # within the production head window: the fake Slack ignores Range
    file = slack.add_file("F1", "voice.mp3", "audio/mpeg", "mp3", body)
    slack_hosts = lambda url: url.startswith(slack.base_url)  # noqa: E731

    facts = measure(file["url_private_download"], slack_hosts, slack.bot_token, head_bytes=256 * 1024)

    assert facts.size == len(body) and near(facts.duration_s, 10)
    assert slack.downloads and all(d.had_valid_token for d in slack.downloads)


def test_connection_refused_is_transient() -> None:
    refusal = refused(f"http://127.0.0.1:{free_port()}/a.mp4", "unreachable")

    assert refusal.transient


def test_a_stalled_server_times_out_within_the_budget(server: MediaServer, path: str) -> None:
    url = server.add(path, Item(stall=True))

    started = time.monotonic()
    refusal = refused(url, "timeout", timeout_s=0.3)
    elapsed = time.monotonic() - started

    assert refusal.transient and refusal.reason == "did not answer within 0.3 s"
    wait_until(lambda: path in server.gone, message="the server saw the client give up")
    assert elapsed < 10  # bounded by timeout_s, not by the server (which never answers)


def test_never_goes_through_a_proxy_from_the_environment(
    server: MediaServer, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = server.add(path, Item(samples.wav(1.0), "audio/wav"))
    with MediaServer() as proxy:
        for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
            monkeypatch.setenv(name, proxy.base_url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)

        assert check(url).duration_s == Decimal("1")

        assert proxy.requests == []


def test_logs_never_carry_the_query_string(
    server: MediaServer, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    good = server.add(path, Item(samples.wav(1.0), "audio/wav"))
    caplog.set_level(logging.DEBUG, logger="bot.money.preflight")

    check(good + "?sig=SECRET-TOKEN")
    refused(server.base_url + "/missing?sig=SECRET-TOKEN", "http_error")
    refused(f"http://127.0.0.1:{free_port()}/x?sig=SECRET-TOKEN", "unreachable")

    assert "SECRET-TOKEN" not in caplog.text
    assert f"{server.base_url}/missing" in caplog.text
