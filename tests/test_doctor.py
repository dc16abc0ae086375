"""`lipsync-bot doctor` against the stand-ins: a healthy setup passes every check; each broken part (a
revoked token, a missing scope, a refused key, a Redis that may evict jobs, a hung service…) fails its
line with the fix and a non-zero exit; and no secret is ever printed."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from bot.programs import doctor
from bot.programs.doctor import slack_checks
from bot.programs.doctor.checklist import Check, Status
from bot.programs.embedded_redis import EmbeddedRedis
from bot.settings import Settings
from tests.fakes.jogg_api import FakeJogg
from tests.fakes.lipsyncdev_api import FakeLipSyncDev
from tests.fakes.slack_api import FakeSlack, Fault
from tests.fakes.sync_api import FakeSync
from tests.harness import REPO, bot_env, free_port
from tests.payloads import SIGNING_SECRET

MakeSettings = Callable[..., Settings]
WRONG_JOGG_KEY = "jogg-wrong-key-5f2a"


@pytest.fixture(autouse=True)
def installed_from_manifest(slack: FakeSlack) -> FakeSlack:
    """Slack as after installing manifest.yml: auth.test reports every scope it asks for."""
    slack.granted_scopes = slack_checks.manifest_scopes()
    return slack


def secrets_of(slack: FakeSlack, jogg: FakeJogg) -> list[str]:
    return [slack.bot_token, slack.app_token, SIGNING_SECRET, jogg.api_key, WRONG_JOGG_KEY]


def assert_no_secret(text: str, secrets: list[str]) -> None:
    leaked = [secret for secret in secrets if secret in text]
    assert not leaked, f"printed a secret: {leaked}\n{text}"


def diagnose(settings: Settings, timeout_s: float = doctor.CHECK_SECONDS) -> tuple[dict[str, Check], str]:
    """The checks by name, and the checklist as printed but before `run`'s scrubbing of secrets."""
    checks = asyncio.run(doctor.diagnose(settings, timeout_s))
    return {check.name: check for check in checks}, doctor.render(checks)


def run_doctor(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "bot", "doctor"]
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


def statuses(output: str) -> dict[str, str]:
    """Each checklist line's check name → its mark."""
    marks = tuple(f"{status} " for status in Status)
    lines = [line for line in output.splitlines() if line.startswith(marks)]
    return {line[2:].split("  ")[0].strip(): line[0] for line in lines}


# -- the manifest reader --------------------------------------------------------------------------


def test_the_scopes_are_read_from_manifest_yml_and_odd_shapes_are_refused() -> None:
    scopes = slack_checks.manifest_scopes()
    manifest = (REPO / "manifest.yml").read_text()
    # Every scope line of the manifest's bot list, comments and all, and nothing else (not user scopes,
    # not the bot events that follow).
    assert "commands" in scopes and "files:read" in scopes and "users:read" in scopes
    assert all(f"- {scope}" in manifest and " " not in scope for scope in scopes)
    assert "message.channels" not in scopes and len(scopes) == len(set(scopes))

    sample = """\
oauth_config:
  redirect_urls:
    - https://example.com
  scopes:
    user:
      - search:read
    bot:
    # a comment line inside the list
    - commands   # a comment after an item
    - "chat:write"
    other: 1
settings:
  bot:
    - not-this
"""
    assert slack_checks.yaml_block_list(sample, slack_checks.SCOPES_PATH) == ["commands", "chat:write"]
    with pytest.raises(ValueError):
        slack_checks.yaml_block_list(
            "oauth_config:\n  scopes:\n    bot: [commands]\n", slack_checks.SCOPES_PATH
        )


# -- all green ------------------------------------------------------------------------------------


def test_a_healthy_socket_mode_setup_passes_every_check(
    slack: FakeSlack, jogg: FakeJogg, redis_url: str, tmp_path: Path
) -> None:
    env = bot_env(
        slack,
        jogg,
        tmp_path,
        SLACK_APP_TOKEN=slack.app_token,
        SLACK_SIGNING_SECRET="",
        REDIS_URL=redis_url,
        PUBLIC_URL=jogg.base_url,  # something that answers on 127.0.0.1
    )
    result = run_doctor(env, tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    marks = statuses(result.stdout)
    assert list(marks) == [
        "Slack bot token",
        "Slack scopes",
        "Slack mode",
        "JoggAI",
        "Redis",
        "Redis persistence",
        "Redis eviction",
        "Redis memory",
        "PUBLIC_URL",
    ]
    assert set(marks.values()) == {"✓"}, result.stdout
    assert "@lipsync in Test" in result.stdout and "Socket Mode" in result.stdout
    assert "credits" in result.stdout and "Every required check passed." in result.stdout
    assert "Traceback" not in result.stderr
    assert_no_secret(result.stdout + result.stderr, secrets_of(slack, jogg))
    # The app token was tried, and no connection opened.
    assert len(slack.calls_to("apps.connections.open")) == 1 and not slack.socket_connected


def test_every_provider_in_http_mode_passes_with_its_balance(
    make_settings: MakeSettings, jogg: FakeJogg, sync_api: FakeSync, lipsyncdev_api: FakeLipSyncDev
) -> None:
    settings = make_settings(
        sync_api_key=sync_api.api_key,
        sync_api_url=sync_api.base_url,
        sync_max_concurrent=3,
        lipsyncdev_api_key=lipsyncdev_api.api_key,
        lipsyncdev_api_url=lipsyncdev_api.api_url,
        public_url=jogg.base_url,
    )
    checks, text = diagnose(settings)

    assert {check.status for check in checks.values()} == {Status.OK}, text
    assert "HTTP mode" in checks["Slack mode"].detail
    assert "credits" in checks["JoggAI"].detail
    assert checks["LipSync.dev"].detail.startswith(
        "LIPSYNCDEV_API_KEY accepted · API version A (Bearer, /v1/lipsync/submit) answered at 127.0.0.1 · "
    )
    assert "requests used" in checks["LipSync.dev"].detail
    assert checks["sync.so"].detail == "SYNC_API_KEY accepted"
    assert_no_secret(text, doctor.configured_secrets(settings))


def test_the_embedded_redis_is_checked_then_stopped(make_settings: MakeSettings, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    checks, text = diagnose(make_settings(redis_url=None, data_dir=data_dir))

    assert all(checks[name].status is Status.OK for name in checks if name.startswith("Redis")), text
    assert f"embedded, under DATA_DIR ({data_dir.resolve()})" in checks["Redis"].detail
    # Doctor started it for the check and stopped it: nothing listens on its socket now.
    with pytest.raises(OSError), socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(data_dir.resolve() / "redis.sock"))


# -- each failure, with its fix -------------------------------------------------------------------


def test_a_revoked_bot_token_fails_with_where_to_get_a_new_one(
    make_settings: MakeSettings, slack: FakeSlack, jogg: FakeJogg
) -> None:
    slack.revoked_tokens.add(slack.bot_token)
    checks, text = diagnose(make_settings())

    token = checks["Slack bot token"]
    assert token.status is Status.FAIL and "token_revoked" in token.detail and "xoxb-…" in token.detail
    assert "OAuth & Permissions" in token.fix and "fix: " in text
    assert "Slack scopes" not in checks  # nothing to read them from
    assert doctor.exit_code(list(checks.values())) == 1
    assert_no_secret(text, secrets_of(slack, jogg))


def test_a_missing_scope_is_named_with_reinstall_from_the_manifest(
    make_settings: MakeSettings, slack: FakeSlack, jogg: FakeJogg
) -> None:
    slack.missing_scopes = {"files:write", "users:read"}
    checks, text = diagnose(make_settings())

    scopes = checks["Slack scopes"]
    assert scopes.status is Status.FAIL and scopes.detail == "missing files:write, users:read"
    assert "reinstall the app from manifest.yml" in scopes.fix
    assert checks["Slack bot token"].status is Status.OK
    assert doctor.exit_code(list(checks.values())) == 1
    assert_no_secret(text, secrets_of(slack, jogg))


def test_scopes_slack_does_not_report_are_a_warning(make_settings: MakeSettings, slack: FakeSlack) -> None:
    slack.granted_scopes = None  # no x-oauth-scopes header
    checks, text = diagnose(make_settings())

    scopes = checks["Slack scopes"]
    assert scopes.status is Status.WARN and "could not be read" in scopes.detail
    assert doctor.exit_code(list(checks.values())) == 0
    assert "Every required check passed; 1 warning (!)." in text


def test_a_refused_provider_key_fails_with_where_to_get_one(
    make_settings: MakeSettings, slack: FakeSlack, jogg: FakeJogg
) -> None:
    checks, text = diagnose(make_settings(jogg_api_key=WRONG_JOGG_KEY))

    jogg_check = checks["JoggAI"]
    assert jogg_check.status is Status.FAIL and "refused JOGG_API_KEY" in jogg_check.detail
    assert "app.jogg.ai → API → API Keys" in jogg_check.fix and "JOGG_API_KEY" in jogg_check.fix
    assert doctor.exit_code(list(checks.values())) == 1
    assert_no_secret(text, secrets_of(slack, jogg))


@pytest.fixture
def risky_redis(tmp_path: Path) -> Iterator[str]:
    """A second real Redis, set the way several managed services ship: LRU eviction, no append-only
    file, the default 64-byte compact hash limit."""
    server = EmbeddedRedis(tmp_path / "risky", port=free_port()).start()
    try:
        client = redis.Redis.from_url(server.url)
        client.config_set("maxmemory-policy", "allkeys-lru")
        client.config_set("appendonly", "no")
        client.config_set("hash-max-ziplist-value", 64)
        client.close()
        yield server.url
    finally:
        server.stop()


def test_a_redis_that_may_evict_jobs_fails_and_its_other_risks_warn(
    make_settings: MakeSettings, risky_redis: str
) -> None:
    checks, text = diagnose(make_settings(redis_url=risky_redis))

    eviction = checks["Redis eviction"]
    assert eviction.status is Status.FAIL and "allkeys-lru" in eviction.detail
    assert "lost job" in eviction.detail and eviction.fix == "set maxmemory-policy noeviction"
    persistence, memory = checks["Redis persistence"], checks["Redis memory"]
    assert persistence.status is Status.WARN and "lost on a crash" in persistence.detail
    assert memory.status is Status.WARN and "hash-max-ziplist-value is 64" in memory.detail
    assert memory.fix == "set hash-max-ziplist-value 512"
    assert checks["Redis"].status is Status.OK and "Redis 6." in checks["Redis"].detail
    assert doctor.exit_code(list(checks.values())) == 1
    assert "1 check failed (✗), 2 warnings (!)" in text


def test_a_redis_without_config_is_a_warning_and_its_password_is_never_shown(
    make_settings: MakeSettings, redis_url: str
) -> None:
    # A user that may do everything but CONFIG, as managed Redis services hand out.
    admin = redis.Redis.from_url(redis_url)
    password = "s3cret-redis-pass"
    admin.execute_command("ACL", "SETUSER", "doctor", "on", f">{password}", "~*", "&*", "+@all", "-config")
    try:
        host_port = redis_url.removeprefix("redis://")
        checks, text = diagnose(make_settings(redis_url=f"redis://doctor:{password}@{host_port}"))
    finally:
        admin.execute_command("ACL", "DELUSER", "doctor")
        admin.close()

    assert checks["Redis"].status is Status.OK
    settings_check = checks["Redis settings"]
    assert settings_check.status is Status.WARN and "CONFIG GET refused" in settings_check.detail
    assert "maxmemory-policy noeviction" in settings_check.fix
    assert doctor.exit_code(list(checks.values())) == 0
    assert_no_secret(text, [password])


def test_unreachable_redis_and_public_url_fail_with_the_kind_of_error(
    make_settings: MakeSettings, slack: FakeSlack, jogg: FakeJogg
) -> None:
    closed = free_port()  # nothing listens there
    checks, text = diagnose(
        make_settings(redis_url=f"redis://127.0.0.1:{closed}/0", public_url=f"http://127.0.0.1:{closed}")
    )

    assert checks["Redis"].status is Status.FAIL and "cannot reach REDIS_URL" in checks["Redis"].detail
    assert "Redis eviction" not in checks
    public = checks["PUBLIC_URL"]
    assert public.status is Status.FAIL and "127.0.0.1 resolves, but the connection failed" in public.detail
    assert "refused" in public.detail.lower()
    assert_no_secret(text, secrets_of(slack, jogg))


def test_a_hung_service_fails_its_check_in_time_and_the_others_still_report(
    make_settings: MakeSettings, slack: FakeSlack
) -> None:
    slack.inject("auth.test", Fault("delay", delay=30))
    started = time.monotonic()
    checks, _ = diagnose(make_settings(), timeout_s=2)

    assert time.monotonic() - started < 5
    assert checks["Slack bot token"].status is Status.FAIL
    assert checks["Slack bot token"].detail == "no answer within 2 s"
    assert checks["JoggAI"].status is Status.OK and checks["Redis eviction"].status is Status.OK


def test_the_command_exits_1_on_failures_and_prints_no_secret(
    slack: FakeSlack, jogg: FakeJogg, risky_redis: str, tmp_path: Path
) -> None:
    slack.revoked_tokens.update({slack.bot_token, slack.app_token})
    env = bot_env(
        slack,
        jogg,
        tmp_path,
        SLACK_APP_TOKEN=slack.app_token,
        JOGG_API_KEY=WRONG_JOGG_KEY,
        REDIS_URL=risky_redis,
    )
    result = run_doctor(env, tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    marks = statuses(result.stdout)
    for name in ("Slack bot token", "Slack mode", "JoggAI", "Redis eviction"):
        assert marks[name] == "✗", result.stdout
    assert marks["PUBLIC_URL"] == "✓"  # unset, and only JoggAI: polling is fine
    assert result.stdout.count("fix: ") == 6  # four failures and two warnings
    assert "App-Level Tokens" in result.stdout and "4 checks failed (✗), 2 warnings (!)" in result.stdout
    assert_no_secret(result.stdout + result.stderr, secrets_of(slack, jogg))


def test_missing_settings_are_failures_and_the_rest_is_still_checked(
    slack: FakeSlack, jogg: FakeJogg, redis_url: str, tmp_path: Path
) -> None:
    env = bot_env(slack, jogg, tmp_path, SLACK_BOT_TOKEN="", LOG_LEVEL="LOUD", REDIS_URL=redis_url)
    result = run_doctor(env, tmp_path)

    assert result.returncode == 2, result.stdout + result.stderr
    marks = statuses(result.stdout)
    assert marks["SLACK_BOT_TOKEN"] == "✗" and marks["LOG_LEVEL"] == "✗", result.stdout
    assert "api.slack.com/apps → your app → OAuth & Permissions" in result.stdout  # where to get it
    assert "must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL" in result.stdout
    # What does not need the missing token is checked all the same.
    assert marks["Slack"] == "✓" and "127.0.0.1 answers" in result.stdout
    assert marks["JoggAI"] == "✓" and marks["Redis"] == "✓" and marks["Redis eviction"] == "✓"
    assert "Slack bot token" not in marks and "Slack mode" not in marks
    assert slack.calls_to("auth.test") == []  # the stand-in token is never sent
    assert "Traceback" not in result.stderr
    assert_no_secret(result.stdout + result.stderr, secrets_of(slack, jogg))


def test_without_any_provider_key_each_provider_is_still_checked_for_reachability(
    slack: FakeSlack, jogg: FakeJogg, sync_api: FakeSync, redis_url: str, tmp_path: Path
) -> None:
    env = bot_env(
        slack,
        jogg,
        tmp_path,
        JOGG_API_KEY="",
        SYNC_API_URL=sync_api.base_url,
        LIPSYNCDEV_API_URL=f"http://127.0.0.1:{free_port()}/api",  # nothing listens there
        REDIS_URL=redis_url,
    )
    result = run_doctor(env, tmp_path)

    assert result.returncode == 2, result.stdout + result.stderr
    marks = statuses(result.stdout)
    assert marks["Provider keys"] == "✗" and "JOGG_API_KEY at app.jogg.ai" in result.stdout
    assert marks["JoggAI"] == "✓" and marks["sync.so"] == "✓" and marks["LipSync.dev"] == "✗"
    assert "cannot reach 127.0.0.1: the connection failed (Connection refused)" in result.stdout
    assert marks["Slack bot token"] == "✓" and marks["Redis"] == "✓"
    assert jogg.requests and all("x-api-key" not in r.headers for r in jogg.requests)  # no key to send


def test_settings_beyond_repair_are_reported_as_the_bot_reports_them(
    slack: FakeSlack, jogg: FakeJogg, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("PORT=not-a-port\n")
    env = bot_env(slack, jogg, tmp_path, PORT="")
    result = run_doctor(env, tmp_path)

    assert result.returncode == 2, result.stdout + result.stderr
    assert statuses(result.stdout)["PORT"] == "✗" and "Traceback" not in result.stderr


def test_help_names_the_command_and_doctor_help_checks_nothing(
    slack: FakeSlack, jogg: FakeJogg, tmp_path: Path
) -> None:
    env = bot_env(slack, jogg, tmp_path)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "bot", *args]
        return subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30)

    top, sub = run("--help"), run("doctor", "--help")
    assert top.returncode == 0 and "doctor" in top.stdout
    assert sub.returncode == 0 and "checklist" in sub.stdout
    assert run("doctor", "--verbose").returncode == 2
    assert slack.calls == [] and jogg.requests == []


def test_scrub_replaces_every_secret() -> None:
    assert doctor.scrub("a xoxb-1-abc b xoxb-1", ["xoxb-1", "xoxb-1-abc"]) == "a … b …"


# -- providers: which API version, concurrency, reachability ------------------------------------


def test_sync_without_its_concurrency_cap_warns(make_settings: MakeSettings, sync_api: FakeSync) -> None:
    checks, _ = diagnose(make_settings(sync_api_key=sync_api.api_key, sync_api_url=sync_api.base_url))

    assert checks["sync.so"].status is Status.OK
    concurrency = checks["sync.so concurrency"]
    assert concurrency.status is Status.WARN and "SYNC_MAX_CONCURRENT is not set" in concurrency.detail
    assert "Hobbyist 1" in concurrency.fix
    assert doctor.exit_code(list(checks.values())) == 0  # a warning only


def test_the_lipsyncdev_line_says_which_api_version_answered(make_settings: MakeSettings) -> None:
    with FakeLipSyncDev(versions=("b",)) as version_b:
        settings = make_settings(lipsyncdev_api_key=version_b.api_key, lipsyncdev_api_url=version_b.api_url)
        checks, _ = diagnose(settings)
        forced, _ = diagnose(
            make_settings(
                lipsyncdev_api_key=version_b.api_key,
                lipsyncdev_api_url=version_b.api_url,
                lipsyncdev_api_version="a",
            )
        )

    line = checks["LipSync.dev"]
    assert line.status is Status.OK
    assert line.detail == (
        "LIPSYNCDEV_API_KEY accepted · API version B (X-API-Key, /v1/lipsync/generate) answered at 127.0.0.1"
    )
    wrong = forced["LipSync.dev"]
    assert wrong.status is Status.FAIL and "LIPSYNCDEV_API_VERSION=b" in wrong.detail


def test_an_unreachable_provider_fails_saying_cannot_reach_it(make_settings: MakeSettings) -> None:
    checks, _ = diagnose(make_settings(jogg_api_url="http://api.jogg.invalid"))

    line = checks["JoggAI"]
    assert line.status is Status.FAIL
    assert line.detail.startswith("cannot reach JoggAI (api.jogg.invalid): its name does not resolve here")
    assert "JOGG_API_URL" in line.fix and "network" in line.fix
    assert checks["Redis"].status is Status.OK  # the rest is checked all the same
