"""Socket Mode: the same `/lipsync` flow over Slack's WebSocket connection instead of HTTP; /healthz says
ready only once connected; an ack that meets a closed connection is one warning; a quiet start."""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx
import pytest

from tests.fakes.jogg_api import FakeJogg, Outcome
from tests.fakes.server import wait_until
from tests.fakes.slack_api import FakeSlack, Fault
from tests.harness import BotThread


def socket_bot(start_bot: Callable[..., BotThread], slack: FakeSlack) -> BotThread:
    return start_bot(slack_app_token=slack.app_token, slack_signing_secret=None)


def health(bot: BotThread) -> httpx.Response:
    return httpx.get(f"{bot.url}/healthz", timeout=5)


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


def test_healthz_says_not_ready_until_the_first_connection_to_slack(
    start_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg
) -> None:
    slack_port = slack.port
    slack.stop()  # Slack unreachable: nothing answers at its address
    bot = socket_bot(start_bot, slack)
    answer = health(bot)
    # An orchestrator must neither route to it nor call it healthy: it has never reached Slack.
    assert answer.status_code == 503, answer.text
    assert answer.json()["slack_socket"].startswith("not connected yet")
    # Alive, though: a liveness probe has no reason to restart it (a restart would not reach Slack sooner).
    assert httpx.get(f"{bot.url}/livez", timeout=5).status_code == 200

    slack.bind_port = slack_port
    slack.start()  # Slack reachable: the next retry connects
    wait_until(lambda: health(bot).status_code == 200, timeout=30)
    assert health(bot).json()["slack_socket"] == "connected"


def test_an_ack_that_meets_a_closed_connection_is_one_warning_and_the_bot_carries_on(
    start_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg, caplog: pytest.LogCaptureFixture
) -> None:
    bot = socket_bot(start_bot, slack)
    slack_port = slack.port
    # `/lipsync budget` asks Slack whether its user is an admin before its ack: hold that answer until the
    # connection is gone, as when Slack closes a connection it asked the bot to refresh.
    slack.inject("users.info", Fault("delay", delay=30))
    slack.send_envelope("slash_commands", slack.command_payload("budget"))
    wait_until(lambda: slack.calls_to("users.info"))
    slack.stop()

    def ack_lines() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "acknowledge" in r.getMessage()]

    wait_until(ack_lines, timeout=15)
    slack.bind_port = slack_port
    slack.start()
    wait_until(lambda: health(bot).status_code == 200, timeout=30)

    [line] = ack_lines()
    assert line.levelno == logging.WARNING and line.exc_info is None
    assert "closing transport" in line.getMessage() and "\n" not in line.getMessage()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []
    # Connected again, the bot answers the next request as ever.
    ack = slack.wait_ack(slack.send_envelope("slash_commands", slack.command_payload("list")))
    assert ack["payload"]["response_type"] == "ephemeral"


def test_the_bolt_app_is_built_without_a_token_warning(
    start_bot: Callable[..., BotThread],
    slack: FakeSlack,
    jogg: FakeJogg,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As deployed: SLACK_BOT_TOKEN is in the environment, where Bolt looks when it is given no token.
    monkeypatch.setenv("SLACK_BOT_TOKEN", slack.bot_token)
    socket_bot(start_bot, slack)
    assert [r.getMessage() for r in caplog.records if r.name.startswith("slack_bolt")] == []
