"""The App Home tab: this month's spend, the budgets, recent jobs, and the admins' facts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from bot.jobs.model import Job
from bot.money.budgets import Limit
from bot.views.control import _job_sections
from bot.views.formats import cost_text
from bot.views.money import _budget_lines
from bot.views.text import SECTION_TEXT_MAX, Block, _context, _escape, _fit, _mention, _section, _shorten

MAX_HOME_BUDGETS = 30


@dataclass(frozen=True)
class AdminFacts:
    providers: list[tuple[str, str | None]]  # label, balance (None: not reported)
    in_flight: int
    failures_today: int  # -1: unknown


def home_view(
    user: str,
    jobs: Sequence[Job],
    total: int,
    costs: dict[str, Decimal],
    admin: AdminFacts | None,
    limits: Sequence[Limit] = (),
) -> dict[str, Any]:
    """The App Home tab."""
    blocks: list[Block] = [
        {"type": "header", "text": {"type": "plain_text", "text": "Lip-sync dubs"}},
        _section(
            "Dub a talking-head video: `/lipsync &lt;video_url&gt; &lt;audio_url&gt;`, or share a video and "
            "an audio file in a channel I'm in. `/lipsync help` for the options."
        ),
    ]
    spent = (
        " · ".join(cost_text(f"{amount:f}", unit) for unit, amount in sorted(costs.items())) or "nothing yet"
    )
    blocks.append(_section(f"*This month* ({_mention(user)}): {spent}"))
    if limits:
        lines = _budget_lines(limits)[:MAX_HOME_BUDGETS]
        blocks.append(_section(_fit("*Monthly budgets*\n" + "\n".join(lines), SECTION_TEXT_MAX)))
    if jobs:
        blocks += [_section("*Your recent jobs*"), *_job_sections(jobs)]
        if total > len(jobs):
            blocks.append(_context(f"{total - len(jobs)} older: `/lipsync list 2`"))
    else:
        blocks.append(_section("*Your recent jobs*\nNone yet."))
    if admin is not None:
        providers = "\n".join(
            f"• {_escape(label)}: {_escape(_shorten(balance, 80)) if balance else 'balance not reported'}"
            for label, balance in admin.providers
        )
        failures = "unknown" if admin.failures_today < 0 else f"{admin.failures_today:,}"
        blocks += [
            {"type": "divider"},
            _section(f"*For admins*\n{providers}"),
            _context(f"Jobs in flight: {admin.in_flight:,} · failed or timed out today: {failures}"),
        ]
    return {"type": "home", "blocks": blocks}
