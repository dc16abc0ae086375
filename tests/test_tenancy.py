"""Only the owner sees and steers a job: every read and every action on it checks the workspace and the
person (bot/requests/control.py `may_steer`), and a refusal reads exactly like a missing job. Also: clicks are
acked before their thread notes are posted, `/lipsync list` shows each job's inputs and thread, and a second
Cancel says the job is cancelled (or being cancelled) already."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import redis

from bot.jobs import codec
from bot.jobs.files import SlackFile
from bot.jobs.model import Job, Source, Status, short_id
from bot.requests.control import Person, Roles, person_from
from bot.views.control import cancel_outcome, job_list, no_such_job
from tests.fakes.jogg_api import FakeJogg, Outcome
from tests.fakes.media_server import MediaServer
from tests.fakes.server import wait_until
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_api import Fault as SlackFault
from tests.harness import BotThread, stored_job
from tests.payloads import block_actions, event_callback, view_submission
from tests.test_job_control import (
    AUDIO,
    CHANNEL,
    VIDEO,
    buttons,
    ephemeral_text,
    job_message,
    parents,
    text_of,
)
from tests.test_money import job_field, media, money_bot, private, submit, talk, voice  # noqa: F401
from tests.test_providers import settle

TEAM = "T0TEST"
OTHER_TEAM = "T0OTHER"
ORG = "E0ACME"
# (user, the workspace their click or command comes from): an admin of another workspace, from there and
# from a channel shared with this one; and someone of this workspace who is no admin.
OUTSIDERS = [("U0EVE", OTHER_TEAM), ("U0EVE", TEAM), ("U0BOB", TEAM)]
MISSING = "0190ffffffffffffffff"  # a job id that was never made


def add_people(slack: FakeSlack) -> None:
    slack.add_user("U0EVE", name="eve", is_admin=True, team_id=OTHER_TEAM)
    slack.add_user("U0BOB", name="bob")


def press(
    bot: BotThread,
    slack: FakeSlack,
    action: str,
    value: str,
    key: str,
    user: str = "U0ALICE",
    team: str = TEAM,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Click `action` (on the job `value`) as `user` from workspace `team` (`extra`: payload fields to set);
    the private answer it got."""
    payload = block_actions(
        action, value, user_id=user, team_id=team, message_ts="1.0", response_url=slack.response_url(key)
    )
    payload.update(extra or {})
    assert bot.shortcut(payload).status_code == 200
    return dict(wait_until(lambda: slack.responses.get(key), timeout=10)[0])


def reads_as_missing(answer: dict[str, Any], typed: str) -> bool:
    """Whether a private answer is, word for word, the one a job that does not exist gets."""
    missing = no_such_job(typed)
    return answer.get("text") == missing.text and answer.get("blocks") == missing.blocks


def command_answer(bot: BotThread, text: str, user: str = "U0ALICE", team: str = TEAM) -> dict[str, Any]:
    return dict(bot.command(text, response_url="", user_id=user, team_id=team).json())


def job_keys(redis_client: redis.Redis) -> list[str]:
    return sorted(redis_client.keys("{lip}:job:*"))


def stored(redis_client: redis.Redis) -> dict[str, Any]:
    """Every job and every once-only marker (of a retry, of a dub again): what a refusal must not touch."""
    return {
        "jobs": {key: redis_client.hgetall(key) for key in job_keys(redis_client)},
        "markers": sorted(redis_client.keys("{lip}:seen:*")),
    }


def failed_job(
    start_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg
) -> tuple[BotThread, str]:
    jogg.default_outcome = Outcome("failed", polls=1)
    bot = start_bot()
    bot.command(f"{VIDEO} {AUDIO}", response_url=slack.response_url("r"))
    first = job_message(slack)
    wait_until(lambda: "job_retry" in buttons(slack.message(CHANNEL, first["ts"]) or {}))
    return bot, buttons(slack.message(CHANNEL, first["ts"]) or {})["job_retry"]


DUB_VALUES = {
    "audio": {"value": {"type": "plain_text_input", "value": "https://cdn.example.com/voice-de.mp3"}},
    "playback": {"value": {"type": "static_select", "selected_option": {"value": "normal"}}},
    "provider": {"value": {"type": "static_select", "selected_option": {"value": "jogg"}}},
}


def submit_dub_again(bot: BotThread, job_id: str, user: str = "U0ALICE", team: str = TEAM) -> Any:
    payload = view_submission("dub_again", DUB_VALUES, job_id, user_id=user, team_id=team)
    return bot.shortcut(payload)


# ------------------------------------------------------------------------------------------------ (a)


def test_nobody_else_sees_retries_or_dubs_again_a_job_and_the_refusal_reads_as_no_such_job(
    start_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg, redis_client: redis.Redis
) -> None:
    add_people(slack)
    bot, job_id = failed_job(start_bot, slack, jogg)
    short = short_id(job_id)
    settle(redis_client)
    before, thread = stored(redis_client), slack.replies(CHANNEL, job_message(slack)["ts"])
    missing_form = submit_dub_again(bot, MISSING).json()

    for n, (user, team) in enumerate(OUTSIDERS):
        for action in ("job_retry", "job_again_anyway", "job_dub_again", "job_cancel"):
            answer = press(bot, slack, action, job_id, f"{action}-{n}", user, team)
            assert reads_as_missing(answer, job_id), (action, user, team, answer)
        assert submit_dub_again(bot, job_id, user, team).json() == missing_form
        for verb in ("status", "cancel"):
            assert reads_as_missing(command_answer(bot, f"{verb} {short}", user, team), short), (verb, user)
        assert short not in json.dumps(command_answer(bot, "list", user, team))

    settle(redis_client)
    assert stored(redis_client) == before  # no job, no retry used up, no cancel
    assert len(jogg.creates) == 1 and len(parents(slack)) == 1  # no paid task, no new job's message
    assert slack.opened_views == [] and slack.replies(CHANNEL, job_message(slack)["ts"]) == thread
    # The retry is still there for the one who asked.
    assert "Retrying job" in str(press(bot, slack, "job_retry", job_id, "owner")["text"])
    wait_until(lambda: len(jogg.creates) == 2, timeout=15)


def test_a_retry_from_another_workspace_creates_nothing_and_leaves_the_retry_to_the_owner(
    start_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg, redis_client: redis.Redis
) -> None:
    add_people(slack)
    bot, job_id = failed_job(start_bot, slack, jogg)
    settle(redis_client)
    jobs = job_keys(redis_client)

    answer = press(bot, slack, "job_retry", job_id, "eve", "U0EVE", OTHER_TEAM)

    assert reads_as_missing(answer, job_id)
    settle(redis_client)
    assert job_keys(redis_client) == jobs and len(jogg.creates) == 1
    assert redis_client.keys(f"{{lip}}:seen:retry:{job_id}") == []
    assert "Retrying job" in str(press(bot, slack, "job_retry", job_id, "alice")["text"])
    assert len(wait_until(lambda: r if len(r := job_keys(redis_client)) == 2 else None, timeout=10)) == 2


def test_a_running_job_is_cancelled_only_by_its_requester_or_an_admin_of_its_workspace(
    start_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg, redis_client: redis.Redis
) -> None:
    add_people(slack)
    slack.add_user("U0ADMIN", name="ada", is_admin=True)
    # Enterprise Grid: an org admin (a member of another of the org's workspaces), and another org's admin.
    org_admin = {"enterprise_id": ORG, "is_admin": True, "is_owner": False, "is_primary_owner": False}
    slack.add_user("W0ORGADMIN", name="olga", team_id="T0SISTER", enterprise_user=org_admin)
    slack.add_user(
        "W0STRANGER",
        name="sam",
        team_id="T0SISTER",
        enterprise_user={**org_admin, "enterprise_id": "E0OTHER"},
    )
    jogg.default_outcome = Outcome("never")
    bot = start_bot()
    bot.command(f"{VIDEO} {AUDIO}", response_url=slack.response_url("r1"))
    bot.command(f"{VIDEO}?second {AUDIO}", response_url=slack.response_url("r2"))
    wait_until(lambda: len(jogg.tasks) == 2, timeout=15)
    first, second = (buttons(job_message(slack, i))["job_cancel"] for i in range(2))
    grid = {"enterprise": {"id": ORG, "name": "Acme"}, "is_enterprise_install": False}

    for n, (user, team) in enumerate(OUTSIDERS):
        assert reads_as_missing(press(bot, slack, "job_cancel", first, f"c{n}", user, team), first)
        assert reads_as_missing(command_answer(bot, f"cancel {short_id(first)}", user, team), short_id(first))
    stranger = press(bot, slack, "job_cancel", first, "sam", "W0STRANGER", TEAM, grid)
    assert reads_as_missing(stranger, first)  # an admin of another org is nobody here
    for job_id in (first, second):
        assert job_field(redis_client, job_id, "status") == "processing"
        assert job_field(redis_client, job_id, "cancel_by") == ""

    # A workspace admin, by command; an Enterprise Grid org admin (users.info's enterprise_user.is_admin),
    # clicking from this workspace while their own is another of the org's.
    by_admin = ephemeral_text(bot.command(f"cancel {short_id(first)}", response_url="", user_id="U0ADMIN"))
    assert "JoggAI already had it" in by_admin
    payload_user = {"user": {"id": "W0ORGADMIN", "username": "olga", "name": "olga", "team_id": "T0SISTER"}}
    by_org_admin = press(bot, slack, "job_cancel", second, "olga", "W0ORGADMIN", TEAM, grid | payload_user)
    assert "JoggAI already had it" in by_org_admin["text"]
    wait_until(lambda: job_field(redis_client, second, "status") == "cancelled", timeout=10)
    assert job_field(redis_client, first, "cancel_by") == "U0ADMIN"
    assert job_field(redis_client, second, "cancel_by") == "W0ORGADMIN"


def test_a_quote_is_answered_only_by_its_requester(
    money_bot: Callable[..., BotThread],  # noqa: F811
    slack: FakeSlack,
    jogg: FakeJogg,
    media: MediaServer,  # noqa: F811
    redis_client: redis.Redis,
) -> None:
    add_people(slack)
    bot = money_bot(confirm_above="credits=0.25")
    job = submit(bot, slack, talk(media), voice(media, 62.5), "r1")
    private(slack, "r1")  # the quote, with Dub it / Cancel

    for n, (user, team) in enumerate(OUTSIDERS):
        for action in ("quote_ok", "quote_cancel"):
            assert reads_as_missing(press(bot, slack, action, job.id, f"{action}{n}", user, team), job.id)
    assert job_field(redis_client, job.id, "confirm_state") == "asked"
    waiting = codec.from_fields(redis_client.hgetall(f"{{lip}}:job:{job.id}"))
    assert waiting.status is Status.QUEUED and not waiting.progress.cancel_by and jogg.creates == []

    assert "Dubbing it" in str(press(bot, slack, "quote_ok", job.id, "alice")["text"])
    wait_until(lambda: jogg.creates, timeout=20)


def test_app_home_shows_the_admins_part_only_to_admins_of_this_workspace(
    start_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg, redis_client: redis.Redis
) -> None:
    add_people(slack)
    slack.add_user(
        "W0ORGADMIN",
        name="olga",
        team_id="T0SISTER",
        enterprise_user={"enterprise_id": ORG, "is_admin": True},
    )
    jogg.default_outcome = Outcome("success", polls=1)
    bot = start_bot()
    bot.command(f"{VIDEO} {AUDIO}", response_url=slack.response_url("r"))
    alice_home = json.dumps(wait_until(lambda: slack.home_views.get("U0ALICE"), timeout=20))
    [key] = job_keys(redis_client)
    short = short_id(key.split(":")[-1])
    assert short in alice_home

    for user in ("U0EVE", "U0BOB", "W0ORGADMIN"):
        envelope = event_callback({"type": "app_home_opened", "user": user, "channel": "D0X", "tab": "home"})
        if user == "W0ORGADMIN":
            envelope["enterprise_id"] = ORG
        bot.event(envelope)
    homes = {
        user: json.dumps(wait_until(lambda user=user: slack.home_views.get(user), timeout=10))
        for user in ("U0EVE", "U0BOB", "W0ORGADMIN")
    }

    assert "For admins" not in homes["U0EVE"]  # an admin, but of another workspace
    assert "For admins" not in homes["U0BOB"]
    assert "For admins" in homes["W0ORGADMIN"]  # the org's admin
    assert all(short not in home for home in homes.values())  # Alice's job is Alice's


# ------------------------------------------------------------------------------------- who is asking


def test_the_person_is_read_from_each_payload_as_slack_sends_it() -> None:
    # Keys as in Slack's recorded payloads (reference/slack-samples): a slash command's form fields, and an
    # interactivity payload whose person belongs to another workspace of the org than the one they act in.
    command = {"team_id": TEAM, "team_domain": "acme", "enterprise_id": ORG, "user_id": "U0ALICE"}
    assert person_from(command) == Person(user="U0ALICE", team=TEAM, enterprise=ORG)
    click = {
        "type": "block_actions",
        "enterprise": {"id": ORG, "name": "Acme"},
        "team": {"id": TEAM, "domain": "acme", "enterprise_id": ORG, "enterprise_name": "Acme"},
        "user": {"id": "W0OLGA", "username": "olga", "name": "olga", "team_id": "T0SISTER"},
        "view": {"team_id": "T0ELSE", "app_installed_team_id": "T0ELSE"},
    }
    olga = person_from(click)
    assert olga == Person(user="W0OLGA", team=TEAM, home_team="T0SISTER", enterprise=ORG)
    assert olga.belongs_to(TEAM) and olga.belongs_to("T0SISTER") and not olga.belongs_to("T0ELSE")
    assert not Person(user="U0X", team="").belongs_to("")
    # Org-wide Grid payloads may carry no team object: the person's own team and the org still count.
    assert person_from({"team": None, "enterprise": None, "user": {"id": "W1", "team_id": TEAM}}).belongs_to(
        TEAM
    )


def test_who_counts_as_an_admin_of_a_workspace() -> None:
    def roles(**info: Any) -> Roles:
        return Roles.from_user_info({"team_id": TEAM, **info})

    assert roles(is_admin=True).admin_of(TEAM, "")
    assert roles(is_owner=True).admin_of(TEAM, "") and roles(is_primary_owner=True).admin_of(TEAM, "")
    assert not roles(is_admin=True).admin_of(OTHER_TEAM, "")  # of their own workspace only
    assert not roles(is_admin=False).admin_of(TEAM, ORG)
    org_admin = roles(is_admin=False, enterprise_user={"enterprise_id": ORG, "is_admin": True})
    assert org_admin.admin_of(OTHER_TEAM, ORG)  # any workspace of their org
    assert not org_admin.admin_of(OTHER_TEAM, "E0OTHER") and not org_admin.admin_of(OTHER_TEAM, "")
    assert roles(enterprise_user={"enterprise_id": ORG, "is_owner": True}).admin_of(TEAM, ORG)
    assert not roles(is_admin="true").admin_of(TEAM, "")  # only Slack's JSON true


# --------------------------------------------------------------------------------- ack before notes


def slow_posts(slack: FakeSlack, count: int = 2) -> None:
    """The next `count` chat.postMessage calls answer after 2.5 s (the thread note and the new job's message
    among them)."""
    for _ in range(count):
        slack.inject("chat.postMessage", SlackFault("delay", delay=2.5))


def retry_notes(slack: FakeSlack, thread_ts: str) -> list[dict[str, Any]]:
    return [m for m in slack.replies(CHANNEL, thread_ts) if "retrying it" in text_of(m)]


def test_a_retry_click_is_acked_before_its_thread_note_is_posted(
    start_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg, redis_client: redis.Redis
) -> None:
    bot, job_id = failed_job(start_bot, slack, jogg)
    settle(redis_client)
    thread_ts = job_message(slack)["ts"]
    slow_posts(slack)

    payload = block_actions("job_retry", job_id, message_ts=thread_ts, response_url=slack.response_url("k"))
    response = bot.shortcut(payload)

    assert response.status_code == 200
    assert len(job_keys(redis_client)) == 2  # the new job was stored before the ack
    assert retry_notes(slack, thread_ts) == []  # the ack came back while the note's post was still on its way
    wait_until(lambda: retry_notes(slack, thread_ts), timeout=15)  # then the note arrives
    assert "Retrying job" in wait_until(lambda: slack.responses.get("k"), timeout=10)[0]["text"]


def test_the_dub_again_form_is_acked_before_its_thread_note_is_posted(
    start_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg, redis_client: redis.Redis
) -> None:
    jogg.default_outcome = Outcome("success", polls=1)
    bot = start_bot()
    bot.command(f"{VIDEO} {AUDIO}", response_url=slack.response_url("r"))
    thread_ts = job_message(slack)["ts"]
    wait_until(lambda: "job_dub_again" in buttons(slack.message(CHANNEL, thread_ts) or {}))
    settle(redis_client)
    job_id = buttons(slack.message(CHANNEL, thread_ts) or {})["job_dub_again"]
    slow_posts(slack)

    response = submit_dub_again(bot, job_id)

    assert response.status_code == 200 and response.text == ""  # the form closes
    assert len(job_keys(redis_client)) == 2
    notes = lambda: [m for m in slack.replies(CHANNEL, thread_ts) if "dubbing it again" in text_of(m)]  # noqa: E731
    assert notes() == []
    wait_until(notes, timeout=15)


# -------------------------------------------------------------------------------------------- the list


def test_the_list_shows_each_jobs_inputs_and_a_link_to_its_thread(
    start_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg, redis_client: redis.Redis
) -> None:
    jogg.default_outcome = Outcome("success", polls=1)
    bot = start_bot()
    bot.command(f"{VIDEO} {AUDIO}", response_url=slack.response_url("r"))
    message = job_message(slack)
    wait_until(lambda: slack.replies(CHANNEL, message["ts"]) or None)
    settle(redis_client)

    listing = ephemeral_text(bot.command("list", response_url=""))

    assert f"<{VIDEO}|talk.mp4>" in listing and f"<{AUDIO}|voice-fr.mp3>" in listing
    ts = message["ts"].replace(".", "")
    assert f"<https://acme.slack.com/archives/{CHANNEL}/p{ts}|thread>" in listing  # the command's workspace


def listed_job(n: int, **fields: Any) -> Job:
    return stored_job(
        id=f"0190abcdef{n:02d}{n:08x}",
        team_id=TEAM,
        user="U0ALICE",
        channel=CHANNEL,
        parent_ts=f"1700000000.0000{n:02d}",
        status=Status.SUCCEEDED,
        cost="0.5",
        cost_unit="credits",
        created_ms=1_700_000_000_000,
        **fields,
    )


def test_a_full_page_of_jobs_with_huge_links_stays_within_block_kit_limits() -> None:
    long_url = "https://cdn.example.com/" + "a" * 2500 + "/talk.mp4"
    files = {
        "source": Source.FILES,
        "video_file": SlackFile(id="F1", name="interview <b>.mp4").to_json(),
        "audio_file": SlackFile(id="F2", name="voice-de.m4a").to_json(),
        "video_url": long_url,  # the provider's copy: never shown
    }
    jobs = [listed_job(n, video_url=long_url, audio_url=long_url, result_url=long_url) for n in range(9)]
    jobs.append(listed_job(9, **files))

    message = job_list(jobs, 1, 25, 10, "acme")

    assert len(message.blocks) <= 50 and len(message.text) <= 4000
    sections = [b["text"]["text"] for b in message.blocks if b["type"] == "section"]
    assert all(len(text) <= 3000 for text in sections)
    shown = "\n".join(sections)
    assert all(f"`{short_id(job.id)}`" in shown for job in jobs)  # every job, none cut off
    assert "`talk.mp4` (link too long to show)" in shown and "result (link too long to show)" in shown
    from_files = sections[-1]  # shared files, by their names; their URLs are the provider's copies
    assert "`interview &lt;b&gt;.mp4` · :speaker: `voice-de.m4a`" in from_files and "cdn." not in from_files


# ------------------------------------------------------------------------------------ a second Cancel


def test_a_second_cancel_says_the_job_is_already_cancelled(
    start_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg, redis_client: redis.Redis
) -> None:
    jogg.default_outcome = Outcome("never")
    bot = start_bot()
    bot.command(f"{VIDEO} {AUDIO}", response_url=slack.response_url("r"))
    short = short_id(buttons(job_message(slack))["job_cancel"])
    wait_until(lambda: jogg.tasks)

    first = ephemeral_text(bot.command(f"cancel {short}", response_url=""))
    second = ephemeral_text(bot.command(f"cancel {short}", response_url=""))

    assert "JoggAI already had it" in first
    assert "is already cancelled (asked by <@U0ALICE>)" in second and "already ended" not in second


def test_a_cancel_while_the_first_is_under_way_says_it_is_being_cancelled(
    start_bot: Callable[..., BotThread], slack: FakeSlack, jogg: FakeJogg, redis_client: redis.Redis
) -> None:
    jogg.default_outcome = Outcome("never")
    jogg.get_delay_seconds = 20  # the poll step holds the job: a cancel can only ask it to stop
    bot = start_bot(lease_seconds=30)
    bot.command(f"{VIDEO} {AUDIO}", response_url=slack.response_url("r"))
    short = short_id(buttons(job_message(slack))["job_cancel"])
    wait_until(lambda: redis_client.hlen("{lip}:poll:lease") == 1, timeout=15)

    first = ephemeral_text(bot.command(f"cancel {short}", response_url=""))
    second = ephemeral_text(bot.command(f"cancel {short}", response_url=""))
    status = ephemeral_text(bot.command(f"status {short}", response_url=""))

    assert "Cancelling job" in first
    assert "is already being cancelled (asked by <@U0ALICE>)" in second
    assert "processing, being cancelled" in status


def test_a_cancel_that_finds_the_job_stopped_by_another_tells_its_real_state() -> None:
    # Two Cancels at once: both read the job while it was processing; the second one's store step finds it
    # over. Told from the job as it is after that step, never from the stale read.
    job = stored_job(id="0190abcdef12345678", provider="jogg", status=Status.PROCESSING, cancel_by="U0ALICE")
    assert "being cancelled" in cancel_outcome(job, "over").text
    job.status = Status.CANCELLED
    assert "already cancelled" in cancel_outcome(job, "over").text
    done = Job(id="0190abcdef12345678", status=Status.TIMED_OUT)
    assert "has already ended (timed out)" in cancel_outcome(done, "over").text
