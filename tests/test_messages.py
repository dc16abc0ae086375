"""Every message the bot can send, built from hostile outside text, stays valid Block Kit and injects nothing.

Outside text is what the bot does not write itself: provider errors and URLs, Slack file names, ids, the
words of a command. None of it may become a mention (`<!channel>`, `<@…>`) or a link in Slack's mrkdwn,
or break the bot's own markup, and no block may exceed Block Kit's limits (Slack then refuses the message).
"""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from pydantic import SecretStr
from slack_sdk.models.blocks import Block

from bot import views
from bot.jobs.files import SlackFile
from bot.jobs.model import Job, Source, Status
from bot.money.budgets import Limit
from bot.parsing.command import InvalidCommand, LipSyncRequest, parse_lipsync_text
from bot.parsing.file_share import Plan
from bot.providers.base import Cost
from bot.providers.jogg import JoggProvider
from bot.providers.lipsyncdev import LipSyncDevProvider
from bot.providers.sync import SyncProvider
from bot.views.compare import CompareEntry, compare_parent, compare_summary
from bot.views.control import (
    already_retried,
    cancel_outcome,
    cannot_retry,
    job_list,
    job_status,
    no_such_job,
    retry_note,
    retry_started,
    store_unavailable_now,
)
from bot.views.help import option_refused, store_unavailable, usage, usage_error
from bot.views.jobs import cannot_post_here, parent, result, upload_skipped
from bot.views.money import (
    admins_only,
    balance_low,
    budget_set,
    budget_usage,
    budgets_view,
    quote_answered,
    quote_prompt,
)
from bot.views.shares import (
    ambiguous_files,
    external_files,
    file_help,
    files_already_started,
    files_started,
    files_too_large,
    needs_partner,
    no_media_in_message,
    store_unavailable_for_files,
    too_many_dubs,
)
from bot.views.text import Message
from tests.fakes.jogg_api import RESULT_BASE, FakeJogg, Outcome
from tests.fakes.server import wait_until
from tests.fakes.slack_api import FakeSlack
from tests.harness import BotThread, stored_job

HOSTILE = "<!channel> <https://evil.example|click> &amp; *x* _y_ `z`"
SHOWN = "&lt;!channel&gt;"  # how the hostile text must still be visible: escaped, not dropped
HUGE = HOSTILE + " " + "&<>*_`~" * 1_500  # over 10,000 characters, most of them markup
USER = "U0ALICE"
JOGG = JoggProvider(SecretStr("jogg-key"))  # advice and the cost rule; never called over the network
CHANNEL = "C0GENERAL"  # where tests/payloads.py's slash command comes from
VIDEO = "https://cdn.example.com/talk.mp4"
AUDIO = "https://cdn.example.com/voice-fr.mp3"
HOSTILE_URL = f"https://cdn.example.com/v.mp4?q={HOSTILE}&x=>|"
LONG_URL = "https://cdn.example.com/" + "a&b" * 1_700 + ".mp4"  # 5,000+ characters

# What may legitimately stand between < and >: our requester's mention, a channel id, or a clean link
# (labelled by us, or by the file name at the end of its path, cut down to letters, digits, `.`, `-`, `_`).
ALLOWED_CONTROL = re.compile(
    r"@[A-Z][A-Z0-9]+|#[A-Z][A-Z0-9]+|https?://[^\s|<>]+(?:\|(?:open the video|result|thread|[\w.\-…]+))?"
)


def job(**fields: Any) -> Job:
    values: dict[str, Any] = {
        "id": "0190abcdef1234",
        "user": USER,
        "channel": CHANNEL,
        "video_url": VIDEO,
        "audio_url": AUDIO,
        "timeout_s": 1800,
        "task_id": HOSTILE,
        "status": Status.FAILED,
    }
    return stored_job(**{**values, **fields})


def file(name: str, kind: str, **fields: Any) -> SlackFile:
    return SlackFile(
        id=f"F{abs(hash(name)) % 10_000}",
        name=name,
        mimetype=f"{kind}/mp4",
        size=600_000_000,
        url="https://files.slack.com/x",
        **fields,
    )


HOSTILE_VIDEO = file(HUGE + ".mp4", "video")
HOSTILE_AUDIO = file(HOSTILE + ".m4a", "audio")


def files_job(**fields: Any) -> Job:
    return job(
        source=Source.FILES,
        video_file=HOSTILE_VIDEO.to_json(),
        audio_file=HOSTILE_AUDIO.to_json(),
        playback_type="normal_reverse",
        **fields,
    )


def command_reason(text: str) -> str:
    with pytest.raises(InvalidCommand) as refused:
        parse_lipsync_text(text)
    return refused.value.reason


# name → (the public builder it exercises, the message built from hostile input, whether that input shows)
CASES: dict[str, tuple[str, Callable[[], Message], bool]] = {
    "usage": ("usage", usage, False),
    "usage_error raw": ("usage_error", lambda: usage_error(f"{HUGE} is wrong"), True),
    "usage_error from a command": (
        "usage_error",
        lambda: usage_error(command_reason(f"{VIDEO} {AUDIO} &lt;!channel&gt;")),
        True,
    ),
    "parent queued": ("parent", lambda: parent(job(status=Status.QUEUED, task_id="")), False),
    "parent hostile": (
        "parent",
        lambda: parent(job(status=Status.PROCESSING, video_url=HOSTILE_URL, audio_url=LONG_URL)),
        True,
    ),
    "parent hostile user": (
        "parent",
        lambda: parent(job(user=HOSTILE, status=Status.TIMED_OUT)),
        True,
    ),
    "success with cover": (
        "result",
        lambda: result(
            job(status=Status.SUCCEEDED, result_url=HOSTILE_URL, cover_url=HOSTILE_URL, duration_s="12.5")
        ),
        True,
    ),
    "success long urls": (
        "result",
        lambda: result(
            job(status=Status.SUCCEEDED, result_url=LONG_URL, cover_url=LONG_URL, duration_s="12.5")
        ),
        True,
    ),
    "success without cover": (
        "result",
        lambda: result(
            job(status=Status.SUCCEEDED, result_url=HOSTILE, cover_url=LONG_URL, duration_s="1"),
            with_cover=False,
        ),
        True,
    ),
    "success from files": (
        "result",
        lambda: result(files_job(status=Status.SUCCEEDED, result_url=VIDEO, duration_s="3")),
        True,
    ),
    "failure provider text": ("result", lambda: result(job(error=HUGE)), True),
    "failure known code": (
        "result",
        lambda: result(job(error_code="18020", error=HUGE), JOGG),
        True,
    ),
    "failure our own code": (
        "result",
        lambda: result(job(error_code="submit_unknown", error=HUGE)),
        True,
    ),
    "success at another provider": (
        "result",
        lambda: result(
            job(status=Status.SUCCEEDED, provider=HOSTILE, model=HOSTILE, cost=HOSTILE, cost_unit=HOSTILE),
            JOGG,
        ),
        True,
    ),
    "usage with providers": ("usage", lambda: usage([JOGG], "jogg"), False),
    "option refused": ("option_refused", lambda: option_refused(f"{HUGE} is wrong.", [JOGG]), True),
    "store unavailable now": ("store_unavailable_now", store_unavailable_now, False),
    "no such job": ("no_such_job", lambda: no_such_job(HUGE), True),
    "cancel outcome": (
        "cancel_outcome",
        lambda: cancel_outcome(job(provider=HOSTILE), "pending"),
        True,
    ),
    "cancel over": (
        "cancel_outcome",
        lambda: cancel_outcome(job(status=Status.SUCCEEDED), "over"),
        False,
    ),
    "retry started": ("retry_started", lambda: retry_started(job(), "0190abcdef9999"), False),
    "already retried": ("already_retried", lambda: already_retried(job(), "0190abcdef9999"), False),
    "cannot retry": ("cannot_retry", lambda: cannot_retry(job(status=Status.SUCCEEDED)), False),
    "retry note": ("retry_note", lambda: retry_note(job(), "0190abcdef9999", HOSTILE, True), True),
    "job status": (
        "job_status",
        lambda: job_status(
            job(
                status=Status.PROCESSING,
                queue_note=HUGE,
                error=HUGE,
                retry_of=HOSTILE,
                created_ms=1_700_000_000_000,
            )
        ),
        True,
    ),
    "job status of files": (
        "job_status",
        lambda: job_status(
            files_job(status=Status.SUCCEEDED, cost="1.5", cost_unit=HOSTILE, parent_ts="1.2")
        ),
        True,
    ),
    "job list": (
        "job_list",
        lambda: job_list(
            [job(status=s, result_url=HOSTILE_URL, cost=HOSTILE, parent_ts="17.5") for s in Status] * 5,
            1,
            300,
            10,
        ),
        True,
    ),
    "job list empty": ("job_list", lambda: job_list([], 3, 0, 10), False),
    "upload skipped": ("upload_skipped", lambda: upload_skipped(HUGE), True),
    # Money (bot/lanes/gate.py): refusals carry outside words (a link checker's reason, a budget's numbers).
    "refused link": (
        "result",
        lambda: result(job(error_code="link_refused", error=HUGE, error_file="audio link")),
        True,
    ),
    "refused budget for files": (
        "result",
        lambda: result(files_job(error_code="refused_budget", error=HOSTILE)),
        True,
    ),
    "from the cache": (
        "result",
        lambda: result(
            files_job(status=Status.SUCCEEDED, result_url=HOSTILE_URL, cached_from=HOSTILE, cost="0")
        ),
        True,
    ),
    "quote expired": (
        "result",
        lambda: result(job(status=Status.CANCELLED, error_code="quote_expired", user=HOSTILE)),
        False,
    ),
    "quote": (
        "quote_prompt",
        lambda: quote_prompt(
            job(video_s=HOSTILE, audio_s="62.5"), "JoggAI", Cost(Decimal("0.5"), "credits"), Decimal(1), 15
        ),
        False,
    ),
    "status waiting for a quote": (
        "job_status",
        lambda: job_status(
            job(status=Status.QUEUED, quote=HOSTILE, quote_unit=HOSTILE, confirm_state="asked")
        ),
        True,
    ),
    "quote answered": ("quote_answered", lambda: quote_answered(job(), "now"), False),
    "balance low": (
        "balance_low",
        lambda: balance_low(HOSTILE, Cost(Decimal("0.3"), HOSTILE), Decimal(10)),
        True,
    ),
    "budgets": (
        "budgets_view",
        lambda: budgets_view(
            [
                Limit("channel", "C0GENERAL", "credits", Decimal(50), Decimal("12.5")),
                Limit("user", HOSTILE, HUGE, Decimal(10) ** 9, Decimal(10) ** 10),
                *(Limit("user", f"U{n:04d}", "USD", Decimal(n), Decimal(0)) for n in range(300)),
            ],
            HOSTILE,
            admin=True,
        ),
        True,
    ),
    "budget set": (
        "budget_set",
        lambda: budget_set("user", HOSTILE, HOSTILE, Decimal(20), Decimal(0)),
        True,
    ),
    "budget usage": ("budget_usage", lambda: budget_usage(HUGE), True),
    "admins only": ("admins_only", admins_only, False),
    "cancelled job": (
        "result",
        lambda: result(files_job(status=Status.CANCELLED, cancel_by=HOSTILE, task_id=HOSTILE)),
        True,
    ),
    "compare parent": (
        "compare_parent",
        lambda: compare_parent(job(user=HOSTILE), [HOSTILE] * 3),
        True,
    ),
    "compare summary": (
        "compare_summary",
        lambda: compare_summary(
            [
                CompareEntry(HOSTILE, HOSTILE, status, 61_000, "12.5", HOSTILE, "USD", HOSTILE_URL, str(n))
                for n, status in enumerate([Status.SUCCEEDED, Status.FAILED] * 10)
            ]
        ),
        True,
    ),
    "failure no reason": ("result", lambda: result(job(task_id="")), False),
    "failure of a file": (
        "result",
        lambda: result(files_job(error_code="file_too_large", error=HUGE, error_file=HUGE, task_id="")),
        True,
    ),
    "timeout at the provider": ("result", lambda: result(job(status=Status.TIMED_OUT)), True),
    "timeout before submitting": (
        "result",
        lambda: result(job(status=Status.TIMED_OUT, task_id="", last_error=f"{HUGE}.mp4: HTTP 503")),
        True,
    ),
    "timeout from files": ("result", lambda: result(files_job(status=Status.TIMED_OUT)), True),
    "cannot post here": ("cannot_post_here", lambda: cannot_post_here(HOSTILE), True),
    "cannot post in a channel": ("cannot_post_here", lambda: cannot_post_here(CHANNEL), False),
    "file help": ("file_help", file_help, False),
    "needs audio": ("needs_partner", lambda: needs_partner(Plan(videos=[HOSTILE_VIDEO])), True),
    "needs video": (
        "needs_partner",
        lambda: needs_partner(Plan(audios=[file(f"{HOSTILE} {i}.mp3", "audio") for i in range(30)])),
        True,
    ),
    "ambiguous": (
        "ambiguous_files",
        lambda: ambiguous_files(Plan(videos=[HOSTILE_VIDEO] * 40, audios=[HOSTILE_AUDIO] * 40)),
        False,
    ),
    "too large": (
        "files_too_large",
        lambda: files_too_large([HOSTILE_VIDEO, *[HOSTILE_AUDIO] * 30], 500_000_000),
        True,
    ),
    "external": (
        "external_files",
        lambda: external_files([file(HUGE, "video", external=True)] * 12),
        True,
    ),
    "started": (
        "files_started",
        lambda: files_started([files_job(id=f"0190abcdef{n:04d}") for n in range(10)]),
        True,
    ),
    "already started": ("files_already_started", files_already_started, False),
    "no media": ("no_media_in_message", no_media_in_message, False),
    "store unavailable": ("store_unavailable", store_unavailable, False),
    "store unavailable for files": (
        "store_unavailable_for_files",
        store_unavailable_for_files,
        False,
    ),
    "too many dubs": ("too_many_dubs", lambda: too_many_dubs(99, 10), False),
}


def mrkdwn_of(message: Message) -> list[str]:
    """Every piece of the message Slack reads as mrkdwn: the fallback text and all block text."""
    texts = [message.text]
    for block in message.blocks:
        texts.extend(t["text"] for t in [block.get("text") or {}, *block.get("fields", [])] if t)
        texts.extend(e["text"] for e in block.get("elements", []) if e.get("type") == "mrkdwn")
    return texts


def assert_within_block_kit(message: Message) -> None:
    assert 0 < len(message.text) <= 4000
    assert 0 < len(message.blocks) <= 50
    for block in message.blocks:
        parsed = Block.parse(block)
        assert parsed is not None
        parsed.validate_json()  # raises SlackObjectFormationError on what slack_sdk checks
        assert parsed.to_dict() == block  # nothing the models do not understand
        # Limits slack_sdk does not check (Block Kit reference).
        assert len(block.get("fields", [])) <= 10
        assert all(len(f["text"]) <= 2000 for f in block.get("fields", []))
        assert len(block.get("elements", [])) <= 10
        assert all(len(e["text"]) <= 3000 for e in block.get("elements", []))


def assert_injects_nothing(message: Message) -> None:
    for text in mrkdwn_of(message):
        # Every < closes before the next one, so no link or mention was cut in half…
        assert re.fullmatch(r"(?:[^<>]|<[^<>]*>)*", text, re.DOTALL), text[:300]
        # …and each is one of ours: the requester, a channel id, or a clean link.
        for control in re.findall(r"<([^<>]*)>", text):
            assert ALLOWED_CONTROL.fullmatch(control), control[:300]
            assert "evil.example|" not in control
        assert not re.search(r"&(?!amp;|lt;|gt;)", text), "an & that is not an entity (or a cut one)"
        assert text.count("`") % 2 == 0, "a code span cut open"


@pytest.mark.parametrize("case", list(CASES))
def test_message_is_valid_block_kit_and_injects_nothing(case: str) -> None:
    _, build, hostile_shown = CASES[case]
    message = build()
    assert_within_block_kit(message)
    assert_injects_nothing(message)
    everything = "\n".join(mrkdwn_of(message))
    assert "<!" not in everything
    assert "<https://evil.example" not in everything
    if hostile_shown:
        assert SHOWN in everything  # the user still sees what the outside said


def test_every_public_builder_is_checked() -> None:
    modules = [importlib.import_module(f"bot.views.{m.name}") for m in pkgutil.iter_modules(views.__path__)]
    builders = {
        name
        for module in modules
        for name, function in inspect.getmembers(module, inspect.isfunction)
        if not name.startswith("_")
        and function.__module__ == module.__name__
        and inspect.signature(function).return_annotation in ("Message", Message)
    }
    assert builders == {builder for builder, _, _ in CASES.values()}


def test_provider_error_is_shown_verbatim_without_breaking_the_markup() -> None:
    reply = result(job(error="bad *audio* _track_ `x`.wav"))
    assert "JoggAI said: `bad *audio* _track_ 'x'.wav`" in reply.blocks[0]["text"]["text"]


def test_an_overlong_provider_error_is_shortened_not_cut_open() -> None:
    reply = result(job(error="fetch failed " + "<x> " * 5_000))
    section = reply.blocks[0]["text"]["text"]
    assert "JoggAI said: `fetch failed &lt;x&gt;" in section and "…`" in section
    assert ":bulb:" in section  # the hint after it is still there


def test_cover_url_too_long_for_an_image_is_a_note_and_the_result_link_stays() -> None:
    cover = f"{RESULT_BASE}/c.jpg?sig=" + "a" * 3_500
    reply = result(
        job(status=Status.SUCCEEDED, result_url=f"{RESULT_BASE}/r.mp4", cover_url=cover, duration_s="2")
    )
    assert [b for b in reply.blocks if b["type"] == "image"] == []
    shown = json.dumps(reply.blocks)
    assert f"<{RESULT_BASE}/r.mp4|open the video>" in shown
    assert "Cover image: `https://res.jogg.ai/lipsync/c.jpg?sig=aaa" in shown and "too long" in shown


def test_too_many_dubs_says_how_many_and_the_cap() -> None:
    note = too_many_dubs(99, 10)
    assert "99 dubs" in note.text and "at most 10" in note.text and "nothing was started" in note.text


# ---------------------------------------------------------------------------------- through the real bot


def thread_reply(slack: FakeSlack) -> dict[str, Any]:
    """The job's reply, as Slack stored it, in the thread of the job's message."""
    posted = wait_until(lambda: next(iter(slack.messages(CHANNEL)), None), timeout=10)
    return wait_until(lambda: next(iter(slack.replies(CHANNEL, posted["ts"])), None), timeout=15)


def shown_in(reply: dict[str, Any]) -> str:
    return str(reply["text"]) + json.dumps(reply["blocks"])


def test_a_provider_error_cannot_ping_the_channel_or_post_a_link(
    bot: BotThread, slack: FakeSlack, jogg: FakeJogg
) -> None:
    jogg.default_outcome = Outcome("failed", polls=1, error_message="<!channel> <https://evil.example|click>")
    bot.command(f"{VIDEO} {AUDIO}", response_url=slack.response_url("r"))
    reply = thread_reply(slack)
    assert "<!channel>" not in shown_in(reply) and "<https://evil.example|" not in shown_in(reply)
    assert "&lt;!channel&gt;" in reply["text"]  # still shown, as text


def test_a_cover_url_too_long_for_slack_does_not_get_the_reply_refused(
    bot: BotThread, slack: FakeSlack, jogg: FakeJogg
) -> None:
    jogg.default_outcome = Outcome("success", polls=1, cover_url=f"{RESULT_BASE}/c.jpg?sig=" + "a" * 3_500)
    bot.command(f"{VIDEO} {AUDIO}", response_url=slack.response_url("r"))
    reply = thread_reply(slack)
    [task] = jogg.tasks.values()
    assert f"<{jogg.result_url(task.task_id)}|open the video>" in shown_in(reply)
    # Accepted the first time: Slack never had to refuse an image it would not take.
    assert len([c for c in slack.calls_to("chat.postMessage") if c.params.get("thread_ts")]) == 1
    assert_within_block_kit(Message(reply["text"], reply["blocks"]))


# ---------------------------------------------------------------------------------- /lipsync help

SYNC = SyncProvider(SecretStr("sync-key"))
LIPSYNCDEV = LipSyncDevProvider(SecretStr("lipsyncdev-key"))
# Names only admins and the providers' APIs use: settings, and API fields such as LipSync.dev's creditsUsed.
SETTING_NAME = re.compile(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b|\bcreditsUsed\b")


def help_text(providers: list[Any], default: str) -> str:
    message = usage(providers, default)
    assert_within_block_kit(message)
    assert_injects_nothing(message)
    return "\n".join(mrkdwn_of(message))


def example_of(text: str) -> LipSyncRequest:
    [example] = set(re.findall(r"\*Example:\* `/lipsync ([^`]*)`", text))  # the fallback text repeats it
    request = parse_lipsync_text(example.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))
    assert isinstance(request, LipSyncRequest)
    return request


def test_help_on_a_joggai_only_install_names_only_joggai_and_its_example_works() -> None:
    text = help_text([JOGG], "jogg")
    assert "JoggAI" in text and "`jogg`" in text
    for elsewhere in ("sync.so", "`sync`", "LipSync.dev", "lipsyncdev", "model="):
        assert elsewhere not in text, elsewhere
    request = example_of(text)
    assert request.provider in ("", "jogg") and not request.model
    assert JOGG.options_problem(request.playback_type, request.model) is None  # JoggAI would take it


def test_help_with_every_provider_shows_no_setting_or_api_field_names_and_a_working_example() -> None:
    text = help_text([JOGG, SYNC, LIPSYNCDEV], "jogg")
    for provider in (JOGG, SYNC, LIPSYNCDEV):
        assert f"`{provider.name}`: {provider.label}" in text
    assert not SETTING_NAME.search(text), SETTING_NAME.findall(text)
    assert "$3.00" in text  # sync.so's lipsync-2 for a minute of output, at the default price
    request = example_of(text)
    chosen = {p.name: p for p in (JOGG, SYNC, LIPSYNCDEV)}[request.provider or "jogg"]
    assert chosen.options_problem(request.playback_type, request.model) is None


def test_help_with_sync_only_offers_its_models_and_no_other_provider() -> None:
    text = help_text([SYNC], "sync")
    assert "`lipsync-2-pro`" in text and "JoggAI" not in text and "LipSync.dev" not in text
    request = example_of(text)
    assert request.provider in ("", "sync")
    assert SYNC.options_problem(request.playback_type, request.model) is None


def test_help_says_how_to_share_files_instead_of_links() -> None:
    text = help_text([JOGG], "jogg")
    assert "/invite" in text  # the bot only sees channels it is in
    assert "share a video and an audio file in one message" in text
    assert "⋯" in text and "*Lip-sync these files*" in text  # files posted before it joined
