"""How `lipsync-bot dub` (bot/programs/terminal_dub.py) shows itself on a terminal: the status line on stderr,
what it says of each step the bot's lanes take on its job (`StepView`, told by the store's QueueWatch), what
it says at the end (`ending`), and outside text made safe and plain for it. No I/O but the stream it is
given."""

from __future__ import annotations

import asyncio
import dataclasses
import html
import math
import shutil
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TextIO

from bot.jobs.decisions import Decision, Move, Stay
from bot.jobs.lanes import Lane
from bot.jobs.model import CreateState, Job, Progress, Status
from bot.lanes.gate import LINK_REFUSED, REFUSED_BALANCE, REFUSED_BUDGET
from bot.lanes.submit import SUBMIT_UNKNOWN
from bot.providers.base import Cost, Provider
from bot.views import formats
from bot.views.jobs import OWN_ERRORS, failure_hint

EXIT_DONE, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
LINK_PROBLEMS = ("video link: ", "audio link: ")  # how the gate's link retries name the link (last_error)


class StatusLine:
    """The current step on stderr, with the seconds since the start. On a terminal one line rewritten in
    place (a ticker keeps the seconds current); otherwise, e.g. in a log file, one line per change.
    `note` writes a line that stays (the quote, the task id)."""

    def __init__(
        self, stream: TextIO, *, clock: Callable[[], float] = time.monotonic, tty: bool | None = None
    ) -> None:
        self.stream = stream
        self.clock = clock
        self.tty = stream.isatty() if tty is None else tty
        self.started = clock()
        self._text = ""
        self._drawn = False  # a status is on screen without its newline (terminal only)
        self._ticker: asyncio.Task[None] | None = None

    def status(self, text: str) -> None:
        if text == self._text:
            return
        self._text = text
        if self.tty:
            self._draw()
        else:
            self._write(f"{self._line()}\n")

    def note(self, text: str) -> None:
        self._erase()
        self._write(f"{text}\n")
        if self.tty and self._text:
            self._draw()

    def close(self) -> None:
        """Take the status line off the screen (terminal), before the outcome is printed."""
        self._erase()
        self._text = ""

    def start_ticker(self) -> None:
        if self.tty and self._ticker is None:
            self._ticker = asyncio.create_task(self._tick())

    async def aclose(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
            self._ticker = None
        self.close()

    def refresh(self) -> None:
        """Redraw the status with the seconds now (terminal only; the ticker calls it every second)."""
        if self.tty and self._text:
            self._draw()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(1)
            self.refresh()

    def _line(self) -> str:
        return f"{self._text} {elapsed_text(self.clock() - self.started)}"

    def _draw(self) -> None:
        width = shutil.get_terminal_size().columns - 1
        line = self._line()
        if len(line) > width > 1:
            line = line[: width - 1] + "…"  # a wrapped line could not be rewritten in place
        self._write(f"\r\x1b[K{line}")
        self._drawn = True

    def _erase(self) -> None:
        if self._drawn:
            self._write("\r\x1b[K")
            self._drawn = False

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


def elapsed_text(seconds: float) -> str:
    whole = max(0, int(seconds))
    return f"{whole} s" if whole < 120 else f"{whole // 60} min {whole % 60:02d} s"


def plain(text: str) -> str:
    """A message written for Slack (bot/parsing/command.py, bot/views/) as terminal text: without
    the backticks of code spans and with the entities Slack needs turned back into characters."""
    return html.unescape(text.replace("`", ""))


def clean(text: str) -> str:
    """Outside text (provider messages, ids, links) without control characters: an escape sequence from
    a provider must not reach the terminal."""
    return "".join(ch if unicodedata.category(ch)[0] != "C" else "?" for ch in text)


def why(error: str) -> str:
    """A provider error (`str(ProviderError)`) mid-sentence: "Rate limit exceeded (code 429)"."""
    return clean(error).replace(". (code", " (code").rstrip(".")


def cost_text(cost: Cost | None) -> str:
    return plain(formats.cost_text(f"{cost.amount:f}", cost.unit)) if cost else "unknown"


def duration_text(seconds: Decimal | str | None) -> str:
    try:
        return f"{Decimal(seconds):f} s" if seconds not in (None, "") else "unknown"
    except ArithmeticError:
        return "unknown"


def _cost(amount: str | None, unit: str) -> Cost | None:
    try:
        return Cost(Decimal(amount), unit) if amount else None
    except InvalidOperation:
        return None


class StepView:
    """What the terminal says of its job while the bot's lanes take it along: one status per step heard,
    and lines that stay for what was found (the inputs' lengths and the quote, the task id)."""

    def __init__(self, *, line: StatusLine, provider: Provider, model: str, checks_links: bool) -> None:
        self.line = line
        self.provider = provider
        self.label = provider.label
        self.model = model
        self.checks_links = checks_links
        self.create_errors = 0  # unclear answers to the create in a row (heard from its retries)
        self._quoted = False
        self._before = Progress()  # the job's progress as the step before left it

    def start(self) -> None:
        self.line.status("checking the links…" if self.checks_links else f"submitting to {self.label}…")

    def step(self, lane: Lane, job: Job, decision: Decision) -> None:
        """A step's decision on the job was applied (QueueWatch.stepped)."""
        before, self._before = self._before, dataclasses.replace(job.progress)
        if lane is Lane.SUBMIT:
            self._quote(job)
            if isinstance(decision, Move) and decision.lane is Lane.POLL:
                self.create_errors = 0
                self.line.note(f"submitted as task {clean(job.progress.task_id)} at {self.label}")
                self.line.status(f"processing at {self.label}…")
            elif isinstance(decision, Stay):
                self._submit_wait(decision, job.progress, before)
        elif lane is Lane.POLL and isinstance(decision, Stay):
            error = job.progress.last_error
            if job.progress.errors and error:  # the task may still finish: asked again
                self.line.status(f"{self.label} did not answer: {why(error)}. Asking again…")
            else:
                self.line.status(f"processing at {self.label}…")

    def _submit_wait(self, decision: Stay, now: Progress, before: Progress) -> None:
        """Why the step waits, from what it changed in the job's progress."""
        label = self.label
        erred = (now.errors, now.last_error) != (before.errors, before.last_error)
        error = now.last_error if erred else ""
        again = f"Trying again in {math.ceil(decision.delay_ms / 1000)} s…"
        if now.create_lookups and now.create_lookups != before.create_lookups:
            self.line.status(f"{label} did not answer clearly; looking for the task it may have made…")
        elif error.startswith(LINK_PROBLEMS):
            which, reason = error.split(": ", 1)
            self.line.status(f"the {which} {clean(reason)}; trying again…")
        elif now.errors and error:
            self.create_errors = now.errors
            self.line.status(f"{label} did not answer clearly: {why(error)}. {again}")
        elif decision.why:
            self.line.status(f"{label} says not now: {why(decision.why)}. {again}")
        elif note := now.queue_note:
            self.line.status(f"waiting: {clean(note)}…")

    def _quote(self, job: Job) -> None:
        """The inputs' lengths and the quote, once the link check has found them."""
        if self._quoted or not self.checks_links or not job.money.checked:
            return
        self._quoted = True
        known = (
            job.money.video_s and job.money.audio_s
        )  # otherwise the quote is an upper estimate: not a quote
        quote = _cost(job.money.quote, job.money.quote_unit) if known else None
        rule = f" ({self.provider.cost_rule(self.model)})" if quote else ""
        self.line.note(
            f"video {duration_text(job.money.video_s)}, audio {duration_text(job.money.audio_s)}; "
            f"quote at {self.label}: {cost_text(quote)}{rule}"
        )


@dataclass(frozen=True)
class Ending:
    """How the dub ends: the exit status, the result for stdout, or what stderr says."""

    status: int
    out: str = ""
    err: str = ""


def ending(job: Job, view: StepView, timeout_s: float, took_s: float) -> Ending:
    """What the terminal says of the job's end (one it did not stop itself)."""
    if job.status is Status.SUCCEEDED:
        return Ending(EXIT_DONE, out=_report(job, view.provider, view.model, took_s))
    label, task = view.label, clean(job.progress.task_id)
    if job.status is Status.TIMED_OUT:
        where = f"{label} did not take the dub, so nothing was submitted."
        if job.progress.task_id:
            where = f"task {task} at {label} may still finish and be charged: look it up in the dashboard."
        elif job.progress.create is CreateState.ATTEMPTED:
            where = f"{label} may have accepted the dub: look in the {label} dashboard before trying again."
        return Ending(
            EXIT_FAILED, err=f"Timed out after {elapsed_text(timeout_s)} (JOB_TIMEOUT_SECONDS): " + where
        )
    if job.progress.task_id:
        return Ending(EXIT_FAILED, err=_failure_text(job, view.provider))
    return _not_submitted(job, view)


def stopped_text(label: str, job: Job | None) -> str:
    """What a stop signal leaves, by the job as last seen (None: not submitted yet)."""
    if job is not None and job.progress.task_id:
        return (
            f"Stopped: submitted as task {clean(job.progress.task_id)} at {label}; it may still finish "
            "and be "
            "charged: look it up in the dashboard."
        )
    if job is None or job.progress.create is not CreateState.ATTEMPTED:
        return f"Stopped: nothing was submitted to {label}, so nothing is charged."
    return (
        f"Stopped while {label}'s answer to the submission was unclear: it may have accepted the dub and "
        f"may charge for it. Look in the {label} dashboard before running it again."
    )


def _not_submitted(job: Job, view: StepView) -> Ending:
    """A job that ended before its provider had a task for it."""
    label, error = (
        view.label,
        why(
            f"{job.result.error} (code {job.result.error_code})"
            if job.result.error_code
            else job.result.error
        ),
    )
    if job.result.error_code == LINK_REFUSED:
        return Ending(
            EXIT_USAGE,
            err=f"The {job.result.error_file} {clean(job.result.error)}, so nothing was sent to {label}. "
            "Check that it "
            "downloads the media file itself, not a page.",
        )
    if job.result.error_code in (REFUSED_BALANCE, REFUSED_BUDGET):
        return Ending(EXIT_USAGE, err=clean(plain(job.result.error)))
    if job.result.error_code == SUBMIT_UNKNOWN:
        return Ending(EXIT_FAILED, err=plain(OWN_ERRORS[SUBMIT_UNKNOWN].format(label=label)))
    if job.progress.create is CreateState.ATTEMPTED:
        return Ending(
            EXIT_FAILED,
            err=f"{label} did not answer clearly whether it accepted the dub ({error}), and it could not be "
            f"checked: it may have been accepted and charged. Look in the {label} dashboard before running "
            "it again.",
        )
    if view.create_errors:
        return Ending(
            EXIT_FAILED,
            err=f"{label} did not take the dub after {view.create_errors + 1} tries: {error}. Nothing was "
            "submitted. Try again in a few minutes.",
        )
    advice = view.provider.explain(job.result.error_code) if job.result.error_code else None
    text = f"{label} refused the dub: {error}. Nothing was submitted."
    return Ending(EXIT_USAGE, err=f"{text}\n{plain(advice)}" if advice else text)


def _report(job: Job, provider: Provider, model: str, took_s: float) -> str:
    """The result, for stdout: one `name: value` line each."""
    cost = _cost(job.result.cost, job.result.cost_unit)
    rule = f" ({provider.cost_rule(model)})" if cost else ""
    named = f"{provider.label} ({model})" if model else provider.label
    lines = [f"result:   {clean(job.result.url)}"]
    if job.result.cover_url:
        lines.append(f"cover:    {clean(job.result.cover_url)}")
    lines += [
        f"duration: {duration_text(job.result.duration_s)}",
        f"cost:     {cost_text(cost)}{rule}",
        f"provider: {named}, task {clean(job.progress.task_id)}",
        f"took:     {elapsed_text(took_s)}",
    ]
    return "\n".join(lines)


def _failure_text(job: Job, provider: Provider) -> str:
    reason = clean(job.result.error) or "no reason given"
    code = f" (code {clean(job.result.error_code)})" if job.result.error_code else ""
    text = f"The dub failed at {provider.label} (task {clean(job.progress.task_id)}): {reason}{code}"
    advice = (provider.explain(job.result.error_code) if job.result.error_code else None) or failure_hint(
        job.result.error
    )
    return f"{text}\n{plain(advice)}" if advice else text
