"""Which files in a message make which jobs: pairing, recognising media, playback type, thread partners."""

from __future__ import annotations

from typing import Any

import pytest

from bot.jobs.files import MediaKind, SlackFile
from bot.parsing.file_share import SharedMessage, options_in, partner_in_thread, plan_jobs

MB = 1_000_000
LIMIT = 500 * MB


def slack_file(
    file_id: str, name: str, mimetype: str, filetype: str = "", size: int = 1000
) -> dict[str, Any]:
    """A file object shaped like the ones in `message` events."""
    return {
        "id": file_id,
        "name": name,
        "title": name,
        "mimetype": mimetype,
        "filetype": filetype or name.rsplit(".", 1)[-1],
        "size": size,
        "mode": "hosted",
        "is_external": False,
        "url_private": f"https://files.slack.com/files-pri/T0-{file_id}/{name}",
        "url_private_download": f"https://files.slack.com/files-pri/T0-{file_id}/download/{name}",
    }


def parsed(raw: dict[str, Any]) -> SlackFile:
    file = SlackFile.from_slack(raw)
    assert file is not None
    return file


VIDEO = parsed(slack_file("FV1", "talk.mp4", "video/mp4"))
VIDEO_2 = parsed(slack_file("FV2", "talk-cut.mov", "video/quicktime"))
AUDIO_FR = parsed(slack_file("FA1", "voice-fr.mp3", "audio/mpeg"))
AUDIO_DE = parsed(slack_file("FA2", "voice-de.wav", "audio/wav"))
AUDIO_ES = parsed(slack_file("FA3", "voice-es.m4a", "audio/mp4"))
PDF = parsed(slack_file("FP1", "script.pdf", "application/pdf"))


@pytest.mark.parametrize(
    ("mimetype", "filetype", "name", "kind", "content_type"),
    [
        ("video/mp4", "mp4", "a.mp4", MediaKind.VIDEO, "video/mp4"),
        ("video/quicktime", "mov", "a.mov", MediaKind.VIDEO, "video/quicktime"),
        ("audio/mpeg", "mp3", "a.mp3", MediaKind.AUDIO, "audio/mpeg"),
        ("audio/x-m4a", "m4a", "a.m4a", MediaKind.AUDIO, "audio/x-m4a"),
        # A generic mimetype falls back to Slack's file type, then to the name's extension.
        ("application/octet-stream", "mp3", "voice.bin", MediaKind.AUDIO, "audio/mpeg"),
        ("application/octet-stream", "binary", "clip.webm", MediaKind.VIDEO, "video/webm"),
        ("", "wav", "voice", MediaKind.AUDIO, "audio/wav"),
        ("application/pdf", "pdf", "script.pdf", None, "application/octet-stream"),
        ("image/png", "png", "cover.png", None, "application/octet-stream"),
    ],
)
def test_files_are_recognised_by_mimetype_then_file_type(
    mimetype: str, filetype: str, name: str, kind: MediaKind | None, content_type: str
) -> None:
    file = parsed(slack_file("F1", name, mimetype, filetype))
    assert file.kind is kind
    assert file.content_type == content_type


def test_a_slack_connect_stub_is_not_a_file_until_files_info() -> None:
    stub = {"id": "F0STUB", "mode": "file_access", "file_access": "check_file_info"}
    assert SlackFile.from_slack(stub) is None
    message = SharedMessage.from_slack({"ts": "1.0", "user": "U1", "files": [stub]}, "C1")
    assert message.files == () and message.stubs == ("F0STUB",)


def test_a_file_survives_the_round_trip_through_redis_text() -> None:
    assert SlackFile.from_json(VIDEO.to_json()) == VIDEO


def test_one_video_and_one_audio_make_one_job() -> None:
    plan = plan_jobs([VIDEO, AUDIO_FR], LIMIT)
    assert plan.ready
    assert [(p.video.id, p.audio.id) for p in plan.pairs] == [("FV1", "FA1")]


def test_one_video_and_three_audio_files_make_three_jobs_in_order() -> None:
    plan = plan_jobs([AUDIO_FR, VIDEO, AUDIO_DE, AUDIO_ES], LIMIT)
    assert plan.ready
    assert [(p.video.id, p.audio.id) for p in plan.pairs] == [("FV1", "FA1"), ("FV1", "FA2"), ("FV1", "FA3")]


def test_one_audio_and_two_videos_make_two_jobs() -> None:
    plan = plan_jobs([VIDEO, VIDEO_2, AUDIO_FR], LIMIT)
    assert [(p.video.id, p.audio.id) for p in plan.pairs] == [("FV1", "FA1"), ("FV2", "FA1")]


def test_several_videos_and_several_audio_files_are_ambiguous() -> None:
    plan = plan_jobs([VIDEO, VIDEO_2, AUDIO_FR, AUDIO_DE], LIMIT)
    assert plan.ambiguous and not plan.ready and plan.pairs == []


def test_other_files_are_ignored() -> None:
    plan = plan_jobs([PDF, VIDEO, AUDIO_FR], LIMIT)
    assert [(p.video.id, p.audio.id) for p in plan.pairs] == [("FV1", "FA1")]
    only_pdf = plan_jobs([PDF], LIMIT)
    assert not only_pdf.has_media and only_pdf.missing is None


def test_a_lone_video_or_audio_says_what_is_missing() -> None:
    assert plan_jobs([VIDEO], LIMIT).missing is MediaKind.AUDIO
    assert plan_jobs([AUDIO_FR, PDF], LIMIT).missing is MediaKind.VIDEO
    assert not plan_jobs([VIDEO], LIMIT).ready


def test_a_partner_from_the_thread_completes_the_pair() -> None:
    plan = plan_jobs([AUDIO_DE], LIMIT, partner=VIDEO)
    assert [(p.video.id, p.audio.id) for p in plan.pairs] == [("FV1", "FA2")]


def test_files_over_the_limit_or_outside_slack_block_the_plan() -> None:
    big = parsed(slack_file("FBIG", "long.mp4", "video/mp4", size=600 * MB))
    plan = plan_jobs([big, AUDIO_FR], LIMIT)
    assert not plan.ready and plan.too_large == [big]
    drive = parsed({**slack_file("FEXT", "drive.mp3", "audio/mpeg"), "is_external": True})
    plan = plan_jobs([VIDEO, drive], LIMIT)
    assert not plan.ready and plan.external == [drive]


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        (("dub this please",), "normal"),
        (("normal_reverse",), "normal_reverse"),
        (("please use `normal_reverse_by_audio` for this one",), "normal_reverse_by_audio"),
        (("Normal reverse is not a type", "normal_reverse"), "normal_reverse"),
        (("my_normal_reverse_thing",), "normal"),  # part of another word
        (("", "normal_reverse_by_audio"), "normal_reverse_by_audio"),  # from the partner's message
    ],
)
def test_playback_type_is_read_from_the_message_text(texts: tuple[str, ...], expected: str) -> None:
    assert options_in(*texts).playback_type == expected


@pytest.mark.parametrize(
    ("texts", "provider", "model"),
    [
        (("please lip sync this",), "", ""),  # "lip sync" is not the provider
        (("dub it with sync, model=lipsync-2-pro",), "sync", "lipsync-2-pro"),
        (("*lipsyncdev* please", "jogg"), "lipsyncdev", ""),  # the message's own words come first
        (("", "try `jogg`"), "jogg", ""),
        (("model=$(rm -rf)",), "", ""),  # not a model name
    ],
)
def test_provider_and_model_are_read_from_the_message_text(
    texts: tuple[str, ...], provider: str, model: str
) -> None:
    options = options_in(*texts)
    assert (options.provider, options.model) == (provider, model)


def test_the_newest_earlier_file_of_the_missing_kind_in_the_thread_is_the_partner() -> None:
    thread = [
        {
            "ts": "100.0",
            "user": "U1",
            "text": "first cut normal_reverse",
            "files": [slack_file("FV1", "a.mp4", "video/mp4")],
        },
        {"ts": "101.0", "user": "UBOT", "text": "bot", "files": [slack_file("FV9", "b.mp4", "video/mp4")]},
        {
            "ts": "102.0",
            "user": "U2",
            "text": "second cut",
            "files": [slack_file("FV2", "c.mp4", "video/mp4")],
        },
        {"ts": "103.0", "user": "U1", "text": "audio", "files": [slack_file("FA1", "v.mp3", "audio/mpeg")]},
        {"ts": "104.0", "user": "U3", "text": "later", "files": [slack_file("FV3", "d.mp4", "video/mp4")]},
    ]
    found = partner_in_thread(thread, "103.0", MediaKind.VIDEO, "UBOT")
    assert found is not None and found[0].id == "FV2" and found[1] == "second cut"
    assert partner_in_thread(thread, "100.0", MediaKind.VIDEO, "UBOT") is None
    assert partner_in_thread(thread, "103.0", MediaKind.AUDIO, "UBOT") is None


def test_a_message_knows_its_thread_and_mentions() -> None:
    top = SharedMessage.from_slack({"ts": "5.0", "user": "U1", "text": "hi <@UBOT> dub it"}, "C1")
    assert top.root == "5.0" and not top.is_reply and top.mentions("UBOT") and not top.mentions("U2")
    reply = SharedMessage.from_slack({"ts": "6.0", "thread_ts": "5.0", "user": "U1"}, "C1")
    assert reply.root == "5.0" and reply.is_reply
