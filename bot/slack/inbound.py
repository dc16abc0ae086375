"""What reaches Bolt from Slack: signed requests first, then only payloads shaped as Slack sends them.

HTTP mode: `SlackRequestGuard.admit` reads the body (capped), checks the timestamp and the signature over the
raw bytes before decoding anything (the team's Slack notes, shared/docs/slack-platform.md §4.2), then decodes
and parses the body the way Bolt will, and checks the payload's shape. It is the only place that verifies
signatures: Bolt's own check is off (bot/programs/app.py), so no forged request is ever logged with its body.

Both modes: `payload_problem` names what Bolt or our handlers cannot read (an `event` that is not an
object, an id that is not a string…). In HTTP mode such a request gets 400; over Socket Mode, where Slack
has already authenticated the connection, bot/slack/socket_mode.py acks the envelope and drops it. Both check
before Bolt builds its request, which is where Bolt itself would crash.

A refused request costs one short log line naming the reason, never its body.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.request.internals import parse_body

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024  # Slack's requests are a few KB; a message shortcut with a long message, tens
MAX_CLOCK_SKEW_SECONDS = 300  # Slack's rule: older (or newer) requests may be replays
MEDIA_TYPES = ("application/x-www-form-urlencoded", "application/json")  # all Slack ever sends
CHARSETS = (None, "utf-8", "utf8")
MAX_NESTING = 8  # event → message → … : Slack nests a few levels; Bolt walks them recursively

# Keys Bolt reads to route a request and to fill its context, at any level it looks into (body, event,
# message, authorizations…), and what each must be when present.
STRING_KEYS = (
    "type",
    "subtype",
    "command",
    "callback_id",
    "id",
    "team_id",
    "user_id",
    "channel_id",
    "enterprise_id",
    "user_team",
    "app_installed_team_id",
    "ts",
    "thread_ts",
    "response_url",
    "function_execution_id",
    "execution_id",
    "bot_access_token",
)
REFERENCE_KEYS = ("team", "user", "channel", "enterprise")  # an id, or an object with an `id`
OBJECT_KEYS = ("event", "message", "previous_message", "item", "assistant_thread", "view", "function_data")
OBJECT_LIST_KEYS = ("authorizations", "response_urls")


class Refusal(Exception):
    """A request we answer with `status` and a short `reason` instead of handing it to Bolt."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class SlackRequestGuard:
    def __init__(self, signing_secret: str, *, clock: Callable[[], float] = time.time) -> None:
        if not signing_secret:
            raise ValueError("HTTP mode needs the app's signing secret")
        self._secret = signing_secret.encode()
        self._clock = clock

    async def admit(self, request: web.Request) -> AsyncBoltRequest:
        """The request as Bolt should see it. Raises Refusal for anything but a sound Slack request."""
        raw = await _read_body(request)
        self._verify(request, raw)
        if request.content_type not in MEDIA_TYPES:
            raise Refusal(415, "unsupported content type")
        if request.charset is not None and request.charset.lower() not in CHARSETS:
            raise Refusal(415, "unsupported charset")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Refusal(400, "body is not UTF-8") from None
        # Bolt's own parser, so the payload checked here is exactly the one Bolt will read.
        content_type = request.headers.get("Content-Type", "").split(";")[0]
        try:
            body = parse_body(text, content_type or None)
        except (ValueError, RecursionError):  # bad or too deeply nested JSON, or an absurdly long number
            raise Refusal(400, "body does not parse") from None
        if not isinstance(body, dict):
            raise Refusal(400, "payload is not a JSON object")
        problem = payload_problem(body)
        if problem is not None:
            raise Refusal(400, problem)
        # The body is parsed once: Bolt takes a parsed body as is only in Socket Mode, so the request is
        # made as one and then told what it is (mode and raw body are all Bolt reads of HTTP requests).
        bolt_request = AsyncBoltRequest(
            body=body,
            query=request.query_string,
            headers=request.headers,  # type: ignore[arg-type]  # a multidict of str, as Bolt's adapter passes
            mode="socket_mode",
        )
        bolt_request.mode, bolt_request.raw_body = "http", text
        return bolt_request

    def _verify(self, request: web.Request, raw: bytes) -> None:
        stamp = request.headers.get("X-Slack-Request-Timestamp", "")
        if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
            raise Refusal(401, "missing or malformed timestamp")
        if abs(self._clock() - int(stamp)) > MAX_CLOCK_SKEW_SECONDS:
            raise Refusal(401, "stale timestamp")
        digest = hmac.new(self._secret, b"v0:" + stamp.encode() + b":" + raw, hashlib.sha256).hexdigest()
        given = request.headers.get("X-Slack-Signature", "").encode("utf-8", "replace")
        if not hmac.compare_digest(f"v0={digest}".encode(), given):
            raise Refusal(401, "invalid signature")


async def _read_body(request: web.Request) -> bytes:
    """The whole body, refusing before reading more than MAX_BODY_BYTES."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise Refusal(413, "body too large")
    body = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise Refusal(413, "body too large")
    return bytes(body)


def refusal_response(request: web.Request, refusal: Refusal) -> web.Response:
    log.warning(
        "refused a request to %s from %s: %s (%s bytes)",
        request.path,
        request.remote,
        refusal.reason,
        request.content_length if request.content_length is not None else "?",
    )
    return web.Response(status=refusal.status, text=refusal.reason)


def payload_problem(body: Mapping[str, Any]) -> str | None:
    """Why Bolt or our listeners could not read this payload, or None when its shape is sound."""
    if body.get("type") == "event_callback" and not isinstance(body.get("event"), dict):
        return "event_callback without an event object"
    return _shape_problem(body, "payload", 0)


def _shape_problem(node: Mapping[str, Any], path: str, depth: int) -> str | None:
    if depth > MAX_NESTING:
        return f"{path} is nested too deeply"
    for key in STRING_KEYS:
        if not isinstance(node.get(key), str | None):
            return f"{path}.{key} is not a string"
    for key in REFERENCE_KEYS:
        value = node.get(key)
        if not isinstance(value, str | dict | None):
            return f"{path}.{key} is neither an id nor an object"
        if isinstance(value, dict) and (problem := _shape_problem(value, f"{path}.{key}", depth + 1)):
            return problem
    for key in OBJECT_KEYS:
        value = node.get(key)
        if not isinstance(value, dict | None):
            return f"{path}.{key} is not an object"
        if isinstance(value, dict) and (problem := _shape_problem(value, f"{path}.{key}", depth + 1)):
            return problem
    for key in OBJECT_LIST_KEYS:
        value = node.get(key)
        if value is None:
            continue
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            return f"{path}.{key} is not a list of objects"
        for item in value:
            if problem := _shape_problem(item, f"{path}.{key}[]", depth + 1):
                return problem
    return None
