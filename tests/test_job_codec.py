"""The job's one mapping to its Redis hash (bot/jobs/codec.py): the previous version's hashes read and write
back unchanged, and a step writes only what it changed, never what another actor wrote meanwhile."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from bot.jobs import codec
from bot.jobs.keys import job_key
from bot.jobs.lanes import Lane
from bot.jobs.model import (
    Confirmation,
    CreateState,
    Job,
    NoCacheKey,
    PostKind,
    PostState,
    Source,
    Status,
    UploadState,
)
from bot.jobs.store import Store
from tests.previous_version import BASE_DEFAULTS

OLD_HASH = {
    **BASE_DEFAULTS,
    "id": "018f2a3b4c5d9e8f7a6b",
    "team_id": "T1",
    "user": "U1",
    "source": "compare",
    "group": "018f2a3b4c5d9e8f7a6b",
    "group_size": "2",
    "compare_with": "jogg,sync",
    "video_file": '{"id":"F1","name":"talk.mp4","mimetype":"","filetype":"","size":3,"url":"",'
    '"external":false,"duration_ms":0}',
    "status": "processing",
    "submit_state": "attempted",
    "parent_state": "posted",
    "checked": "1",
    "no_cache": "1",
    "cache_key": "-",
    "confirm_state": "confirmed",
    "upload_state": "completing",
    "quote": "0.50",
    "a_field_of_a_newer_version": "kept",
}


def test_a_hash_of_the_previous_version_reads_as_typed_parts_and_writes_back_unchanged() -> None:
    job = codec.from_fields(OLD_HASH)

    assert job.status is Status.PROCESSING and job.identity.source is Source.COMPARE
    assert job.identity.person == "U1" and job.order.compare_group == ("jogg", "sync")
    assert (
        job.progress.create is CreateState.ATTEMPTED and job.posts[PostKind.PARENT].state is PostState.POSTED
    )
    assert job.money.checked is True and job.money.no_cache is True
    assert job.money.cache_key is NoCacheKey.UNKNOWABLE and job.money.lookup_key is None
    assert job.money.confirmation is Confirmation.CONFIRMED and job.upload.state is UploadState.COMPLETING
    assert job.inputs.video.file is not None and job.inputs.video.file.name == "talk.mp4"
    assert job.money.quote == "0.50"  # exact decimal text
    # The unknown field too; `delivered` (a signed webhook's result, added since) reads as its default.
    assert codec.to_fields(job) == {**OLD_HASH, "delivered": ""}
    assert codec.changes(job) == {}


def test_a_change_is_written_as_the_fields_it_changed_only() -> None:
    job = codec.from_fields(OLD_HASH)
    job.status, job.posts.reply.state = Status.SUCCEEDED, PostState.SKIPPED
    job.money.cache_key = "ab" * 16

    assert codec.changes(job) == {"status": "succeeded", "reply_state": "skipped", "cache_key": "ab" * 16}
    codec.saved(job, codec.changes(job))
    assert codec.changes(job) == {}


def test_a_new_job_encodes_its_defaults_as_the_previous_version_did() -> None:
    assert codec.to_fields(Job(id="j1")) == {**BASE_DEFAULTS, "id": "j1", "delivered": ""}


@pytest.mark.parametrize("mark", ["update", "reschedule"])
def test_a_steps_write_keeps_what_a_person_did_meanwhile(redis_url: str, mark: str) -> None:
    """A person clicks "Dub it" while a step holds the job: the step's writes (a mid-step mark, or its
    decision) carry only the fields the step changed, so the confirmation stays."""

    async def body() -> None:
        redis = Redis.from_url(redis_url)
        store = Store.on(redis)
        try:
            job = Job(id="j1")
            job.money.confirmation = Confirmation.ASKED
            assert await store.records.create(job)
            claimed = await store.lanes.claim_lanes({Lane.SUBMIT: 1}, lease_ms=60_000)
            [held] = claimed.jobs[Lane.SUBMIT]
            assert await store.records.confirm("j1") == "confirmed"  # held: it goes on at its next look
            held.progress.errors, held.progress.last_error = 1, "link: timed out"
            if mark == "update":
                await store.lanes.update(Lane.SUBMIT, held, claimed.token)
            else:
                await store.lanes.reschedule(Lane.SUBMIT, held, claimed.token, 1000)
            stored = {k.decode(): v.decode() for k, v in (await redis.hgetall(job_key("j1"))).items()}
            assert stored["confirm_state"] == "confirmed"
            assert stored["errors"] == "1" and stored["last_error"] == "link: timed out"
        finally:
            await redis.aclose()

    asyncio.run(body())
