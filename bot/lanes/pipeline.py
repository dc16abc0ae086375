"""The three steps a job goes through, one per lane of the store.

Each step runs on a job this process has claimed (with `token`), decides, and returns exactly one
`Decision`: stay in its lane until later, move to the next lane, or be done. `Pipeline.apply` is the one
place that carries a decision out (a single atomic store transition). Transient faults stay with
exponential backoff and jitter (`backoff_ms`, the one retry policy), so retries survive restarts and never
hold a worker.

  submit: post the job's message (or, for shared files, host them for the provider) → recover an
          ambiguous create the provider's way → rate limit and seats → create the task
  poll:   ask the provider how the task is doing → stay, or finish as succeeded/failed/timed out
  send:   post the one result reply in the thread → update the job's message, the reactions on the
          message that shared the files, or a compare's summary → done

Providers are reached through `bot.providers.base.Provider` only; steps match on its normalized states.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from redis.asyncio import Redis

from bot.jobs.caches import AssetCache, SharedValues
from bot.jobs.decisions import Decision, Done, Fields, Move, Stay, backoff_ms, cancelled, finish
from bot.jobs.files import SlackFile
from bot.jobs.indexes import Indexes
from bot.jobs.lanes import NOW, Cancelled, Lane, Lanes, QueueWatch
from bot.jobs.marks import Marks
from bot.jobs.model import Job, PostState, Source, Status, short_id
from bot.jobs.records import JobRecords
from bot.lanes.gate import REFUSALS, Cached, Gate
from bot.lanes.ratelimit import RateLimiter, Seats
from bot.observe import metrics
from bot.providers.base import ErrorKind, Order, Provider, ProviderError, Recovery, Task, TaskState
from bot.slack import result_upload
from bot.slack.media_links import MediaLinks
from bot.slack.out import SlackAmbiguous, SlackFailed, SlackOut, SlackRetryLater, SlackUnreachable
from bot.slack.result_upload import ResultUploader, UploadFailed
from bot.slack.transfer import Transfer, TransferError
from bot.views.compare import CompareEntry, compare_parent, compare_summary
from bot.views.jobs import cannot_post_here, parent, result, upload_skipped
from bot.views.shares import REACTION_DONE, REACTION_FAILED, REACTION_WORKING
from bot.views.text import Message

log = logging.getLogger(__name__)

MAX_SUBMIT_ERRORS = 8  # about three minutes of backoff before we tell the user the provider is not answering
MAX_SEND_ERRORS = 30  # Slack refusals (auth, scopes) an admin may still fix: keep trying for a while
# A task the lookup finds counts as ours when it was created after our job started, give or take this.
CLOCK_SKEW_S = 120
# The create-recovery rule for lookup providers (RELIABILITY.md, guarantee 2). After a create whose
# answer was lost, JoggAI may still be making the task, and its lookup cannot tell "never made" from "not
# made yet". So no new create until this long after the attempt; until then the lookup is repeated and a
# task adopted as soon as it appears. bot/programs/main.py keeps it at least 4 times HTTP_TIMEOUT_SECONDS,
# longer than our own client can hold a create open (pool wait and connect, then each read).
CREATE_SETTLE_SECONDS = 120
# Lookups are GETs, which JoggAI does not meter: look again soon, then every 15 s at most.
SETTLE_LOOKUP_BASE_MS = 2000
SETTLE_LOOKUP_CAP_MS = 15_000
# A reserved POST slot is used if the job comes back for it within this long; later, it takes a new one.
SLOT_STALE_MS = 5_000
# "Not now" from a provider (rate limit, or its concurrency cap): nothing happened; come back in 5 to 15 s.
NOT_NOW_MS = 5000
# A job waiting for a seat (the provider's cap on running tasks) looks again this soon: taking a seat is one
# Redis script and no provider call, so a freed seat is taken within a second or two.
SEAT_WAIT_MS = 1000
# A job's place in line is shown on its message at most this often; and all such updates of a workspace
# share a budget below Slack's Tier 3 for chat.update (50+ a minute), keeping room for the updates that
# must happen (a job's start and end).
QUEUE_NOTE_SPACING_MS = 10_000
UPDATES_PER_MINUTE = 45
# Updates that may be skipped (a job's place in line, "processing") use at most this share of the budget,
# so a burst of them never delays the updates that must happen (a job's final state).
COSMETIC_SHARE = 0.5
# A compare job waits this long between looks at whether its lead has posted the shared message.
LEAD_WAIT_MS = 500
# Tries at uploading the result video into the thread before the link alone must do.
MAX_UPLOAD_TRIES = 5
UPLOAD_PENDING = ("", "sent", "completing")
# A shared file's hash (for the result cache) is kept this long by its Slack id.
DIGEST_KEPT_MS = 24 * 3600 * 1000
# Our own error codes (providers' codes are kept as they send them).
SUBMIT_UNKNOWN = "submit_unknown"  # a create with no clear answer at a provider that cannot reconcile it
NEEDS_PUBLIC_URL = "needs_public_url"  # shared files for a provider without uploads, and no PUBLIC_URL
PROVIDER_OFF = "provider_off"  # the job's provider has no key any more
COMPARE_STOPPED = "compare_stopped"  # a compare's lead was refused before paying: its followers stop too


# The lanes where a job waits for its next step; a cancel ends a job there instead of letting it wait.
WAITING_LANES = (Lane.SUBMIT, Lane.POLL)

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
POLL_FIELDS = ("created_ms", "task_id", "polls", "errors", "provider", "model", "cancel_by")


def poll_delay_ms(age_ms: int, base_ms: int, max_ms: int) -> int:
    """How long to wait before asking about a task again, given how long the job has been running."""
    for below_s, factor in POLL_SCHEDULE:
        if age_ms < below_s * 1000:
            return min(max_ms, base_ms * factor)
    return max_ms


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def not_now_ms() -> int:
    return NOT_NOW_MS + random.randint(0, 2 * NOT_NOW_MS)


@dataclass(frozen=True)
class Turn:
    wait_ms: int  # 0: go now
    ahead: int = 0  # reservations ahead of this one
    new: bool = False  # a slot was reserved just now: store its time in the job


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


@dataclass
class Provisions:
    """One provider and the limits the bot keeps for it across processes."""

    provider: Provider
    limiter: RateLimiter
    seats: Seats | None = None  # when the account caps tasks running at once


class Pipeline:
    def __init__(
        self,
        *,
        redis: Redis,
        lanes: Lanes,
        watch: QueueWatch,
        records: JobRecords,
        indexes: Indexes,
        assets: AssetCache,
        values: SharedValues,
        marks: Marks,
        providers: Mapping[str, Provisions],
        slack: SlackOut,
        timing: Timing,
        transfer: Transfer,
        gate: Gate,
        media: MediaLinks | None = None,
        webhook_base: str = "",
        uploader: ResultUploader | None = None,
        updates_per_minute: int = UPDATES_PER_MINUTE,
    ) -> None:
        self.redis = redis  # the workspaces' chat.update budgets
        self.lanes = lanes
        self.watch = watch
        self.records = records
        self.indexes = indexes
        self.assets = assets
        self.values = values
        self.marks = marks
        self.providers = providers
        self.slack = slack
        self.timing = timing
        self.transfer = transfer
        self.media = media  # the bot's own signed links to shared files (PUBLIC_URL set)
        self.webhook_base = webhook_base  # "{PUBLIC_URL}/webhooks/" when PUBLIC_URL is set
        self.uploader = uploader  # the result video into the thread; None when MAX_RESULT_UPLOAD_MB is 0
        self.gate = gate  # what a job must pass before it is paid for (bot/lanes/gate.py)
        # Told of each job that has ended and answered (App Home refreshes its requester's view).
        self._update_budgets: dict[str, RateLimiter] = {}
        self.updates_per_minute = updates_per_minute

    async def run(self, lane: Lane, job: Job, token: str, now_ms: int) -> None:
        step = {Lane.SUBMIT: self.submit, Lane.POLL: self.poll, Lane.SEND: self.send}[lane]
        decision = await step(job, token, now_ms)
        await self.apply(lane, job, token, decision)
        if lane is Lane.SEND and isinstance(decision, Done):
            metrics.job_ended(job)
            if job.status in (Status.FAILED, Status.TIMED_OUT):
                await self.indexes.note_failure(job.id)
            self.watch.ended(job)

    async def apply(self, lane: Lane, job: Job, token: str, decision: Decision) -> None:
        """The one place a step's decision is carried out.

        A cancel that came while the step held the job (it set `cancel_by` and answered "pending") is
        carried out here, whatever the step: a decision that would put the job back to wait in `submit`
        or `poll` ends it cancelled instead, at once. The script that would queue it refuses when
        `cancel_by` is set, so a cancel lands either before it (ended here) or after it (the job then
        waits unheld, and the cancel script ends it)."""
        if isinstance(decision, Done):
            # Before the job is marked done: a crash in between settles again, which changes nothing.
            await self.gate.settle(_ended(job, decision))
            await self.lanes.finish(lane, job.id, token, decision.fields)
            return
        target = decision.lane if isinstance(decision, Move) else lane
        unless = "cancel_by" if target in WAITING_LANES else ""
        try:
            if isinstance(decision, Stay):
                await self.lanes.reschedule(
                    lane, job.id, token, decision.delay_ms, decision.fields, unless=unless
                )
            else:
                await self.lanes.move(
                    lane, decision.lane, job.id, token, decision.delay_ms, decision.fields, unless=unless
                )
        except Cancelled:
            log.info("job %s: cancelled while its %s step ran; ending it now", job.id, lane)
            await self.apply(lane, job, token, cancelled(decision))

    def _expired(self, job: Job, now_ms: int) -> bool:
        return now_ms - job.created_ms >= self.timing.job_timeout_ms

    def _order(self, job: Job, provider: Provider) -> Order:
        webhook = self.webhook_base + provider.name if self.webhook_base and provider.accepts_webhook else ""
        return Order(job.id, job.video_url, job.audio_url, job.playback_type, job.model, webhook)

    # ----------------------------------------------------------------- submit

    async def submit(self, job: Job, token: str, now_ms: int) -> Decision:
        provisions = self.providers.get(job.provider)
        if provisions is None:
            return finish(Status.FAILED, error_code=PROVIDER_OFF)
        provider = provisions.provider
        if job.cancel_by:
            return finish(Status.CANCELLED)
        if self._expired(job, now_ms):
            return finish(Status.TIMED_OUT, error_code="timeout", **await self._last_look(job, provider))
        # Before the job's message: a refused link or budget is told privately and leaves no trace in the
        # channel; an earlier result still answers in a thread of its own.
        verdict = await self.gate.check(job, token, now_ms, provider)
        if verdict is not None and not isinstance(verdict, Cached):
            return verdict
        if job.source is Source.FILES:
            setback = await self._host_files(job, token, now_ms, provisions)
            if setback is None and isinstance(verdict := await self._cached_files(job, token), Cached):
                return verdict.decision()
        elif job.source is Source.COMPARE and job.group != job.id:
            setback = await self._follow_lead(job, token)
        else:
            setback = await self._ensure_parent(job, token)
        if setback is not None:
            return setback
        if isinstance(verdict, Cached):
            return verdict.decision()
        order = self._order(job, provider)
        task: Task | None = None
        if job.submit_state is PostState.ATTEMPTED:
            if provider.recovery is Recovery.NONE:
                # Nothing can tell whether that create was carried out: never risk paying twice.
                log.warning("job %s: %s create outcome unknown; not repeating it", job.id, provider.label)
                return finish(Status.FAILED, error_code=SUBMIT_UNKNOWN)
            if provider.recovery is Recovery.LOOKUP:
                try:
                    task = await self._find_earlier_create(job, provider, order)
                except ProviderError as exc:  # no answer to the lookup: the earlier create is still in doubt
                    return self._submit_failed(job, exc, create_in_doubt=True)
                if task is None and (waiting := self._create_unsettled(job, now_ms)) is not None:
                    return waiting
            # Recovery.IDEMPOTENT: the create below carries the same key; it cannot make a second task.
        if task is None:
            if provisions.seats is not None and (place := await provisions.seats.take(job.id)):
                log.info("job %s: %s is running its plan's maximum of tasks; waiting", job.id, provider.label)
                cap = provisions.seats.cap
                note = f"{ordinal(place)} in line for {provider.label} (your plan runs {cap} at a time)"
                return await self._in_line(job, now_ms, note, SEAT_WAIT_MS + random.randint(0, SEAT_WAIT_MS))
            if (wait := await self._post_slot(job, token, now_ms, provisions)) is not None:
                return wait
            # Marked before the call, with Redis time, so a lost answer is recovered (by whichever
            # process holds the job then) instead of paid for again.
            attempt = {"submit_state": PostState.ATTEMPTED, "submit_attempt_ms": NOW, "submit_lookups": 0}
            try:
                # Refused if someone cancelled meanwhile: a cancel either lands before this mark (nothing is
                # ever sent) or after it (the reply says the provider may have it).
                await self.lanes.update(Lane.SUBMIT, job.id, token, attempt, unless="cancel_by")
            except Cancelled:
                return finish(Status.CANCELLED)
            try:
                task = await provider.create(order)
            except ProviderError as exc:  # only an unclear answer may hide a created task
                if exc.kind is ErrorKind.BUSY and provisions.seats is not None:
                    await provisions.seats.release(job.id)
                return self._submit_failed(job, exc, create_in_doubt=exc.ambiguous)
        log.info("job %s: %s task %s created", job.id, provider.label, task.id)
        if provider.accepts_webhook:
            await self.indexes.index_task(provider.name, task.id, job.id, self.timing.job_timeout_ms)
        job.status, job.task_id, job.queue_note = Status.PROCESSING, task.id, ""
        # Skipped when the workspace's update budget is spent (a burst): the final update corrects it.
        if job.source is Source.COMMAND and await self._update_budget(job.team_id).try_acquire(
            COSMETIC_SHARE
        ):
            await self.slack.update(job.channel, job.parent_ts, parent(job, provider.label))
        fields = {
            "status": Status.PROCESSING,
            "task_id": task.id,
            "submit_state": "",
            "errors": 0,
            "queue_note": "",
        }
        return Move(Lane.POLL, self.timing.poll_interval_ms, fields)

    async def _ensure_parent(self, job: Job, token: str) -> Decision | None:
        """Post the job's message in the channel once. A decision when the job cannot go on now."""
        if job.source is Source.COMPARE:
            labels = [self._label(name) for name in (job.compare_with or job.provider).split(",")]
            build: Callable[[bool], Message] = lambda _: compare_parent(job, labels)  # noqa: E731
        else:
            build = lambda _: parent(job, self._label(job.provider))  # noqa: E731
        try:
            await self._post_once(job, "parent", Lane.SUBMIT, token, job.channel, None, build)
            return None
        except SlackUnreachable as exc:
            log.info("job %s: cannot post in %s (%s)", job.id, job.channel, exc)
            await self.slack.respond(job.response_url, cannot_post_here(job.channel))
            return Done(
                {"status": Status.FAILED, "error_code": "unreachable", "reply_state": PostState.SKIPPED}
            )
        except (SlackRetryLater, SlackAmbiguous, SlackFailed) as exc:
            return self._slack_setback(job, exc)

    async def _follow_lead(self, job: Job, token: str) -> Decision | None:
        """A compare job answers in its lead's message thread: wait until the lead has posted it."""
        if job.parent_state is PostState.POSTED:
            return None
        # created_ms is always stored: without it, the lead is gone (fields at their default are not stored).
        names = ("created_ms", "parent_state", "parent_ts", "status", "error_code")
        lead = await self.records.get_fields(job.group, names)
        if lead.get("parent_state") == PostState.POSTED and lead.get("parent_ts"):
            job.parent_state, job.parent_ts = PostState.POSTED, lead["parent_ts"]
            fields = {"parent_state": PostState.POSTED, "parent_ts": job.parent_ts}
            await self.lanes.update(Lane.SUBMIT, job.id, token, fields)
            return None
        if lead.get("error_code") in REFUSALS:
            # The lead was refused before paying (a link, a budget): the compare stops, and says so.
            return finish(Status.FAILED, error_code=COMPARE_STOPPED)
        if "created_ms" not in lead or Status(lead.get("status") or Status.QUEUED).final:
            # The lead ended without a message (the bot cannot post there; it told the user): so do we.
            return Done(
                {"status": Status.FAILED, "error_code": "unreachable", "reply_state": PostState.SKIPPED}
            )
        return Stay(LEAD_WAIT_MS)

    async def _cached_files(self, job: Job, token: str) -> Cached | None:
        """Shared files are known to the result cache by their bytes, hashed while they were hosted."""
        if job.checked != 1 or job.no_cache or job.cache_key == "-":
            return None
        if not job.cache_key:
            files = [f for f in (job.video, job.audio) if f]
            digests = [d for f in files if (d := await self.values.shared_value(_digest_key(job, f)))]
            key = self.gate.files_cache_key(job, digests[0], digests[1]) if len(digests) == 2 else ""
            job.cache_key = key or "-"  # "-": cannot be known; never looked up again
            await self.lanes.update(Lane.SUBMIT, job.id, token, {"cache_key": job.cache_key})
        return await self.gate.cached(job) if job.cache_key != "-" else None

    async def _host_files(self, job: Job, token: str, now_ms: int, provisions: Provisions) -> Decision | None:
        """Make the job's Slack files reachable by the provider: its upload, or the bot's signed media
        links. None once both are stored in the job."""
        provider = provisions.provider
        for url_field, file in (("video_url", job.video), ("audio_url", job.audio)):
            if getattr(job, url_field):
                continue
            assert file is not None, "a job from shared files carries both files"
            if not provider.hosts_uploads:
                if self.media is None:
                    return finish(Status.FAILED, error_code=NEEDS_PUBLIC_URL, error_file=file.name)
                if (setback := await self._digest(job, file)) is not None:
                    return setback
                url = await self.media.link(file, self.timing.job_timeout_ms)
            else:
                cache_key = f"{provider.name}:{provider.key_id}:{job.team_id}:{file.id}"
                found = await self.assets.asset_url(cache_key)
                if found is None:
                    uploaded = await self._upload(job, token, file, cache_key, now_ms, provisions)
                    if not isinstance(uploaded, str):
                        return uploaded
                    found = uploaded
                url = found
            await self.lanes.update(Lane.SUBMIT, job.id, token, {url_field: url})
            setattr(job, url_field, url)
        return None

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
                wait := await self._post_slot(job, token, now_ms, provisions)
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
            return self._upload_failed(job, file, exc.code, exc.detail, not exc.permanent)
        except ProviderError as exc:
            if exc.kind in (ErrorKind.RATE_LIMITED, ErrorKind.BUSY):
                return Stay(not_now_ms())
            return self._upload_failed(
                job, file, exc.code or "upload", exc.message, exc.kind is ErrorKind.TRANSIENT
            )
        finally:
            await self.assets.unlock(lock, token)

    async def _digest(self, job: Job, file: SlackFile) -> Decision | None:
        """For providers the bot serves files to (no upload to hash along): read the file once to hash it,
        when the result cache may use it."""
        if not self.gate.rules.cache_ttl_s or job.no_cache:
            return None
        if await self.values.shared_value(_digest_key(job, file)) is not None:
            return None
        try:
            digest = await self.transfer.digest(file)
        except TransferError as exc:
            return self._upload_failed(job, file, exc.code, exc.detail, not exc.permanent)
        await self.values.share_value(_digest_key(job, file), digest, DIGEST_KEPT_MS)
        return None

    def _upload_failed(self, job: Job, file: SlackFile, code: str, detail: str, transient: bool) -> Decision:
        errors = job.errors + 1
        if transient and errors < MAX_SUBMIT_ERRORS:
            log.warning("job %s: hosting %s failed (%s), retry %d", job.id, file.id, detail, errors)
            return Stay(backoff_ms(errors), {"errors": errors, "last_error": f"{file.name}: {detail}"})
        log.warning("job %s: cannot host %s: %s %s", job.id, file.id, code, detail)
        return finish(Status.FAILED, error_code=code, error=detail, error_file=file.name)

    async def _post_slot(self, job: Job, token: str, now_ms: int, provisions: Provisions) -> Decision | None:
        """None when the job may make its provider POST now. Otherwise it has a slot reserved for later and
        stays until then; when it comes back it uses that slot (once) without asking again."""
        turn = await self._turn(job, token, now_ms, Lane.SUBMIT, provisions.limiter, "post_slot_ms")
        if not turn.wait_ms:
            return None
        if not turn.new:  # early for its slot (claimed by a tick): wait on
            return Stay(turn.wait_ms)
        # Our turn has not come: wait in line, in the order the slots were handed out.
        label = provisions.provider.label
        note = f"{ordinal(turn.ahead + 1)} in line for {label}, about {max(1, round(turn.wait_ms / 1000))} s"
        return await self._in_line(job, now_ms, note, turn.wait_ms, {"post_slot_ms": now_ms + turn.wait_ms})

    async def _turn(
        self, job: Job, token: str, now_ms: int, lane: Lane, limiter: RateLimiter, slot_field: str
    ) -> Turn:
        """The job's turn at a shared limit: now (wait 0), or a slot reserved for later whose time the caller
        stores in `slot_field` (`new`). A job coming back for its slot uses it once without asking again;
        one coming back long after it (a restart, a backlog) takes a new one."""
        slot_ms = int(getattr(job, slot_field))
        if slot_ms:
            if now_ms < slot_ms:
                return Turn(slot_ms - now_ms)
            setattr(job, slot_field, 0)
            await self.lanes.update(lane, job.id, token, {slot_field: 0})  # used up
            if now_ms - slot_ms <= SLOT_STALE_MS:
                return Turn(0)
        wait_ms, ahead = await limiter.reserve(job.id)
        return Turn(wait_ms, ahead, new=wait_ms > 0)

    async def _give_back_slot(self, job: Job, limiter: RateLimiter) -> None:
        """The job ended (cancelled) before the POST slot it had reserved: the jobs waiting behind it in
        line move up one slot each, so the next one posts when this one would have, not a window later."""
        moved = await limiter.give_back(job.id)
        if moved:
            log.info("job %s: its reserved slot passed on; %d job(s) waiting moved up", job.id, len(moved))
            # This process's worker claims the first of them in time.
            self.watch.queued(Lane.SUBMIT, min(moved.values()))

    def _update_budget(self, team_id: str) -> RateLimiter:
        """The workspace's chat.update budget, shared by every process (see QUEUE_NOTE_SPACING_MS)."""
        budget = self._update_budgets.get(team_id)
        if budget is None:
            budget = RateLimiter(self.redis, f"slack:chat.update:{team_id}", self.updates_per_minute)
            self._update_budgets[team_id] = budget
        return budget

    async def _in_line(
        self, job: Job, now_ms: int, note: str, delay_ms: int, fields: Fields | None = None
    ) -> Stay:
        """Wait for a turn at the provider, saying where the job stands. The job's message shows it, at most
        every QUEUE_NOTE_SPACING_MS per job and within a per-workspace budget of chat.update calls (Slack's
        Tier 3): a skipped update only means the message lags a little; `/lipsync status` always has it."""
        values: dict[str, object] = {**(fields or {}), "queue_note": note}
        due = now_ms - job.queue_note_ms >= QUEUE_NOTE_SPACING_MS and note != job.queue_note
        shown = due and job.source is Source.COMMAND and job.parent_state is PostState.POSTED
        if shown and await self._update_budget(job.team_id).try_acquire(COSMETIC_SHARE):
            job.queue_note = note
            await self.slack.update(job.channel, job.parent_ts, parent(job, self._label(job.provider)))
            values["queue_note_ms"] = now_ms
        return Stay(delay_ms, values)

    def _slack_setback(self, job: Job, exc: Exception) -> Stay:
        """Come back after Slack said "not now" (429), "maybe" (unclear outcome) or "no"."""
        if isinstance(exc, SlackRetryLater):
            return Stay(int(exc.delay_s * 1000))
        if isinstance(exc, SlackAmbiguous):
            log.warning("job %s: Slack post outcome unclear (%s); will look before posting", job.id, exc)
            return Stay(int(exc.settle_s * 1000))
        # A refusal an admin may still fix (token, scopes): back off, keep trying.
        errors = job.errors + 1
        log.error("job %s: Slack refused a post (%s), attempt %d", job.id, exc, errors)
        return Stay(backoff_ms(errors, cap_ms=300_000), {"errors": errors, "last_error": f"Slack: {exc}"})

    async def _find_earlier_create(self, job: Job, provider: Provider, order: Order) -> Task | None:
        """After a create whose answer we never got, adopt the task it made instead of paying twice."""
        task = await provider.find(order)
        if task is None:
            return None
        ours = task.created_at is None or task.created_at >= job.created_ms / 1000 - CLOCK_SKEW_S
        if task.state is TaskState.FAILED and not ours:
            return None  # an old failure with the same inputs: try afresh
        log.info("job %s: adopting %s task %s found by lookup", job.id, provider.label, task.id)
        return task

    async def _last_look(self, job: Job, provider: Provider) -> dict[str, object]:
        """A job that times out while its create is in doubt looks once more, so that a task the provider
        made (and charged for) is named in the reply instead of left unknown."""
        if job.submit_state is not PostState.ATTEMPTED or provider.recovery is not Recovery.LOOKUP:
            return {}
        try:
            task = await self._find_earlier_create(job, provider, self._order(job, provider))
        except ProviderError:
            return {}
        return {"task_id": task.id} if task else {}

    def _create_unsettled(self, job: Job, now_ms: int) -> Stay | None:
        """None when the last create, whose answer was lost, has had time to land and the lookup just
        found nothing: it was never made, and creating again is safe. Until then, never create: look
        again a little later and adopt the task when it appears."""
        attempt_ms = job.submit_attempt_ms or now_ms  # a job marked before attempt times were kept
        settled_ms = attempt_ms + self.timing.create_settle_ms
        if now_ms >= settled_ms:
            waited_s = (now_ms - attempt_ms) // 1000
            log.warning("job %s: no task %d s after the lost create; creating again", job.id, waited_s)
            return None
        lookups = job.submit_lookups + 1
        delay = min(settled_ms - now_ms, backoff_ms(lookups, SETTLE_LOOKUP_BASE_MS, SETTLE_LOOKUP_CAP_MS))
        log.info("job %s: no task yet for the lost create; looking again in %d ms", job.id, delay)
        return Stay(delay, {"submit_attempt_ms": attempt_ms, "submit_lookups": lookups})

    def _submit_failed(self, job: Job, exc: ProviderError, create_in_doubt: bool) -> Decision:
        metrics.PROVIDER_ERRORS.labels(job.provider, exc.kind.value).inc()
        # A create that may have happened keeps the marker, so the next attempt recovers it. A clear
        # refusal removes it: that create was not made, and any earlier one had settled.
        marker = PostState.ATTEMPTED if create_in_doubt else ""
        if exc.kind in (ErrorKind.RATE_LIMITED, ErrorKind.BUSY):
            log.info("job %s: provider says not now (%s); waiting", job.id, exc.kind)
            return Stay(not_now_ms(), {"submit_state": marker})
        if exc.kind is ErrorKind.TRANSIENT and job.errors + 1 < MAX_SUBMIT_ERRORS:
            errors = job.errors + 1
            log.warning("job %s: submit failed (%s), retry %d", job.id, exc, errors)
            fields = {"errors": errors, "last_error": str(exc), "submit_state": marker}
            return Stay(backoff_ms(errors), fields)
        log.warning("job %s: submit failed for good: %s", job.id, exc)
        code = SUBMIT_UNKNOWN if create_in_doubt and self._cannot_reconcile(job) else exc.code
        return finish(Status.FAILED, error_code=code, error=exc.message, submit_state=marker)

    def _cannot_reconcile(self, job: Job) -> bool:
        provisions = self.providers.get(job.provider)
        return provisions is not None and provisions.provider.recovery is Recovery.NONE

    # ------------------------------------------------------------------- poll

    async def poll(self, job: Job, token: str, now_ms: int) -> Decision:
        """Reads only POLL_FIELDS of the job: the worker claims poll jobs with just those."""
        provisions = self.providers.get(job.provider)
        if provisions is None:
            return finish(Status.FAILED, error_code=PROVIDER_OFF)
        if job.cancel_by:
            return finish(Status.CANCELLED)
        if self._expired(job, now_ms):
            return finish(Status.TIMED_OUT, error_code="timeout")
        provider = provisions.provider
        try:
            task = await provider.get(job.task_id)
        except ProviderError as exc:
            metrics.PROVIDER_ERRORS.labels(job.provider, exc.kind.value).inc()
            if exc.kind in (ErrorKind.NOT_FOUND, ErrorKind.PERMANENT, ErrorKind.ADMIN):
                return finish(Status.FAILED, error_code=exc.code, error=exc.message)
            errors = job.errors + 1  # keep trying until the job's timeout: the task may still finish
            log.warning("job %s: poll failed (%s), retry %d", job.id, exc, errors)
            delay = max(self.timing.poll_delay_ms(job, now_ms), backoff_ms(errors))
            return Stay(delay, {"errors": errors, "last_error": str(exc)})
        polls = job.polls + 1
        if task.state is TaskState.SUCCEEDED:
            cost = provider.cost(task, job.model)
            return finish(
                Status.SUCCEEDED,
                result_url=task.result_url,
                cover_url=task.cover_url,
                duration_s=task.duration_s,
                cost=f"{cost.amount:f}" if cost else "",
                cost_unit=cost.unit if cost else "",
                took_ms=now_ms - job.created_ms,
                polls=polls,
            )
        if task.state is TaskState.FAILED:
            return finish(Status.FAILED, error=task.error, error_code=task.error_code, polls=polls)
        return Stay(self.timing.poll_delay_ms(job, now_ms), {"polls": polls, "errors": 0})

    # ------------------------------------------------------------------- send

    async def send(self, job: Job, token: str, now_ms: int) -> Decision:
        await self.gate.remember(job, now_ms)
        provisions = self.providers.get(job.provider)
        if provisions is not None and provisions.seats is not None:
            await provisions.seats.release(job.id)  # the task is over (or was never made)
        if provisions is not None and job.post_slot_ms > now_ms:
            await self._give_back_slot(job, provisions.limiter)
        provider = provisions.provider if provisions else None
        if job.parent_state is not PostState.POSTED:
            # The job ended before its message existed: answer privately instead.
            await self.slack.respond(job.response_url, result(job, provider))
            return Done({"reply_state": PostState.SKIPPED})
        try:
            await self._post_once(
                job,
                "reply",
                Lane.SEND,
                token,
                job.channel,
                job.parent_ts,
                lambda rich: result(job, provider, with_cover=rich),
            )
        except SlackUnreachable as exc:
            log.warning("job %s: cannot reply in %s (%s)", job.id, job.channel, exc)
            await self.slack.respond(job.response_url, result(job, provider))
            return Done({"reply_state": PostState.SKIPPED})
        except (SlackRetryLater, SlackAmbiguous, SlackFailed) as exc:
            return self._send_setback(job, "reply", exc)
        uploading = job.status is Status.SUCCEEDED and job.upload_state in UPLOAD_PENDING
        if uploading and self.uploader is not None and (setback := await self._upload_result(job, token)):
            return setback
        if job.source is Source.COMMAND:
            # The message's final state must show: it waits its turn in the workspace's update budget
            # rather than meet Slack's 429s when many jobs end at once.
            budget = self._update_budget(job.team_id)
            turn = await self._turn(job, token, now_ms, Lane.SEND, budget, "update_slot_ms")
            if turn.wait_ms:
                return Stay(turn.wait_ms, {"update_slot_ms": now_ms + turn.wait_ms} if turn.new else {})
            await self.slack.update(job.channel, job.parent_ts, parent(job, self._label(job.provider)))
        elif job.source is Source.FILES:
            await self._react_when_group_done(job)
        else:
            return await self._summary_when_group_done(job, token)
        return Done()

    async def _react_when_group_done(self, job: Job) -> None:
        """Swap the "working" reaction for the outcome once every job of the message has answered."""
        entries, _ = await self.marks.group_done(job.group, job.id, job.status, job.group_size)
        statuses = list(entries.values())
        if len(statuses) < job.group_size:
            return
        channel, ts = job.channel, job.source_ts
        if Status.SUCCEEDED in statuses:
            await self.slack.react(channel, ts, REACTION_DONE)
        if any(status != Status.SUCCEEDED for status in statuses):
            await self.slack.react(channel, ts, REACTION_FAILED)
        await self.slack.react(channel, ts, REACTION_WORKING, remove=True)

    async def _summary_when_group_done(self, job: Job, token: str) -> Decision:
        """The job that completes a compare posts its summary table (once), then marks the message done."""
        entry = CompareEntry(
            provider=self._label(job.provider),
            model=job.model,
            status=job.status,
            took_ms=job.took_ms,
            duration_s=job.duration_s,
            cost=job.cost,
            cost_unit=job.cost_unit,
            result_url=job.result_url,
            order=job.id,
        )
        entries, owner = await self.marks.group_done(
            job.group, job.id, json.dumps(entry.__dict__), job.group_size
        )
        if owner != job.id:
            return Done()
        rows = sorted((CompareEntry(**json.loads(v)) for v in entries.values()), key=lambda e: e.order)
        try:
            await self._post_once(
                job,
                "summary",
                Lane.SEND,
                token,
                job.channel,
                job.parent_ts,
                lambda _: compare_summary(rows),
            )
        except SlackUnreachable:
            return Done()
        except (SlackRetryLater, SlackAmbiguous, SlackFailed) as exc:
            return self._send_setback(job, "summary", exc)
        labels = [row.provider for row in rows]
        await self.slack.update(job.channel, job.parent_ts, compare_parent(job, labels, done=True))
        return Done()

    async def _upload_result(self, job: Job, token: str) -> Decision | None:
        """Put the result video itself in the thread, exactly once (bot/slack/result_upload.py says how). None
        when it is there, or when the link must do (the thread then says why)."""
        assert self.uploader is not None
        state, file_id = job.upload_state, job.upload_file_id
        try:
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
            title = f"Dubbed video ({self._label(job.provider)}, job {short_id(job.id)})"
            await self.uploader.complete(file_id, job.channel, job.parent_ts, title)
            await self.lanes.update(Lane.SEND, job.id, token, {"upload_state": "posted"})
            log.info("job %s: result uploaded into the thread as %s", job.id, file_id)
            return None
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

    def _send_setback(self, job: Job, kind: str, exc: Exception) -> Decision:
        """Come back later to post, unless Slack has refused it so often that an admin is not coming."""
        if isinstance(exc, SlackFailed) and job.errors + 1 >= MAX_SEND_ERRORS:
            log.error("job %s: giving up on the %s after %d refusals", job.id, kind, MAX_SEND_ERRORS)
            return Done({"last_error": f"Slack: {exc}"})
        return self._slack_setback(job, exc)

    def _label(self, name: str) -> str:
        provisions = self.providers.get(name)
        return provisions.provider.label if provisions else name

    # ------------------------------------------------------------ Slack posts

    async def _post_once(
        self,
        job: Job,
        kind: str,
        lane: Lane,
        token: str,
        channel: str,
        thread_ts: str | None,
        build: Callable[[bool], Message],
    ) -> str:
        """Post this job's `kind` message unless it is already there; returns its ts.

        `chat.postMessage` has no idempotency key, so before posting the job records `<kind>_state =
        attempted`; whoever finds that marker later looks for the message (by its metadata) first.
        A clear refusal removes the marker: nothing was posted."""
        state = getattr(job, f"{kind}_state")
        if state is PostState.POSTED:
            return str(getattr(job, f"{kind}_ts"))
        if state is PostState.ATTEMPTED:
            since_ms = getattr(job, f"{kind}_attempt_ms")
            found = await self.slack.find_posted(job.id, kind, channel, thread_ts, since_ms)
            if found:
                await self._record_post(job, lane, token, kind, PostState.POSTED, found)
                return found
        await self._record_post(job, lane, token, kind, PostState.ATTEMPTED)
        try:
            ts = await self.slack.post(job.id, kind, channel, thread_ts, build)
        except (SlackRetryLater, SlackUnreachable, SlackFailed):
            await self._record_post(job, lane, token, kind, PostState.NONE)
            raise
        await self._record_post(job, lane, token, kind, PostState.POSTED, ts)
        return ts

    async def _record_post(
        self, job: Job, lane: Lane, token: str, kind: str, state: PostState, ts: str = ""
    ) -> None:
        fields: dict[str, object] = {f"{kind}_state": state.value}
        if state is PostState.ATTEMPTED:
            fields[f"{kind}_attempt_ms"] = NOW
        if ts:
            fields[f"{kind}_ts"] = ts
        now = await self.lanes.update(lane, job.id, token, fields)
        setattr(job, f"{kind}_state", state)
        if state is PostState.ATTEMPTED:
            setattr(job, f"{kind}_attempt_ms", now)
        if ts:
            setattr(job, f"{kind}_ts", ts)


def _digest_key(job: Job, file: SlackFile) -> str:
    return f"sha256:{job.team_id}:{file.id}"


def _ended(job: Job, decision: Done) -> Job:
    """The job as its final decision leaves it."""
    ended = dataclasses.replace(job)
    for name, value in decision.fields.items():
        if hasattr(ended, name) and name != "extra":
            setattr(ended, name, value)
    return ended
