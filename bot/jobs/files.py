"""Slack file objects as the bot sees them: which are videos, which are audio, and how to name them.

Slack sends file objects inside `message` events (`files[]`), message-shortcut payloads and `files.info`.
Only the fields needed to download a file and re-host it are kept, so a job can carry its files in Redis.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Any


class MediaKind(StrEnum):
    VIDEO = "video"
    AUDIO = "audio"


# Slack `filetype` codes (and file extensions) → content type, for files whose mimetype says nothing
# useful (e.g. application/octet-stream). Matches what JoggAI's own upload helper sends.
VIDEO_TYPES = {
    "mp4": "video/mp4",
    "mov": "video/quicktime",
    "m4v": "video/x-m4v",
    "webm": "video/webm",
    "mkv": "video/x-matroska",
    "avi": "video/x-msvideo",
    "mpg": "video/mpeg",
    "mpeg": "video/mpeg",
    "wmv": "video/x-ms-wmv",
}
AUDIO_TYPES = {
    "mp3": "audio/mpeg",
    "wav": "audio/wav",
    "m4a": "audio/mp4",
    "aac": "audio/aac",
    "ogg": "audio/ogg",
    "oga": "audio/ogg",
    "opus": "audio/opus",
    "flac": "audio/flac",
    "weba": "audio/webm",
}


# Sizes above this are capped to it: still "too large" for any limit, and safe to do arithmetic on and
# format (a 400-digit size overflows float division). Slack stores files up to 1 TB.
MAX_REPORTED_BYTES = 10**15


def text_field(raw: Mapping[str, Any], key: str) -> str:
    """A string field of a Slack object; "" when it is missing or not a string."""
    value = raw.get(key)
    return value if isinstance(value, str) else ""


def byte_count(value: object) -> int:
    """Slack's `size` as a whole number of bytes in [0, MAX_REPORTED_BYTES]; 0 (unknown) when unreadable."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        digits = value.lstrip("0") or "0"
        # Compared by length first: int() of thousands of digits is slow, and refused past 4300.
        return MAX_REPORTED_BYTES if len(digits) > 15 else min(int(digits), MAX_REPORTED_BYTES)
    if isinstance(value, float):
        # JSON's 1e400 is inf and -1e400 is -inf: clamped before int(), which refuses both (and NaN).
        return 0 if math.isnan(value) else int(min(max(value, 0.0), float(MAX_REPORTED_BYTES)))
    if isinstance(value, int) and not isinstance(value, bool):
        return max(0, min(value, MAX_REPORTED_BYTES))
    return 0


def _is_stub(raw: Mapping[str, Any]) -> bool:
    """A file object that says only "ask files.info" (Slack Connect), or has no name to go by."""
    return (
        raw.get("file_access") == "check_file_info" or raw.get("mode") == "file_access" or "name" not in raw
    )


@dataclass(frozen=True)
class SlackFile:
    id: str
    name: str
    mimetype: str = ""
    filetype: str = ""
    size: int = 0  # bytes, as Slack reports it; 0 when unknown
    url: str = ""  # url_private_download (preferred) or url_private; needs the bot token
    external: bool = False  # stored outside Slack (Google Drive, Dropbox…): Slack has no bytes for it
    duration_ms: int = 0  # the media's length where Slack gives it (video clips); 0 when unknown

    @classmethod
    def from_slack(cls, raw: dict[str, Any]) -> SlackFile | None:
        """A file object from Slack; None for a stub that needs `files.info` first.

        Slack Connect channels deliver `{"id": "F…", "mode": "file_access", "file_access":
        "check_file_info"}` instead of the full object, and some senders leave out `mode` or add a
        `name`: `file_access: check_file_info` alone marks a stub.
        """
        file_id = text_field(raw, "id")
        if not file_id or _is_stub(raw):
            return None
        return cls(
            id=file_id,
            name=text_field(raw, "name") or text_field(raw, "title") or file_id,
            mimetype=text_field(raw, "mimetype").lower(),
            filetype=text_field(raw, "filetype").lower(),
            size=byte_count(raw.get("size")),
            url=text_field(raw, "url_private_download") or text_field(raw, "url_private"),
            external=raw.get("is_external") is True or raw.get("mode") == "external",
            duration_ms=byte_count(raw.get("duration_ms")),
        )

    @property
    def kind(self) -> MediaKind | None:
        """Video or audio by mimetype, falling back to Slack's file type and then the extension."""
        major = self.mimetype.partition("/")[0]
        if major == "video":
            return MediaKind.VIDEO
        if major == "audio":
            return MediaKind.AUDIO
        for code in (self.filetype, self.extension):
            if code in VIDEO_TYPES:
                return MediaKind.VIDEO
            if code in AUDIO_TYPES:
                return MediaKind.AUDIO
        return None

    @property
    def extension(self) -> str:
        return PurePosixPath(self.name).suffix.lstrip(".").lower()

    @property
    def content_type(self) -> str:
        """What to declare when re-hosting the bytes: Slack's mimetype if it is media, else by type."""
        if self.mimetype.partition("/")[0] in ("video", "audio"):
            return self.mimetype
        for code in (self.filetype, self.extension):
            if code in VIDEO_TYPES:
                return VIDEO_TYPES[code]
            if code in AUDIO_TYPES:
                return AUDIO_TYPES[code]
        return "application/octet-stream"

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> SlackFile:
        return cls(**json.loads(text))
