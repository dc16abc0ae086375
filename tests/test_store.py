"""The job store's guarantees, against a real Redis: one owner per job, crashed owners' work comes back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import TypeVar

import pytest
from redis.asyncio import Redis

from bot.jobs.files import SlackFile
from bot.jobs.lanes import Lane, LeaseLost
from bot.jobs.model import AudioTrack, Identity, Job, Media, PostState, Status
from bot.jobs.store import Store
from bot.lanes.ratelimit import RateLimiter
from tests.previous_version import BASE_DEFAULTS

T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


async def _with_store(redis_url: str, body: object) -> object:
    redis = Redis.from_url(redis_url)
    try:
        return await body(Store.on(redis))  # type: ignore[operator]
    finally:
        await redis.aclose()


def test_racing_claimers_never_get_the_same_job(redis_url: str) -> None:
    async def body(_: Store) -> None:
        clients = [Redis.from_url(redis_url) for _ in range(4)]
        stores = [Store.on(c, worker_id=f"w{i}") for i, c in enumerate(clients)]
        for n in range(2000):
            await stores[0].records.create(
                Job(id=f"job{n:05d}", inputs=AudioTrack(video=Media(link="v"), audio=Media(link="a")))
            )

        async def drain(store: Store) -> list[str]:
            got: list[str] = []
            while True:
                jobs = (await store.lanes.claim_lanes({Lane.SUBMIT: 37}, lease_ms=60_000)).jobs[Lane.SUBMIT]
                if not jobs:
                    return got
                got += [j.id for j in jobs]

        results = await asyncio.gather(*(drain(s) for s in stores))
        claimed = [i for r in results for i in r]
        assert len(claimed) == 2000 and len(set(claimed)) == 2000
        assert all(results)  # the work was actually shared
        for c in clients:
            await c.aclose()

    run(_with_store(redis_url, body))


def test_a_crashed_owners_job_comes_back_after_its_lease(redis_url: str) -> None:
    async def body(store: Store) -> None:
        await store.records.create(Job(id="j1"))
        first = (await store.lanes.claim_lanes({Lane.SUBMIT: 10}, lease_ms=300)).jobs[Lane.SUBMIT]
        assert [j.id for j in first] == ["j1"]
        during = (await store.lanes.claim_lanes({Lane.SUBMIT: 10}, lease_ms=300)).jobs[Lane.SUBMIT]
        assert during == []  # leased: nobody else gets it
        await asyncio.sleep(0.4)
        after = (await store.lanes.claim_lanes({Lane.SUBMIT: 10}, lease_ms=300)).jobs[Lane.SUBMIT]
        assert [j.id for j in after] == ["j1"]

    run(_with_store(redis_url, body))


def test_an_owner_whose_lease_ran_out_cannot_change_the_job(redis_url: str) -> None:
    async def body(store: Store) -> None:
        await store.records.create(Job(id="j1"))
        old = await store.lanes.claim_lanes({Lane.SUBMIT: 1}, lease_ms=100)
        await asyncio.sleep(0.2)
        new = await store.lanes.claim_lanes({Lane.SUBMIT: 1}, lease_ms=60_000)
        [old_job], [new_job] = old.jobs[Lane.SUBMIT], new.jobs[Lane.SUBMIT]
        old_job.status = Status.FAILED
        with pytest.raises(LeaseLost):
            await store.lanes.move(Lane.SUBMIT, Lane.SEND, old_job, old.token)
        new_job.progress.task_id = "t1"
        await store.lanes.move(Lane.SUBMIT, Lane.POLL, new_job, new.token)
        job = await store.records.get("j1")
        assert job is not None and job.progress.task_id == "t1" and job.status is Status.QUEUED
        assert await store.lanes.counts() == {"submit": 0, "poll": 1, "send": 0}

    run(_with_store(redis_url, body))


def test_finishing_twice_queues_one_reply(redis_url: str) -> None:
    async def body(store: Store) -> None:
        await store.records.create(Job(id="j1"), lane=Lane.POLL)
        claimed = await store.lanes.claim_lanes({Lane.POLL: 1}, lease_ms=60_000)
        [job], token = claimed.jobs[Lane.POLL], claimed.token
        job.status = Status.SUCCEEDED
        await store.lanes.move(Lane.POLL, Lane.SEND, job, token)
        with pytest.raises(LeaseLost):  # a duplicate finish (e.g. a retried script) is refused
            await store.lanes.move(Lane.POLL, Lane.SEND, job, token)
        assert await store.lanes.counts() == {"submit": 0, "poll": 0, "send": 1}

    run(_with_store(redis_url, body))


def test_a_job_id_is_created_once(redis_url: str) -> None:
    async def body(store: Store) -> None:
        assert await store.records.create(Job(id="j1", inputs=AudioTrack(video=Media(link="first"))))
        assert not await store.records.create(Job(id="j1", inputs=AudioTrack(video=Media(link="second"))))
        job = await store.records.get("j1")
        assert job is not None and job.inputs.video.link == "first"

    run(_with_store(redis_url, body))


def test_rate_limiter_allows_the_limit_per_window_across_processes(redis_url: str) -> None:
    async def body(_: Store) -> None:
        a, b = Redis.from_url(redis_url), Redis.from_url(redis_url)
        limiters = [
            RateLimiter(redis=a, name="key", limit=3, window_ms=500),
            RateLimiter(redis=b, name="key", limit=3, window_ms=500),
        ]
        waits = [await limiters[n % 2].acquire() for n in range(5)]
        assert waits[:3] == [0, 0, 0] and all(0 < w <= 500 for w in waits[3:])
        time.sleep(waits[3] / 1000 + 0.05)
        assert await limiters[1].acquire() == 0
        await a.aclose()
        await b.aclose()

    run(_with_store(redis_url, body))


def test_callers_that_must_wait_for_the_rate_limit_queue_up_in_order(redis_url: str) -> None:
    # Two POSTs per second: six callers at once get now, now, then slots a second apart, each its own,
    # so a waiting job comes back once for its slot instead of racing the others for every freed one.
    async def body(store: Store) -> None:
        limiter = RateLimiter(redis=store.redis, name="key", limit=2, window_ms=1000)
        waits = [await limiter.acquire() for _ in range(6)]
        assert waits[:2] == [0, 0]
        for n in (2, 3):
            assert 800 < waits[n] <= 1000
        for n in (4, 5):
            assert 1800 < waits[n] <= 2000
        # No window ever holds more than two slots.
        slots = sorted(score for _, score in await store.redis.zrange(limiter.key, 0, -1, withscores=True))
        assert all(later - earlier >= 1000 for earlier, later in zip(slots, slots[2:], strict=False))

    run(_with_store(redis_url, body))


def test_a_job_whose_record_vanished_leaves_no_stub_behind(redis_url: str) -> None:
    async def body(store: Store) -> None:
        await store.records.create(Job(id="gone"))
        await store.redis.delete("{lip}:job:gone")  # e.g. expired, or removed by an operator
        jobs = (await store.lanes.claim_lanes({Lane.SUBMIT: 10}, lease_ms=60_000)).jobs[Lane.SUBMIT]
        assert jobs == []
        assert await store.redis.exists("{lip}:job:gone") == 0
        assert await store.lanes.counts() == {"submit": 0, "poll": 0, "send": 0}

    run(_with_store(redis_url, body))


def test_polls_may_be_claimed_a_little_early_but_a_lease_is_never_cut_short(redis_url: str) -> None:
    """The worker claims polls that are due within a short window (so they go out in batches, none late),
    but a job another claim still holds stays with it until its lease runs out, even within that window."""

    async def body(store: Store) -> None:
        await store.records.create(Job(id="held", status=Status.PROCESSING), lane=Lane.POLL)
        held = await store.lanes.claim_lanes({Lane.POLL: 1}, lease_ms=20_000)  # another process has it
        for job_id in ("soon", "later"):
            await store.records.create(Job(id=job_id, status=Status.PROCESSING), lane=Lane.POLL)
        mine = await store.lanes.claim_lanes({Lane.POLL: 10}, lease_ms=60_000)
        jobs, token = {job.id: job for job in mine.jobs[Lane.POLL]}, mine.token
        await store.lanes.reschedule(Lane.POLL, jobs["soon"], token, 10_000)
        await store.lanes.reschedule(Lane.POLL, jobs["later"], token, 60_000)
        claimed = await store.lanes.claim_lanes({Lane.POLL: 10}, 60_000, early_ms={Lane.POLL: 30_000})
        assert [job.id for job in claimed.jobs[Lane.POLL]] == ["soon"]
        await store.lanes.reschedule(
            Lane.POLL, held.jobs[Lane.POLL][0], held.token, 1000
        )  # still its owner's

    run(_with_store(redis_url, body))


def test_a_finished_job_keeps_a_compact_summary_for_a_week(redis_url: str) -> None:
    """Once its reply is sent, a job keeps what it was and how it ended, for a week, and drops what only
    served to get there: the private reply URL, the result and cover links (about 250 characters each as
    JoggAI signs them). The shared files' descriptions stay, for Retry and Dub again. Rewritten, the hash is
    stored compactly again."""
    signed = "?x-oss-expires=604800&x-oss-signature=" + "ab" * 80
    long_fields = {
        "response_url": "https://hooks.slack.com/commands/T0TEST/8000000000001/" + "x" * 24,
        "video_file": SlackFile(
            id="F1", name="talk.mp4", url="https://files.slack.com/" + "f" * 90
        ).to_json(),
    }

    async def body(store: Store) -> None:
        await store.records.create(
            Job(id="j1", inputs=AudioTrack(video=Media(link="https://cdn.example.com/talk.mp4"))),
            lane=Lane.POLL,
        )
        claimed = await store.lanes.claim_lanes({Lane.POLL: 1}, lease_ms=60_000)
        [polled], token = claimed.jobs[Lane.POLL], claimed.token
        polled.status, polled.progress.task_id = Status.SUCCEEDED, "task-1"
        polled.result.url = "https://res.jogg.ai/lipsync/task-1/output.mp4" + signed
        polled.result.cover_url = "https://res.jogg.ai/lipsync/task-1/cover.jpg" + signed
        polled.identity.response_url = long_fields["response_url"]
        polled.inputs.video.file = SlackFile.from_json(long_fields["video_file"])
        # bookkeeping
        polled.money.checked, polled.progress.errors = True, 0
        polled.posts.parent.attempt_ms, polled.progress.create_attempt_ms = 1796698098670, 17
        await store.lanes.move(Lane.POLL, Lane.SEND, polled, token)
        claimed = await store.lanes.claim_lanes({Lane.SEND: 1}, lease_ms=60_000)
        token, [job] = claimed.token, claimed.jobs[Lane.SEND]
        assert job.result.url.startswith("https://res.jogg.ai/")  # the reply has what it needs
        job.posts.reply.state, job.posts.reply.ts = PostState.POSTED, "1.2"
        await store.lanes.finish(Lane.SEND, job, token)

        kept = {k.decode(): v.decode() for k, v in (await store.redis.hgetall("{lip}:job:j1")).items()}
        for name in ("response_url", "result_url", "cover_url"):
            assert name not in kept
        assert kept["video_file"] == long_fields["video_file"]  # a retry of shared files starts from it
        assert kept["status"] == "succeeded" and kept["task_id"] == "task-1" and kept["reply_ts"] == "1.2"
        assert kept["video_url"] == "https://cdn.example.com/talk.mp4"
        assert "" not in kept.values()
        # What only served the steps (post-once attempts, turns, the gate's mark), the id (the key holds
        # it) and numbers at 0 go too; the job still reads back whole, with its id.
        for name in ("id", "parent_attempt_ms", "submit_attempt_ms", "reply_attempt_ms", "checked", "errors"):
            assert name not in kept
        assert "0" not in kept.values()
        ended = await store.records.get("j1")
        assert ended is not None and ended.id == "j1" and ended.status is Status.SUCCEEDED
        assert [job.id for job in await store.records.get_many(["j1"])] == ["j1"]
        assert 6.9 * 86400 < await store.redis.ttl("{lip}:job:j1") <= 7 * 86400
        encoding = await store.redis.object("encoding", "{lip}:job:j1")
        assert encoding in (b"ziplist", b"listpack")  # not "hashtable": several times the memory

    run(_with_store(redis_url, body))


def test_a_job_stored_by_the_previous_version_still_finishes_and_is_found_by_its_short_id(
    redis_url: str,
) -> None:
    """Before the day hashes of short ids, a job's hash held every field (its id too) and its short id was
    a key of its own: such a job is still claimed, finished and found by the short id people type."""
    job_id = "018f2a3b4c5d9e8f7a6b"
    old_fields = {
        **BASE_DEFAULTS,
        "id": job_id,
        "team_id": "T1",
        "user": "U1",
        "status": "processing",
        "checked": "1",
    }

    async def body(store: Store) -> None:
        await store.redis.hset(f"{{lip}}:job:{job_id}", mapping=old_fields)
        await store.redis.zadd("{lip}:send", {job_id: 0})
        await store.redis.set("{lip}:short:9e8f7a6b", job_id, ex=7 * 86400)
        claimed = await store.lanes.claim_lanes({Lane.SEND: 1}, lease_ms=60_000)
        [job] = claimed.jobs[Lane.SEND]
        assert job.id == job_id and job.money.checked == 1
        job.status = Status.SUCCEEDED
        await store.lanes.finish(Lane.SEND, job, claimed.token)
        ended = await store.records.get(job_id)
        assert ended is not None and ended.id == job_id and ended.status is Status.SUCCEEDED
        assert await store.indexes.find_job_id("9e8f7a6b") == job_id
        assert await store.indexes.find_job_id(f"`{job_id}`") == job_id

    run(_with_store(redis_url, body))


def test_a_short_id_costs_an_entry_in_its_days_hash_not_a_key_of_its_own(redis_url: str) -> None:
    async def body(store: Store) -> None:
        jobs = [
            Job(id=f"018f2a3b4c5d{n:08x}", identity=Identity(team="T1", person="U1"))
            for n in (0xA1, 0xA2, 0xB3)
        ]
        for job in jobs:
            assert await store.records.create(job)
        assert await store.redis.keys("{lip}:short:*") == []
        day_hashes = await store.redis.keys("{lip}:shorts:*")
        assert len(day_hashes) == 1  # the short ids share their first character here
        assert 7 * 86400 < await store.redis.ttl(day_hashes[0]) <= 8 * 86400
        for job in jobs:
            assert await store.indexes.find_job_id(job.id[-8:].upper()) == job.id
        assert await store.indexes.find_job_id("000000ff") is None

    run(_with_store(redis_url, body))


def test_a_result_cached_under_its_whole_identity_by_the_previous_version_is_still_found(
    redis_url: str,
) -> None:
    identity = "ab" * 32  # a SHA-256 in hex, as the gate makes them

    async def body(store: Store) -> None:
        await store.redis.set(f"{{lip}}:result:{identity}", '{"job": "j0"}', ex=3600)
        assert await store.results.cached_result(identity) == '{"job": "j0"}'
        await store.results.save_result(identity, '["j1"]', 3600)
        assert await store.results.cached_result(identity) == '["j1"]'  # the newer entry first
        assert await store.redis.exists(f"{{lip}}:result:{identity[:32]}")

    run(_with_store(redis_url, body))


def test_a_long_step_keeps_its_claim_and_its_upload_lock(redis_url: str) -> None:
    async def body(store: Store) -> None:
        await store.records.create(Job(id="big"))
        claimed = await store.lanes.claim_lanes({Lane.SUBMIT: 10}, lease_ms=300)
        [big], token = claimed.jobs[Lane.SUBMIT], claimed.token
        assert await store.assets.lock("asset:F1", token, 300)
        async with store.lanes.keep_claim(Lane.SUBMIT, "big", token, 300, lock="asset:F1"):
            await asyncio.sleep(1.0)  # three leases long
            stolen = (await store.lanes.claim_lanes({Lane.SUBMIT: 10}, lease_ms=300)).jobs[Lane.SUBMIT]
            assert stolen == []  # nobody else got the job meanwhile…
            assert not await store.assets.lock("asset:F1", "other", 300)  # …nor the upload
        await store.lanes.finish(Lane.SUBMIT, big, token)  # still ours at the end

    run(_with_store(redis_url, body))


def test_a_long_step_whose_claim_was_lost_is_stopped(redis_url: str) -> None:
    async def body(store: Store) -> None:
        await store.records.create(Job(id="big"))
        token = (await store.lanes.claim_lanes({Lane.SUBMIT: 10}, lease_ms=300)).token
        await store.redis.hset("{lip}:submit:lease", "big", "someone-else")  # taken over
        started = time.monotonic()
        with pytest.raises(LeaseLost):
            async with store.lanes.keep_claim(Lane.SUBMIT, "big", token, 300):
                await asyncio.sleep(10)
        assert time.monotonic() - started < 1  # stopped at the next heartbeat, not after the step

    run(_with_store(redis_url, body))


def test_advice_is_marked_once_and_groups_collect_their_outcomes(redis_url: str) -> None:
    async def body(store: Store) -> None:
        assert await store.marks.mark_once("advice:C1:1.0")
        assert not await store.marks.mark_once("advice:C1:1.0")
        assert await store.marks.group_done("C1:1.0", "j1", "succeeded", 2) == ({"j1": "succeeded"}, "")
        assert await store.marks.group_done("C1:1.0", "j1", "succeeded", 2) == (
            {"j1": "succeeded"},
            "",
        )  # retried
        entries, owner = await store.marks.group_done("C1:1.0", "j2", "failed", 2)
        assert entries == {"j1": "succeeded", "j2": "failed"} and owner == "j2"  # j2 completed the group
        # Whoever asks again (a retried step of either job) learns the same owner: one summary only.
        assert (await store.marks.group_done("C1:1.0", "j1", "succeeded", 2))[1] == "j2"
        assert (await store.marks.group_done("C1:1.0", "j2", "failed", 2))[1] == "j2"

    run(_with_store(redis_url, body))
