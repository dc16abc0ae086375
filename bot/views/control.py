"""The answers to steering one's jobs: `/lipsync list` and `status`, cancel and retry."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit

from bot.jobs.files import SlackFile
from bot.jobs.model import Confirmation, Job, Status, short_id
from bot.views.formats import _duration, _label, _name, _provider_model, cost_text, took_text
from bot.views.text import (
    _SLACK_ID,
    Block,
    Message,
    _code,
    _context,
    _escape,
    _link,
    _mention,
    _message,
    _section,
    _shorten,
)

# A job in `/lipsync list`: its two inputs and its result linked within this each, so that a job's section
# stays far below SECTION_TEXT_MAX whatever the links; longer ones are named instead.
INPUT_LINK_MAX = 700
INPUT_NAME_MAX = 40
LIST_JOBS_MAX = 40  # sections in one list, within a message's 50 blocks

# A message ts, and a workspace's domain (the `acme` of acme.slack.com), as they may go into a link.
_TS = re.compile(r"\d{1,12}\.\d{1,8}")
_DOMAIN = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# What a link's label keeps of a file name: the rest could end the link or format the text.
_LABEL_UNSAFE = re.compile(r"[^\w.\-]+")


def store_unavailable_now() -> Message:
    """A job action (cancel, retry, a listing) that could not reach the store: nothing changed."""
    text = (
        ":warning: I can't reach my job database right now, so nothing changed. Please try again in a minute."
    )
    return _message(text, [_section(text)])


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
    label = _label(job.order.provider)
    by = f" (asked by {_mention(job.progress.cancel_by)})" if job.progress.cancel_by else ""
    if outcome == "pending" and asked_before:
        outcome = "being_cancelled"
    elif outcome == "over" and job.status is Status.CANCELLED:
        outcome = "already_cancelled"
    elif outcome == "over" and job.progress.cancel_by and not job.status.final:
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
    if job.status in (Status.QUEUED, Status.PROCESSING) and job.progress.cancel_by:
        return f"{words}, being cancelled"
    if job.status in (Status.QUEUED, Status.PROCESSING) and job.progress.queue_note:
        words += f" ({_escape(_shorten(job.progress.queue_note, 60))})"
    return words


def _when(ms: int) -> str:
    return time.strftime("%b %d %H:%M UTC", time.gmtime(ms / 1000)) if ms else "—"


def _thread_link(job: Job, label: str = "thread", domain: str = "") -> str:
    """A link to the job's thread, built from what the job stores (no Slack call per job): Slack's own
    permalink form with the workspace's domain when known (a command says it), else slack.com's."""
    if not (_SLACK_ID.fullmatch(job.identity.channel) and _TS.fullmatch(job.posts.parent.ts)):
        return ""
    host = f"{domain}.slack.com" if _DOMAIN.fullmatch(domain) else "slack.com"
    ts = job.posts.parent.ts.replace(".", "")
    return f" · <https://{host}/archives/{job.identity.channel}/p{ts}|{label}>"


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
    video, audio = job.inputs.video, job.inputs.audio
    return f":clapper: {_input(video.link, video.file)} · :speaker: {_input(audio.link, audio.file)}"


def job_status(job: Job, domain: str = "") -> Message:
    """`/lipsync status <job>`: one job in detail (for its requester or an admin: bot/requests/control.py)."""
    label = _label(job.order.provider)
    lines = [
        f"*Job {_code(short_id(job.id))}* · {_status_words(job)} · {_provider_model(job)}",
        f"Asked by {_mention(job.identity.person)} {_when(job.progress.created_ms)}"
        f"{_thread_link(job, domain=domain)}",
    ]
    if job.inputs.video.link or job.inputs.audio.link or job.inputs.video.file or job.inputs.audio.file:
        lines.append(_inputs(job))
    lines.append(
        f"Playback {_code(job.inputs.playback)}"
        + (f" · {label} task {_code(job.progress.task_id)}" if job.progress.task_id else "")
    )
    if job.status is Status.SUCCEEDED:
        lines.append(
            f"Duration {_duration(job.result.duration_s)} · "
            f"cost {cost_text(job.result.cost, job.result.cost_unit)} · "
            f"took {took_text(job.result.took_ms)}"
        )
    elif job.result.error or job.result.error_code:
        lines.append(f"Reason: {_code(job.result.error or job.result.error_code)}")
    if job.money.quote and job.status in (Status.QUEUED, Status.PROCESSING):
        waiting = " · waiting for your Dub it" if job.money.confirmation is Confirmation.ASKED else ""
        lines.append(f"Quote about {cost_text(job.money.quote, job.money.quote_unit)}{waiting}")
    if job.money.cached_from:
        lines.append(
            f"From the cache: the result of job {_code(short_id(job.money.cached_from))}, at no cost"
        )
    if job.identity.retry_of:
        lines.append(f"Retry of job {_code(short_id(job.identity.retry_of))}")
    blocks = [_section("\n".join(lines))]
    if job.status in (Status.QUEUED, Status.PROCESSING):
        blocks.append(_context(f"Cancel it with `/lipsync cancel {short_id(job.id)}`."))
    return _message(f"Job {short_id(job.id)}: {_status_words(job)}", blocks)


def _job_line(job: Job, domain: str = "") -> str:
    """One job in a list: its id, when, how it stands, where, what it cost, its inputs and links."""
    cost = f" · {cost_text(job.result.cost, job.result.cost_unit)}" if job.status is Status.SUCCEEDED else ""
    result = f" · {_link(job.result.url, 'result')}" if job.result.url else ""
    if len(job.result.url) > INPUT_LINK_MAX:
        result = " · result (link too long to show)"
    return (
        f"{_code(short_id(job.id))} {_when(job.progress.created_ms)} · {_status_words(job)} · "
        f"{_label(job.order.provider)}{cost}{result}{_thread_link(job, domain=domain)}\n{_inputs(job)}"
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
