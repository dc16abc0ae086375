"""PUBLIC_URL end to end: shared files reach each provider (sync.so's asset upload, LipSync.dev through the
bot's own signed media links, fetched by the stand-in from the bot), and provider webhooks bring the reply
forward, while forged or replayed deliveries change nothing."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis

from tests.fakes.lipsyncdev_api import FakeLipSyncDev
from tests.fakes.lipsyncdev_api import Outcome as DevOutcome
from tests.fakes.server import wait_until
from tests.fakes.slack_api import FakeSlack
from tests.fakes.sync_api import FakeSync, Generation, sign_webhook
from tests.fakes.sync_api import Outcome as SyncOutcome
from tests.harness import BotThread, free_port
from tests.payloads import event_callback
from tests.test_file_shares import file_ids, replies, settle, share, text_of

VIDEO = "https://cdn.example.com/talk.mp4"
AUDIO = "https://cdn.example.com/voice-fr.mp3"


@pytest.fixture
def public_bot(
    start_bot: Callable[..., BotThread], sync_api: FakeSync, lipsyncdev_api: FakeLipSyncDev
) -> Callable[..., BotThread]:
    """A bot with all three providers whose PUBLIC_URL is its own address (loopback http, as tests may)."""

    def start(**overrides: Any) -> BotThread:
        port = free_port()
        values: dict[str, Any] = {
            "port": port,
            "public_url": f"http://127.0.0.1:{port}",
            "sync_api_key": sync_api.api_key,
            "sync_api_url": sync_api.base_url,
            "sync_webhook_secret": sync_api.webhook_secret,
            "lipsyncdev_api_key": lipsyncdev_api.api_key,
            "lipsyncdev_api_url": lipsyncdev_api.api_url,
        }
        return start_bot(**{**values, **overrides})

    return start


# ------------------------------------------------------------------------------------------- shared files


def test_shared_files_reach_sync_through_its_asset_upload(
    public_bot: Callable[..., BotThread], slack: FakeSlack, sync_api: FakeSync, redis_client: redis.Redis
) -> None:
    bot = public_bot()
    shared = share(slack, "talk.mp4", "voice-fr.mp3", text="with sync please")
    video_id, audio_id = file_ids(shared, "talk.mp4", "voice-fr.mp3")

    bot.event(event_callback(shared.event()))

    [reply] = replies(slack, shared.ts, 1)
    settle(redis_client)
    assert {u.sha256 for u in sync_api.uploads} == {shared.sha(video_id), shared.sha(audio_id)}
    assert not sync_api.put_had_api_key
    [generation] = sync_api.generations.values()
    asset_ids = [i.get("assetId") for i in generation.input]
    assert all(asset_ids) and set(asset_ids) == set(sync_api.assets)
    assert sync_api.output_url(generation.id) in text_of(reply)


def test_shared_files_reach_lipsyncdev_through_signed_links_the_bot_serves(
    public_bot: Callable[..., BotThread],
    slack: FakeSlack,
    lipsyncdev_api: FakeLipSyncDev,
    redis_client: redis.Redis,
) -> None:
    lipsyncdev_api.fetch_inputs = True  # the stand-in downloads its inputs, as LipSync.dev does
    lipsyncdev_api.default_outcome = DevOutcome("success", polls=1, credits=12)
    bot = public_bot()
    shared = share(slack, "talk.mp4", "voice-fr.mp3", text="lipsyncdev", sizes={"talk.mp4": 700_000})
    video_id, audio_id = file_ids(shared, "talk.mp4", "voice-fr.mp3")

    bot.event(event_callback(shared.event()))

    [reply] = replies(slack, shared.ts, 1)
    settle(redis_client)
    assert "12 LipSync.dev credits" in text_of(reply)
    fetched = {f.field: f for f in lipsyncdev_api.fetches}
    assert fetched["srcVideoUrl"].status == 200 and fetched["audioUrl"].status == 200
    assert fetched["srcVideoUrl"].sha256 == shared.sha(video_id)
    assert fetched["audioUrl"].sha256 == shared.sha(audio_id)
    assert fetched["srcVideoUrl"].content_type == "video/mp4"
    link = fetched["srcVideoUrl"].url
    assert link.startswith(bot.url + "/media/") and "sig=" in link and "expires=" in link
    assert slack.bot_token not in link


def test_without_public_url_lipsyncdev_files_fail_with_a_clear_reason(
    start_bot: Callable[..., BotThread], slack: FakeSlack, lipsyncdev_api: FakeLipSyncDev
) -> None:
    bot = start_bot(lipsyncdev_api_key=lipsyncdev_api.api_key, lipsyncdev_api_url=lipsyncdev_api.api_url)
    shared = share(slack, "talk.mp4", "voice-fr.mp3", text="lipsyncdev")
    bot.event(event_callback(shared.event()))
    [reply] = replies(slack, shared.ts, 1)
    assert "`PUBLIC_URL`" in text_of(reply)
    assert lipsyncdev_api.jobs == {}


def media_link(bot: BotThread, slack: FakeSlack, redis_client: redis.Redis, expires: int) -> str:
    """A media link for a seeded Slack file, signed as the bot signs (its key comes from the bot token)."""
    file = slack.add_file("FMEDIA", "clip.mp4", "video/mp4", "mp4", b"x" * 5000)
    described = {
        "id": "FMEDIA",
        "name": "clip.mp4",
        "mimetype": "video/mp4",
        "filetype": "mp4",
        "size": 5000,
        "url": file["url_private_download"],
        "external": False,
    }
    redis_client.set("{lip}:media:m1", json.dumps(described))
    key = hmac.new(slack.bot_token.encode(), b"media links", "sha256").digest()
    sig = hmac.new(key, f"m1.{expires}".encode(), hashlib.sha256).hexdigest()
    return f"{bot.url}/media/m1/clip.mp4?expires={expires}&sig={sig}"


def test_media_links_refuse_a_wrong_or_expired_signature(
    public_bot: Callable[..., BotThread], slack: FakeSlack, redis_client: redis.Redis
) -> None:
    bot = public_bot()
    good = media_link(bot, slack, redis_client, int(time.time()) + 600)
    ok = httpx.get(good, timeout=10)
    assert ok.status_code == 200 and ok.content == b"x" * 5000
    downloads_before = len(slack.downloads)

    forged = good.replace("sig=", "sig=0")
    assert httpx.get(forged, timeout=10).status_code == 403
    assert httpx.get(good.replace("/m1/", "/m2/"), timeout=10).status_code == 403  # another file, same sig
    expired = media_link(bot, slack, redis_client, int(time.time()) - 1)
    assert httpx.get(expired, timeout=10).status_code == 403
    assert httpx.get(f"{bot.url}/media/m1/clip.mp4", timeout=10).status_code == 403
    assert len(slack.downloads) == downloads_before  # refusals cost no download from Slack


# ---------------------------------------------------------------------------------------------- webhooks


def test_a_webhook_brings_the_reply_long_before_the_next_poll(
    public_bot: Callable[..., BotThread], slack: FakeSlack, sync_api: FakeSync, redis_client: redis.Redis
) -> None:
    # Polls every 10 min: without the webhook the reply would wait for the next poll.
    sync_api.default_outcome = SyncOutcome("success", ready_after=0.5, duration=8)
    bot = public_bot(poll_interval_seconds=600, poll_max_interval_seconds=600, job_timeout_seconds=3600)

    bot.command(f"{VIDEO} {AUDIO} sync", response_url=slack.response_url("r"))

    parent = wait_until(lambda: (slack.messages("C0GENERAL") or [None])[0])
    [reply] = wait_until(lambda: slack.replies("C0GENERAL", parent["ts"]) or None, timeout=60)
    [generation] = sync_api.generations.values()
    assert generation.webhook_url == f"{bot.url}/webhooks/sync"
    [delivery] = sync_api.webhooks_sent
    assert delivery.status == 200
    assert sync_api.output_url(generation.id) in text_of(reply)
    polls = [r for r in sync_api.requests if r.method == "GET" and r.path.startswith("/v2/generate/")]
    assert polls == []  # the signed delivery was the result: no GET (tests/test_webhook_results.py)


def job_waiting_at_sync(
    public_bot: Callable[..., BotThread], slack: FakeSlack, sync_api: FakeSync, redis_client: redis.Redis
) -> tuple[BotThread, Generation]:
    """A job whose sync.so generation never ends and sends no webhook of its own, waiting in the poll lane
    with its next poll ten minutes away: whatever makes it polled sooner is a webhook the test sends."""
    sync_api.default_outcome = SyncOutcome("never")
    sync_api.webhooks_enabled = False
    bot = public_bot(poll_interval_seconds=600, poll_max_interval_seconds=600, job_timeout_seconds=3600)
    bot.command(f"{VIDEO} {AUDIO} sync", response_url=slack.response_url("r"))
    generation = wait_until(lambda: next(iter(sync_api.generations.values()), None))
    wait_until(lambda: redis_client.zcard("{lip}:poll") == 1)
    return bot, generation


def test_forged_and_replayed_webhooks_change_nothing(
    public_bot: Callable[..., BotThread], slack: FakeSlack, sync_api: FakeSync, redis_client: redis.Redis
) -> None:
    bot, generation = job_waiting_at_sync(public_bot, slack, sync_api, redis_client)
    due_before = redis_client.zscore("{lip}:poll", redis_client.zrange("{lip}:poll", 0, 0)[0])
    url = f"{bot.url}/webhooks/sync"
    body = json.dumps({"id": generation.id, "status": "COMPLETED"}).encode()
    now = int(time.time())

    wrong_secret = {"Sync-Signature": sign_webhook("whsec_wrong", body, now)}
    stale = {"Sync-Signature": sign_webhook(str(sync_api.webhook_secret), body, now - 3600)}
    for headers in (wrong_secret, stale, {}):
        answer = httpx.post(url, content=body, headers={"Content-Type": "application/json", **headers})
        assert answer.status_code == 401
    unknown = json.dumps({"id": "no-such-generation", "status": "COMPLETED"}).encode()
    signed_unknown = {"Sync-Signature": sign_webhook(str(sync_api.webhook_secret), unknown, now)}
    assert httpx.post(url, content=unknown, headers=signed_unknown).status_code == 200
    assert httpx.post(f"{bot.url}/webhooks/jogg", content=body).status_code == 404  # no webhooks there

    assert redis_client.zscore("{lip}:poll", redis_client.zrange("{lip}:poll", 0, 0)[0]) == due_before
    polls = [r for r in sync_api.requests if r.method == "GET" and r.path.startswith("/v2/generate/")]
    assert polls == []

    # A genuine delivery makes the poll due now; the same delivery again does nothing more.
    genuine = {"Sync-Signature": sign_webhook(str(sync_api.webhook_secret), body, now)}
    assert httpx.post(url, content=body, headers=genuine).status_code == 200
    wait_until(lambda: [r for r in sync_api.requests if r.path == f"/v2/generate/{generation.id}"])
    assert httpx.post(url, content=body, headers=genuine).text.strip() == "seen"
    assert slack.replies("C0GENERAL", slack.messages("C0GENERAL")[0]["ts"]) == []  # still running: no reply


def test_in_socket_mode_the_bot_still_hears_webhooks_on_port(
    public_bot: Callable[..., BotThread], slack: FakeSlack, sync_api: FakeSync, redis_client: redis.Redis
) -> None:
    sync_api.default_outcome = SyncOutcome("success", ready_after=0.5)
    bot = public_bot(
        slack_app_token=slack.app_token,
        slack_signing_secret=None,
        poll_interval_seconds=600,
        poll_max_interval_seconds=600,
        job_timeout_seconds=3600,
    )
    assert (
        httpx.post(f"{bot.url}/slack/events", content=b"{}", timeout=5).status_code == 404
    )  # no events route
    payload = slack.command_payload(f"{VIDEO} {AUDIO} sync", channel_id="C0SOCK")
    slack.wait_ack(slack.send_envelope("slash_commands", payload))
    parent = wait_until(lambda: (slack.messages("C0SOCK") or [None])[0])
    wait_until(lambda: slack.replies("C0SOCK", parent["ts"]) or None, timeout=60)
    [delivery] = sync_api.webhooks_sent
    assert delivery.status == 200 and delivery.url == f"{bot.url}/webhooks/sync"


def test_a_webhook_sent_in_chunks_is_read_whole_and_an_oversized_one_refused(
    public_bot: Callable[..., BotThread], slack: FakeSlack, sync_api: FakeSync, redis_client: redis.Redis
) -> None:
    bot, generation = job_waiting_at_sync(public_bot, slack, sync_api, redis_client)
    body = json.dumps({"id": generation.id, "status": "COMPLETED", "padding": "x" * 200_000}).encode()
    signed = {"Sync-Signature": sign_webhook(str(sync_api.webhook_secret), body, int(time.time()))}

    def in_pieces() -> Any:
        # Pieces that arrive apart, as over a slow link: the bot must read to the end, not what came first.
        for start in range(0, len(body), 60_000):
            yield body[start : start + 60_000]
            time.sleep(0.05)

    url = f"{bot.url}/webhooks/sync"
    assert httpx.post(url, content=in_pieces(), headers=signed).status_code == 200  # chunked, no length
    wait_until(lambda: [r for r in sync_api.requests if r.path == f"/v2/generate/{generation.id}"])
    huge = b"{" + b" " * 2_000_000 + b"}"
    assert httpx.post(url, content=huge, headers=signed).status_code == 413
