"""A job's message in the channel and the one thread reply that ends it, whatever the ending."""

from __future__ import annotations

import time

from bot.jobs.model import CreateState, Job, Source, Status, short_id
from bot.providers.base import Provider
from bot.views.actions import job_buttons
from bot.views.formats import _duration, _label, _name, _provider_model, cost_text, took_text
from bot.views.text import (
    _SLACK_ID,
    ERROR_MAX,
    IMAGE_URL_MAX,
    NAME_MAX,
    Block,
    Message,
    _code,
    _context,
    _escape,
    _fields,
    _link,
    _mention,
    _message,
    _section,
    _shorten,
)

# Why a job failed, in words a user can act on; matched against the provider's failure text.
FAILURE_HINTS: list[tuple[tuple[str, ...], str]] = [
    (
        ("audio",),
        "The provider could not read the audio. Check that the audio link downloads an audio file "
        "(mp3, wav, m4a) directly and that it is not empty or corrupt.",
    ),
    (
        ("download", "fetch", "url", "access", "403", "404", "forbidden", "not found", "format", "decode"),
        "Make sure both links are public and point straight at the media file: opening them in a "
        "private browser window should download the video or audio, not show a page "
        "(Google Drive, Dropbox or YouTube page links do not work).",
    ),
]

# Why a job failed for a reason of the bot's own (providers explain their codes: `Provider.explain`).
OWN_ERRORS = {
    "submit_unknown": "{label} did not answer clearly whether it accepted the job, and it offers no way to "
    "check, so I did not send it again: that could have charged you twice. Look for the job in your "
    "{label} dashboard; if it is not there, run the command again.",
    "needs_public_url": "{label} cannot take files uploaded to Slack: it downloads inputs from links, and "
    "I can only serve Slack files at a link when `PUBLIC_URL` is set (an admin sets it; see the README). "
    "Use another provider, or `/lipsync` with public links.",
    "provider_off": "I no longer have a key for {label}, so I could not go on with this job. An admin "
    "can set it again; or run the command again with another provider.",
    "unreachable": "I can't post there.",
    "compare_stopped": "The compare stopped before I sent it to {label}: the first provider's dub was "
    "refused (my other private message says why), and the dubs share its message. Nothing was charged "
    "for {label}.",
}

# Why a job from shared files failed before the provider saw it, keyed by the transfer's error code.
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


def status_line(status: Status, label: str) -> str:
    return {
        Status.QUEUED: f":hourglass_flowing_sand: Queued: submitting to {label}…",
        Status.PROCESSING: f":gear: Processing at {label}…",
        Status.SUCCEEDED: ":white_check_mark: Done: the dubbed video is in the thread.",
        Status.FAILED: ":x: Failed: details in the thread.",
        Status.TIMED_OUT: ":warning: Timed out: details in the thread.",
        Status.CANCELLED: ":no_entry_sign: Cancelled: details in the thread.",
    }[status]


def parent(job: Job, label: str = "") -> Message:
    """The bot's message in the channel; its thread holds everything else about the job."""
    label = label or _label(job.order.provider)
    status = status_line(job.status, label)
    if job.status is Status.TIMED_OUT:
        status = f":warning: Timed out after {_minutes(job)}: details in the thread."
    if job.status in (Status.QUEUED, Status.PROCESSING) and job.progress.queue_note:
        status = f":hourglass_flowing_sand: {job.progress.queue_note}"
    footer = f"Job {_code(short_id(job.id))}" + (
        f" · {label} task {_code(job.progress.task_id)}" if job.progress.task_id else ""
    )
    who = _mention(job.identity.person)
    blocks = [
        _section(f":clapper: {who} asked for a lip-sync dub"),
        _fields(
            f"*Video*\n{_link(job.inputs.video.link)}",
            f"*Audio*\n{_link(job.inputs.audio.link)}",
            f"*Playback*\n{_code(job.inputs.playback)}",
            f"*Provider*\n{_provider_model(job)}",
            f"*Status*\n{status}",
        ),
        _context(footer),
    ]
    if buttons := job_buttons(job):
        blocks.append(buttons)
    return _message(f"{who} asked for a lip-sync dub. {status}", blocks)


def result(job: Job, provider: Provider | None = None, with_cover: bool = True) -> Message:
    """The one thread reply that ends a job. `provider` (None when it is no longer configured) gives its
    advice for error codes and its cost rule."""
    if job.status is Status.SUCCEEDED:
        message = _success(job, provider, with_cover)
    elif job.status is Status.TIMED_OUT:
        message = _timed_out(job)
    elif job.status is Status.CANCELLED:
        message = _cancelled(job)
    elif job.result.error_code in REFUSALS:
        message = _refused(job)
    else:
        message = _failure(job, provider)
    # Shared files have no job message of their own: the reply carries the buttons.
    if job.identity.source is Source.FILES and (buttons := job_buttons(job)):
        message.blocks.append(buttons)
    return message


# Why the bot did not send a job (bot/lanes/gate.py): nothing was charged. `error` holds the details, our
# words.
REFUSALS = {
    "link_refused": "The {which} {error}, so I didn't send the dub to {label}. Check that the link opens "
    "the media file itself (a private browser window should download it, not show a page), then run the "
    "command again.",
    "refused_balance": "{error} An admin can top up the account; then run the command again.",
    "refused_budget": "{error} An admin can raise it with `/lipsync budget`; it starts afresh next month.",
}


def _refused(job: Job) -> Message:
    which = _escape(job.result.error_file or "link")
    detail = _escape(_shorten(job.result.error, ERROR_MAX)) if job.result.error else "could not be used"
    reason = REFUSALS[job.result.error_code].format(
        which=which, error=detail, label=_label(job.order.provider)
    )
    text = f":no_entry: {_mention(job.identity.person)} {reason} Nothing was charged."
    blocks = [_section(text), _context(f"Job {_code(short_id(job.id))} (nothing was submitted)")]
    if files_line := _files_line(job):
        blocks.insert(1, _context(files_line))
    return _message(text, blocks)


def _cancelled(job: Job) -> Message:
    label = _label(job.order.provider)
    if job.result.error_code == "quote_expired":
        text = (
            f":hourglass: {_mention(job.identity.person)} the quote for this dub was not answered in time, "
            "so I didn't "
            f"send it to {label}: nothing was charged. Run the command again to get a new quote."
        )
        return _message(text, [_section(text), _context(f"Job {_code(short_id(job.id))}")])
    by = _mention(job.progress.cancel_by) if job.progress.cancel_by else "its requester"
    if job.progress.task_id:
        what = (
            f"It was already at {label} (task {_code(job.progress.task_id)}), which may charge for it; "
            "I stopped "
            "tracking it, so its result will not appear here."
        )
    elif job.progress.create is CreateState.ATTEMPTED:
        what = f"A request had already gone to {label}, which may charge for it; I stopped tracking it."
    else:
        what = f"It was never sent to {label}: nothing was charged."
    text = f":no_entry_sign: Cancelled by {by}. {what}"
    return _message(text, [_section(text), _context(f"Job {_code(short_id(job.id))}")])


def _files_line(job: Job) -> str:
    video, audio = job.inputs.video.file, job.inputs.audio.file
    if job.identity.source is not Source.FILES or video is None or audio is None:
        return ""
    return f":clapper: {_name(video)} with :speaker: {_name(audio)} · playback {_code(job.inputs.playback)}"


def _success(job: Job, provider: Provider | None, with_cover: bool) -> Message:
    cost = cost_text(job.result.cost, job.result.cost_unit)
    duration = _duration(job.result.duration_s)
    link = _link(job.result.url, "open the video")
    label = provider.label if provider else _label(job.order.provider)
    blocks: list[Block] = [
        _section(f":white_check_mark: {_mention(job.identity.person)} your dubbed video is ready: {link}"),
        _fields(
            f"*Duration*\n{duration}",
            f"*Cost*\n{cost}",
            f"*Provider*\n{_provider_model(job, label)}",
            f"*Time to result*\n{took_text(job.result.took_ms)}",
        ),
    ]
    if files_line := _files_line(job):
        blocks.insert(1, _context(files_line))
    # Slack refuses the whole message for an image it cannot fetch or an image_url over its limit.
    if job.result.cover_url and with_cover and len(job.result.cover_url) <= IMAGE_URL_MAX:
        blocks.append(
            {
                "type": "image",
                "image_url": job.result.cover_url,
                "alt_text": "Cover image of the dubbed video",
                "title": {"type": "plain_text", "text": "Cover"},
            }
        )
    elif job.result.cover_url:  # still give the user the link
        blocks.append(_context(f"Cover image: {_link(job.result.cover_url)}"))
    if job.money.cached_from:
        made = (
            time.strftime("%b %d", time.gmtime(job.money.cached_ms / 1000))
            if job.money.cached_ms
            else "earlier"
        )
        blocks.insert(
            1,
            _context(
                f":recycle: *From the cache*: these inputs were dubbed with the same options on {made} "
                f"(job {_code(short_id(job.money.cached_from))}), so nothing was charged. "
                "*Dub again anyway* makes "
                "a new one."
            ),
        )
    rule = f" · {provider.cost_rule(job.order.model)}" if provider and not job.money.cached_from else ""
    blocks.append(_context(f"{label} task {_code(job.progress.task_id)}{rule}"))
    cached = ", from the cache" if job.money.cached_from else ""
    text = f"Your dubbed video is ready: {_link(job.result.url)} ({duration}, {cost}, {label}{cached})"
    return _message(text, blocks)


def _failure(job: Job, provider: Provider | None) -> Message:
    label = provider.label if provider else _label(job.order.provider)
    known = provider.explain(job.result.error_code) if provider and job.result.error_code else None
    own = OWN_ERRORS.get(job.result.error_code)
    lines = [f":x: {_mention(job.identity.person)} the lip-sync failed."]
    file_error = FILE_ERRORS.get(job.result.error_code)
    if file_error:
        name = _code(job.result.error_file, NAME_MAX) if job.result.error_file else "a file"
        lines.append(file_error.format(name=name, detail=_code(job.result.error or "no details")))
    elif own:
        lines.append(own.format(label=label))
        if job.result.error:
            lines.append(f"{label} said: {_code(job.result.error)}")
    elif known:
        lines.append(known)
        if job.result.error:
            lines.append(f"{label} said: {_code(job.result.error)}")
    elif job.result.error:
        lines.append(f"{label} said: {_code(job.result.error)}")
        if hint := failure_hint(job.result.error):
            lines.append(f":bulb: {hint}")
    else:
        lines.append(f"{label} gave no reason.")
    if not job.progress.task_id and job.result.error_code != "submit_unknown" and (doubt := _maybe_made(job)):
        lines.append(doubt)
    footer = (
        f"{label} task {_code(job.progress.task_id)}"
        if job.progress.task_id
        else f"Job {_code(job.id)} (nothing was submitted)"
    )
    blocks = [_section("\n".join(lines)), _context(footer)]
    if files_line := _files_line(job):
        blocks.insert(1, _context(files_line))
    return _message(" ".join(lines), blocks)


def _maybe_made(job: Job) -> str:
    """For a job that ended while its last create had no clear answer: it may exist, and cost, anyway."""
    if job.progress.create is not CreateState.ATTEMPTED:
        return ""
    label = _label(job.order.provider)
    return (
        f"My last request to {label} got no clear answer, so {label} may have accepted (and charged for) "
        f"the job: look for it in your {label} dashboard before running it again."
    )


def _timed_out(job: Job) -> Message:
    label = _label(job.order.provider)
    where = (
        f"{label} task {_code(job.progress.task_id)} had no final status after {_minutes(job)}, "
        "so I stopped waiting. "
        f"If it finishes later it will be in your {label} dashboard under that id."
        if job.progress.task_id
        else f"I could not submit the job to {label} within {_minutes(job)}"
        + (f" (last error: {_code(job.progress.last_error)})." if job.progress.last_error else ".")
    )
    if not job.progress.task_id and (doubt := _maybe_made(job)):
        where += f" {doubt}"
    text = f":warning: {_mention(job.identity.person)} {where}"
    return _message(text, [_section(text), _context(f"Job {_code(short_id(job.id))}")])


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
    if job.progress.timeout_s >= 60:
        return f"{round(job.progress.timeout_s / 60)} min"
    return f"{job.progress.timeout_s} s" if job.progress.timeout_s else "the time limit"


def upload_skipped(reason: str) -> Message:
    """When the result video could not be put in the thread itself."""
    text = f":link: I couldn't put the video itself in this thread ({_code(reason)}); the link above works."
    return _message(text, [_context(text)])
