"""The three steps a job goes through, one per lane of the store, and the one place their decisions are
carried out.

Each step runs on a job this process has claimed (with `token`), decides, and returns exactly one
`Decision`: stay in its lane until later, move to the next lane, or be done. `Pipeline.apply` is the one
place that carries a decision out (a single atomic store transition). Transient faults stay with
exponential backoff and jitter (`backoff_ms`, the one retry policy), so retries survive restarts and never
hold a worker.

  submit (bot/lanes/submit.py): post the job's message (or, for shared files, host them for the
          provider) → recover an ambiguous create the provider's way → rate limit and seats → create the task
  poll (bot/lanes/poll.py): ask the provider how the task is doing → stay, or finish as
          succeeded/failed/timed out
  send (bot/lanes/send.py): post the one result reply in the thread → update the job's message, the
          reactions on the message that shared the files, or a compare's summary → done

The protocols the steps share each have a module: posting once (bot/lanes/posting.py), hosting shared
files (bot/lanes/hosting.py), rate turns and queue notes (bot/lanes/turns.py), the compare summary
(bot/lanes/summary.py) and the result upload (bot/lanes/upload.py).

Every write of job state is the decision applied here, except marks that must be durable in the middle of
a step, before or after an outside call that cannot be repeated safely. They all go through the claim
(`Lanes.update` with the step's token, so a process that lost the job writes nothing), and each module
that makes one names it and says why: the post-once marks (posting), the create mark and a compare
follower's copy of its lead's message (submit), hosted file URLs and the result-cache key (hosting), a
used rate slot (turns), the upload's progress (upload); and the gate's findings, budget reservation and
confirmation ask (bot/lanes/gate.py), kept as they are made so that a setback later in the step never
checks, reserves or asks twice.

Providers are reached through `bot.providers.base.Provider` only; steps match on its normalized states.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

from bot.jobs.decisions import Decision, Done, Move, Stay, cancelled
from bot.jobs.lanes import Cancelled, Lane
from bot.jobs.model import Job, Status
from bot.jobs.store import Store
from bot.lanes.gate import Gate
from bot.lanes.hosting import Hosting
from bot.lanes.poll import PollStep
from bot.lanes.posting import Posting
from bot.lanes.provisions import Provisions
from bot.lanes.send import SendStep
from bot.lanes.submit import SubmitStep
from bot.lanes.summary import CompareSummary
from bot.lanes.timing import Timing
from bot.lanes.turns import UPDATES_PER_MINUTE, Turns
from bot.lanes.upload import ResultUpload
from bot.observe import metrics
from bot.slack.media_links import MediaLinks
from bot.slack.out import SlackOut
from bot.slack.result_upload import ResultUploader
from bot.slack.transfer import Transfer

log = logging.getLogger(__name__)

# The lanes where a job waits for its next step; a cancel ends a job there instead of letting it wait.
WAITING_LANES = (Lane.SUBMIT, Lane.POLL)

Step = Callable[[Job, str, int], Awaitable[Decision]]


class Pipeline:
    def __init__(
        self,
        *,
        store: Store,
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
        self.lanes = store.lanes
        self.indexes = store.indexes
        self.providers = providers
        self.gate = gate  # what a job must pass before it is paid for (bot/lanes/gate.py)
        self.watch = store.watch  # told of each ended job (App Home refreshes its requester's view)
        posting = Posting(lanes=store.lanes, slack=slack)
        turns = Turns(
            redis=store.redis,  # the workspaces' chat.update budgets
            lanes=store.lanes,
            watch=store.watch,
            slack=slack,
            providers=providers,
            updates_per_minute=updates_per_minute,
        )
        self.submit = _submit_step(
            store=store,
            providers=providers,
            slack=slack,
            timing=timing,
            transfer=transfer,
            gate=gate,
            media=media,
            webhook_base=webhook_base,
            posting=posting,
            turns=turns,
        )
        self.poll = PollStep(providers=providers, timing=timing)
        self.send = _send_step(
            store=store,
            providers=providers,
            slack=slack,
            timing=timing,
            gate=gate,
            uploader=uploader,
            posting=posting,
            turns=turns,
        )
        self._steps: dict[Lane, Step] = {Lane.SUBMIT: self.submit, Lane.POLL: self.poll, Lane.SEND: self.send}

    async def run(self, lane: Lane, job: Job, token: str, now_ms: int) -> None:
        decision = await self._steps[lane](job, token, now_ms)
        await self.apply(lane, job, token, decision)
        self.watch.stepped(lane, job, decision)
        if lane is Lane.SEND and isinstance(decision, Done):
            metrics.job_ended(job)
            if job.status in (Status.FAILED, Status.TIMED_OUT):
                await self.indexes.note_failure(job.id)
            self.watch.ended(job)

    async def apply(self, lane: Lane, job: Job, token: str, decision: Decision) -> None:
        """The one place a step's decision is carried out.

        It writes what the step changed in its copy of the job (bot.jobs.codec compares it with the job as
        claimed), with the lane move, in one script. A cancel that came while the step held the job (it
        set `cancel_by` and answered "pending") is
        carried out here, whatever the step: a decision that would put the job back to wait in `submit`
        or `poll` ends it cancelled instead, at once. The script that would queue it refuses when
        someone asked to cancel, so a cancel lands either before it (ended here) or after it (the job then
        waits unheld, and the cancel script ends it)."""
        if isinstance(decision, Done):
            # Before the job is marked done: a crash in between settles again, which changes nothing.
            await self.gate.settle(job)
            await self.lanes.finish(lane, job, token)
            return
        target = decision.lane if isinstance(decision, Move) else lane
        unless_cancelled = target in WAITING_LANES
        try:
            if isinstance(decision, Stay):
                await self.lanes.reschedule(lane, job, token, decision.delay_ms, unless_cancelled)
            else:
                await self.lanes.move(lane, decision.lane, job, token, decision.delay_ms, unless_cancelled)
        except Cancelled:
            log.info("job %s: cancelled while its %s step ran; ending it now", job.id, lane)
            await self.apply(lane, job, token, cancelled(job))


def _submit_step(
    *,
    store: Store,
    providers: Mapping[str, Provisions],
    slack: SlackOut,
    timing: Timing,
    transfer: Transfer,
    gate: Gate,
    media: MediaLinks | None,
    webhook_base: str,
    posting: Posting,
    turns: Turns,
) -> SubmitStep:
    hosting = Hosting(
        lanes=store.lanes,
        assets=store.assets,
        values=store.values,
        transfer=transfer,
        media=media,
        gate=gate,
        turns=turns,
        timing=timing,
    )
    return SubmitStep(
        lanes=store.lanes,
        records=store.records,
        indexes=store.indexes,
        providers=providers,
        slack=slack,
        gate=gate,
        posting=posting,
        hosting=hosting,
        turns=turns,
        timing=timing,
        webhook_base=webhook_base,
    )


def _send_step(
    *,
    store: Store,
    providers: Mapping[str, Provisions],
    slack: SlackOut,
    timing: Timing,
    gate: Gate,
    uploader: ResultUploader | None,
    posting: Posting,
    turns: Turns,
) -> SendStep:
    upload = None
    if uploader is not None:  # None when MAX_RESULT_UPLOAD_MB is 0
        upload = ResultUpload(
            lanes=store.lanes, uploader=uploader, slack=slack, providers=providers, timing=timing
        )
    summary = CompareSummary(marks=store.marks, posting=posting, slack=slack, providers=providers)
    return SendStep(
        providers=providers,
        gate=gate,
        marks=store.marks,
        slack=slack,
        posting=posting,
        turns=turns,
        summary=summary,
        upload=upload,
    )
