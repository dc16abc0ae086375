"""Hosting shared files for the provider: a job made from files shared in Slack needs them at a URL the
provider can read. A provider that takes uploads gets the file streamed to it once per workspace and
key (the asset cache, one upload at a time per file); the others get the bot's own signed media links
(PUBLIC_URL). Either way the file is hashed on the way, so the result cache can know the pair by its bytes.

Writes of job state outside the applied decision (bot/lanes/pipeline.py): each hosted file's link as soon
as it is hosted, and the job's result-cache key once it is known, so that a setback later in the step (a
rate turn, Slack's 429) never hosts or hashes the same file again.
"""

from __future__ import annotations

import logging

from bot.jobs.caches import AssetCache, SharedValues
from bot.jobs.decisions import Decision, Stay, backoff_ms, finish, not_now_ms
from bot.jobs.files import SlackFile
from bot.jobs.lanes import Lane, Lanes
from bot.jobs.model import Job, NoCacheKey, Status
from bot.lanes.cached_results import Cached
from bot.lanes.gate import Gate
from bot.lanes.provisions import Provisions
from bot.lanes.timing import MAX_SUBMIT_ERRORS, Timing
from bot.lanes.turns import Turns
from bot.providers.base import ErrorKind, ProviderError
from bot.slack.media_links import MediaLinks
from bot.slack.transfer import Transfer, TransferError

log = logging.getLogger(__name__)

# A shared file's hash (for the result cache) is kept this long by its Slack id.
DIGEST_KEPT_MS = 24 * 3600 * 1000
NEEDS_PUBLIC_URL = "needs_public_url"  # shared files for a provider without uploads, and no PUBLIC_URL


class Hosting:
    def __init__(
        self,
        *,
        lanes: Lanes,
        assets: AssetCache,
        values: SharedValues,
        transfer: Transfer,
        media: MediaLinks | None,
        gate: Gate,
        turns: Turns,
        timing: Timing,
    ) -> None:
        self.lanes = lanes
        self.assets = assets
        self.values = values
        self.transfer = transfer
        self.media = media  # the bot's own signed links to shared files (PUBLIC_URL set)
        self.gate = gate
        self.turns = turns
        self.timing = timing

    async def host_files(self, job: Job, token: str, now_ms: int, provisions: Provisions) -> Decision | None:
        """Make the job's Slack files reachable by the provider: its upload, or the bot's signed media
        links. None once both are stored in the job."""
        provider = provisions.provider
        for media in (job.inputs.video, job.inputs.audio):
            if media.link:
                continue
            file = media.file
            assert file is not None, "a job from shared files carries both files"
            if not provider.hosts_uploads:
                if self.media is None:
                    return finish(job, Status.FAILED, error_code=NEEDS_PUBLIC_URL, error_file=file.name)
                if (setback := await self._digest(job, file)) is not None:
                    return setback
                url = await self.media.link(file, self.timing.job_timeout_ms)
            else:
                cache_key = f"{provider.name}:{provider.key_id}:{job.identity.team}:{file.id}"
                found = await self.assets.asset_url(cache_key)
                if found is None:
                    uploaded = await self._upload(job, token, file, cache_key, now_ms, provisions)
                    if not isinstance(uploaded, str):
                        return uploaded
                    found = uploaded
                url = found
            media.link = url
            await self.lanes.update(Lane.SUBMIT, job, token)
        return None

    async def cached_files(self, job: Job, token: str) -> Cached | None:
        """Shared files are known to the result cache by their bytes, hashed while they were hosted."""
        money = job.money
        if not money.checked or money.no_cache or money.cache_key is NoCacheKey.UNKNOWABLE:
            return None
        if not money.cache_key:
            files = job.inputs.files
            digests = [d for f in files if (d := await self.values.shared_value(_digest_key(job, f)))]
            key = self.gate.files_cache_key(job, digests[0], digests[1]) if len(digests) == 2 else ""
            money.cache_key = key or NoCacheKey.UNKNOWABLE  # never looked up again
            await self.lanes.update(Lane.SUBMIT, job, token)
        return await self.gate.cached(job)

    async def _upload(
        self, job: Job, token: str, file: SlackFile, cache_key: str, now_ms: int, provisions: Provisions
    ) -> str | Decision:
        """Stream one Slack file to the provider; its reference, or what to do with the job instead."""
        lock = f"asset:{cache_key}"
        if not await self.assets.lock(lock, token, self.timing.lease_ms):
            # A sibling job is uploading the same file (one video, several audio tracks): wait for it.
            return Stay(1000)
        provider = provisions.provider
        try:
            if provider.uploads_use_create_limit and (
                wait := await self.turns.post_slot(job, token, now_ms, provisions)
            ):
                return wait
            log.info(
                "job %s: hosting Slack file %s (%d bytes) at %s", job.id, file.id, file.size, provider.label
            )
            async with self.lanes.keep_claim(Lane.SUBMIT, job.id, token, self.timing.lease_ms, lock):
                reference, digest = await self.transfer.rehost(file, provider)
            await self.values.share_value(_digest_key(job, file), digest, DIGEST_KEPT_MS)
            await self.assets.save_asset(cache_key, reference)
            return reference
        except TransferError as exc:
            return _upload_failed(job, file, exc.code, exc.detail, not exc.permanent)
        except ProviderError as exc:
            if exc.kind in (ErrorKind.RATE_LIMITED, ErrorKind.BUSY):
                return Stay(not_now_ms())
            return _upload_failed(
                job, file, exc.code or "upload", exc.message, exc.kind is ErrorKind.TRANSIENT
            )
        finally:
            await self.assets.unlock(lock, token)

    async def _digest(self, job: Job, file: SlackFile) -> Decision | None:
        """For providers the bot serves files to (no upload to hash along): read the file once to hash it,
        when the result cache may use it."""
        if not self.gate.rules.cache_ttl_s or job.money.no_cache:
            return None
        if await self.values.shared_value(_digest_key(job, file)) is not None:
            return None
        try:
            digest = await self.transfer.digest(file)
        except TransferError as exc:
            return _upload_failed(job, file, exc.code, exc.detail, not exc.permanent)
        await self.values.share_value(_digest_key(job, file), digest, DIGEST_KEPT_MS)
        return None


def _upload_failed(job: Job, file: SlackFile, code: str, detail: str, transient: bool) -> Decision:
    errors = job.progress.errors + 1
    if transient and errors < MAX_SUBMIT_ERRORS:
        log.warning("job %s: hosting %s failed (%s), retry %d", job.id, file.id, detail, errors)
        job.progress.errors, job.progress.last_error = errors, f"{file.name}: {detail}"
        return Stay(backoff_ms(errors))
    log.warning("job %s: cannot host %s: %s %s", job.id, file.id, code, detail)
    return finish(job, Status.FAILED, error_code=code, error=detail, error_file=file.name)


def _digest_key(job: Job, file: SlackFile) -> str:
    return f"sha256:{job.identity.team}:{file.id}"
