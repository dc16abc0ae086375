"""Money: the quote asked before an expensive dub, balance and budget refusals, `/lipsync budget`."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from bot.jobs.model import Job, short_id
from bot.money.budgets import Limit
from bot.providers.base import Cost
from bot.views.actions import ACTION_QUOTE_CANCEL, ACTION_QUOTE_OK, _button
from bot.views.formats import amount_text
from bot.views.text import (
    _SLACK_ID,
    SECTION_TEXT_MAX,
    Message,
    _code,
    _context,
    _escape,
    _fit,
    _mention,
    _message,
    _section,
)


def _length(seconds: str) -> str:
    try:
        value = Decimal(seconds)
    except ArithmeticError:
        return ""
    return f"{value.quantize(Decimal('0.1')):f} s"


def quote_prompt(
    job: Job, label: str, quote: Cost | None, threshold: Decimal, minutes: int, unknown: str = ""
) -> Message:
    """The private question before an expensive dub: Dub it / Cancel. `unknown` names what the bot could
    not learn ("the audio's length"): the quote is then an upper estimate, or with no quote at all (a
    provider without a price rule), the cost is unknown."""
    lengths = " and ".join(
        f"{what} {_length(value)}"
        for what, value in (("video", job.money.video_s), ("audio", job.money.audio_s))
        if value
    )
    above = (
        f"the {amount_text(threshold, quote.unit if quote else job.money.quote_unit)} above which I ask first"
    )
    if quote is None:
        text = (
            f":moneybag: {label} does not say what a dub costs before it is done, so I can't tell whether "
            f"this one costs more than {above}. Dub it?"
        )
    else:
        cost = amount_text(quote.amount, quote.unit)
        if unknown:
            said = f"may cost up to *{cost}* at {label} (an upper estimate: I couldn't learn {unknown})"
        else:
            said = f"should cost about *{cost}* at {label}" + (f" ({lengths})" if lengths else "")
        text = f":moneybag: This dub {said}, more than {above}. Dub it?"
    buttons = [
        {**_button("Dub it", ACTION_QUOTE_OK, job, "primary")},
        {**_button("Cancel", ACTION_QUOTE_CANCEL, job)},
    ]
    blocks = [
        _section(text),
        {"type": "actions", "block_id": f"quote:{short_id(job.id)}", "elements": buttons},
        _context(
            f"Job {_code(short_id(job.id))} · nothing is sent until you answer; this quote expires in "
            f"{minutes} minutes."
        ),
    ]
    return _message(text, blocks)


def quote_answered(job: Job, outcome: str) -> Message:
    """Replaces the private quote once it is answered (or can no longer be)."""
    ref = _code(short_id(job.id))
    text = {
        "now": f":white_check_mark: Dubbing it: job {ref}. The result will be in its thread.",
        "confirmed": f":white_check_mark: Dubbing it: job {ref}. The result will be in its thread.",
        "already": f":white_check_mark: Job {ref} is already on its way.",
        "cancelled": f":no_entry_sign: Cancelled job {ref}: nothing was sent or charged.",
        "over": f":information_source: Job {ref} can no longer be started from this quote (it expired or "
        "was cancelled). Run the command again for a new one.",
    }.get(outcome, f":mag: Job {ref} is gone.")
    return _message(text, [_section(text)])


def budget_refusal(limit: Limit, quote: Decimal | None, unit: str, unknown: str = "") -> str:
    """Plain words (escaped when shown) on a budget a dub would overdraw. `unknown` names what the bot
    could not learn: `quote` is then an upper estimate, or None when nothing bounds the cost."""
    whose = "this channel's" if limit.scope == "channel" else "your"
    left = f"{amount_text(limit.left, unit)} of {amount_text(limit.amount, unit)} left"
    if quote is None:
        return (
            f"I can't know what this dub costs before it is done ({unknown} is not published), and "
            f"{whose} monthly budget ({left}) must never be overdrawn."
        )
    if unknown:
        need = f"may need up to {amount_text(quote, unit)} (an upper estimate: I couldn't learn {unknown})"
    else:
        need = f"needs about {amount_text(quote, unit)}"
    return f"This dub {need}, and {whose} monthly budget has {left}."


def balance_refusal(label: str, left: Cost, quote: Cost) -> str:
    return (
        f"{label} has {amount_text(left.amount, left.unit)} left, and this dub needs about "
        f"{amount_text(quote.amount, quote.unit)}, so I didn't send it."
    )


def balance_low(label: str, left: Cost, threshold: Decimal) -> Message:
    """For the admins' channel, once per fall below the threshold."""
    text = (
        f":warning: {_escape(label)} has {amount_text(left.amount, left.unit)} left, below "
        f"{amount_text(threshold, left.unit)} (`BALANCE_WARN_BELOW`). Dubs that need more than what is left "
        "are refused before they are sent. Top up the account to keep dubbing."
    )
    return _message(text, [_section(text)])


def _scope(limit: Limit) -> str:
    return (
        f"<#{limit.id}>" if limit.scope == "channel" and _SLACK_ID.fullmatch(limit.id) else _mention(limit.id)
    )


def _budget_lines(limits: Sequence[Limit]) -> list[str]:
    return [
        f"• {_scope(b)}: {amount_text(b.spent, b.unit)} of {amount_text(b.amount, b.unit)} spent, "
        f"{amount_text(b.left, b.unit)} left"
        for b in sorted(limits, key=lambda b: (b.scope, b.id, b.unit))
    ]


def budgets_view(limits: Sequence[Limit], month: str, admin: bool) -> Message:
    """`/lipsync budget`: every budget of the workspace with this month's spend."""
    if limits:
        lines = _budget_lines(limits)
        body = (
            f"*Monthly budgets* ({_escape(month)}, UTC; quotes of running dubs count as spent)\n"
            + "\n".join(lines)
        )
    else:
        body = "*Monthly budgets*: none set; dubs are limited only by the providers' balances."
    how = (
        "Set one with `/lipsync budget #channel 50` or `/lipsync budget @person 20` (add a unit such as "
        "`USD` when several are in use); `/lipsync budget #channel off` removes it."
        if admin
        else "Workspace admins set them with `/lipsync budget`."
    )
    text = f"{body}\n{how}"
    return _message(text, [_section(_fit(body, SECTION_TEXT_MAX)), _context(how)])


def budget_set(scope: str, scope_id: str, unit: str, amount: Decimal | None, spent: Decimal) -> Message:
    limit = Limit(scope, scope_id, unit, amount or Decimal(0), spent)
    who = _scope(limit)
    if amount is None:
        text = f":white_check_mark: {who} has no monthly budget in {_escape(unit)} any more."
    else:
        text = (
            f":white_check_mark: {who} now has a monthly budget of {amount_text(amount, unit)}; "
            f"{amount_text(spent, unit)} spent so far this month."
        )
    return _message(text, [_section(text)])


def budget_usage(reason: str) -> Message:
    text = (
        f":warning: {_escape(reason)} Use `/lipsync budget #channel 50`, `/lipsync budget @person 20` "
        "(a unit such as `credits` or `USD` may follow the amount), `/lipsync budget #channel off`, or "
        "`/lipsync budget` to see them."
    )
    return _message(text, [_section(text)])


def admins_only() -> Message:
    text = ":lock: Only workspace admins can set budgets. `/lipsync budget` shows them."
    return _message(text, [_section(text)])
