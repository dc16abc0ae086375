"""The compare summary: each job of a compare records its row as it ends; the job that completes the group
posts the table once in the thread (bot/lanes/posting.py), then marks the compare's message done."""

from __future__ import annotations

import json
from collections.abc import Mapping

from bot.jobs.decisions import Decision, Done
from bot.jobs.lanes import Lane
from bot.jobs.marks import Marks
from bot.jobs.model import Job, PostKind
from bot.lanes.posting import Posting, send_setback
from bot.lanes.provisions import Provisions, provider_label
from bot.slack.out import SlackAmbiguous, SlackFailed, SlackOut, SlackRetryLater, SlackUnreachable
from bot.views.compare import CompareEntry, compare_parent, compare_summary


class CompareSummary:
    def __init__(
        self, *, marks: Marks, posting: Posting, slack: SlackOut, providers: Mapping[str, Provisions]
    ) -> None:
        self.marks = marks
        self.posting = posting
        self.slack = slack
        self.providers = providers

    async def when_group_done(self, job: Job, token: str) -> Decision:
        """The job that completes a compare posts its summary table (once), then marks the message done."""
        entry = CompareEntry(
            provider=provider_label(self.providers, job.order.provider),
            model=job.order.model,
            status=job.status,
            took_ms=job.result.took_ms,
            duration_s=job.result.duration_s or "",
            cost=job.result.cost or "",
            cost_unit=job.result.cost_unit,
            result_url=job.result.url,
            order=job.id,
        )
        entries, owner = await self.marks.group_done(
            job.identity.group, job.id, json.dumps(entry.__dict__), job.identity.group_size
        )
        if owner != job.id:
            return Done()
        rows = sorted((CompareEntry(**json.loads(v)) for v in entries.values()), key=lambda e: e.order)
        try:
            await self.posting.post_once(
                job,
                PostKind.SUMMARY,
                Lane.SEND,
                token,
                job.identity.channel,
                job.posts.parent.ts,
                lambda _: compare_summary(rows),
            )
        except SlackUnreachable:
            return Done()
        except (SlackRetryLater, SlackAmbiguous, SlackFailed) as exc:
            return send_setback(job, PostKind.SUMMARY, exc)
        labels = [row.provider for row in rows]
        await self.slack.update(
            job.identity.channel, job.posts.parent.ts, compare_parent(job, labels, done=True)
        )
        return Done()
