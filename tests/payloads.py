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
        "trigger_id": f"{int(time.time())}.738474920.{uuid.uuid4().hex}",  # unique per invocation
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
