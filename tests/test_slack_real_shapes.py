"""Slack's own recorded payloads and API answers (tests/slack_samples/, from Slack's Java SDK, MIT) against
the bot and the Slack stand-in.

- What Slack sends: each recorded payload, its blanked values filled with realistic ones (keys and JSON
  types kept), goes through the bot as Slack would send it, and the bot does what it should.
- What Slack answers: the stand-in's answer to each method the bot uses has the recorded shape: no key
  Slack does not send, no value of another JSON type, recursively; a recorded key may be left out only
  with a reason written down here (most recorded keys appear only for some files, apps or plans: the
  recordings merge every field ever seen).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from slack_sdk import WebClient

from bot.parsing.file_share import SharedMessage
from bot.requests.shares import share_from_event, share_from_shortcut
from bot.slack.inbound import payload_problem
from bot.views.actions import ACTION_CANCEL, DUB_AGAIN_CALLBACK, DUB_AUDIO_BLOCK
from bot.views.control import no_such_job
from tests.fakes.jogg_api import FakeJogg
from tests.fakes.server import wait_until
from tests.fakes.slack_api import FakeSlack
from tests.harness import BotThread
from tests.payloads import form_body, signed_headers
from tests.test_file_shares import CHANNEL, creates, share

SAMPLES = Path(__file__).parent / "slack_samples"
Json = Any


def recorded(name: str) -> Json:
    return json.loads((SAMPLES / name).read_text())


# ---------------------------------------------------------------------------------- the shape comparison


def json_type(value: Json) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def merged(items: list[Json]) -> Json:
    """One shape for the elements of a recorded array (or the values of a map): objects merged key by key,
    recursively, the first of anything else."""
    objects = [item for item in items if isinstance(item, dict)]
    if not objects:
        return items[0] if items else None
    shape: dict[str, Json] = {}
    for item in objects:
        for key, value in item.items():
            if key in shape and isinstance(shape[key], dict) and isinstance(value, dict):
                shape[key] = merged([shape[key], value])
            elif key in shape and isinstance(shape[key], list) and isinstance(value, list):
                shape[key] = shape[key] + value
            else:
                shape.setdefault(key, value)
    return shape


def shape_problems(
    want: Json,
    got: Json,
    *,
    omitted: Mapping[str, str] = {},
    extra: Mapping[str, str] = {},
    nullable: Mapping[str, str] = {},
    maps: tuple[str, ...] = (),
    path: str = "$",
) -> list[str]:
    """How `got` (an answer) differs from `want` (Slack's recording): keys Slack does not send, values of
    another JSON type, and recorded keys left out. `omitted`, `extra` and `nullable` excuse paths (patterns
    where `*` is anything, `[]` an array's elements) with a reason each; `maps` are objects keyed by ids
    (a file's `shares.public`), whose values are compared with the recorded values."""
    rules = {"omitted": omitted, "extra": extra, "nullable": nullable, "maps": maps}
    if want is None:
        return []  # recorded as null: any value
    if got is None and json_type(want) != "null":
        return [] if _excused(path, nullable) else [f"{path}: null, Slack sends {json_type(want)}"]
    if json_type(want) != json_type(got):
        return [f"{path}: {json_type(got)}, Slack sends {json_type(want)}"]
    if isinstance(want, list):
        problems = []
        for item in got if want else []:
            # Arrays of typed objects (blocks, elements) mix kinds: compare with the recorded same kind.
            kind = item.get("type") if isinstance(item, dict) else None
            same = [w for w in want if isinstance(w, dict) and kind is not None and w.get("type") == kind]
            problems += shape_problems(merged(same or want), item, path=f"{path}[]", **rules)
        return problems
    if not isinstance(want, dict):
        return []
    if any(_matches(path, m) for m in maps):
        shape = merged(list(want.values()))
        return [p for k, v in got.items() for p in shape_problems(shape, v, path=f"{path}.*", **rules)]
    problems = []
    for key, value in got.items():
        where = f"{path}.{key}"
        if key in want:
            problems += shape_problems(want[key], value, path=where, **rules)
        elif not _excused(where, extra):
            problems.append(f"{where}: not a key Slack sends")
    problems += [
        f"{path}.{key}: left out" for key in want if key not in got and not _excused(f"{path}.{key}", omitted)
    ]
    return problems


def _excused(path: str, reasons: Mapping[str, str]) -> bool:
    return any(_matches(path, pattern) for pattern in reasons)


def _matches(path: str, pattern: str) -> bool:
    """A path against a pattern where `*` stands for anything (`[]` is literal, unlike in fnmatch)."""
    return re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), path) is not None


def test_the_shape_comparison_finds_what_differs() -> None:
    want = {"ok": True, "file": {"id": "", "size": 1, "shares": {"public": {"C1": [{"ts": ""}]}}}, "x": ""}
    got = {"ok": True, "file": {"id": "F1", "size": "1", "new": 1, "shares": {"public": {"C9": [{"ts": 5}]}}}}
    assert sorted(shape_problems(want, got, maps=("$.file.shares.public",))) == [
        "$.file.new: not a key Slack sends",
        "$.file.shares.public.*[].ts: number, Slack sends string",
        "$.file.size: string, Slack sends number",
        "$.x: left out",
    ]
    excused = shape_problems(
        want,
        got,
        omitted={"$.x": "why"},
        extra={"$.file.new": "why"},
        maps=("$.file.shares.public",),
    )
    assert sorted(excused) == [
        "$.file.shares.public.*[].ts: number, Slack sends string",
        "$.file.size: string, Slack sends number",
    ]
    assert shape_problems({"a": {"b": 1}}, {"a": None}) == ["$.a: null, Slack sends object"]
    assert shape_problems({"a": {"b": 1}}, {"a": None}, nullable={"$.a": "why"}) == []


# ------------------------------------------------------------------------------- the stand-in's answers


def fake_answers(slack: FakeSlack) -> dict[str, Json]:
    """The stand-in's answer to each method the bot uses, each from a successful call as the bot makes it."""
    bot = WebClient(token=slack.bot_token, base_url=slack.api_url)
    app = WebClient(token=slack.app_token, base_url=slack.api_url)
    thread = slack.add_message("C0SHAPES", "a job")["ts"]
    answers: dict[str, Json] = {
        "auth.test": bot.auth_test().data,
        "apps.connections.open": app.apps_connections_open(app_token=slack.app_token).data,
        "conversations.join": bot.conversations_join(channel="C0SHAPES").data,
        "users.info": bot.users_info(user="U0ALICE").data,
    }
    got = bot.files_getUploadURLExternal(filename="lipsync-result.mp4", length=11)
    answers["files.getUploadURLExternal"] = got.data
    httpx.post(str(got["upload_url"]), content=b"hello video", timeout=10).raise_for_status()
    answers["files.completeUploadExternal"] = bot.files_completeUploadExternal(
        files=[{"id": got["file_id"], "title": "Dubbed video"}], channel_id="C0SHAPES", thread_ts=thread
    ).data
    answers["files.info"] = bot.files_info(file=str(got["file_id"])).data
    section = {"type": "section", "text": {"type": "mrkdwn", "text": "*Lip-sync*"}}
    modal = {
        "type": "modal",
        "callback_id": "dub_again",
        "title": {"type": "plain_text", "text": "Dub again"},
        "submit": {"type": "plain_text", "text": "Dub"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "private_metadata": "job-1",
        "blocks": [section],
    }
    answers["views.open"] = bot.views_open(trigger_id="1234.5678.abcdef", view=modal).data
    answers["views.publish"] = bot.views_publish(
        user_id="U0ALICE", view={"type": "home", "blocks": [section]}
    ).data
    return answers


# Recorded keys Slack sends only in some answers, so the stand-in may leave them out; each with why.
FAILURES_AND_WARNINGS = {
    "$.error": "only when ok is false",
    "$.needed": "only with missing_scope",
    "$.provided": "only with missing_scope",
    "$.warning": "only with a warning (e.g. already_in_channel)",
    "$.response_metadata": "only with warnings or messages (errors, deprecations)",
}
FILE_ONLY_SOMETIMES = {
    "shares.*.*[].latest_reply": "once the share has replies",
    "shares.*.*[].access": "Slack Connect shares",
    "shares.*.*[].date_last_shared": "files shared again later",
    "shares.*.*[].is_silent_share": "shares made without a message",
    "shares.public": "a file shared in public channels (ours: only in one thread)",
    "shares.private": "a file shared in private channels",
    "has_more_shares": "files shared in very many conversations",
    "subject": "email files",
    "to": "email files",
    "from": "email files",
    "cc": "email files",
    "headers": "email files",
    "simplified_html": "email files",
    "sent_to_self": "email files",
    "source_team": "files from another workspace (Slack Connect)",
    "non_owner_editable": "editable files: posts, snippets, canvases",
    "editor": "editable files",
    "editors": "editable files",
    "last_editor": "editable files",
    "updated": "editable files",
    "edit_timestamp": "editable files",
    "edit_link": "editable files",
    "alt_txt": "only when the upload gave alt text",
    "subtype": "Slack's own kinds (slack_video clips, canvases)",
    "transcription": "video and audio Slack has transcribed",
    "mp4": "video Slack has transcoded (later, asynchronously)",
    "mp4_low": "video Slack has transcoded",
    "vtt": "video Slack has transcribed",
    "hls": "video Slack has transcoded",
    "hls_embed": "video Slack has transcoded",
    "duration_ms": "video Slack has processed (the bot treats it as optional)",
    "thumb_*": "image, video and PDF previews Slack renders",
    "media_progress": "media someone has played",
    "media_display_type": "media Slack has processed",
    "original_w": "images and processed video",
    "original_h": "images and processed video",
    "image_exif_rotation": "images",
    "deanimate": "animated images",
    "deanimate_gif": "animated images",
    "pjpeg": "images",
    "converted_pdf": "documents Slack converts",
    "original_attachment_count": "messages saved as files",
    "external_id": "external files (Google Drive, Dropbox…)",
    "external_url": "external files",
    "url_static_preview": "files with a static preview",
    "app_id": "files an app made for itself",
    "app_name": "files an app made for itself",
    "bot_id": "files posted as a bot message",
    "preview": "text files and snippets",
    "preview_highlight": "text files and snippets",
    "preview_is_truncated": "text files and snippets",
    "preview_plain_text": "text files and snippets",
    "plain_text": "text files and snippets",
    "has_more": "text files and snippets",
    "lines": "text files and snippets",
    "lines_more": "text files and snippets",
    "channel_actions_ts": "canvases",
    "channel_actions_count": "canvases",
    "saved": "files someone saved for later (per viewer)",
    "quip_thread_id": "canvases",
    "is_channel_space": "canvases",
    "linked_channel_id": "canvases",
    "access": "canvases and lists",
    "teams_shared_with": "canvases and lists",
    "last_read": "canvases and lists",
    "title_blocks": "canvases and lists",
    "private_channels_with_file_access_count": "canvases and lists",
    "private_file_with_access_count": "canvases and lists",
    "dm_mpdm_users_with_file_access": "canvases and lists",
    "org_or_workspace_access": "canvases and lists",
    "update_notification": "canvases",
    "canvas_*": "canvases",
    "can_toggle_canvas_lock": "canvases",
    "template_*": "canvas templates",
    "team_pref_version_history_enabled": "canvases",
    "show_badge": "canvases",
    "favorites": "canvases and lists",
    "list_*": "lists",
    "is_restricted_sharing_enabled": "canvases and lists",
    "is_modified_by_ai": "files an AI feature changed",
    "initial_comment": "uploads with a comment",
    "num_stars": "files someone starred",
    "is_starred": "files someone starred (per viewer)",
    "pinned_to": "pinned files",
    "reactions": "files with reactions",
}


def file_reasons(prefix: str) -> dict[str, str]:
    return {f"{prefix}.{key}": why for key, why in FILE_ONLY_SOMETIMES.items()}


SECTION_BLOCK = {
    "$.view.blocks[].text.emoji": "mrkdwn text has no emoji flag (plain_text has, and gets it)",
    "$.view.blocks[].fields": "a section's optional parts the view does not use",
    "$.view.blocks[].accessory": "a section's optional parts the view does not use",
    "$.view.blocks[].expand": "a section's optional parts the view does not use",
}
VIEW_ONLY_SOMETIMES = {
    **SECTION_BLOCK,
    "$.view.entity_url": "work-object views (flexpane)",
    "$.view.external_ref": "work-object views",
    "$.view.app_unfurl_url": "views opened from an unfurl",
    "$.view.message_ts": "views opened from a message",
    "$.view.thread_ts": "views opened from a message",
    "$.view.channel": "views opened from a message",
}
VIEW_DOCUMENTED = {"$.view.state.values": "views.open's documented answer; the recording blanks state"}
VIEW_NULLS = {"$.view.previous_view_id": "null in views.open's documented answer for a first view"}
HOME_NULLS = {
    **VIEW_NULLS,
    "$.view.title": "a Home tab has no title (null in views.publish's documented answer)",
    "$.view.close": "a Home tab has no close button (null in the documented answer)",
    "$.view.submit": "a Home tab has no submit button (null in the documented answer)",
}
USER_ONLY_SOMETIMES = {
    "$.user.locale": "only with include_locale (the stand-in adds it then)",
    "$.user.has_2fa": "only to admins and owners",
    "$.user.enterprise_user": "Enterprise Grid",
    "$.user.enterprise_id": "Enterprise Grid",
    "$.user.enterprise_name": "Enterprise Grid",
    "$.user.teams": "Enterprise Grid",
    "$.user.is_stranger": "people from another organization (Slack Connect)",
    "$.user.who_can_share_contact_card": "newer accounts' privacy setting",
    "$.user.is_workflow_bot": "workflow bots",
    "$.user.is_invited_user": "invited, not yet joined",
    "$.user.is_connector_bot": "connector bots",
    "$.user.profile.api_app_id": "bot users (the stand-in's bot has it)",
    "$.user.profile.always_active": "bot users",
    "$.user.profile.bot_id": "bot users",
    "$.user.profile.email": "only with users:read.email",
    "$.user.profile.is_custom_image": "people who uploaded a picture",
    "$.user.profile.image_original": "people who uploaded a picture",
    "$.user.profile.image_1024": "people who uploaded a picture",
    "$.user.profile.status_emoji_url": "custom status emoji",
    "$.user.profile.pronouns": "people who set pronouns",
    "$.user.profile.huddle_state": "people in a huddle",
    "$.user.profile.huddle_state_expiration_ts": "people in a huddle",
    "$.user.profile.guest_invited_by": "guests",
    "$.user.profile.start_date": "workspaces with start dates",
}
FILE_MAPS = (
    "$.file.shares.public",
    "$.file.shares.private",
    "$.files[].shares.public",
    "$.files[].shares.private",
)

ANSWER_RULES: dict[str, dict[str, Any]] = {
    "auth.test": {
        "omitted": {
            **FAILURES_AND_WARNINGS,
            "$.enterprise_id": "Enterprise Grid installs",
            "$.expires_in": "token rotation",
            "$.app_id": "not in auth.test's documented answer for a bot token",
            "$.app_name": "not in auth.test's documented answer for a bot token",
        }
    },
    "apps.connections.open": {"omitted": FAILURES_AND_WARNINGS},
    "conversations.join": {
        "omitted": {
            **FAILURES_AND_WARNINGS,
            "$.channel.is_moved": "channels moved between workspaces (Grid)",
            "$.channel.internal_team_ids": "Enterprise Grid",
            "$.channel.is_starred": "per viewer, channels someone starred",
            "$.channel.properties": "channels with a canvas, tabs or meeting notes",
        }
    },
    "users.info": {"omitted": {**FAILURES_AND_WARNINGS, **USER_ONLY_SOMETIMES}},
    "files.getUploadURLExternal": {"omitted": FAILURES_AND_WARNINGS},
    "files.completeUploadExternal": {
        "omitted": {**FAILURES_AND_WARNINGS, **file_reasons("$.files[]")},
        "maps": FILE_MAPS,
    },
    "files.info": {
        "omitted": {
            **FAILURES_AND_WARNINGS,
            **file_reasons("$.file"),
            "$.content": "text files, when asked for",
            "$.is_truncated": "text files, when asked for",
            "$.content_highlight_*": "text files, when asked for",
            "$.paging": "comments paged the old way",
        },
        "extra": {"$.response_metadata": "files.info's documented answer (comments cursor)"},
        "maps": FILE_MAPS,
    },
    "views.open": {
        "omitted": {**FAILURES_AND_WARNINGS, **VIEW_ONLY_SOMETIMES},
        "extra": VIEW_DOCUMENTED,
        "nullable": VIEW_NULLS,
    },
    "views.publish": {
        "omitted": {**FAILURES_AND_WARNINGS, **VIEW_ONLY_SOMETIMES},
        "extra": VIEW_DOCUMENTED,
        "nullable": HOME_NULLS,
    },
}


@pytest.fixture(scope="module")
def answers() -> Iterator[dict[str, Json]]:
    with FakeSlack() as slack:
        yield fake_answers(slack)


@pytest.mark.parametrize("method", sorted(ANSWER_RULES))
def test_the_stand_in_answers_in_slacks_recorded_shape(method: str, answers: dict[str, Json]) -> None:
    got = answers[method]
    assert got["ok"] is True
    assert shape_problems(recorded(f"{method}.json"), got, **ANSWER_RULES[method]) == []


def test_files_info_answers_a_just_completed_upload_in_the_recorded_shape_before_its_share() -> None:
    """Asynchronous sharing: the file is known, `shares` still empty; still Slack's shape."""
    with FakeSlack() as slack:
        slack.share_after_info_calls = 2
        answers = fake_answers(slack)
    assert answers["files.info"]["file"]["shares"] == {}
    assert answers["files.completeUploadExternal"]["files"][0]["shares"] == {}
    for method in ("files.info", "files.completeUploadExternal"):
        assert shape_problems(recorded(f"{method}.json"), answers[method], **ANSWER_RULES[method]) == []


# ------------------------------------------------------------------------------ what Slack sends, filled

ALICE = "U0ALICE"
VIDEO = "https://cdn.example.com/talk.mp4"
AUDIO = "https://cdn.example.com/voice-fr.mp3"
TRIGGER = "1234567890.738474920.abcdef0123456789"


def assert_recorded_shape(name: str, payload: Json) -> None:
    """The filled payload keeps the recording's keys and JSON types (only values were filled)."""
    assert shape_problems(recorded(name), payload) == []
    assert payload_problem(payload) is None  # and the bot's request guard lets it through


def filled_file(template: Json, hosted: Json) -> Json:
    """The recorded file object with the stand-in's values for the keys it has (types as recorded)."""
    file = copy.deepcopy(template)
    for key, value in hosted.items():
        if key in file and json_type(file[key]) == json_type(value):
            file[key] = value
    file["duration_ms"] = 12_500  # the recording's placeholder (123) would read as a 0.1 s clip
    return file


def filled_envelope(payload: Json, slack: FakeSlack) -> Json:
    """An Events API envelope's own fields (those it has), as Slack fills them for a workspace install."""
    values = {
        "token": "deprecated-verification-token",
        "team_id": slack.team_id,
        "api_app_id": "A0TEST",
        "type": "event_callback",
        "event_id": f"Ev{TRIGGER[-10:].upper()}",
        "event_time": 1_700_000_000,
        "event_context": "4-eyJldCI6Im1lc3NhZ2UifQ",
        "authed_users": [slack.bot_user_id],
        "authed_teams": [slack.team_id],
        "is_ext_shared_channel": False,
    }
    payload.update({key: value for key, value in values.items() if key in payload})
    payload["authorizations"][0].update(team_id=slack.team_id, user_id=slack.bot_user_id, is_bot=True)
    return payload


def shared_files(slack: FakeSlack, template: Json) -> tuple[Json, list[Json]]:
    """A video and an audio file hosted by the stand-in, as recorded file objects, and their message."""
    shared = share(slack, "talk.mp4", "voice.mp3")
    return shared.message, [filled_file(template, hosted) for hosted in shared.message["files"]]


def file_share_payload(slack: FakeSlack) -> Json:
    payload = filled_envelope(recorded("MessageFileSharePayload.json"), slack)
    message, files = shared_files(slack, payload["event"]["files"][0])
    payload["event"].update(
        type="message",
        subtype="file_share",
        text="",
        files=files,
        upload=False,
        display_as_bot=False,
        user=ALICE,
        parent_user_id=ALICE,
        ts=message["ts"],
        thread_ts=message["ts"],  # a thread's parent carries its own ts
        channel=CHANNEL,
        event_ts=message["ts"],
        channel_type="channel",
    )
    return payload


def test_a_recorded_file_share_event_starts_a_dub(bot: BotThread, slack: FakeSlack, jogg: FakeJogg) -> None:
    payload = file_share_payload(slack)
    assert_recorded_shape("MessageFileSharePayload.json", payload)
    assert bot.event(payload).status_code == 200
    wait_until(lambda: creates(jogg), timeout=20, message="a dub of the recorded share")
    assert len(creates(jogg)) == 1 and len(jogg.uploads) == 2


def test_a_recorded_slash_command_starts_a_dub(bot: BotThread, slack: FakeSlack) -> None:
    fields = recorded("SlashCommandPayload.json")
    fields.update(
        token="deprecated-verification-token",
        api_app_id="A0TEST",
        team_id=slack.team_id,
        team_domain="acme",
        channel_id="C0GENERAL",
        channel_name="general",
        user_id=ALICE,
        user_name="alice",
        command="/lipsync",
        text=f"{VIDEO} {AUDIO}",
        response_url=slack.response_url("recorded-command"),
        trigger_id=TRIGGER,
        is_enterprise_install=False,
    )
    assert_recorded_shape("SlashCommandPayload.json", fields)
    # A form, so every value is text: Slack writes booleans as "true"/"false".
    body = form_body({k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in fields.items()})
    response = httpx.post(f"{bot.url}/slack/events", content=body, headers=signed_headers(body), timeout=10)
    assert response.status_code == 200
    [job_message] = wait_until(lambda: slack.messages("C0GENERAL"), timeout=10)
    assert job_message["user"] == slack.bot_user_id


def test_a_recorded_message_shortcut_starts_a_dub(bot: BotThread, slack: FakeSlack, jogg: FakeJogg) -> None:
    payload = recorded("MessageShortcutPayload.json")
    message, files = shared_files(slack, payload["message"]["files"][0])
    payload.update(
        callback_id="lipsync_files",
        trigger_id=TRIGGER,
        message_ts=message["ts"],
        response_url=slack.response_url("recorded-shortcut"),
        token="deprecated-verification-token",
        action_ts="1700000000.123456",
        is_enterprise_install=False,
    )
    payload["team"].update(id=slack.team_id, domain="acme")
    payload["user"].update(id=ALICE, name="alice", team_id=slack.team_id)
    payload["channel"].update(id=CHANNEL, name="media")
    payload["message"].update(
        type="message",
        subtype="file_share",
        team=slack.team_id,
        channel=CHANNEL,
        user=ALICE,
        text="",
        ts=message["ts"],
        thread_ts=message["ts"],
        files=files,
    )
    assert_recorded_shape("MessageShortcutPayload.json", payload)
    assert bot.shortcut(payload).status_code == 200
    wait_until(lambda: creates(jogg), timeout=20, message="a dub of the recorded message's files")
    [answer] = wait_until(lambda: slack.responses.get("recorded-shortcut"), timeout=10)
    assert answer["response_type"] == "ephemeral" and len(creates(jogg)) == 1


def test_a_recorded_button_click_is_read_and_answered(bot: BotThread, slack: FakeSlack) -> None:
    payload = recorded("BlockActionPayload.json")
    job_id = "0123456789abcdef0123"  # no such job: the answer says so, privately
    payload.update(
        type="block_actions",
        api_app_id="A0TEST",
        token="deprecated-verification-token",
        trigger_id=TRIGGER,
        response_url=slack.response_url("recorded-click"),
        is_enterprise_install=False,
    )
    payload["team"].update(id=slack.team_id, domain="acme")
    payload["user"].update(id=ALICE, username="alice", name="alice", team_id=slack.team_id)
    payload["channel"].update(id="C0GENERAL", name="general")
    payload["container"].update(type="message", message_ts="1700000000.000100", channel_id="C0GENERAL")
    payload["message"].update(type="message", user=slack.bot_user_id, ts="1700000000.000100", text="Lip-sync")
    payload["actions"][0].update(
        action_id=ACTION_CANCEL,
        block_id="job_actions",
        value=job_id,
        type="button",
        action_ts="1700000001.000200",
    )
    payload["actions"][0]["text"].update(type="plain_text", text="Cancel", emoji=True)
    assert_recorded_shape("BlockActionPayload.json", payload)
    assert bot.shortcut(payload).status_code == 200
    [answer] = wait_until(lambda: slack.responses.get("recorded-click"), timeout=10)
    assert answer["text"] == no_such_job(job_id).text


def test_a_recorded_modal_submission_is_read_and_answered(bot: BotThread, slack: FakeSlack) -> None:
    payload = recorded("ViewSubmissionPayload.json")
    payload.update(
        type="view_submission",
        api_app_id="A0TEST",
        token="deprecated-verification-token",
        trigger_id=TRIGGER,
        is_enterprise_install=False,
    )
    payload["team"].update(id=slack.team_id, domain="acme")
    payload["user"].update(id=ALICE, username="alice", name="alice", team_id=slack.team_id)
    payload["view"].update(
        id="V0DUBAGAIN1",
        team_id=slack.team_id,
        type="modal",
        callback_id=DUB_AGAIN_CALLBACK,
        private_metadata="0123456789abcdef0123",  # a job that does not exist (any more)
        root_view_id="V0DUBAGAIN1",
        app_id="A0TEST",
        app_installed_team_id=slack.team_id,
        hash="1700000000.abcdef12",
    )
    for button, text in (("title", "Dub again"), ("submit", "Dub"), ("close", "Cancel")):
        payload["view"][button].update(type="plain_text", text=text, emoji=True)
    assert_recorded_shape("ViewSubmissionPayload.json", payload)
    response = httpx.post(
        f"{bot.url}/slack/events",
        content=(body := form_body({"payload": json.dumps(payload)})),
        headers=signed_headers(body),
        timeout=10,
    )
    assert response.status_code == 200
    answer = response.json()
    assert answer["response_action"] == "errors" and DUB_AUDIO_BLOCK in answer["errors"]


def test_a_recorded_app_home_opened_event_publishes_the_home_tab(bot: BotThread, slack: FakeSlack) -> None:
    payload = filled_envelope(recorded("AppHomeOpenedPayload.json"), slack)
    payload["event"].update(
        type="app_home_opened", user=ALICE, channel="D0ALICE", tab="home", event_ts="1700000000.000300"
    )
    assert_recorded_shape("AppHomeOpenedPayload.json", payload)
    assert bot.event(payload).status_code == 200
    assert wait_until(lambda: slack.home_views.get(ALICE), timeout=10)["type"] == "home"


def test_a_recorded_file_shared_event_starts_nothing(
    bot: BotThread, slack: FakeSlack, redis_client: redis.Redis
) -> None:
    """The bot subscribes to `message` events only (shared/docs/slack-platform.md §2.1): a `file_shared`
    event starts nothing, and is refused without a 5xx (Bolt answers 404 for an event no listener takes)."""
    payload = filled_envelope(recorded("FileSharedPayload.json"), slack)
    payload["event"].update(file_id="F0TALK", user_id=ALICE, channel_id=CHANNEL, event_ts="1700000000.000400")
    payload["event"]["file"]["id"] = "F0TALK"
    assert_recorded_shape("FileSharedPayload.json", payload)
    assert bot.event(payload).status_code in (200, 404)
    assert redis_client.zcard("{lip}:inbox") == 0 and slack.calls_to("files.info") == []


def message_event(name: str, slack: FakeSlack, **event: Json) -> Json:
    payload = filled_envelope(recorded(name), slack)
    payload["event"].update(channel=CHANNEL, channel_type="channel", ts="1700000000.000500", **event)
    payload["event"]["event_ts"] = payload["event"]["ts"]
    return payload


def test_recorded_message_events_are_read_as_shares_or_not(slack: FakeSlack) -> None:
    """Which of Slack's message events can start a dub: a person's post (with files, or asking the bot),
    a thread broadcast; never a bot's post, an edit or a deletion, even when their messages hold files."""
    template = recorded("MessageFileSharePayload.json")["event"]["files"][0]
    _, files = shared_files(slack, template)
    mention = f"<@{slack.bot_user_id}> how does this work?"
    cases = {
        "MessagePayload.json": dict(type="message", user=ALICE, text=mention, thread_ts="", bot_id=""),
        "MessageThreadBroadcastPayload.json": dict(
            type="message",
            subtype="thread_broadcast",
            user=ALICE,
            text=mention,
            thread_ts="1700000000.000001",
        ),
        "MessageBotPayload.json": dict(type="message", subtype="bot_message", bot_id="B0OTHER", text=mention),
        "MessageChangedPayload.json": dict(type="message", subtype="message_changed", hidden=True),
        "MessageDeletedPayload.json": dict(
            type="message", subtype="message_deleted", hidden=True, deleted_ts="1700000000.000001"
        ),
    }
    read = {}
    for name, event in cases.items():
        payload = message_event(name, slack, **event)
        for inner in ("message", "previous_message", "root"):
            if isinstance(payload["event"].get(inner), dict):
                payload["event"][inner].update(user=ALICE, ts="1700000000.000001", text=mention)
                if "files" in payload["event"][inner]:
                    payload["event"][inner]["files"] = files
        assert_recorded_shape(name, payload)
        found = share_from_event(payload["event"], slack.team_id, slack.bot_user_id)
        read[name] = (found is not None, found.asked if found else False)
    assert read == {
        "MessagePayload.json": (True, True),  # asks the bot: worth an answer
        "MessageThreadBroadcastPayload.json": (True, True),  # a reply also sent to the channel
        "MessageBotPayload.json": (False, False),
        "MessageChangedPayload.json": (False, False),
        "MessageDeletedPayload.json": (False, False),
    }


def test_recorded_file_objects_are_read_as_video_and_audio(slack: FakeSlack) -> None:
    payload = file_share_payload(slack)
    message = SharedMessage.from_slack(payload["event"], CHANNEL, slack.team_id)
    assert [(f.name, f.kind, f.size > 0, bool(f.url)) for f in message.files] == [
        ("talk.mp4", "video", True, True),
        ("voice.mp3", "audio", True, True),
    ]
    assert message.stubs == ()
    body = recorded("MessageShortcutPayload.json")
    assert share_from_shortcut(body, slack.team_id, slack.bot_user_id) is None  # all blank: names no message
