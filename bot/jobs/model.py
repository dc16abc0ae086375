"""What the bot knows about one lip-sync job, as a few typed parts.

  Job.id, Job.status  the job's id (its Redis key) and where it stands overall
  identity   who asked, from where, and where to answer
  inputs     what to dub: a typed union, one class per kind of job (today an audio track)
  order      which provider makes it (and a compare's group of providers), with which model
  progress   the steps' bookkeeping: the provider's task, the create in doubt, rate turns, retries
  money      what the gate learnt before paying: lengths, quote, confirmation, result cache
  posts      the job's message, its reply and a compare's summary, each posted once (PostKind)
  upload     the result video put into the thread
  result     how it ended: the result's links and facts, or the error

States are enums (an enum member where there is "nothing yet"), flags are booleans, and what is not known
is None. Exact decimals (lengths, quote, cost) stay the text they were made from (the provider's own, or
`f"{Decimal:f}"`): shown and stored exactly as they came (a Decimal would print "1E-7" for "0.0000001"),
and parsed to Decimal only where money is counted (bot/lanes/gate.py `_decimal`), which also turns a
provider's odd text into "unknown" instead of an unreadable job.
How a job is stored (a compact flat Redis hash with the field names of older versions) is bot.jobs.codec's
business alone: nothing else names a hash field.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from enum import Enum, StrEnum

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


class PostKind(StrEnum):
    """The messages a job posts once each (bot/lanes/posting.py); the value is their Slack metadata kind."""

    PARENT = "parent"  # the job's own message in the channel; every reply goes in its thread
    REPLY = "reply"  # the one result reply
    SUMMARY = "summary"  # a compare's table, posted by the job that ends the group


class CreateState(StrEnum):
    """The provider create: `attempted` means a create may have reached the provider (recover it first)."""

    NONE = ""
    ATTEMPTED = "attempted"


class Confirmation(StrEnum):
    NOT_ASKED = ""
    ASKED = "asked"  # a private quote with Dub it / Cancel is out
    CONFIRMED = "confirmed"


class UploadState(StrEnum):
    """The result video into the thread (Slack's external upload)."""

    NOT_STARTED = ""
    SENT = "sent"  # bytes uploaded to `Upload.file_id`
    COMPLETING = "completing"  # files.completeUploadExternal called; reconcile with files.info
    POSTED = "posted"
    SKIPPED = "skipped"  # `Upload.note` says why the link must do


class NoCacheKey(Enum):
    UNKNOWABLE = "unknowable"  # the inputs' identity cannot be known: never looked up again


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


@dataclass(kw_only=True, slots=True)
class Identity:
    """Who asked, and where to answer."""

    team: str = ""
    channel: str = ""
    person: str = ""
    response_url: str = ""
    source: Source = Source.COMMAND
    source_ts: str = ""  # the person's message that shared the files; status reactions go on it
    # Jobs started by the same message share a group (one reaction for all of them); the jobs of a
    # compare have their lead's id as group.
    group: str = ""
    group_size: int = 0
    retry_of: str = ""  # the job this one retries or dubs again


@dataclass(kw_only=True, slots=True)
class Media:
    """One input: the link the provider reads, and the Slack file it came from (shared files). A shared
    file's link is what the provider's upload returned, or the bot's own signed media link, once hosted."""

    link: str = ""
    file: SlackFile | None = None


@dataclass(kw_only=True, slots=True)
class AudioTrack:
    """A video dubbed with an audio track."""

    video: Media = field(default_factory=Media)
    audio: Media = field(default_factory=Media)
    playback: str = "normal"

    @property
    def files(self) -> tuple[SlackFile, ...]:
        return tuple(f for f in (self.video.file, self.audio.file) if f is not None)


# What a job dubs: one class per kind of job, each with its entry in bot.jobs.codec's INPUT_KINDS.
Inputs = AudioTrack


@dataclass(kw_only=True, slots=True)
class ProviderOrder:
    provider: str = "jogg"
    compare_group: tuple[str, ...] = ()  # a compare's lead: the providers of its group, in order
    model: str = ""  # "" for providers without a model choice

    @property
    def providers(self) -> tuple[str, ...]:
        """The providers of the job's compare (just its own when it is not a compare's lead)."""
        return self.compare_group or (self.provider,)


@dataclass(kw_only=True, slots=True)
class Progress:
    created_ms: int = 0
    timeout_s: int = 0  # JOB_TIMEOUT_SECONDS when the job was accepted
    updated_ms: int = 0
    task_id: str = ""  # the provider's task id
    create: CreateState = CreateState.NONE
    create_attempt_ms: int = 0  # Redis time of the last create call; no new create until it has settled
    create_lookups: int = 0  # lookups that found nothing since that create, for their backoff
    delivered: str = ""  # the task's end as a signed webhook stated it (providers.base.task_to_text)
    post_slot_ms: int = 0  # Redis time of a provider POST slot reserved for this job (bot/lanes/ratelimit.py)
    queue_note: str = ""  # while it waits its turn at the provider: "3rd in line, about 40 s"
    queue_note_ms: int = 0  # when the job's message last showed it (updates are coalesced)
    update_slot_ms: int = 0  # Redis time of a chat.update slot reserved for the job's final message
    polls: int = 0
    errors: int = 0  # consecutive transient errors at the current step
    last_error: str = ""
    cancel_by: str = ""  # who asked to cancel (set while a step may still be running; the step ends it)


@dataclass(kw_only=True, slots=True)
class Money:
    """What the gate (bot/lanes/gate.py) learnt before anything is paid: what the inputs are, what the dub
    should cost, whether its requester agreed, and whether an earlier result answers it."""

    checked: bool = False  # the gate has let the job through (links checked, budget reserved)
    video_s: str | None = None  # input lengths, exact decimal text; None when unknown
    audio_s: str | None = None
    quote: str | None = None  # the expected cost, exact decimal text, in `quote_unit`; None: cannot be known
    quote_unit: str = ""
    confirmation: Confirmation = Confirmation.NOT_ASKED
    confirm_ms: int = 0  # when the quote was asked (it expires)
    cache_key: str | NoCacheKey | None = None  # the inputs' identity in the result cache, once known
    no_cache: bool = False  # "Dub again anyway": never answered from the cache
    cached_from: str = ""  # the earlier job whose result answers this one (at no cost)
    cached_ms: int = 0  # when that earlier result was made

    @property
    def lookup_key(self) -> str | None:
        """The result cache's key for the job, when it is known."""
        return self.cache_key if isinstance(self.cache_key, str) and self.cache_key else None


@dataclass(kw_only=True, slots=True)
class Post:
    state: PostState = PostState.NONE
    ts: str = ""
    attempt_ms: int = 0  # Redis time of the last attempt, to look for a post that may have gone out


@dataclass(kw_only=True, slots=True)
class Posts:
    parent: Post = field(default_factory=Post)  # the bot's message in the channel
    reply: Post = field(default_factory=Post)
    summary: Post = field(default_factory=Post)  # a compare's table

    def __getitem__(self, kind: PostKind) -> Post:
        return {PostKind.PARENT: self.parent, PostKind.REPLY: self.reply, PostKind.SUMMARY: self.summary}[
            kind
        ]


@dataclass(kw_only=True, slots=True)
class Upload:
    state: UploadState = UploadState.NOT_STARTED
    file_id: str = ""
    note: str = ""  # why the link must do (skipped)


@dataclass(kw_only=True, slots=True)
class Result:
    url: str = ""
    cover_url: str = ""
    duration_s: str | None = None  # exact decimal text as the provider sent it; None when not sent
    cost: str | None = None  # exact decimal text, in `cost_unit`; None when unknown
    cost_unit: str = ""  # the provider's own unit: credits, USD
    took_ms: int = 0  # from the request to the result
    error_code: str = ""  # provider business code, or our own reason (`timeout`, `unreachable`, ...)
    error: str = ""  # provider's failure text
    error_file: str = ""  # the Slack file a transfer error is about


@dataclass(kw_only=True)
class Job:
    id: str
    status: Status = Status.QUEUED
    identity: Identity = field(default_factory=Identity)
    inputs: Inputs = field(default_factory=AudioTrack)
    order: ProviderOrder = field(default_factory=ProviderOrder)
    progress: Progress = field(default_factory=Progress)
    money: Money = field(default_factory=Money)
    posts: Posts = field(default_factory=Posts)
    upload: Upload = field(default_factory=Upload)
    result: Result = field(default_factory=Result)
    extra: dict[str, str] = field(default_factory=dict)  # unknown hash fields, kept on round trips
    # What bot.jobs.codec remembers of the job as Redis holds it, to write only what a step changed.
    stored: object = field(default=None, repr=False, compare=False)
