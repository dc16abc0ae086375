"""A fake Slack: Web API, private file downloads, response_url and Socket Mode, over real HTTP.

Shapes and error codes follow the team's Slack notes (shared/docs/slack-platform.md) and Slack's method
reference. Point a client at it with `WebClient(token=slack.bot_token, base_url=slack.api_url)`.

Also: the external file upload (`files.getUploadURLExternal`, a POST of the bytes to the upload URL,
`files.completeUploadExternal`, i.e. what `files_upload_v2` does), App Home and modal views
(`views.publish` / `views.open` / `views.update`), `users.info`, and opt-in per-method rate limits
(`FakeSlack.tier_limits`, with Slack's documented figures in `TIERS`).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import json
import math
import mimetypes
import re
import threading
import time
import uuid
from collections import Counter, defaultdict, deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, NamedTuple
from urllib.parse import quote, urlsplit

from aiohttp import BodyPartReader, WSMsgType, web
from slack_sdk.models.views import View

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

# The fault key for the POST of the bytes to an upload URL: `slack.inject(UPLOAD, Fault(...))`.
UPLOAD = "upload"

# Slack's rate-limit tiers, in calls per minute per method per workspace per app
# (https://docs.slack.dev/apis/web-api/rate-limits; shared/docs/slack-platform.md §6).
TIER_1, TIER_2, TIER_3, TIER_4 = 1, 20, 50, 100

# The tier of each method the bot (or this fake) uses, from each method's reference page. Assign it (or a
# part, or smaller numbers) to `FakeSlack.tier_limits` to enforce it. Left out on purpose: chat.postMessage
# ("special": about one message per second per channel, with short bursts) and auth.test ("special").
TIERS: dict[str, int] = {
    "apps.connections.open": TIER_1,
    "chat.update": TIER_3,
    "chat.postEphemeral": TIER_4,
    "conversations.history": TIER_3,  # Tier 1 (and 15 items a page) for commercial non-Marketplace apps
    "conversations.replies": TIER_3,  # idem
    "conversations.join": TIER_3,
    "reactions.add": TIER_3,
    "reactions.remove": TIER_2,
    "files.info": TIER_4,
    "files.getUploadURLExternal": TIER_4,
    "files.completeUploadExternal": TIER_4,
    "views.publish": TIER_4,
    "views.open": TIER_4,
    "views.update": TIER_4,
    "users.info": TIER_4,
}

_RATE_WINDOW = 60.0
_CHUNK = 64 * 1024
_MAX_SNIPPET = 1024 * 1024  # files.getUploadURLExternal: snippets are limited to 1 MB (snippet_too_large)
_MAX_VIEW_BYTES = 250 * 1024  # views.*: view_too_large past 250 kB
_MAX_SHARE_CHANNELS = 100  # files.completeUploadExternal: channels_limit_exceeded past 100
_TRIGGER_ID = re.compile(r"^\d+\.\d+\.\w+$")  # "132456.7890123.abcdef", as views.open documents


@dataclass(frozen=True)
class Fault:
    """One injected failure for the next call of a Web API method (see `FakeSlack.inject`).

    kind:
      "http"      -> HTTP `status` with {"ok": false, "error": "internal_error"}.
      "error"     -> HTTP 200 {"ok": false, "error": error}.
      "ratelimit" -> HTTP 429, `Retry-After: retry_after`, {"ok": false, "error": "ratelimited"};
                     nothing stored.
      "delay"     -> sleep `delay` seconds, then answer (see `FakeSlack.inject` for `store`); with
                     `released`, wait until the test sets that event instead (`delay` is then only a
                     ceiling), so a test holds a call exactly as long as it needs, whatever the machine.
      "drop"      -> do the call (store the message, complete the upload…), then close the connection
                     without an answer: the client sees the server disconnect, the work is done.
    store: for "http"/"error", perform the side effect (e.g. store the message) before failing, like an
      ambiguous `fatal_error`; for "delay", store BEFORE sleeping so a client that times out finds it later.
    """

    kind: Literal["http", "error", "ratelimit", "delay", "drop"]
    status: int = 500
    error: str = ""
    retry_after: int = 1
    delay: float = 0.0
    store: bool = False
    released: threading.Event | None = field(default=None, compare=False)


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


class ExternalUpload(NamedTuple):
    """The bytes POSTed to an upload URL from files.getUploadURLExternal (hashed, not kept)."""

    file_id: str
    filename: str
    declared_length: int  # `length` given to files.getUploadURLExternal
    size: int  # bytes received
    sha256: str  # hex digest of the bytes received
    content_type: str  # of the raw body, or of the multipart file part


class OpenedView(NamedTuple):
    """A modal opened with views.open: the trigger it used and the view as Slack answered it."""

    trigger_id: str
    view_id: str
    view: dict[str, Any]


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


@dataclass
class _PendingUpload:
    """A file id handed out by files.getUploadURLExternal, until files.completeUploadExternal."""

    filename: str
    length: int
    alt_txt: str | None
    snippet_type: str | None
    upload: ExternalUpload | None = None  # the last upload whose size matched `length`
    content: bytes | None = None  # its bytes, with keep_uploads only
    completed: bool = False


@dataclass
class _PendingShare:
    """A completed upload whose share has not appeared yet (asynchronous sharing)."""

    file_ids: list[str]
    targets: list[str]
    thread_ts: str | None
    text: str
    blocks: list[dict[str, Any]] | None
    due_at: float  # on FakeSlack.clock


class _BadUpload(Exception):
    """An upload body the fake cannot read (no file part in a multipart form, malformed form)."""


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
        keep_uploads: bool = False,
    ) -> None:
        super().__init__()
        self.bot_token = bot_token
        self.app_token = app_token
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        # Keep the bytes of external uploads (else only hashed and counted); a completed file's kept bytes
        # are then served at its url_private(_download) and returned by `upload_content`.
        self.keep_uploads = keep_uploads
        # The clock of the rate-limit windows (tests may replace it to move time on).
        self.clock: Callable[[], float] = time.monotonic
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
            "files.getUploadURLExternal": self._files_get_upload_url_external,
            "files.completeUploadExternal": self._files_complete_upload_external,
            "views.publish": self._views_publish,
            "views.open": self._views_open,
            "views.update": self._views_update,
            "users.info": self._users_info,
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
        # conversations.history/replies answer at most this many messages a page, whatever `limit` asks
        # (and this many by default): 15 for commercially distributed apps outside the Marketplace, which
        # also get Tier 1 for both methods (set `tier_limits`). None: `limit` as asked.
        self.max_page_size: int | None = None
        self.missing_channels: set[str] = set()
        self.unfetchable_image_hosts: set[str] = set()
        # Scopes the app was installed without: "files:read" makes downloads answer the sign-in page
        # (HTTP 200, as Slack does) and files.info answer missing_scope.
        self.missing_scopes: set[str] = set()
        # Tokens an admin revoked: every call made with one answers token_revoked.
        self.revoked_tokens: set[str] = set()
        # The scopes the bot token was granted: set, Web API answers to bot-token calls carry them (less
        # `missing_scopes`) in the x-oauth-scopes header, as Slack's do; None (the default), no such header.
        self.granted_scopes: list[str] | None = None
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
        # Private channels (file shares are recorded under shares["private"]; all others are public).
        self.private_channels: set[str] = set()
        # files.getUploadURLExternal answers file_upload_size_restricted past this `length`.
        self.max_upload_size: int | None = None
        # Asynchronous sharing (bolt-js#2115, python-slack-sdk#1277): files.completeUploadExternal answers
        # ok, files.info knows the file at once but shows `shares: {}`, and the share (files.info's
        # `shares` and the file_share message in the channel or thread) appears only once files.info has
        # been asked about the file `share_after_info_calls` times AND `share_delay_s` seconds of `clock`
        # have passed since the completion. 0 and 0.0 (the default): shared at once.
        self.share_after_info_calls = 0
        self.share_delay_s = 0.0
        # A second completion of a file whose share is still on its way: Slack documents the method as
        # once only, so by default it answers file_not_found; True models the race a client must avoid,
        # where the repeat is taken too and the file is shared twice.
        self.repeat_completion_shares = False
        self._unshared: list[_PendingShare] = []  # completions whose share has not appeared yet
        self._info_calls: Counter[str] = Counter()  # files.info calls per file id
        # External uploads: accepted bodies (size == declared length), and refused ones (HTTP 400).
        self.external_uploads: list[ExternalUpload] = []
        self.refused_uploads: list[ExternalUpload] = []
        self._pending_uploads: dict[str, _PendingUpload] = {}
        # Views: the latest App Home per user, how many times each user's Home was published, the modals
        # opened (oldest first), every views.update that succeeded, and all live views by id.
        self.home_views: dict[str, dict[str, Any]] = {}
        self.home_publishes: Counter[str] = Counter()
        self.opened_views: list[OpenedView] = []
        self.view_updates: list[dict[str, Any]] = []
        self.views: dict[str, dict[str, Any]] = {}
        self._external_view_ids: dict[str, str] = {}
        self._used_triggers: set[str] = set()
        # users.info answers for these (see add_user); unknown ids answer user_not_found.
        # (Built directly: _init_state runs under the lock in reset, and add_user takes it.)
        self.users: dict[str, dict[str, Any]] = {
            "U0ALICE": self._user_object("U0ALICE", "alice"),
            self.bot_user_id: self._user_object(self.bot_user_id, "lipsync", is_bot=True),
        }
        # Opt-in rate limits: method -> calls admitted per sliding 60 s window (None: no limits). The window
        # is per method (Slack's is per method per workspace per app; this fake is one workspace and one
        # app), or per (method, channel) for the methods in `per_channel_limits`. A call over the limit
        # answers HTTP 429, Retry-After (whole seconds until the oldest call in the window leaves it) and
        # {"ok": false, "error": "ratelimited"}; it does nothing, is not counted in the window, and is
        # counted in `ratelimited_calls[method]`. Calls that fail authentication are not counted.
        self.tier_limits: dict[str, int] | None = None
        self.per_channel_limits: set[str] = set()
        self.ratelimited_calls: Counter[str] = Counter()
        self._windows: dict[tuple[str, str], deque[float]] = {}

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
            self._share_due()
            return copy.deepcopy([m for m in self._messages[channel] if _is_top_level(m)])

    def replies(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """Replies in a thread, oldest first, without the parent."""
        with self.lock:
            self._share_due()
            return copy.deepcopy(self._thread_replies(channel, thread_ts))

    def message(self, channel: str, ts: str) -> dict[str, Any] | None:
        with self.lock:
            self._share_due()
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
        file = self._file_object(file_id, name, name, mimetype, filetype, size, user)
        file.update(extra)
        with self.lock:
            self.files[file_id] = file
            self._file_bodies[file_id] = _FileBody(content, content_factory, size, mimetype, name)
            return copy.deepcopy(file)

    def _file_object(
        self, file_id: str, name: str, title: str, mimetype: str, filetype: str, size: int, user: str
    ) -> dict[str, Any]:
        """A hosted file as Slack's file objects describe it; its bytes are served at url_private."""
        base = f"{self.base_url}/files-pri/{self.team_id}-{file_id}"
        quoted = quote(name)
        now = int(time.time())
        return {
            "id": file_id,
            "created": now,
            "timestamp": now,
            "name": name,
            "title": title,
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
            "file_access": "visible",
            "has_rich_preview": False,
            "is_public": False,
            "public_url_shared": False,
            "url_private": f"{base}/{quoted}",
            "url_private_download": f"{base}/download/{quoted}",
            "permalink": f"https://test.slack.com/files/{user}/{file_id}/{quoted}",
            "permalink_public": f"https://slack-files.com/{self.team_id}-{file_id}-0123456789",
        }

    def add_redirect(self, location: str, status: int = 302) -> str:
        """A URL on this fake that answers `status` with `Location: location`, as url_private does when
        it sends a client to another host (files-origin.slack.com, slack-files.com). Requests to it are
        recorded in `downloads` like file downloads."""
        key = uuid.uuid4().hex
        with self.lock:
            self._redirects[key] = (location, status)
        return f"{self.base_url}/redirect/{key}"

    def thread_files(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """The files shared in a thread (parent included), oldest first, as files.info shows them now."""
        with self.lock:
            self._share_due()
            found = [
                self.files.get(f.get("id", ""), f)
                for m in self._messages[channel]
                if m["ts"] == thread_ts or m.get("thread_ts") == thread_ts
                for f in m.get("files", [])
            ]
            return copy.deepcopy(found)

    def unshared(self) -> int:
        """Completions whose share has not appeared yet (asynchronous sharing)."""
        with self.lock:
            self._share_due()
            return len(self._unshared)

    def upload_content(self, file_id: str) -> bytes | None:
        """The bytes of a file's accepted external upload, if `keep_uploads` was on when it arrived."""
        with self.lock:
            pending = self._pending_uploads.get(file_id)
            return pending.content if pending is not None else None

    def add_user(self, user_id: str, name: str = "tester", **fields: Any) -> dict[str, Any]:
        """Register (or replace) a user that users.info knows. `fields`: is_admin, is_owner, tz, tz_offset,
        is_bot as `_user_object` takes them; anything else is merged into the object."""
        user = self._user_object(user_id, name, **fields)
        with self.lock:
            self.users[user_id] = user
            return copy.deepcopy(user)

    def _user_object(
        self,
        user_id: str,
        name: str,
        is_admin: bool = False,
        is_owner: bool = False,
        *,
        tz: str = "America/Los_Angeles",
        tz_offset: int = -28800,
        is_bot: bool = False,
        **extra: Any,
    ) -> dict[str, Any]:
        user: dict[str, Any] = {
            "id": user_id,
            "team_id": self.team_id,
            "name": name,
            "deleted": False,
            "color": "9f69e7",
            "real_name": name.title(),
            "tz": tz,
            "tz_label": tz,
            "tz_offset": tz_offset,
            "profile": self._profile(user_id, name, is_bot),
            "is_admin": is_admin,
            "is_owner": is_owner,
            "is_primary_owner": False,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "is_bot": is_bot,
            "is_app_user": False,
            "updated": int(time.time()),
            "is_email_confirmed": not is_bot,
        }
        user.update(extra)
        return user

    def _profile(self, user_id: str, name: str, is_bot: bool) -> dict[str, Any]:
        """A user's profile as users.info answers it (tests/slack_samples/users.info.json): no email
        (that needs users:read.email), no custom image; a bot's carries its app and bot ids."""
        avatar = f"https://avatars.slack-edge.com/{self.team_id}-{user_id}"
        profile: dict[str, Any] = {
            "title": "",
            "phone": "",
            "skype": "",
            "real_name": name.title(),
            "real_name_normalized": name.title(),
            "display_name": name,
            "display_name_normalized": name,
            "first_name": name.title(),
            "last_name": "",
            "status_text": "",
            "status_text_canonical": "",
            "status_emoji": "",
            "status_emoji_display_info": [],
            "status_expiration": 0,
            "avatar_hash": "g0123456789a",
            **{f"image_{px}": f"{avatar}_{px}.png" for px in (24, 32, 48, 72, 192, 512)},
            "team": self.team_id,
        }
        if is_bot:
            profile.update(api_app_id=APP_ID, bot_id=BOT_ID, always_active=True)
        return profile

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
        app.router.add_post("/upload/{file_id}", self._handle_upload)
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
        limited = self._over_tier_limit(method, params)
        if limited is not None:
            return limited
        fault = self._faults.pop(method)
        if fault is None:
            response = _json(self._run(handler, params))
        else:
            response = await self._apply_fault(fault, request, handler, params)
        with self.lock:
            granted = self.granted_scopes
            if granted is not None and request.headers.get("Authorization") == f"Bearer {self.bot_token}":
                scopes = [scope for scope in granted if scope not in self.missing_scopes]
                response.headers["x-oauth-scopes"] = ",".join(scopes)
        return response

    async def _apply_fault(
        self, fault: Fault, request: web.Request, handler: MethodHandler, params: dict[str, Any]
    ) -> web.Response:
        if fault.kind == "ratelimit":
            return _json(
                {"ok": False, "error": "ratelimited"},
                status=429,
                headers={"Retry-After": str(fault.retry_after)},
            )
        if fault.kind == "drop":
            self._run(handler, params)
            if request.transport is not None:
                request.transport.abort()  # the answer never leaves; aiohttp's write of it goes nowhere
            return _json({"ok": False, "error": "request_timeout"})
        if fault.kind == "delay":
            if fault.store:
                body = self._run(handler, params)
                await _held(fault)
                return _json(body)
            await _held(fault)
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
            self._share_due()  # shares whose delay is over appear before any answer that could show them
            try:
                return copy.deepcopy(handler(params))
            except SlackError as exc:
                return {"ok": False, "error": exc.error, **exc.extra}

    def _over_tier_limit(self, method: str, params: dict[str, Any]) -> web.Response | None:
        """The 429 answer when `tier_limits` caps `method` and its window is full; else admit the call."""
        with self.lock:
            limit = (self.tier_limits or {}).get(method)
            if limit is None:
                return None
            channel = ""
            if method in self.per_channel_limits:
                channel = str(params.get("channel") or params.get("channel_id") or "")
            window = self._windows.setdefault((method, channel), deque())
            now = self.clock()
            while window and now - window[0] >= _RATE_WINDOW:
                window.popleft()
            if len(window) < limit:
                window.append(now)
                return None
            self.ratelimited_calls[method] += 1
            retry_after = max(1, math.ceil(window[0] + _RATE_WINDOW - now)) if window else 1
        return _json(
            {"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": str(retry_after)}
        )

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
        return {"ok": True, "channel": self._channel_object(channel)}

    def _channel_object(self, channel: str) -> dict[str, Any]:
        """A public channel the bot is in, as conversations.join answers it (its documented example)."""
        created = 1_700_000_000
        about = {"value": "", "creator": "", "last_set": 0}
        return {
            "id": channel,
            "name": channel.lower(),
            "name_normalized": channel.lower(),
            "is_channel": True,
            "is_group": False,
            "is_im": False,
            "is_mpim": False,
            "is_private": False,
            "created": created,
            "creator": "U0ALICE",
            "updated": created * 1000,
            "is_archived": False,
            "is_general": False,
            "unlinked": 0,
            "is_shared": False,
            "is_ext_shared": False,
            "is_org_shared": False,
            "is_pending_ext_shared": False,
            "shared_team_ids": [self.team_id],
            "pending_shared": [],
            "pending_connected_team_ids": [],
            "context_team_id": self.team_id,
            "is_member": True,
            "last_read": "0000000000.000000",
            "topic": dict(about),
            "purpose": dict(about),
            "previous_names": [],
            "priority": 0,
        }

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
        page, has_more, cursor = _paginate(selected, params, 100, self.max_page_size)
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
        page, has_more, cursor = _paginate([parent, *replies], params, 1000, self.max_page_size)
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
        file_id = str(params.get("file") or "")
        file = self.files.get(file_id)
        if file is None:
            raise SlackError("file_not_found")
        self._info_calls[file_id] += 1
        self._share_due()
        return {"ok": True, "file": file, "comments": [], "response_metadata": {"next_cursor": ""}}

    def _files_get_upload_url_external(self, params: dict[str, Any]) -> dict[str, Any]:
        if "files:write" in self.missing_scopes:
            raise SlackError("missing_scope", needed="files:write", provided="chat:write")
        filename = str(params.get("filename") or "")
        raw_length = params.get("length")
        if raw_length in (None, "", 0, "0"):
            raise SlackError("missing_argument")  # "Typically only occurs when the length provided is 0"
        try:
            length = int(str(raw_length))
        except ValueError:
            raise SlackError("invalid_arguments") from None
        if not filename or length < 0:
            raise SlackError("invalid_arguments")
        snippet_type = str(params.get("snippet_type") or "") or None
        if snippet_type is not None and length > _MAX_SNIPPET:
            raise SlackError("snippet_too_large")
        if self.max_upload_size is not None and length > self.max_upload_size:
            raise SlackError("file_upload_size_restricted")
        file_id = f"F{uuid.uuid4().hex[:10].upper()}"
        alt_txt = str(params.get("alt_txt") or "") or None
        self._pending_uploads[file_id] = _PendingUpload(filename, length, alt_txt, snippet_type)
        return {"ok": True, "upload_url": f"{self.base_url}/upload/{file_id}", "file_id": file_id}

    def _files_complete_upload_external(self, params: dict[str, Any]) -> dict[str, Any]:
        if "files:write" in self.missing_scopes:
            raise SlackError("missing_scope", needed="files:write", provided="chat:write")
        entries = params.get("files")
        if (
            not isinstance(entries, list)
            or not entries
            or not all(isinstance(e, dict) and isinstance(e.get("id"), str) for e in entries)
        ):
            raise SlackError("invalid_arguments")
        targets = self._share_targets(params)
        thread_ts = str(params.get("thread_ts") or "") or None
        if thread_ts is not None:
            if len(targets) != 1:
                raise SlackError("invalid_arguments")  # "provide only one channel when using thread_ts"
            if self._top_level(targets[0], thread_ts) is None:
                raise SlackError("thread_not_found")
        initial_comment = str(params.get("initial_comment") or "")
        blocks = None if initial_comment else self._validated_blocks(params)
        # Check every file before changing anything: one bad id fails the whole call, nothing shared.
        ids = [str(e["id"]) for e in entries]
        if self.repeat_completion_shares and all(self._share_pending(file_id) for file_id in ids):
            created = [self.files[file_id] for file_id in ids]  # the race: taken again, shared again
        else:
            for file_id in ids:
                pending = self._pending_uploads.get(file_id)
                # "This method can only be called once": a completed (or never fully uploaded) id is gone.
                if pending is None or pending.completed or pending.upload is None or ids.count(file_id) > 1:
                    raise SlackError("file_not_found")
            created = []
            for entry in entries:
                pending = self._pending_uploads[entry["id"]]
                pending.completed = True
                created.append(self._completed_file(entry, pending))
        share = _PendingShare(
            ids, targets, thread_ts, initial_comment, blocks, self.clock() + self.share_delay_s
        )
        if self.share_after_info_calls > 0 or self.share_delay_s > 0:
            self._unshared.append(share)
        else:
            self._share(share)
        # Slack documents `files: [{id, title}]` and answers whole file objects (tests/slack_samples/): as
        # they are now, so with `shares: {}` while the share is on its way.
        return {"ok": True, "files": created}

    def _share(self, share: _PendingShare) -> None:
        files = [self.files[file_id] for file_id in share.file_ids]
        for channel in share.targets:
            self._share_files(channel, share.thread_ts, files, share.text, share.blocks)

    def _share_pending(self, file_id: str) -> bool:
        return any(file_id in share.file_ids for share in self._unshared)

    def _share_due(self) -> None:
        """Make the shares whose time has come appear (asynchronous sharing); oldest first."""
        if not self._unshared:
            return
        now = self.clock()
        for share in list(self._unshared):
            asked = max(self._info_calls[file_id] for file_id in share.file_ids)
            if asked >= self.share_after_info_calls and now >= share.due_at:
                self._unshared.remove(share)
                self._share(share)

    def _share_targets(self, params: dict[str, Any]) -> list[str]:
        """Channels to share in: `channel_id` and/or the comma-separated `channels`; none keeps it private."""
        channel_id = str(params.get("channel_id") or "")
        listed = [c.strip() for c in str(params.get("channels") or "").split(",") if c.strip()]
        if len(listed) > _MAX_SHARE_CHANNELS:
            raise SlackError("channels_limit_exceeded")
        targets = list(dict.fromkeys([*([channel_id] if channel_id else []), *listed]))
        for channel in targets:
            if channel in self.missing_channels:
                raise SlackError("channel_not_found" if channel == channel_id else "invalid_channel")
            # Sharing a file needs membership: chat:write.public does not cover it.
            if channel in self.not_in_channel or channel in self.not_joined:
                raise SlackError("not_in_channel")
        return targets

    def _completed_file(self, entry: dict[str, Any], pending: _PendingUpload) -> dict[str, Any]:
        upload = pending.upload
        assert upload is not None
        file_id, name = upload.file_id, pending.filename
        title = str(entry.get("title") or "") or name
        mimetype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        extension = name.rsplit(".", 1)[1].lower() if "." in name else ""
        filetype = pending.snippet_type or extension or "binary"
        file = self._file_object(file_id, name, title, mimetype, filetype, upload.size, self.bot_user_id)
        file.update(
            {
                "display_as_bot": False,
                "username": "",
                "channels": [],
                "groups": [],
                "ims": [],
                "shares": {},
                "comments_count": 0,
            }
        )
        if pending.alt_txt:
            file["alt_txt"] = pending.alt_txt
        self.files[file_id] = file
        if pending.content is not None:
            self._file_bodies[file_id] = _FileBody(pending.content, None, upload.size, mimetype, name)
        return file

    def _share_files(
        self,
        channel: str,
        thread_ts: str | None,
        files: list[dict[str, Any]],
        text: str,
        blocks: list[dict[str, Any]] | None,
    ) -> None:
        """Post the file_share message of an upload in `channel` (in a thread) and note the share."""
        message: dict[str, Any] = {
            "type": "message",
            "subtype": "file_share",
            "user": self.bot_user_id,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": self.team_id,
            "channel": channel,
            "ts": self._next_ts(),
            "text": text,
            "upload": True,
            "display_as_bot": False,
        }
        if blocks:
            message["blocks"] = blocks
        private = channel in self.private_channels
        for file in files:
            share: dict[str, Any] = {
                "reply_users": [],
                "reply_users_count": 0,
                "reply_count": 0,
                "ts": message["ts"],
                "channel_name": channel.lower(),
                "team_id": self.team_id,
                "share_user_id": self.bot_user_id,
                "source": "UNKNOWN",
            }
            if thread_ts is not None:
                share["thread_ts"] = thread_ts
            file["shares"].setdefault("private" if private else "public", {}).setdefault(channel, []).append(
                share
            )
            file["groups" if private else "channels"].append(channel)
            file["is_public"] = file["is_public"] or not private
        message["files"] = copy.deepcopy(files)
        if thread_ts is not None:
            message["thread_ts"] = thread_ts
            self._note_reply(channel, thread_ts, message)
        self._messages[channel].append(message)

    def _views_publish(self, params: dict[str, Any]) -> dict[str, Any]:
        user_id = str(params.get("user_id") or "")
        if not user_id:
            raise SlackError("invalid_arguments")
        view = self._validated_view(params, ("home",))
        current = self.home_views.get(user_id)
        if params.get("hash") and (current is None or params["hash"] != current["hash"]):
            raise SlackError("hash_conflict")
        view_id = current["id"] if current is not None else _view_id()
        published = self._view_object(view_id, view)
        self.home_views[user_id] = published
        self.home_publishes[user_id] += 1
        self.views[view_id] = published
        return {"ok": True, "view": published}

    def _views_open(self, params: dict[str, Any]) -> dict[str, Any]:
        trigger_id = str(params.get("trigger_id") or params.get("interactivity_pointer") or "")
        if not trigger_id:
            raise SlackError("invalid_arguments")
        if not _TRIGGER_ID.match(trigger_id):
            raise SlackError("invalid_trigger_id")
        if trigger_id in self._used_triggers:
            raise SlackError("exchanged_trigger_id")
        view = self._validated_view(params, ("modal",))
        external_id = str(view.get("external_id") or "")
        if external_id and external_id in self._external_view_ids:
            raise SlackError("duplicate_external_id")
        self._used_triggers.add(trigger_id)
        view_id = _view_id()
        opened = self._view_object(view_id, view)
        self.views[view_id] = opened
        if external_id:
            self._external_view_ids[external_id] = view_id
        self.opened_views.append(OpenedView(trigger_id, view_id, copy.deepcopy(opened)))
        return {"ok": True, "view": opened}

    def _views_update(self, params: dict[str, Any]) -> dict[str, Any]:
        external_id = str(params.get("external_id") or "")
        view_id = str(params.get("view_id") or "") or self._external_view_ids.get(external_id, "")
        if not view_id and not external_id:
            raise SlackError("invalid_arguments")
        current = self.views.get(view_id)
        if current is None:
            raise SlackError("not_found")
        view = self._validated_view(params, (current["type"],))
        if params.get("hash") and params["hash"] != current["hash"]:
            raise SlackError("hash_conflict")
        updated = self._view_object(view_id, view)
        self.views[view_id] = updated
        for user_id, home in self.home_views.items():
            if home["id"] == view_id:
                self.home_views[user_id] = updated
        self.view_updates.append(copy.deepcopy(updated))
        return {"ok": True, "view": updated}

    def _validated_view(self, params: dict[str, Any], types: tuple[str, ...]) -> dict[str, Any]:
        """The `view` argument, checked as Slack would (structure via slack_sdk's View, then our block
        checks); invalid_arguments with Slack's response_metadata messages otherwise."""
        view = params.get("view")
        if isinstance(view, str):
            try:
                view = json.loads(view)
            except ValueError:
                raise SlackError("invalid_arguments") from None
        if not isinstance(view, dict):
            raise SlackError("invalid_arguments")
        if len(json.dumps(view)) > _MAX_VIEW_BYTES:
            raise SlackError("view_too_large")
        errors: list[str] = []
        if view.get("type") not in types:
            errors.append(f"must be one of {list(types)} [json-pointer:/view/type]")
        blocks = view.get("blocks")
        if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
            errors.append("missing required field: blocks [json-pointer:/view/blocks]")
        if view.get("type") == "modal" and not view.get("title"):
            errors.append("missing required field: title [json-pointer:/view/title]")
        if not errors:
            try:
                parsed = View(**view)
                parsed.to_dict()  # runs slack_sdk's validators, blocks included
                if any(block is None for block in parsed.blocks or []):
                    errors.append("unknown block type [json-pointer:/view/blocks]")
            except Exception as exc:  # SlackObjectFormationError, or a TypeError from a malformed field
                errors.append(f"{exc} [json-pointer:/view]")
        if not errors:
            for index, block in enumerate(view["blocks"]):
                errors.extend(
                    e.replace("json-pointer:", "json-pointer:/view") for e in self._block_errors(index, block)
                )
        if errors:
            raise SlackError(
                "invalid_arguments", response_metadata={"messages": [f"[ERROR] {e}" for e in errors]}
            )
        return copy.deepcopy(view)

    def _view_object(self, view_id: str, view: dict[str, Any]) -> dict[str, Any]:
        """A view as Slack answers it (views.open's documented response), its blocks as Slack renders them."""
        return {
            "id": view_id,
            "team_id": self.team_id,
            "type": view["type"],
            "title": _rendered(view.get("title")),
            "close": _rendered(view.get("close")),
            "submit": _rendered(view.get("submit")),
            "blocks": [_rendered({"block_id": _block_id(), **block}) for block in view["blocks"]],
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "external_id": view.get("external_id", ""),
            "state": {"values": {}},
            "hash": f"{int(time.time())}.{uuid.uuid4().hex[:8]}",
            "clear_on_close": bool(view.get("clear_on_close", False)),
            "notify_on_close": bool(view.get("notify_on_close", False)),
            "submit_disabled": bool(view.get("submit_disabled", False)),
            "previous_view_id": None,
            "root_view_id": view_id,
            "app_id": APP_ID,
            "app_installed_team_id": self.team_id,
            "bot_id": BOT_ID,
        }

    def _users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        if "users:read" in self.missing_scopes:
            raise SlackError("missing_scope", needed="users:read", provided="chat:write")
        user = self.users.get(str(params.get("user") or ""))
        if user is None:
            raise SlackError("user_not_found")
        if _truthy(params.get("include_locale")):
            user = {**user, "locale": "en-US"}
        return {"ok": True, "user": user}

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

    async def _handle_upload(self, request: web.Request) -> web.Response:
        """The upload URL: the bytes, raw or as a multipart form's file part, streamed and hashed.

        200 `OK - <size>` when the size matches the declared `length`, else 400 (recorded in
        `refused_uploads`). Until completion the file may be uploaded again (the last good body counts);
        once completed, or for an id never handed out, 404. Faults injected under `UPLOAD`: "delay" sleeps
        first; "ratelimit" answers 429; "http"/"error" answer `status` (store=True: after accepting it).
        """
        file_id = request.match_info["file_id"]
        fault = self._faults.pop(UPLOAD)
        if fault is not None and fault.kind == "delay":
            await asyncio.sleep(fault.delay)
            fault = None
        with self.lock:
            pending = self._pending_uploads.get(file_id)
            live = pending is not None and not pending.completed
        if pending is None or not live:
            await _drain(request)
            return web.Response(status=404, text="Not Found")
        if fault is not None and (fault.kind == "ratelimit" or not fault.store):
            await _drain(request)
            if fault.kind == "ratelimit":
                return web.Response(
                    status=429, text="ratelimited", headers={"Retry-After": str(fault.retry_after)}
                )
            return web.Response(status=fault.status, text="internal_error")
        keep = self.keep_uploads
        try:
            content_type, digest, size, content = await _receive_upload(request, keep)
        except _BadUpload as exc:
            return web.Response(status=400, text=str(exc))
        upload = ExternalUpload(file_id, pending.filename, pending.length, size, digest, content_type)
        with self.lock:
            if size != pending.length:
                self.refused_uploads.append(upload)
                return web.Response(
                    status=400, text=f"length mismatch: declared {pending.length}, received {size}"
                )
            pending.upload, pending.content = upload, content
            self.external_uploads.append(upload)
        if fault is not None:
            return web.Response(status=fault.status, text="internal_error")
        return web.Response(text=f"OK - {size}")

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
    for key in ("blocks", "metadata", "attachments", "view", "files"):
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
    items: list[dict[str, Any]], params: dict[str, Any], default_limit: int, max_limit: int | None = None
) -> tuple[list[dict[str, Any]], bool, str]:
    """Offset cursors ("offset:N"): enough for clients that follow next_cursor. `max_limit` caps the
    page (and the default) whatever `limit` asks, as Slack does for apps under stricter limits."""
    if max_limit is not None:
        default_limit = min(default_limit, max_limit)
    cursor = str(params.get("cursor") or "")
    start = int(cursor.removeprefix("offset:")) if cursor.startswith("offset:") else 0
    try:
        limit = int(params.get("limit") or default_limit)
    except ValueError:
        limit = default_limit
    limit = max(1, limit if max_limit is None else min(limit, max_limit))
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


def _view_id() -> str:
    return f"V{uuid.uuid4().hex[:10].upper()}"


def _block_id() -> str:
    """What Slack names a block given without a block_id (a few random letters and digits)."""
    return uuid.uuid4().hex[:5]


def _rendered(value: Any) -> Any:
    """Block Kit as Slack echoes it: plain_text objects carry `emoji` (true unless given)."""
    if isinstance(value, list):
        return [_rendered(item) for item in value]
    if not isinstance(value, dict):
        return value
    rendered = {key: _rendered(item) for key, item in value.items()}
    if rendered.get("type") == "plain_text":
        rendered.setdefault("emoji", True)
    return rendered


async def _drain(request: web.Request) -> None:
    """Read and drop the rest of a body, so an early answer does not reset a client still sending."""
    if not request.content.at_eof():
        async for _ in request.content.iter_chunked(_CHUNK):
            pass


async def _hashed(chunks: AsyncIterator[bytes], keep: bool) -> tuple[str, int, bytes | None]:
    digest = hashlib.sha256()
    size = 0
    kept: list[bytes] | None = [] if keep else None
    async for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
        if kept is not None:
            kept.append(chunk)
    return digest.hexdigest(), size, b"".join(kept) if kept is not None else None


async def _part_chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(_CHUNK):
        yield chunk


async def _receive_upload(request: web.Request, keep: bool) -> tuple[str, str, int, bytes | None]:
    """(content type, sha256, size, bytes if `keep`) of an upload: the raw body, or the file part of a
    multipart form (the first part with a filename, or named "file" / "filename"; other parts skipped)."""
    if request.content_type != "multipart/form-data":
        digest, size, content = await _hashed(request.content.iter_chunked(_CHUNK), keep)
        return request.headers.get("Content-Type", "application/octet-stream"), digest, size, content
    found: tuple[str, str, int, bytes | None] | None = None
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            is_file = isinstance(part, BodyPartReader) and (
                part.filename is not None or part.name in ("file", "filename")
            )
            if found is None and isinstance(part, BodyPartReader) and is_file:
                digest, size, content = await _hashed(_part_chunks(part), keep)
                found = (part.headers.get("Content-Type", "application/octet-stream"), digest, size, content)
            else:
                await part.release()
    except (ValueError, AssertionError) as exc:
        await _drain(request)
        raise _BadUpload(f"malformed multipart body: {exc}") from exc
    if found is None:
        raise _BadUpload("no file part in the multipart body")
    return found


async def _held(fault: Fault) -> None:
    """A "delay" fault's wait: `delay` seconds, or until its `released` event is set (at most `delay`)."""
    if fault.released is None:
        await asyncio.sleep(fault.delay)
    else:
        await asyncio.get_running_loop().run_in_executor(None, fault.released.wait, fault.delay)
