"""A web server holding media files (the place users' links point to), for the bot's link check.

Answers HEAD and GET with single byte ranges as ordinary web servers do, serves pages and redirects too,
and counts the bytes it sent per path, so tests can tell how much of a file the bot read.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from aiohttp import web

from tests.fakes.server import BackgroundServer

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


@dataclass(frozen=True)
class Served:
    content_type: str
    body: bytes = b""
    status: int = 200
    location: str = ""  # a redirect's target


class MediaHost(BackgroundServer):
    def __init__(self, host: str = "127.0.0.1") -> None:
        super().__init__()
        self.bind_host = host
        self.files: dict[str, Served] = {}
        self.sent: Counter[str] = Counter()  # bytes of bodies sent, per path
        self.requests: list[tuple[str, str]] = []  # (method, path)

    def put(self, path: str, content_type: str, body: bytes = b"", status: int = 200) -> str:
        """Serve `body` at `path`; returns its URL."""
        with self.lock:
            self.files[path] = Served(content_type, body, status)
        return self.url(path)

    def redirect(self, path: str, location: str) -> str:
        with self.lock:
            self.files[path] = Served("text/html", status=302, location=location)
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://{self.bind_host}:{self.port}{path}"

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{path:.*}", self._answer)

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        with self.lock:
            self.requests.append((request.method, request.path))
            served = self.files.get(request.path)
        if served is None:
            return web.Response(status=404, text="<html>not found</html>", content_type="text/html")
        if served.location:
            raise web.HTTPFound(served.location)
        body, status, headers = served.body, served.status, {"Accept-Ranges": "bytes"}
        match = _RANGE.fullmatch(request.headers.get("Range", ""))
        if match and status == 200 and body:
            first, last = match.groups()
            start = int(first) if first else max(0, len(body) - int(last))
            end = min(len(body) - 1, int(last)) if first and last else len(body) - 1
            headers["Content-Range"] = f"bytes {start}-{end}/{len(body)}"
            body, status = body[start : end + 1], 206
        if request.method == "HEAD":
            headers["Content-Length"] = str(len(body))
            return web.Response(status=status, headers=headers, content_type=served.content_type)
        with self.lock:
            self.sent[request.path] += len(body)
        return web.Response(status=status, body=body, headers=headers, content_type=served.content_type)
