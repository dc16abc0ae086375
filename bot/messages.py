"""Every Slack message the bot sends is built here, as plain Block Kit dicts with a text fallback."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from bot.cost import credits_for, format_credits
from bot.jobs import Job, Status

Block = dict[str, Any]

USAGE = (
    "*Usage:* `/lipsync <video_url> <audio_url> [playback_type]`\n"
    "• `video_url`: a public, direct link to the talking-head video (mp4, mov, webm)\n"
    "• `audio_url`: a public, direct link to the new voice track (mp3, wav, m4a)\n"
    "• `playback_type` (optional) — what to do when the video is shorter than the audio:\n"
    "    `normal` (default) plays it once, `normal_reverse` plays it forward then backward, "
    "`normal_reverse_by_audio` stretches it to the audio's length\n"
    "*Example:* `/lipsync https://example.com/talk.mp4 https://example.com/voice-fr.mp3`\n"
    "I post the job in this channel and answer in its thread with the dubbed video and what it cost."
)

# Why a job failed, in words a user can act on; matched against the provider's failure text.
FAILURE_HINTS: list[tuple[tuple[str, ...], str]] = [
    (
        ("audio",),
        "JoggAI could not read the audio. Check that the audio link downloads an audio file "
        "(mp3, wav, m4a) directly and that it is not empty or corrupt.",
    ),
    (
        ("download", "fetch", "url", "access", "403", "404", "forbidden", "not found", "format", "decode"),
        "Make sure both links are public and point straight at the media file: opening them in a "
        "private browser window should download the video or audio, not show a page "
        "(Google Drive, Dropbox or YouTube page links do not work).",
    ),
]

# What we tell the user for provider business errors that end a job.
PROVIDER_ERRORS = {
    "10105": "The bot's JoggAI API key was refused. An admin needs to check `JOGG_API_KEY`.",
    "18020": "The JoggAI account is out of credits. An admin needs to top it up, then you can try again.",
    "18025": "The JoggAI account has no API access. An admin needs to enable it in JoggAI.",
    "40000": "JoggAI rejected the request's parameters.",
}

STATUS_LINES = {
    Status.QUEUED: ":hourglass_flowing_sand: Queued: submitting to JoggAI…",
    Status.PROCESSING: ":gear: Processing at JoggAI…",
    Status.SUCCEEDED: ":white_check_mark: Done: the dubbed video is in the thread.",
    Status.FAILED: ":x: Failed: details in the thread.",
    Status.TIMED_OUT: ":warning: Timed out: details in the thread.",
}


@dataclass(frozen=True)
class Message:
    text: str  # notification and accessibility fallback
    blocks: list[Block] = field(default_factory=list)


def _section(markdown: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": markdown[:3000]}}


def _context(markdown: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": markdown[:3000]}]}


def _link(url: str, label: str | None = None) -> str:
    # Slack's link syntax breaks on these characters; they are legal but rare in media URLs.
    safe = url.replace("|", "%7C").replace(">", "%3E").replace("<", "%3C")
    return f"<{safe}|{label}>" if label else f"<{safe}>"


def usage() -> Message:
    return Message(text=USAGE, blocks=[_section(USAGE)])


def usage_error(reason: str) -> Message:
    text = f":warning: {reason}\n\n{USAGE}"
    return Message(text=text, blocks=[_section(f":warning: {reason}"), _section(USAGE)])


def store_unavailable() -> Message:
    text = (
        ":warning: I can't reach my job database right now, so nothing was submitted and "
        "nothing was charged. Please try again in a minute."
    )
    return Message(text=text, blocks=[_section(text)])


def parent(job: Job) -> Message:
    """The bot's message in the channel; its thread holds everything else about the job."""
    status = STATUS_LINES[job.status]
    if job.status is Status.TIMED_OUT:
        status = f":warning: Timed out after {_minutes(job)}: details in the thread."
    fields = [
        {"type": "mrkdwn", "text": f"*Video*\n{_link(job.video_url)}"},
        {"type": "mrkdwn", "text": f"*Audio*\n{_link(job.audio_url)}"},
        {"type": "mrkdwn", "text": f"*Playback*\n`{job.playback_type}`"},
        {"type": "mrkdwn", "text": f"*Status*\n{status}"},
    ]
    footer = f"Job `{job.id}`" + (f" · JoggAI task `{job.task_id}`" if job.task_id else "")
    return Message(
        text=f"<@{job.user}> asked for a lip-sync dub. {status}",
        blocks=[
            _section(f":clapper: <@{job.user}> asked for a lip-sync dub"),
            {"type": "section", "fields": fields},
            _context(footer),
        ],
    )


def result(job: Job, with_cover: bool = True) -> Message:
    """The one thread reply that ends a job."""
    if job.status is Status.SUCCEEDED:
        return _success(job, with_cover)
    if job.status is Status.TIMED_OUT:
        return _timed_out(job)
    return _failure(job)


def _success(job: Job, with_cover: bool) -> Message:
    cost = format_credits(credits_for(Decimal(job.duration_s or "0")))
    duration = f"{Decimal(job.duration_s or '0'):f} s"
    link = _link(job.result_url, "open the video")
    headline = f":white_check_mark: <@{job.user}> your dubbed video is ready: {link}"
    blocks: list[Block] = [
        _section(headline),
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*Duration*\n{duration}"},
                {"type": "mrkdwn", "text": f"*Cost*\n{cost} credits"},
            ],
        },
    ]
    if job.cover_url and with_cover:
        blocks.append(
            {
                "type": "image",
                "image_url": job.cover_url,
                "alt_text": "Cover image of the dubbed video",
                "title": {"type": "plain_text", "text": "Cover"},
            }
        )
    elif job.cover_url:  # Slack could not fetch the image; still give the user the link
        blocks.append(_context(f"Cover image: {_link(job.cover_url)}"))
    blocks.append(_context(f"JoggAI task `{job.task_id}` · 1 credit per 125 s of output, rounded up"))
    text = f"Your dubbed video is ready: {job.result_url} ({duration}, {cost} credits)"
    return Message(text=text, blocks=blocks)


def _failure(job: Job) -> Message:
    known = PROVIDER_ERRORS.get(job.error_code)
    detail = job.error or "JoggAI gave no reason."
    lines = [f":x: <@{job.user}> the lip-sync failed."]
    if known:
        lines.append(known)
        if job.error:
            lines.append(f"JoggAI said: _{job.error}_")
    else:
        lines.append(f"JoggAI said: _{detail}_")
        hint = failure_hint(detail)
        if hint:
            lines.append(f":bulb: {hint}")
    footer = f"JoggAI task `{job.task_id}`" if job.task_id else f"Job `{job.id}` (nothing was submitted)"
    return Message(text=" ".join(lines), blocks=[_section("\n".join(lines)), _context(footer)])


def _timed_out(job: Job) -> Message:
    where = (
        f"JoggAI task `{job.task_id}` had no final status after {_minutes(job)}, so I stopped waiting. "
        "If it finishes later it will be in your JoggAI dashboard under that id."
        if job.task_id
        else f"I could not submit the job to JoggAI within {_minutes(job)}"
        + (f" (last error: {job.last_error})." if job.last_error else ".")
    )
    text = f":warning: <@{job.user}> {where}"
    return Message(text=text, blocks=[_section(text), _context(f"Job `{job.id}`")])


def failure_hint(provider_message: str) -> str | None:
    lowered = provider_message.lower()
    for needles, hint in FAILURE_HINTS:
        if any(needle in lowered for needle in needles):
            return hint
    return None


def cannot_post_here(channel: str) -> Message:
    text = (
        f":wave: I can't post in <#{channel}>, so nothing was submitted. Invite me first "
        "(`/invite @lipsync`), or run `/lipsync` in a public channel or in a direct message with me."
    )
    return Message(text=text, blocks=[_section(text)])


def _minutes(job: Job) -> str:
    if job.timeout_s >= 60:
        return f"{round(job.timeout_s / 60)} min"
    return f"{job.timeout_s} s" if job.timeout_s else "the time limit"
