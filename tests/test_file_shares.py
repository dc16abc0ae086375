"""Files shared in Slack, end to end: `message` events and the message shortcut into the real Bolt app,
files downloaded from the test Slack and re-hosted at the test JoggAI, replies in the sharing thread."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis

from tests.fakes.jogg_api import FakeJogg
from tests.fakes.server import wait_until
from tests.fakes.slack_api import FakeSlack
from tests.harness import BotThread
from tests.payloads import event_callback, message_shortcut

CHANNEL = "C0MEDIA"
ALICE = "U0ALICE"


class Shared:
    """A file-share message seeded in the test Slack, and the bytes of its files."""

    def __init__(self, message: dict[str, Any], contents: dict[str, bytes]) -> None:
        self.message = message
        self.contents = contents

    @property
    def ts(self) -> str:
        return str(self.message["ts"])

    def event(self, **changes: Any) -> dict[str, Any]:
        """The `message` event Slack sends for it (subtype file_share, full file objects)."""
        event = {**self.message, "channel": CHANNEL, "channel_type": "channel", "event_ts": self.ts}
        event.update(changes)
        return event

    def sha(self, file_id: str) -> str:
        return hashlib.sha256(self.contents[file_id]).hexdigest()


MEDIA = {
    "mp4": ("video/mp4", "mp4"),
    "mov": ("video/quicktime", "mov"),
    "mp3": ("audio/mpeg", "mp3"),
    "wav": ("audio/wav", "wav"),
    "m4a": ("audio/mp4", "m4a"),
    "pdf": ("application/pdf", "pdf"),
}


def share(
    slack: FakeSlack,
    *names: str,
    text: str = "",
    thread_ts: str | None = None,
    user: str = ALICE,
    sizes: dict[str, int] | None = None,
) -> Shared:
    """Seed a message in CHANNEL sharing files with these names (random bytes, typed by extension)."""
    files, contents = [], {}
    for name in names:
        mimetype, filetype = MEDIA[name.rsplit(".", 1)[-1]]
        file_id = f"F{os.urandom(5).hex().upper()}"
        content = os.urandom((sizes or {}).get(name, 150_000))
        contents[file_id] = content
        files.append(slack.add_file(file_id, name, mimetype, filetype, content, user=user))
    message = slack.add_message(CHANNEL, text, user=user, thread_ts=thread_ts, files=files)
    return Shared(message, contents)


def file_ids(shared: Shared, *names: str) -> list[str]:
    by_name = {f["name"]: f["id"] for f in shared.message["files"]}
    return [by_name[n] for n in names]


def replies(slack: FakeSlack, thread_ts: str, count: int, timeout: float = 20) -> list[dict[str, Any]]:
    return wait_until(
        lambda: r if len(r := slack.replies(CHANNEL, thread_ts)) >= count else None, timeout=timeout
    )


def text_of(message: dict[str, Any]) -> str:
    return message.get("text", "") + "\n" + json.dumps(message.get("blocks") or [])


def settle(redis_client: redis.Redis, timeout: float = 15) -> None:
    wait_until(
        lambda: all(redis_client.zcard(f"{{lip}}:{lane}") == 0 for lane in ("submit", "poll", "send")),
        timeout=timeout,
    )


def reactions_on(slack: FakeSlack, ts: str) -> set[str]:
    return {name for channel, rts, name in set(slack.reactions) if channel == CHANNEL and rts == ts}


def creates(jogg: FakeJogg) -> list[dict[str, Any]]:
    return [c["body"] for c in list(jogg.creates)]


# ------------------------------------------------------------------------------------------- one share


def test_a_shared_video_and_audio_are_dubbed_and_answered_in_the_sharing_thread(
    bot: BotThread, slack: FakeSlack, jogg: FakeJogg, redis_client: redis.Redis
) -> None:
    shared = share(slack, "talk.mp4", "voice-fr.mp3", text="French version please")
    video_id, audio_id = file_ids(shared, "talk.mp4", "voice-fr.mp3")

    assert bot.event(event_callback(shared.event())).status_code == 200

    [reply] = replies(slack, shared.ts, 1)
    settle(redis_client)
    # The bytes reached JoggAI intact, declared with the right type and size, without any secret.
    uploads = {u.sha256: u for u in jogg.uploads}
    for file_id, content_type in ((video_id, "video/mp4"), (audio_id, "audio/mpeg")):
        upload = uploads[shared.sha(file_id)]
        assert upload.content_type == content_type
        assert upload.size == upload.declared_size == len(shared.contents[file_id])
    assert not jogg.put_had_api_key
    assert jogg.authorization_headers_seen == []
    # The task was made from JoggAI's asset URLs, never from a Slack URL.
    [body] = creates(jogg)
    assert body["video_url"].startswith(f"{jogg.base_url}/assets/")
    assert body["audio_url"].startswith(f"{jogg.base_url}/assets/")
    assert body["video_url"] != body["audio_url"]
    assert "slack" not in json.dumps(body) and slack.base_url not in json.dumps(body)
    # One reply, in the thread of the sharing message, with cover, link, cost and the file names.
    [task_id] = list(jogg.tasks)
    words = text_of(reply)
    assert jogg.result_url(task_id) in words and "0.10 credits" in words
    assert any(
        b.get("type") == "image" and b["image_url"] == jogg.cover_url(task_id) for b in reply["blocks"]
    )
    assert "talk.mp4" in words and "voice-fr.mp3" in words
    # The bot posted nothing of its own in the channel, and the reactions ended on "done".
    assert [m["ts"] for m in slack.messages(CHANNEL)] == [shared.ts]
    assert wait_until(lambda: reactions_on(slack, shared.ts) == {"white_check_mark"} or None, timeout=5)
    # The download used the bot token (the test Slack refuses anything else).
    assert slack.downloads and all(d.had_valid_token for d in slack.downloads)


def test_the_working_reaction_shows_while_the_dub_runs(
    start_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg, redis_client: redis.Redis
) -> None:
    from tests.fakes.jogg_api import Outcome

    jogg.default_outcome = Outcome("success", polls=30, duration_seconds=10)
    bot = start_bot(poll_interval_seconds=0.1)
    shared = share(slack, "talk.mp4", "voice.wav")
    bot.event(event_callback(shared.event()))
    assert wait_until(lambda: "hourglass_flowing_sand" in reactions_on(slack, shared.ts) or None, timeout=5)
    assert not slack.replies(CHANNEL, shared.ts)
    replies(slack, shared.ts, 1)
    assert wait_until(lambda: reactions_on(slack, shared.ts) == {"white_check_mark"} or None, timeout=5)


def test_one_video_and_three_audio_files_give_three_dubs_in_one_thread(
    bot: BotThread, slack: FakeSlack, jogg: FakeJogg, redis_client: redis.Redis
) -> None:
    shared = share(slack, "talk.mp4", "voice-fr.mp3", "voice-de.wav", "voice-es.m4a")
    video_id, *audio_ids = file_ids(shared, "talk.mp4", "voice-fr.mp3", "voice-de.wav", "voice-es.m4a")

    bot.event(event_callback(shared.event()))

    thread = replies(slack, shared.ts, 3)
    settle(redis_client)
    assert len(slack.replies(CHANNEL, shared.ts)) == 3
    for name in ("voice-fr.mp3", "voice-de.wav", "voice-es.m4a"):
        assert sum(name in text_of(r) for r in thread) == 1
    # The base video went to JoggAI once and serves all three tasks.
    video_uploads = [u for u in jogg.uploads if u.sha256 == shared.sha(video_id)]
    assert len(video_uploads) == 1
    assert len(jogg.uploads) == 4
    bodies = creates(jogg)
    assert len(bodies) == 3 and len({b["video_url"] for b in bodies}) == 1
    assert len({b["audio_url"] for b in bodies}) == 3
    assert {u.sha256 for u in jogg.uploads} == {shared.sha(f) for f in (video_id, *audio_ids)}
    assert wait_until(lambda: reactions_on(slack, shared.ts) == {"white_check_mark"} or None, timeout=5)


def test_the_playback_type_in_the_message_text_is_used(
    bot: BotThread, slack: FakeSlack, jogg: FakeJogg
) -> None:
    shared = share(slack, "talk.mp4", "voice.mp3", text="loop it: normal_reverse_by_audio")
    bot.event(event_callback(shared.event()))
    [reply] = replies(slack, shared.ts, 1)
    assert [b["playback_type"] for b in creates(jogg)] == ["normal_reverse_by_audio"]
    assert "normal_reverse_by_audio" in text_of(reply)


# --------------------------------------------------------------------------------------------- threads


def test_an_audio_reply_in_the_thread_of_a_video_is_paired_with_it(
    bot: BotThread, slack: FakeSlack, jogg: FakeJogg, redis_client: redis.Redis
) -> None:
    video = share(slack, "talk.mp4", text="normal_reverse")
    bot.event(event_callback(video.event()))
    time.sleep(0.5)
    assert creates(jogg) == [] and jogg.uploads == []
    assert slack.replies(CHANNEL, video.ts) == []  # a lone video without a mention: nothing at all

    audio = share(slack, "voice-de.wav", thread_ts=video.ts)
    bot.event(event_callback(audio.event()))

    [reply] = replies(slack, video.ts, 2)[1:]  # the audio message itself is the first reply
    settle(redis_client)
    assert reply.get("bot_id") and "voice-de.wav" in text_of(reply) and "talk.mp4" in text_of(reply)
    [body] = creates(jogg)
    assert body["playback_type"] == "normal_reverse"  # named in the video's message
    assert {u.sha256 for u in jogg.uploads} == {
        video.sha(file_ids(video, "talk.mp4")[0]),
        audio.sha(file_ids(audio, "voice-de.wav")[0]),
    }
    assert wait_until(lambda: reactions_on(slack, audio.ts) == {"white_check_mark"} or None, timeout=5)


def test_a_video_reply_in_the_thread_of_an_audio_is_paired_too(
    bot: BotThread, slack: FakeSlack, jogg: FakeJogg
) -> None:
    audio = share(slack, "voice.mp3")
    video = share(slack, "talk.mov", thread_ts=audio.ts)
    bot.event(event_callback(audio.event()))
    bot.event(event_callback(video.event()))
    replies(slack, audio.ts, 2)
    assert len(creates(jogg)) == 1


def test_a_lone_file_with_a_mention_gets_told_what_is_missing(
    bot: BotThread, slack: FakeSlack, jogg: FakeJogg
) -> None:
    shared = share(slack, "talk.mp4", text=f"<@{slack.bot_user_id}> can you dub this?")
    bot.event(event_callback(shared.event()))
    [advice] = replies(slack, shared.ts, 1)
    assert "audio" in advice["text"] and "talk.mp4" in advice["text"] and "thread" in advice["text"]
    time.sleep(0.3)
    assert creates(jogg) == [] and jogg.uploads == []


def test_a_mention_without_files_gets_short_help(bot: BotThread, slack: FakeSlack) -> None:
    message = slack.add_message(CHANNEL, f"<@{slack.bot_user_id}> how does this work?", user=ALICE)
    bot.event(event_callback({**message, "channel_type": "channel", "event_ts": message["ts"]}))
    [advice] = replies(slack, message["ts"], 1)
    assert "video" in advice["text"] and "audio" in advice["text"]


def test_ordinary_messages_and_other_files_start_nothing(
    bot: BotThread, slack: FakeSlack, jogg: FakeJogg
) -> None:
    chat = slack.add_message(CHANNEL, "lunch?", user=ALICE)
    bot.event(event_callback({**chat, "channel_type": "channel", "event_ts": chat["ts"]}))
    pdf = share(slack, "script.pdf", "talk.mp4")
    bot.event(event_callback(pdf.event()))
    time.sleep(0.8)
    assert slack.replies(CHANNEL, chat["ts"]) == [] and slack.replies(CHANNEL, pdf.ts) == []
    assert creates(jogg) == [] and jogg.uploads == [] and slack.downloads == []


def test_the_bots_own_uploads_are_ignored(bot: BotThread, slack: FakeSlack, jogg: FakeJogg) -> None:
    own = share(slack, "talk.mp4", "voice.mp3", user=slack.bot_user_id)
    bot.event(event_callback(own.event(bot_id="B0BOT")))
    time.sleep(0.8)
    assert creates(jogg) == [] and slack.downloads == [] and slack.replies(CHANNEL, own.ts) == []


def test_several_videos_and_audio_files_get_a_question_not_a_guess(
    bot: BotThread, slack: FakeSlack, jogg: FakeJogg
) -> None:
    shared = share(slack, "talk.mp4", "talk.mov", "voice.mp3", "voice.wav")
    bot.event(event_callback(shared.event()))
    [advice] = replies(slack, shared.ts, 1)
    assert "2 videos and 2 audio files" in advice["text"]
    assert creates(jogg) == [] and jogg.uploads == []


def test_a_message_asking_for_more_dubs_than_the_cap_starts_none_and_says_why(
    start_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg, redis_client: redis.Redis
) -> None:
    bot = start_bot(max_jobs_per_message=3)
    shared = share(slack, "talk.mp4", "fr.mp3", "de.wav", "es.m4a", "it.mp3")
    bot.event(event_callback(shared.event()))
    [advice] = replies(slack, shared.ts, 1)
    assert "4 dubs" in advice["text"] and "at most 3" in advice["text"]
    assert redis_client.keys("{lip}:job:*") == []
    assert creates(jogg) == [] and jogg.uploads == []
    # At the cap, the same kind of message is dubbed as usual.
    at_cap = share(slack, "talk.mp4", "fr.mp3", "de.wav", "es.m4a")
    bot.event(event_callback(at_cap.event()))
    replies(slack, at_cap.ts, 3, timeout=60)
    assert len(creates(jogg)) == 3


# ------------------------------------------------------------------------------------ exactly one job


def test_retries_and_duplicate_deliveries_make_one_job(
    bot: BotThread, slack: FakeSlack, jogg: FakeJogg, redis_client: redis.Redis
) -> None:
    shared = share(slack, "talk.mp4", "voice.mp3")
    first = event_callback(shared.event())
    deliveries = [
        (first, None),
        (first, 1),  # Slack's retries of the same event (X-Slack-Retry-Num)
        (first, 2),
        (event_callback(shared.event()), None),  # the same message under another event id
        (event_callback(shared.event(subtype="file_share")), None),
    ]
    with ThreadPoolExecutor(len(deliveries)) as pool:
        statuses = list(pool.map(lambda d: bot.event(d[0], retry_num=d[1]).status_code, deliveries))
    assert statuses == [200] * len(deliveries)

    replies(slack, shared.ts, 1)
    settle(redis_client)
    time.sleep(0.5)
    assert len(slack.replies(CHANNEL, shared.ts)) == 1
    assert len(creates(jogg)) == 1 and len(jogg.tasks) == 1
    assert len(jogg.uploads) == 2


# ------------------------------------------------------------------------------------------- shortcut


def test_the_message_shortcut_dubs_files_posted_before_the_bot_joined(
    bot: BotThread, slack: FakeSlack, jogg: FakeJogg, redis_client: redis.Redis
) -> None:
    shared = share(slack, "talk.mp4", "voice-fr.mp3", "voice-it.mp3")  # no event: the bot wasn't there
    payload = message_shortcut(shared.message, channel_id=CHANNEL, response_url=slack.response_url("sc1"))

    assert bot.shortcut(payload).status_code == 200

    [started] = wait_until(lambda: slack.responses.get("sc1"), timeout=5)
    assert "2 dubs" in started["text"] and started["response_type"] == "ephemeral"
    thread = replies(slack, shared.ts, 2)
    settle(redis_client)
    assert len(creates(jogg)) == 2 and all(f"<@{ALICE}>" in text_of(r) for r in thread)

    # Running it again on the same message starts nothing and says so.
    payload = message_shortcut(shared.message, channel_id=CHANNEL, response_url=slack.response_url("sc2"))
    bot.shortcut(payload)
    [again] = wait_until(lambda: slack.responses.get("sc2"), timeout=5)
    assert "already" in again["text"]
    time.sleep(0.3)
    assert len(creates(jogg)) == 2 and len(slack.replies(CHANNEL, shared.ts)) == 2


def test_the_shortcut_on_a_message_without_media_explains_privately(
    bot: BotThread, slack: FakeSlack, jogg: FakeJogg
) -> None:
    shared = share(slack, "script.pdf")
    bot.shortcut(message_shortcut(shared.message, channel_id=CHANNEL, response_url=slack.response_url("k")))
    [answer] = wait_until(lambda: slack.responses.get("k"), timeout=5)
    assert "no video or audio" in answer["text"]
    assert slack.replies(CHANNEL, shared.ts) == [] and creates(jogg) == []


def test_a_slack_connect_stub_is_resolved_with_files_info(
    bot: BotThread, slack: FakeSlack, jogg: FakeJogg
) -> None:
    shared = share(slack, "talk.mp4", "voice.mp3")
    stubs = [
        {"id": f["id"], "mode": "file_access", "file_access": "check_file_info"}
        for f in shared.message["files"]
    ]
    bot.event(event_callback(shared.event(files=stubs)))
    replies(slack, shared.ts, 1)
    assert len(slack.calls_to("files.info")) == 2 and len(creates(jogg)) == 1


# ----------------------------------------------------------------------------------------- bad files


def test_an_oversized_file_gets_a_clear_message_and_nothing_is_uploaded(
    start_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg
) -> None:
    bot = start_bot(max_file_mb=0.2)  # 200 kB
    shared = share(slack, "talk.mp4", "voice.mp3", sizes={"talk.mp4": 300_000})
    bot.event(event_callback(shared.event()))
    [advice] = replies(slack, shared.ts, 1)
    assert "talk.mp4" in advice["text"] and "0.3 MB" in advice["text"] and "0.2 MB" in advice["text"]
    time.sleep(0.3)
    assert slack.downloads == [] and jogg.uploads == [] and jogg.work_requests == []
    assert len(slack.replies(CHANNEL, shared.ts)) == 1


def test_a_missing_files_read_scope_is_reported_and_no_sign_in_page_is_uploaded(
    bot: BotThread, slack: FakeSlack, jogg: FakeJogg, redis_client: redis.Redis
) -> None:
    slack.missing_scopes.add("files:read")
    shared = share(slack, "talk.mp4", "voice.mp3")
    bot.event(event_callback(shared.event()))
    [reply] = replies(slack, shared.ts, 1)
    settle(redis_client)
    assert "files:read" in reply["text"] and "talk.mp4" in reply["text"]
    assert jogg.uploads == [] and creates(jogg) == []
    assert wait_until(lambda: reactions_on(slack, shared.ts) == {"x"} or None, timeout=5)


def test_uploads_count_toward_joggais_post_limit(
    start_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg, redis_client: redis.Redis
) -> None:
    jogg.post_limit_per_minute = 3
    bot = start_bot(jogg_posts_per_minute=3)
    shared = share(slack, "talk.mp4", "voice-fr.mp3", "voice-de.mp3")  # 3 uploads + 2 creates

    bot.event(event_callback(shared.event()))

    def posts() -> list[Any]:
        return [r for r in jogg.requests if r.method == "POST"]

    def waiting_in_line() -> bool:
        jobs = [redis_client.hget(key, "post_slot_ms") for key in redis_client.keys("{lip}:job:*")]
        return any(int(slot or 0) > 0 for slot in jobs)

    # The minute's three POSTs went out (uploads and a create, in whichever order the two jobs reached
    # them), and a job now waits for a slot in the next window instead of running into JoggAI's 429.
    assert wait_until(lambda: (len(posts()) >= 3 and waiting_in_line()) or None, timeout=15)
    assert len(posts()) == 3
    assert len(jogg.uploads) + len(jogg.tasks) == 3  # every POST was taken: none refused with a 429
