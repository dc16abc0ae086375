"""A signed sync.so webhook brings its own result: the reply follows the delivery without another GET, the
result is kept with the job before the webhook is answered, once; an unsigned or forged delivery, a repeated
or late one, and one for a cancelled job change nothing."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest
import redis
from pydantic import SecretStr

from bot.jobs.model import short_id
from bot.providers.base import Task, TaskState, task_from_text, task_to_text
from bot.providers.sync import SyncProvider
from tests.fakes.lipsyncdev_api import FakeLipSyncDev
from tests.fakes.server import wait_until
from tests.fakes.slack_api import FakeSlack
from tests.fakes.sync_api import FakeSync, Generation, sign_webhook
from tests.harness import BotThread
from tests.test_file_shares import settle, text_of
from tests.test_webhooks_and_media import job_waiting_at_sync
from tests.test_webhooks_and_media import public_bot as public_bot  # the fixture

CHANNEL = "C0GENERAL"
OUTPUT = "https://cdn.sync.example/outputs/dubbed-by-webhook.mp4"
SECRET = "whsec_unit"


def ended_body(generation_id: str, **fields: Any) -> bytes:
    """A Generation as sync.so delivers it when it ends: COMPLETED with its output, unless overridden."""
    values = {"id": generation_id, "status": "COMPLETED", "outputUrl": OUTPUT, "outputDuration": 8.4}
    return json.dumps({**values, **fields}).encode()


def post(bot: BotThread, body: bytes, secret: str | None) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["Sync-Signature"] = sign_webhook(secret, body, int(time.time()))
    return httpx.post(f"{bot.url}/webhooks/sync", content=body, headers=headers, timeout=10)


def gets(sync_api: FakeSync, generation: Generation) -> list[Any]:
    return [r for r in sync_api.requests if r.path == f"/v2/generate/{generation.id}"]


def job_key(redis_client: redis.Redis) -> str:
    [job_id] = redis_client.zrange("{lip}:poll", 0, 0)
    return f"{{lip}}:job:{job_id}"


def thread(slack: FakeSlack) -> list[dict[str, Any]]:
    return slack.replies(CHANNEL, slack.messages(CHANNEL)[0]["ts"])


def test_a_signed_webhook_brings_the_reply_with_its_own_result_and_no_fetch(
    public_bot: Callable[..., BotThread], slack: FakeSlack, sync_api: FakeSync, redis_client: redis.Redis
) -> None:
    # The generation never ends at the stand-in: a GET would only ever say PROCESSING.
    bot, generation = job_waiting_at_sync(public_bot, slack, sync_api, redis_client)
    key = job_key(redis_client)

    answer = post(bot, ended_body(generation.id), str(sync_api.webhook_secret))

    assert answer.status_code == 200
    # Durable before acknowledged: once answered, the result is with the job (kept, or already applied).
    kept = redis_client.hmget(key, ["delivered", "status"])
    assert kept[0] is not None or kept[1] == "succeeded"
    [reply] = wait_until(lambda: thread(slack) or None, timeout=30)
    assert OUTPUT in text_of(reply) and "ready" in text_of(reply)
    assert gets(sync_api, generation) == []  # the delivery was the answer: no GET
    settle(redis_client)
    assert redis_client.hget(key, "status") == "succeeded"
    assert redis_client.hget(key, "duration_s") == "8.4"
    assert Decimal(redis_client.hget(key, "cost")) > 0  # worked out from the delivered duration
    assert redis_client.hget(key, "delivered") is None  # dropped once the job ended

    # A repeated delivery and a late, different one change nothing.
    assert post(bot, ended_body(generation.id), str(sync_api.webhook_secret)).status_code == 200
    late = ended_body(generation.id, status="FAILED", error="late", outputUrl=None)
    assert post(bot, late, str(sync_api.webhook_secret)).status_code == 200
    # Each answer above came after the store had decided (durable before acknowledged); a reply could only
    # follow through the send lane, so an empty send lane now means none is coming.
    assert redis_client.zcard("{lip}:send") == 0
    assert len(thread(slack)) == 1 and redis_client.hget(key, "status") == "succeeded"
    assert redis_client.hget(key, "delivered") is None and gets(sync_api, generation) == []


def test_a_signed_failure_ends_the_job_with_the_delivered_reason(
    public_bot: Callable[..., BotThread], slack: FakeSlack, sync_api: FakeSync, redis_client: redis.Redis
) -> None:
    bot, generation = job_waiting_at_sync(public_bot, slack, sync_api, redis_client)
    key = job_key(redis_client)
    body = ended_body(generation.id, status="FAILED", error="Face not found", error_code="no_face")

    assert post(bot, body, str(sync_api.webhook_secret)).status_code == 200

    [reply] = wait_until(lambda: thread(slack) or None, timeout=30)
    assert "Face not found" in text_of(reply)
    assert redis_client.hmget(key, ["status", "error_code"]) == ["failed", "no_face"]
    assert gets(sync_api, generation) == []


def test_unsigned_and_forged_results_are_only_hints(
    public_bot: Callable[..., BotThread],
    slack: FakeSlack,
    sync_api: FakeSync,
    lipsyncdev_api: FakeLipSyncDev,
    redis_client: redis.Redis,
) -> None:
    # Without a secret nothing can vouch for a delivery: it only makes the poll due, and the GET decides.
    sync_api.webhook_secret = None
    bot, generation = job_waiting_at_sync(public_bot, slack, sync_api, redis_client)
    key = job_key(redis_client)

    assert post(bot, ended_body(generation.id), None).status_code == 200
    wait_until(lambda: gets(sync_api, generation))  # the hint: polled at once, still PROCESSING
    wait_until(lambda: redis_client.zscore("{lip}:poll", key.rsplit(":", 1)[1]) is not None)
    # Each answer above came after the store had decided (durable before acknowledged); a reply could only
    # follow through the send lane, so an empty send lane now means none is coming.
    assert redis_client.zcard("{lip}:send") == 0
    assert thread(slack) == []
    assert redis_client.hget(key, "delivered") is None
    assert redis_client.hget(key, "status") == "processing"


def test_a_forged_result_is_refused_when_a_secret_is_set(
    public_bot: Callable[..., BotThread], slack: FakeSlack, sync_api: FakeSync, redis_client: redis.Redis
) -> None:
    bot, generation = job_waiting_at_sync(public_bot, slack, sync_api, redis_client)
    key = job_key(redis_client)
    for secret in (None, "whsec_forged"):
        assert post(bot, ended_body(generation.id), secret).status_code == 401
    # Each answer above came after the store had decided (durable before acknowledged); a reply could only
    # follow through the send lane, so an empty send lane now means none is coming.
    assert redis_client.zcard("{lip}:send") == 0
    assert thread(slack) == [] and gets(sync_api, generation) == []
    assert redis_client.hmget(key, ["delivered", "status"]) == [None, "processing"]


def test_a_result_for_a_cancelled_job_changes_nothing(
    public_bot: Callable[..., BotThread], slack: FakeSlack, sync_api: FakeSync, redis_client: redis.Redis
) -> None:
    bot, generation = job_waiting_at_sync(public_bot, slack, sync_api, redis_client)
    key = job_key(redis_client)
    job_id = key.rsplit(":", 1)[1]
    bot.command(f"cancel {short_id(job_id)}", response_url="")
    wait_until(
        lambda: redis_client.hget(key, "status") == "cancelled" and not redis_client.zcard("{lip}:send")
    )
    before = len(thread(slack))

    assert post(bot, ended_body(generation.id), str(sync_api.webhook_secret)).status_code == 200
    # Each answer above came after the store had decided (durable before acknowledged); a reply could only
    # follow through the send lane, so an empty send lane now means none is coming.
    assert redis_client.zcard("{lip}:send") == 0
    assert redis_client.hget(key, "status") == "cancelled"
    assert redis_client.hget(key, "delivered") is None
    assert len(thread(slack)) == before and OUTPUT not in json.dumps(thread(slack))


# -- what sync.so's module reads of a delivery -------------------------------------------------------------


def result(secret: str | None, body: bytes, headers: dict[str, str], now_s: float) -> Task | None:
    provider = SyncProvider(SecretStr("k"), webhook_secret=SecretStr(secret) if secret is not None else None)
    try:
        return provider.webhook_result(headers, body, now_s)
    finally:
        asyncio.run(provider.aclose())


def test_a_signed_ended_generation_is_read_as_a_get_would_read_it() -> None:
    now = 1_750_000_000
    body = ended_body("gen-1")
    task = result(SECRET, body, {"sync-signature": sign_webhook(SECRET, body, now)}, now)
    assert task == Task("gen-1", TaskState.SUCCEEDED, result_url=OUTPUT, duration_s="8.4")
    wrapped = json.dumps({"result": json.loads(body)}).encode()  # SDK versions wrap the Generation
    assert result(SECRET, wrapped, {"sync-signature": sign_webhook(SECRET, wrapped, now)}, now) == task
    assert task_from_text(task_to_text(task)) == task


@pytest.mark.parametrize(
    ("secret", "body", "signed_with"),
    [
        (None, ended_body("gen-1"), None),  # no secret: unsigned, only a hint
        (SECRET, ended_body("gen-1"), None),
        (SECRET, ended_body("gen-1"), "whsec_other"),
        (SECRET, ended_body("gen-1", status="PROCESSING"), SECRET),  # not ended
        (SECRET, ended_body("gen-1", outputUrl=None), SECRET),  # COMPLETED without its output
        (SECRET, ended_body("gen-1", status="NEW_STATUS"), SECRET),
    ],
)
def test_no_result_is_taken_from_a_delivery_that_cannot_vouch_for_one(
    secret: str | None, body: bytes, signed_with: str | None
) -> None:
    now = 1_750_000_000
    headers = {"sync-signature": sign_webhook(signed_with, body, now)} if signed_with else {}
    assert result(secret, body, headers, now) is None


def test_a_kept_result_that_cannot_be_read_is_not_taken() -> None:
    for text in (
        "",
        "{",
        "[]",
        '{"id": "x"}',
        '{"id": "x", "state": "odd"}',
        '{"id": "x", "state": "failed", "z": 1}',
    ):
        assert task_from_text(text) is None
