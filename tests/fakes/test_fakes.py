"""Self-tests of the fakes, driven by the same real clients the bot uses (slack_sdk, httpx)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator

import httpx
import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode import SocketModeClient
from slack_sdk.socket_mode.client import BaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from .jogg_api import FakeJogg, Outcome
from .jogg_api import Fault as JoggFault
from .server import wait_until
from .slack_api import FakeSlack
from .slack_api import Fault as SlackFault

CHANNEL = "C0TEST"


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as server:
        yield server


@pytest.fixture
def jogg() -> Iterator[FakeJogg]:
    with FakeJogg(keep_uploads=True) as server:
        yield server


def web_client(slack: FakeSlack, timeout: float = 5) -> WebClient:
    # retry_handlers=[]: the SDK's default connection-error retry would hide what the fake did.
    # (The SDK annotates timeout as int, but urllib takes fractions of a second.)
    return WebClient(
        token=slack.bot_token,
        base_url=slack.api_url,
        timeout=timeout,  # type: ignore[arg-type]
        retry_handlers=[],
    )


def jogg_client(jogg: FakeJogg, api_key: str | None = None) -> httpx.Client:
    key = jogg.api_key if api_key is None else api_key
    return httpx.Client(base_url=jogg.base_url, headers={"x-api-key": key}, timeout=5)


# -- Slack ---------------------------------------------------------------------------------------


def test_thread_replies_and_metadata(slack: FakeSlack) -> None:
    client = web_client(slack)
    parent = client.chat_postMessage(channel=CHANNEL, text="Dubbing…")
    metadata = {"event_type": "lipsync_done", "event_payload": {"job_id": "j1"}}
    reply = client.chat_postMessage(channel=CHANNEL, thread_ts=parent["ts"], text="Done", metadata=metadata)
    assert float(reply["ts"]) > float(parent["ts"])

    with_meta = client.conversations_replies(channel=CHANNEL, ts=parent["ts"], include_all_metadata=True)
    assert [m["text"] for m in with_meta["messages"]] == ["Dubbing…", "Done"]
    assert with_meta["messages"][1]["metadata"] == metadata
    without = client.conversations_replies(channel=CHANNEL, ts=parent["ts"])
    assert "metadata" not in without["messages"][1]
    # `oldest` filters replies but the parent always comes back.
    later = client.conversations_replies(channel=CHANNEL, ts=parent["ts"], oldest=reply["ts"])
    assert [m["ts"] for m in later["messages"]] == [parent["ts"]]

    assert [m["ts"] for m in slack.messages(CHANNEL)] == [parent["ts"]]
    assert [m["ts"] for m in slack.replies(CHANNEL, parent["ts"])] == [reply["ts"]]
    with pytest.raises(SlackApiError) as err:
        client.chat_postMessage(channel=CHANNEL, thread_ts=reply["ts"], text="x")
    assert err.value.response["error"] == "thread_not_found"


def test_auth_and_channel_errors(slack: FakeSlack) -> None:
    bad = WebClient(token="xoxb-wrong", base_url=slack.api_url, retry_handlers=[])
    with pytest.raises(SlackApiError) as err:
        bad.auth_test()
    assert err.value.response["error"] == "invalid_auth"
    slack.not_in_channel.add("CPRIVATE")
    with pytest.raises(SlackApiError) as err:
        web_client(slack).chat_postMessage(channel="CPRIVATE", text="hi")
    assert err.value.response["error"] == "not_in_channel"


def test_unfetchable_image_is_invalid_blocks(slack: FakeSlack) -> None:
    slack.unfetchable_image_hosts.add("res.jogg.ai")
    blocks = [{"type": "image", "image_url": "https://res.jogg.ai/x.jpg", "alt_text": "cover"}]
    with pytest.raises(SlackApiError) as err:
        web_client(slack).chat_postMessage(channel=CHANNEL, text="t", blocks=blocks)
    assert err.value.response["error"] == "invalid_blocks"
    assert err.value.response["errors"] == ["downloading image failed [json-pointer:/blocks/0/image_url]"]
    assert slack.messages(CHANNEL) == []


def test_ratelimit_fault_gives_429_with_retry_after(slack: FakeSlack) -> None:
    slack.inject("chat.postMessage", SlackFault("ratelimit", retry_after=7))
    client = web_client(slack)
    with pytest.raises(SlackApiError) as err:
        client.chat_postMessage(channel=CHANNEL, text="hi")
    assert err.value.response.status_code == 429
    assert err.value.response.headers["Retry-After"] in ("7", ["7"])
    assert err.value.response["error"] == "ratelimited"
    assert slack.messages(CHANNEL) == []
    client.chat_postMessage(channel=CHANNEL, text="hi")  # the fault was consumed
    assert len(slack.messages(CHANNEL)) == 1


def test_error_fault_with_store_and_delay_faults(slack: FakeSlack) -> None:
    slack.inject("chat.postMessage", SlackFault("error", error="fatal_error", store=True))
    with pytest.raises(SlackApiError):
        web_client(slack).chat_postMessage(channel=CHANNEL, text="ambiguous")
    assert [m["text"] for m in slack.messages(CHANNEL)] == ["ambiguous"]

    # The client times out: stored before the sleep -> present; store=False -> never stored.
    slack.inject("chat.postMessage", SlackFault("delay", delay=1.0, store=True))
    slack.inject("chat.postMessage", SlackFault("delay", delay=1.0))
    for text in ("stored", "lost"):
        with pytest.raises(Exception, match="timed out"):
            web_client(slack, timeout=0.3).chat_postMessage(channel=CHANNEL, text=text)
    time.sleep(1.2)
    assert [m["text"] for m in slack.messages(CHANNEL)] == ["ambiguous", "stored"]


def test_file_download_needs_the_bot_token(slack: FakeSlack) -> None:
    file = slack.add_file("F0VIDEO01", "clip.mp4", "video/mp4", "mp4", content=b"\x00mp4bytes")
    assert web_client(slack).files_info(file="F0VIDEO01")["file"]["size"] == 9

    url = file["url_private_download"]
    anonymous = httpx.get(url)
    assert anonymous.status_code == 200
    assert anonymous.headers["content-type"].startswith("text/html")
    assert anonymous.text.startswith("<!DOCTYPE html>")
    authed = httpx.get(url, headers={"Authorization": f"Bearer {slack.bot_token}"})
    assert authed.content == b"\x00mp4bytes"
    assert [d.had_valid_token for d in slack.downloads] == [False, True]


def test_streamed_file(slack: FakeSlack) -> None:
    chunk = b"x" * (1 << 20)
    slack.add_file(
        "F0BIG0001", "big.mov", "video/quicktime", "mov", size=8 << 20, content_factory=lambda: [chunk] * 8
    )
    url = slack.files["F0BIG0001"]["url_private_download"]
    digest = hashlib.sha256()
    with httpx.stream("GET", url, headers={"Authorization": f"Bearer {slack.bot_token}"}) as response:
        assert response.headers["content-length"] == str(8 << 20)
        for part in response.iter_bytes():
            digest.update(part)
    assert digest.hexdigest() == hashlib.sha256(chunk * 8).hexdigest()


def test_socket_mode_envelope_and_ack(slack: FakeSlack) -> None:
    web = WebClient(base_url=slack.api_url, retry_handlers=[])
    client = SocketModeClient(app_token=slack.app_token, web_client=web)

    def on_request(socket: BaseSocketModeClient, request: SocketModeRequest) -> None:
        socket.send_socket_mode_response(SocketModeResponse(request.envelope_id, payload={"text": "on it"}))

    client.socket_mode_request_listeners.append(on_request)
    client.connect()
    try:
        envelope_id = slack.send_envelope(
            "slash_commands", slack.command_payload("https://v.mp4 https://a.mp3")
        )
        assert slack.wait_ack(envelope_id) == {"envelope_id": envelope_id, "payload": {"text": "on it"}}
    finally:
        client.close()


def test_response_url(slack: FakeSlack) -> None:
    response = httpx.post(slack.response_url("k1"), json={"text": "queued", "response_type": "ephemeral"})
    assert response.text == "ok"
    assert slack.responses["k1"] == [{"text": "queued", "response_type": "ephemeral"}]


# -- JoggAI --------------------------------------------------------------------------------------


def test_task_progresses_pending_processing_success(jogg: FakeJogg) -> None:
    with jogg_client(jogg) as client:
        body = {"video_url": "https://v.mp4", "audio_url": "https://a.mp3", "playback_type": "normal"}
        created = client.post("/v2/create_lip_sync_video", json=body).json()
        assert created["code"] == 0 and created["data"]["status"] == "pending"
        task_id = created["data"]["task_id"]

        statuses = [client.get(f"/v2/lip_sync_video/{task_id}").json()["data"] for _ in range(3)]
        assert [s["status"] for s in statuses] == ["pending", "processing", "success"]
        assert statuses[2]["data"] == {
            "result_url": f"https://res.jogg.ai/lipsync/{task_id}.mp4",
            "cover_url": f"https://res.jogg.ai/lipsync/{task_id}.jpg",
            "duration_seconds": 12.5,
        }
        found = client.get("/v2/lip_sync_video", params=body).json()
        assert found["data"]["task_id"] == task_id
        other = client.get("/v2/lip_sync_video", params={**body, "audio_url": "https://b.mp3"}).json()
        assert other["code"] == 10104
    assert jogg.polls[task_id] == 3
    assert jogg.creates[0]["headers"]["x-api-key"] == jogg.api_key  # header names are lower-cased


def test_failed_outcome_and_finish(jogg: FakeJogg) -> None:
    jogg.outcome_for_video["https://bad.mp4"] = Outcome("failed", polls=0, error_message="boom")
    with jogg_client(jogg) as client:
        bad = client.post(
            "/v2/create_lip_sync_video", json={"video_url": "https://bad.mp4", "audio_url": "a"}
        )
        data = client.get(f"/v2/lip_sync_video/{bad.json()['data']['task_id']}").json()["data"]
        assert data["status"] == "failed" and data["error"] == {"message": "boom"}

        slow = client.post("/v2/create_lip_sync_video", json={"video_url": "v", "audio_url": "a"})
        task_id = slow.json()["data"]["task_id"]
        jogg.finish(task_id, Outcome("success", polls=0, duration_seconds=31))
        data = client.get(f"/v2/lip_sync_video/{task_id}").json()["data"]
        assert data["status"] == "success" and data["data"]["duration_seconds"] == 31


def test_business_error_codes(jogg: FakeJogg) -> None:
    with jogg_client(jogg, api_key="wrong") as client:
        assert client.get("/v2/lip_sync_video/x").json()["code"] == 10105
    with jogg_client(jogg) as client:
        missing = client.post("/v2/create_lip_sync_video", json={"audio_url": "a"}).json()
        assert missing == {"code": 40000, "msg": "Parameter error: video_url is required", "data": None}
        assert client.get("/v2/lip_sync_video/unknown").json()["code"] == 10104

        jogg.inject("create", JoggFault("code", code=18020))
        jogg.inject("create", JoggFault("malformed"))
        jogg.inject("get", JoggFault("http", status=502))
        body = {"video_url": "v", "audio_url": "a"}
        assert client.post("/v2/create_lip_sync_video", json=body).json()["msg"] == "Insufficient credit"
        assert client.post("/v2/create_lip_sync_video", json=body).text == "<html>upstream error</html>"
        assert client.get("/v2/lip_sync_video/unknown").status_code == 502
    assert jogg.creates == []  # no fault above created a task


def test_post_rate_limit(jogg: FakeJogg) -> None:
    jogg.post_limit_per_minute = 2
    body = {"filename": "a.mp3", "content_type": "audio/mpeg"}
    with jogg_client(jogg) as client:
        codes = [client.post("/v2/upload/asset", json=body).json()["code"] for _ in range(3)]
    assert codes == [0, 0, 429]


def test_delayed_create_after_work_is_done(jogg: FakeJogg) -> None:
    jogg.inject("create", JoggFault("delay", delay=1.0, after=True))
    with jogg_client(jogg) as client, pytest.raises(httpx.ReadTimeout):
        client.post("/v2/create_lip_sync_video", json={"video_url": "v", "audio_url": "a"}, timeout=0.3)
    assert len(jogg.creates) == 1  # the provider did the work; a lookup will find it


def test_upload_flow(jogg: FakeJogg) -> None:
    payload = b"RIFF....WAVEfmt " * 1000
    with jogg_client(jogg) as client:
        body = {"filename": "voice.wav", "content_type": "audio/wav", "file_size": len(payload)}
        signed = client.post("/v2/upload/asset", json=body).json()["data"]
    wrong = httpx.put(signed["sign_url"], content=payload, headers={"Content-Type": "audio/mpeg"})
    assert wrong.status_code == 403 and "SignatureDoesNotMatch" in wrong.text
    ok = httpx.put(signed["sign_url"], content=payload, headers={"Content-Type": "audio/wav"})
    assert ok.status_code == 200

    (upload,) = jogg.uploads
    assert (upload.size, upload.declared_size) == (len(payload), len(payload))
    assert upload.sha256 == hashlib.sha256(payload).hexdigest()
    assert upload.headers["content-type"] == "audio/wav"
    assert httpx.get(signed["asset_url"]).content == payload
    assert not jogg.put_had_api_key
    assert jogg.authorization_headers_seen == []


def test_wait_until_reports_what_it_waited_for() -> None:
    with pytest.raises(AssertionError, match="the moon"):
        wait_until(lambda: False, timeout=0.05, message="the moon")
    assert wait_until(lambda: 42) == 42
