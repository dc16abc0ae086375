"""The buttons on a job's messages, their action ids and the Dub again modal (handlers/actions.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.jobs.model import Job, Status, short_id
from bot.providers.base import Provider
from bot.views.text import Block, _code, _context, _shorten

# Buttons on a job's message (handlers/actions.py answers them); the value is the job id.
ACTION_CANCEL = "job_cancel"
ACTION_RETRY = "job_retry"
ACTION_DUB_AGAIN = "job_dub_again"
ACTION_AGAIN_ANYWAY = "job_again_anyway"  # a result from the cache: dub it afresh, and pay for it
ACTION_QUOTE_OK = "quote_ok"  # the private quote's "Dub it"
ACTION_QUOTE_CANCEL = "quote_cancel"


def _button(text: str, action_id: str, job: Job, style: str = "") -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": text},
        "action_id": action_id,
        "value": job.id,
    }
    if style:
        button["style"] = style
    if action_id == ACTION_CANCEL:
        button["confirm"] = {
            "title": {"type": "plain_text", "text": "Cancel this dub?"},
            "text": {
                "type": "mrkdwn",
                "text": "If it is still waiting, it is never sent and never charged. If the provider has it "
                "already, I stop tracking it, but it may be charged.",
            },
            "confirm": {"type": "plain_text", "text": "Cancel it"},
            "deny": {"type": "plain_text", "text": "Keep it"},
        }
    return button


def job_buttons(job: Job) -> Block | None:
    """What a person can do with the job now: cancel it while it runs, retry a failure, dub a success
    again."""
    if job.status in (Status.QUEUED, Status.PROCESSING):
        buttons = [_button("Cancel", ACTION_CANCEL, job, "danger")]
    elif job.status in (Status.FAILED, Status.TIMED_OUT):
        buttons = [_button("Retry", ACTION_RETRY, job, "primary")]
    elif job.status is Status.SUCCEEDED and job.money.cached_from:
        buttons = [
            _button("Dub again anyway", ACTION_AGAIN_ANYWAY, job),
            _button("Dub again…", ACTION_DUB_AGAIN, job),
        ]
    elif job.status is Status.SUCCEEDED:
        buttons = [_button("Dub again…", ACTION_DUB_AGAIN, job)]
    else:
        return None
    return {"type": "actions", "block_id": f"job:{short_id(job.id)}", "elements": buttons}


DUB_AGAIN_CALLBACK = "dub_again"
DUB_AUDIO_BLOCK = "audio"
DUB_OPTIONS_BLOCK = "playback"
DUB_PROVIDER_BLOCK = "provider"


def _option(value: str, text: str) -> dict[str, Any]:
    return {"text": {"type": "plain_text", "text": _shorten(text, 75)}, "value": value}


def dub_again_view(job: Job, providers: Sequence[Provider]) -> dict[str, Any]:
    """The modal of Dub again: another audio link, playback type or provider for the same video."""
    playbacks = ("normal", "normal_reverse", "normal_reverse_by_audio")
    playback_options = [_option(p, p) for p in playbacks]
    provider_options = [_option(p.name, p.label) for p in providers] or [
        _option(job.order.provider, job.order.provider)
    ]
    initial_provider = next(
        (o for o in provider_options if o["value"] == job.order.provider), provider_options[0]
    )
    initial_playback = next(
        (o for o in playback_options if o["value"] == job.inputs.playback), playback_options[0]
    )
    return {
        "type": "modal",
        "callback_id": DUB_AGAIN_CALLBACK,
        "private_metadata": job.id,
        "title": {"type": "plain_text", "text": "Dub again"},
        "submit": {"type": "plain_text", "text": "Dub"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            _context(f"Same video as job {_code(short_id(job.id))}; change what you like."),
            {
                "type": "input",
                "block_id": DUB_AUDIO_BLOCK,
                "optional": True,
                "label": {"type": "plain_text", "text": "New audio link (empty: the same audio)"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": "value",
                    "placeholder": {"type": "plain_text", "text": "https://example.com/voice-de.mp3"},
                },
            },
            {
                "type": "input",
                "block_id": DUB_OPTIONS_BLOCK,
                "label": {"type": "plain_text", "text": "Playback"},
                "element": {
                    "type": "static_select",
                    "action_id": "value",
                    "options": playback_options,
                    "initial_option": initial_playback,
                },
            },
            {
                "type": "input",
                "block_id": DUB_PROVIDER_BLOCK,
                "label": {"type": "plain_text", "text": "Provider"},
                "element": {
                    "type": "static_select",
                    "action_id": "value",
                    "options": provider_options,
                    "initial_option": initial_provider,
                },
            },
        ],
    }
