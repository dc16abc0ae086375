"""The web server users' links point to: serves media (tests/media_samples.py) by path, answering HEAD and
ranged GETs like a CDN, or misbehaving on request (`Item`: errors, lies, stalls, redirects, endless
bodies), and counts the body bytes it sends per path. Used by the link check's tests and benches.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass

from aiohttp import web

from tests.fakes.server import BackgroundServer, client_gone


@dataclass
class Item:
    """What one path answers. By default: `body` as a well-behaved CDN serves it (HEAD, Range)."""

    body: bytes = b""
    content_type: str = "application/octet-stream"
    status: int = 200  # anything else: that status with a small HTML error page
    head_status: int | None = None  # HEAD answers this instead (405: "HEAD not allowed")
    head_length: int | None = None  # HEAD claims this Content-Length (a server that lies)
    ranges: bool = True  # False: Range is ignored, the whole body comes with 200
    total_unknown: bool = False  # ranges answered `Content-Range: bytes a-b/*` (RFC 9110: length not known)
    redirect: str | None = None  # answer 302 to this Location
    chunked: bool = False  # no length said: Range ignored, `body` sent chunked
    endless: bool = False  # chunked, and after `body` zeros without end
    stall: bool = False  # never answer; wait for the client to give up


class MediaServer(BackgroundServer):
    """Serves `items` by path on `host` (any loopback address: 127.0.0.2 is loopback on Linux too)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__()
        self.bind_host, self.bind_port = host, port
        self.items: dict[str, Item] = {}
        self.sent: Counter[str] = Counter()  # body bytes written per path
        self.requests: list[tuple[str, str, str]] = []  # (method, path, Range header)
        self.gone: set[str] = set()  # paths whose client went away mid-answer

    def add(self, path: str, item: Item) -> str:
        """Serve `item` at `path`; returns its URL."""
        with self.lock:
            self.items[path] = item
        return self.base_url + path

    def hits(self, path: str) -> list[tuple[str, str]]:
        with self.lock:
            return [(method, ranges) for method, p, ranges in self.requests if p == path]

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{path:.*}", self._answer)

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        with self.lock:
            self.requests.append((request.method, path, request.headers.get("Range", "")))
            item = self.items.get(path)
        if item is None:
            return web.Response(status=404, text="<html>not here</html>", content_type="text/html")
        if item.stall:
            while not client_gone(request):
                await asyncio.sleep(0.02)
            with self.lock:
                self.gone.add(path)
            return web.Response(status=204)
        if item.redirect is not None:
            return web.Response(status=302, headers={"Location": item.redirect})
        if request.method == "HEAD":
            status = item.head_status or item.status
            headers = {"Content-Type": item.content_type}
            if not (item.chunked or item.endless):
                length = item.head_length if item.head_length is not None else len(item.body)
                headers["Content-Length"] = str(length)
            return web.Response(status=status, headers=headers)
        if item.status != 200:
            return web.Response(status=item.status, text="<html>error page</html>", content_type="text/html")
        if item.chunked or item.endless:
            return await self._stream(request, item)
        body, status, headers = item.body, 200, {"Content-Type": item.content_type}
        span = _byte_range(request.headers.get("Range", ""), len(body)) if item.ranges else None
        if span == "unsatisfiable":
            return web.Response(status=416, headers={"Content-Range": f"bytes */{len(body)}"})
        if isinstance(span, tuple):
            first, last = span
            body, status = body[first : last + 1], 206
            total = "*" if item.total_unknown else len(item.body)
            headers["Content-Range"] = f"bytes {first}-{last}/{total}"
        response = web.Response(status=status, body=body, headers=headers)
        with self.lock:
            self.sent[path] += len(body)
        return response

    async def _stream(self, request: web.Request, item: Item) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": item.content_type})
        response.enable_chunked_encoding()
        await response.prepare(request)
        chunk = item.body
        try:
            while chunk:
                await response.write(chunk)
                with self.lock:
                    self.sent[request.path] += len(chunk)
                chunk = bytes(64 * 1024) if item.endless else b""
            await response.write_eof()
        except ConnectionError:
            with self.lock:
                self.gone.add(request.path)
        return response


def _byte_range(header: str, size: int) -> tuple[int, int] | str | None:
    """The (first, last) bytes of a single `Range: bytes=…` (as RFC 9110 reads it), "unsatisfiable", or
    None for no usable range (the whole body then)."""
    unit, _, spec = header.partition("=")
    if unit.strip() != "bytes" or "," in spec or "-" not in spec:
        return None
    start, _, end = spec.strip().partition("-")
    if not start:  # bytes=-N: the last N bytes
        if not end.isdigit() or int(end) == 0:
            return "unsatisfiable"
        return max(0, size - int(end)), size - 1
    if not start.isdigit() or (end and not end.isdigit()):
        return None
    first = int(start)
    if first >= size:
        return "unsatisfiable"
    last = min(size - 1, int(end)) if end else size - 1
    return first, last
