"""A fake Slack: Web API, private file downloads, response_url and Socket Mode, over real HTTP.

Shapes and error codes follow docs/slack-platform.md and Slack's method reference. Point a client at it
with `WebClient(token=slack.bot_token, base_url=slack.api_url)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, NamedTuple
from urllib.parse import quote, urlsplit

from aiohttp import WSMsgType, web

from .server import BackgroundServer, FaultQueue, client_gone, lower_headers, wait_until

BOT_ID = "B0BOT"
APP_ID = "A0TEST"

# What Slack serves instead of the file when the token is missing or wrong (HTTP 200!).
SIGN_IN_PAGE = (
    '<!DOCTYPE html><html lang="en-US"><head><meta charset="utf-8"><title>Slack</title></head>'
    '<body><h1>Sign in to Test</h1><form action="/signin" method="post">'
    '<button type="submit">Sign in</button></form></body></html>'
)

_MAX_BLOCKS = 50
_TRUE_STRINGS = {"1", "true", "True", "TRUE"}


@dataclass(frozen=True)
class Fault:
    """One injected failure for the next call of a Web API method (see `FakeSlack.inject`).

    kind:
      "http"      -> HTTP `status` with {"ok": false, "error": "internal_error"}.
      "error"     -> HTTP 200 {"ok": false, "error": error}.
      "ratelimit" -> HTTP 429, `Retry-After: retry_after`, {"ok": false, "error": "ratelimited"};
                     nothing stored.
      "delay"     -> sleep `delay` seconds, then answer (see `FakeSlack.inject` for `store`).
    store: for "http"/"error", perform the side effect (e.g. store the message) before failing, like an
      ambiguous `fatal_error`; for "delay", store BEFORE sleeping so a client that times out finds it later.
    """

    kind: Literal["http", "error", "ratelimit", "delay"]
    status: int = 500
    error: str = ""
    retry_after: int = 1
    delay: float = 0.0
    store: bool = False


@dataclass(frozen=True)
class Call:
    """One Web API request as received (params merged from query, form and JSON body)."""

    method: str
    params: dict[str, Any]
    headers: dict[str, str]
    at: float
    peer: tuple[str, int] | None = None  # the client's address and port: which connection it came on


class Update(NamedTuple):
    """A chat.update that succeeded: the message's text and blocks AFTER the update."""

    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]] | None


class Download(NamedTuple):
    path: str
    had_valid_token: bool


class SlackError(Exception):
    """Raised by a method handler to answer HTTP 200 {"ok": false, "error": ...}."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


@dataclass
class _FileBody:
    content: bytes | None
    factory: Callable[[], Iterable[bytes]] | None
    size: int
    mimetype: str
    name: str


MethodHandler = Callable[[dict[str, Any]], dict[str, Any]]


class FakeSlack(BackgroundServer):
    """Fake Slack Web API + file hosting + response_url + Socket Mode.

    All recorded state lives in public attributes (mutate the configuration sets before the calls
    they should affect); read collections through the helpers, which copy under the lock.
    """

    def __init__(
        self,
        bot_token: str = "xoxb-test-token",
        app_token: str = "xapp-test-token",
        team_id: str = "T0TEST",
        bot_user_id: str = "UBOT",
    ) -> None:
        super().__init__()
        self.bot_token = bot_token
        self.app_token = app_token
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self._faults: FaultQueue[Fault] = FaultQueue()
        self._methods: dict[str, MethodHandler] = {
            "auth.test": self._auth_test,
            "apps.connections.open": self._apps_connections_open,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "conversations.history": self._conversations_history,
            "conversations.replies": self._conversations_replies,
            "conversations.join": self._conversations_join,
            "reactions.add": self._reactions_add,
            "reactions.remove": self._reactions_remove,
            "files.info": self._files_info,
        }
        self._sockets: list[web.WebSocketResponse] = []
        self._last_ts_us = 0
        self._init_state()

    def _init_state(self) -> None:
        # Configuration: tests add channel ids / hosts here to make calls fail the way Slack does.
        self.not_in_channel: set[str] = set()
        # Public channels the bot has not joined: chat:write.public lets it post there, but reading history
        # needs membership (not_in_channel) until conversations.join.
        self.not_joined: set[str] = set()
        self.joined: list[str] = []
        # A busy channel: this many people's messages follow each top-level post of the bot at once.
        self.chatter_after_posts = 0
        self.missing_channels: set[str] = set()
        self.unfetchable_image_hosts: set[str] = set()
        # Scopes the app was installed without: "files:read" makes downloads answer the sign-in page
        # (HTTP 200, as Slack does) and files.info answer missing_scope.
        self.missing_scopes: set[str] = set()
        # Tokens an admin revoked: every call made with one answers token_revoked.
        self.revoked_tokens: set[str] = set()
        # Ids of content_factory files whose downloads misbehave: sent without Content-Length (chunked),
        # or with the connection closed after the body even if it is shorter than Content-Length.
        self.chunked_downloads: set[str] = set()
        self.cut_downloads: set[str] = set()
        # Recorded state.
        self.calls: list[Call] = []
        self.updates: list[Update] = []
        self.ephemerals: list[dict[str, Any]] = []
        self.reactions: set[tuple[str, str, str]] = set()
        self.files: dict[str, dict[str, Any]] = {}
        self.downloads: list[Download] = []
        self.responses: defaultdict[str, list[Any]] = defaultdict(list)
        self.envelopes: list[dict[str, Any]] = []
        self.acks: dict[str, dict[str, Any]] = {}
        self.socket_messages: list[dict[str, Any]] = []
        self._messages: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
        self._file_bodies: dict[str, _FileBody] = {}
        self._redirects: dict[str, tuple[str, int]] = {}

    def reset(self) -> None:
        """Forget messages, calls, files, faults and configuration; keep tokens and live sockets."""
        with self.lock:
            self._init_state()
        self._faults.clear()

    # -- URLs ----------------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        """What to pass as slack_sdk's `base_url` (it needs the trailing slash)."""
        return f"{self.base_url}/api/"

    def response_url(self, key: str) -> str:
        return f"{self.base_url}/response/{key}"

    # -- test-facing helpers -------------------------------------------------------------------

    def inject(self, method: str, fault: Fault) -> None:
        """Queue `fault` for the next call of `method` (FIFO per method).

        "delay" with store=False: sleep, then answer `error` if one is set; otherwise answer normally
        if the client is still connected, and do nothing at all if it already gave up.
        """
        self._faults.push(method, fault)

    def calls_to(self, method: str) -> list[Call]:
        with self.lock:
            return [call for call in self.calls if call.method == method]

    def messages(self, channel: str) -> list[dict[str, Any]]:
        """Top-level messages, oldest first (thread replies, even broadcast ones, excluded)."""
        with self.lock:
            return copy.deepcopy([m for m in self._messages[channel] if _is_top_level(m)])

    def replies(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """Replies in a thread, oldest first, without the parent."""
        with self.lock:
            return copy.deepcopy(self._thread_replies(channel, thread_ts))

    def message(self, channel: str, ts: str) -> dict[str, Any] | None:
        with self.lock:
            found = self._find(channel, ts)
            return copy.deepcopy(found) if found is not None else None

    def add_message(
        self,
        channel: str,
        text: str = "",
        *,
        user: str = "U0USER",
        thread_ts: str | None = None,
        files: list[dict[str, Any]] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Seed a message from a human (e.g. a file share) so replies and reactions can target it."""
        with self.lock:
            message: dict[str, Any] = {
                "type": "message",
                "user": user,
                "channel": channel,
                "ts": self._next_ts(),
                "text": text,
            }
            if files:
                message.update(subtype="file_share", files=copy.deepcopy(files), upload=True)
            if thread_ts:
                message["thread_ts"] = thread_ts
                self._note_reply(channel, thread_ts, message)
            message.update(extra)
            self._messages[channel].append(message)
            return copy.deepcopy(message)

    def add_file(
        self,
        file_id: str,
        name: str,
        mimetype: str,
        filetype: str,
        content: bytes | None = None,
        size: int | None = None,
        content_factory: Callable[[], Iterable[bytes]] | None = None,
        *,
        user: str = "U0USER",
        **extra: Any,
    ) -> dict[str, Any]:
        """Register a hosted file; its bytes are served at url_private(_download) to the bot token only.

        `size` defaults to len(content); it is required with `content_factory` (a callable returning
        an iterable of chunks, so huge files are streamed, never held in memory). `extra` fields
        (e.g. duration_ms) are merged into the file object.
        """
        if content_factory is None and content is None:
            content = b""
        if size is None:
            if content is None:
                raise ValueError("size is required with content_factory")
            size = len(content)
        base = f"{self.base_url}/files-pri/{self.team_id}-{file_id}"
        quoted = quote(name)
        now = int(time.time())
        file: dict[str, Any] = {
            "id": file_id,
            "created": now,
            "timestamp": now,
            "name": name,
            "title": name,
            "mimetype": mimetype,
            "filetype": filetype,
            "pretty_type": filetype.upper(),
            "user": user,
            "user_team": self.team_id,
            "editable": False,
            "size": size,
            "mode": "hosted",
            "is_external": False,
            "external_type": "",
            "is_public": False,
            "public_url_shared": False,
            "url_private": f"{base}/{quoted}",
            "url_private_download": f"{base}/download/{quoted}",
            "permalink": f"https://test.slack.com/files/{user}/{file_id}/{quoted}",
            "permalink_public": f"https://slack-files.com/{self.team_id}-{file_id}-0123456789",
        }
        file.update(extra)
        with self.lock:
            self.files[file_id] = file
            self._file_bodies[file_id] = _FileBody(content, content_factory, size, mimetype, name)
            return copy.deepcopy(file)

    def add_redirect(self, location: str, status: int = 302) -> str:
        """A URL on this fake that answers `status` with `Location: location`, as url_private does when
        it sends a client to another host (files-origin.slack.com, slack-files.com). Requests to it are
        recorded in `downloads` like file downloads."""
        key = uuid.uuid4().hex
        with self.lock:
            self._redirects[key] = (location, status)
        return f"{self.base_url}/redirect/{key}"

    # -- Socket Mode (test side) -------------------------------------------------------------------

    @property
    def socket_connected(self) -> bool:
        with self.lock:
            return any(not ws.closed for ws in self._sockets)

    def send_envelope(
        self,
        type_: Literal["slash_commands", "events_api", "interactive"] | str,
        payload: dict[str, Any],
        retry_attempt: int = 0,
        retry_reason: str = "",
        timeout: float = 10,
    ) -> str:
        """Deliver an envelope to the newest connected client (waits for one); returns its envelope_id."""
        ws = self._wait_for_socket(timeout)
        envelope_id = str(uuid.uuid4())
        envelope = {
            "envelope_id": envelope_id,
            "type": type_,
            "payload": payload,
            "accepts_response_payload": True,
            "retry_attempt": retry_attempt,
            "retry_reason": retry_reason,
        }
        with self.lock:
            self.envelopes.append(envelope)
        self.run_coroutine(lambda: ws.send_json(envelope))
        return envelope_id

    def wait_ack(self, envelope_id: str, timeout: float = 5) -> dict[str, Any]:
        """The client's ack for an envelope: {"envelope_id": ..., "payload"?: ...}."""

        def ack() -> dict[str, Any] | None:
            with self.lock:
                return self.acks.get(envelope_id)

        return wait_until(ack, timeout, message=f"ack for envelope {envelope_id}")

    def disconnect_socket(self, reason: str = "refresh_requested", timeout: float = 10) -> None:
        """Ask the client to reconnect, as Slack does periodically (the SDK opens a new connection)."""
        ws = self._wait_for_socket(timeout)
        message = {"type": "disconnect", "reason": reason, "debug_info": {"host": "fake"}}
        self.run_coroutine(lambda: ws.send_json(message))

    def command_payload(
        self,
        text: str,
        *,
        channel_id: str = "C0TEST",
        user_id: str = "U0USER",
        command: str = "/lipsync",
        response_key: str | None = None,
    ) -> dict[str, Any]:
        """A slash-command payload as Slack sends it (§1.1); response_url points at this fake."""
        return {
            "token": "unused-verification-token",
            "team_id": self.team_id,
            "team_domain": "test",
            "channel_id": channel_id,
            "channel_name": "general",
            "user_id": user_id,
            "user_name": "tester",
            "command": command,
            "text": text,
            "api_app_id": APP_ID,
            "is_enterprise_install": "false",
            "response_url": self.response_url(response_key or uuid.uuid4().hex),
            "trigger_id": f"{int(time.time())}.1.{uuid.uuid4().hex}",
        }

    def event_payload(self, event: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
        """An Events API `event_callback` wrapper around `event`."""
        return {
            "token": "unused-verification-token",
            "team_id": self.team_id,
            "api_app_id": APP_ID,
            "event": event,
            "type": "event_callback",
            "event_id": event_id or f"Ev{uuid.uuid4().hex[:10].upper()}",
            "event_time": int(time.time()),
            "authorizations": [{"team_id": self.team_id, "user_id": self.bot_user_id, "is_bot": True}],
        }

    def _wait_for_socket(self, timeout: float) -> web.WebSocketResponse:
        def newest_open() -> web.WebSocketResponse | None:
            with self.lock:
                return next((ws for ws in reversed(self._sockets) if not ws.closed), None)

        return wait_until(newest_open, timeout, message="a Socket Mode client to connect")

    # -- routes --------------------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_get("/files-pri/{team_file}/download/{name}", self._handle_download)
        app.router.add_get("/files-pri/{team_file}/{name}", self._handle_download)
        app.router.add_get("/redirect/{key}", self._handle_redirect)
        app.router.add_post("/response/{key}", self._handle_response_url)
        app.router.add_get("/socket", self._handle_socket)

    async def on_shutdown(self, app: web.Application) -> None:
        with self.lock:
            sockets = list(self._sockets)
        for ws in sockets:
            await ws.close(code=1001, message=b"server shutdown")

    async def _handle_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await _read_params(request)
        with self.lock:
            peer = request.transport.get_extra_info("peername") if request.transport else None
            self.calls.append(Call(method, params, lower_headers(request), time.time(), peer))
        handler = self._methods.get(method)
        if handler is None:
            return _ok_false("unknown_method", req_method=method)
        auth_error = self._auth_error(method, request.headers.get("Authorization"))
        if auth_error:
            return _ok_false(auth_error)
        fault = self._faults.pop(method)
        if fault is None:
            return _json(self._run(handler, params))
        return await self._apply_fault(fault, request, handler, params)

    async def _apply_fault(
        self, fault: Fault, request: web.Request, handler: MethodHandler, params: dict[str, Any]
    ) -> web.Response:
        if fault.kind == "ratelimit":
            return _json(
                {"ok": False, "error": "ratelimited"},
                status=429,
                headers={"Retry-After": str(fault.retry_after)},
            )
        if fault.kind == "delay":
            if fault.store:
                body = self._run(handler, params)
                await asyncio.sleep(fault.delay)
                return _json(body)
            await asyncio.sleep(fault.delay)
            if fault.error:
                return _ok_false(fault.error)
            if client_gone(request):
                return _ok_false("request_timeout")  # nobody reads this; the point is: nothing stored
            return _json(self._run(handler, params))
        if fault.store:
            self._run(handler, params)
        if fault.kind == "http":
            return _json({"ok": False, "error": "internal_error"}, status=fault.status)
        return _ok_false(fault.error or "internal_error")

    def _run(self, handler: MethodHandler, params: dict[str, Any]) -> dict[str, Any]:
        # Handlers are quick and synchronous; running them under the lock makes each call atomic.
        with self.lock:
            try:
                return copy.deepcopy(handler(params))
            except SlackError as exc:
                return {"ok": False, "error": exc.error, **exc.extra}

    def _auth_error(self, method: str, authorization: str | None) -> str | None:
        if not authorization or not authorization.startswith("Bearer "):
            return "not_authed"
        token = authorization.removeprefix("Bearer ").strip()
        if token in self.revoked_tokens:
            return "token_revoked"
        wanted, other = (
            (self.app_token, self.bot_token)
            if method == "apps.connections.open"
            else (self.bot_token, self.app_token)
        )
        if token == wanted:
            return None
        return "not_allowed_token_type" if token == other else "invalid_auth"

    # -- Web API methods (called under self.lock) ----------------------------------------------------

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://test.slack.com/",
            "team": "Test",
            "user": "lipsync",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _apps_connections_open(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "url": f"ws://127.0.0.1:{self.port}/socket"}

    def _chat_post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._require_channel(params)
        text = str(params.get("text") or "")
        blocks = self._validated_blocks(params)
        if not text and not blocks and not params.get("attachments"):
            raise SlackError("no_text")
        metadata = _validated_metadata(params)
        thread_ts = str(params.get("thread_ts") or "") or None
        if thread_ts is not None and self._top_level(channel, thread_ts) is None:
            raise SlackError("thread_not_found")
        message: dict[str, Any] = {
            "type": "message",
            "user": self.bot_user_id,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": self.team_id,
            "channel": channel,
            "ts": self._next_ts(),
            "text": text,
        }
        if blocks is not None:
            message["blocks"] = blocks
        if thread_ts is not None:
            message["thread_ts"] = thread_ts
            if _truthy(params.get("reply_broadcast")):
                message["subtype"] = "thread_broadcast"
            self._note_reply(channel, thread_ts, message)
        if metadata is not None:
            message["metadata"] = metadata
        self._messages[channel].append(message)
        if thread_ts is None:
            for n in range(self.chatter_after_posts):
                chatter = {
                    "type": "message",
                    "user": "U0CHATTY",
                    "text": f"chatter {n}",
                    "ts": self._next_ts(),
                }
                self._messages[channel].append(chatter)
        return {"ok": True, "channel": channel, "ts": message["ts"], "message": message}

    def _chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._require_channel(params)
        message = self._find(channel, str(params.get("ts") or ""))
        if message is None:
            raise SlackError("message_not_found")
        if message.get("user") != self.bot_user_id:
            raise SlackError("cant_update_message")
        # Absent fields keep their previous value, as Slack documents for chat.update.
        blocks = self._validated_blocks(params)
        if "text" not in params and blocks is None:
            raise SlackError("no_text")
        metadata = _validated_metadata(params)
        if "text" in params:
            message["text"] = str(params["text"] or "")
        if blocks is not None:
            if blocks:
                message["blocks"] = blocks
            else:
                message.pop("blocks", None)
        if metadata is not None:
            message["metadata"] = metadata
        message["edited"] = {"user": self.bot_user_id, "ts": self._next_ts()}
        self.updates.append(
            Update(channel, message["ts"], message["text"], copy.deepcopy(message.get("blocks")))
        )
        return {
            "ok": True,
            "channel": channel,
            "ts": message["ts"],
            "text": message["text"],
            "message": message,
        }

    def _chat_post_ephemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._require_channel(params)
        if not params.get("user"):
            raise SlackError("user_not_found")
        text = str(params.get("text") or "")
        blocks = self._validated_blocks(params)
        if not text and not blocks:
            raise SlackError("no_text")
        self.ephemerals.append(
            {
                "channel": channel,
                "user": params["user"],
                "text": text,
                "blocks": blocks,
                "thread_ts": params.get("thread_ts"),
            }
        )
        return {"ok": True, "message_ts": self._next_ts()}

    def _conversations_join(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = str(params.get("channel") or "")
        if "channels:join" in self.missing_scopes:
            raise SlackError("missing_scope", needed="channels:join", provided="chat:write")
        if not channel or channel in self.missing_channels:
            raise SlackError("channel_not_found")
        if channel in self.not_in_channel:  # private: the bot must be invited
            raise SlackError("method_not_supported_for_channel_type")
        self.not_joined.discard(channel)
        self.joined.append(channel)
        return {"ok": True, "channel": {"id": channel, "is_member": True}}

    def _require_member(self, params: dict[str, Any]) -> str:
        channel = self._require_channel(params)
        if channel in self.not_joined:
            raise SlackError("not_in_channel")
        return channel

    def _conversations_history(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._require_member(params)
        visible = [
            m for m in self._messages[channel] if _is_top_level(m) or m.get("subtype") == "thread_broadcast"
        ]
        selected = [m for m in visible if _in_range(m["ts"], params)]
        selected.reverse()  # newest first
        page, has_more, cursor = _paginate(selected, params, default_limit=100)
        with_metadata = _truthy(params.get("include_all_metadata"))
        return {
            "ok": True,
            "messages": [_exported(m, with_metadata) for m in page],
            "has_more": has_more,
            "pin_count": 0,
            "response_metadata": {"next_cursor": cursor},
        }

    def _conversations_replies(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._require_member(params)
        ts = str(params.get("ts") or "")
        target = self._find(channel, ts)
        if target is None:
            raise SlackError("thread_not_found")
        parent = self._top_level(channel, target.get("thread_ts") or ts) or target
        replies = [m for m in self._thread_replies(channel, parent["ts"]) if _in_range(m["ts"], params)]
        # Slack always returns the parent first, whatever `oldest` says.
        page, has_more, cursor = _paginate([parent, *replies], params, default_limit=1000)
        with_metadata = _truthy(params.get("include_all_metadata"))
        return {
            "ok": True,
            "messages": [_exported(m, with_metadata) for m in page],
            "has_more": has_more,
            "response_metadata": {"next_cursor": cursor},
        }

    def _reactions_add(self, params: dict[str, Any]) -> dict[str, Any]:
        key = self._reaction_key(params)
        if key in self.reactions:
            raise SlackError("already_reacted")
        self.reactions.add(key)
        return {"ok": True}

    def _reactions_remove(self, params: dict[str, Any]) -> dict[str, Any]:
        key = self._reaction_key(params)
        if key not in self.reactions:
            raise SlackError("no_reaction")
        self.reactions.discard(key)
        return {"ok": True}

    def _files_info(self, params: dict[str, Any]) -> dict[str, Any]:
        if "files:read" in self.missing_scopes:
            raise SlackError("missing_scope", needed="files:read", provided="chat:write")
        file = self.files.get(str(params.get("file") or ""))
        if file is None:
            raise SlackError("file_not_found")
        return {"ok": True, "file": file, "comments": [], "response_metadata": {"next_cursor": ""}}

    # -- state helpers (called under self.lock) --------------------------------------------------

    def _next_ts(self) -> str:
        # Real ts values are unique per channel and increase; bump by 1 µs on collisions.
        now_us = int(time.time() * 1_000_000)
        self._last_ts_us = max(now_us, self._last_ts_us + 1)
        seconds, micros = divmod(self._last_ts_us, 1_000_000)
        return f"{seconds}.{micros:06d}"

    def _require_channel(self, params: dict[str, Any]) -> str:
        channel = str(params.get("channel") or "")
        if not channel or channel in self.missing_channels:
            raise SlackError("channel_not_found")
        if channel in self.not_in_channel:
            raise SlackError("not_in_channel")
        return channel

    def _find(self, channel: str, ts: str) -> dict[str, Any] | None:
        return next((m for m in self._messages[channel] if m["ts"] == ts), None)

    def _top_level(self, channel: str, ts: str) -> dict[str, Any] | None:
        message = self._find(channel, ts)
        return message if message is not None and _is_top_level(message) else None

    def _thread_replies(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        return [
            m for m in self._messages[channel] if m.get("thread_ts") == thread_ts and m["ts"] != thread_ts
        ]

    def _note_reply(self, channel: str, thread_ts: str, reply: dict[str, Any]) -> None:
        # A parent carries thread bookkeeping once it has replies, as in real history.
        parent = self._find(channel, thread_ts)
        if parent is None:
            return
        users = [*parent.get("reply_users", [])]
        if reply["user"] not in users:
            users.append(reply["user"])
        parent.update(
            thread_ts=thread_ts,
            reply_count=parent.get("reply_count", 0) + 1,
            reply_users=users,
            reply_users_count=len(users),
            latest_reply=reply["ts"],
        )

    def _reaction_key(self, params: dict[str, Any]) -> tuple[str, str, str]:
        channel = self._require_channel(params)
        ts = str(params.get("timestamp") or "")
        name = str(params.get("name") or "")
        if not name:
            raise SlackError("invalid_name")
        if self._find(channel, ts) is None:
            raise SlackError("message_not_found")
        return channel, ts, name

    def _validated_blocks(self, params: dict[str, Any]) -> list[dict[str, Any]] | None:
        blocks = params.get("blocks")
        if blocks is None or blocks == "":
            return None
        if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
            raise SlackError("invalid_blocks_format")
        errors: list[str] = []
        if len(blocks) > _MAX_BLOCKS:
            errors.append("no more than 50 items allowed [json-pointer:/blocks]")
        for index, block in enumerate(blocks):
            errors.extend(self._block_errors(index, block))
        if errors:
            raise SlackError(
                "invalid_blocks",
                errors=errors,
                response_metadata={"messages": [f"[ERROR] {e}" for e in errors]},
            )
        return copy.deepcopy(blocks)

    def _block_errors(self, index: int, block: dict[str, Any]) -> list[str]:
        pointer = f"/blocks/{index}"
        if "type" not in block:
            return [f"missing required field: type [json-pointer:{pointer}]"]
        if block["type"] != "image":
            return []
        errors = []
        if not block.get("alt_text"):
            errors.append(f"missing required field: alt_text [json-pointer:{pointer}]")
        image_url = block.get("image_url")
        if not image_url and not block.get("slack_file"):
            errors.append(f"must provide either image_url or slack_file [json-pointer:{pointer}]")
        elif image_url and len(str(image_url)) > 3000:
            errors.append(f"must be less than 3001 characters [json-pointer:{pointer}/image_url]")
        elif image_url and urlsplit(str(image_url)).hostname in self.unfetchable_image_hosts:
            errors.append(f"downloading image failed [json-pointer:{pointer}/image_url]")
        return errors

    # -- non-API endpoints ---------------------------------------------------------------------

    async def _handle_download(self, request: web.Request) -> web.StreamResponse:
        valid = request.headers.get("Authorization") == f"Bearer {self.bot_token}"
        if "files:read" in self.missing_scopes:
            valid = False
        file_id = request.match_info["team_file"].removeprefix(f"{self.team_id}-")
        with self.lock:
            self.downloads.append(Download(request.path, valid))
            body = self._file_bodies.get(file_id)
        if not valid:
            # Slack's pitfall: HTTP 200 with a sign-in page instead of the file.
            return web.Response(text=SIGN_IN_PAGE, content_type="text/html")
        if body is None:
            return web.Response(
                status=404, text="<!DOCTYPE html><html>File not found</html>", content_type="text/html"
            )
        headers = {"Content-Disposition": f'attachment; filename="{body.name}"'}
        if body.content is not None:
            return web.Response(body=body.content, content_type=body.mimetype, headers=headers)
        response = web.StreamResponse(headers=headers)
        response.content_type = body.mimetype
        with self.lock:
            chunked, cut = file_id in self.chunked_downloads, file_id in self.cut_downloads
        if chunked:
            response.enable_chunked_encoding()
        else:
            response.content_length = body.size
        if cut:
            response.force_close()  # the connection closes after this response, complete or not
        await response.prepare(request)
        if request.method != "HEAD" and body.factory is not None:
            for chunk in _chunks(body.factory()):
                await response.write(chunk)
        await response.write_eof()
        return response

    async def _handle_redirect(self, request: web.Request) -> web.Response:
        valid = request.headers.get("Authorization") == f"Bearer {self.bot_token}"
        with self.lock:
            self.downloads.append(Download(request.path, valid))
            target = self._redirects.get(request.match_info["key"])
        if target is None:
            return web.Response(status=404, text="not found")
        location, status = target
        return web.Response(status=status, headers={"Location": location})

    async def _handle_response_url(self, request: web.Request) -> web.Response:
        try:
            payload = await request.json()
        except ValueError:
            return web.Response(status=400, text="invalid_payload")
        with self.lock:
            self.responses[request.match_info["key"]].append(payload)
        return web.Response(text="ok")

    async def _handle_socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True, timeout=1.0)  # autoping answers the SDK's pings
        await ws.prepare(request)
        with self.lock:
            self._sockets.append(ws)
        try:
            await ws.send_json(
                {
                    "type": "hello",
                    "num_connections": 1,
                    "debug_info": {"host": "fake"},
                    "connection_info": {"app_id": APP_ID},
                }
            )
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._record_socket_message(msg.data)
        finally:
            with self.lock:
                self._sockets.remove(ws)
        return ws

    def _record_socket_message(self, raw: str) -> None:
        try:
            data = json.loads(raw)
        except ValueError:
            data = {"unparsable": raw}
        with self.lock:
            self.socket_messages.append(data)
            if isinstance(data, dict) and data.get("envelope_id"):
                self.acks[str(data["envelope_id"])] = data


# -- module helpers ------------------------------------------------------------------------------


async def _read_params(request: web.Request) -> dict[str, Any]:
    """Merge query string, form (urlencoded or multipart) and JSON body, as Slack accepts all three."""
    params: dict[str, Any] = dict(request.query)
    if request.content_type == "application/json":
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        if isinstance(body, dict):
            params.update(body)
    elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        params.update({k: v for k, v in form.items() if isinstance(v, str)})
    # Form clients send structured fields as JSON strings.
    for key in ("blocks", "metadata", "attachments"):
        value = params.get(key)
        if isinstance(value, str) and value:
            # Unparsable values stay strings; the method then reports invalid_*_format.
            with contextlib.suppress(ValueError):
                params[key] = json.loads(value)
    return params


def _validated_metadata(params: dict[str, Any]) -> dict[str, Any] | None:
    metadata = params.get("metadata")
    if metadata is None or metadata == "":
        return None
    if (
        not isinstance(metadata, dict)
        or not isinstance(metadata.get("event_type"), str)
        or not isinstance(metadata.get("event_payload"), dict)
    ):
        raise SlackError("invalid_metadata_format")
    return copy.deepcopy(metadata)


def _is_top_level(message: dict[str, Any]) -> bool:
    thread_ts = message.get("thread_ts")
    return thread_ts is None or thread_ts == message["ts"]


def _exported(message: dict[str, Any], with_metadata: bool) -> dict[str, Any]:
    # Metadata only comes back when the caller asks for it (include_all_metadata).
    if with_metadata or "metadata" not in message:
        return message
    return {k: v for k, v in message.items() if k != "metadata"}


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, int) and value == 1) or str(value) in _TRUE_STRINGS


def _ts_value(value: Any, default: Decimal) -> Decimal:
    try:
        return Decimal(str(value)) if value not in (None, "") else default
    except InvalidOperation:
        return default


def _in_range(ts: str, params: dict[str, Any]) -> bool:
    """oldest/latest filtering; both bounds exclusive unless `inclusive` is set."""
    value = Decimal(ts)
    oldest = _ts_value(params.get("oldest"), Decimal(0))
    latest = _ts_value(params.get("latest"), Decimal("Infinity"))
    if _truthy(params.get("inclusive")):
        return oldest <= value <= latest
    return oldest < value < latest


def _paginate(
    items: list[dict[str, Any]], params: dict[str, Any], default_limit: int
) -> tuple[list[dict[str, Any]], bool, str]:
    """Offset cursors ("offset:N"): enough for clients that follow next_cursor."""
    cursor = str(params.get("cursor") or "")
    start = int(cursor.removeprefix("offset:")) if cursor.startswith("offset:") else 0
    try:
        limit = int(params.get("limit") or default_limit)
    except ValueError:
        limit = default_limit
    limit = max(1, limit)
    page = items[start : start + limit]
    has_more = start + limit < len(items)
    return page, has_more, f"offset:{start + limit}" if has_more else ""


def _chunks(source: Iterable[bytes]) -> Iterator[bytes]:
    for chunk in source:
        if chunk:
            yield bytes(chunk)


def _json(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers)


def _ok_false(error: str, **extra: Any) -> web.Response:
    return _json({"ok": False, "error": error, **extra})
