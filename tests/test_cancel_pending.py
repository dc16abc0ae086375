"""A Cancel of a job waiting for its provider's rate-limit slot ends it at once, also when it lands while a
step holds the job, and the slot it had reserved passes to the job behind it in line."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable

import pytest
import redis
from redis.asyncio import Redis

from bot.jobs.keys import job_key, queue_key
from bot.jobs.lanes import Lane
from bot.jobs.model import AudioTrack, Job, Media
from bot.jobs.store import Store
from bot.lanes.ratelimit import RateLimiter
from tests.fakes.jogg_api import FakeJogg, Outcome
from tests.fakes.server import wait_until
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_api import Fault as SlackFault
from tests.harness import BotThread
from tests.test_job_control import CHANNEL, buttons, click, parents, text_of

VIDEO = "https://cdn.example.com/talk.mp4"
AUDIO = "https://cdn.example.com/voice-fr.mp3"
WINDOW_MS = 60_000  # JoggAI's POST limit is per minute
# The first job's step is held (its queue note's chat.update answers once the test has clicked Cancel)
# while the second job queues up and the cancel lands; its reserved slot is this much later, so the hold
# comes before it.
HOLD_S = 8
HTTP_TIMEOUT_S = 15
LEASE_S = 30
EARLIER_POST = "earlier-post"


def redis_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def reserved_slots(client: redis.Redis, limiter_key: str) -> list[int]:
    """The Redis times of the slots in the limiter's log other than the earlier POST, earliest first."""
    return [int(s) for m, s in client.zrange(limiter_key, 0, -1, withscores=True) if m != EARLIER_POST]


def message_with(slack: FakeSlack, needle: str) -> dict[str, object] | None:
    return next((m for m in parents(slack) if needle in text_of(m)), None)


@pytest.mark.parametrize("when", ["while its step holds it", "while it waits in line"])
def test_a_cancelled_job_ends_at_once_and_its_slot_goes_to_the_next_in_line(
    start_bot: Callable[..., BotThread],
    slack: FakeSlack,
    jogg: FakeJogg,
    redis_client: redis.Redis,
    when: str,
) -> None:
    held = when == "while its step holds it"
    jogg.default_outcome = Outcome("never")
    bot = start_bot(jogg_posts_per_minute=1, lease_seconds=LEASE_S, http_timeout_seconds=HTTP_TIMEOUT_S)
    assert bot.bot.worker is not None
    limiter_key = bot.bot.worker.pipeline.providers["jogg"].limiter.key
    # JoggAI's one POST of the minute was made a little under a minute ago: the next slot is free soon
    # (in Redis time), not a whole window from now.
    free_in_ms = (HOLD_S if held else 0) * 1000 + 10_000
    redis_client.zadd(limiter_key, {EARLIER_POST: redis_ms(redis_client) - WINDOW_MS + free_in_ms})
    hold = threading.Event()  # the first job's queue note answers once the cancel is in, however slow
    if held:
        # At most just under the client's timeout, so the update simply succeeds late (and under the
        # lease, so no other claim takes the job meanwhile).
        slack.inject("chat.update", SlackFault("delay", delay=HTTP_TIMEOUT_S - 1, released=hold))

    bot.command(f"{VIDEO} {AUDIO}", response_url=slack.response_url("r1"))
    first = wait_until(lambda: message_with(slack, VIDEO), timeout=15)
    first_id = buttons(first)["job_cancel"]
    [first_slot] = wait_until(lambda: reserved_slots(redis_client, limiter_key), timeout=15)
    if not held:  # its step is over: it waits in the submit lane for its slot
        wait_until(lambda: redis_client.hget(f"{{lip}}:job:{first_id}", "queue_note"), timeout=15)
    bot.command(f"{VIDEO}?second {AUDIO}", response_url=slack.response_url("r2"))
    second = wait_until(lambda: message_with(slack, "second"), timeout=15)
    second_id = buttons(second)["job_cancel"]
    second_key = f"{{lip}}:job:{second_id}"
    wait_until(lambda: redis_client.hget(second_key, "queue_note"), timeout=15)  # in line behind the first
    second_slot = int(redis_client.hget(second_key, "post_slot_ms") or 0)
    assert second_slot >= first_slot + WINDOW_MS - 1000  # as things stand, a whole window later

    answer = click(bot, slack, "job_cancel", first)

    hold.set()
    if held:
        assert "Cancelling job" in answer  # a step held it: the cancel was pending
    else:
        assert "never sent to JoggAI" in answer
    [reply] = wait_until(lambda: slack.replies(CHANNEL, first["ts"]) or None, timeout=20)
    assert redis_ms(redis_client) < first_slot  # it ended without waiting for its slot
    assert "Cancelled by <@U0ALICE>" in text_of(reply) and "nothing was charged" in text_of(reply)

    # The second job takes the first one's slot: created as soon as it comes, not a window later.
    [create] = wait_until(lambda: jogg.creates or None, timeout=free_in_ms / 1000 + 20)
    assert create["body"]["video_url"] == f"{VIDEO}?second"
    attempted = int(redis_client.hget(second_key, "submit_attempt_ms") or 0)
    assert first_slot <= attempted < second_slot
    wait_until(lambda: redis_client.hget(second_key, "status") == "processing", timeout=10)
    assert [c["body"]["video_url"] for c in jogg.creates] == [f"{VIDEO}?second"]  # none for the first
    assert redis_client.hget(f"{{lip}}:job:{first_id}", "status") == "cancelled"


def test_a_slot_given_back_moves_the_line_up_by_one_passing_over_a_held_job(redis_url: str) -> None:
    # One POST a minute, and a line of four jobs behind the POST just made. The first is cancelled: the
    # jobs waiting behind it each come due one slot earlier; one a step holds at that moment keeps its slot.
    async def body() -> None:
        client = Redis.from_url(redis_url, decode_responses=True)
        store = Store.on(client)
        limiter = RateLimiter(redis=client, name="jogg:key", limit=1, window_ms=WINDOW_MS)
        line = ["a0", "b0", "c0", "d0"]
        for job_id in line:
            await store.records.create(
                Job(id=job_id, inputs=AudioTrack(video=Media(link="v"), audio=Media(link="a")))
            )
        assert await limiter.reserve("made") == (0, 0)
        claimed = await store.lanes.claim_lanes({Lane.SUBMIT: 10}, lease_ms=WINDOW_MS)
        token, now_ms = claimed.token, claimed.now_ms
        claimed_jobs = {job.id: job for job in claimed.jobs[Lane.SUBMIT]}
        slots = {}
        for job_id in line:
            wait_ms, _ = await limiter.reserve(job_id)
            slots[job_id] = now_ms + wait_ms
            if job_id != "b0":  # b0's step still holds it
                claimed_jobs[job_id].progress.post_slot_ms = slots[job_id]
                await store.lanes.reschedule(Lane.SUBMIT, claimed_jobs[job_id], token, wait_ms)

        moved = await limiter.give_back("a0")

        assert set(moved) == {"c0", "d0"}
        due = {job_id: int(await client.zscore(queue_key(Lane.SUBMIT), job_id) or 0) for job_id in line[2:]}
        stored = {job_id: int(await client.hget(job_key(job_id), "post_slot_ms") or 0) for job_id in line[2:]}
        assert abs(due["c0"] - slots["a0"]) < 1000 and abs(due["d0"] - slots["c0"]) < 1000
        assert stored == due
        log = sorted(int(score) for _, score in await client.zrange(limiter.key, 0, -1, withscores=True))
        assert len(log) == 4  # one slot fewer: only the line's last one was freed
        assert all(later - earlier >= WINDOW_MS for earlier, later in itertools.pairwise(log))
        assert await limiter.give_back("a0") == {}  # given back once
        await client.aclose()

    asyncio.run(body())
