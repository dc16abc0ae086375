"""Every Slack message the bot sends is built here, as plain Block Kit dicts with a text fallback.

Text from outside (provider errors, file names, URLs, ids, anything a user typed) is never written into
mrkdwn raw: `_code` shows it verbatim as an inline code span and `_link` links only a clean http(s) URL,
both escaping through `_escape`. Every block is kept within Block Kit's limits by `_fit`, which shortens
text without cutting a link, an entity or a formatted span in half.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from bot.jobs.files import MediaKind, SlackFile
from bot.jobs.model import Job, PostState, Source, Status, short_id
from bot.money.budgets import Limit
from bot.parsing.file_share import Plan
from bot.providers.base import Cost, Provider
from bot.providers.registry import REGISTRY

Block = dict[str, Any]

# The help (`usage`) is built from the providers configured here, so it offers nothing that would be
# refused. mrkdwn: `<`, `>` and `&` that are not markup are written as entities, as Slack requires.
USAGE_LINE = "*Usage:* `/lipsync &lt;video_url&gt; &lt;audio_url&gt; [options]`"
LINKS_HELP = (
    "• `video_url`: a public, direct link to the talking-head video (mp4, mov, webm)\n"
    "• `audio_url`: a public, direct link to the new voice track (mp3, wav, m4a)"
)
# What each playback type does with a video shorter than its audio.
PLAYBACK_HELP = {
    "normal": "`normal` (default) plays it once",
    "normal_reverse": "`normal_reverse` plays it forward then backward",
    "normal_reverse_by_audio": "`normal_reverse_by_audio` stretches it to the audio's length",
}
JOBS_HELP = (
    "• `/lipsync list`, `/lipsync status &lt;job&gt;`, `/lipsync cancel &lt;job&gt;`: your jobs, one job, "
    "stop one (the job id is on its message)\n"
    "• `/lipsync budget`: this month's budgets per channel and person (admins set them: "
    "`/lipsync budget #channel 50`)"
)
SHARE_HELP = (
    "*Or share the files:* invite me to the channel (`/invite @lipsync`), then share a video and an audio "
    "file in one message there and I answer in its thread. Posted already? Use the message's ⋯ menu → "
    "*Lip-sync these files*."
)
EXAMPLE_LINKS = "https://example.com/talk.mp4 https://example.com/voice-fr.mp3"
# The help's cost line: what a minute of output costs, by each provider's own quoting rule.
HELP_MINUTE = Decimal(60)

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

# Reactions on the message that shared the files: working, then done and/or failed.
REACTION_WORKING = "hourglass_flowing_sand"
REACTION_DONE = "white_check_mark"
REACTION_FAILED = "x"

PLAYBACK_TIP = (
    "Write `normal_reverse` or `normal_reverse_by_audio` in the message to change what happens "
    "when the video is shorter than the audio."
)


def status_line(status: Status, label: str) -> str:
    return {
        Status.QUEUED: f":hourglass_flowing_sand: Queued: submitting to {label}…",
        Status.PROCESSING: f":gear: Processing at {label}…",
        Status.SUCCEEDED: ":white_check_mark: Done: the dubbed video is in the thread.",
        Status.FAILED: ":x: Failed: details in the thread.",
        Status.TIMED_OUT: ":warning: Timed out: details in the thread.",
        Status.CANCELLED: ":no_entry_sign: Cancelled: details in the thread.",
    }[status]


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
    elif job.status is Status.SUCCEEDED and job.cached_from:
        buttons = [
            _button("Dub again anyway", ACTION_AGAIN_ANYWAY, job),
            _button("Dub again…", ACTION_DUB_AGAIN, job),
        ]
    elif job.status is Status.SUCCEEDED:
        buttons = [_button("Dub again…", ACTION_DUB_AGAIN, job)]
    else:
        return None
    return {"type": "actions", "block_id": f"job:{short_id(job.id)}", "elements": buttons}


# Block Kit's limits (https://api.slack.com/reference/block-kit/blocks; slack_sdk.models checks some).
SECTION_TEXT_MAX = 3000
FIELD_TEXT_MAX = 2000
CONTEXT_TEXT_MAX = 3000
IMAGE_URL_MAX = 3000
# chat.postMessage truncates `text` at 40,000 characters; a fallback is a notification, so keep it short.
TEXT_MAX = 4000
# How much outside text a message repeats (before escaping, which can make it up to 5 times longer).
LINK_MAX = 1900  # a link and its label fit in a section field
# A job in `/lipsync list`: its two inputs and its result linked within this each, so that a job's section
# stays far below SECTION_TEXT_MAX whatever the links; longer ones are named instead.
INPUT_LINK_MAX = 700
INPUT_NAME_MAX = 40
LIST_JOBS_MAX = 40  # sections in one list, within a message's 50 blocks
ERROR_MAX = 300
NAME_MAX = 100
NAMES_SHOWN = 5

# Slack ids (users U…/W…, channels C…/G…/D…): anything else is not put inside `<@…>` or `<#…>`.
_SLACK_ID = re.compile(r"[A-Z][A-Z0-9]{1,40}")
# What ends or splits `<url|label>` (or a code span), or is no part of a URL: percent-encoded in links.
_NOT_IN_LINK = re.compile(r"[|<>`\s\x00-\x1f\x7f]")
# An `&` that does not start one of the entities Slack decodes.
_STRAY_AMPERSAND = re.compile(r"&(?!amp;|lt;|gt;)")
# A message ts, and a workspace's domain (the `acme` of acme.slack.com), as they may go into a link.
_TS = re.compile(r"\d{1,12}\.\d{1,8}")
_DOMAIN = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# What a link's label keeps of a file name: the rest could end the link or format the text.
_LABEL_UNSAFE = re.compile(r"[^\w.\-]+")
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


def usage_error(reason: str) -> Message:
    """`reason` is bot/parsing/command.py's mrkdwn, with user words already quoted; no link or mention may
    remain."""
    reason = _STRAY_AMPERSAND.sub("&amp;", reason).replace("<", "&lt;").replace(">", "&gt;")
    general = _usage_text((), "")
    text = f":warning: {reason}\n\n{general}"
    return _message(text, [_section(f":warning: {reason}"), _section(general)])


def store_unavailable() -> Message:
    text = (
        ":warning: I can't reach my job database right now, so nothing was submitted and "
        "nothing was charged. Please try again in a minute."
    )
    return _message(text, [_section(text)])


def store_unavailable_now() -> Message:
    """A job action (cancel, retry, a listing) that could not reach the store: nothing changed."""
    text = (
        ":warning: I can't reach my job database right now, so nothing changed. Please try again in a minute."
    )
    return _message(text, [_section(text)])


def store_unavailable_for_files() -> Message:
    text = (
        ":warning: I can't reach my job database right now, so I didn't start anything for these files "
        "and nothing was charged. In a minute, use the message's ⋯ menu → *Lip-sync these files* to "
        "try again."
    )
    return _message(text, [_section(text)])


def _label(name: str) -> str:
    """How messages name a provider: its label, or the stored name shown as code if it is unknown."""
    return REGISTRY.labels.get(name) or _code(name, 40)


def _provider_model(job: Job, label: str = "") -> str:
    return (label or _label(job.provider)) + (f" {_code(job.model, 64)}" if job.model else "")


def parent(job: Job, label: str = "") -> Message:
    """The bot's message in the channel; its thread holds everything else about the job."""
    label = label or _label(job.provider)
    status = status_line(job.status, label)
    if job.status is Status.TIMED_OUT:
        status = f":warning: Timed out after {_minutes(job)}: details in the thread."
    if job.status in (Status.QUEUED, Status.PROCESSING) and job.queue_note:
        status = f":hourglass_flowing_sand: {job.queue_note}"
    footer = f"Job {_code(short_id(job.id))}" + (
        f" · {label} task {_code(job.task_id)}" if job.task_id else ""
    )
    who = _mention(job.user)
    blocks = [
        _section(f":clapper: {who} asked for a lip-sync dub"),
        _fields(
            f"*Video*\n{_link(job.video_url)}",
            f"*Audio*\n{_link(job.audio_url)}",
            f"*Playback*\n{_code(job.playback_type)}",
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
    elif job.error_code in REFUSALS:
        message = _refused(job)
    else:
        message = _failure(job, provider)
    # Shared files have no job message of their own: the reply carries the buttons.
    if job.source is Source.FILES and (buttons := job_buttons(job)):
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
    which = _escape(job.error_file or "link")
    detail = _escape(_shorten(job.error, ERROR_MAX)) if job.error else "could not be used"
    reason = REFUSALS[job.error_code].format(which=which, error=detail, label=_label(job.provider))
    text = f":no_entry: {_mention(job.user)} {reason} Nothing was charged."
    blocks = [_section(text), _context(f"Job {_code(short_id(job.id))} (nothing was submitted)")]
    if files_line := _files_line(job):
        blocks.insert(1, _context(files_line))
    return _message(text, blocks)


def _cancelled(job: Job) -> Message:
    label = _label(job.provider)
    if job.error_code == "quote_expired":
        text = (
            f":hourglass: {_mention(job.user)} the quote for this dub was not answered in time, so I didn't "
            f"send it to {label}: nothing was charged. Run the command again to get a new quote."
        )
        return _message(text, [_section(text), _context(f"Job {_code(short_id(job.id))}")])
    by = _mention(job.cancel_by) if job.cancel_by else "its requester"
    if job.task_id:
        what = (
            f"It was already at {label} (task {_code(job.task_id)}), which may charge for it; I stopped "
            "tracking it, so its result will not appear here."
        )
    elif job.submit_state is PostState.ATTEMPTED:
        what = f"A request had already gone to {label}, which may charge for it; I stopped tracking it."
    else:
        what = f"It was never sent to {label}: nothing was charged."
    text = f":no_entry_sign: Cancelled by {by}. {what}"
    return _message(text, [_section(text), _context(f"Job {_code(short_id(job.id))}")])


def _files_line(job: Job) -> str:
    video, audio = job.video, job.audio
    if job.source is not Source.FILES or video is None or audio is None:
        return ""
    return f":clapper: {_name(video)} with :speaker: {_name(audio)} · playback {_code(job.playback_type)}"


def cost_text(amount: str, unit: str) -> str:
    """An exact cost in the provider's own unit: "0.10 credits", "$0.625", or "unknown"."""
    if not amount:
        return "unknown"
    amount, unit = _escape(_shorten(amount, 40)), _escape(_shorten(unit, 20))
    return f"${amount}" if unit == "USD" else f"{amount} {unit}"


def took_text(took_ms: int) -> str:
    if not took_ms:
        return "—"
    seconds = round(took_ms / 1000)
    return f"{seconds} s" if seconds < 120 else f"{seconds // 60} min {seconds % 60:02d} s"


def _duration(duration_s: str) -> str:
    try:
        return f"{Decimal(duration_s):f} s" if duration_s else "unknown"
    except ArithmeticError:
        return "unknown"


def _success(job: Job, provider: Provider | None, with_cover: bool) -> Message:
    cost = cost_text(job.cost, job.cost_unit)
    duration = _duration(job.duration_s)
    link = _link(job.result_url, "open the video")
    label = provider.label if provider else _label(job.provider)
    blocks: list[Block] = [
        _section(f":white_check_mark: {_mention(job.user)} your dubbed video is ready: {link}"),
        _fields(
            f"*Duration*\n{duration}",
            f"*Cost*\n{cost}",
            f"*Provider*\n{_provider_model(job, label)}",
            f"*Time to result*\n{took_text(job.took_ms)}",
        ),
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
    if job.cached_from:
        made = time.strftime("%b %d", time.gmtime(job.cached_ms / 1000)) if job.cached_ms else "earlier"
        blocks.insert(
            1,
            _context(
                f":recycle: *From the cache*: these inputs were dubbed with the same options on {made} "
                f"(job {_code(short_id(job.cached_from))}), so nothing was charged. *Dub again anyway* makes "
                "a new one."
            ),
        )
    rule = f" · {provider.cost_rule(job.model)}" if provider and not job.cached_from else ""
    blocks.append(_context(f"{label} task {_code(job.task_id)}{rule}"))
    cached = ", from the cache" if job.cached_from else ""
    text = f"Your dubbed video is ready: {_link(job.result_url)} ({duration}, {cost}, {label}{cached})"
    return _message(text, blocks)


def _failure(job: Job, provider: Provider | None) -> Message:
    label = provider.label if provider else _label(job.provider)
    known = provider.explain(job.error_code) if provider and job.error_code else None
    own = OWN_ERRORS.get(job.error_code)
    lines = [f":x: {_mention(job.user)} the lip-sync failed."]
    file_error = FILE_ERRORS.get(job.error_code)
    if file_error:
        name = _code(job.error_file, NAME_MAX) if job.error_file else "a file"
        lines.append(file_error.format(name=name, detail=_code(job.error or "no details")))
    elif own:
        lines.append(own.format(label=label))
        if job.error:
            lines.append(f"{label} said: {_code(job.error)}")
    elif known:
        lines.append(known)
        if job.error:
            lines.append(f"{label} said: {_code(job.error)}")
    elif job.error:
        lines.append(f"{label} said: {_code(job.error)}")
        if hint := failure_hint(job.error):
            lines.append(f":bulb: {hint}")
    else:
        lines.append(f"{label} gave no reason.")
    if not job.task_id and job.error_code != "submit_unknown" and (doubt := _maybe_made(job)):
        lines.append(doubt)
    footer = (
        f"{label} task {_code(job.task_id)}"
        if job.task_id
        else f"Job {_code(job.id)} (nothing was submitted)"
    )
    blocks = [_section("\n".join(lines)), _context(footer)]
    if files_line := _files_line(job):
        blocks.insert(1, _context(files_line))
    return _message(" ".join(lines), blocks)


def _maybe_made(job: Job) -> str:
    """For a job that ended while its last create had no clear answer: it may exist, and cost, anyway."""
    if job.submit_state is not PostState.ATTEMPTED:
        return ""
    label = _label(job.provider)
    return (
        f"My last request to {label} got no clear answer, so {label} may have accepted (and charged for) "
        f"the job: look for it in your {label} dashboard before running it again."
    )


def _timed_out(job: Job) -> Message:
    label = _label(job.provider)
    where = (
        f"{label} task {_code(job.task_id)} had no final status after {_minutes(job)}, so I stopped waiting. "
        f"If it finishes later it will be in your {label} dashboard under that id."
        if job.task_id
        else f"I could not submit the job to {label} within {_minutes(job)}"
        + (f" (last error: {_code(job.last_error)})." if job.last_error else ".")
    )
    if not job.task_id and (doubt := _maybe_made(job)):
        where += f" {doubt}"
    text = f":warning: {_mention(job.user)} {where}"
    return _message(text, [_section(text), _context(f"Job {_code(short_id(job.id))}")])


# ------------------------------------------------------------ providers and compare


def usage(providers: Sequence[Provider] = (), default: str = "") -> Message:
    """`/lipsync help`: how to use the command with the providers configured here (`providers`, `default`
    the one used when none is named), what each takes and costs, and how to share files instead."""
    general = _usage_text(providers, default)
    lines = [_provider_help(provider, default) for provider in providers]
    here = "*Providers here:*\n" + "\n".join(lines) if lines else ""
    text = general + ("\n" + here if here else "")
    return _message(text, [_section(general), *([_section(here)] if here else [])])


def _usage_text(providers: Sequence[Provider], default: str) -> str:
    """The help's first part. Without `providers` (a refused command), only what holds for every one."""
    playbacks = [p for p in PLAYBACK_HELP if not providers or any(p in x.playback for x in providers)]
    options = [
        "a playback type, for when the video is shorter than the audio: "
        + ", ".join(PLAYBACK_HELP[p] for p in playbacks)
    ]
    several = len(providers) != 1  # none given: there may be several
    if not providers:
        options.append("a provider, and `model=&lt;name&gt;` where it has models: `/lipsync help` lists them")
    elif several:
        options.append("a provider: " + ", ".join(f"`{p.name}` ({p.label})" for p in providers))
    for provider in (p for p in providers if len(p.models) > 1):
        options.append(f"`model=&lt;name&gt;` for {provider.label}, e.g. `model={_other_model(provider)}`")
    lines = [USAGE_LINE, LINKS_HELP, "• options, in any order:\n" + ";\n".join(f"    {o}" for o in options)]
    if several:
        lines.append(
            "• `/lipsync compare &lt;video_url&gt; &lt;audio_url&gt; [playback]` runs the same dub on every "
            "provider here and sums them up in one table"
        )
    example = " ".join([EXAMPLE_LINKS, *_example_options(providers, default)])
    lines += [
        JOBS_HELP,
        SHARE_HELP,
        f"*Example:* `/lipsync {example}`",
        "I post the job in this channel and answer in its thread with the dubbed video and what it cost.",
    ]
    return "\n".join(lines)


def _other_model(provider: Provider) -> str:
    """A model to show in an example: one that is not the default, so that naming it changes something."""
    return next((m for m in provider.models if m != provider.default_model), provider.default_model)


def _example_options(providers: Sequence[Provider], default: str) -> list[str]:
    """Options for the help's example that the providers here accept: a provider with a model choice
    (named if there are several), else a playback type beyond the default."""
    if not providers:
        return []
    chosen = next((p for p in providers if len(p.models) > 1), None)
    if chosen is None:
        chosen = next((p for p in providers if p.name == default), providers[0])
    words = [chosen.name] if len(providers) > 1 else []
    if len(chosen.models) > 1:
        return [*words, f"model={_other_model(chosen)}"]
    return [*words, *[p for p in PLAYBACK_HELP if p != "normal" and p in chosen.playback][:1]]


def _provider_help(provider: Provider, default: str) -> str:
    """One provider's line in the help: its options and what a minute of output costs, in its users' words
    (no setting names, no API fields)."""
    playbacks = ", ".join(f"`{p}`" for p in provider.playback)
    models = ""
    if provider.models:
        models = " · models " + ", ".join(
            f"`{m}`" + (" (default)" if m == provider.default_model else "") for m in provider.models
        )
    first = " (default)" if provider.name == default else ""
    cost = _cost_help(provider)
    return f"• `{provider.name}`: {provider.label}{first} · playback {playbacks}{models} · {cost}"


def _cost_help(provider: Provider) -> str:
    per_model = [(m, _minute_cost(provider, m)) for m in provider.models or (provider.default_model,)]
    known = [(m, cost) for m, cost in per_model if cost]
    if not known:
        return f"cost: as {provider.label} reports it, in {_escape(provider.unit)}"
    if len(per_model) == 1:
        return f"cost: about {known[0][1]} per minute of output"
    return "cost per minute of output: " + ", ".join(f"`{m}` about {cost}" for m, cost in known)


def _minute_cost(provider: Provider, model: str) -> str:
    """What a minute of output costs on `model` by the provider's quoting rule; "" when it has none."""
    quote = provider.quote(HELP_MINUTE, HELP_MINUTE, "normal", model)
    return amount_text(quote.amount, quote.unit) if quote is not None else ""


def option_refused(reason: str, providers: Sequence[Provider] = (), default: str = "") -> Message:
    """A provider or option this bot cannot honour; nothing was submitted. `reason` is our own mrkdwn."""
    reason = _STRAY_AMPERSAND.sub("&amp;", reason).replace("<", "&lt;").replace(">", "&gt;")
    available = ", ".join(f"`{p.name}` ({p.label})" for p in providers) or "none"
    text = f":warning: {reason} Nothing was submitted. Providers here: {available}."
    return _message(text, [_section(text)])


@dataclass(frozen=True)
class CompareEntry:
    """One provider's line in a compare's summary (stored as JSON in the group until all are done)."""

    provider: str
    model: str
    status: str
    took_ms: int
    duration_s: str
    cost: str
    cost_unit: str
    result_url: str
    order: str  # the job id: rows keep the order the jobs were made in


def compare_parent(job: Job, labels: Sequence[str], done: bool = False) -> Message:
    who = _mention(job.user)
    status = (
        ":white_check_mark: Done: every reply and the summary are in the thread."
        if done
        else ":gear: Working: a reply per provider arrives in the thread as each finishes, then a summary."
    )
    names = ", ".join(_escape(_shorten(label, 40)) for label in labels)
    return _message(
        f"{who} asked to compare providers on one dub: {names}. {status}",
        [
            _section(f":bar_chart: {who} asked to compare providers on one dub: {names}"),
            _fields(
                f"*Video*\n{_link(job.video_url)}",
                f"*Audio*\n{_link(job.audio_url)}",
                f"*Playback*\n{_code(job.playback_type)}",
                f"*Status*\n{status}",
            ),
            _context(f"Compare {_code(job.id)}"),
        ],
    )


def compare_summary(rows: Sequence[CompareEntry]) -> Message:
    """The table that ends a compare: provider, model, time to result, duration, cost, link."""
    lines = ["*Provider · model · time to result · duration · cost · result*"]
    for row in rows:
        provider = _escape(_shorten(row.provider, 40))
        model = _code(row.model, 64) if row.model else "—"
        if row.status == Status.SUCCEEDED:
            outcome = _link(row.result_url, "open the video") if row.result_url else "—"
            line = (
                f"{provider} · {model} · {took_text(row.took_ms)} · {_duration(row.duration_s)} · "
                f"{cost_text(row.cost, row.cost_unit)} · {outcome}"
            )
        else:
            status = _escape(_shorten(row.status.replace("_", " "), 20))
            line = f"{provider} · {model} · {status} · — · — · see its reply above"
        lines.append(line)
    done = [r for r in rows if r.status == Status.SUCCEEDED and r.took_ms]
    if len(done) > 1:
        fastest = min(done, key=lambda r: r.took_ms)
        fastest_name = _escape(_shorten(fastest.provider, 40))
        lines.append(f":zap: Fastest: {fastest_name}. Costs are in each provider's own unit.")
    text = "\n".join(lines)
    return _message(f"Compare summary: {len(done)} of {len(rows)} providers made the dub", [_section(text)])


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


def files_started(jobs: Sequence[Job]) -> Message:
    """To the person who shared the files: what started, each job's id, and a Cancel button for each."""
    what = "a dub" if len(jobs) == 1 else f"{len(jobs)} dubs"
    text = f":clapper: Started {what} from these files. I'll answer in the message's thread."
    lines = []
    for job in jobs:
        video, audio = job.video, job.audio
        names = f"{_name(video)} with {_name(audio)}" if video and audio else ""
        lines.append(f"{_code(short_id(job.id))} {names} · {_label(job.provider)}")
    cancels = [
        {
            **_button(f"Cancel {short_id(job.id)}", ACTION_CANCEL, job, "danger"),
            "action_id": f"{ACTION_CANCEL}:{n}",
        }
        for n, job in enumerate(jobs)
    ]
    blocks = [_section(text + "\n" + "\n".join(lines))]
    if cancels:
        blocks.append({"type": "actions", "block_id": "started", "elements": cancels[:25]})
    return _message(text, blocks)


def files_already_started() -> Message:
    text = ":ok_hand: I'm already on these files (or done with them): look in the message's thread."
    return _message(text, [_section(text)])


def no_media_in_message() -> Message:
    text = (
        ":thinking_face: That message has no video or audio file I can use. Run the shortcut on a "
        f"message that shares a video and an audio file. {PLAYBACK_TIP}"
    )
    return _message(text, [_section(text)])


# ------------------------------------------------------------ steering jobs


def no_such_job(typed: str) -> Message:
    text = (
        f":mag: I have no job {_code(typed, 40)}. Job ids are in each job's message (e.g. `1a2b3c4d`); "
        "`/lipsync list` shows yours. Finished jobs are kept a week."
    )
    return _message(text, [_section(text)])


def cancel_outcome(job: Job, outcome: str, asked_before: bool = False) -> Message:
    """What a cancel did, for the person who asked (the job's thread gets the reply as usual). `job` as it
    stands after the cancel; `asked_before`: it was being cancelled already when this one came."""
    ref = _code(short_id(job.id))
    label = _label(job.provider)
    by = f" (asked by {_mention(job.cancel_by)})" if job.cancel_by else ""
    if outcome == "pending" and asked_before:
        outcome = "being_cancelled"
    elif outcome == "over" and job.status is Status.CANCELLED:
        outcome = "already_cancelled"
    elif outcome == "over" and job.cancel_by and not job.status.final:
        outcome = "being_cancelled"  # its step has stopped it; the status follows with its reply
    text = {
        "cancelled": f":no_entry_sign: Cancelled job {ref}. It was never sent to {label}: nothing is "
        "charged.",
        "cancelled_at_provider": f":no_entry_sign: Cancelled job {ref}. {label} already had it and may "
        "charge for it; I stopped tracking it.",
        "pending": f":no_entry_sign: Cancelling job {ref}: I am sending it to {label} or checking on it "
        "right now, and stop as soon as that step ends. Its thread says how it ended.",
        "being_cancelled": f":information_source: Job {ref} is already being cancelled{by}: it stops as "
        "soon as its current step ends. Its thread says how it ended.",
        "already_cancelled": f":information_source: Job {ref} is already cancelled{by}: nothing more to "
        "do. Its thread says how it ended.",
        "over": f":information_source: Job {ref} has already ended ({_status_words(job)}): nothing to "
        "cancel.",
    }.get(outcome, f":mag: Job {ref} is gone.")
    return _message(text, [_section(text)])


def retry_started(old: Job, new_id: str, again: bool = False) -> Message:
    what = "Dubbing again" if again else "Retrying"
    text = f":repeat: {what} job {_code(short_id(old.id))} as job {_code(short_id(new_id))}."
    return _message(text, [_section(text)])


def already_retried(old: Job, new_id: str) -> Message:
    text = (
        f":ok_hand: Job {_code(short_id(old.id))} was already retried as job {_code(short_id(new_id))}: "
        "look for it in the channel (or use its own Retry)."
    )
    return _message(text, [_section(text)])


def cannot_retry(job: Job) -> Message:
    text = (
        f":information_source: Job {_code(short_id(job.id))} is {_code(job.status)}; only a failed or "
        "timed-out job can be retried."
    )
    return _message(text, [_section(text)])


def retry_note(old: Job, new_id: str, who: str, again: bool = False) -> Message:
    """In the old job's thread: where the new attempt is."""
    what = "dubbing it again" if again else "retrying it"
    text = f":repeat: {_mention(who)} is {what} as job {_code(short_id(new_id))}."
    return _message(text, [_context(text)])


def _status_words(job: Job) -> str:
    words = {
        Status.QUEUED: "queued",
        Status.PROCESSING: "processing",
        Status.SUCCEEDED: "done",
        Status.FAILED: "failed",
        Status.TIMED_OUT: "timed out",
        Status.CANCELLED: "cancelled",
    }[job.status]
    if job.status in (Status.QUEUED, Status.PROCESSING) and job.cancel_by:
        return f"{words}, being cancelled"
    if job.status in (Status.QUEUED, Status.PROCESSING) and job.queue_note:
        words += f" ({_escape(_shorten(job.queue_note, 60))})"
    return words


def _when(ms: int) -> str:
    return time.strftime("%b %d %H:%M UTC", time.gmtime(ms / 1000)) if ms else "—"


def _thread_link(job: Job, label: str = "thread", domain: str = "") -> str:
    """A link to the job's thread, built from what the job stores (no Slack call per job): Slack's own
    permalink form with the workspace's domain when known (a command says it), else slack.com's."""
    if not (_SLACK_ID.fullmatch(job.channel) and _TS.fullmatch(job.parent_ts)):
        return ""
    host = f"{domain}.slack.com" if _DOMAIN.fullmatch(domain) else "slack.com"
    ts = job.parent_ts.replace(".", "")
    return f" · <https://{host}/archives/{job.channel}/p{ts}|{label}>"


def _input(url: str, file: SlackFile | None) -> str:
    """One of a job's inputs, short: a shared file by its name (its URL is the provider's copy), a link by
    the name at the end of its path. A link too long for a list is named, not linked."""
    if file is not None:
        return _name(file)
    if not url:
        return "—"
    parts = urlsplit(url)
    name = _LABEL_UNSAFE.sub("_", unquote(PurePosixPath(parts.path).name or parts.hostname or "link"))
    if len(url) > INPUT_LINK_MAX:
        return f"{_code(name, INPUT_NAME_MAX)} (link too long to show)"
    return _link(url, _shorten(name, INPUT_NAME_MAX))


def _inputs(job: Job) -> str:
    return f":clapper: {_input(job.video_url, job.video)} · :speaker: {_input(job.audio_url, job.audio)}"


def job_status(job: Job, domain: str = "") -> Message:
    """`/lipsync status <job>`: one job in detail (for its requester or an admin: bot/requests/control.py)."""
    label = _label(job.provider)
    lines = [
        f"*Job {_code(short_id(job.id))}* · {_status_words(job)} · {_provider_model(job)}",
        f"Asked by {_mention(job.user)} {_when(job.created_ms)}{_thread_link(job, domain=domain)}",
    ]
    if job.video_url or job.audio_url or job.video or job.audio:
        lines.append(_inputs(job))
    lines.append(
        f"Playback {_code(job.playback_type)}"
        + (f" · {label} task {_code(job.task_id)}" if job.task_id else "")
    )
    if job.status is Status.SUCCEEDED:
        lines.append(
            f"Duration {_duration(job.duration_s)} · cost {cost_text(job.cost, job.cost_unit)} · "
            f"took {took_text(job.took_ms)}"
        )
    elif job.error or job.error_code:
        lines.append(f"Reason: {_code(job.error or job.error_code)}")
    if job.quote and job.status in (Status.QUEUED, Status.PROCESSING):
        waiting = " · waiting for your Dub it" if job.confirm_state == "asked" else ""
        lines.append(f"Quote about {cost_text(job.quote, job.quote_unit)}{waiting}")
    if job.cached_from:
        lines.append(f"From the cache: the result of job {_code(short_id(job.cached_from))}, at no cost")
    if job.retry_of:
        lines.append(f"Retry of job {_code(short_id(job.retry_of))}")
    blocks = [_section("\n".join(lines))]
    if job.status in (Status.QUEUED, Status.PROCESSING):
        blocks.append(_context(f"Cancel it with `/lipsync cancel {short_id(job.id)}`."))
    return _message(f"Job {short_id(job.id)}: {_status_words(job)}", blocks)


def _job_line(job: Job, domain: str = "") -> str:
    """One job in a list: its id, when, how it stands, where, what it cost, its inputs and links."""
    cost = f" · {cost_text(job.cost, job.cost_unit)}" if job.status is Status.SUCCEEDED else ""
    result = f" · {_link(job.result_url, 'result')}" if job.result_url else ""
    if len(job.result_url) > INPUT_LINK_MAX:
        result = " · result (link too long to show)"
    return (
        f"{_code(short_id(job.id))} {_when(job.created_ms)} · {_status_words(job)} · "
        f"{_label(job.provider)}{cost}{result}{_thread_link(job, domain=domain)}\n{_inputs(job)}"
    )


def job_list(jobs: Sequence[Job], page: int, total: int, page_size: int, domain: str = "") -> Message:
    """`/lipsync list [page]`: my recent jobs, newest first, one section each (each well within a
    section's 3,000 characters, whatever the links)."""
    if not jobs:
        text = ":inbox_tray: You have no jobs yet." if page == 1 else f":inbox_tray: There is no page {page}."
        return _message(text, [_section(text)])
    pages = max(1, -(-total // page_size))
    footer = f"Page {page} of {pages} · {total} job{'s' if total != 1 else ''}"
    if page < pages:
        footer += f" · next: `/lipsync list {page + 1}`"
    blocks = [_section("*Your recent jobs*"), *_job_sections(jobs, domain), _context(footer)]
    return _message(f"Your recent jobs (page {page} of {pages})", blocks)


def _job_sections(jobs: Sequence[Job], domain: str = "") -> list[Block]:
    """One section per job (at most LIST_JOBS_MAX), so that no job's links push another one out."""
    return [_section(_job_line(job, domain)) for job in jobs[:LIST_JOBS_MAX]]


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
    provider_options = [_option(p.name, p.label) for p in providers] or [_option(job.provider, job.provider)]
    initial_provider = next((o for o in provider_options if o["value"] == job.provider), provider_options[0])
    initial_playback = next(
        (o for o in playback_options if o["value"] == job.playback_type), playback_options[0]
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


def plain(mrkdwn: str) -> str:
    """Our own mrkdwn as plain text (for modal errors): no emoji codes, code marks or entities."""
    text = re.sub(r":[a-z_]+: ", "", mrkdwn).replace("`", "")
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def upload_skipped(reason: str) -> Message:
    """When the result video could not be put in the thread itself."""
    text = f":link: I couldn't put the video itself in this thread ({_code(reason)}); the link above works."
    return _message(text, [_context(text)])


MAX_HOME_BUDGETS = 30


@dataclass(frozen=True)
class AdminFacts:
    providers: list[tuple[str, str | None]]  # label, balance (None: not reported)
    in_flight: int
    failures_today: int  # -1: unknown


def home_view(
    user: str,
    jobs: Sequence[Job],
    total: int,
    costs: dict[str, Decimal],
    admin: AdminFacts | None,
    limits: Sequence[Limit] = (),
) -> dict[str, Any]:
    """The App Home tab."""
    blocks: list[Block] = [
        {"type": "header", "text": {"type": "plain_text", "text": "Lip-sync dubs"}},
        _section(
            "Dub a talking-head video: `/lipsync &lt;video_url&gt; &lt;audio_url&gt;`, or share a video and "
            "an audio file in a channel I'm in. `/lipsync help` for the options."
        ),
    ]
    spent = (
        " · ".join(cost_text(f"{amount:f}", unit) for unit, amount in sorted(costs.items())) or "nothing yet"
    )
    blocks.append(_section(f"*This month* ({_mention(user)}): {spent}"))
    if limits:
        lines = _budget_lines(limits)[:MAX_HOME_BUDGETS]
        blocks.append(_section(_fit("*Monthly budgets*\n" + "\n".join(lines), SECTION_TEXT_MAX)))
    if jobs:
        blocks += [_section("*Your recent jobs*"), *_job_sections(jobs)]
        if total > len(jobs):
            blocks.append(_context(f"{total - len(jobs)} older: `/lipsync list 2`"))
    else:
        blocks.append(_section("*Your recent jobs*\nNone yet."))
    if admin is not None:
        providers = "\n".join(
            f"• {_escape(label)}: {_escape(_shorten(balance, 80)) if balance else 'balance not reported'}"
            for label, balance in admin.providers
        )
        failures = "unknown" if admin.failures_today < 0 else f"{admin.failures_today:,}"
        blocks += [
            {"type": "divider"},
            _section(f"*For admins*\n{providers}"),
            _context(f"Jobs in flight: {admin.in_flight:,} · failed or timed out today: {failures}"),
        ]
    return {"type": "home", "blocks": blocks}


# ------------------------------------------------------------ money (bot/lanes/gate.py, bot/money/budgets.py)


def amount_text(amount: Decimal, unit: str) -> str:
    """An amount in a provider's unit, as people read it: "$1.25", "0.48 credits"."""
    shown = (
        amount.quantize(Decimal("0.01")) if amount == amount.quantize(Decimal("0.01")) else amount.normalize()
    )
    return cost_text(f"{shown:f}", unit)


def _length(seconds: str) -> str:
    try:
        value = Decimal(seconds)
    except ArithmeticError:
        return ""
    return f"{value.quantize(Decimal('0.1')):f} s"


def quote_prompt(
    job: Job, label: str, quote: Cost | None, threshold: Decimal, minutes: int, unknown: str = ""
) -> Message:
    """The private question before an expensive dub: Dub it / Cancel. `unknown` names what the bot could
    not learn ("the audio's length"): the quote is then an upper estimate, or with no quote at all (a
    provider without a price rule), the cost is unknown."""
    lengths = " and ".join(
        f"{what} {_length(value)}"
        for what, value in (("video", job.video_s), ("audio", job.audio_s))
        if value
    )
    above = f"the {amount_text(threshold, quote.unit if quote else job.quote_unit)} above which I ask first"
    if quote is None:
        text = (
            f":moneybag: {label} does not say what a dub costs before it is done, so I can't tell whether "
            f"this one costs more than {above}. Dub it?"
        )
    else:
        cost = amount_text(quote.amount, quote.unit)
        if unknown:
            said = f"may cost up to *{cost}* at {label} (an upper estimate: I couldn't learn {unknown})"
        else:
            said = f"should cost about *{cost}* at {label}" + (f" ({lengths})" if lengths else "")
        text = f":moneybag: This dub {said}, more than {above}. Dub it?"
    buttons = [
        {**_button("Dub it", ACTION_QUOTE_OK, job, "primary")},
        {**_button("Cancel", ACTION_QUOTE_CANCEL, job)},
    ]
    blocks = [
        _section(text),
        {"type": "actions", "block_id": f"quote:{short_id(job.id)}", "elements": buttons},
        _context(
            f"Job {_code(short_id(job.id))} · nothing is sent until you answer; this quote expires in "
            f"{minutes} minutes."
        ),
    ]
    return _message(text, blocks)


def quote_answered(job: Job, outcome: str) -> Message:
    """Replaces the private quote once it is answered (or can no longer be)."""
    ref = _code(short_id(job.id))
    text = {
        "now": f":white_check_mark: Dubbing it: job {ref}. The result will be in its thread.",
        "confirmed": f":white_check_mark: Dubbing it: job {ref}. The result will be in its thread.",
        "already": f":white_check_mark: Job {ref} is already on its way.",
        "cancelled": f":no_entry_sign: Cancelled job {ref}: nothing was sent or charged.",
        "over": f":information_source: Job {ref} can no longer be started from this quote (it expired or "
        "was cancelled). Run the command again for a new one.",
    }.get(outcome, f":mag: Job {ref} is gone.")
    return _message(text, [_section(text)])


def budget_refusal(limit: Limit, quote: Decimal | None, unit: str, unknown: str = "") -> str:
    """Plain words (escaped when shown) on a budget a dub would overdraw. `unknown` names what the bot
    could not learn: `quote` is then an upper estimate, or None when nothing bounds the cost."""
    whose = "this channel's" if limit.scope == "channel" else "your"
    left = f"{amount_text(limit.left, unit)} of {amount_text(limit.amount, unit)} left"
    if quote is None:
        return (
            f"I can't know what this dub costs before it is done ({unknown} is not published), and "
            f"{whose} monthly budget ({left}) must never be overdrawn."
        )
    if unknown:
        need = f"may need up to {amount_text(quote, unit)} (an upper estimate: I couldn't learn {unknown})"
    else:
        need = f"needs about {amount_text(quote, unit)}"
    return f"This dub {need}, and {whose} monthly budget has {left}."


def balance_refusal(label: str, left: Cost, quote: Cost) -> str:
    return (
        f"{label} has {amount_text(left.amount, left.unit)} left, and this dub needs about "
        f"{amount_text(quote.amount, quote.unit)}, so I didn't send it."
    )


def balance_low(label: str, left: Cost, threshold: Decimal) -> Message:
    """For the admins' channel, once per fall below the threshold."""
    text = (
        f":warning: {_escape(label)} has {amount_text(left.amount, left.unit)} left, below "
        f"{amount_text(threshold, left.unit)} (`BALANCE_WARN_BELOW`). Dubs that need more than what is left "
        "are refused before they are sent. Top up the account to keep dubbing."
    )
    return _message(text, [_section(text)])


def _scope(limit: Limit) -> str:
    return (
        f"<#{limit.id}>" if limit.scope == "channel" and _SLACK_ID.fullmatch(limit.id) else _mention(limit.id)
    )


def _budget_lines(limits: Sequence[Limit]) -> list[str]:
    return [
        f"• {_scope(b)}: {amount_text(b.spent, b.unit)} of {amount_text(b.amount, b.unit)} spent, "
        f"{amount_text(b.left, b.unit)} left"
        for b in sorted(limits, key=lambda b: (b.scope, b.id, b.unit))
    ]


def budgets_view(limits: Sequence[Limit], month: str, admin: bool) -> Message:
    """`/lipsync budget`: every budget of the workspace with this month's spend."""
    if limits:
        lines = _budget_lines(limits)
        body = (
            f"*Monthly budgets* ({_escape(month)}, UTC; quotes of running dubs count as spent)\n"
            + "\n".join(lines)
        )
    else:
        body = "*Monthly budgets*: none set; dubs are limited only by the providers' balances."
    how = (
        "Set one with `/lipsync budget #channel 50` or `/lipsync budget @person 20` (add a unit such as "
        "`USD` when several are in use); `/lipsync budget #channel off` removes it."
        if admin
        else "Workspace admins set them with `/lipsync budget`."
    )
    text = f"{body}\n{how}"
    return _message(text, [_section(_fit(body, SECTION_TEXT_MAX)), _context(how)])


def budget_set(scope: str, scope_id: str, unit: str, amount: Decimal | None, spent: Decimal) -> Message:
    limit = Limit(scope, scope_id, unit, amount or Decimal(0), spent)
    who = _scope(limit)
    if amount is None:
        text = f":white_check_mark: {who} has no monthly budget in {_escape(unit)} any more."
    else:
        text = (
            f":white_check_mark: {who} now has a monthly budget of {amount_text(amount, unit)}; "
            f"{amount_text(spent, unit)} spent so far this month."
        )
    return _message(text, [_section(text)])


def budget_usage(reason: str) -> Message:
    text = (
        f":warning: {_escape(reason)} Use `/lipsync budget #channel 50`, `/lipsync budget @person 20` "
        "(a unit such as `credits` or `USD` may follow the amount), `/lipsync budget #channel off`, or "
        "`/lipsync budget` to see them."
    )
    return _message(text, [_section(text)])


def admins_only() -> Message:
    text = ":lock: Only workspace admins can set budgets. `/lipsync budget` shows them."
    return _message(text, [_section(text)])
