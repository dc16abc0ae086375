"""Jobs stored by the version before the typed job model (flat hashes, as its `Job.to_fields` wrote them)
still finish after the upgrade: each reaches what its requester sees at the end."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from bot.jobs.files import SlackFile
from bot.jobs.keys import job_key, queue_key
from bot.jobs.lanes import Lane
from bot.slack.out import close_client, make_client
from bot.slack.result_upload import ResultUploader
from tests.fakes.jogg_api import FakeJogg, Outcome
from tests.fakes.server import wait_until
from tests.fakes.slack_api import FakeSlack
from tests.harness import BotThread
from tests.payloads import block_actions
from tests.previous_version import BASE_DEFAULTS

TEAM, ALICE = "T0TEST", "U0ALICE"
VIDEO, AUDIO = "https://cdn.example.com/talk.mp4", "https://cdn.example.com/voice.mp3"


def text_of(message: dict[str, Any]) -> str:
    return message.get("text", "") + "\n" + json.dumps(message.get("blocks") or [])


def reply_with(slack: FakeSlack, channel: str, thread_ts: str, text: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        return next((r for r in slack.replies(channel, thread_ts) if text in text_of(r)), None)

    return wait_until(found, timeout=30)


def complete_an_upload(slack: FakeSlack, result_url: str, channel: str, thread_ts: str, tmp: Path) -> str:
    """What the previous version had done when it stopped at "completing": the result uploaded and its
    completion called (Slack shared it), the answer not yet recorded. Returns the file's id."""

    async def run() -> str:
        client = make_client(slack.bot_token, slack.api_url, timeout_s=5)
        uploader = ResultUploader(client=client, max_bytes=100 * 2**20, timeout_s=5.0, spool_dir=tmp)
        try:
            file_id = await uploader.upload(result_url, "dub.mp4")
            await uploader.complete(file_id, channel, thread_ts, "Dubbed video")
            return file_id
        finally:
            await uploader.aclose()
            await close_client(client)

    return asyncio.run(run())


class PreviousVersion:
    """Jobs in Redis as the previous version left them, and what Slack and JoggAI had seen of them."""

    def __init__(self, slack: FakeSlack, jogg: FakeJogg, client: redis.Redis, tmp: Path) -> None:
        self.slack, self.jogg, self.redis, self.tmp = slack, jogg, client, tmp
        self.now = int(time.time() * 1000)

    def store(self, lane: Lane, fields: dict[str, str], due_ms: int | None = None) -> str:
        self.redis.hset(job_key(fields["id"]), mapping=fields)
        self.redis.zadd(queue_key(lane), {fields["id"]: self.now if due_ms is None else due_ms})
        return fields["id"]

    def person(self, n: int, channel: str) -> dict[str, str]:
        """A command job's identity and inputs: job `n`, asked by ALICE in `channel`."""
        return {
            "id": f"{self.now:012x}{n:08x}",
            "team_id": TEAM,
            "channel": channel,
            "user": ALICE,
            "response_url": self.slack.response_url(channel),
            "video_url": VIDEO,
            "audio_url": AUDIO,
            "timeout_s": "1800",
        }

    def queued(self) -> str:
        """A queued command job, as `create` wrote it (the fields off their default, and its two times)."""
        times = {"created_ms": str(self.now), "updated_ms": str(self.now)}
        return self.store(Lane.SUBMIT, {**self.person(0, "C0QUEUED"), **times})

    def polling(self) -> str:
        """One being polled: its message posted, its task created at the provider."""
        parent = self.slack.add_message("C0POLLING", "Dubbing…", user=self.slack.bot_user_id, bot_id="B0BOT")
        self.jogg.seed_tasks(["task-old-poll"], Outcome("success", polls=1, duration_seconds=30))
        return self.store(
            Lane.POLL,
            {
                **BASE_DEFAULTS,
                **self.person(1, "C0POLLING"),
                "status": "processing",
                "created_ms": str(self.now - 20_000),
                "updated_ms": str(self.now - 1_000),
                "parent_ts": parent["ts"],
                "parent_state": "posted",
                "parent_attempt_ms": str(self.now - 19_000),
                "task_id": "task-old-poll",
                "submit_attempt_ms": str(self.now - 18_000),
                "polls": "3",
                "checked": "1",
            },
        )

    def shared(self) -> tuple[str, str]:
        """One from files shared in Slack, queued: the sharing message (its ts is returned) is its thread."""
        files = [
            self.slack.add_file("FVID", "talk.mp4", "video/mp4", "mp4", b"v" * 40_000),
            self.slack.add_file("FAUD", "voice.mp3", "audio/mpeg", "mp3", b"a" * 9_000),
        ]
        message = self.slack.add_message("C0FILES", "", user=ALICE, files=files)
        video, audio = (SlackFile.from_slack(f) for f in files)
        assert video is not None and audio is not None
        fields = {
            "id": f"{self.now:012x}{2:08x}",
            "team_id": TEAM,
            "channel": "C0FILES",
            "user": ALICE,
            "source": "files",
            "source_ts": message["ts"],
            "group": f"C0FILES:{message['ts']}",
            "group_size": "1",
            "video_file": video.to_json(),
            "audio_file": audio.to_json(),
            "parent_ts": message["ts"],
            "parent_state": "posted",
            "timeout_s": "1800",
            "created_ms": str(self.now),
            "updated_ms": str(self.now),
        }
        return self.store(Lane.SUBMIT, fields), message["ts"]

    def asked(self) -> str:
        """One whose requester was asked to confirm its quote, and has not answered yet."""
        quote = {
            "video_s": "62.5",
            "audio_s": "62.5",
            "quote": "0.50",
            "quote_unit": "credits",
            "cache_key": "",
        }
        # `cancel_by` present but empty, as a version that wrote whole hashes left it: not a cancel.
        asking = {"errors": "0", "confirm_state": "asked", "confirm_ms": str(self.now), "cancel_by": ""}
        times = {"created_ms": str(self.now), "updated_ms": str(self.now)}
        fields = {**self.person(3, "C0ASKED"), **times, **quote, **asking}
        return self.store(Lane.SUBMIT, fields, due_ms=self.now + 15_000)

    def uploading(self) -> tuple[str, str, str]:
        """One whose result upload was completing: Slack shared the video, the answer was never recorded.
        Returns the job's id, its message's ts and the uploaded file's id."""
        self.jogg.seed_tasks(["task-old-upload"], Outcome("success", polls=1, duration_seconds=30))
        bot = {"user": self.slack.bot_user_id, "bot_id": "B0BOT"}
        parent = self.slack.add_message("C0UPLOAD", "Dubbing…", **bot)
        reply = self.slack.add_message("C0UPLOAD", "Your dub is ready", thread_ts=parent["ts"], **bot)
        result_url = self.jogg.result_url("task-old-upload")
        file_id = complete_an_upload(self.slack, result_url, "C0UPLOAD", parent["ts"], self.tmp)
        outcome = {
            "status": "succeeded",
            "task_id": "task-old-upload",
            "polls": "4",
            "result_url": result_url,
            "cover_url": self.jogg.cover_url("task-old-upload"),
            "duration_s": "30",
            "cost": "0.24",
            "cost_unit": "credits",
            "took_ms": "59000",
        }
        posts = {"parent_ts": parent["ts"], "parent_state": "posted", "reply_state": "posted"}
        posts |= {"reply_ts": reply["ts"], "reply_attempt_ms": str(self.now - 2_000)}
        upload = {"upload_state": "completing", "upload_file_id": file_id}
        times = {"created_ms": str(self.now - 60_000), "updated_ms": str(self.now - 1_000), "checked": "1"}
        fields = {**BASE_DEFAULTS, **self.person(4, "C0UPLOAD"), **outcome, **posts, **upload, **times}
        return self.store(Lane.SEND, fields), parent["ts"], file_id


def test_jobs_stored_by_the_previous_version_finish_after_the_upgrade(
    start_bot: Callable[..., BotThread],
    slack: FakeSlack,
    jogg: FakeJogg,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    jogg.serve_results = True
    jogg.default_outcome = Outcome("success", polls=1, duration_seconds=30)
    before = PreviousVersion(slack, jogg, redis_client, tmp_path)
    before.queued()
    before.polling()
    [polled_message] = slack.messages("C0POLLING")
    _, shared_ts = before.shared()
    asked = before.asked()
    uploading, upload_ts, file_id = before.uploading()

    bot = start_bot(max_result_upload_mb=100)

    # The queued job posts its message and answers in its thread.
    [message_queued] = wait_until(lambda: slack.messages("C0QUEUED") or None, timeout=30)
    reply_with(slack, "C0QUEUED", message_queued["ts"], "/results/")
    # The polled one answers in its message's thread, with its task's result.
    reply_with(slack, "C0POLLING", polled_message["ts"], jogg.result_url("task-old-poll"))
    # The shared files are hosted, dubbed, and answered in the sharing message's thread.
    reply_with(slack, "C0FILES", shared_ts, "/results/")
    assert sorted(u.size for u in jogg.uploads) == [9_000, 40_000]
    # The upload is recognised as done: one video in the thread, and the job's message says it is over.
    wait_until(lambda: redis_client.zscore(queue_key(Lane.SEND), uploading) is None, timeout=30)
    assert [f["id"] for f in slack.thread_files("C0UPLOAD", upload_ts)] == [file_id]
    assert len(slack.replies("C0UPLOAD", upload_ts)) == 2  # the reply and the video, once each
    wait_until(lambda: "Done" in text_of(slack.message("C0UPLOAD", upload_ts) or {}), timeout=30)

    # The one waiting for its go-ahead still waits, and goes ahead on "Dub it".
    assert slack.messages("C0ASKED") == []
    click = block_actions(
        "quote_ok", asked, user_id=ALICE, message_ts="1.0", response_url=slack.response_url("ok")
    )
    assert bot.shortcut(click).status_code == 200
    [answer] = wait_until(lambda: slack.responses.get("ok"), timeout=20)
    assert "Dubbing it" in text_of(answer)
    [message_asked] = wait_until(lambda: slack.messages("C0ASKED") or None, timeout=30)
    reply_with(slack, "C0ASKED", message_asked["ts"], "/results/")

    assert len(jogg.creates) == 3  # the queued, the shared and the confirmed job; none twice
