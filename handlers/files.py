"""Files shared in Slack: a `message` with a video and audio files, or the "Lip-sync these files" shortcut.

Each is two steps (Bolt's lazy listeners): before the ack, the share is stored (bot/requests/shares.py
`receive`), so an acknowledged delivery is never lost; after the ack, it is worked out (`process`): pairing,
jobs, reactions, notes. Ordinary conversation stores nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext

from bot.requests.shares import Share, Shares, share_from_event, share_from_shortcut

log = logging.getLogger(__name__)

SHORTCUT_CALLBACK_ID = "lipsync_files"


def register(app: AsyncApp, shares: Shares) -> None:
    app.event("message")(ack=store_message(shares), lazy=[process_message(shares)])
    app.shortcut(SHORTCUT_CALLBACK_ID)(ack=store_shortcut(shares), lazy=[process_shortcut(shares)])


def _message_share(event: dict[str, Any], context: AsyncBoltContext) -> Share | None:
    return share_from_event(event, context.team_id or "", context.bot_user_id or "")


def _shortcut_share(body: dict[str, Any], context: AsyncBoltContext) -> Share | None:
    return share_from_shortcut(body, context.team_id or "", context.bot_user_id or "")


async def _store(shares: Shares, share: Share | None) -> None:
    if share is None:
        return
    try:
        await shares.receive(share)
    except RedisError as exc:  # the lazy step finds the store down too and tells the user
        log.error("cannot store shared files %s before the ack: %s", share.key, exc)


def store_message(shares: Shares) -> Callable[..., Awaitable[None]]:
    async def handle(event: dict[str, Any], context: AsyncBoltContext) -> None:
        await _store(shares, _message_share(event, context))  # Bolt acks events when this returns

    return handle


def process_message(shares: Shares) -> Callable[..., Awaitable[None]]:
    async def handle(event: dict[str, Any], context: AsyncBoltContext) -> None:
        share = _message_share(event, context)
        if share is not None:
            await shares.process(share)

    return handle


def store_shortcut(shares: Shares) -> Callable[..., Awaitable[None]]:
    async def handle(ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext) -> None:
        await _store(shares, _shortcut_share(body, context))
        await ack()

    return handle


def process_shortcut(shares: Shares) -> Callable[..., Awaitable[None]]:
    async def handle(body: dict[str, Any], context: AsyncBoltContext) -> None:
        share = _shortcut_share(body, context)
        if share is not None:
            await shares.process(share)

    return handle
