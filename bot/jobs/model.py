"""What the bot knows about one lip-sync job, as stored in its Redis hash."""

from __future__ import annotations

import dataclasses
import secrets
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from bot.jobs.files import SlackFile


class Status(StrEnum):
    QUEUED = "queued"  # accepted; parent message and provider submission still to do
    PROCESSING = "processing"  # the provider has the task; we poll it
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"  # stopped by its requester (or an admin): never submitted, or no longer tracked

    @property
    def final(self) -> bool:
        return self in (Status.SUCCEEDED, Status.FAILED, Status.TIMED_OUT, Status.CANCELLED)


class PostState(StrEnum):
    """Where a Slack post stands; `attempted` means "maybe posted": reconcile before posting again."""

    NONE = ""
    ATTEMPTED = "attempted"
    POSTED = "posted"
    SKIPPED = "skipped"  # nowhere to post (the bot cannot reach the channel)


class Source(StrEnum):
    COMMAND = "command"  # /lipsync with two links; the bot posts the job's own message in the channel
    FILES = "files"  # files shared in Slack; the thread of the sharing message holds the reply
    COMPARE = "compare"  # one of the jobs of `/lipsync compare`: they share one message (the group's lead's)
    TERMINAL = "terminal"  # `lipsync-bot dub`: nothing goes to Slack; the terminal shows progress and result


def new_job_id() -> str:
    # Time-ordered, so jobs that wait for the same instant keep their arrival order in a ZSET; the last
    # 8 characters are random and are the short id people see and type (`short_id`).
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(4)}"


SHORT_ID_LENGTH = 8


def short_id(job_id: str) -> str:
    """What users see of a job id: its random tail, short enough to copy and type."""
    return job_id[-SHORT_ID_LENGTH:]


@dataclass
class Job:
    id: str
    # Who asked, and where to answer.
    team_id: str = ""
    channel: str = ""
    user: str = ""
    response_url: str = ""
    source: Source = Source.COMMAND
    source_ts: str = ""  # the user's message that shared the files; status reactions go on it
    # Jobs started by the same message share a group (one reaction for all of them); the jobs of a
    # compare have their lead's id as group.
    group: str = ""
    group_size: int = 0
    # What to make, and where. For shared files the URLs are what the provider's upload returned (or
    # the bot's own signed media links), filled in once re-hosted.
    provider: str = "jogg"
    compare_with: str = ""  # a compare's lead: the providers of its group, comma-separated, in order
    model: str = ""  # "" for providers without a model choice
    video_url: str = ""
    audio_url: str = ""
    playback_type: str = "normal"
    video_file: str = ""  # SlackFile as JSON, for jobs from shared files
    audio_file: str = ""
    # Progress.
    status: Status = Status.QUEUED
    created_ms: int = 0
    timeout_s: int = 0  # JOB_TIMEOUT_SECONDS when the job was accepted
    updated_ms: int = 0
    parent_ts: str = ""  # the bot's message in the channel; every reply goes in its thread
    parent_state: PostState = PostState.NONE
    parent_attempt_ms: int = 0
    task_id: str = ""  # the provider's task id
    delivered: str = ""  # the task's end as a signed webhook stated it (providers.base.task_to_text)
    submit_state: PostState = PostState.NONE  # `attempted`: a create may have reached the provider
    submit_attempt_ms: int = 0  # Redis time of the last create call; no new create until it has settled
    submit_lookups: int = 0  # lookups that found nothing since that create, for their backoff
    post_slot_ms: int = 0  # Redis time of a provider POST slot reserved for this job (bot/lanes/ratelimit.py)
    queue_note: str = ""  # while it waits its turn at the provider: "3rd in line, about 40 s"
    queue_note_ms: int = 0  # when the job's message last showed it (updates are coalesced)
    update_slot_ms: int = 0  # Redis time of a chat.update slot reserved for the job's final message
    polls: int = 0
    errors: int = 0  # consecutive transient errors at the current step
    last_error: str = ""
    # Outcome.
    result_url: str = ""
    cover_url: str = ""
    duration_s: str = ""  # exact decimal text as the provider sent it
    cost: str = ""  # exact decimal text, in `cost_unit`; "" when unknown
    cost_unit: str = ""  # the provider's own unit: credits, USD
    took_ms: int = 0  # from the request to the result
    error_code: str = ""  # provider business code, or our own reason (`timeout`, `unreachable`, ...)
    error: str = ""  # provider's failure text
    error_file: str = ""  # the Slack file a transfer error is about
    cancel_by: str = ""  # who asked to cancel (set while a step may still be running; the step ends it)
    retry_of: str = ""  # the job this one retries or dubs again
    # Money (bot/lanes/gate.py), before anything is paid: what the inputs are, what the dub should cost,
    # whether its requester agreed, and whether an earlier result answers it.
    checked: int = 0  # 1 once the gate has let the job through (links checked, budget reserved)
    video_s: str = ""  # input lengths, exact decimal text; "" when unknown
    audio_s: str = ""
    quote: str = ""  # the expected cost, exact decimal text, in `quote_unit`; "" when it cannot be known
    quote_unit: str = ""
    confirm_state: str = ""  # "asked": a private quote with Dub it / Cancel is out; then "confirmed"
    confirm_ms: int = 0  # when the quote was asked (it expires)
    cache_key: str = ""  # the inputs' identity in the result cache, once known
    no_cache: int = 0  # 1: "Dub again anyway", never answered from the cache
    cached_from: str = ""  # the earlier job whose result answers this one (at no cost)
    cached_ms: int = 0  # when that earlier result was made
    reply_state: PostState = PostState.NONE
    reply_ts: str = ""
    reply_attempt_ms: int = 0
    summary_state: PostState = PostState.NONE  # a compare's table, posted by the job that ends the group
    summary_ts: str = ""
    summary_attempt_ms: int = 0
    # The result video uploaded into the thread (Slack's external upload): "" → "sent" (bytes uploaded to
    # `upload_file_id`) → "completing" (files.completeUploadExternal called; reconcile with files.info) →
    # "posted"; or "skipped" with `upload_note` saying why the link must do.
    upload_state: str = ""
    upload_file_id: str = ""
    upload_note: str = ""
    extra: dict[str, str] = field(default_factory=dict)  # unknown fields, kept on round trips

    def to_fields(self) -> dict[str, str]:
        out = {f.name: str(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "extra"}
        return {**self.extra, **out}

    @classmethod
    def from_fields(cls, raw: dict[str, str]) -> Job:
        values: dict[str, object] = {}
        extra: dict[str, str] = {}
        for key, value in raw.items():
            convert = _CONVERTERS.get(key)
            if convert is None:
                extra[key] = value
            else:
                values[key] = convert(value)
        return cls(**values, extra=extra)  # type: ignore[arg-type]

    @property
    def video(self) -> SlackFile | None:
        return SlackFile.from_json(self.video_file) if self.video_file else None

    @property
    def audio(self) -> SlackFile | None:
        return SlackFile.from_json(self.audio_file) if self.audio_file else None


def _read_int(value: str) -> int:
    return int(value or 0)


# Declared type → how to read a field of that type from its Redis text.
_READERS: dict[object, Callable[[str], object]] = {
    int: _read_int,
    str: str,
    Status: Status,
    Source: Source,
    PostState: PostState,
}

# Field name → how to read it; worked out once from the declared types, since every claimed job is read.
_CONVERTERS: dict[str, Callable[[str], object]] = {
    name: _READERS[kind] for name, kind in typing.get_type_hints(Job).items() if name != "extra"
}
