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


def _trigger_id() -> str:
    return f"{int(time.time())}.738474920.{uuid.uuid4().hex}"


def block_actions(
    action_id: str,
    value: str,
    *,
    user_id: str = "U0ALICE",
    channel_id: str = "C0GENERAL",
    message_ts: str = "",
    trigger_id: str = "",
    response_url: str = "",
    team_id: str = "T0TEST",
    block_id: str = "",
    message: dict[str, object] | None = None,
    button_text: str = "Go",
) -> dict[str, object]:
    """A button click in a message (`block_actions`) as Slack sends it to the interactivity URL.

    `message` is the message holding the button (default: a bot message with one actions block containing
    it); `message_ts` defaults to its ts, or to now. Send it with `send_shortcut` (a signed form whose one
    field, `payload`, is this JSON).
    """
    block_id = block_id or f"{action_id}_block"
    ts = message_ts or str((message or {}).get("ts") or f"{time.time():.6f}")
    button = {
        "type": "button",
        "action_id": action_id,
        "text": {"type": "plain_text", "text": button_text, "emoji": True},
        "value": value,
    }
    clicked = message or {
        "type": "message",
        "user": "UBOT",
        "bot_id": "B0BOT",
        "app_id": "A0TEST",
        "team": team_id,
        "text": "Lip-sync",
        "ts": ts,
        "blocks": [{"type": "actions", "block_id": block_id, "elements": [button]}],
    }
    return {
        "type": "block_actions",
        "user": {"id": user_id, "username": "alice", "name": "alice", "team_id": team_id},
        "api_app_id": "A0TEST",
        "token": "deprecated-verification-token",
        "container": {
            "type": "message",
            "message_ts": ts,
            "channel_id": channel_id,
            "is_ephemeral": False,
        },
        "trigger_id": trigger_id or _trigger_id(),
        "team": {"id": team_id, "domain": "acme"},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel_id, "name": "general"},
        "message": clicked,
        "state": {"values": {}},
        "response_url": response_url
        or f"https://hooks.slack.com/actions/{team_id}/{int(time.time())}/{uuid.uuid4().hex[:24]}",
        "actions": [
            {
                "action_id": action_id,
                "block_id": block_id,
                "text": button["text"],
                "value": value,
                "type": "button",
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }


def view_submission(
    callback_id: str,
    values: dict[str, dict[str, object]],
    private_metadata: str = "",
    *,
    user_id: str = "U0ALICE",
    team_id: str = "T0TEST",
    view_id: str = "",
    trigger_id: str = "",
    title: str = "Lip-sync",
) -> dict[str, object]:
    """A modal submitted (`view_submission`) as Slack sends it to the interactivity URL.

    `values` is the view's `state.values`: {block_id: {action_id: element state}}; an element state given
    as a plain string is taken as a plain_text_input's value. The view's blocks are one input block per
    element. Send it with `send_shortcut`.
    """
    state: dict[str, dict[str, object]] = {}
    blocks: list[dict[str, object]] = []
    for block_id, elements in values.items():
        state[block_id] = {}
        for action_id, element in elements.items():
            if isinstance(element, str):
                element = {"type": "plain_text_input", "value": element}
            state[block_id][action_id] = element
            element_type = element.get("type", "plain_text_input") if isinstance(element, dict) else ""
            blocks.append(
                {
                    "type": "input",
                    "block_id": block_id,
                    "label": {"type": "plain_text", "text": action_id, "emoji": True},
                    "optional": False,
                    "dispatch_action": False,
                    "element": {"type": element_type, "action_id": action_id},
                }
            )
    view_id = view_id or f"V{uuid.uuid4().hex[:10].upper()}"
    return {
        "type": "view_submission",
        "team": {"id": team_id, "domain": "acme"},
        "user": {"id": user_id, "username": "alice", "name": "alice", "team_id": team_id},
        "api_app_id": "A0TEST",
        "token": "deprecated-verification-token",
        "trigger_id": trigger_id or _trigger_id(),
        "view": {
            "id": view_id,
            "team_id": team_id,
            "type": "modal",
            "blocks": blocks,
            "private_metadata": private_metadata,
            "callback_id": callback_id,
            "state": {"values": state},
            "hash": f"{int(time.time())}.{uuid.uuid4().hex[:8]}",
            "title": {"type": "plain_text", "text": title, "emoji": True},
            "clear_on_close": False,
            "notify_on_close": False,
            "close": {"type": "plain_text", "text": "Cancel", "emoji": True},
            "submit": {"type": "plain_text", "text": "Submit", "emoji": True},
            "previous_view_id": None,
            "root_view_id": view_id,
            "app_id": "A0TEST",
            "external_id": "",
            "app_installed_team_id": team_id,
            "bot_id": "B0BOT",
        },
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }
