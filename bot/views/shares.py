"""The notes on shared files: how to share them, what is missing or refused, what started."""

from __future__ import annotations

from collections.abc import Sequence

from bot.jobs.files import MediaKind, SlackFile
from bot.jobs.model import Job, short_id
from bot.parsing.file_share import Plan
from bot.views.actions import ACTION_CANCEL, _button
from bot.views.formats import _label, _name
from bot.views.text import Message, _code, _message, _section

# Reactions on the message that shared the files: working, then done and/or failed.
REACTION_WORKING = "hourglass_flowing_sand"
REACTION_DONE = "white_check_mark"
REACTION_FAILED = "x"

PLAYBACK_TIP = (
    "Write `normal_reverse` or `normal_reverse_by_audio` in the message to change what happens "
    "when the video is shorter than the audio."
)
NAMES_SHOWN = 5  # file names a note lists before "and N more"


def store_unavailable_for_files() -> Message:
    text = (
        ":warning: I can't reach my job database right now, so I didn't start anything for these files "
        "and nothing was charged. In a minute, use the message's ⋯ menu → *Lip-sync these files* to "
        "try again."
    )
    return _message(text, [_section(text)])


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
        video, audio = job.inputs.video.file, job.inputs.audio.file
        names = f"{_name(video)} with {_name(audio)}" if video and audio else ""
        lines.append(f"{_code(short_id(job.id))} {names} · {_label(job.order.provider)}")
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
