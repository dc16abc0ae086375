"""Starting the bot without its settings: one clear message, a non-zero exit, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_bot(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), **env}
    return subprocess.run(
        [sys.executable, "-m", "bot"], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_missing_settings_are_named_with_where_to_get_them(tmp_path: Path) -> None:
    result = run_bot({}, tmp_path)
    assert result.returncode == 2
    # The default path is Socket Mode (manifest.yml turns it on): the app token is what is asked for.
    for name in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN"):
        assert f"{name} is not set" in result.stderr
    # Any one provider key is enough, and each is named with where to get it.
    assert "No lip-sync provider is set up: set at least one of these keys." in result.stderr
    for key, where in (
        ("JOGG_API_KEY", "app.jogg.ai"),
        ("SYNC_API_KEY", "sync.so"),
        ("LIPSYNCDEV_API_KEY", "lipsync.dev"),
    ):
        assert f"{key}: get it at {where}" in result.stderr
    assert "App-Level Tokens" in result.stderr and "connections:write" in result.stderr
    assert "SLACK_SIGNING_SECRET is not set" not in result.stderr  # named only as the HTTP-mode option
    assert "api.slack.com/apps" in result.stderr and "Traceback" not in result.stderr


def test_socket_mode_does_not_need_a_signing_secret(tmp_path: Path) -> None:
    result = run_bot({"SLACK_APP_TOKEN": "xapp-1-abc"}, tmp_path)
    assert result.returncode == 2
    assert "SLACK_SIGNING_SECRET" not in result.stderr
    assert "SLACK_BOT_TOKEN" in result.stderr and "JOGG_API_KEY" in result.stderr


def test_http_mode_does_not_need_an_app_token(tmp_path: Path) -> None:
    result = run_bot({"SLACK_SIGNING_SECRET": "s"}, tmp_path)
    assert result.returncode == 2
    assert "SLACK_APP_TOKEN" not in result.stderr
    assert "SLACK_BOT_TOKEN" in result.stderr and "JOGG_API_KEY" in result.stderr


def test_settings_come_from_a_dotenv_file_and_wrong_tokens_are_named(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "SLACK_BOT_TOKEN=xoxp-a-user-token\nSLACK_SIGNING_SECRET=s\nJOGG_API_KEY=k\n"
    )
    result = run_bot({}, tmp_path)
    assert result.returncode == 2
    assert "SLACK_BOT_TOKEN" in result.stderr and "xoxb-" in result.stderr
    assert "xoxp-a-user-token" not in result.stderr  # a secret is never echoed
    assert "JOGG_API_KEY" not in result.stderr and "Traceback" not in result.stderr


def test_one_provider_key_is_enough_and_a_bad_public_url_is_named(tmp_path: Path) -> None:
    base = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s", "SYNC_API_KEY": "k"}
    result = run_bot({**base, "PUBLIC_URL": "http://bot.example.com", "PORT": "-1"}, tmp_path)
    assert result.returncode == 2
    assert "provider" not in result.stderr.lower()  # SYNC_API_KEY alone is enough
    assert "PUBLIC_URL: must be an https:// address" in result.stderr
    wrong_default = run_bot({**base, "DEFAULT_PROVIDER": "jogg"}, tmp_path)
    assert "DEFAULT_PROVIDER is jogg, but JOGG_API_KEY is not set" in wrong_default.stderr
    assert "Traceback" not in result.stderr + wrong_default.stderr


def test_env_example_documents_every_setting() -> None:
    from bot.settings import Settings

    example = (REPO / ".env.example").read_text()
    for name in Settings.model_fields:
        assert f"\n{name.upper()}=" in example, f"{name.upper()} is missing from .env.example"


def test_a_filled_in_env_example_starts_with_the_documented_defaults(tmp_path: Path) -> None:
    from bot.providers.registry import REGISTRY

    env_file = tmp_path / ".env"
    env_file.write_text(
        (REPO / ".env.example")
        .read_text()
        .replace("SLACK_BOT_TOKEN=\n", "SLACK_BOT_TOKEN=xoxb-1\n")
        .replace("JOGG_API_KEY=\n", "JOGG_API_KEY=k\n")
        .replace("SLACK_APP_TOKEN=\n", "SLACK_APP_TOKEN=xapp-1\n")
    )
    settings = REGISTRY.load_settings(_env_file=env_file)
    assert settings.socket_mode and settings.redis_url in (None, "")  # the default path
    assert (
        settings.poll_interval_seconds == 5
        and settings.poll_max_interval_seconds == 30
        and settings.job_timeout_seconds == 1800
    )
    assert settings.slack_api_url == "https://slack.com/api/" and settings.port == 3000
    # Money: links checked, a month of cache, no question asked, warned below 10 credits (where set).
    assert settings.preflight == "on" and settings.cache_days == 30 and settings.confirm_above == ""
    assert settings.balance_warn_below == "credits=10" and settings.quote_expires_minutes == 15


def test_malformed_values_are_named_without_a_traceback(tmp_path: Path) -> None:
    env = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s", "JOGG_API_KEY": "k"}
    result = run_bot({**env, "REDIS_URL": "localhost:6379", "LOG_LEVEL": "verbose"}, tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "REDIS_URL" in result.stderr and "redis://" in result.stderr
    assert "LOG_LEVEL" in result.stderr and "DEBUG" in result.stderr
    money = run_bot(
        {
            **env,
            "CONFIRM_ABOVE": "credits",
            "PREFLIGHT_ALLOWED_NETWORKS": "10.0.0.0/8, the office",
            "PREFLIGHT": "maybe",
        },
        tmp_path,
    )
    assert money.returncode == 2 and "Traceback" not in money.stderr
    assert "CONFIRM_ABOVE: 'credits' is not unit=amount, e.g. credits=2,USD=5" in money.stderr
    assert "PREFLIGHT_ALLOWED_NETWORKS: 'the office' is not a network" in money.stderr
    assert "PREFLIGHT:" in money.stderr


def test_a_port_in_use_is_named_without_a_traceback(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s", "JOGG_API_KEY": "k"}
        env |= {"PORT": str(port), "DATA_DIR": str(tmp_path / "data"), "SLACK_API_URL": "http://127.0.0.1:9/"}
        result = run_bot(env, tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"port {port}" in result.stderr and "PORT" in result.stderr
