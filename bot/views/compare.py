"""A compare's message and the summary table that ends it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.jobs.model import Job, Status
from bot.views.formats import _duration, cost_text, took_text
from bot.views.text import (
    Message,
    _code,
    _context,
    _escape,
    _fields,
    _link,
    _mention,
    _message,
    _section,
    _shorten,
)


@dataclass(frozen=True)
class CompareEntry:
    """One provider's line in a compare's summary (stored as JSON in the group until all are done)."""

    provider: str
    model: str
    status: str
    took_ms: int
    duration_s: str
    cost: str
    cost_unit: str
    result_url: str
    order: str  # the job id: rows keep the order the jobs were made in


def compare_parent(job: Job, labels: Sequence[str], done: bool = False) -> Message:
    who = _mention(job.identity.person)
    status = (
        ":white_check_mark: Done: every reply and the summary are in the thread."
        if done
        else ":gear: Working: a reply per provider arrives in the thread as each finishes, then a summary."
    )
    names = ", ".join(_escape(_shorten(label, 40)) for label in labels)
    return _message(
        f"{who} asked to compare providers on one dub: {names}. {status}",
        [
            _section(f":bar_chart: {who} asked to compare providers on one dub: {names}"),
            _fields(
                f"*Video*\n{_link(job.inputs.video.link)}",
                f"*Audio*\n{_link(job.inputs.audio.link)}",
                f"*Playback*\n{_code(job.inputs.playback)}",
                f"*Status*\n{status}",
            ),
            _context(f"Compare {_code(job.id)}"),
        ],
    )


def compare_summary(rows: Sequence[CompareEntry]) -> Message:
    """The table that ends a compare: provider, model, time to result, duration, cost, link."""
    lines = ["*Provider · model · time to result · duration · cost · result*"]
    for row in rows:
        provider = _escape(_shorten(row.provider, 40))
        model = _code(row.model, 64) if row.model else "—"
        if row.status == Status.SUCCEEDED:
            outcome = _link(row.result_url, "open the video") if row.result_url else "—"
            line = (
                f"{provider} · {model} · {took_text(row.took_ms)} · {_duration(row.duration_s)} · "
                f"{cost_text(row.cost, row.cost_unit)} · {outcome}"
            )
        else:
            status = _escape(_shorten(row.status.replace("_", " "), 20))
            line = f"{provider} · {model} · {status} · — · — · see its reply above"
        lines.append(line)
    done = [r for r in rows if r.status == Status.SUCCEEDED and r.took_ms]
    if len(done) > 1:
        fastest = min(done, key=lambda r: r.took_ms)
        fastest_name = _escape(_shorten(fastest.provider, 40))
        lines.append(f":zap: Fastest: {fastest_name}. Costs are in each provider's own unit.")
    text = "\n".join(lines)
    return _message(f"Compare summary: {len(done)} of {len(rows)} providers made the dub", [_section(text)])
