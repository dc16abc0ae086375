"""The three steps a job goes through, one per lane of the store.

Each step runs on a job this process has claimed (with `token`), decides, and ends with exactly one store
transition: reschedule in its lane, move to the next lane, or finish. Transient faults reschedule with
exponential backoff and jitter, so retries survive restarts and never hold a worker.

  submit: post the parent message, or for shared files re-host them at JoggAI → (recover an ambiguous
          create by lookup, looking again until it has settled) → rate limit → create task
  poll:   ask JoggAI for the task → reschedule, or finish as succeeded/failed/timed out
  send:   post the one result reply in the thread → update the parent's status (or the reactions on
          the message that shared the files) → done
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

from bot import messages
from bot.jobs import Job, PostState, Source, Status
from bot.jogg import ErrorKind, JoggClient, JoggError, LipSyncTask
from bot.ratelimit import RateLimiter
from bot.slack_files import SlackFile
from bot.slack_out import SlackAmbiguous, SlackFailed, SlackOut, SlackRetryLater, SlackUnreachable
from bot.store import NOW, JobStore, Lane
from bot.transfer import Transfer, TransferError

log = logging.getLogger(__name__)

MAX_SUBMIT_ERRORS = 8  # about three minutes of backoff before we tell the user JoggAI is not answering
MAX_SEND_ERRORS = 30  # Slack refusals (auth, scopes) an admin may still fix: keep trying for a while
# A task the lookup finds counts as ours when it was created after our job started, give or take this.
CLOCK_SKEW_S = 120
# The create-recovery rule (RELIABILITY.md, "Never paid twice"). After a create whose answer was lost,
# JoggAI may still be making the task, and its lookup cannot tell "never made" from "not made yet". So
# no new create until this long after the attempt; until then the lookup is repeated and a task adopted
# as soon as it appears. bot/main.py keeps it at least 4 times HTTP_TIMEOUT_SECONDS, longer than our own
# client can hold a create open (pool wait and connect, then each read).
CREATE_SETTLE_SECONDS = 120
# Lookups are GETs, which JoggAI does not meter: look again soon, then every 15 s at most.
SETTLE_LOOKUP_BASE_MS = 2000
SETTLE_LOOKUP_CAP_MS = 15_000
# A reserved POST slot is used if the job comes back for it within this long; later, it takes a new one.
SLOT_STALE_MS = 5_000


# Polling slows down as a task runs long: fresh tasks are answered fast, long ones cost few requests.
# (task age below, multiple of POLL_INTERVAL_SECONDS); older tasks use POLL_MAX_INTERVAL_SECONDS.
POLL_SCHEDULE = ((60, 1), (300, 2), (900, 4))


# Polls are claimed up to this share of POLL_INTERVAL_SECONDS before they are due (at most 1 s): a process
# then claims its polls in batches every so often instead of one claim per poll coming due, which at the
# 30 s cadence cost more CPU than the polls themselves; and none is sent late for it.
POLL_EARLY_FRACTION = 0.1
POLL_EARLY_CAP_MS = 1000

# What `poll` (and the worker after a bug in it) reads of a job; the poll lane is claimed with only these,
# since reading and parsing whole hashes was a tenth of a poll's CPU. Add a field here before reading it.
POLL_FIELDS = ("created_ms", "task_id", "polls", "errors")


def poll_delay_ms(age_ms: int, base_ms: int, max_ms: int) -> int:
    """How long to wait before asking about a task again, given how long the job has been running."""
    for below_s, factor in POLL_SCHEDULE:
        if age_ms < below_s * 1000:
            return min(max_ms, base_ms * factor)
    return max_ms


def backoff_ms(errors: int, base_ms: int = 1000, cap_ms: int = 60_000) -> int:
    """Exponential backoff with jitter: about base·2^(errors-1), between half and all of it, capped."""
    ceiling = min(cap_ms, base_ms * 2 ** max(0, errors - 1))
    return int(ceiling * random.uniform(0.5, 1.0))


@dataclass
class Timing:
    poll_interval_ms: int
    job_timeout_ms: int
    lease_ms: int = 60_000
    poll_max_interval_ms: int = 30_000
    create_settle_ms: int = CREATE_SETTLE_SECONDS * 1000

    @property
    def poll_early_ms(self) -> int:
        return min(POLL_EARLY_CAP_MS, int(self.poll_interval_ms * POLL_EARLY_FRACTION))

    def poll_delay_ms(self, job: Job, now_ms: int) -> int:
        ceiling = max(self.poll_interval_ms, self.poll_max_interval_ms)
        return poll_delay_ms(now_ms - job.created_ms, self.poll_interval_ms, ceiling)


class Pipeline:
    def __init__(
        self,
        store: JobStore,
        jogg: JoggClient,
        slack: SlackOut,
        limiter: RateLimiter,
        timing: Timing,
        transfer: Transfer,
    ) -> None:
        self.store = store
        self.jogg = jogg
        self.slack = slack
        self.limiter = limiter
        self.timing = timing
        self.transfer = transfer

    async def run(self, lane: Lane, job: Job, token: str, now_ms: int) -> None:
        step = {Lane.SUBMIT: self.submit, Lane.POLL: self.poll, Lane.SEND: self.send}[lane]
        await step(job, token, now_ms)

    def _expired(self, job: Job, now_ms: int) -> bool:
        return now_ms - job.created_ms >= self.timing.job_timeout_ms

    # ----------------------------------------------------------------- submit

    async def submit(self, job: Job, token: str, now_ms: int) -> None:
        if self._expired(job, now_ms):
            await self._finish(
                Lane.SUBMIT, job, token, Status.TIMED_OUT, error_code="timeout", **await self._last_look(job)
            )
            return
        if job.source is Source.COMMAND:
            if not await self._ensure_parent(job, token):
                return
        elif not await self._rehost_files(job, token, now_ms):
            return
        task: LipSyncTask | None = None
        if job.submit_state is PostState.ATTEMPTED:
            try:
                task = await self._find_earlier_create(job)
            except JoggError as exc:  # no answer to the lookup: the earlier create is still in doubt
                await self._submit_failed(job, token, exc, create_in_doubt=True)
                return
            if task is None and not await self._create_settled(job, token, now_ms):
                return
        if task is None:
            if not await self._post_slot(job, token, now_ms):
                return
            # Marked before the call, with Redis time, so a lost answer is recovered (by whichever
            # process holds the job then) instead of paid for again.
            attempt = {"submit_state": PostState.ATTEMPTED, "submit_attempt_ms": NOW, "submit_lookups": 0}
            await self.store.update(Lane.SUBMIT, job.id, token, attempt)
            try:
                task = await self.jogg.create_lip_sync(job.video_url, job.audio_url, job.playback_type)
            except JoggError as exc:  # only an unclear answer may hide a created task
                await self._submit_failed(job, token, exc, create_in_doubt=exc.ambiguous)
                return
        log.info("job %s: JoggAI task %s created", job.id, task.task_id)
        job.status, job.task_id = Status.PROCESSING, task.task_id
        await self.store.move(
            Lane.SUBMIT,
            Lane.POLL,
            job.id,
            token,
            delay_ms=self.timing.poll_interval_ms,
            fields={"status": Status.PROCESSING, "task_id": task.task_id, "submit_state": "", "errors": 0},
        )
        if job.source is Source.COMMAND:
            await self.slack.update(job.channel, job.parent_ts, messages.parent(job))

    async def _ensure_parent(self, job: Job, token: str) -> bool:
        """Post the job's message in the channel once. False when the job cannot go on now."""
        try:
            await self.slack.post_once(
                job, "parent", Lane.SUBMIT, token, job.channel, None, lambda _: messages.parent(job)
            )
            return True
        except SlackUnreachable as exc:
            log.info("job %s: cannot post in %s (%s)", job.id, job.channel, exc)
            await self.slack.respond(job.response_url, messages.cannot_post_here(job.channel))
            await self.store.finish(
                Lane.SUBMIT,
                job.id,
                token,
                {"status": Status.FAILED, "error_code": "unreachable", "reply_state": PostState.SKIPPED},
            )
        except (SlackRetryLater, SlackAmbiguous, SlackFailed) as exc:
            await self._slack_setback(Lane.SUBMIT, job, token, exc)
        return False

    async def _rehost_files(self, job: Job, token: str, now_ms: int) -> bool:
        """Give JoggAI public copies of the job's Slack files. True once both asset URLs are stored."""
        for url_field, file in (("video_url", job.video), ("audio_url", job.audio)):
            if getattr(job, url_field):
                continue
            assert file is not None, "a job from shared files carries both files"
            cache_key = f"{job.team_id}:{file.id}"
            url = await self.store.asset_url(cache_key) or await self._upload(
                job, token, file, cache_key, now_ms
            )
            if url is None:
                return False
            await self.store.update(Lane.SUBMIT, job.id, token, {url_field: url})
            setattr(job, url_field, url)
        return True

    async def _post_slot(self, job: Job, token: str, now_ms: int) -> bool:
        """True when the job may make its JoggAI POST now. Otherwise it has a slot reserved for later and
        is rescheduled until then; when it comes back it uses that slot (once) without asking again."""
        if job.post_slot_ms:
            if now_ms < job.post_slot_ms:  # early (claimed by a tick): wait on
                await self.store.reschedule(Lane.SUBMIT, job.id, token, job.post_slot_ms - now_ms)
                return False
            slot_ms, job.post_slot_ms = job.post_slot_ms, 0
            await self.store.update(Lane.SUBMIT, job.id, token, {"post_slot_ms": 0})  # used up
            if now_ms - slot_ms <= SLOT_STALE_MS:
                return True
            # Back long after its slot (a restart, a backlog): that slot is past, take a new one.
        wait_ms = await self.limiter.acquire()
        if wait_ms == 0:
            return True
        # Our turn has not come: wait in line, in the order the slots were handed out.
        await self.store.reschedule(Lane.SUBMIT, job.id, token, wait_ms, {"post_slot_ms": now_ms + wait_ms})
        return False

    async def _upload(self, job: Job, token: str, file: SlackFile, cache_key: str, now_ms: int) -> str | None:
        """Stream one Slack file to JoggAI; None when the job was rescheduled or ended instead."""
        lock = f"asset:{cache_key}"
        if not await self.store.lock(lock, token, self.timing.lease_ms):
            # A sibling job is uploading the same file (one video, several audio tracks): wait for it.
            await self.store.reschedule(Lane.SUBMIT, job.id, token, 1000)
            return None
        try:
            if not await self._post_slot(job, token, now_ms):  # an upload is a POST, limited like creates
                return None
            log.info("job %s: re-hosting Slack file %s (%d bytes)", job.id, file.id, file.size)
            async with self.store.keep_claim(Lane.SUBMIT, job.id, token, self.timing.lease_ms, lock):
                url = await self.transfer.rehost(file)
            await self.store.save_asset(cache_key, url)
            return url
        except TransferError as exc:
            await self._upload_failed(job, token, file, exc.code, exc.detail, not exc.permanent)
        except JoggError as exc:
            if exc.kind is ErrorKind.RATE_LIMITED:
                await self.store.reschedule(Lane.SUBMIT, job.id, token, 5000 + random.randint(0, 10_000))
            else:
                code = str(exc.code or "upload")
                await self._upload_failed(
                    job, token, file, code, exc.message, exc.kind is ErrorKind.TRANSIENT
                )
        finally:
            await self.store.unlock(lock, token)
        return None

    async def _upload_failed(
        self, job: Job, token: str, file: SlackFile, code: str, detail: str, transient: bool
    ) -> None:
        errors = job.errors + 1
        if transient and errors < MAX_SUBMIT_ERRORS:
            log.warning("job %s: re-hosting %s failed (%s), retry %d", job.id, file.id, detail, errors)
            fields = {"errors": errors, "last_error": f"{file.name}: {detail}"}
            await self.store.reschedule(Lane.SUBMIT, job.id, token, backoff_ms(errors), fields)
            return
        log.warning("job %s: cannot re-host %s: %s %s", job.id, file.id, code, detail)
        await self._finish(
            Lane.SUBMIT, job, token, Status.FAILED, error_code=code, error=detail, error_file=file.name
        )

    async def _slack_setback(self, lane: Lane, job: Job, token: str, exc: Exception) -> None:
        """Put the job back after Slack said "not now" (429), "maybe" (unclear outcome) or "no"."""
        fields: dict[str, object] = {}
        if isinstance(exc, SlackRetryLater):
            delay = int(exc.delay_s * 1000)
        elif isinstance(exc, SlackAmbiguous):
            log.warning("job %s: Slack post outcome unclear (%s); will look before posting", job.id, exc)
            delay = int(exc.settle_s * 1000)
        else:  # a refusal an admin may still fix (token, scopes): back off, keep trying
            errors = job.errors + 1
            log.error("job %s: Slack refused a post (%s), attempt %d", job.id, exc, errors)
            delay = backoff_ms(errors, cap_ms=300_000)
            fields = {"errors": errors, "last_error": f"Slack: {exc}"}
        await self.store.reschedule(lane, job.id, token, delay, fields)

    async def _find_earlier_create(self, job: Job) -> LipSyncTask | None:
        """After a create whose answer we never got, adopt the task it made instead of paying twice."""
        task = await self.jogg.find_lip_sync(job.video_url, job.audio_url, job.playback_type)
        if task is None:
            return None
        ours = task.created_at is None or task.created_at >= job.created_ms / 1000 - CLOCK_SKEW_S
        if task.status == "failed" and not ours:
            return None  # an old failure with the same inputs: try afresh
        log.info("job %s: adopting JoggAI task %s found by lookup", job.id, task.task_id)
        return task

    async def _last_look(self, job: Job) -> dict[str, object]:
        """A job that times out while its create is in doubt looks once more, so that a task JoggAI
        made (and charged for) is named in the reply instead of left unknown."""
        if job.submit_state is not PostState.ATTEMPTED:
            return {}
        try:
            task = await self._find_earlier_create(job)
        except JoggError:
            return {}
        return {"task_id": task.task_id} if task else {}

    async def _create_settled(self, job: Job, token: str, now_ms: int) -> bool:
        """True when the last create, whose answer was lost, has had time to land and the lookup just
        found nothing: it was never made, and creating again is safe. Until then, never create: look
        again a little later (the job is rescheduled) and adopt the task when it appears."""
        attempt_ms = job.submit_attempt_ms or now_ms  # a job marked before attempt times were kept
        settled_ms = attempt_ms + self.timing.create_settle_ms
        if now_ms >= settled_ms:
            waited_s = (now_ms - attempt_ms) // 1000
            log.warning("job %s: no JoggAI task %d s after the lost create; creating again", job.id, waited_s)
            return True
        lookups = job.submit_lookups + 1
        delay = min(settled_ms - now_ms, backoff_ms(lookups, SETTLE_LOOKUP_BASE_MS, SETTLE_LOOKUP_CAP_MS))
        log.info("job %s: no JoggAI task yet for the lost create; looking again in %d ms", job.id, delay)
        fields = {"submit_attempt_ms": attempt_ms, "submit_lookups": lookups}
        await self.store.reschedule(Lane.SUBMIT, job.id, token, delay, fields)
        return False

    async def _submit_failed(self, job: Job, token: str, exc: JoggError, create_in_doubt: bool) -> None:
        # A create that may have happened keeps the marker, so the next attempt recovers it by lookup.
        # A clear refusal removes it: that create was not made, and any earlier one had settled.
        marker = PostState.ATTEMPTED if create_in_doubt else ""
        if exc.kind is ErrorKind.RATE_LIMITED:
            log.info("job %s: JoggAI rate limit; waiting", job.id)
            delay = 5000 + random.randint(0, 10_000)
            await self.store.reschedule(Lane.SUBMIT, job.id, token, delay, {"submit_state": marker})
        elif exc.kind is ErrorKind.TRANSIENT and job.errors + 1 < MAX_SUBMIT_ERRORS:
            errors = job.errors + 1
            log.warning("job %s: submit failed (%s), retry %d", job.id, exc, errors)
            fields = {"errors": errors, "last_error": str(exc), "submit_state": marker}
            await self.store.reschedule(Lane.SUBMIT, job.id, token, backoff_ms(errors), fields)
        else:
            log.warning("job %s: submit failed for good: %s", job.id, exc)
            await self._finish(
                Lane.SUBMIT,
                job,
                token,
                Status.FAILED,
                error_code=str(exc.code or ""),
                error=exc.message,
                submit_state=marker,
            )

    # ------------------------------------------------------------------- poll

    async def poll(self, job: Job, token: str, now_ms: int) -> None:
        """Reads only POLL_FIELDS of the job: the worker claims poll jobs with just those."""
        if self._expired(job, now_ms):
            await self._finish(Lane.POLL, job, token, Status.TIMED_OUT, error_code="timeout")
            return
        try:
            task = await self.jogg.get_lip_sync(job.task_id)
        except JoggError as exc:
            if exc.kind in (ErrorKind.NOT_FOUND, ErrorKind.PERMANENT):
                await self._finish(
                    Lane.POLL, job, token, Status.FAILED, error_code=str(exc.code or ""), error=exc.message
                )
                return
            errors = job.errors + 1  # keep trying until the job's timeout: the task may still finish
            log.warning("job %s: poll failed (%s), retry %d", job.id, exc, errors)
            delay = max(self.timing.poll_delay_ms(job, now_ms), backoff_ms(errors))
            await self.store.reschedule(
                Lane.POLL, job.id, token, delay, {"errors": errors, "last_error": str(exc)}
            )
            return
        if task.status == "success":
            await self._finish(
                Lane.POLL,
                job,
                token,
                Status.SUCCEEDED,
                result_url=task.result_url,
                cover_url=task.cover_url,
                duration_s=task.duration_seconds or "0",
                polls=job.polls + 1,
            )
        elif task.status == "failed":
            await self._finish(
                Lane.POLL, job, token, Status.FAILED, error=task.error_message, polls=job.polls + 1
            )
        else:
            delay = self.timing.poll_delay_ms(job, now_ms)
            await self.store.reschedule(
                Lane.POLL, job.id, token, delay, {"polls": job.polls + 1, "errors": 0}
            )

    async def _finish(self, lane: Lane, job: Job, token: str, status: Status, **fields: object) -> None:
        """End the job and queue its one reply, in a single atomic step."""
        log.info("job %s: %s", job.id, status)
        await self.store.move(
            lane, Lane.SEND, job.id, token, fields={"status": status, "errors": 0, **fields}
        )

    # ------------------------------------------------------------------- send

    async def send(self, job: Job, token: str, now_ms: int) -> None:
        if job.parent_state is not PostState.POSTED:
            # The job ended before its message existed: answer privately instead.
            await self.slack.respond(job.response_url, messages.result(job))
            await self.store.finish(Lane.SEND, job.id, token, {"reply_state": PostState.SKIPPED})
            return
        try:
            await self.slack.post_once(
                job,
                "reply",
                Lane.SEND,
                token,
                job.channel,
                job.parent_ts,
                lambda rich: messages.result(job, with_cover=rich),
            )
        except SlackUnreachable as exc:
            log.warning("job %s: cannot reply in %s (%s)", job.id, job.channel, exc)
            await self.slack.respond(job.response_url, messages.result(job))
            await self.store.finish(Lane.SEND, job.id, token, {"reply_state": PostState.SKIPPED})
            return
        except (SlackRetryLater, SlackAmbiguous, SlackFailed) as exc:
            if isinstance(exc, SlackFailed) and job.errors + 1 >= MAX_SEND_ERRORS:
                log.error("job %s: giving up on the reply after %d refusals", job.id, MAX_SEND_ERRORS)
                await self.store.finish(Lane.SEND, job.id, token, {"last_error": f"Slack: {exc}"})
            else:
                await self._slack_setback(Lane.SEND, job, token, exc)
            return
        if job.source is Source.COMMAND:
            await self.slack.update(job.channel, job.parent_ts, messages.parent(job))
        else:
            await self._react_when_group_done(job)
        await self.store.finish(Lane.SEND, job.id, token)

    async def _react_when_group_done(self, job: Job) -> None:
        """Swap the "working" reaction for the outcome once every job of the message has answered."""
        statuses = await self.store.group_done(job.group, job.id, job.status)
        if len(statuses) < job.group_size:
            return
        channel, ts = job.channel, job.source_ts
        if Status.SUCCEEDED in statuses:
            await self.slack.react(channel, ts, messages.REACTION_DONE)
        if any(status != Status.SUCCEEDED for status in statuses):
            await self.slack.react(channel, ts, messages.REACTION_FAILED)
        await self.slack.react(channel, ts, messages.REACTION_WORKING, remove=True)
