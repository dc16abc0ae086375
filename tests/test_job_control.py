"""Jobs people can see and steer, end to end: Cancel / Retry / Dub again on the job's message, `/lipsync
list|status|cancel`, the queue position, the result video uploaded into the thread, and App Home."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from bot.jobs.model import short_id
from tests.fakes.jogg_api import FakeJogg, Outcome
from tests.fakes.server import wait_until
from tests.fakes.slack_api import UPLOAD, FakeSlack
from tests.fakes.slack_api import Fault as SlackFault
from tests.harness import BotProcess, BotThread, bot_env
from tests.payloads import block_actions, form_body, view_submission
from tests.test_providers import settle

CHANNEL = "C0GENERAL"
VIDEO = "https://cdn.example.com/talk.mp4"
AUDIO = "https://cdn.example.com/voice-fr.mp3"


def text_of(message: dict[str, Any]) -> str:
    return message.get("text", "") + "\n" + json.dumps(message.get("blocks") or [])


def ephemeral_text(response: Any) -> str:
    """All a person reads in a private answer: its text and its blocks."""
    return text_of(response.json()) if response.text else ""


def buttons(message: dict[str, Any]) -> dict[str, str]:
    """action_id → value of the buttons on a message."""
    found = {}
    for block in message.get("blocks") or []:
        if block.get("type") == "actions":
            for element in block.get("elements") or []:
                found[element["action_id"]] = element["value"]
    return found


def parents(slack: FakeSlack) -> list[dict[str, Any]]:
    return slack.messages(CHANNEL)


def click(
    bot: BotThread, slack: FakeSlack, action: str, message: dict[str, Any], user: str = "U0ALICE"
) -> str:
    """Click a button on `message` as `user`; returns the private answer's text (via response_url)."""
    key = f"click-{len(slack.responses)}-{action}-{user}"
    payload = block_actions(
        action,
        buttons(message)[action],
        user_id=user,
        message_ts=message["ts"],
        response_url=slack.response_url(key),
    )
    assert bot.shortcut(payload).status_code == 200
    return str(wait_until(lambda: slack.responses.get(key), timeout=10)[0].get("text", ""))


def job_message(slack: FakeSlack, index: int = 0) -> dict[str, Any]:
    return wait_until(lambda: parents(slack)[index] if len(parents(slack)) > index else None, timeout=10)


# ------------------------------------------------------------------------------------------------ cancel


def test_a_queued_job_cancelled_is_never_sent_and_says_so(
    start_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg, redis_client: redis.Redis
) -> None:
    jogg.default_outcome = Outcome("never")  # the first job keeps JoggAI's one POST slot of the minute busy
    bot = start_bot(jogg_posts_per_minute=1)
    bot.command(f"{VIDEO} {AUDIO}", response_url=slack.response_url("r1"))
    wait_until(lambda: len(jogg.creates) == 1)
    bot.command(f"{VIDEO}?second {AUDIO}", response_url=slack.response_url("r2"))
    second = wait_until(lambda: next((m for m in parents(slack) if "second" in text_of(m)), None))
    wait_until(lambda: "in line" in text_of(slack.message(CHANNEL, second["ts"]) or {}), timeout=15)
    second = slack.message(CHANNEL, second["ts"]) or second
    assert "1st in line for JoggAI, about" in text_of(second)  # its place, kept on its message

    answer = click(bot, slack, "job_cancel", second)

    assert "never sent to JoggAI" in answer
    [reply] = wait_until(lambda: slack.replies(CHANNEL, second["ts"]) or None)
    assert "Cancelled by <@U0ALICE>" in text_of(reply) and "nothing was charged" in text_of(reply)
    wait_until(lambda: "Cancelled" in (slack.message(CHANNEL, second["ts"]) or {}).get("text", ""))
    assert "job_cancel" not in buttons(slack.message(CHANNEL, second["ts"]) or {})
    assert [c["body"]["video_url"] for c in jogg.creates] == [VIDEO]  # never a create for the second


def test_cancel_is_for_the_requester_or_an_admin(
    start_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg, redis_client: redis.Redis
) -> None:
    jogg.default_outcome = Outcome("never")
    slack.add_user("U0BOB", name="bob")
    slack.add_user("U0ADMIN", name="ada", is_admin=True)
    bot = start_bot()
    bot.command(f"{VIDEO} {AUDIO}", response_url=slack.response_url("r"))
    message = job_message(slack)
    wait_until(lambda: jogg.tasks)

    assert "I have no job" in click(bot, slack, "job_cancel", message, "U0BOB")  # as for a missing job
    assert slack.replies(CHANNEL, message["ts"]) == []  # nothing happened

    answer = click(bot, slack, "job_cancel", message, "U0ADMIN")
    assert "JoggAI already had it and may charge for it" in answer
    [reply] = wait_until(lambda: slack.replies(CHANNEL, message["ts"]) or None)
    [task] = jogg.tasks.values()
    assert "Cancelled by <@U0ADMIN>" in text_of(reply) and task.task_id in text_of(reply)
    settle(redis_client)  # no longer tracked: in no lane, so never polled again
    assert redis_client.hget(f"{{lip}}:job:{buttons(message)['job_cancel']}", "status") == "cancelled"


def test_cancel_by_command_and_status_and_list(
    start_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg, redis_client: redis.Redis
) -> None:
    jogg.default_outcome = Outcome("success", polls=1, duration_seconds=30)
    bot = start_bot()
    bot.command(f"{VIDEO} {AUDIO}", response_url=slack.response_url("r1"))
    wait_until(lambda: slack.replies(CHANNEL, job_message(slack)["ts"]) or None)
    settle(redis_client)
    [job_id] = [k.split(":")[-1] for k in redis_client.keys("{lip}:job:*")]
    short = short_id(job_id)
    assert f"`{short}`" in text_of(job_message(slack))  # the short id is on the job's message

    status = ephemeral_text(bot.command(f"status {short}", response_url=""))
    assert f"Job `{short}`" in status and "done" in status and "0.24 credits" in status
    listing = ephemeral_text(bot.command("list", response_url=""))
    assert f"`{short}`" in listing and "0.24 credits" in listing and "Page 1 of 1" in listing
    assert "no job" in ephemeral_text(bot.command("status deadbeef", response_url=""))
    assert "already ended" in ephemeral_text(bot.command(f"cancel {short}", response_url=""))
    assert "no jobs yet" in ephemeral_text(bot.command("list", response_url="", user_id="U0BOB"))


# ------------------------------------------------------------------------------------------------- retry


def test_retry_after_a_failure_starts_one_linked_job_however_often_it_is_clicked(
    start_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg, redis_client: redis.Redis
) -> None:
    jogg.default_outcome = Outcome("failed", polls=1)
    bot = start_bot()
    bot.command(f"{VIDEO} {AUDIO} normal_reverse", response_url=slack.response_url("r"))
    first = job_message(slack)
    wait_until(lambda: "job_retry" in buttons(slack.message(CHANNEL, first["ts"]) or {}))
    first = slack.message(CHANNEL, first["ts"]) or first
    jogg.default_outcome = Outcome("success", polls=1)

    answers = [click(bot, slack, "job_retry", first) for _ in range(2)]  # a double click

    assert "Retrying job" in answers[0] and "already retried" in answers[1]
    second = job_message(slack, 1)
    wait_until(lambda: slack.replies(CHANNEL, second["ts"]) or None)
    settle(redis_client)
    assert len(parents(slack)) == 2  # one new job, not two
    assert [c["body"] for c in jogg.creates][1] == {
        "video_url": VIDEO,
        "audio_url": AUDIO,
        "playback_type": "normal_reverse",
    }
    new_short = short_id(buttons(slack.message(CHANNEL, second["ts"]) or {})["job_dub_again"])
    notes = [text_of(m) for m in slack.replies(CHANNEL, first["ts"])]
    assert any(f"`{new_short}`" in note and "retrying" in note for note in notes)  # linked in the old thread


def test_dub_again_opens_a_form_and_starts_a_job_with_the_new_audio(
    start_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg, redis_client: redis.Redis
) -> None:
    jogg.default_outcome = Outcome("success", polls=1)
    bot = start_bot()
    bot.command(f"{VIDEO} {AUDIO}", response_url=slack.response_url("r"))
    first = job_message(slack)
    wait_until(lambda: "job_dub_again" in buttons(slack.message(CHANNEL, first["ts"]) or {}))
    first = slack.message(CHANNEL, first["ts"]) or first
    payload = block_actions("job_dub_again", buttons(first)["job_dub_again"], message_ts=first["ts"])
    bot.shortcut(payload)
    [opened] = wait_until(lambda: slack.opened_views or None)
    assert opened.view["callback_id"] == "dub_again"

    values = {
        "audio": {"value": {"type": "plain_text_input", "value": "http://localhost/voice-de.mp3"}},
        "playback": {"value": {"type": "static_select", "selected_option": {"value": "normal_reverse"}}},
        "provider": {"value": {"type": "static_select", "selected_option": {"value": "jogg"}}},
    }
    refused = bot.shortcut(
        view_submission("dub_again", values, opened.view["private_metadata"], view_id="V1")
    )
    assert refused.json()["response_action"] == "errors" and "audio" in refused.json()["errors"]
    values["audio"]["value"]["value"] = "https://cdn.example.com/voice-de.mp3"
    for _ in range(2):  # a resent submission starts nothing more
        assert (
            bot.shortcut(
                view_submission("dub_again", values, opened.view["private_metadata"], view_id="V1")
            ).text
            == ""
        )

    second = job_message(slack, 1)
    wait_until(lambda: slack.replies(CHANNEL, second["ts"]) or None)
    settle(redis_client)
    assert len(parents(slack)) == 2
    assert jogg.creates[1]["body"] == {
        "video_url": VIDEO,
        "audio_url": "https://cdn.example.com/voice-de.mp3",
        "playback_type": "normal_reverse",
    }


# -------------------------------------------------------------------------------- the result in Slack


def test_the_result_video_is_uploaded_into_the_thread_once(
    start_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg, redis_client: redis.Redis
) -> None:
    jogg.serve_results = True
    jogg.result_size = 700_000
    jogg.default_outcome = Outcome("success", polls=1)
    bot = start_bot(max_result_upload_mb=100)
    bot.command(f"{VIDEO} {AUDIO}", response_url=slack.response_url("r"))
    message = job_message(slack)
    [file] = wait_until(lambda: slack.thread_files(CHANNEL, message["ts"]) or None, timeout=20)
    settle(redis_client)
    [task] = jogg.tasks.values()
    [upload] = slack.external_uploads
    assert upload.sha256 == hashlib.sha256(jogg.result_bytes(task.task_id)).hexdigest()
    assert upload.size == 700_000 and file["id"] == upload.file_id
    assert len(slack.thread_files(CHANNEL, message["ts"])) == 1


def test_an_oversized_result_keeps_the_link_and_says_why(
    start_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg, redis_client: redis.Redis
) -> None:
    jogg.serve_results = True
    jogg.result_size = 2_500_000
    bot = start_bot(max_result_upload_mb=1)
    bot.command(f"{VIDEO} {AUDIO}", response_url=slack.response_url("r"))
    message = job_message(slack)
    replies = wait_until(
        lambda: r if len(r := slack.replies(CHANNEL, message["ts"])) >= 2 else None, timeout=20
    )
    settle(redis_client)
    assert "over the 1 MB upload limit" in text_of(replies[1]) and "the link above works" in text_of(
        replies[1]
    )
    assert slack.external_uploads == [] and slack.thread_files(CHANNEL, message["ts"]) == []


# ----------------------------------------------------------------------------------------------- App Home


def test_app_home_is_published_for_the_requester_when_a_job_ends(
    start_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg
) -> None:
    jogg.default_outcome = Outcome("success", polls=1, duration_seconds=62.5)
    bot = start_bot()
    bot.command(f"{VIDEO} {AUDIO}", response_url=slack.response_url("r"))
    home = wait_until(lambda: slack.home_views.get("U0ALICE"), timeout=20)
    shown = json.dumps(home)
    assert "Your recent jobs" in shown and "0.50 credits" in shown and "For admins" not in shown

    slack.add_user("U0ADMIN", is_admin=True)
    event = {"type": "app_home_opened", "user": "U0ADMIN", "channel": "D0ADMIN", "tab": "home"}
    from tests.payloads import event_callback

    bot.event(event_callback(event))
    admin_home = json.dumps(wait_until(lambda: slack.home_views.get("U0ADMIN"), timeout=10))
    assert "For admins" in admin_home and "1000.0 credits" in admin_home


@pytest.mark.parametrize("where", ["mid-upload", "after completing, before hearing back"])
def test_a_bot_killed_during_the_result_upload_leaves_exactly_one_video(
    slack: FakeSlack, jogg: FakeJogg, redis_url: str, tmp_path: Path, where: str
) -> None:
    jogg.serve_results = True
    jogg.default_outcome = Outcome("success", polls=1)
    if where == "mid-upload":
        slack.inject(UPLOAD, SlackFault("delay", delay=60))  # the bytes never finish: the bot dies first
    else:  # Slack shares the file, and the answer never reaches the bot
        slack.inject("files.completeUploadExternal", SlackFault("delay", delay=60, store=True))
    env = bot_env(slack, jogg, tmp_path, REDIS_URL=redis_url, MAX_RESULT_UPLOAD_MB="100")
    bot = BotProcess(env, tmp_path).start()
    try:
        bot.command(f"{VIDEO} {AUDIO}", response_url=slack.response_url("r"))
        message = job_message(slack)
        method = "files.getUploadURLExternal" if where == "mid-upload" else "files.completeUploadExternal"
        wait_until(lambda: slack.calls_to(method), timeout=20)
        bot.kill()

        bot.start()
        wait_until(lambda: slack.thread_files(CHANNEL, message["ts"]) or None, timeout=30)
        wait_until(lambda: redis.Redis.from_url(redis_url).zcard("{lip}:send") == 0, timeout=30)
        [task] = jogg.tasks.values()
        [file] = slack.thread_files(CHANNEL, message["ts"])
        uploaded = next(u for u in slack.external_uploads if u.file_id == file["id"])
        assert uploaded.sha256 == hashlib.sha256(jogg.result_bytes(task.task_id)).hexdigest()
        assert len([r for r in slack.replies(CHANNEL, message["ts"]) if not r.get("files")]) == 1  # one reply
    finally:
        bot.stop()


def test_a_forged_click_is_refused_and_a_click_on_a_vanished_job_is_answered(
    start_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg, redis_client: redis.Redis
) -> None:
    bot = start_bot()
    payload = block_actions("job_cancel", "0190abcdef12345678", response_url=slack.response_url("gone"))
    body = form_body({"payload": json.dumps(payload)})
    forged = httpx.post(
        f"{bot.url}/slack/events", content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert forged.status_code == 401
    assert slack.responses.get("gone") is None

    assert bot.shortcut(payload).status_code == 200  # signed, but the job does not exist (any more)
    [answer] = wait_until(lambda: slack.responses.get("gone"), timeout=10)
    assert "I have no job" in answer["text"]
    assert redis_client.keys("{lip}:job:*") == [] and jogg.work_requests == []


def test_dubs_from_shared_files_can_be_cancelled_from_the_sharers_private_note(
    start_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg, redis_client: redis.Redis
) -> None:
    from tests.payloads import event_callback
    from tests.test_file_shares import CHANNEL as MEDIA
    from tests.test_file_shares import share

    jogg.default_outcome = Outcome("never")
    bot = start_bot()
    shared = share(slack, "talk.mp4", "voice-fr.mp3", "voice-de.mp3")
    bot.event(event_callback(shared.event()))
    [note] = wait_until(lambda: slack.ephemerals or None, timeout=15)
    assert note["user"] == "U0ALICE" and note["thread_ts"] == shared.ts
    elements = [e for b in note["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert len(elements) == 2 and len({e["action_id"] for e in elements}) == 2  # one Cancel per dub
    wait_until(lambda: len(jogg.tasks) == 2, timeout=15)

    first = elements[0]
    payload = block_actions(
        first["action_id"], first["value"], channel_id=MEDIA, response_url=slack.response_url("note")
    )
    bot.shortcut(payload)
    [answer] = wait_until(lambda: slack.responses.get("note"), timeout=10)
    assert "JoggAI already had it" in answer["text"]
    [reply] = wait_until(lambda: slack.replies(MEDIA, shared.ts) or None, timeout=15)
    assert "Cancelled by <@U0ALICE>" in text_of(reply)
    assert len(slack.replies(MEDIA, shared.ts)) == 1  # the other dub goes on
