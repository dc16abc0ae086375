"""What Slack may put in a message's `files[]`: Slack Connect stubs (resolved with `files.info`) and numbers
that are not numbers (`-1e400`, NaN, 400-digit integers, strings, booleans), which must stay inert: a 2xx
or a 4xx for the delivery, never a 5xx, a traceback or a stuck share."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis

from bot.jobs.files import MAX_REPORTED_BYTES, SlackFile
from tests.fakes.jogg_api import FakeJogg
from tests.fakes.server import wait_until
from tests.fakes.slack_api import FakeSlack
from tests.harness import BotThread
from tests.payloads import event_callback, signed_headers
from tests.test_file_shares import creates, replies, share

# Raw JSON texts for a number field, as a hostile or broken sender might write them. Python's json reads
# 1e400 as inf and -1e400 as -inf, and NaN/Infinity as floats; 400 digits make an int too large for float.
HOSTILE_NUMBERS = [
    "-1e400",
    "1e400",
    "NaN",
    "Infinity",
    "-Infinity",
    "1" + "0" * 400,
    "-" + "9" * 400,
    "-5",
    "5.5",
    "1e-400",
    "true",
    "false",
    "null",
    '"12abc"',
    '"-5"',
    '"1e400"',
    '"' + "9" * 400 + '"',
    "[1]",
    '{"n": 1}',
]


@pytest.mark.parametrize("field", ["size", "duration_ms"])
@pytest.mark.parametrize("raw", HOSTILE_NUMBERS)
def test_a_hostile_number_in_a_file_object_reads_as_a_bounded_whole_number(field: str, raw: str) -> None:
    file = SlackFile.from_slack(
        {"id": "F0HOSTILE", "name": "talk.mp4", "mimetype": "video/mp4", field: json.loads(raw)}
    )
    assert file is not None
    value = getattr(file, field)
    assert isinstance(value, int) and 0 <= value <= MAX_REPORTED_BYTES


@pytest.mark.parametrize("field", ["size", "duration_ms"])
def test_a_signed_share_with_hostile_numbers_is_never_answered_5xx(
    field: str,
    bot: BotThread,
    slack: FakeSlack,
    redis_client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    statuses = {}
    for raw in [*HOSTILE_NUMBERS, "9" * 5000]:  # 5000 digits: more than Python parses into an int
        # A lone video, unasked: worked out (it waits for its audio) without starting a job.
        shared = share(slack, "talk.mp4")
        event = shared.event()
        event["files"][0][field] = "NUMBER-PLACEHOLDER"
        body = json.dumps(event_callback(event)).replace('"NUMBER-PLACEHOLDER"', raw)
        response = httpx.post(
            f"{bot.url}/slack/events",
            content=body,
            headers=signed_headers(body, content_type="application/json"),
            timeout=10,
        )
        statuses[raw[:12]] = response.status_code
    assert all(status < 500 for status in statuses.values()), statuses
    assert statuses["9" * 12] == 400  # Bolt could not read it: refused, not crashed
    # Every share was worked out, none left behind in the inbox to fail again and again.
    wait_until(lambda: redis_client.zcard("{lip}:inbox") == 0, timeout=20, message="an empty share inbox")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []


# ------------------------------------------------------------------------------------- Slack Connect stubs


@pytest.mark.parametrize(
    "stub_of",
    [
        pytest.param(lambda f: {"id": f["id"], "file_access": "check_file_info"}, id="no mode"),
        pytest.param(
            lambda f: {"id": f["id"], "name": f["name"], "file_access": "check_file_info"},
            id="a name and no mode",
        ),
        pytest.param(
            lambda f: {
                "id": f["id"],
                "name": f["name"],
                "mode": "hidden_by_limit",
                "file_access": "check_file_info",
            },
            id="another mode",
        ),
    ],
)
def test_a_slack_connect_stub_without_file_access_mode_is_resolved_with_files_info(
    stub_of: Callable[[dict[str, Any]], dict[str, Any]], bot: BotThread, slack: FakeSlack, jogg: FakeJogg
) -> None:
    shared = share(slack, "talk.mp4", "voice.mp3")
    stubs = [stub_of(f) for f in shared.message["files"]]
    bot.event(event_callback(shared.event(files=stubs)))
    replies(slack, shared.ts, 1)
    assert len(slack.calls_to("files.info")) == 2 and len(creates(jogg)) == 1
