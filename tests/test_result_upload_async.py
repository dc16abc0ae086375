"""The result video into the job's thread when Slack or the provider is awkward about it.

- A result link that does not say its length (chunked) is spooled to a temporary file within
  MAX_RESULT_UPLOAD_MB, then uploaded; the file is gone afterwards whatever happened (success, over the
  cap, cancelled).
- `files.completeUploadExternal` shares the file asynchronously: `files.info` may show no shares for a
  while. After a completion whose answer was lost the bot looks again, with backoff, before any second
  completion; a repeated completion answered `file_not_found` means "look again", not a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis

from bot.slack.out import close_client, make_client
from bot.slack.result_upload import ResultUploader, UploadFailed
from tests.fakes.jogg_api import FakeJogg, Outcome
from tests.fakes.media_server import Item, MediaServer
from tests.fakes.server import wait_until
from tests.fakes.slack_api import FakeSlack, Fault
from tests.harness import REPO, BotThread
from tests.test_providers import settle

CHANNEL = "C0GENERAL"
VIDEO = "https://cdn.example.com/talk.mp4"
AUDIO = "https://cdn.example.com/voice-fr.mp3"
T = TypeVar("T")


def text_of(message: dict[str, Any]) -> str:
    return message.get("text", "") + "\n" + json.dumps(message.get("blocks") or [])


def job_thread(slack: FakeSlack) -> str:
    """The ts of the job's message (the thread the result goes to)."""
    return str(wait_until(lambda: (slack.messages(CHANNEL) or [None])[0], timeout=10)["ts"])


def spools(directory: Path) -> list[str]:
    """Spool files of this process in `directory`: names in it, and open descriptors to (deleted) files
    in it. Either means disk space still taken."""
    names = [p.name for p in directory.iterdir()]
    fds = Path("/proc/self/fd")
    open_ones = []
    for fd in fds.iterdir() if fds.exists() else []:
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith(str(directory)):
                open_ones.append(target)
    return names + open_ones


def with_uploader(
    slack: FakeSlack,
    max_bytes: int,
    spool_dir: Path,
    use: Callable[[ResultUploader], Awaitable[T]],
    **options: Any,
) -> T:
    """Run `use` with a ResultUploader talking to the fake Slack, as the bot builds it."""

    async def run() -> T:
        client = make_client(slack.bot_token, slack.api_url, timeout_s=5)
        uploader = ResultUploader(
            client=client, max_bytes=max_bytes, timeout_s=5.0, spool_dir=spool_dir, **options
        )
        try:
            return await use(uploader)
        finally:
            await uploader.aclose()
            await close_client(client)

    return asyncio.run(run())


# ------------------------------------------------------------------------------ results without a length


def test_a_result_without_a_length_is_uploaded_into_the_thread(
    start_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg, redis_client: redis.Redis
) -> None:
    jogg.serve_results = True
    jogg.result_sends_length = False  # chunked: the provider does not say how large the video is
    jogg.result_size = 900_000
    jogg.default_outcome = Outcome("success", polls=1)
    bot = start_bot(max_result_upload_mb=100)
    bot.command(f"{VIDEO} {AUDIO}", response_url=slack.response_url("r"))
    thread = job_thread(slack)
    [file] = wait_until(lambda: slack.thread_files(CHANNEL, thread) or None, timeout=20)
    settle(redis_client)
    [task] = jogg.tasks.values()
    [upload] = slack.external_uploads
    assert upload.sha256 == hashlib.sha256(jogg.result_bytes(task.task_id)).hexdigest()
    assert upload.size == upload.declared_length == 900_000 and file["id"] == upload.file_id
    assert all("couldn't put the video" not in text_of(r) for r in slack.replies(CHANNEL, thread))


def test_a_result_without_a_length_over_the_cap_is_refused_once_past_it(
    slack: FakeSlack, tmp_path: Path
) -> None:
    with MediaServer() as media:
        # Endless: only the cap can end this download.
        url = media.add("/endless.mp4", Item(body=bytes(64 * 1024), content_type="video/mp4", endless=True))
        with pytest.raises(UploadFailed) as refused:
            with_uploader(slack, 1_000_000, tmp_path, lambda up: up.upload(url, "lipsync-endless.mp4"))
        wait_until(lambda: "/endless.mp4" in media.gone, timeout=10, message="the download to stop")
    assert refused.value.permanent
    assert "over the 1 MB upload limit (MAX_RESULT_UPLOAD_MB)" in refused.value.reason
    assert slack.calls_to("files.getUploadURLExternal") == [] and slack.external_uploads == []
    assert spools(tmp_path) == []


def test_a_spooling_upload_cancelled_midway_leaves_no_file(slack: FakeSlack, tmp_path: Path) -> None:
    async def cancel_while_spooling(uploader: ResultUploader) -> bool:
        upload = asyncio.create_task(uploader.upload(url, "lipsync-cancelled.mp4"))
        # Wait until the spool file exists and holds a few MB, then stop the step (e.g. the bot stops).
        while not (spools(tmp_path) and media.sent["/endless.mp4"] > 3_000_000):
            assert not upload.done(), upload
            await asyncio.sleep(0.01)
        upload.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await upload
        return upload.cancelled()

    with MediaServer() as media:
        url = media.add("/endless.mp4", Item(body=bytes(64 * 1024), content_type="video/mp4", endless=True))
        assert with_uploader(slack, 10**12, tmp_path, cancel_while_spooling)
    assert spools(tmp_path) == [] and slack.external_uploads == []


# The child process: imports first, so the baseline includes the code, then one upload of a chunked result.
SPOOL_SCRIPT = """
import asyncio, json, sys
from pathlib import Path
from bot.slack.result_upload import ResultUploader
from bot.slack.out import close_client, make_client

def hwm_kb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))

async def main(cfg):
    client = make_client(cfg["token"], cfg["api_url"], timeout_s=10)
    uploader = ResultUploader(
        client=client, max_bytes=cfg["max_bytes"], timeout_s=10.0, spool_dir=Path(cfg["spool_dir"])
    )
    try:
        return await uploader.upload(cfg["url"], "lipsync-big.mp4")
    finally:
        await uploader.aclose()
        await close_client(client)

cfg = json.loads(sys.argv[1])
before = hwm_kb()
file_id = asyncio.run(main(cfg))
print(json.dumps({"hwm_before_kb": before, "hwm_after_kb": hwm_kb(), "file_id": file_id}))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc for VmHWM")
def test_a_large_result_without_a_length_is_spooled_to_disk_not_memory(
    slack: FakeSlack, tmp_path: Path
) -> None:
    size = 80 * 1024 * 1024
    body = bytes(range(256)) * (size // 256)
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    with MediaServer() as media:
        url = media.add("/big.mp4", Item(body=body, content_type="video/mp4", chunked=True))
        cfg = {
            "token": slack.bot_token,
            "api_url": slack.api_url,
            "max_bytes": 100 * 1_000_000,
            "spool_dir": str(spool_dir),
            "url": url,
        }
        done = subprocess.run(
            [sys.executable, "-c", SPOOL_SCRIPT, json.dumps(cfg)],
            env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO)},
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    [upload] = slack.external_uploads
    assert upload.file_id == report["file_id"] and upload.size == size
    assert upload.sha256 == hashlib.sha256(body).hexdigest()
    growth_mb = (report["hwm_after_kb"] - report["hwm_before_kb"]) / 1024
    assert growth_mb < 32, f"peak RSS grew {growth_mb:.1f} MB for an 80 MiB result"
    assert list(spool_dir.iterdir()) == []
    print(f"peak RSS growth {growth_mb:.1f} MB")


# ------------------------------------------------------------------------------- asynchronous sharing


def couldnt_upload_notes(slack: FakeSlack, thread: str) -> list[str]:
    return [text_of(r) for r in slack.replies(CHANNEL, thread) if "couldn't put the video" in text_of(r)]


@pytest.mark.parametrize("repeat", ["refused as file_not_found", "taken again (the race)"])
def test_a_lost_completion_answer_gives_one_video_and_no_failure_note(
    repeat: str,
    start_bot: Callable[..., BotThread],
    slack: FakeSlack,
    jogg: FakeJogg,
    redis_client: redis.Redis,
) -> None:
    jogg.serve_results = True
    jogg.default_outcome = Outcome("success", polls=1)
    # Slack completes the upload and the answer never arrives; files.info shows no share for a while.
    slack.inject("files.completeUploadExternal", Fault("drop"))
    if repeat.startswith("taken again"):
        # Slack takes a repeat made while the first share is on its way, and shares the file twice.
        slack.repeat_completion_shares = True
        slack.share_delay_s = 3.0
    else:
        slack.share_after_info_calls = 3  # a look too early sees "not shared"
    bot = start_bot(max_result_upload_mb=100)
    bot.command(f"{VIDEO} {AUDIO}", response_url=slack.response_url("r"))
    thread = job_thread(slack)
    wait_until(lambda: slack.thread_files(CHANNEL, thread) or None, timeout=30)
    settle(redis_client, timeout=30)
    wait_until(lambda: slack.unshared() == 0, timeout=10, message="every completion shared")
    assert len(slack.thread_files(CHANNEL, thread)) == 1
    assert couldnt_upload_notes(slack, thread) == []
    # It looked (files.info) instead of completing again.
    assert len(slack.calls_to("files.completeUploadExternal")) == 1


def test_a_repeated_completion_answered_file_not_found_is_not_a_failure(
    slack: FakeSlack, tmp_path: Path
) -> None:
    thread = slack.add_message(CHANNEL, "the job")["ts"]
    slack.share_after_info_calls = 3

    async def repeat_after_a_lost_answer(uploader: ResultUploader) -> None:
        with MediaServer() as media:
            url = media.add("/result.mp4", Item(body=b"\x00result" * 10_000, content_type="video/mp4"))
            file_id = await uploader.upload(url, "lipsync-result.mp4")
        slack.inject("files.completeUploadExternal", Fault("drop"))
        with pytest.raises(UploadFailed) as unclear:
            await uploader.complete(file_id, CHANNEL, thread, "Dubbed video")
        assert not unclear.value.permanent
        # Not shared yet, as far as files.info says: "look again", not "complete again".
        assert await uploader.is_shared(file_id, CHANNEL, thread) is None
        # A repeat anyway (another process, or a look window that ran out): Slack refuses it because the
        # first one took. That is no failure.
        await uploader.complete(file_id, CHANNEL, thread, "Dubbed video")
        assert await uploader.is_shared(file_id, CHANNEL, thread) is True

    with_uploader(slack, 10**9, tmp_path, repeat_after_a_lost_answer)
    assert len(slack.thread_files(CHANNEL, thread)) == 1


def test_a_completion_that_never_reached_slack_is_made_after_the_look_window(
    slack: FakeSlack, tmp_path: Path
) -> None:
    thread = slack.add_message(CHANNEL, "the job")["ts"]
    now = [1000.0]

    async def lost_before_slack(uploader: ResultUploader) -> None:
        with MediaServer() as media:
            url = media.add("/result.mp4", Item(body=b"\x00result" * 10_000, content_type="video/mp4"))
            file_id = await uploader.upload(url, "lipsync-result.mp4")
        slack.inject("files.completeUploadExternal", Fault("http", status=503))  # nothing done
        with pytest.raises(UploadFailed):
            await uploader.complete(file_id, CHANNEL, thread, "Dubbed video")
        assert await uploader.is_shared(file_id, CHANNEL, thread) is None  # maybe not visible yet
        now[0] += 59
        assert await uploader.is_shared(file_id, CHANNEL, thread) is None
        now[0] += 2  # a minute of looking: it is not coming
        assert await uploader.is_shared(file_id, CHANNEL, thread) is False
        await uploader.complete(file_id, CHANNEL, thread, "Dubbed video")
        assert await uploader.is_shared(file_id, CHANNEL, thread) is True

    with_uploader(slack, 10**9, tmp_path, lost_before_slack, share_settle_s=60.0, clock=lambda: now[0])
    assert len(slack.thread_files(CHANNEL, thread)) == 1
