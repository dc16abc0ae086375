"""Slack I/O for jobs: post, find, update, react. It never writes job state.

`chat.postMessage` has no idempotency key, so a post whose answer was lost (timeout, 5xx, `fatal_error`)
may or may not have landed. Every post carries message metadata with the job id and the message's kind;
the lanes mark `<kind>_state=attempted` in the job before posting (bot/lanes/posting.py
`Posting.post_once`), and whoever finds that marker later asks `find_posted` before posting again. The
client never retries by itself for the same reason (slack_sdk's default connection-error retry can post
twice).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.observe.metrics import SLACK_ERRORS
from bot.retry import Backoff, retry_after_seconds
from bot.views.text import Message

log = logging.getLogger(__name__)

METADATA_EVENT = "lipsync_job"
# Errors after which nothing was posted and posting again cannot help.
UNREACHABLE = {"not_in_channel", "channel_not_found", "is_archived", "restricted_action", "thread_not_found"}
# Slack's answers to a token (bot or app-level) that no retry will fix.
REFUSED_TOKEN_ERRORS = frozenset(
    {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "not_allowed_token_type"}
)
# Errors after which Slack may have posted the message anyway.
AMBIGUOUS = {"fatal_error", "internal_error", "request_timeout", "service_unavailable"}
NETWORK_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)
# Looking for an earlier post: the window around the attempt allows for Slack's clock against Redis's.
CLOCK_MARGIN_S = 30
PAGE_SIZE = 200  # Slack's advised page size for history reads (15 at most for some apps, see below)
MAX_PAGES = 100  # a guard against a cursor that never ends, far beyond any real window
# Commercially distributed apps outside the Marketplace read history at Tier 1 (a call a minute) and 15
# messages a page. A search interrupted by a 429 resumes from its cursor (scans of unclear posts, kept for
# this many jobs at once), and a thread is read on after Retry-After, up to this long in all.
MAX_RESUMED_SCANS = 1000
MAX_THREAD_WAIT_S = 150.0
# After a 429, what Retry-After asks (a second when it says nothing): for a job's step (SlackRetryLater) and a
# thread being read, up to MAX_THREAD_WAIT_S; for a courtesy call waited out in place, up to 10 s.
RATE_LIMITED = Backoff(base_s=1.0, cap_s=1.0, retry_after_cap_s=MAX_THREAD_WAIT_S)
COURTESY_RATE_LIMITED = Backoff(base_s=1.0, cap_s=1.0, retry_after_cap_s=10.0)


class SlackRetryLater(Exception):
    """Rate limited: nothing was posted; try again after `delay_s`."""

    def __init__(self, delay_s: float) -> None:
        super().__init__(f"rate limited for {delay_s} s")
        self.delay_s = delay_s


class SlackAmbiguous(Exception):
    """The post may have landed; the next attempt must reconcile first, after `settle_s`.

    When Slack answered (5xx, `fatal_error`) the request is over and a short wait will do; when we got
    no answer it may still be in flight, so wait longer than the client timeout before looking.
    """

    def __init__(self, reason: str, settle_s: float = 2.0) -> None:
        super().__init__(reason)
        self.settle_s = settle_s


class SlackUnreachable(Exception):
    """The bot cannot post there (not a member, archived, deleted)."""


class SlackFailed(Exception):
    """Slack refused the call (auth, scopes, payload); nothing was posted."""


def make_client(token: str, base_url: str, timeout_s: float = 10.0, shared: bool = True) -> AsyncWebClient:
    """The Web API client. `shared`: one aiohttp session (connection pool) for all its calls and for the
    response_url posts of `SlackOut`; without it slack_sdk opens a new session, and in production a new
    TLS connection, for every call. Build it in a running event loop; close it with `close_client`.
    Bolt gets a client without one: it deep-copies each request's client for lazy listeners, and a live
    session cannot be copied (our listeners talk to Slack through `SlackOut` anyway)."""
    timeout = max(1.0, timeout_s)
    session = None
    if shared:
        session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout),
            # No cookies kept: the same pool reaches Slack's API and the response_url hosts.
            cookie_jar=aiohttp.DummyCookieJar(),
        )
    return CountingWebClient(
        token=token, base_url=base_url, timeout=int(timeout), session=session, retry_handlers=[]
    )


class CountingWebClient(AsyncWebClient):
    """Every Web API call goes through `api_call`: failures are counted there, by method (/metrics)."""

    async def api_call(self, api_method: str, **kwargs: Any) -> Any:
        try:
            return await super().api_call(api_method, **kwargs)
        except SlackApiError as exc:
            SLACK_ERRORS.labels(api_method, _error(exc) or f"http_{_status(exc)}").inc()
            raise
        except NETWORK_ERRORS:
            SLACK_ERRORS.labels(api_method, "no_answer").inc()
            raise


async def close_client(client: AsyncWebClient) -> None:
    if client.session is not None and not client.session.closed:
        await client.session.close()


class SlackOut:
    """Slack I/O for jobs: posts and finds. It never writes job state; the pipeline records each post's
    state around these calls (bot/lanes/posting.py `Posting.post_once`)."""

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client
        # (job, kind, attempt time) → the cursor of the next page of a search cut short by a 429.
        self._resume_at: dict[tuple[str, str, int], str] = {}

    async def post(
        self, job_id: str, kind: str, channel: str, thread_ts: str | None, build: Callable[[bool], Message]
    ) -> str:
        """Post `build(True)` with metadata naming the job and `kind`; returns its ts.

        `build(False)` is the fallback when Slack rejects the blocks (e.g. it cannot fetch an image).
        Raises SlackAmbiguous when the post may have landed, and SlackRetryLater, SlackUnreachable or
        SlackFailed when Slack clearly refused it (nothing was posted).
        """
        metadata = {"event_type": METADATA_EVENT, "event_payload": {"job_id": job_id, "kind": kind}}
        message = build(True)
        for rich in (True, False):
            try:
                response = await self.client.chat_postMessage(
                    channel=channel,
                    thread_ts=thread_ts,
                    text=message.text,
                    blocks=message.blocks,
                    metadata=metadata,
                    unfurl_links=False,
                    unfurl_media=False,
                )
                return str(response["ts"])
            except SlackApiError as exc:
                if rich and _error(exc) == "invalid_blocks":
                    log.warning("job %s: Slack rejected the blocks (%s); posting without images", job_id, exc)
                    message = build(False)
                    continue
                raise _classify(exc) from exc
            except NETWORK_ERRORS as exc:
                # No answer: the request may still be in flight; look only after it surely ended.
                settle = float(self.client.timeout) + 2
                raise SlackAmbiguous(f"{type(exc).__name__}: {exc}", settle_s=settle) from exc
        raise AssertionError("unreachable")

    async def find_posted(
        self, job_id: str, kind: str, channel: str, thread_ts: str | None, since_ms: int
    ) -> str | None:
        """The ts of this job's `kind` message if Slack has it (message metadata carries the job id).

        The post was attempted at `since_ms` (Redis time) and, if it landed, landed before the client gave
        up: every message of that window is read, page by page, however busy the channel; a 429 raises
        SlackRetryLater and the next call goes on from the page it stopped at. Reading history needs
        membership, which `chat:write.public` does not give: in a public channel the bot has not joined,
        it joins first (`channels:join`).
        """
        window: dict[str, Any] = {
            "oldest": f"{max(0, since_ms / 1000 - CLOCK_MARGIN_S):.6f}",
            "latest": f"{since_ms / 1000 + float(self.client.timeout) + CLOCK_MARGIN_S:.6f}",
            "include_all_metadata": True,
            "limit": PAGE_SIZE,
        }
        if thread_ts:
            window["ts"] = thread_ts
        joined = False
        scan = (job_id, kind, since_ms)
        cursor = self._resume_at.pop(scan, "")
        for _ in range(MAX_PAGES):
            try:
                if thread_ts:
                    page = await self.client.conversations_replies(channel=channel, cursor=cursor, **window)
                else:
                    page = await self.client.conversations_history(channel=channel, cursor=cursor, **window)
            except SlackApiError as exc:
                if _error(exc) == "not_in_channel" and not joined and await self._join(channel):
                    joined = True
                    continue
                if _status(exc) == 429:
                    self._resume_later(scan, cursor)
                    raise SlackRetryLater(RATE_LIMITED.delay_s(1, _retry_after(exc))) from exc
                if _status(exc) >= 500:
                    raise SlackAmbiguous(f"cannot check the thread yet: {_error(exc)}") from exc
                # Without history access we cannot check; posting again risks a duplicate but never a loss.
                log.warning("job %s: cannot check for an earlier post (%s); posting", job_id, _error(exc))
                return None
            except NETWORK_ERRORS as exc:
                raise SlackAmbiguous(f"cannot check the thread yet: {exc}") from exc
            for message in page.get("messages") or []:
                payload = (message.get("metadata") or {}).get("event_payload") or {}
                if payload.get("job_id") == job_id and payload.get("kind") == kind:
                    return str(message["ts"])
            cursor = str((page.get("response_metadata") or {}).get("next_cursor") or "")
            if not cursor:
                return None
        # Thousands of messages in the post's own window: give up checking rather than read forever.
        log.warning("job %s: over %d pages to check for an earlier post; posting again", job_id, MAX_PAGES)
        return None

    def _resume_later(self, scan: tuple[str, str, int], cursor: str) -> None:
        """Keep where a search stopped (Tier 1 allows a page a minute), forgetting the oldest beyond
        MAX_RESUMED_SCANS; another process, or a restart, starts the search over."""
        self._resume_at[scan] = cursor
        while len(self._resume_at) > MAX_RESUMED_SCANS:
            del self._resume_at[next(iter(self._resume_at))]

    async def _join(self, channel: str) -> bool:
        """Join a public channel so its history can be read; False if that is not possible."""
        try:
            await self.client.conversations_join(channel=channel)
        except SlackApiError as exc:
            log.warning("cannot join %s to check for an earlier post: %s", channel, _error(exc))
            return False
        except NETWORK_ERRORS as exc:
            raise SlackAmbiguous(f"cannot join {channel} yet: {exc}") from exc
        log.info("joined %s to check whether an unclear post landed", channel)
        return True

    async def file_details(self, file_ids: tuple[str, ...]) -> list[dict[str, Any]]:
        """Full file objects for the stubs Slack Connect channels send (`file_access: check_file_info`)."""
        found = []
        for file_id in file_ids:
            try:
                response = await self.client.files_info(file=file_id)
            except (SlackApiError, *NETWORK_ERRORS) as exc:
                log.warning("files.info %s failed: %s", file_id, exc)
                continue
            file = response.get("file")
            if isinstance(file, dict):
                found.append(file)
        return found

    async def thread_messages(
        self, channel: str, thread_ts: str, limit: int, before_ts: str = ""
    ) -> list[dict[str, Any]] | None:
        """Up to `limit` messages of a thread (the parent, and only replies before `before_ts` if given),
        oldest first; None when Slack would not say. Slack's rate limit is waited out page by page, up to
        MAX_THREAD_WAIT_S in all (at Tier 1 a page a minute)."""
        thread: list[dict[str, Any]] = []
        cursor = None
        waited = 0.0
        while len(thread) < limit:
            try:
                page = await self.client.conversations_replies(
                    channel=channel, ts=thread_ts, cursor=cursor, limit=PAGE_SIZE, latest=before_ts or None
                )
            except SlackApiError as exc:
                delay = RATE_LIMITED.delay_s(1, _retry_after(exc))
                if _status(exc) == 429 and waited + delay <= MAX_THREAD_WAIT_S:
                    waited += delay
                    await asyncio.sleep(delay)
                    continue
                log.warning("cannot read thread %s/%s: %s", channel, thread_ts, _error(exc) or exc)
                return None
            except NETWORK_ERRORS as exc:
                log.warning("cannot read thread %s/%s: %s", channel, thread_ts, exc)
                return None
            thread.extend(m for m in page.get("messages") or [] if isinstance(m, dict))
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                break
        return thread

    async def tell(self, channel: str, user: str, thread_ts: str, message: Message) -> bool:
        """A message only `user` sees, in a thread (chat.postEphemeral; a courtesy: failures are logged)."""
        return await self._best_effort(
            f"private note to {user} in {channel}/{thread_ts}",
            lambda: self.client.chat_postEphemeral(
                channel=channel, user=user, thread_ts=thread_ts, text=message.text, blocks=message.blocks
            ),
        )

    async def publish_home(self, user: str, view: dict[str, Any]) -> bool:
        """Publish a person's App Home view. A 429 is waited out once; anything else is logged."""
        return await self._best_effort(
            f"App Home for {user}", lambda: self.client.views_publish(user_id=user, view=view)
        )

    async def user_info(self, user: str) -> dict[str, Any] | None:
        """`user`'s object from `users.info` (scope users:read), for their roles (bot/requests/control.py
        decides who is an admin of what); None when Slack did not say."""
        try:
            response = await self.client.users_info(user=user)
        except (SlackApiError, *NETWORK_ERRORS) as exc:
            log.warning("users.info %s failed: %s", user, exc)
            return None
        info = response.get("user")
        return info if isinstance(info, dict) else None

    async def update(self, channel: str, ts: str, message: Message) -> bool:
        """Edit a message (idempotent, so a quick retry is safe). False if it did not work."""
        return await self._best_effort(
            f"chat.update {channel}/{ts}",
            lambda: self.client.chat_update(channel=channel, ts=ts, text=message.text, blocks=message.blocks),
            retry_network=True,
        )

    async def react(self, channel: str, ts: str, name: str, remove: bool = False) -> bool:
        """Add (or remove) a status reaction. Cosmetic: failures are logged, never raised."""
        call = self.client.reactions_remove if remove else self.client.reactions_add
        return await self._best_effort(
            f"reaction {name} on {channel}/{ts}",
            lambda: call(channel=channel, timestamp=ts, name=name),
            # Already the way we want it (a retried step, another process).
            fine_errors=("already_reacted", "no_reaction"),
        )

    async def notify(self, channel: str, thread_ts: str | None, message: Message) -> bool:
        """Post an advisory message in a thread (what the bot still needs, why it did nothing), or in the
        channel itself with thread_ts None (an admins' notice).

        Callers mark the Slack message as handled first, so a redelivered event posts nothing: advice
        is at most once. Slack's rate limit is waited out; anything else is logged."""
        return await self._best_effort(
            f"advice in {channel}/{thread_ts}",
            lambda: self.client.chat_postMessage(
                channel=channel, thread_ts=thread_ts, text=message.text, blocks=message.blocks
            ),
            tries=3,
        )

    async def _best_effort(
        self,
        what: str,
        call: Callable[[], Awaitable[Any]],
        tries: int = 2,
        fine_errors: tuple[str, ...] = (),
        retry_network: bool = False,
    ) -> bool:
        """A Slack call whose failure must not hold up a job: wait out 429s, log anything else."""
        for attempt in range(tries):
            last = attempt == tries - 1
            try:
                await call()
                return True
            except SlackApiError as exc:
                if _error(exc) in fine_errors:
                    return True
                if _status(exc) == 429 and not last:
                    await asyncio.sleep(COURTESY_RATE_LIMITED.delay_s(attempt + 1, _retry_after(exc)))
                    continue
                log.warning("%s failed: %s", what, _error(exc))
                return False
            except NETWORK_ERRORS as exc:
                log.warning("%s failed: %s", what, exc)
                if not retry_network:
                    return False
        return False

    async def respond(self, response_url: str, message: Message) -> bool:
        """An ephemeral message through the slash command's response_url (works where the bot can't post)."""
        if not response_url:
            return False
        try:
            webhook = AsyncWebhookClient(response_url, timeout=10, session=self.client.session)
            response = await webhook.send(text=message.text, blocks=message.blocks, response_type="ephemeral")
        except NETWORK_ERRORS as exc:
            log.warning("response_url post failed: %s", exc)
            return False
        if response.status_code >= 300:
            log.warning("response_url post failed: HTTP %s %s", response.status_code, response.body[:200])
        return response.status_code < 300


def _classify(exc: SlackApiError) -> Exception:
    """What a Slack error answer to a post means: maybe posted, not now, nowhere to post, or refused."""
    error, status = _error(exc), _status(exc)
    if status >= 500 or error in AMBIGUOUS:
        return SlackAmbiguous(error or f"HTTP {status}")
    if status == 429 or error == "ratelimited":
        return SlackRetryLater(RATE_LIMITED.delay_s(1, _retry_after(exc)))
    if error in UNREACHABLE:
        return SlackUnreachable(error)
    return SlackFailed(error or f"HTTP {status}")


def _error(exc: SlackApiError) -> str:
    data: Any = exc.response.data if exc.response is not None else None
    return str(data.get("error", "")) if isinstance(data, dict) else ""


def _status(exc: SlackApiError) -> int:
    return int(exc.response.status_code) if exc.response is not None else 0


def _retry_after(exc: SlackApiError) -> float | None:
    headers = exc.response.headers if exc.response is not None else {}
    return retry_after_seconds(headers.get("Retry-After") or headers.get("retry-after"))
