"""The one place that knows how a job is stored: a compact flat Redis hash, field name → text.

The field names and value encodings are those every earlier version wrote (a job stored by an older bot
reads back and finishes), so they stay flat and short: enums as their values, flags as "1"/"0", numbers in
decimal, a shared file as its JSON, a compare's providers comma-separated, an unknowable cache key as "-".
Unknown fields are kept in `Job.extra` and written back untouched.

A job read from Redis remembers what it read (`Job.stored`); a write sends only the fields whose encoding
changed since (`changes`), so what other actors wrote meanwhile (a cancel's `cancel_by`, a click's
confirmation) is never overwritten by a step that did not change it. Lua scripts and store methods that
read a field by name take the name from here (the constants below).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from operator import attrgetter
from typing import Any

from bot.jobs.files import SlackFile
from bot.jobs.model import (
    AudioTrack,
    Confirmation,
    CreateState,
    Inputs,
    Job,
    NoCacheKey,
    PostKind,
    PostState,
    Source,
    Status,
    UploadState,
)

# Field names that scripts and store methods use (the rest live in the tables below only).
STATUS = "status"
CANCEL_BY = "cancel_by"
CREATE_STATE = "submit_state"
CONFIRMATION = "confirm_state"
CREATED_MS = "created_ms"
UPDATED_MS = "updated_ms"
ERRORS = "errors"
POST_SLOT_MS = "post_slot_ms"
DELIVERED = "delivered"
TASK_ID = "task_id"
ID = "id"


class Moment(Enum):
    """A time a mark takes from Redis (`Lanes.update(stamp=...)`), not from the process's clock."""

    PARENT_ATTEMPT = "parent_attempt_ms"
    REPLY_ATTEMPT = "reply_attempt_ms"
    SUMMARY_ATTEMPT = "summary_attempt_ms"
    CREATE_ATTEMPT = "submit_attempt_ms"
    QUOTE_ASKED = "confirm_ms"

    @staticmethod
    def post_attempt(kind: PostKind) -> Moment:
        return Moment(f"{kind.value}_attempt_ms")


@dataclass(frozen=True)
class Kind:
    """How one type of value reads and writes as hash text."""

    encode: Callable[[Any], str]
    decode: Callable[[str], Any]


def _read_int(value: str) -> int:
    return int(value or 0)


def _enum(cls: type[Enum]) -> Kind:
    return Kind(encode=lambda v: str(v.value), decode=cls)


def _read_cache_key(value: str) -> str | NoCacheKey | None:
    return NoCacheKey.UNKNOWABLE if value == "-" else value or None


def _write_cache_key(value: str | NoCacheKey | None) -> str:
    return "-" if value is NoCacheKey.UNKNOWABLE else str(value or "")


TEXT = Kind(encode=str, decode=str)
INT = Kind(encode=str, decode=_read_int)
FLAG = Kind(encode=lambda v: "1" if v else "0", decode=lambda v: _read_int(v) != 0)
FILE = Kind(encode=lambda v: v.to_json() if v else "", decode=lambda v: SlackFile.from_json(v) if v else None)
NAMES = Kind(encode=",".join, decode=lambda v: tuple(v.split(",")) if v else ())
CACHE_KEY = Kind(encode=_write_cache_key, decode=_read_cache_key)
DECIMAL = Kind(encode=lambda v: v or "", decode=lambda v: v or None)  # exact decimal text; "" while unknown


class Spec:
    """One hash field: its name, where its value lives ("identity.team", from the job or its inputs), and
    its kind. The path is resolved once: every claimed job is read and written through these."""

    def __init__(self, name: str, *, path: str, kind: Kind) -> None:
        self.name, self.path, self.kind = name, path, kind
        self.owner, _, self.attr = path.rpartition(".")
        self.part: Callable[[Any], Any] = attrgetter(self.owner) if self.owner else _itself

    def set(self, root: object, value: Any) -> None:
        setattr(self.part(root), self.attr, value)


def _itself(root: object) -> object:
    return root


def _specs(kind: Kind, *pairs: tuple[str, str]) -> list[Spec]:
    return [Spec(name, path=path, kind=kind) for name, path in pairs]


# Every field but the inputs, in the order older versions wrote them.
FIELDS: tuple[Spec, ...] = (
    *_specs(TEXT, (ID, "id")),
    *_specs(TEXT, ("team_id", "identity.team"), ("channel", "identity.channel"), ("user", "identity.person")),
    *_specs(TEXT, ("response_url", "identity.response_url")),
    Spec("source", path="identity.source", kind=_enum(Source)),
    *_specs(TEXT, ("source_ts", "identity.source_ts"), ("group", "identity.group")),
    *_specs(INT, ("group_size", "identity.group_size")),
    *_specs(TEXT, ("provider", "order.provider")),
    Spec("compare_with", path="order.compare_group", kind=NAMES),
    *_specs(TEXT, ("model", "order.model")),
    Spec(STATUS, path="status", kind=_enum(Status)),
    *_specs(INT, (CREATED_MS, "progress.created_ms"), ("timeout_s", "progress.timeout_s")),
    *_specs(INT, (UPDATED_MS, "progress.updated_ms")),
    *_specs(TEXT, ("parent_ts", "posts.parent.ts")),
    Spec("parent_state", path="posts.parent.state", kind=_enum(PostState)),
    *_specs(INT, ("parent_attempt_ms", "posts.parent.attempt_ms")),
    *_specs(TEXT, (TASK_ID, "progress.task_id"), (DELIVERED, "progress.delivered")),
    Spec(CREATE_STATE, path="progress.create", kind=_enum(CreateState)),
    *_specs(
        INT,
        ("submit_attempt_ms", "progress.create_attempt_ms"),
        ("submit_lookups", "progress.create_lookups"),
    ),
    *_specs(INT, (POST_SLOT_MS, "progress.post_slot_ms")),
    *_specs(TEXT, ("queue_note", "progress.queue_note")),
    *_specs(INT, ("queue_note_ms", "progress.queue_note_ms"), ("update_slot_ms", "progress.update_slot_ms")),
    *_specs(INT, ("polls", "progress.polls"), (ERRORS, "progress.errors")),
    *_specs(TEXT, ("last_error", "progress.last_error")),
    *_specs(TEXT, ("result_url", "result.url"), ("cover_url", "result.cover_url")),
    *_specs(DECIMAL, ("duration_s", "result.duration_s"), ("cost", "result.cost")),
    *_specs(TEXT, ("cost_unit", "result.cost_unit")),
    *_specs(INT, ("took_ms", "result.took_ms")),
    *_specs(TEXT, ("error_code", "result.error_code"), ("error", "result.error")),
    *_specs(TEXT, ("error_file", "result.error_file")),
    *_specs(TEXT, (CANCEL_BY, "progress.cancel_by"), ("retry_of", "identity.retry_of")),
    Spec("checked", path="money.checked", kind=FLAG),
    *_specs(DECIMAL, ("video_s", "money.video_s"), ("audio_s", "money.audio_s"), ("quote", "money.quote")),
    *_specs(TEXT, ("quote_unit", "money.quote_unit")),
    Spec(CONFIRMATION, path="money.confirmation", kind=_enum(Confirmation)),
    *_specs(INT, ("confirm_ms", "money.confirm_ms")),
    Spec("cache_key", path="money.cache_key", kind=CACHE_KEY),
    Spec("no_cache", path="money.no_cache", kind=FLAG),
    *_specs(TEXT, ("cached_from", "money.cached_from")),
    *_specs(INT, ("cached_ms", "money.cached_ms")),
    *(
        spec
        for kind in PostKind
        if kind is not PostKind.PARENT
        for spec in (
            Spec(f"{kind.value}_state", path=f"posts.{kind.value}.state", kind=_enum(PostState)),
            Spec(f"{kind.value}_ts", path=f"posts.{kind.value}.ts", kind=TEXT),
            Spec(f"{kind.value}_attempt_ms", path=f"posts.{kind.value}.attempt_ms", kind=INT),
        )
    ),
    Spec("upload_state", path="upload.state", kind=_enum(UploadState)),
    *_specs(TEXT, ("upload_file_id", "upload.file_id"), ("upload_note", "upload.note")),
)


@dataclass(frozen=True)
class InputKind:
    """How one kind of input is stored: its class and its fields (paths relative to the inputs)."""

    cls: type[Inputs]
    fields: tuple[Spec, ...]


# The input kinds, by the value of their `input_kind` field; the audio track, the first kind, writes none
# (jobs stored before there were kinds are audio tracks). A new kind of job: its class in bot.jobs.model's
# `Inputs` union and one entry here.
INPUT_KIND = "input_kind"
INPUT_KINDS: Mapping[str, InputKind] = {
    "": InputKind(
        cls=AudioTrack,
        fields=(
            Spec("video_url", path="video.link", kind=TEXT),
            Spec("audio_url", path="audio.link", kind=TEXT),
            Spec("playback_type", path="playback", kind=TEXT),
            Spec("video_file", path="video.file", kind=FILE),
            Spec("audio_file", path="audio.file", kind=FILE),
        ),
    ),
}
_KIND_OF: Mapping[type[Inputs], str] = {entry.cls: name for name, entry in INPUT_KINDS.items()}

_BY_NAME: Mapping[str, Spec] = {spec.name: spec for spec in FIELDS}
_INPUT_NAMES = frozenset({INPUT_KIND, *(s.name for e in INPUT_KINDS.values() for s in e.fields)})

# Dropped when a job ends (its reply sent, or skipped): the private reply URL (dead after 30 minutes), the
# result and cover links (in the reply, and the video itself in the thread; providers' signed links
# expire), the result cache's key (the cache holds the result by then), a webhook's delivered result (the
# job's own fields hold it). The shared files' descriptions stay: Retry and Dub again of a shared-files job
# start from them (bench/memory_jobs.py measures what a job keeps).
FINISHED_DROPS = ("response_url", "result_url", "cover_url", "cache_key", DELIVERED)
# Also dropped then: the steps' own bookkeeping, which only served the post-once protocol, rate turns, the
# gate and backoff while the job moved (nothing reads it once the job has ended), and its id (the key holds
# it: bot.jobs.records reads it from there).
FINISHED_BOOKKEEPING = (
    ID,
    "parent_attempt_ms",
    "submit_attempt_ms",
    "reply_attempt_ms",
    "summary_attempt_ms",
    "submit_lookups",
    POST_SLOT_MS,
    "queue_note",
    "queue_note_ms",
    "update_slot_ms",
    "checked",
    "confirm_ms",
)
# Number (and flag) fields whose default is "0": a 0 reads back the same from an absent field, so an ended
# job drops it.
ZERO_DEFAULTS = tuple(s.name for s in FIELDS if s.kind in (INT, FLAG))
# What the poll step (and the worker after a bug in it) reads of a job: the poll lane is claimed with only
# these, since reading and parsing whole hashes was a tenth of a poll's CPU. Add a field here before
# reading it in bot/lanes/poll.py.
POLL_FIELDS = (CREATED_MS, TASK_ID, "polls", "errors", "provider", "model", CANCEL_BY, DELIVERED)


@dataclass(frozen=True)
class Layout:
    """Every field of a job with one kind of inputs, and one getter that reads all their values at once
    (every claimed job is read and written: a walk of the paths one by one cost several times more)."""

    kind: str  # the value of its `input_kind` field ("" for the audio track)
    fields: tuple[tuple[str, Callable[[Any], str]], ...]  # name, encode; in the getter's order
    values: Callable[[Job], tuple[Any, ...]]
    parts: tuple[tuple[int, int], ...]  # the getter's values of each part: a write compares part by part
    index: Mapping[str, int]  # each field's place in the getter's values


def _layout(kind: str, entry: InputKind) -> Layout:
    specs = sorted(
        (*FIELDS, *(Spec(s.name, path=f"inputs.{s.path}", kind=s.kind) for s in entry.fields)),
        key=lambda s: s.path.rpartition(".")[0],
    )
    owners = [s.path.rpartition(".")[0] for s in specs]
    starts = [i for i, owner in enumerate(owners) if i == 0 or owner != owners[i - 1]]
    return Layout(
        kind=kind,
        fields=tuple((s.name, s.kind.encode) for s in specs),
        values=attrgetter(*(s.path for s in specs)),
        parts=tuple(zip(starts, [*starts[1:], len(specs)], strict=True)),
        index={s.name: i for i, s in enumerate(specs)},
    )


_LAYOUTS: Mapping[type[Inputs], Layout] = {entry.cls: _layout(n, entry) for n, entry in INPUT_KINDS.items()}
_INPUTS_BY_NAME = {entry.cls: {spec.name: spec for spec in entry.fields} for entry in INPUT_KINDS.values()}


@dataclass
class Stored:
    """What the codec remembers of a job as Redis holds it: the fields read or written, and the job's
    values as read or last written (compared at a write, so that only what a step changed is encoded)."""

    raw: dict[str, str]
    seen: tuple[Any, ...] = ()
    compared: tuple[Any, ...] = ()  # the values `changes` last encoded from: what `saved` then has written


def to_fields(job: Job) -> dict[str, str]:
    """The job's whole hash (unknown fields included)."""
    out = dict(job.extra)
    layout = _LAYOUTS[type(job.inputs)]
    if layout.kind:
        out[INPUT_KIND] = layout.kind
    for (name, encode), value in zip(layout.fields, layout.values(job), strict=True):
        out[name] = encode(value)
    return out


def from_fields(raw: Mapping[str, str]) -> Job:
    """A job from its hash (or the part of it that was read: the rest keeps its defaults). It remembers
    what it read, for `changes`."""
    entry = INPUT_KINDS.get(raw.get(INPUT_KIND, ""))
    if entry is None:
        raise ValueError(f"unknown input kind {raw.get(INPUT_KIND)!r}")
    job = Job(id="", inputs=entry.cls())
    inputs_by_name = _INPUTS_BY_NAME[entry.cls]
    for name, value in raw.items():
        spec = _BY_NAME.get(name)
        if spec is not None:  # Spec.set, inlined: every field of every claimed job passes here
            setattr(spec.part(job), spec.attr, spec.kind.decode(value))
        elif (input_spec := inputs_by_name.get(name)) is not None:
            setattr(input_spec.part(job.inputs), input_spec.attr, input_spec.kind.decode(value))
        elif name not in _INPUT_NAMES:
            job.extra[name] = value
    job.stored = Stored(raw=dict(raw), seen=_LAYOUTS[entry.cls].values(job))
    return job


def changes(job: Job) -> dict[str, str]:
    """The fields whose encoding changed since the job was read or last written (a field Redis does not
    hold, or that was not read, counts as at its default). Only the values a step changed are encoded."""
    stored = job.stored if isinstance(job.stored, Stored) else Stored(raw={})
    layout = _LAYOUTS[type(job.inputs)]
    values = stored.compared = layout.values(job)
    seen = stored.seen if len(stored.seen) == len(values) else (_UNSEEN,) * len(values)
    raw, defaults, out = stored.raw, _DEFAULTS, {}
    if layout.kind and raw.get(INPUT_KIND) != layout.kind:
        out[INPUT_KIND] = layout.kind
    fields = layout.fields
    for start, end in layout.parts:
        if values[start:end] == seen[start:end]:
            continue
        for i in range(start, end):
            if values[i] is seen[i] or values[i] == seen[i]:
                continue
            name, encode = fields[i]
            text = encode(values[i])
            if raw.get(name, defaults.get(name)) != text:
                out[name] = text
    return out


def saved(job: Job, written: Mapping[str, str], now_ms: int = 0, stamp: Moment | None = None) -> None:
    """The `written` fields (and the time `stamp` names, Redis's `now_ms`) are in Redis now."""
    stored = job.stored if isinstance(job.stored, Stored) else Stored(raw={})
    raw = {**stored.raw, **written}
    layout = _LAYOUTS[type(job.inputs)]
    # The values `changes` encoded `written` from are what Redis holds now: the next write compares with
    # them, so a step that marks several times encodes only what each mark changed.
    seen = stored.compared if len(stored.compared) == len(layout.fields) else layout.values(job)
    if stamp is not None:
        _BY_NAME[stamp.value].set(job, now_ms)
        raw[stamp.value] = str(now_ms)
        at = layout.index[stamp.value]
        seen = (*seen[:at], now_ms, *seen[at + 1 :])
    job.stored = Stored(raw=raw, seen=seen)


def restore(job: Job) -> None:
    """Undo the changes not written (a mark refused): the job as Redis holds it, as far as it was read."""
    raw = job.stored.raw if isinstance(job.stored, Stored) else {}
    stored = from_fields({**raw, ID: job.id})
    for f in dataclasses.fields(Job):
        setattr(job, f.name, getattr(stored, f.name))


_DEFAULTS = to_fields(Job(id=""))  # what an absent field reads as
_UNSEEN = object()  # no value seen: compare the encoding
