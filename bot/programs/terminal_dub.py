"""`lipsync-bot dub <video_url> <audio_url> [options]`: one dub from the terminal, without Slack or Redis.

The same providers, options and link check as `/lipsync`, run in the foreground: the links are checked
(and, with PREFLIGHT on, fetched in part for their lengths and a quote), the task is created, polled until
it ends or JOB_TIMEOUT_SECONDS pass, and the result (link, duration, cost) is printed on stdout. Progress
goes to stderr: one line rewritten in place on a terminal, one line per change otherwise.

Exit status: 0 the dub is done; 1 it failed, timed out, or the provider could not be reached; 2 bad input,
settings or account (nothing was made); 128 + the signal after Ctrl-C (130) or SIGTERM (143).

Nothing is left half-done. Before the create nothing was sent. A signal while a create is on the wire
waits for its answer (a second one stops at once), so that the task id is known and printed. A create
whose answer was lost is reconciled the provider's way, as the pipeline does (RELIABILITY.md, "No second
paid task"): looked up by its inputs (Recovery.LOOKUP), repeated with the same key (IDEMPOTENT), or never
repeated (NONE).
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TextIO

from bot.jobs.decisions import backoff_ms
from bot.jobs.model import new_job_id
from bot.lanes.timing import (
    CLOCK_SKEW_S,
    MAX_SUBMIT_ERRORS,
    SETTLE_LOOKUP_BASE_MS,
    SETTLE_LOOKUP_CAP_MS,
    poll_delay_ms,
)
from bot.money.preflight import LinkRefused, MediaFacts, Preflight, stop_parser
from bot.parsing.command import InvalidCommand, Options, parse_options, public_url_problem
from bot.programs.dub_display import StatusLine, clean, cost_text, duration_text, elapsed_text, plain, why
from bot.providers.base import (
    ErrorKind,
    KeyState,
    Order,
    Provider,
    ProviderError,
    Recovery,
    Task,
    TaskState,
)
from bot.providers.registry import REGISTRY
from bot.settings import Settings, SettingsError, StartupError, split_list
from bot.views.jobs import OWN_ERRORS, failure_hint

EXIT_DONE, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
LINK_CHECK_TRIES = 3  # a link that does not answer now (timeout, 5xx) gets this many tries
CLOSE_SECONDS = 5.0  # each client's close, bounded: a stuck close must not keep the command alive

_MODELS = "; ".join(
    f"for {entry.label} ({', '.join(entry.kind.models[:2])}, ...)"
    for entry in REGISTRY.entries
    if entry.kind.models
)
USAGE = f"""\
usage: lipsync-bot dub <video_url> <audio_url> [options]

Dubs one video with the new audio through a configured provider, without Slack, and prints the result's
link, duration and cost. Options, in any order, as in Slack's /lipsync:
  normal | normal_reverse | normal_reverse_by_audio   what plays when the video is shorter than the audio
  {" | ".join(REGISTRY.names):<52}the provider (default: DEFAULT_PROVIDER, else the
                                                      first configured)
  model=<name>                                        the model, {_MODELS}

Settings come from the environment or .env, as for the bot; the Slack tokens are not needed.
Exit status: 0 done, 1 failed or timed out, 2 bad input or settings, 130 after Ctrl-C.
"""

# The command never talks to Slack or Redis: these values satisfy the bot's settings without being used,
# and outrank the environment, so a Slack or Redis variable (absent or malformed) cannot stop a dub.
UNUSED_SETTINGS: dict[str, object] = {
    "slack_bot_token": "xoxb-unused-by-the-dub-command",
    "slack_signing_secret": "unused-by-the-dub-command",
    "slack_app_token": None,
    "redis_url": None,
    "public_url": None,  # webhooks and media links: a dub from the terminal polls and takes links only
}

log = logging.getLogger(__name__)


class Stop(Exception):
    """Ends the dub: `status` is the exit status, `message` what stderr says (plain text)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Interrupted(Exception):
    """A signal asked to stop while a create was on the wire; raised once its answer is in."""


@dataclass(frozen=True)
class DubRequest:
    video: str
    audio: str
    options: Options


@dataclass(frozen=True)
class Console:
    out: TextIO  # the result
    err: TextIO  # progress, problems


class Phase(StrEnum):
    BEFORE = "before"  # nothing the provider could charge for was made
    SENDING = "sending"  # a create is on the wire
    IN_DOUBT = "in_doubt"  # a create's answer was lost: the task may exist
    SUBMITTED = "submitted"  # the provider has the task `task_id`


@dataclass
class Progress:
    """How far the dub got: what an interruption must report."""

    label: str = "the provider"
    phase: Phase = Phase.BEFORE
    task_id: str = ""
    signal: int = 0  # the first stop signal received (0: none)
    exit_status: int | None = None  # decided: a late Ctrl-C while closing changes nothing

    def interrupted_text(self) -> str:
        if self.phase is Phase.SUBMITTED:
            return (
                f"Stopped: submitted as task {clean(self.task_id)} at {self.label}; it may still finish "
                "and be charged: look it up in the dashboard."
            )
        if self.phase is Phase.BEFORE:
            return f"Stopped: nothing was submitted to {self.label}, so nothing is charged."
        return (
            f"Stopped while {self.label}'s answer to the submission was unclear: it may have accepted the "
            f"dub and may charge for it. Look in the {self.label} dashboard before running it again."
        )


# ------------------------------------------------------------------------------------ input


def parse_args(argv: list[str]) -> DubRequest:
    """The two links and the options; Stop(2) saying what is wrong."""
    if len(argv) < 2:
        what = "the video link and the audio link" if not argv else "the audio link"
        raise Stop(EXIT_USAGE, f"Give {what}.\n\n{USAGE}")
    video, audio, words = argv[0], argv[1], argv[2:]
    for which, url in (("video", video), ("audio", audio)):
        problem = public_url_problem(url)
        if problem is not None:
            raise Stop(EXIT_USAGE, f"The {which} link cannot be used: {clean(plain(problem))}")
    try:
        options = parse_options(words)
    except InvalidCommand as exc:
        raise Stop(EXIT_USAGE, clean(plain(str(exc)))) from None
    return DubRequest(video, audio, options)


def load_dub_settings() -> Settings:
    """The bot's settings from the environment and .env, without the Slack tokens (UNUSED_SETTINGS)."""
    try:
        return REGISTRY.load_settings(**UNUSED_SETTINGS)
    except SettingsError as exc:
        raise Stop(EXIT_USAGE, str(exc).replace("The bot cannot start", "Cannot dub", 1)) from None


def choose(built: dict[str, Provider], settings: Settings, options: Options) -> tuple[Provider, str]:
    """The provider and model for these options, as the Slack intake chooses them; Stop(2) otherwise."""
    name = options.provider or settings.chosen_default_provider
    provider = built.get(name)
    if provider is None:
        entry = REGISTRY.entry(name)
        assert entry is not None  # the parser takes only the registry's names
        raise Stop(
            EXIT_USAGE,
            f"{entry.label} is not set up here: set {entry.key_setting} (get it at {entry.where}).",
        )
    problem = provider.options_problem(options.playback_type, options.model)
    if problem is not None:
        raise Stop(EXIT_USAGE, plain(problem))
    return provider, options.model or provider.default_model


# ------------------------------------------------------------------------------------ the dub


class Dub:
    """One dub, from the link check to the result. Raises Stop for every outcome but success."""

    def __init__(
        self,
        request: DubRequest,
        settings: Settings,
        provider: Provider,
        model: str,
        line: StatusLine,
        progress: Progress,
        preflight: Preflight | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.request = request
        self.settings = settings
        self.provider = provider
        self.label = provider.label
        self.model = model
        self.line = line
        self.progress = progress
        self.preflight = preflight
        self.clock = clock
        self.started = clock()
        self.started_wall = time.time()
        self.deadline = self.started + settings.job_timeout_seconds
        # As bot/programs/main.py: JoggAI may finish a create long after our client gave up on its answer.
        self.settle_s = max(settings.create_settle_seconds, 4 * settings.http_timeout_seconds)

    async def run(self) -> Task:
        await self._check_key()
        if self.preflight is not None:
            await self._check_links(self.preflight)
        order = Order(
            key=new_job_id(),  # as a job id: the provider's idempotency key derives from it
            video=self.request.video,
            audio=self.request.audio,
            playback=self.request.options.playback_type,
            model=self.model,
        )
        task = await self._submit(order)
        self.line.note(f"submitted as task {clean(task.id)} at {self.label}")
        task = await self._follow(task)
        if task.state is TaskState.FAILED:
            raise Stop(EXIT_FAILED, self._failure_text(task))
        return task

    # -- 0. the provider

    async def _check_key(self) -> None:
        """A refused key ends the dub (2); a provider that cannot be reached too (1), before the links are
        checked, so that a machine without network hears "cannot reach", not that the links are bad."""
        check = await self.provider.key_check()
        if check.state is KeyState.REFUSED:
            raise Stop(EXIT_USAGE, clean(plain(check.detail)))
        if check.state is KeyState.UNREACHABLE:
            setting = f"{self.provider.name.upper()}_API_URL"
            raise Stop(
                EXIT_FAILED,
                f"{clean(check.detail)[:1].upper()}{clean(check.detail)[1:]}, so nothing was sent. Check "
                f"this machine's network (DNS, HTTPS_PROXY) and {setting}, then try again.",
            )
        if check.state is KeyState.UNCLEAR:
            self.line.note(f"{self.label} could not check the key ({clean(check.detail)}); going on")

    # -- 1. the links

    async def _check_links(self, preflight: Preflight) -> None:
        self.line.status("checking the links…")
        max_size = int(self.settings.max_file_mb * 1_000_000)
        facts: list[MediaFacts] = []
        for which, url in (("video", self.request.video), ("audio", self.request.audio)):
            for attempt in range(1, LINK_CHECK_TRIES + 1):
                try:
                    facts.append(await preflight.check(url, max_size))
                    break
                except LinkRefused as exc:
                    if not exc.transient or attempt == LINK_CHECK_TRIES:
                        raise Stop(
                            EXIT_USAGE,
                            f"The {which} link {exc.reason}, so nothing was sent to {self.label}. Check "
                            "that it downloads the media file itself, not a page.",
                        ) from None
                    self.line.status(f"the {which} link {exc.reason}; trying again…")
                    await asyncio.sleep(backoff_ms(attempt) / 1000)
        video_s, audio_s = facts[0].duration_s, facts[1].duration_s
        quote = self.provider.quote(video_s, audio_s, self.request.options.playback_type, self.model)
        rule = f" ({self.provider.cost_rule(self.model)})" if quote else ""
        self.line.note(
            f"video {duration_text(video_s)}, audio {duration_text(audio_s)}; "
            f"quote at {self.label}: {cost_text(quote)}{rule}"
        )

    # -- 2. the create

    async def _submit(self, order: Order) -> Task:
        """The task for `order`, created once: an unclear answer is reconciled, never blindly repeated."""
        errors = 0
        lookups = 0
        doubt_since: float | None = None  # when the create whose answer was lost was sent
        while True:
            if doubt_since is not None and self.provider.recovery is Recovery.LOOKUP:
                try:
                    found = await self._find(order)
                except ProviderError as exc:
                    errors += 1
                    if errors >= MAX_SUBMIT_ERRORS:
                        raise Stop(EXIT_FAILED, self._in_doubt_text(exc)) from None
                    self.line.status(f"{self.label} did not answer the lookup: {why(exc)}. Retrying…")
                    await asyncio.sleep(backoff_ms(errors) / 1000)
                    continue
                if found is not None:
                    self._submitted(found)
                    return found
                left = doubt_since + self.settle_s - self.clock()
                if left > 0:
                    lookups += 1
                    self.line.status(
                        f"{self.label} did not answer clearly; looking for the task it may have made…"
                    )
                    wait_ms = backoff_ms(lookups, SETTLE_LOOKUP_BASE_MS, SETTLE_LOOKUP_CAP_MS)
                    await asyncio.sleep(min(left, wait_ms / 1000))
                    continue
                # Long enough for it to land, and no task: that create was never made.
                doubt_since, lookups = None, 0
            self.line.status(f"submitting to {self.label}…")
            self.progress.phase = Phase.SENDING
            try:
                task = await self.provider.create(order)
            except ProviderError as exc:
                # A clear refusal means that create was not made, nor, by then, an earlier one.
                self.progress.phase = Phase.IN_DOUBT if exc.ambiguous else Phase.BEFORE
                doubt_since = self.clock() if exc.ambiguous else None
                self._stop_if_asked()
                if exc.ambiguous and self.provider.recovery is Recovery.NONE:
                    raise Stop(EXIT_FAILED, self._unknown_text()) from None
                if not exc.ambiguous and exc.kind in (
                    ErrorKind.PERMANENT,
                    ErrorKind.ADMIN,
                    ErrorKind.NOT_FOUND,
                ):
                    raise Stop(EXIT_USAGE, self._refusal_text(exc)) from None
                errors += 1
                if errors >= MAX_SUBMIT_ERRORS:
                    if exc.ambiguous:
                        raise Stop(EXIT_FAILED, self._in_doubt_text(exc)) from None
                    raise Stop(
                        EXIT_FAILED,
                        f"{self.label} did not take the dub after {errors} tries: {why(exc)}. "
                        "Nothing was submitted. Try again in a few minutes.",
                    ) from None
                # A provider holding its creates back (sync.so after a 429) says for how long.
                wait_ms = max(backoff_ms(errors), math.ceil(exc.retry_after_s * 1000))
                busy = exc.kind in (ErrorKind.RATE_LIMITED, ErrorKind.BUSY)
                what = "says not now" if busy else "did not answer clearly"
                self.line.status(
                    f"{self.label} {what}: {why(exc)}. Trying again in {math.ceil(wait_ms / 1000)} s…"
                )
                await asyncio.sleep(wait_ms / 1000)
                continue
            self._submitted(task)
            self._stop_if_asked()
            return task

    async def _find(self, order: Order) -> Task | None:
        """The task a create whose answer was lost made, as the pipeline adopts it (bot/lanes/submit.py)."""
        task = await self.provider.find(order)
        if task is None:
            return None
        ours = task.created_at is None or task.created_at >= self.started_wall - CLOCK_SKEW_S
        if task.state is TaskState.FAILED and not ours:
            return None  # an old failure with the same inputs
        return task

    def _submitted(self, task: Task) -> None:
        self.progress.phase, self.progress.task_id = Phase.SUBMITTED, task.id

    def _stop_if_asked(self) -> None:
        if self.progress.signal:
            raise Interrupted

    # -- 3. the wait

    async def _follow(self, task: Task) -> Task:
        """Poll until the task ends, on the pipeline's schedule; Stop(1) at JOB_TIMEOUT_SECONDS."""
        s = self.settings
        base_ms = int(s.poll_interval_seconds * 1000)
        max_ms = max(base_ms, int(s.poll_max_interval_seconds * 1000))
        errors = 0
        while task.state is TaskState.RUNNING:
            if not errors:
                self.line.status(f"processing at {self.label}…")
            now = self.clock()
            delay_ms = poll_delay_ms(int((now - self.started) * 1000), base_ms, max_ms)
            if errors:
                delay_ms = max(delay_ms, backoff_ms(errors))
            await asyncio.sleep(max(0.0, min(delay_ms / 1000, self.deadline - now)))
            if self.clock() >= self.deadline:
                raise Stop(EXIT_FAILED, self._timed_out_text(task))
            try:
                task = await self.provider.get(task.id)
            except ProviderError as exc:
                if exc.kind in (ErrorKind.NOT_FOUND, ErrorKind.PERMANENT, ErrorKind.ADMIN):
                    raise Stop(
                        EXIT_FAILED,
                        f"{self.label} could not report on task {clean(task.id)}: {why(exc)}. "
                        f"Look it up in the {self.label} dashboard.",
                    ) from None
                errors += 1  # the task may still finish: keep asking until the timeout
                self.line.status(f"{self.label} did not answer: {why(exc)}. Asking again…")
                continue
            errors = 0
        return task

    # -- what is said

    def report(self, task: Task) -> str:
        """The result, for stdout: one `name: value` line each."""
        cost = self.provider.cost(task, self.model)
        rule = f" ({self.provider.cost_rule(self.model)})" if cost else ""
        provider = f"{self.label} ({self.model})" if self.model else self.label
        lines = [f"result:   {clean(task.result_url)}"]
        if task.cover_url:
            lines.append(f"cover:    {clean(task.cover_url)}")
        lines += [
            f"duration: {duration_text(task.duration_s)}",
            f"cost:     {cost_text(cost)}{rule}",
            f"provider: {provider}, task {clean(task.id)}",
            f"took:     {elapsed_text(self.clock() - self.started)}",
        ]
        return "\n".join(lines)

    def _failure_text(self, task: Task) -> str:
        reason = clean(task.error) or "no reason given"
        code = f" (code {clean(task.error_code)})" if task.error_code else ""
        text = f"The dub failed at {self.label} (task {clean(task.id)}): {reason}{code}"
        advice = (self.provider.explain(task.error_code) if task.error_code else None) or failure_hint(
            task.error
        )
        return f"{text}\n{plain(advice)}" if advice else text

    def _refusal_text(self, exc: ProviderError) -> str:
        text = f"{self.label} refused the dub: {why(exc)}. Nothing was submitted."
        advice = self.provider.explain(exc.code) if exc.code else None
        return f"{text}\n{plain(advice)}" if advice else text

    def _timed_out_text(self, task: Task) -> str:
        return (
            f"Timed out after {elapsed_text(self.settings.job_timeout_seconds)} (JOB_TIMEOUT_SECONDS): task "
            f"{clean(task.id)} at {self.label} may still finish and be charged: look it up in the dashboard."
        )

    def _unknown_text(self) -> str:
        return plain(OWN_ERRORS["submit_unknown"].format(label=self.label))

    def _in_doubt_text(self, exc: ProviderError) -> str:
        return (
            f"{self.label} did not answer clearly whether it accepted the dub ({why(exc)}), and it "
            f"could not be checked: it may have been accepted and charged. Look in the {self.label} "
            "dashboard before running it again."
        )


# ------------------------------------------------------------------------------------ running it


async def dub_async(
    request: DubRequest,
    settings: Settings,
    console: Console,
    progress: Progress | None = None,
    preflight: Preflight | None = None,
) -> int:
    """The dub with its clients, closed on every path; SIGINT/SIGTERM handled as the module says.
    `preflight`: the link checker to use (tests give one with a fixed name table); None makes one when
    PREFLIGHT is on."""
    progress = progress or Progress()
    line = StatusLine(console.err)
    built: dict[str, Provider] = {}
    loop = asyncio.get_running_loop()
    work: asyncio.Task[Task] | None = None

    def on_signal(signum: int) -> None:
        if progress.exit_status is not None:
            return  # the outcome is decided; the clients are closing
        first = not progress.signal
        progress.signal = progress.signal or signum
        if first and progress.phase is Phase.SENDING:
            # Cutting the create off now would leave it unknown whether it was made; its answer is near.
            line.note(
                f"stopping once {progress.label} has answered the submission (at most "
                f"{settings.http_timeout_seconds:g} s); press Ctrl-C again to stop now"
            )
            return
        if work is not None:
            work.cancel()

    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        try:
            built = REGISTRY.build(settings)
        except StartupError as exc:
            raise Stop(EXIT_USAGE, f"Cannot dub: {exc}") from None
        provider, model = choose(built, settings, request.options)
        progress.label = provider.label
        if preflight is None and settings.preflight == "on":
            networks = split_list(settings.preflight_allowed_networks)
            preflight = Preflight(
                timeout_s=min(10.0, settings.http_timeout_seconds), allowed_networks=networks
            )
        dub = Dub(request, settings, provider, model, line, progress, preflight)
        line.start_ticker()
        work = asyncio.create_task(dub.run())
        task = await work
        line.close()
        console.out.write(dub.report(task) + "\n")
        console.out.flush()
        progress.exit_status = EXIT_DONE
    except Stop as stop:
        progress.exit_status = stop.status
        line.close()
        console.err.write(stop.message.rstrip("\n") + "\n")
    except (asyncio.CancelledError, Interrupted):
        if not progress.signal:
            raise  # not ours to swallow
        progress.exit_status = 128 + progress.signal
        line.close()
        console.err.write(progress.interrupted_text() + "\n")
    finally:
        if progress.exit_status is None:
            progress.exit_status = EXIT_FAILED  # an unexpected error, on its way up
        await line.aclose()
        if preflight is not None:
            await _bounded("the link checker", preflight.aclose())
            stop_parser()
        for client in built.values():
            await _bounded(f"the {client.label} client", client.aclose())
        for signum in signals:
            loop.remove_signal_handler(signum)
        console.err.flush()
    return progress.exit_status


async def _bounded(what: str, closing: Awaitable[object]) -> None:
    try:
        await asyncio.wait_for(closing, timeout=CLOSE_SECONDS)
    except Exception as exc:
        log.warning("%s did not close cleanly (%s)", what, type(exc).__name__)


def run(argv: list[str], stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """`lipsync-bot dub …`: the exit status (see the module's docstring)."""
    console = Console(stdout or sys.stdout, stderr or sys.stderr)
    if argv and argv[0] in ("-h", "--help", "help"):
        console.out.write(USAGE)
        return EXIT_DONE
    progress = Progress()
    try:
        request = parse_args(argv)
        settings = load_dub_settings()
        if not logging.getLogger().handlers:  # the terminal shows progress; logs only when they matter
            level = "DEBUG" if settings.log_level == "DEBUG" else "WARNING"
            logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
        return asyncio.run(dub_async(request, settings, console, progress))
    except Stop as stop:
        console.err.write(stop.message.rstrip("\n") + "\n")
        return stop.status
    except KeyboardInterrupt:
        # Ctrl-C outside the dub's own handler: while starting, or after the outcome was decided.
        if progress.exit_status is not None:
            return progress.exit_status
        progress.signal = progress.signal or signal.SIGINT
        console.err.write("\n" + progress.interrupted_text() + "\n")
        return 128 + progress.signal


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
