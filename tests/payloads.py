"""Realistic Slack requests for tests: bodies shaped as Slack sends them, signed as Slack signs them."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from urllib.parse import urlencode

SIGNING_SECRET = "test-signing-secret"


def slash_command(
    text: str,
    *,
    response_url: str,
    user_id: str = "U0ALICE",
    channel_id: str = "C0GENERAL",
    team_id: str = "T0TEST",
    command: str = "/lipsync",
    trigger_id: str = "",
) -> dict[str, str]:
    return {
        "token": "deprecated-verification-token",
        "team_id": team_id,
        "team_domain": "acme",
        "channel_id": channel_id,
        "channel_name": "general",
        "user_id": user_id,
        "user_name": "alice",
        "command": command,
        "text": text,
        "api_app_id": "A0TEST",
        "is_enterprise_install": "false",
        "response_url": response_url,
        # Unique per invocation; a test gives one to redeliver the same command.
        "trigger_id": trigger_id or f"{int(time.time())}.738474920.{uuid.uuid4().hex}",
    }


def form_body(fields: dict[str, str]) -> str:
    return urlencode(fields)


def signed_headers(
    body: str, *, secret: str = SIGNING_SECRET, timestamp: int | None = None, content_type: str | None = None
) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {
        "Content-Type": content_type or "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest}",
    }


def event_callback(
    event: dict[str, object],
    *,
    event_id: str | None = None,
    team_id: str = "T0TEST",
    bot_user_id: str = "UBOT",
) -> dict[str, object]:
    """The Events API envelope Slack POSTs to the request URL."""
    return {
        "token": "deprecated-verification-token",
        "team_id": team_id,
        "api_app_id": "A0TEST",
        "event": event,
        "type": "event_callback",
        "event_id": event_id or f"Ev{uuid.uuid4().hex[:10].upper()}",
        "event_time": int(time.time()),
        "authorizations": [{"team_id": team_id, "user_id": bot_user_id, "is_bot": True}],
        "is_ext_shared_channel": False,
        "event_context": f"4-{uuid.uuid4().hex}",
    }


def message_shortcut(
    message: dict[str, object],
    *,
    channel_id: str,
    response_url: str,
    user_id: str = "U0ALICE",
    team_id: str = "T0TEST",
    callback_id: str = "lipsync_files",
) -> dict[str, object]:
    """A message shortcut (`message_action`) as Slack sends it: the whole message, files included."""
    return {
        "type": "message_action",
        "token": "deprecated-verification-token",
        "action_ts": f"{time.time():.6f}",
        "team": {"id": team_id, "domain": "acme"},
        "user": {"id": user_id, "username": "alice", "team_id": team_id, "name": "alice"},
        "channel": {"id": channel_id, "name": "general"},
        "is_enterprise_install": False,
        "enterprise": None,
        "callback_id": callback_id,
        "trigger_id": f"{int(time.time())}.738474920.{uuid.uuid4().hex}",
        "response_url": response_url,
        "message_ts": message["ts"],
        "message": message,
    }
