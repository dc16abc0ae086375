"""Slack file objects as the bot sees them: which are videos, which are audio, and how to name them.

Slack sends file objects inside `message` events (`files[]`), message-shortcut payloads and `files.info`.
Only the fields needed to download a file and re-host it are kept, so a job can carry its files in Redis.
"""

from __future__ import annotations

import json
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


@dataclass(frozen=True)
class SlackFile:
    id: str
    name: str
    mimetype: str = ""
    filetype: str = ""
    size: int = 0  # bytes, as Slack reports it; 0 when unknown
    url: str = ""  # url_private_download (preferred) or url_private; needs the bot token
    external: bool = False  # stored outside Slack (Google Drive, Dropbox…): Slack has no bytes for it

    @classmethod
    def from_slack(cls, raw: dict[str, Any]) -> SlackFile | None:
        """A file object from Slack; None for a stub that needs `files.info` first.

        Slack Connect channels deliver `{"id": "F…", "mode": "file_access", "file_access":
        "check_file_info"}` instead of the full object.
        """
        file_id = str(raw.get("id") or "")
        if not file_id or raw.get("mode") == "file_access" or "name" not in raw:
            return None
        try:
            size = int(raw.get("size") or 0)
        except (TypeError, ValueError):
            size = 0
        return cls(
            id=file_id,
            name=str(raw.get("name") or raw.get("title") or file_id),
            mimetype=str(raw.get("mimetype") or "").lower(),
            filetype=str(raw.get("filetype") or "").lower(),
            size=max(0, size),
            url=str(raw.get("url_private_download") or raw.get("url_private") or ""),
            external=bool(raw.get("is_external")) or raw.get("mode") == "external",
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
