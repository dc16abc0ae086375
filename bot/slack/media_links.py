"""The bot's own expiring, signed links to Slack files, for providers with no upload API (LipSync.dev).

A link is `{PUBLIC_URL}/media/<id>/<file name>?expires=<unix s>&sig=<hex>`, where `sig` is an HMAC over
the id and the expiry. What the id stands for (the Slack file's description) lives in Redis until the link
expires; on each GET the file is streamed from Slack to the caller chunk by chunk (bot/slack/transfer.py),
never stored whole. A wrong or expired signature gets 403 and costs nothing: no Redis read, no Slack call.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from urllib.parse import quote

from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError

from bot.jobs.files import SlackFile
from bot.jobs.keys import media_key
from bot.slack.transfer import Transfer, TransferError

log = logging.getLogger(__name__)

MEDIA_PATH = "/media/{media_id}/{name}"
# A link outlives its job by this much: the provider may fetch the file late in its queue.
LINK_MARGIN_S = 3600


class MediaLinks:
    def __init__(
        self,
        *,
        redis: Redis,
        transfer: Transfer,
        public_url: str,
        secret: bytes,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._transfer = transfer
        self._public_url = public_url.rstrip("/")
        self._secret = secret
        self._clock = clock

    def _sign(self, media_id: str, expires: int) -> str:
        return hmac.new(self._secret, f"{media_id}.{expires}".encode(), hashlib.sha256).hexdigest()

    async def link(self, file: SlackFile, ttl_ms: int) -> str:
        """A link that serves `file` until the job's time is up (and a margin)."""
        ttl_s = ttl_ms // 1000 + LINK_MARGIN_S
        media_id = secrets.token_urlsafe(16)
        expires = int(self._clock()) + ttl_s
        await self._redis.set(media_key(media_id), file.to_json(), ex=ttl_s)
        # The name is only there for providers that guess the format from the path's extension.
        name = quote(file.name.replace("/", "_")[-100:] or "file", safe="")
        signature = self._sign(media_id, expires)
        return f"{self._public_url}/media/{media_id}/{name}?expires={expires}&sig={signature}"

    def valid(self, media_id: str, expires: str, sig: str) -> bool:
        if not (expires.isascii() and expires.isdigit() and len(expires) <= 12):
            return False
        if int(expires) < self._clock():
            return False
        return hmac.compare_digest(self._sign(media_id, int(expires)), sig)

    async def serve(self, request: web.Request) -> web.StreamResponse:
        """GET/HEAD a media link."""
        media_id = request.match_info["media_id"]
        if not self.valid(media_id, request.query.get("expires", ""), request.query.get("sig", "")):
            return web.Response(status=403, text="This link is not valid or has expired.\n")
        try:
            raw = await self._redis.get(media_key(media_id))
        except RedisError as exc:
            log.warning("media link %s: cannot read the store: %s", media_id, type(exc).__name__)
            return web.Response(status=503, headers={"Retry-After": "5"})
        if raw is None:
            return web.Response(status=404, text="This file is no longer served.\n")
        file = SlackFile.from_json(raw.decode() if isinstance(raw, bytes) else str(raw))
        if request.method == "HEAD":
            headers = {"Content-Type": file.content_type}
            if file.size:
                headers["Content-Length"] = str(file.size)
            return web.Response(status=200, headers=headers)
        response: web.StreamResponse | None = None
        try:
            async with self._transfer.download(file) as download:
                response = web.StreamResponse(
                    headers={
                        "Content-Type": download.content_type,
                        "Content-Length": str(download.size),
                        "Cache-Control": "no-store",
                    }
                )
                await response.prepare(request)
                async for chunk in download.body:
                    await response.write(chunk)
                await response.write_eof()
                log.info("media link %s: served %s (%d bytes)", media_id, file.id, download.size)
                return response
        except TransferError as exc:
            log.warning("media link %s: cannot serve Slack file %s: %s", media_id, file.id, exc)
            if response is None:
                status = 404 if exc.code == "slack_file_missing" else 502
                return web.Response(status=status, text="The file cannot be fetched from Slack right now.\n")
        except (ConnectionResetError, ConnectionError) as exc:
            log.info("media link %s: the caller left (%s)", media_id, type(exc).__name__)
        # Headers are out and the body is short: cut the connection so the caller sees a broken transfer.
        if request.transport is not None:
            request.transport.close()
        assert response is not None
        return response
