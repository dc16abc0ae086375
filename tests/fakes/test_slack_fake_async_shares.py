"""The Slack stand-in's knobs for Slack's awkward sides: asynchronous sharing of completed uploads, a lost
answer ("drop"), a repeated completion, and history pages capped at 15 (Tier 1 apps)."""

from __future__ import annotations

import httpx
import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from tests.fakes.slack_api import FakeSlack, Fault

CHANNEL = "C0FAKE"


def uploaded(slack: FakeSlack, client: WebClient) -> str:
    got = client.files_getUploadURLExternal(filename="result.mp4", length=5)
    httpx.post(str(got["upload_url"]), content=b"video", timeout=10).raise_for_status()
    return str(got["file_id"])


def completed(client: WebClient, file_id: str, thread: str) -> None:
    client.files_completeUploadExternal(files=[{"id": file_id}], channel_id=CHANNEL, thread_ts=thread)


def test_a_completed_upload_is_shared_only_after_enough_looks(slack: FakeSlack) -> None:
    client = WebClient(token=slack.bot_token, base_url=slack.api_url)
    thread = slack.add_message(CHANNEL, "job")["ts"]
    slack.share_after_info_calls = 2
    file_id = uploaded(slack, client)
    completed(client, file_id, thread)
    assert client.files_info(file=file_id)["file"]["shares"] == {}  # known, not shared yet
    assert slack.thread_files(CHANNEL, thread) == [] and slack.unshared() == 1
    assert CHANNEL in client.files_info(file=file_id)["file"]["shares"]["public"]
    assert [f["id"] for f in slack.thread_files(CHANNEL, thread)] == [file_id] and slack.unshared() == 0


def test_a_completed_upload_is_shared_after_a_delay_on_the_fakes_clock(slack: FakeSlack) -> None:
    client = WebClient(token=slack.bot_token, base_url=slack.api_url)
    thread = slack.add_message(CHANNEL, "job")["ts"]
    now = [100.0]
    slack.clock = lambda: now[0]
    slack.share_delay_s = 5.0
    completed(client, uploaded(slack, client), thread)
    assert slack.thread_files(CHANNEL, thread) == []
    now[0] += 5
    assert len(slack.thread_files(CHANNEL, thread)) == 1


@pytest.mark.parametrize("taken", [False, True])
def test_a_repeated_completion_is_refused_or_shares_twice(slack: FakeSlack, taken: bool) -> None:
    client = WebClient(token=slack.bot_token, base_url=slack.api_url)
    thread = slack.add_message(CHANNEL, "job")["ts"]
    slack.share_after_info_calls = 1
    slack.repeat_completion_shares = taken
    file_id = uploaded(slack, client)
    completed(client, file_id, thread)
    if taken:
        completed(client, file_id, thread)  # while the first share is on its way: taken again
    else:
        with pytest.raises(SlackApiError) as refused:
            completed(client, file_id, thread)
        assert refused.value.response["error"] == "file_not_found"
    client.files_info(file=file_id)
    assert len(slack.thread_files(CHANNEL, thread)) == (2 if taken else 1)


def test_a_dropped_answer_leaves_the_work_done(slack: FakeSlack) -> None:
    client = WebClient(token=slack.bot_token, base_url=slack.api_url, retry_handlers=[])
    thread = slack.add_message(CHANNEL, "job")["ts"]
    file_id = uploaded(slack, client)
    slack.inject("files.completeUploadExternal", Fault("drop"))
    with pytest.raises(Exception) as lost:
        completed(client, file_id, thread)
    assert not isinstance(lost.value, SlackApiError)  # no answer at all, not an error answer
    assert [f["id"] for f in slack.thread_files(CHANNEL, thread)] == [file_id]


def test_history_pages_are_capped_and_followed_by_cursor(slack: FakeSlack) -> None:
    client = WebClient(token=slack.bot_token, base_url=slack.api_url)
    slack.max_page_size = 15
    parent = slack.add_message(CHANNEL, "parent")["ts"]
    for n in range(20):
        slack.add_message(CHANNEL, f"reply {n}", thread_ts=parent)
    first = client.conversations_replies(channel=CHANNEL, ts=parent, limit=200)
    assert len(first["messages"]) == 15 and first["has_more"] is True
    cursor = first["response_metadata"]["next_cursor"]
    rest = client.conversations_replies(channel=CHANNEL, ts=parent, limit=200, cursor=cursor)
    assert len(rest["messages"]) == 6 and rest["response_metadata"]["next_cursor"] == ""
    assert len(client.conversations_history(channel=CHANNEL)["messages"]) == 1  # replies are not history
