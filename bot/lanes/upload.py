"""The result video itself into the job's thread, exactly once (bot/slack/result_upload.py says how): upload
the bytes, then complete the upload into the thread, reconciling an unclear completion with `files.info`.

Writes of job state outside the applied decision (bot/lanes/pipeline.py): the job's upload state (with
the uploaded file's id) as the upload moves from sent to completing to posted or skipped. Each mark must be
durable before the next Slack call, so that a crash never completes twice nor uploads again a file that
is already in the thread; "skipped" is marked before the note so that the note is posted at most once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from bot.jobs.decisions import Decision, Stay, backoff_ms
from bot.jobs.lanes import Lane, Lanes
from bot.jobs.model import Job, UploadState, short_id
from bot.lanes.provisions import Provisions, provider_label
from bot.lanes.timing import Timing
from bot.slack import result_upload
from bot.slack.out import SlackOut
from bot.slack.result_upload import ResultUploader, UploadFailed
from bot.views.jobs import upload_skipped

log = logging.getLogger(__name__)

# Tries at uploading the result video into the thread before the link alone must do.
MAX_UPLOAD_TRIES = 5
UPLOAD_PENDING = (UploadState.NOT_STARTED, UploadState.SENT, UploadState.COMPLETING)


class ResultUpload:
    def __init__(
        self,
        *,
        lanes: Lanes,
        uploader: ResultUploader,
        slack: SlackOut,
        providers: Mapping[str, Provisions],
        timing: Timing,
    ) -> None:
        self.lanes = lanes
        self.uploader = uploader
        self.slack = slack
        self.providers = providers
        self.timing = timing

    async def put_in_thread(self, job: Job, token: str) -> Decision | None:
        """Put the result video itself in the thread, exactly once. None when it is there, or when the link
        must do (the thread then says why)."""
        try:
            return await self._upload(job, token)
        except UploadFailed as exc:
            errors = job.progress.errors + 1
            if not exc.permanent and errors < MAX_UPLOAD_TRIES:
                log.warning("job %s: result upload failed (%s), retry %d", job.id, exc.reason, errors)
                job.progress.errors, job.progress.last_error = errors, f"upload: {exc.reason}"
                return Stay(backoff_ms(errors))
            log.warning("job %s: result not uploaded: %s", job.id, exc.reason)
            # Marked before the note: the note is at most once, the link in the reply stays either way.
            job.upload.state, job.upload.note, job.progress.errors = UploadState.SKIPPED, exc.reason, 0
            await self.lanes.update(Lane.SEND, job, token)
            await self.slack.notify(job.identity.channel, job.posts.parent.ts, upload_skipped(exc.reason))
            return None

    async def _upload(self, job: Job, token: str) -> Decision | None:
        upload, channel, thread_ts = job.upload, job.identity.channel, job.posts.parent.ts
        state = upload.state
        if state is UploadState.COMPLETING:
            shared = await self.uploader.is_shared(upload.file_id, channel, thread_ts)
            if shared is None:
                job.progress.errors += 1
                return Stay(backoff_ms(job.progress.errors))
            if shared:
                upload.state = UploadState.POSTED
                await self.lanes.update(Lane.SEND, job, token)
                return None
            state = UploadState.SENT
        if state is not UploadState.SENT:
            name = result_upload.file_name(job.id, job.result.url)
            async with self.lanes.keep_claim(Lane.SEND, job.id, token, self.timing.lease_ms):
                file_id = await self.uploader.upload(job.result.url, name)
            upload.state, upload.file_id = UploadState.SENT, file_id
            await self.lanes.update(Lane.SEND, job, token)
        # Marked first: an unclear answer is reconciled with files.info before completing again.
        upload.state = UploadState.COMPLETING
        await self.lanes.update(Lane.SEND, job, token)
        title = f"Dubbed video ({provider_label(self.providers, job.order.provider)}, job {short_id(job.id)})"
        await self.uploader.complete(upload.file_id, channel, thread_ts, title)
        upload.state = UploadState.POSTED
        await self.lanes.update(Lane.SEND, job, token)
        log.info("job %s: result uploaded into the thread as %s", job.id, upload.file_id)
        return None
