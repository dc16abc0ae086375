"""`lipsync-bot dub <video_url> <audio_url> [options]`: one dub from the terminal, without Slack.

The same providers, options and link check as `/lipsync`, run in the foreground by the bot's own lanes
(bot/programs/dub_lanes.py: the same gate, create, recovery of a create whose answer was lost, polls and
end as a job from Slack, on an embedded Redis of its own): the links are checked (and, with PREFLIGHT on,
fetched in part for their lengths and a quote), the task is created, polled until it ends or
JOB_TIMEOUT_SECONDS pass, and the result (link, duration, cost) is printed on stdout. Progress goes to
stderr (bot/programs/dub_display.py): one line rewritten in place on a terminal, one line per change
otherwise.

Exit status: 0 the dub is done; 1 it failed, timed out, or the provider could not be reached; 2 bad input,
settings or account (nothing was made); 128 + the signal after Ctrl-C (130) or SIGTERM (143).

Nothing is left half-done. Ctrl-C cancels the job as a person's cancel in Slack does: no create starts
after it, and a create already on the wire is waited for (a second Ctrl-C stops at once), so that the task
id is known and printed. A create whose answer was lost is reconciled the provider's way by the submit
step (RELIABILITY.md, "No second paid task").
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from dataclasses import dataclass
from typing import TextIO

from redis.exceptions import RedisError

from bot.jobs.decisions import Decision
from bot.jobs.lanes import Lane
from bot.jobs.model import (
    AudioTrack,
    CreateState,
    Identity,
    Job,
    Media,
    ProviderOrder,
    Source,
    Status,
    new_job_id,
)
from bot.jobs.model import Progress as JobProgress
from bot.money.preflight import Preflight, stop_parser
from bot.parsing.command import InvalidCommand, Options, parse_options, public_url_problem
from bot.programs.dub_display import (
    EXIT_DONE,
    EXIT_FAILED,
    EXIT_USAGE,
    Ending,
    StatusLine,
    StepView,
    clean,
    ending,
    plain,
    stopped_text,
)
from bot.programs.dub_lanes import DubLanes, bounded
from bot.providers.base import KeyState, Provider
from bot.providers.registry import REGISTRY
from bot.settings import Settings, SettingsError, StartupError, split_list

SIGNALS = (signal.SIGINT, signal.SIGTERM)
TERMINAL = "terminal"

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

# The command never talks to Slack, and runs its own Redis (bot/programs/dub_lanes.py): these values
# satisfy the bot's settings without being used, and outrank the environment, so a Slack or Redis variable
# (absent or malformed) cannot stop a dub.
UNUSED_SETTINGS: dict[str, object] = {
    "slack_bot_token": "xoxb-unused-by-the-dub-command",
    "slack_signing_secret": "unused-by-the-dub-command",
    "slack_app_token": None,
    "redis_url": None,
    "public_url": None,  # webhooks and media links: a dub from the terminal polls and takes links only
}


class Stop(Exception):
    """Ends the dub: `status` is the exit status, `message` what stderr says (plain text)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class DubRequest:
    video: str
    audio: str
    options: Options


@dataclass(frozen=True)
class Console:
    out: TextIO  # the result
    err: TextIO  # progress, problems


@dataclass
class Progress:
    """How far the dub got: what an interruption must report."""

    label: str = "the provider"
    job: Job | None = None  # the job as last seen, once it is submitted
    signal: int = 0  # the first stop signal received (0: none)
    exit_status: int | None = None  # decided: a late Ctrl-C while closing changes nothing

    def interrupted_text(self) -> str:
        return stopped_text(self.label, self.job)


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


async def check_key(provider: Provider, line: StatusLine) -> None:
    """A refused key ends the dub (2); a provider that cannot be reached too (1), before the links are
    checked, so that a machine without network hears "cannot reach", not that the links are bad."""
    check = await provider.key_check()
    if check.state is KeyState.REFUSED:
        raise Stop(EXIT_USAGE, clean(plain(check.detail)))
    if check.state is KeyState.UNREACHABLE:
        detail = clean(check.detail)
        raise Stop(
            EXIT_FAILED,
            f"{detail[:1].upper()}{detail[1:]}, so nothing was sent. Check this machine's network (DNS, "
            f"HTTPS_PROXY) and {provider.name.upper()}_API_URL, then try again.",
        )
    if check.state is KeyState.UNCLEAR:
        line.note(f"{provider.label} could not check the key ({clean(check.detail)}); going on")


class TerminalDub:
    """One dub: the provider's key checked, then the job taken along by the bot's lanes
    (bot/programs/dub_lanes.py) and shown as it goes (bot/programs/dub_display.py). Every client is closed
    on every path; SIGINT and SIGTERM cancel the job the bot's way (the module's docstring says how)."""

    def __init__(
        self,
        *,
        request: DubRequest,
        settings: Settings,
        console: Console,
        progress: Progress,
        preflight: Preflight | None,
    ) -> None:
        self.request = request
        self.settings = settings
        self.console = console
        self.progress = progress
        self.preflight = preflight
        self.line = StatusLine(console.err)
        self.started = time.monotonic()
        self.built: dict[str, Provider] = {}
        self.lanes: DubLanes | None = None
        self.work: asyncio.Task[Ending] | None = None
        self.stopping: asyncio.Task[None] | None = None

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in SIGNALS:
            loop.add_signal_handler(signum, self._on_signal, signum)
        progress = self.progress
        try:
            self.work = asyncio.create_task(self._dub())
            self._end(await self.work)
        except Stop as stop:
            self._end(Ending(stop.status, err=stop.message))
        except asyncio.CancelledError:
            if not progress.signal:
                raise  # not ours to swallow
            self._end(Ending(128 + progress.signal, err=progress.interrupted_text()))
        finally:
            if progress.exit_status is None:
                progress.exit_status = EXIT_FAILED  # an unexpected error, on its way up
            await self._close()
            for signum in SIGNALS:
                loop.remove_signal_handler(signum)
            self.console.err.flush()
        return progress.exit_status

    async def _dub(self) -> Ending:
        s = self.settings
        try:
            self.built = REGISTRY.build(s)
        except StartupError as exc:
            raise Stop(EXIT_USAGE, f"Cannot dub: {exc}") from None
        provider, model = choose(self.built, s, self.request.options)
        self.progress.label = provider.label
        await check_key(provider, self.line)
        if self.preflight is None and s.preflight == "on":
            networks = split_list(s.preflight_allowed_networks)
            self.preflight = Preflight(timeout_s=min(10.0, s.http_timeout_seconds), allowed_networks=networks)
        lanes = self.lanes = DubLanes(settings=s, provider=provider, preflight=self.preflight)
        try:
            await lanes.start()
        except (RuntimeError, OSError) as exc:
            raise Stop(EXIT_FAILED, f"Cannot dub: its Redis could not start ({exc}).") from None
        checks = self.preflight is not None
        view = StepView(line=self.line, provider=provider, model=model, checks_links=checks)
        job = Job(
            id=new_job_id(),  # the provider's idempotency key derives from it
            # Who asks, for the parts that file by it (the budgets' ledger): no Slack id looks like this, and
            # the dub's own Redis holds no budget for it.
            identity=Identity(team=TERMINAL, channel=TERMINAL, person=TERMINAL, source=Source.TERMINAL),
            order=ProviderOrder(provider=provider.name, model=model),
            inputs=AudioTrack(
                video=Media(link=self.request.video),
                audio=Media(link=self.request.audio),
                playback=self.request.options.playback_type,
            ),
            progress=JobProgress(timeout_s=int(s.job_timeout_seconds)),
        )
        over = await self._follow(lanes, job, view)
        if over.status is Status.CANCELLED and self.progress.signal:
            return Ending(128 + self.progress.signal, err=self.progress.interrupted_text())
        return ending(over, view, s.job_timeout_seconds, time.monotonic() - self.started)

    async def _follow(self, lanes: DubLanes, job: Job, view: StepView) -> Job:
        """Submit the job and show its steps until it ends; the job as it ended."""
        ended: asyncio.Future[Job] = asyncio.get_running_loop().create_future()

        def stepped(lane: Lane, seen: Job, decision: Decision) -> None:
            if seen.id == job.id:
                view.step(lane, seen, decision)

        def over(seen: Job) -> None:
            if seen.id == job.id and not ended.done():
                ended.set_result(seen)

        lanes.watch.listen_stepped(stepped)
        lanes.watch.listen_ended(over)
        self.progress.job = job  # from here a stop cancels the job the bot's way
        view.start()
        self.line.start_ticker()
        await lanes.submit(job)
        self.progress.job = await ended
        return self.progress.job

    def _on_signal(self, signum: int) -> None:
        progress = self.progress
        if progress.exit_status is not None:
            return  # the outcome is decided; the clients are closing
        first = not progress.signal
        progress.signal = progress.signal or signum
        if first and self.lanes is not None and progress.job is not None:
            self.stopping = asyncio.create_task(self._cancel_job(self.lanes, progress.job.id))
        elif self.work is not None:
            self.work.cancel()

    async def _cancel_job(self, lanes: DubLanes, job_id: str) -> None:
        """The bot's cancel: no create starts after it. A create already on the wire is waited for, so
        that the task it made is known (the job then ends cancelled, with its task); else stop now."""
        try:
            job = await lanes.cancel(job_id)
        except RedisError:
            job = None
        if job is not None:
            self.progress.job = job
            if (
                job.progress.create is CreateState.ATTEMPTED
                and not job.progress.task_id
                and not job.status.final
            ):
                self.line.note(
                    f"stopping once {self.progress.label} has answered the submission (at most "
                    f"{self.settings.http_timeout_seconds:g} s); press Ctrl-C again to stop now"
                )
                return
        if self.work is not None:
            self.work.cancel()

    def _end(self, end: Ending) -> None:
        self.progress.exit_status = end.status
        self.line.close()
        if end.out:
            self.console.out.write(end.out + "\n")
            self.console.out.flush()
        if end.err:
            self.console.err.write(end.err.rstrip("\n") + "\n")

    async def _close(self) -> None:
        await self.line.aclose()
        if self.stopping is not None:
            self.stopping.cancel()
        if self.lanes is not None:
            await self.lanes.aclose()
        if self.preflight is not None:
            await bounded("the link checker", self.preflight.aclose())
            stop_parser()
        for client in self.built.values():
            await bounded(f"the {client.label} client", client.aclose())


async def dub_async(
    request: DubRequest,
    settings: Settings,
    console: Console,
    progress: Progress | None = None,
    preflight: Preflight | None = None,
) -> int:
    """The dub; its exit status. `preflight`: the link checker to use (tests give one with a fixed name
    table); None makes one when PREFLIGHT is on."""
    dub = TerminalDub(
        request=request,
        settings=settings,
        console=console,
        progress=progress or Progress(),
        preflight=preflight,
    )
    return await dub.run()


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
            if level != "DEBUG":  # the steps' warnings (a retry, a lookup) are what the status line says
                logging.getLogger("bot.lanes").setLevel(logging.ERROR)
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
