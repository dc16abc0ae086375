"""Self-tests of the fake Slack's external file upload, views, users.info and tier rate limits, driven by
slack_sdk's real AsyncWebClient; and of the interactivity payload factories, routed by a real AsyncApp."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from functools import partial
from typing import Any, TypeVar

import aiohttp
import httpx
import pytest
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.request.payload_utils import is_block_actions, is_view_submission, to_action
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.web.async_client import AsyncWebClient

from tests.payloads import SIGNING_SECRET, block_actions, form_body, signed_headers, view_submission

from .slack_api import TIERS, UPLOAD, ExternalUpload, FakeSlack, Fault

CHANNEL = "C0TEST"
T = TypeVar("T")


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as server:
        yield server


def run(make: Callable[[AsyncWebClient], Awaitable[T]], slack: FakeSlack) -> T:
    """Run `make(client)` with a fresh AsyncWebClient (no retries) pointed at the fake."""

    async def main() -> T:
        client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url, retry_handlers=[])
        return await make(client)

    return asyncio.run(main())


def refusal(make: Callable[[AsyncWebClient], Awaitable[Any]], slack: FakeSlack) -> SlackApiError:
    with pytest.raises(SlackApiError) as caught:
        run(make, slack)
    return caught.value


def parent(slack: FakeSlack) -> str:
    return str(slack.add_message(CHANNEL, "Dubbing…", user=slack.bot_user_id)["ts"])


# -- external file upload ------------------------------------------------------------------------------


def test_files_upload_v2_into_a_thread(slack: FakeSlack) -> None:
    thread_ts = parent(slack)
    body = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40

    response = run(
        lambda c: c.files_upload_v2(
            channel=CHANNEL, thread_ts=thread_ts, content=body, filename="result.mp4", title="Result"
        ),
        slack,
    )

    file_id = response["file"]["id"]
    assert [(f["id"], f["title"]) for f in response["files"]] == [(file_id, "Result")]
    files = slack.thread_files(CHANNEL, thread_ts)
    assert [f["id"] for f in files] == [file_id]
    assert files[0]["size"] == len(body)
    assert files[0]["mimetype"] == "video/mp4" and files[0]["filetype"] == "mp4"
    assert slack.external_uploads == [
        ExternalUpload(
            file_id,
            "result.mp4",
            len(body),
            len(body),
            hashlib.sha256(body).hexdigest(),
            "application/octet-stream",
        )
    ]
    [reply] = slack.replies(CHANNEL, thread_ts)
    assert reply["upload"] is True and reply["user"] == slack.bot_user_id
    assert [f["id"] for f in reply["files"]] == [file_id]
    assert slack.messages(CHANNEL)[0]["reply_count"] == 1

    info = run(lambda c: c.files_info(file=file_id), slack)["file"]
    [share] = info["shares"]["public"][CHANNEL]
    assert share["ts"] == reply["ts"] and share["thread_ts"] == thread_ts
    assert info["channels"] == [CHANNEL] and info["title"] == "Result"


def test_manual_three_step_upload_with_a_streamed_body() -> None:
    chunks = [b"a" * 70_000, b"b" * 70_000, b"c" * 123]
    whole = b"".join(chunks)

    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    async def upload(client: AsyncWebClient) -> tuple[int, str, Any]:
        got = await client.files_getUploadURLExternal(filename="clip.mov", length=len(whole))
        async with aiohttp.ClientSession() as http, http.post(str(got["upload_url"]), data=body()) as posted:
            status, text = posted.status, await posted.text()
        done = await client.files_completeUploadExternal(
            files=[{"id": str(got["file_id"])}], channel_id=CHANNEL
        )
        return status, text, done

    with FakeSlack(keep_uploads=True) as slack:
        status, text, done = run(upload, slack)

        assert (status, text) == (200, f"OK - {len(whole)}")
        file_id = done["files"][0]["id"]
        assert done["files"][0]["title"] == "clip.mov"  # no title given: the file name
        [upload_record] = slack.external_uploads
        assert upload_record.size == len(whole) and upload_record.sha256 == hashlib.sha256(whole).hexdigest()
        assert slack.upload_content(file_id) == whole
        [message] = slack.messages(CHANNEL)  # no thread_ts: a top-level message
        assert message["files"][0]["id"] == file_id and "thread_ts" not in message
        # Kept bytes are served like any hosted file.
        url = slack.files[file_id]["url_private_download"]
        download = httpx.get(url, headers={"Authorization": f"Bearer {slack.bot_token}"})
        assert download.content == whole


def test_multipart_upload_and_private_files(slack: FakeSlack) -> None:
    async def upload(client: AsyncWebClient) -> Any:
        got = await client.files_getUploadURLExternal(filename="notes.txt", length=5, alt_txt="notes")
        form = aiohttp.FormData()
        form.add_field("token", "ignored")
        form.add_field("file", b"hello", filename="notes.txt", content_type="text/plain")
        async with aiohttp.ClientSession() as http, http.post(str(got["upload_url"]), data=form) as posted:
            assert posted.status == 200
        await client.files_completeUploadExternal(files=[{"id": str(got["file_id"])}])  # no channel
        return await client.files_info(file=str(got["file_id"]))

    info = run(upload, slack)["file"]
    assert info["shares"] == {} and info["is_public"] is False and info["alt_txt"] == "notes"
    assert slack.external_uploads[0].content_type == "text/plain"
    assert slack.external_uploads[0].sha256 == hashlib.sha256(b"hello").hexdigest()
    assert slack.messages(CHANNEL) == []


def test_a_body_of_the_wrong_length_is_refused(slack: FakeSlack) -> None:
    async def upload(client: AsyncWebClient) -> tuple[int, str]:
        got = await client.files_getUploadURLExternal(filename="result.mp4", length=10)
        async with httpx.AsyncClient() as http:
            posted = await http.post(str(got["upload_url"]), content=b"12345")
        with pytest.raises(SlackApiError) as caught:
            await client.files_completeUploadExternal(files=[{"id": str(got["file_id"])}], channel_id=CHANNEL)
        assert caught.value.response["error"] == "file_not_found"
        return posted.status_code, posted.text

    status, text = run(upload, slack)
    assert status == 400 and "declared 10, received 5" in text
    assert slack.external_uploads == [] and [u.size for u in slack.refused_uploads] == [5]
    assert slack.messages(CHANNEL) == [] and slack.files == {}


def test_completing_twice_posts_once(slack: FakeSlack) -> None:
    thread_ts = parent(slack)

    async def upload(client: AsyncWebClient) -> tuple[Any, SlackApiError]:
        got = await client.files_getUploadURLExternal(filename="result.mp4", length=3)
        async with httpx.AsyncClient() as http:
            await http.post(str(got["upload_url"]), content=b"abc")
        files: list[dict[str, str | None]] = [{"id": str(got["file_id"]), "title": "Result"}]
        first = await client.files_completeUploadExternal(
            files=files, channel_id=CHANNEL, thread_ts=thread_ts
        )
        with pytest.raises(SlackApiError) as caught:
            await client.files_completeUploadExternal(files=files, channel_id=CHANNEL, thread_ts=thread_ts)
        # The upload URL is dead once the file is completed.
        async with httpx.AsyncClient() as http:
            assert (await http.post(str(got["upload_url"]), content=b"abc")).status_code == 404
        return first, caught.value

    first, second = run(upload, slack)
    assert first["ok"] is True
    assert second.response["error"] == "file_not_found"
    assert len(slack.replies(CHANNEL, thread_ts)) == 1
    assert len(slack.thread_files(CHANNEL, thread_ts)) == 1


def test_upload_argument_and_channel_errors(slack: FakeSlack) -> None:
    assert (
        refusal(lambda c: c.files_getUploadURLExternal(filename="a.mp4", length=0), slack).response["error"]
        == "missing_argument"
    )
    bad_length = refusal(
        lambda c: c.api_call("files.getUploadURLExternal", params={"filename": "a", "length": "x"}), slack
    )
    assert bad_length.response["error"] == "invalid_arguments"
    slack.max_upload_size = 100
    assert (
        refusal(lambda c: c.files_getUploadURLExternal(filename="a.mp4", length=101), slack).response["error"]
        == "file_upload_size_restricted"
    )

    def upload_into(channel: str, client: AsyncWebClient) -> Awaitable[Any]:
        return client.files_upload_v2(channel=channel, content=b"x", filename="a.txt")

    slack.missing_channels.add("C0GONE")
    slack.not_joined.add("C0PUBLIC")
    for channel, error in (("C0GONE", "channel_not_found"), ("C0PUBLIC", "not_in_channel")):
        refused = refusal(partial(upload_into, channel), slack)
        assert refused.response["error"] == error
    assert slack.files == {}
    assert httpx.post(f"{slack.base_url}/upload/FNOSUCHFILE", content=b"x").status_code == 404


def test_faults_apply_to_the_new_methods_and_the_upload_url(slack: FakeSlack) -> None:
    slack.inject("files.completeUploadExternal", Fault("error", error="internal_error"))
    refused = refusal(lambda c: c.files_upload_v2(channel=CHANNEL, content=b"x", filename="a.txt"), slack)
    assert refused.response["error"] == "internal_error"
    assert slack.messages(CHANNEL) == []

    slack.inject(UPLOAD, Fault("http", status=503))
    with pytest.raises(SlackRequestError, match="status: 503"):
        run(lambda c: c.files_upload_v2(channel=CHANNEL, content=b"x", filename="a.txt"), slack)
    assert slack.messages(CHANNEL) == []

    run(lambda c: c.files_upload_v2(channel=CHANNEL, content=b"x", filename="a.txt"), slack)
    assert len(slack.messages(CHANNEL)) == 1


# -- views ---------------------------------------------------------------------------------------------


HOME = {"type": "home", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "*Jobs*"}}]}
MODAL = {
    "type": "modal",
    "callback_id": "lipsync_modal",
    "title": {"type": "plain_text", "text": "Lip-sync"},
    "submit": {"type": "plain_text", "text": "Start"},
    "blocks": [
        {
            "type": "input",
            "block_id": "video",
            "label": {"type": "plain_text", "text": "Video URL"},
            "element": {"type": "plain_text_input", "action_id": "url"},
        }
    ],
}


def test_views_publish_stores_the_home_view(slack: FakeSlack) -> None:
    first = run(lambda c: c.views_publish(user_id="U0ALICE", view=HOME), slack)["view"]
    # Slack names blocks sent without a block_id; otherwise the view comes back as published.
    sent = [{k: v for k, v in block.items() if k != "block_id"} for block in first["blocks"]]
    assert first["type"] == "home" and sent == HOME["blocks"] and first["id"].startswith("V")
    again = run(lambda c: c.views_publish(user_id="U0ALICE", view=HOME, hash=first["hash"]), slack)["view"]
    assert again["id"] == first["id"] and again["hash"] != first["hash"]
    assert slack.home_views["U0ALICE"] == again and slack.home_publishes["U0ALICE"] == 2

    def publish(view: dict[str, Any], client: AsyncWebClient) -> Awaitable[Any]:
        return client.views_publish(user_id="U0ALICE", view=view)

    stale = refusal(lambda c: c.views_publish(user_id="U0ALICE", view=HOME, hash=first["hash"]), slack)
    assert stale.response["error"] == "hash_conflict"
    too_long = {
        "type": "home",
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}],
    }
    for invalid in (
        too_long,
        MODAL,
        {"type": "home", "blocks": [{"type": "no_such_block"}]},
        {"type": "home"},
    ):
        refused = refusal(partial(publish, invalid), slack)
        assert refused.response["error"] == "invalid_arguments"
        assert refused.response["response_metadata"]["messages"][0].startswith("[ERROR] ")
    assert slack.home_publishes["U0ALICE"] == 2


def test_views_open_and_update(slack: FakeSlack) -> None:
    trigger = "1700000000.738474920.abcdef0123"
    opened = run(lambda c: c.views_open(trigger_id=trigger, view=MODAL), slack)["view"]
    assert opened["callback_id"] == "lipsync_modal" and opened["root_view_id"] == opened["id"]
    assert [(o.trigger_id, o.view_id) for o in slack.opened_views] == [(trigger, opened["id"])]
    assert (
        refusal(lambda c: c.views_open(trigger_id=trigger, view=MODAL), slack).response["error"]
        == "exchanged_trigger_id"
    )
    assert refusal(lambda c: c.views_open(trigger_id="nope", view=MODAL), slack).response["error"] == (
        "invalid_trigger_id"
    )

    changed = {**MODAL, "title": {"type": "plain_text", "text": "Working…"}}
    updated = run(lambda c: c.views_update(view_id=opened["id"], view=changed), slack)["view"]
    assert updated["id"] == opened["id"] and updated["title"]["text"] == "Working…"
    assert slack.views[opened["id"]] == updated and len(slack.view_updates) == 1
    assert (
        refusal(lambda c: c.views_update(view_id="VNOSUCH", view=changed), slack).response["error"]
        == "not_found"
    )


# -- users ---------------------------------------------------------------------------------------------


def test_users_info(slack: FakeSlack) -> None:
    slack.add_user("U0ADMIN", name="ada", is_admin=True, tz="Europe/Paris", tz_offset=3600)
    admin = run(lambda c: c.users_info(user="U0ADMIN"), slack)["user"]
    assert admin["id"] == "U0ADMIN" and admin["name"] == "ada" and admin["tz"] == "Europe/Paris"
    assert admin["is_admin"] is True and admin["is_owner"] is False
    alice = run(lambda c: c.users_info(user="U0ALICE", include_locale=True), slack)["user"]
    assert alice["is_admin"] is False and alice["locale"] == "en-US"
    assert refusal(lambda c: c.users_info(user="U0NOBODY"), slack).response["error"] == "user_not_found"


# -- tier rate limits ----------------------------------------------------------------------------------


def test_a_tier_limit_makes_the_fourth_update_a_429(slack: FakeSlack) -> None:
    now = [1000.0]
    slack.clock = lambda: now[0]
    slack.tier_limits = {"chat.update": 3}
    ts = run(lambda c: c.chat_postMessage(channel=CHANNEL, text="0"), slack)["ts"]

    async def updates(client: AsyncWebClient) -> None:
        for n in range(3):
            now[0] += 10
            await client.chat_update(channel=CHANNEL, ts=ts, text=str(n))

    run(updates, slack)
    limited = refusal(lambda c: c.chat_update(channel=CHANNEL, ts=ts, text="4"), slack)
    assert limited.response.status_code == 429 and limited.response["error"] == "ratelimited"
    # Updates at 1010, 1020, 1030; refused at 1030: the first leaves the window at 1070.
    assert limited.response.headers["Retry-After"] == "40"
    assert [u.text for u in slack.updates] == ["0", "1", "2"]  # the refused call changed nothing

    now[0] += 39
    assert (
        refusal(lambda c: c.chat_update(channel=CHANNEL, ts=ts, text="4"), slack).response.headers[
            "Retry-After"
        ]
        == "1"
    )
    now[0] += 1
    run(lambda c: c.chat_update(channel=CHANNEL, ts=ts, text="4"), slack)
    assert slack.updates[-1].text == "4"
    assert slack.ratelimited_calls == {"chat.update": 2}
    assert TIERS["chat.update"] == 50 and TIERS["views.publish"] == 100


def test_per_channel_windows(slack: FakeSlack) -> None:
    slack.tier_limits = {"chat.update": 1}
    slack.per_channel_limits = {"chat.update"}
    first = run(lambda c: c.chat_postMessage(channel="C1", text="a"), slack)["ts"]
    second = run(lambda c: c.chat_postMessage(channel="C2", text="b"), slack)["ts"]
    run(lambda c: c.chat_update(channel="C1", ts=first, text="a2"), slack)
    run(lambda c: c.chat_update(channel="C2", ts=second, text="b2"), slack)
    limited = refusal(lambda c: c.chat_update(channel="C1", ts=first, text="a3"), slack)
    assert limited.response.status_code == 429


# -- interactivity payloads ----------------------------------------------------------------------------


def test_payload_factories_are_routed_by_bolt(slack: FakeSlack) -> None:
    clicked = block_actions("lipsync_retry", "job-42", channel_id=CHANNEL, message_ts="1700000000.000100")
    submitted = view_submission("lipsync_modal", {"video": {"url": "https://example.com/v.mp4"}}, "job-42")
    assert is_block_actions(clicked) and is_view_submission(submitted)
    assert to_action(clicked) == clicked["actions"][0]  # type: ignore[index]

    seen: list[tuple[str, Any]] = []

    async def main() -> list[int]:
        client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
        app = AsyncApp(client=client, signing_secret=SIGNING_SECRET, process_before_response=True)

        @app.action("lipsync_retry")
        async def retry(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
            await ack()
            seen.append((action["value"], body["container"]["channel_id"]))

        @app.view("lipsync_modal")
        async def modal(ack: AsyncAck, view: dict[str, Any]) -> None:
            await ack()
            seen.append((view["private_metadata"], view["state"]["values"]["video"]["url"]["value"]))

        statuses = []
        for payload in (clicked, submitted):
            body = form_body({"payload": json.dumps(payload)})
            headers: dict[str, str | Sequence[str]] = dict(signed_headers(body))
            response = await app.async_dispatch(AsyncBoltRequest(body=body, headers=headers))
            statuses.append(response.status)
        return statuses

    assert asyncio.run(main()) == [200, 200]
    assert seen == [("job-42", CHANNEL), ("job-42", "https://example.com/v.mp4")]
