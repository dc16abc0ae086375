"""Every Slack message the bot sends is built here, as plain Block Kit dicts with a text fallback.

Text from outside (provider errors, file names, URLs, ids, anything a user typed) is never written into
mrkdwn raw: `_code` shows it verbatim as an inline code span and `_link` links only a clean http(s) URL,
both escaping through `_escape`. Every block is kept within Block Kit's limits by `_fit`, which shortens
text without cutting a link, an entity or a formatted span in half.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from bot.cost import credits_for, format_credits
from bot.file_share import Plan
from bot.jobs import Job, Source, Status
from bot.slack_files import MediaKind, SlackFile

Block = dict[str, Any]

# mrkdwn: `<`, `>` and `&` that are not markup are written as entities, as Slack requires.
USAGE = (
    "*Usage:* `/lipsync &lt;video_url&gt; &lt;audio_url&gt; [playback_type]`\n"
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

# Why a job from shared files failed before JoggAI saw it, keyed by the transfer's error code.
FILE_ERRORS = {
    "slack_file_access": "I couldn't download {name} from Slack: Slack answered with its sign-in page "
    "instead of the file. The app is probably missing the `files:read` permission; an admin needs to "
    "add it (see the README) and reinstall the app.",
    "slack_file_missing": "{name} is gone from Slack (deleted, or I can no longer see it). "
    "Share it again and I'll start over.",
    "empty_file": "{name} is empty (0 bytes), so there is nothing to dub. Share the file again.",
    "file_too_large": "{name} is too large for me: {detail}. Trim or compress it and share it again.",
    "external_file": "{name} is stored outside Slack (Google Drive, Dropbox…), so I can't download it. "
    "Upload the file itself to Slack.",
    "slack_download": "I couldn't download {name} from Slack, even after several tries ({detail}). "
    "Please share it again in a little while.",
}

# Reactions on the message that shared the files: working, then done and/or failed.
REACTION_WORKING = "hourglass_flowing_sand"
REACTION_DONE = "white_check_mark"
REACTION_FAILED = "x"

PLAYBACK_TIP = (
    "Write `normal_reverse` or `normal_reverse_by_audio` in the message to change what happens "
    "when the video is shorter than the audio."
)

STATUS_LINES = {
    Status.QUEUED: ":hourglass_flowing_sand: Queued: submitting to JoggAI…",
    Status.PROCESSING: ":gear: Processing at JoggAI…",
    Status.SUCCEEDED: ":white_check_mark: Done: the dubbed video is in the thread.",
    Status.FAILED: ":x: Failed: details in the thread.",
    Status.TIMED_OUT: ":warning: Timed out: details in the thread.",
}


# Block Kit's limits (https://api.slack.com/reference/block-kit/blocks; slack_sdk.models checks some).
SECTION_TEXT_MAX = 3000
FIELD_TEXT_MAX = 2000
CONTEXT_TEXT_MAX = 3000
IMAGE_URL_MAX = 3000
# chat.postMessage truncates `text` at 40,000 characters; a fallback is a notification, so keep it short.
TEXT_MAX = 4000
# How much outside text a message repeats (before escaping, which can make it up to 5 times longer).
LINK_MAX = 1900  # a link and its label fit in a section field
ERROR_MAX = 300
NAME_MAX = 100
NAMES_SHOWN = 5

# Slack ids (users U…/W…, channels C…/G…/D…): anything else is not put inside `<@…>` or `<#…>`.
_SLACK_ID = re.compile(r"[A-Z][A-Z0-9]{1,40}")
# What ends or splits `<url|label>` (or a code span), or is no part of a URL: percent-encoded in links.
_NOT_IN_LINK = re.compile(r"[|<>`\s\x00-\x1f\x7f]")
# An `&` that does not start one of the entities Slack decodes.
_STRAY_AMPERSAND = re.compile(r"&(?!amp;|lt;|gt;)")
# The units `_fit` never cuts: a `<…>` link or mention, an `&…;` entity, a code, bold, italic or strike span.
_ATOM = re.compile(r"<[^<>\n]*>|&#?\w+;|`[^`\n]*`|\*[^*\n]+\*|_[^_\n]+_|~[^~\n]+~|.", re.DOTALL)


@dataclass(frozen=True)
class Message:
    text: str  # notification and accessibility fallback
    blocks: list[Block] = field(default_factory=list)


def _message(text: str, blocks: list[Block]) -> Message:
    return Message(text=_fit(text, TEXT_MAX), blocks=blocks)


def _section(markdown: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _fit(markdown, SECTION_TEXT_MAX)}}


def _fields(*markdown: str) -> Block:
    return {
        "type": "section",
        "fields": [{"type": "mrkdwn", "text": _fit(m, FIELD_TEXT_MAX)} for m in markdown],
    }


def _context(markdown: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": _fit(markdown, CONTEXT_TEXT_MAX)}]}


# ------------------------------------------------------------ outside text


def _escape(text: str) -> str:
    """The one escaping of outside text: Slack reads only these three characters as markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _code(text: str, limit: int = ERROR_MAX) -> str:
    """Outside text shown verbatim: an inline code span has no mentions, links or formatting."""
    # A code span is one line and ends at the next backtick.
    flat = " ".join(text.replace("`", "'").split())
    return f"`{_escape(_shorten(flat, limit))}`" if flat else "(blank)"


def _link(url: str, label: str | None = None) -> str:
    """A clickable http(s) link; any other or over-long URL is shown, shortened, as code instead."""
    if not url.lower().startswith(("https://", "http://")):
        return _code(url, 80)
    # Characters that would end or split `<url|label>` are percent-encoded, which keeps the link working.
    target = _escape(_NOT_IN_LINK.sub(lambda m: quote(m.group(), safe=""), url))
    link = f"<{target}|{_escape(label)}>" if label else f"<{target}>"
    if len(link) > LINK_MAX:
        return f"{_code(url, 80)} (too long to show as a link)"
    return link


def _mention(user: str) -> str:
    return f"<@{user}>" if _SLACK_ID.fullmatch(user) else _code(user, 40)


def _fit(markdown: str, limit: int) -> str:
    """`markdown` within `limit` characters, cut only between whole links, entities and spans."""
    if len(markdown) <= limit:
        return markdown
    kept, size = [], 0
    for atom in _ATOM.finditer(markdown):
        if size + len(atom.group()) > limit - 1:
            break
        kept.append(atom.group())
        size += len(atom.group())
    return "".join(kept) + "…"


# ------------------------------------------------------------ slash command


def usage() -> Message:
    return _message(USAGE, [_section(USAGE)])


def usage_error(reason: str) -> Message:
    """`reason` is bot/command.py's mrkdwn, with user words already quoted; no link or mention may remain."""
    reason = _STRAY_AMPERSAND.sub("&amp;", reason).replace("<", "&lt;").replace(">", "&gt;")
    text = f":warning: {reason}\n\n{USAGE}"
    return _message(text, [_section(f":warning: {reason}"), _section(USAGE)])


def store_unavailable() -> Message:
    text = (
        ":warning: I can't reach my job database right now, so nothing was submitted and "
        "nothing was charged. Please try again in a minute."
    )
    return _message(text, [_section(text)])


def store_unavailable_for_files() -> Message:
    text = (
        ":warning: I can't reach my job database right now, so I didn't start anything for these files "
        "and nothing was charged. In a minute, use the message's ⋯ menu → *Lip-sync these files* to "
        "try again."
    )
    return _message(text, [_section(text)])


def parent(job: Job) -> Message:
    """The bot's message in the channel; its thread holds everything else about the job."""
    status = STATUS_LINES[job.status]
    if job.status is Status.TIMED_OUT:
        status = f":warning: Timed out after {_minutes(job)}: details in the thread."
    footer = f"Job {_code(job.id)}" + (f" · JoggAI task {_code(job.task_id)}" if job.task_id else "")
    who = _mention(job.user)
    return _message(
        f"{who} asked for a lip-sync dub. {status}",
        [
            _section(f":clapper: {who} asked for a lip-sync dub"),
            _fields(
                f"*Video*\n{_link(job.video_url)}",
                f"*Audio*\n{_link(job.audio_url)}",
                f"*Playback*\n{_code(job.playback_type)}",
                f"*Status*\n{status}",
            ),
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


def _files_line(job: Job) -> str:
    video, audio = job.video, job.audio
    if job.source is not Source.FILES or video is None or audio is None:
        return ""
    return f":clapper: {_name(video)} with :speaker: {_name(audio)} · playback {_code(job.playback_type)}"


def _success(job: Job, with_cover: bool) -> Message:
    cost = format_credits(credits_for(Decimal(job.duration_s or "0")))
    duration = f"{Decimal(job.duration_s or '0'):f} s"
    link = _link(job.result_url, "open the video")
    blocks: list[Block] = [
        _section(f":white_check_mark: {_mention(job.user)} your dubbed video is ready: {link}"),
        _fields(f"*Duration*\n{duration}", f"*Cost*\n{cost} credits"),
    ]
    if files_line := _files_line(job):
        blocks.insert(1, _context(files_line))
    # Slack refuses the whole message for an image it cannot fetch or an image_url over its limit.
    if job.cover_url and with_cover and len(job.cover_url) <= IMAGE_URL_MAX:
        blocks.append(
            {
                "type": "image",
                "image_url": job.cover_url,
                "alt_text": "Cover image of the dubbed video",
                "title": {"type": "plain_text", "text": "Cover"},
            }
        )
    elif job.cover_url:  # still give the user the link
        blocks.append(_context(f"Cover image: {_link(job.cover_url)}"))
    blocks.append(_context(f"JoggAI task {_code(job.task_id)} · 1 credit per 125 s of output, rounded up"))
    text = f"Your dubbed video is ready: {_link(job.result_url)} ({duration}, {cost} credits)"
    return _message(text, blocks)


def _failure(job: Job) -> Message:
    known = PROVIDER_ERRORS.get(job.error_code)
    lines = [f":x: {_mention(job.user)} the lip-sync failed."]
    file_error = FILE_ERRORS.get(job.error_code)
    if file_error:
        name = _code(job.error_file, NAME_MAX) if job.error_file else "a file"
        lines.append(file_error.format(name=name, detail=_code(job.error or "no details")))
    elif known:
        lines.append(known)
        if job.error:
            lines.append(f"JoggAI said: {_code(job.error)}")
    elif job.error:
        lines.append(f"JoggAI said: {_code(job.error)}")
        if hint := failure_hint(job.error):
            lines.append(f":bulb: {hint}")
    else:
        lines.append("JoggAI gave no reason.")
    footer = (
        f"JoggAI task {_code(job.task_id)}" if job.task_id else f"Job {_code(job.id)} (nothing was submitted)"
    )
    blocks = [_section("\n".join(lines)), _context(footer)]
    if files_line := _files_line(job):
        blocks.insert(1, _context(files_line))
    return _message(" ".join(lines), blocks)


def _timed_out(job: Job) -> Message:
    where = (
        f"JoggAI task {_code(job.task_id)} had no final status after {_minutes(job)}, so I stopped waiting. "
        "If it finishes later it will be in your JoggAI dashboard under that id."
        if job.task_id
        else f"I could not submit the job to JoggAI within {_minutes(job)}"
        + (f" (last error: {_code(job.last_error)})." if job.last_error else ".")
    )
    text = f":warning: {_mention(job.user)} {where}"
    return _message(text, [_section(text), _context(f"Job {_code(job.id)}")])


def failure_hint(provider_message: str) -> str | None:
    lowered = provider_message.lower()
    for needles, hint in FAILURE_HINTS:
        if any(needle in lowered for needle in needles):
            return hint
    return None


def cannot_post_here(channel: str) -> Message:
    where = f"<#{channel}>" if _SLACK_ID.fullmatch(channel) else f"channel {_code(channel, 40)}"
    text = (
        f":wave: I can't post in {where}, so nothing was submitted. Invite me first "
        "(`/invite @lipsync`), or run `/lipsync` in a public channel or in a direct message with me."
    )
    return _message(text, [_section(text)])


def _minutes(job: Job) -> str:
    if job.timeout_s >= 60:
        return f"{round(job.timeout_s / 60)} min"
    return f"{job.timeout_s} s" if job.timeout_s else "the time limit"


# ------------------------------------------------------------ shared files


def _name(file: SlackFile) -> str:
    return _code(file.name, NAME_MAX)


def _names(files: list[SlackFile]) -> str:
    shown = ", ".join(_name(f) for f in files[:NAMES_SHOWN])
    more = len(files) - NAMES_SHOWN
    return f"{shown} and {more} more" if more > 0 else shown


def _mb(size: int) -> str:
    return f"{size / 1_000_000:,.0f} MB" if size >= 10_000_000 else f"{size / 1_000_000:,.1f} MB"


def file_help() -> Message:
    """When someone mentions the bot without sharing media."""
    text = (
        ":wave: Share a talking-head video and an audio file in one message here and I'll dub the "
        "video with the audio, answering in the thread with the result and what it cost. "
        "Several audio files with one video give one dub each. "
        f"{PLAYBACK_TIP} You can also use `/lipsync &lt;video_url&gt; &lt;audio_url&gt;` with public links."
    )
    return _message(text, [_section(text)])


def needs_partner(plan: Plan) -> Message:
    """When a message holds only a video or only audio (and the thread has nothing to pair it with)."""
    if plan.missing is MediaKind.AUDIO:
        have, need = f"the video {_names(plan.videos)}", "the audio track to dub it with"
    else:
        have, need = f"the audio {_names(plan.audios)}", "the video to dub with it"
    text = (
        f":paperclip: I have {have}. Now share {need} as a reply in this thread, or share the video "
        f"and the audio together in one message. {PLAYBACK_TIP}"
    )
    return _message(text, [_section(text)])


def ambiguous_files(plan: Plan) -> Message:
    text = (
        f":thinking_face: I see {len(plan.videos)} videos and {len(plan.audios)} audio files, so I can't "
        "tell which goes with which, and nothing was started. Share one video with one or more audio "
        "files (one dub per audio file), or one audio file with several videos."
    )
    return _message(text, [_section(text)])


def too_many_dubs(requested: int, cap: int) -> Message:
    """When one message would start more dubs than the per-message cap."""
    text = (
        f":warning: That message asks for {requested:,} dubs; I start at most {cap:,} per message, so "
        f"nothing was started. Share one video with at most {cap:,} audio files (or one audio file with "
        f"at most {cap:,} videos) per message."
    )
    return _message(text, [_section(text)])


def files_too_large(files: list[SlackFile], limit_bytes: int) -> Message:
    shown = files[:NAMES_SHOWN]
    sizes = ", ".join(f"{_name(f)} ({_mb(f.size)})" for f in shown)
    if len(files) > len(shown):
        sizes += f" and {len(files) - len(shown)} more"
    text = (
        f":warning: {sizes} {'is' if len(files) == 1 else 'are'} over my {_mb(limit_bytes)} limit per "
        "file, so nothing was uploaded or started. Trim or compress the file and share it again."
    )
    return _message(text, [_section(text)])


def external_files(files: list[SlackFile]) -> Message:
    text = (
        f":warning: {_names(files)} {'is' if len(files) == 1 else 'are'} stored outside Slack "
        f"(Google Drive, Dropbox…), so I can't download {'it' if len(files) == 1 else 'them'} and "
        "nothing was started. Upload the file itself to Slack."
    )
    return _message(text, [_section(text)])


def files_started(count: int) -> Message:
    what = "a dub" if count == 1 else f"{count} dubs"
    text = f":clapper: Started {what} from these files. I'll answer in the message's thread."
    return _message(text, [_section(text)])


def files_already_started() -> Message:
    text = ":ok_hand: I'm already on these files (or done with them): look in the message's thread."
    return _message(text, [_section(text)])


def no_media_in_message() -> Message:
    text = (
        ":thinking_face: That message has no video or audio file I can use. Run the shortcut on a "
        f"message that shares a video and an audio file. {PLAYBACK_TIP}"
    )
    return _message(text, [_section(text)])
