"""`lipsync-bot dub` (bot/programs/terminal_dub.py): one dub from the terminal, against the provider
stand-ins.

End to end, the command runs as `python -m bot.programs.terminal_dub` in a child process with only the
provider's settings (no Slack token, no Redis), as a user would run it; signals are real signals. The progress
display and the link check (which needs a name table pointing a public-looking host at 127.0.0.1) run
in-process.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from bot.money.preflight import Preflight
from bot.parsing.command import Options
from bot.programs.dub_display import StatusLine
from bot.programs.terminal_dub import UNUSED_SETTINGS, Console, DubRequest, dub_async
from bot.providers.registry import REGISTRY
from bot.settings import Settings
from tests import media_samples as samples
from tests.fakes.jogg_api import FakeJogg, Fault, Outcome
from tests.fakes.lipsyncdev_api import FakeLipSyncDev
from tests.fakes.lipsyncdev_api import Fault as LipSyncDevFault
from tests.fakes.media_server import Item, MediaServer
from tests.fakes.server import wait_until
from tests.fakes.sync_api import FakeSync
from tests.fakes.sync_api import Fault as SyncFault
from tests.harness import REPO
from tests.test_preflight import StaticResolver

VIDEO = "https://cdn.example.com/talk.mp4"
AUDIO = "https://cdn.example.com/voice-fr.mp3"
CREATE_PATH = "/v2/create_lip_sync_video"


def dub_env(jogg: FakeJogg | None, workdir: Path, **overrides: str) -> dict[str, str]:
    """As tests/harness.bot_env, without the Slack variables (empty values are dropped); without `jogg`,
    `overrides` name the provider."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(workdir),
        "PYTHONPATH": str(REPO),
        "JOGG_API_KEY": jogg.api_key if jogg else "",
        "JOGG_API_URL": jogg.base_url if jogg else "",
        "POLL_INTERVAL_SECONDS": "0.1",
        "PREFLIGHT": "off",  # links to example.com: the link check has its in-process test below
        **overrides,
    }
    return {k: v for k, v in env.items() if v}


def start_dub(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    # cwd: a directory without a .env, so only `env` counts.
    return subprocess.Popen(
        [sys.executable, "-m", "bot.programs.terminal_dub", *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def dub(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = start_dub(args, env, cwd)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def create_posts(jogg: FakeJogg) -> int:
    """Create requests that reached the fake, whether or not they made a task."""
    with jogg.lock:
        return sum(1 for r in jogg.requests if r.path == CREATE_PATH)


# -- outcomes ---------------------------------------------------------------------------------------


def test_a_dub_prints_the_link_duration_and_cost(jogg: FakeJogg, tmp_path: Path) -> None:
    done = dub([VIDEO, AUDIO, "normal_reverse", "jogg"], dub_env(jogg, tmp_path), tmp_path)

    assert done.returncode == 0, done.stderr
    [create] = jogg.creates
    task_id = create["task_id"]
    assert create["body"] == {"video_url": VIDEO, "audio_url": AUDIO, "playback_type": "normal_reverse"}
    assert f"result:   {jogg.result_url(task_id)}\n" in done.stdout
    assert "duration: 12.5 s\n" in done.stdout
    assert "cost:     0.10 credits (1 credit per 125 s of output, rounded up)\n" in done.stdout
    assert f"submitted as task {task_id} at JoggAI" in done.stderr
    assert "*" not in done.stdout and "`" not in done.stdout  # no Slack markup in a terminal


def test_a_failed_dub_exits_1_with_the_providers_reason(jogg: FakeJogg, tmp_path: Path) -> None:
    jogg.default_outcome = Outcome("failed", polls=1, error_message="audio duration fetch failed")

    done = dub([VIDEO, AUDIO], dub_env(jogg, tmp_path), tmp_path)

    assert done.returncode == 1, done.stderr
    task_id = jogg.creates[0]["task_id"]
    assert f"The dub failed at JoggAI (task {task_id}): audio duration fetch failed" in done.stderr
    assert "could not read the audio" in done.stderr  # the same hint the Slack reply gives
    assert done.stdout == ""


def test_a_dub_that_never_ends_times_out_with_its_task_named(jogg: FakeJogg, tmp_path: Path) -> None:
    jogg.default_outcome = Outcome("never")

    done = dub([VIDEO, AUDIO], dub_env(jogg, tmp_path, JOB_TIMEOUT_SECONDS="1"), tmp_path)

    assert done.returncode == 1, done.stderr
    task_id = jogg.creates[0]["task_id"]
    assert f"Timed out after 1 s (JOB_TIMEOUT_SECONDS): task {task_id} at JoggAI" in done.stderr
    assert "dashboard" in done.stderr


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["http://localhost/talk.mp4", AUDIO], "The video link cannot be used: The link points to localhost"),
        ([VIDEO, "https://files.slack.com/voice.mp3"], "The audio link cannot be used: The link is a Slack"),
        ([VIDEO, "voice.mp3"], "The audio link cannot be used: The link must start with https://"),
        ([VIDEO, AUDIO, "sideways"], "I don't know what to do with sideways"),
        ([VIDEO, AUDIO, "model=sync-3"], "JoggAI has no model choice"),
        ([VIDEO, AUDIO, "sync"], "sync.so is not set up here: set SYNC_API_KEY"),
        ([VIDEO], "Give the audio link."),
    ],
)
def test_bad_input_exits_2_before_anything_is_sent(
    jogg: FakeJogg, tmp_path: Path, args: list[str], said: str
) -> None:
    done = dub(args, dub_env(jogg, tmp_path), tmp_path)

    assert done.returncode == 2, done.stderr
    assert said in done.stderr
    assert "`" not in done.stderr and "&lt;" not in done.stderr  # Slack's markup, turned into plain text
    assert not jogg.requests


def test_settings_need_a_provider_key_but_no_slack_token(jogg: FakeJogg, tmp_path: Path) -> None:
    # A malformed Slack variable changes nothing either: the command never talks to Slack.
    env = dub_env(jogg, tmp_path, JOGG_API_KEY="", SLACK_APP_TOKEN="not-a-token")

    done = dub([VIDEO, AUDIO], env, tmp_path)

    assert done.returncode == 2, done.stderr
    assert "Cannot dub: some settings are missing or wrong." in done.stderr
    assert "JOGG_API_KEY: get it at app.jogg.ai" in done.stderr
    assert "SLACK" not in done.stderr


@pytest.mark.parametrize("refusal", ["key", "credit"])
def test_a_refused_key_or_account_exits_2_with_what_to_fix(
    jogg: FakeJogg, tmp_path: Path, refusal: str
) -> None:
    env = dub_env(jogg, tmp_path)
    if refusal == "key":
        env["JOGG_API_KEY"] = "not-the-key"
    else:
        jogg.inject("create", Fault("code", code=18020))

    done = dub([VIDEO, AUDIO], env, tmp_path)

    assert done.returncode == 2, done.stderr
    if refusal == "key":
        assert "JoggAI refused JOGG_API_KEY (Invalid API key)" in done.stderr
        assert create_posts(jogg) == 0
    else:
        assert (
            "JoggAI refused the dub: Insufficient credit (code 18020). Nothing was submitted." in done.stderr
        )
        assert "out of credits" in done.stderr  # the provider's advice for its code
        assert create_posts(jogg) == 1
    assert not jogg.creates


# -- never paid twice -------------------------------------------------------------------------------


def test_a_create_whose_answer_was_lost_is_looked_up_not_repeated(jogg: FakeJogg, tmp_path: Path) -> None:
    jogg.inject("create", Fault("http", status=502, after=True))  # made, but the answer is a 502

    done = dub([VIDEO, AUDIO], dub_env(jogg, tmp_path), tmp_path)

    assert done.returncode == 0, done.stderr
    [create] = jogg.creates
    assert create_posts(jogg) == 1
    assert jogg.lookups
    assert f"task {create['task_id']}" in done.stdout


def test_a_lost_create_that_never_landed_is_made_once_settled(jogg: FakeJogg, tmp_path: Path) -> None:
    jogg.inject("create", Fault("http", status=502))  # not made, and the answer cannot tell
    # Settled after max(CREATE_SETTLE_SECONDS, 4 * HTTP_TIMEOUT_SECONDS) = 2 s, as in the bot.
    env = dub_env(jogg, tmp_path, CREATE_SETTLE_SECONDS="0.5", HTTP_TIMEOUT_SECONDS="0.5")

    done = dub([VIDEO, AUDIO], env, tmp_path)

    assert done.returncode == 0, done.stderr
    assert create_posts(jogg) == 2 and len(jogg.creates) == 1
    assert jogg.lookups  # looked before creating again


def test_sync_repeats_an_unclear_create_with_the_same_key(sync_api: FakeSync, tmp_path: Path) -> None:
    sync_api.inject("generate", SyncFault("html", status=502, after=True))  # made; the answer is lost
    env = dub_env(None, tmp_path, SYNC_API_KEY=sync_api.api_key, SYNC_API_URL=sync_api.base_url)

    done = dub([VIDEO, AUDIO, "model=lipsync-2-pro"], env, tmp_path)

    assert done.returncode == 0, done.stderr
    generates = [r for r in sync_api.requests if r.path == "/v2/generate"]
    assert len(generates) == 2 and sync_api.generation_count == 1
    assert generates[0].headers["idempotency-key"] == generates[1].headers["idempotency-key"]
    assert "provider: sync.so (lipsync-2-pro)" in done.stdout
    assert "cost:     $1.0375" in done.stdout  # 12.5 s at the model's price


def test_lipsyncdev_never_repeats_an_unclear_submit(lipsyncdev_api: FakeLipSyncDev, tmp_path: Path) -> None:
    lipsyncdev_api.inject("submit", LipSyncDevFault("http", status=502, after=True))
    env = dub_env(
        None, tmp_path, LIPSYNCDEV_API_KEY=lipsyncdev_api.api_key, LIPSYNCDEV_API_URL=lipsyncdev_api.api_url
    )

    done = dub([VIDEO, AUDIO], env, tmp_path)

    assert done.returncode == 1, done.stderr
    assert "LipSync.dev did not answer clearly whether it accepted the job" in done.stderr
    assert "Look for the job in your LipSync.dev dashboard" in done.stderr
    assert sum(1 for r in lipsyncdev_api.requests if r.path.endswith("/submit")) == 1


def test_a_rate_limited_create_is_retried(jogg: FakeJogg, tmp_path: Path) -> None:
    jogg.inject("create", Fault("code", code=429))

    done = dub([VIDEO, AUDIO], dub_env(jogg, tmp_path), tmp_path)

    assert done.returncode == 0, done.stderr
    assert create_posts(jogg) == 2 and len(jogg.creates) == 1
    said = "JoggAI says not now: Rate limit exceeded. Please try again later (code 429). Trying again in"
    assert said in done.stderr


# -- interruptions ----------------------------------------------------------------------------------


def test_ctrl_c_after_the_create_names_the_task_and_exits_130(jogg: FakeJogg, tmp_path: Path) -> None:
    jogg.default_outcome = Outcome("never")
    proc = start_dub([VIDEO, AUDIO], dub_env(jogg, tmp_path), tmp_path)
    try:
        wait_until(lambda: jogg.creates, timeout=30, message="the create")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()

    assert proc.returncode == 130, err
    task_id = jogg.creates[0]["task_id"]
    said = f"submitted as task {task_id} at JoggAI; it may still finish and be charged: look it up in the "
    assert said + "dashboard." in err
    assert len(jogg.creates) == 1 and create_posts(jogg) == 1
    assert out == ""


def test_ctrl_c_while_the_create_is_on_the_wire_waits_for_its_answer(jogg: FakeJogg, tmp_path: Path) -> None:
    jogg.default_outcome = Outcome("never")
    jogg.inject("create", Fault("delay", delay=1.5))  # the task is made once the delay is over
    proc = start_dub([VIDEO, AUDIO], dub_env(jogg, tmp_path), tmp_path)
    try:
        wait_until(lambda: create_posts(jogg), timeout=30, message="the create on the wire")
        assert not jogg.creates
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()

    assert proc.returncode == 130, err
    assert "stopping once JoggAI has answered the submission" in err
    [create] = jogg.creates
    assert f"submitted as task {create['task_id']} at JoggAI; it may still finish" in err


def test_sigterm_before_anything_was_made_says_so(jogg: FakeJogg, tmp_path: Path) -> None:
    for _ in range(8):  # every try is refused "not now": the command waits between them
        jogg.inject("create", Fault("code", code=429))
    proc = start_dub([VIDEO, AUDIO], dub_env(jogg, tmp_path), tmp_path)
    try:
        wait_until(lambda: create_posts(jogg), timeout=30, message="the first create")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()

    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Stopped: nothing was submitted to JoggAI, so nothing is charged." in err
    assert not jogg.creates


# -- in-process: the progress display and the link check ---------------------------------------------


def settings_for(jogg: FakeJogg, **overrides: object) -> Settings:
    values: dict[str, object] = {
        **UNUSED_SETTINGS,
        "jogg_api_key": jogg.api_key,
        "jogg_api_url": jogg.base_url,
        "poll_interval_seconds": 0.05,
        "preflight": "off",
        **overrides,
    }
    return REGISTRY.load_settings(_env_file=None, **values)


def without_seconds(lines: list[str]) -> list[str]:
    return [re.sub(r" \d+ s$", "", line) for line in lines]


def test_progress_without_a_terminal_is_one_line_per_change(jogg: FakeJogg) -> None:
    jogg.default_outcome = Outcome("success", polls=4)  # pending, then processing 3 times: one state for us
    out, err = io.StringIO(), io.StringIO()

    status = asyncio.run(
        dub_async(DubRequest(VIDEO, AUDIO, Options()), settings_for(jogg), Console(out, err))
    )

    assert status == 0, err.getvalue()
    task_id = jogg.creates[0]["task_id"]
    assert without_seconds(err.getvalue().splitlines()) == [
        "submitting to JoggAI…",
        f"submitted as task {task_id} at JoggAI",
        "processing at JoggAI…",
    ]
    assert jogg.polls[task_id] == 5
    assert "\r" not in err.getvalue()  # no terminal: nothing is rewritten


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def screen(written: str) -> list[str]:
    """What a terminal shows for `written`: carriage returns, erase-line and newlines applied."""
    lines, current = [], ""
    for part in re.split(r"(\r|\x1b\[K|\n)", written):
        if part == "\r" or part == "\x1b[K":
            current = "" if part == "\x1b[K" else current
        elif part == "\n":
            lines.append(current)
            current = ""
        else:
            current += part
    return [*lines, current]


def test_progress_on_a_terminal_is_one_line_rewritten_in_place() -> None:
    now = [100.0]
    terminal = Terminal()
    line = StatusLine(terminal, clock=lambda: now[0])

    line.status("submitting to JoggAI…")
    line.note("submitted as task t-1 at JoggAI")
    line.status("processing at JoggAI…")
    now[0] += 40
    line.refresh()  # what the ticker does every second
    assert screen(terminal.getvalue()) == ["submitted as task t-1 at JoggAI", "processing at JoggAI… 40 s"]
    now[0] += 100
    line.refresh()
    assert screen(terminal.getvalue())[-1] == "processing at JoggAI… 2 min 20 s"

    line.close()  # before the result is printed

    assert screen(terminal.getvalue()) == ["submitted as task t-1 at JoggAI", ""]


def checked_dub(jogg: FakeJogg, media: MediaServer, video_path: str, audio_path: str) -> tuple[int, str]:
    """A dub with the link check on; the media server is reached as media.example.com."""
    base = f"http://media.example.com:{media.port}"
    preflight = Preflight(
        allowed_networks=["127.0.0.1/32"], resolver=StaticResolver({"media.example.com": ["127.0.0.1"]})
    )
    request = DubRequest(base + video_path, base + audio_path, Options())
    err = io.StringIO()
    console = Console(io.StringIO(), err)
    status = asyncio.run(dub_async(request, settings_for(jogg, preflight="on"), console, preflight=preflight))
    return status, err.getvalue()


def test_the_link_check_shows_lengths_and_quote_before_the_create(jogg: FakeJogg) -> None:
    with MediaServer() as media:
        media.add("/talk.mp4", Item(samples.mp4(7.2), "video/mp4"))
        media.add("/voice.wav", Item(samples.wav(10.0), "audio/wav"))

        status, err = checked_dub(jogg, media, "/talk.mp4", "/voice.wav")

    assert status == 0, err
    found = re.search(r"video ([\d.]+) s, audio ([\d.]+) s; quote at JoggAI: (.*)\n", err)
    assert found, err
    assert abs(Decimal(found[1]) - Decimal("7.2")) < Decimal("0.05")
    assert abs(Decimal(found[2]) - Decimal("10.0")) < Decimal("0.05")
    assert found[3] == "0.08 credits (1 credit per 125 s of output, rounded up)"
    assert err.index("quote at JoggAI") < err.index("submitted as task")


def test_a_link_to_a_web_page_is_refused_before_the_create(jogg: FakeJogg) -> None:
    with MediaServer() as media:
        media.add("/talk.mp4", Item(samples.mp4(7.2), "video/mp4"))
        media.add("/voice.html", Item(b"<!doctype html><p>Sign in</p>", "text/html"))

        status, err = checked_dub(jogg, media, "/talk.mp4", "/voice.html")

    assert status == 2, err
    assert "The audio link answers with a web page, not a media file, so nothing was sent to JoggAI." in err
    assert not jogg.creates


def test_a_dub_the_providers_balance_cannot_cover_is_refused_before_the_create(jogg: FakeJogg) -> None:
    """The bot's gate runs for the terminal too: a quote above what the account has left sends nothing."""
    jogg.remaining_quota = 0.05
    with MediaServer() as media:
        media.add("/talk.mp4", Item(samples.mp4(7.2), "video/mp4"))
        media.add("/voice.wav", Item(samples.wav(10.0), "audio/wav"))

        status, err = checked_dub(jogg, media, "/talk.mp4", "/voice.wav")

    assert status == 2, err
    assert "JoggAI has 0.05 credits left, and this dub needs about 0.08 credits" in err
    assert not jogg.creates and create_posts(jogg) == 0


def test_the_bot_command_hands_dub_to_the_terminal_dub(jogg: FakeJogg, tmp_path: Path) -> None:
    """`lipsync-bot dub …` / `python -m bot dub …`: the same command through the bot's entry point."""
    jogg.default_outcome = Outcome("success", polls=1, duration_seconds=12.5)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bot",
            "dub",
            "https://cdn.example.com/talk.mp4",
            "https://cdn.example.com/a.mp3",
        ],
        env=dub_env(jogg, tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "0.10 credits" in result.stdout and len(jogg.creates) == 1
    listed = subprocess.run(
        [sys.executable, "-m", "bot", "--help"],
        env=dub_env(None, tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert "doctor" in listed.stdout and "dub <video_url> <audio_url>" in listed.stdout
