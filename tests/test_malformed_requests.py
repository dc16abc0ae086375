"""Malformed and forged requests: a short 4xx, one short log line, nothing stored, nothing posted.

Slack's requests arrive at the real bot over HTTP (and over Socket Mode at the end); the log is the bot's,
captured in-process. MARK is in every body so a test can tell whether a body reached the log.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import redis

from tests.fakes.server import wait_until
from tests.fakes.slack_api import FakeSlack
from tests.harness import BotThread
from tests.payloads import SIGNING_SECRET

MARK = "BODY-MARK-5c1e"
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
CHANNEL = "C0ODD"


def headers_for(
    body: bytes, content_type: str, *, timestamp: str | None = None, sign: bool = True
) -> dict[str, str]:
    """Slack's headers for `body` (any bytes, even not UTF-8); a wrong signature unless `sign`."""
    stamp = timestamp if timestamp is not None else str(int(time.time()))
    digest = hmac.new(
        SIGNING_SECRET.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256
    ).hexdigest()
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": f"v0={digest if sign else 'f' * 64}",
    }


def post(bot: BotThread, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{bot.url}/slack/events", content=body, headers=headers, timeout=10)


def event_body(slack: FakeSlack, event: object) -> bytes:
    return json.dumps({**slack.event_payload({}), "event": event, "mark": MARK}).encode()


def assert_quiet(caplog: pytest.LogCaptureFixture, redis_client: redis.Redis, slack: FakeSlack) -> None:
    """No error or traceback in the bot's log, no body in it, no job stored, nothing posted in Slack."""
    assert [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []
    assert MARK not in caplog.text
    assert redis_client.keys("{lip}:job:*") == []
    assert slack.calls_to("chat.postMessage") == []


def malformed_bodies(slack: FakeSlack) -> dict[str, tuple[bytes, str, int]]:
    """Bodies Bolt cannot read: name → (body, content type, status once signed)."""
    nested = '{"mark":"' + MARK + '","a":' + '{"a":' * 50_000 + "1" + "}" * 50_001
    return {
        "not UTF-8": (f"command=%2Flipsync&text={MARK}".encode() + b"\xff\xfe", FORM, 400),
        "unknown charset": (f"command=%2Flipsync&text={MARK}".encode(), f"{FORM}; charset=klingon", 415),
        "form sent as JSON": (f"command=%2Flipsync&text={MARK}".encode(), JSON, 400),
        "payload=notjson": (f"payload=notjson{MARK}".encode(), FORM, 400),
        "payload a list": (f"payload=%5B%22{MARK}%22%5D".encode(), FORM, 400),
        "truncated JSON": (event_body(slack, {"type": "message"})[:-20], JSON, 400),
        "nested JSON": (nested.encode(), JSON, 400),
        "event null": (event_body(slack, None), JSON, 400),
        "event a string": (event_body(slack, "message"), JSON, 400),
        "event a list": (event_body(slack, [{"type": "message"}]), JSON, 400),
        "event subtype a list": (event_body(slack, {"type": "message", "subtype": ["x"]}), JSON, 400),
        "shortcut team a number": (
            b"payload=" + json.dumps({"type": "message_action", "team": 5, "mark": MARK}).encode(),
            FORM,
            400,
        ),
    }


CASES = [
    "not UTF-8",
    "unknown charset",
    "form sent as JSON",
    "payload=notjson",
    "payload a list",
    "truncated JSON",
    "nested JSON",
    "event null",
    "event a string",
    "event a list",
    "event subtype a list",
    "shortcut team a number",
]


@pytest.fixture(autouse=True)
def production_log_levels(caplog: pytest.LogCaptureFixture) -> None:
    """Levels as `python -m bot` sets them, before the bot starts: Bolt copies the root level when built."""
    caplog.set_level(logging.WARNING, logger="apscheduler")  # one line per tick
    caplog.set_level(logging.INFO)  # last: set_level also sets the capturing handler's level


@pytest.mark.parametrize("case", CASES)
def test_a_signed_request_bolt_cannot_read_gets_a_4xx_without_a_traceback(
    case: str,
    bot: BotThread,
    slack: FakeSlack,
    redis_client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    body, content_type, status = malformed_bodies(slack)[case]
    response = post(bot, body, headers_for(body, content_type))
    assert response.status_code == status
    assert len(response.content) < 100 and MARK not in response.text
    assert_quiet(caplog, redis_client, slack)


@pytest.mark.parametrize("case", CASES)
def test_an_unsigned_request_is_refused_before_its_body_is_read(
    case: str,
    bot: BotThread,
    slack: FakeSlack,
    redis_client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    body, content_type, _ = malformed_bodies(slack)[case]
    response = post(bot, body, headers_for(body, content_type, sign=False))
    assert response.status_code == 401
    assert_quiet(caplog, redis_client, slack)


@pytest.mark.parametrize("timestamp", ["abc", "", str(int(time.time()) - 600), "1e9", "-5"])
def test_a_bad_timestamp_is_refused_even_when_signed(
    timestamp: str,
    bot: BotThread,
    slack: FakeSlack,
    redis_client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = event_body(slack, {"type": "message", "channel": CHANNEL, "user": "U0ALICE", "text": "hi"})
    response = post(bot, body, headers_for(body, JSON, timestamp=timestamp))
    assert response.status_code == 401
    assert_quiet(caplog, redis_client, slack)


def test_forged_megabyte_requests_cost_one_short_log_line_each(
    bot: BotThread, slack: FakeSlack, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    event = {
        "type": "message",
        "channel": CHANNEL,
        "user": "U0ALICE",
        "text": MARK * (1_000_000 // len(MARK)),
    }
    body = event_body(slack, event)
    assert len(body) > 1_000_000

    def forge(_: int) -> int:
        return post(bot, body, headers_for(body, JSON, sign=False)).status_code

    with ThreadPoolExecutor(max_workers=20) as pool:
        assert list(pool.map(forge, range(20))) == [401] * 20
    assert len(caplog.text) < 20_000
    assert_quiet(caplog, redis_client, slack)


def file_share_event(slack: FakeSlack, text: str, video_size: str) -> bytes:
    """A signed-event body sharing a video and an audio file; the video's `size` is raw JSON text."""
    files = [
        slack.add_file("FODDV", "talk.mp4", "video/mp4", "mp4", b"\x00video" * 100),
        slack.add_file("FODDA", "voice.mp3", "audio/mpeg", "mp3", b"\x00audio" * 100),
    ]
    files[0]["size"] = "SIZE-PLACEHOLDER"
    message = slack.add_message(CHANNEL, text, files=files)
    event = {**message, "channel_type": "channel", "event_ts": message["ts"]}
    # Python's json would not write 1e400; Slack's parser on the bot's side reads it as infinity.
    return json.dumps(slack.event_payload(event)).replace('"SIZE-PLACEHOLDER"', video_size).encode()


@pytest.mark.parametrize("video_size", ["1e400", '"' + "9" * 400 + '"'])
def test_an_absurd_file_size_is_answered_as_too_large(
    video_size: str,
    bot: BotThread,
    slack: FakeSlack,
    redis_client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = file_share_event(slack, "", video_size)
    assert post(bot, body, headers_for(body, JSON)).status_code == 200
    [message] = slack.messages(CHANNEL)
    note = wait_until(lambda: (slack.replies(CHANNEL, message["ts"]) or [None])[0])
    assert "talk.mp4" in note["text"] and "limit" in note["text"]
    assert [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []
    assert redis_client.keys("{lip}:job:*") == []


def test_a_message_whose_files_field_is_not_a_list_reads_as_having_no_files(
    bot: BotThread, slack: FakeSlack, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    message = slack.add_message(CHANNEL, f"<@{slack.bot_user_id}> dub this")
    event = {**message, "files": 123, "channel_type": "channel", "event_ts": message["ts"]}
    body = json.dumps(slack.event_payload(event)).encode()
    assert post(bot, body, headers_for(body, JSON)).status_code == 200
    # Mentioned with no usable files: the bot says how it works, as for a message without files.
    help_note = wait_until(lambda: (slack.replies(CHANNEL, message["ts"]) or [None])[0])
    assert "Share a talking-head video" in help_note["text"]
    assert [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []
    assert redis_client.keys("{lip}:job:*") == []


@pytest.mark.parametrize(
    "odd",
    [
        {"event": None},
        {"event": [{"type": "message"}]},
        {"event": "message"},
        {"authorizations": 5},
        {"authorizations": [{"team_id": ["T1"]}]},
        {"team_id": 7},
        {"enterprise_id": {"id": "E1"}},
    ],
)
def test_a_socket_mode_envelope_bolt_cannot_read_is_acked_and_dropped(
    odd: dict[str, Any],
    start_bot: Callable[..., BotThread],
    slack: FakeSlack,
    redis_client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    start_bot(slack_app_token=slack.app_token, slack_signing_secret=None)
    event = {"type": "message", "channel": CHANNEL, "user": "U0ALICE", "text": f"<@{slack.bot_user_id}> hi"}
    payload: dict[str, Any] = {**slack.event_payload(event), **odd, "mark": MARK}
    slack.wait_ack(slack.send_envelope("events_api", payload))  # acked: Slack will not redeliver it
    assert_quiet(caplog, redis_client, slack)
