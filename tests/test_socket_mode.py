"""Socket Mode: the same `/lipsync` flow over Slack's WebSocket connection instead of HTTP."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.fakes.jogg_api import FakeJogg, Outcome
from tests.fakes.server import wait_until
from tests.fakes.slack_api import FakeSlack
from tests.harness import BotThread


def test_command_over_socket_mode_is_acked_and_answered_in_the_thread(
    start_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg
) -> None:
    jogg.default_outcome = Outcome("success", polls=1, duration_seconds=60)
    bot = start_bot(slack_app_token=slack.app_token, slack_signing_secret=None)
    assert slack.calls_to("apps.connections.open")  # opened with the app-level token
    # Socket Mode needs no public URL: PORT serves only /healthz, which reports the connection.
    assert httpx.post(f"{bot.url}/slack/events", content=b"{}", timeout=5).status_code == 404
    assert httpx.get(f"{bot.url}/healthz", timeout=5).json()["slack_socket"] == "connected"

    payload = slack.command_payload(
        "https://cdn.example.com/a.mp4 https://cdn.example.com/b.mp3", channel_id="C0SOCK"
    )
    ack = slack.wait_ack(slack.send_envelope("slash_commands", payload))
    assert not ack.get("payload")  # a silent ack, as in HTTP mode

    parent = wait_until(lambda: (slack.messages("C0SOCK") or [None])[0])
    reply = wait_until(lambda: (slack.replies("C0SOCK", parent["ts"]) or [None])[0], timeout=15)
    [task] = jogg.tasks.values()
    assert jogg.result_url(task.task_id) in reply["text"] and "0.48 credits" in reply["text"]


def test_bad_input_over_socket_mode_is_answered_in_the_ack(
    start_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg
) -> None:
    start_bot(slack_app_token=slack.app_token, slack_signing_secret=None)
    payload = slack.command_payload("https://cdn.example.com/a.mp4")
    ack = slack.wait_ack(slack.send_envelope("slash_commands", payload))
    assert ack["payload"]["response_type"] == "ephemeral"
    assert "audio" in ack["payload"]["text"].lower()
    assert jogg.work_requests == []


def test_files_shared_over_socket_mode_are_dubbed_once_despite_a_retried_envelope(
    start_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg
) -> None:
    start_bot(slack_app_token=slack.app_token, slack_signing_secret=None)
    files = [
        slack.add_file("FSOCKV", "talk.mp4", "video/mp4", "mp4", b"\x00video" * 5000),
        slack.add_file("FSOCKA", "voice.mp3", "audio/mpeg", "mp3", b"\x00audio" * 3000),
    ]
    message = slack.add_message("C0SOCK", "", files=files)
    event = slack.event_payload({**message, "channel_type": "channel", "event_ts": message["ts"]})

    slack.wait_ack(slack.send_envelope("events_api", event))
    slack.wait_ack(slack.send_envelope("events_api", event, retry_attempt=1, retry_reason="timeout"))

    reply = wait_until(lambda: (slack.replies("C0SOCK", message["ts"]) or [None])[0], timeout=15)
    assert "talk.mp4" in str(reply["blocks"]) and "voice.mp3" in str(reply["blocks"])
    assert len(jogg.creates) == 1 and len(jogg.uploads) == 2
    assert len(slack.replies("C0SOCK", message["ts"])) == 1


def test_an_event_the_bot_has_no_listener_for_is_still_acked(
    start_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg
) -> None:
    # The app may be subscribed to more than the bot handles; an unacked envelope is redelivered by Slack.
    start_bot(slack_app_token=slack.app_token, slack_signing_secret=None)
    event = {"type": "reaction_added", "user": "U0ALICE", "reaction": "tada", "item": {"type": "message"}}
    ack = slack.wait_ack(slack.send_envelope("events_api", slack.event_payload(event)))
    assert not ack.get("payload")
    assert jogg.work_requests == [] and slack.calls_to("chat.postMessage") == []
