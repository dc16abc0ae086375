"""The result video itself into the job's thread, exactly once (bot/slack/result_upload.py says how): upload
the bytes, then complete the upload into the thread, reconciling an unclear completion with `files.info`.

Writes of job state outside the applied decision (bot/lanes/pipeline.py): `upload_state` (with
`upload_file_id`) as the upload moves from sent to completing to posted or skipped. Each mark must be
durable before the next Slack call, so that a crash never completes twice nor uploads again a file that
is already in the thread; "skipped" is marked before the note so that the note is posted at most once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from bot.jobs.decisions import Decision, Stay, backoff_ms
from bot.jobs.lanes import Lane, Lanes
from bot.jobs.model import Job, short_id
from bot.lanes.provisions import Provisions, provider_label
from bot.lanes.timing import Timing
from bot.slack import result_upload
from bot.slack.out import SlackOut
from bot.slack.result_upload import ResultUploader, UploadFailed
from bot.views.jobs import upload_skipped

log = logging.getLogger(__name__)

# Tries at uploading the result video into the thread before the link alone must do.
MAX_UPLOAD_TRIES = 5
UPLOAD_PENDING = ("", "sent", "completing")


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
            errors = job.errors + 1
            if not exc.permanent and errors < MAX_UPLOAD_TRIES:
                log.warning("job %s: result upload failed (%s), retry %d", job.id, exc.reason, errors)
                return Stay(backoff_ms(errors), {"errors": errors, "last_error": f"upload: {exc.reason}"})
            log.warning("job %s: result not uploaded: %s", job.id, exc.reason)
            # Marked before the note: the note is at most once, the link in the reply stays either way.
            fields = {"upload_state": "skipped", "upload_note": exc.reason, "errors": 0}
            await self.lanes.update(Lane.SEND, job.id, token, fields)
            await self.slack.notify(job.channel, job.parent_ts, upload_skipped(exc.reason))
            return None

    async def _upload(self, job: Job, token: str) -> Decision | None:
        state, file_id = job.upload_state, job.upload_file_id
        if state == "completing":
            shared = await self.uploader.is_shared(file_id, job.channel, job.parent_ts)
            if shared is None:
                return Stay(backoff_ms(job.errors + 1), {"errors": job.errors + 1})
            if shared:
                await self.lanes.update(Lane.SEND, job.id, token, {"upload_state": "posted"})
                return None
            state = "sent"
        if state != "sent":
            name = result_upload.file_name(job.id, job.result_url)
            async with self.lanes.keep_claim(Lane.SEND, job.id, token, self.timing.lease_ms):
                file_id = await self.uploader.upload(job.result_url, name)
            await self.lanes.update(
                Lane.SEND, job.id, token, {"upload_state": "sent", "upload_file_id": file_id}
            )
        # Marked first: an unclear answer is reconciled with files.info before completing again.
        await self.lanes.update(Lane.SEND, job.id, token, {"upload_state": "completing"})
        title = f"Dubbed video ({provider_label(self.providers, job.provider)}, job {short_id(job.id)})"
        await self.uploader.complete(file_id, job.channel, job.parent_ts, title)
        await self.lanes.update(Lane.SEND, job.id, token, {"upload_state": "posted"})
        log.info("job %s: result uploaded into the thread as %s", job.id, file_id)
        return None
