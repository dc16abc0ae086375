"""Buttons on a job's message (Cancel, Retry, Dub again…, Dub again anyway), on a private quote (Dub it,
Cancel), and the Dub again modal.

Each state change (a cancel, a new job) is stored before the listener returns, which is when Bolt acks
(process_before_response): a click Slack saw acknowledged is never lost. Double clicks and stale messages
start nothing twice: a retry is keyed by the job it retries, a dub again by its modal.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import messages
from bot.control import JobControl
from bot.messages import Message

log = logging.getLogger(__name__)


def register(app: AsyncApp, control: JobControl) -> None:
    # Several Cancel buttons in one message (the note listing a share's dubs) need distinct action ids.
    app.action(re.compile(rf"^{messages.ACTION_CANCEL}(:\d+)?$"))(cancel_clicked(control))
    app.action(messages.ACTION_RETRY)(retry_clicked(control))
    app.action(messages.ACTION_DUB_AGAIN)(dub_again_clicked(control))
    app.action(messages.ACTION_AGAIN_ANYWAY)(again_anyway_clicked(control))
    app.action(messages.ACTION_QUOTE_OK)(quote_answered(control, go=True))
    app.action(messages.ACTION_QUOTE_CANCEL)(quote_answered(control, go=False))
    app.view(messages.DUB_AGAIN_CALLBACK)(dub_again_submitted(control))


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _clicked_job(action: dict[str, Any]) -> str:
    return _text(action.get("value"))[:64]


def _user(body: dict[str, Any]) -> str:
    user = body.get("user")
    return _text(user.get("id")) if isinstance(user, dict) else ""


async def _tell(respond: AsyncRespond, message: Message) -> None:
    """A private answer to the person who clicked (through the action's response_url)."""
    try:
        await respond(
            text=message.text, blocks=message.blocks, response_type="ephemeral", replace_original=False
        )
    except Exception as exc:  # the answer is a courtesy; the click's effect is stored already
        log.warning("could not answer a button click: %s", type(exc).__name__)


def _clicked(
    what: str, run: Callable[[dict[str, Any], dict[str, Any]], Awaitable[Message]]
) -> Callable[..., Awaitable[None]]:
    """A button whose effect (`run`, given the payload and the action) is stored before the ack, and whose
    outcome is told privately to the person who clicked."""

    async def handle(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
    ) -> None:
        try:
            answer = await run(body, action)
        except RedisError as exc:
            log.error("cannot %s: %s", what, exc)
            answer = messages.store_unavailable_now()
        await _tell(respond, answer)
        await ack()

    return handle


def cancel_clicked(control: JobControl) -> Callable[..., Awaitable[None]]:
    return _clicked("cancel", lambda body, action: control.cancel(_clicked_job(action), _user(body)))


def retry_clicked(control: JobControl) -> Callable[..., Awaitable[None]]:
    return _clicked(
        "retry",
        lambda body, action: control.retry(
            _clicked_job(action), _user(body), _text(body.get("response_url"))
        ),
    )


def again_anyway_clicked(control: JobControl) -> Callable[..., Awaitable[None]]:
    return _clicked(
        "dub afresh",
        lambda body, action: control.again_anyway(
            _clicked_job(action), _user(body), _text(body.get("response_url"))
        ),
    )


def quote_answered(control: JobControl, go: bool) -> Callable[..., Awaitable[None]]:
    """Dub it / Cancel on a private quote: stored before the ack; the quote is replaced by the outcome."""

    async def handle(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
    ) -> None:
        try:
            answer = await control.answer_quote(_clicked_job(action), _user(body), go)
        except RedisError as exc:
            log.error("cannot answer a quote: %s", exc)
            await _tell(respond, messages.store_unavailable_now())
            await ack()
            return
        try:
            await respond(text=answer.text, blocks=answer.blocks, replace_original=True)
        except Exception as exc:  # a courtesy: the answer is stored already
            log.warning("could not replace a quote: %s", type(exc).__name__)
        await ack()

    return handle


def dub_again_clicked(control: JobControl) -> Callable[..., Awaitable[None]]:
    async def handle(
        ack: AsyncAck,
        body: dict[str, Any],
        action: dict[str, Any],
        client: AsyncWebClient,
        respond: AsyncRespond,
    ) -> None:
        await ack()  # nothing to store: the modal's submission starts the job
        try:
            view = await control.dub_again_view(_clicked_job(action))
        except RedisError as exc:
            log.error("cannot open Dub again: %s", exc)
            await _tell(respond, messages.store_unavailable_now())
            return
        if view is None:
            await _tell(respond, messages.no_such_job(_clicked_job(action)))
            return
        try:
            await client.views_open(trigger_id=_text(body.get("trigger_id")), view=view)
        except SlackApiError as exc:
            log.warning("views.open failed: %s", exc.response.get("error") if exc.response else exc)

    return handle


def _selected(values: Any, block: str) -> str:
    """What the person chose or typed in one of the modal's inputs ("" when it is not there)."""
    if not isinstance(values, dict) or not isinstance(values.get(block), dict):
        return ""
    field = values[block].get("value")
    if not isinstance(field, dict):
        return ""
    option = field.get("selected_option")
    if isinstance(option, dict):
        return _text(option.get("value"))
    return _text(field.get("value"))


def dub_again_submitted(control: JobControl) -> Callable[..., Awaitable[None]]:
    async def handle(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        state = view.get("state") if isinstance(view.get("state"), dict) else {}
        values = (
            state.get("values") if isinstance(state, dict) and isinstance(state.get("values"), dict) else {}
        )
        try:
            errors = await control.dub_again(
                _text(view.get("private_metadata"))[:64],
                _user(body),
                _text(view.get("id"))[:64],
                _selected(values, messages.DUB_AUDIO_BLOCK)[:2048],
                _selected(values, messages.DUB_OPTIONS_BLOCK)[:64],
                _selected(values, messages.DUB_PROVIDER_BLOCK)[:64],
            )
        except RedisError as exc:
            log.error("cannot start Dub again: %s", exc)
            errors = {
                messages.DUB_AUDIO_BLOCK: "I can't reach my job database; nothing was started. Try again."
            }
        if errors:
            await ack(response_action="errors", errors=errors)
        else:
            await ack()

    return handle
