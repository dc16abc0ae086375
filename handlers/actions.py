"""Buttons on a job's message (Cancel, Retry, Dub again…, Dub again anyway), on a private quote (Dub it,
Cancel), and the Dub again modal.

Each state change (a cancel, a new job) is stored before the listener returns, which is when Bolt acks
(process_before_response): a click Slack saw acknowledged is never lost. Everything else (the private
answer, a note in the old job's thread, the modal) runs after the ack (`JobControl.after_ack`): a Slack post
may wait out 429s for seconds, and Slack wants its ack within 3. Double clicks and stale messages start
nothing twice: a retry is keyed by the job it retries, a dub again by its modal. Who may click what is
decided in one place, bot/requests/control.py.
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

from bot.requests.control import Answer, JobControl, Person, person_from
from bot.views.actions import (
    ACTION_AGAIN_ANYWAY,
    ACTION_CANCEL,
    ACTION_DUB_AGAIN,
    ACTION_QUOTE_CANCEL,
    ACTION_QUOTE_OK,
    ACTION_RETRY,
    DUB_AGAIN_CALLBACK,
    DUB_AUDIO_BLOCK,
    DUB_OPTIONS_BLOCK,
    DUB_PROVIDER_BLOCK,
)
from bot.views.control import no_such_job, store_unavailable_now
from bot.views.text import Message

log = logging.getLogger(__name__)


def register(app: AsyncApp, control: JobControl) -> None:
    # Several Cancel buttons in one message (the note listing a share's dubs) need distinct action ids.
    app.action(re.compile(rf"^{ACTION_CANCEL}(:\d+)?$"))(cancel_clicked(control))
    app.action(ACTION_RETRY)(retry_clicked(control))
    app.action(ACTION_DUB_AGAIN)(dub_again_clicked(control))
    app.action(ACTION_AGAIN_ANYWAY)(again_anyway_clicked(control))
    app.action(ACTION_QUOTE_OK)(quote_answered(control, go=True))
    app.action(ACTION_QUOTE_CANCEL)(quote_answered(control, go=False))
    app.view(DUB_AGAIN_CALLBACK)(dub_again_submitted(control))


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _clicked_job(action: dict[str, Any]) -> str:
    return _text(action.get("value"))[:64]


async def _tell(respond: AsyncRespond, message: Message) -> None:
    """A private answer to the person who clicked (through the action's response_url)."""
    try:
        await respond(
            text=message.text, blocks=message.blocks, response_type="ephemeral", replace_original=False
        )
    except Exception as exc:  # the answer is a courtesy; the click's effect is stored already
        log.warning("could not answer a button click: %s", type(exc).__name__)


async def _answer(control: JobControl, respond: AsyncRespond, answer: Answer) -> None:
    """After the ack: the private answer, then the note in the old job's thread."""
    await _tell(respond, answer.message)
    await control.post_note(answer.note)


Run = Callable[[Person, dict[str, Any], dict[str, Any]], Awaitable[Answer]]


def _clicked(control: JobControl, what: str, run: Run) -> Callable[..., Awaitable[None]]:
    """A button whose effect (`run`, given who clicked, the payload and the action) is stored before the
    ack, and whose outcome is told privately to the person who clicked, after it."""

    async def handle(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
    ) -> None:
        try:
            answer = await run(person_from(body), body, action)
        except RedisError as exc:
            log.error("cannot %s: %s", what, exc)
            answer = Answer(message=store_unavailable_now())
        await ack()
        control.after_ack(_answer(control, respond, answer))

    return handle


def cancel_clicked(control: JobControl) -> Callable[..., Awaitable[None]]:
    async def cancel(person: Person, body: dict[str, Any], action: dict[str, Any]) -> Answer:
        return Answer(message=await control.cancel(_clicked_job(action), person))

    return _clicked(control, "cancel", cancel)


def retry_clicked(control: JobControl) -> Callable[..., Awaitable[None]]:
    async def retry(person: Person, body: dict[str, Any], action: dict[str, Any]) -> Answer:
        return await control.retry(_clicked_job(action), person, _text(body.get("response_url")))

    return _clicked(control, "retry", retry)


def again_anyway_clicked(control: JobControl) -> Callable[..., Awaitable[None]]:
    async def again_anyway(person: Person, body: dict[str, Any], action: dict[str, Any]) -> Answer:
        return await control.again_anyway(_clicked_job(action), person, _text(body.get("response_url")))

    return _clicked(control, "dub afresh", again_anyway)


async def _replace_quote(respond: AsyncRespond, answer: Message) -> None:
    try:
        await respond(text=answer.text, blocks=answer.blocks, replace_original=True)
    except Exception as exc:  # a courtesy: the answer is stored already
        log.warning("could not replace a quote: %s", type(exc).__name__)


def quote_answered(control: JobControl, go: bool) -> Callable[..., Awaitable[None]]:
    """Dub it / Cancel on a private quote: stored before the ack; the quote is replaced by the outcome
    after it."""

    async def handle(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
    ) -> None:
        try:
            answer = await control.answer_quote(_clicked_job(action), person_from(body), go)
        except RedisError as exc:
            log.error("cannot answer a quote: %s", exc)
            await ack()
            control.after_ack(_tell(respond, store_unavailable_now()))
            return
        await ack()
        control.after_ack(_replace_quote(respond, answer))

    return handle


def dub_again_clicked(control: JobControl) -> Callable[..., Awaitable[None]]:
    async def open_form(
        person: Person, job_id: str, trigger_id: str, client: AsyncWebClient, respond: AsyncRespond
    ) -> None:
        try:
            view = await control.dub_again_view(job_id, person)
        except RedisError as exc:
            log.error("cannot open Dub again: %s", exc)
            await _tell(respond, store_unavailable_now())
            return
        if view is None:
            await _tell(respond, no_such_job(job_id))
            return
        try:
            await client.views_open(trigger_id=trigger_id, view=view)
        except SlackApiError as exc:
            log.warning("views.open failed: %s", exc.response.get("error") if exc.response else exc)

    async def handle(
        ack: AsyncAck,
        body: dict[str, Any],
        action: dict[str, Any],
        client: AsyncWebClient,
        respond: AsyncRespond,
    ) -> None:
        await ack()  # nothing to store: the modal's submission starts the job
        trigger_id = _text(body.get("trigger_id"))
        control.after_ack(open_form(person_from(body), _clicked_job(action), trigger_id, client, respond))

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
        note = None
        try:
            errors, note = await control.dub_again(
                _text(view.get("private_metadata"))[:64],
                person_from(body),
                _text(view.get("id"))[:64],
                _selected(values, DUB_AUDIO_BLOCK)[:2048],
                _selected(values, DUB_OPTIONS_BLOCK)[:64],
                _selected(values, DUB_PROVIDER_BLOCK)[:64],
            )
        except RedisError as exc:
            log.error("cannot start Dub again: %s", exc)
            errors = {DUB_AUDIO_BLOCK: "I can't reach my job database; nothing was started. Try again."}
        if errors:
            await ack(response_action="errors", errors=errors)
            return
        await ack()  # the new job is stored; its note in the old thread follows
        if note is not None:
            control.after_ack(control.post_note(note))

    return handle
