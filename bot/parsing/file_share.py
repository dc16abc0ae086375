"""What a message with shared files asks for: which video goes with which audio, and how to play it.

Pure functions over Slack payloads, so every rule here is testable without Slack:
- one video and N audio files → N jobs (one base video dubbed into several languages);
- N videos and one audio file → N jobs (one voice track on several cuts);
- several of each → ambiguous: we ask rather than guess;
- only one kind → the other may be earlier in the same thread (`partner_in_thread`), else we wait;
- the words of `/lipsync`'s options (playback type, provider, `model=`) work in the message text too.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.jobs.files import MediaKind, SlackFile, text_field
from bot.parsing.command import DEFAULT_PLAYBACK_TYPE, Options, option
from bot.providers.registry import REGISTRY

# What may wrap an option word in a message: punctuation and Slack formatting (`code`, *bold*, _italic_).
_AROUND_WORD = ".,;:!?()[]{}\"'`*_~"
SLACK_TS = re.compile(r"[0-9]{1,12}(\.[0-9]{1,9})?")


@dataclass(frozen=True)
class SharedMessage:
    """A Slack message that may hold files (from a `message` event or a message shortcut)."""

    channel: str
    ts: str
    user: str
    team_id: str = ""
    text: str = ""
    thread_ts: str = ""  # set when the message is in a thread (equal to ts for the thread's parent)
    files: tuple[SlackFile, ...] = ()
    stubs: tuple[str, ...] = ()  # ids of files Slack sent without details: ask files.info

    @classmethod
    def from_slack(cls, message: dict[str, Any], channel: str, team_id: str = "") -> SharedMessage:
        """Fields that are not what Slack sends (`files: 123`, a numeric `text`…) read as absent."""
        files: list[SlackFile] = []
        stubs: list[str] = []
        for raw in _objects(message.get("files")):
            parsed = SlackFile.from_slack(raw)
            if parsed is not None:
                files.append(parsed)
            elif stub_id := text_field(raw, "id"):
                stubs.append(stub_id)
        return cls(
            channel=channel,
            ts=_slack_ts(message.get("ts")),
            user=text_field(message, "user"),
            team_id=team_id,
            text=text_field(message, "text"),
            thread_ts=_slack_ts(message.get("thread_ts")),
            files=tuple(files),
            stubs=tuple(stubs),
        )

    @property
    def root(self) -> str:
        """The ts replies go under: the thread's parent, or this message if it starts no thread yet."""
        return self.thread_ts or self.ts

    @property
    def is_reply(self) -> bool:
        return bool(self.thread_ts) and self.thread_ts != self.ts

    def mentions(self, user_id: str) -> bool:
        return bool(user_id) and f"<@{user_id}" in self.text

    def with_files(self, files: Iterable[SlackFile]) -> SharedMessage:
        return SharedMessage(
            self.channel, self.ts, self.user, self.team_id, self.text, self.thread_ts, tuple(files), ()
        )


@dataclass(frozen=True)
class Pair:
    video: SlackFile
    audio: SlackFile


@dataclass(frozen=True)
class Plan:
    """The jobs a message asks for, or why there are none."""

    pairs: list[Pair] = field(default_factory=list)
    videos: list[SlackFile] = field(default_factory=list)
    audios: list[SlackFile] = field(default_factory=list)
    ambiguous: bool = False  # several videos and several audio files
    too_large: list[SlackFile] = field(default_factory=list)
    external: list[SlackFile] = field(default_factory=list)  # no Slack-hosted bytes to download

    @property
    def missing(self) -> MediaKind | None:
        """The kind still needed when the message has only the other one."""
        if self.videos and not self.audios:
            return MediaKind.AUDIO
        if self.audios and not self.videos:
            return MediaKind.VIDEO
        return None

    @property
    def has_media(self) -> bool:
        return bool(self.videos or self.audios)

    @property
    def ready(self) -> bool:
        return bool(self.pairs) and not (self.ambiguous or self.too_large or self.external)


def plan_jobs(files: Sequence[SlackFile], max_bytes: int, partner: SlackFile | None = None) -> Plan:
    """Pair the videos and audio files of a message; `partner` is a file found earlier in the thread."""
    videos = [f for f in files if f.kind is MediaKind.VIDEO]
    audios = [f for f in files if f.kind is MediaKind.AUDIO]
    if partner is not None and partner.kind is MediaKind.VIDEO and not videos:
        videos = [partner]
    elif partner is not None and partner.kind is MediaKind.AUDIO and not audios:
        audios = [partner]
    if not videos or not audios:
        return Plan(videos=videos, audios=audios)
    if len(videos) > 1 and len(audios) > 1:
        return Plan(videos=videos, audios=audios, ambiguous=True)
    pairs = [Pair(v, a) for v in videos for a in audios]
    used = [*videos, *audios]
    return Plan(
        pairs=pairs,
        videos=videos,
        audios=audios,
        too_large=[f for f in used if f.size > max_bytes],
        external=[f for f in used if f.external or not f.url],
    )


def options_in(*texts: str, providers: Collection[str] = REGISTRY.names) -> Options:
    """The options (playback type, provider, `model=`) written in a message's text, or else in the next
    text (the partner file's message); the first of each kind counts; `providers` are the words that choose
    a provider. Other words are conversation, and so are two that read as plain English: "normal" (the
    default needs no mention) and the "sync" of "lip sync"."""
    found: dict[str, str] = {}
    for text in texts:
        previous = ""
        for raw in text.split():
            word = raw.strip(_AROUND_WORD)
            chosen = option(word, providers)
            plain_english = word.lower() == "normal" or (word.lower() == "sync" and previous == "lip")
            if chosen is not None and not plain_english:
                found.setdefault(*chosen)
            previous = word.lower()
    return Options(
        found.get("playback", DEFAULT_PLAYBACK_TYPE), found.get("provider", ""), found.get("model", "")
    )


def partner_in_thread(
    thread: Sequence[dict[str, Any]], before_ts: str, wanted: MediaKind, bot_user_id: str
) -> tuple[SlackFile, str] | None:
    """The newest file of kind `wanted` posted in the thread before `before_ts` by a person, with the
    text of the message that shared it (it may name the playback type)."""
    for message in sorted(_objects(thread), key=lambda m: _ts_order(m.get("ts")), reverse=True):
        if _ts_order(message.get("ts")) >= _ts_order(before_ts):
            continue
        if message.get("bot_id") or message.get("user") == bot_user_id:
            continue
        for raw in reversed(_objects(message.get("files"))):
            found = SlackFile.from_slack(raw)
            if found is not None and found.kind is wanted:
                return found, text_field(message, "text")
    return None


def _objects(value: object) -> list[dict[str, Any]]:
    """The objects in a Slack list field; nothing when the field is not a list."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list | tuple) else []


def _slack_ts(value: object) -> str:
    """A message timestamp ("1712345678.123456"); "" when it is not one."""
    return value if isinstance(value, str) and SLACK_TS.fullmatch(value) else ""


def _ts_order(value: object) -> float:
    """A timestamp as a number to order messages by; 0 when it is not one."""
    return float(value) if isinstance(value, str) and SLACK_TS.fullmatch(value) else 0.0
