"""The container deployment: what can be checked without a Docker engine (none runs on the CI machine).

compose.yaml must give the bot a Redis configured for jobs (RELIABILITY.md, "What Redis must be"), and the
image must run as a non-root user (by uid, which runAsNonRoot can check) that owns its data directory
however an env file sets it, with a health check that really tells a ready bot from one that is not, and
publish nothing but PORT (/metrics is for operators).
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shlex
import subprocess
import sys
from typing import Any

import yaml

from bot.programs.app import HEALTH_PATH
from tests.fakes.slack_api import FakeSlack
from tests.harness import REPO, BotThread, free_port

DOCKERFILE = (REPO / "Dockerfile").read_text()


def instructions(name: str) -> list[str]:
    """The arguments of every `name` instruction in the Dockerfile (continuation lines joined)."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [line.split(None, 1)[1] for line in joined.splitlines() if line.upper().startswith(name + " ")]


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((REPO / "compose.yaml").read_text()))


def image_env() -> dict[str, str]:
    """The image's ENV settings (KEY=value pairs)."""
    pairs = [shlex.split(line) for line in instructions("ENV")]
    return dict(pair.split("=", 1) for line in pairs for pair in line)


def env_example() -> dict[str, str]:
    """What `docker run --env-file .env` sets from a .env copied from .env.example: its uncommented lines."""
    lines = (REPO / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))


def user_uid() -> str:
    [user] = instructions("USER")
    return user.split(":")[0]


def test_compose_runs_the_bot_on_a_redis_configured_for_jobs() -> None:
    services = compose()["services"]
    redis_args = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_args and "--appendfsync everysec" in redis_args
    assert "--maxmemory-policy noeviction" in redis_args and "--hash-max-listpack-value 512" in redis_args
    # A patch release, so a pull does not change the server under the jobs.
    image = services["redis"]["image"]
    assert re.fullmatch(r"redis:7\.\d+\.\d+(-alpine)?", image), image
    # noeviction only refuses writes at a memory limit; without one Redis grows until the host kills it.
    assert re.search(r"--maxmemory \d+[kmg]b\b", redis_args), redis_args
    volume = services["redis"]["volumes"][0]
    assert volume.endswith(":/data") and volume.split(":")[0] in compose()["volumes"]  # survives restarts
    bot = services["bot"]
    assert bot["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    assert bot["depends_on"]["redis"]["condition"] == "service_healthy"
    assert bot["env_file"] == ".env" and bot["build"] == "."


def test_the_image_is_pinned_runs_as_a_user_and_keeps_secrets_out() -> None:
    [base] = instructions("FROM")
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base), base  # a patch release, not a moving tag
    # By number (a name cannot be checked by Kubernetes' runAsNonRoot), and not root's.
    [user] = instructions("USER")
    assert re.fullmatch(r"\d+(:\d+)?", user), user
    assert user_uid() != "0" and user.split(":")[-1] != "0"
    [command] = instructions("CMD")
    script = json.loads(command)[0]
    entry_point = 'lipsync-bot = "bot.programs.main:main"'
    assert script == "lipsync-bot" and entry_point in (REPO / "pyproject.toml").read_text()
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".env", ".venv", "data", ".git"} <= set(ignored)


def test_the_health_check_passes_for_a_running_bot_and_fails_without_one(
    start_bot: Any,
) -> None:
    [check] = instructions("HEALTHCHECK")
    argv = json.loads(check.split("CMD", 1)[1])
    assert argv[0] == "python" and HEALTH_PATH in argv[-1]
    bot: BotThread = start_bot()
    env = {**os.environ, "PORT": str(bot.bot.port)}
    healthy = subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True, timeout=30)
    assert healthy.returncode == 0, healthy.stderr
    bot.stop()
    dead = subprocess.run(
        [sys.executable, *argv[1:]],
        env={**os.environ, "PORT": str(free_port())},
        capture_output=True,
        timeout=30,
    )
    assert dead.returncode != 0


def test_the_data_directory_is_the_bot_users_however_an_env_file_sets_it() -> None:
    # `docker run --env-file .env` with .env.example's DATA_DIR (relative to the image's WORKDIR) must give
    # the embedded Redis a directory the bot's uid owns, as the image's own DATA_DIR is.
    workdir = instructions("WORKDIR")[-1]
    image_dir = image_env()["DATA_DIR"]
    from_env_file = posixpath.normpath(posixpath.join(workdir, env_example().get("DATA_DIR", "./data")))
    setup = " && ".join(instructions("RUN"))
    uid = user_uid()
    assert re.search(rf"chown {uid}(:\d+)? {re.escape(image_dir)}( |$)", setup), setup
    assert from_env_file == image_dir or f"ln -s {image_dir} {from_env_file}" in setup, setup
    # Dependencies install at the versions CI tested.
    assert "pip install -c constraints.txt ." in setup
    assert any("constraints.txt" in copy.split() for copy in instructions("COPY"))


def test_only_port_is_published_and_metrics_stay_inside() -> None:
    bot = compose()["services"]["bot"]
    assert bot["ports"] == ["3000:3000"]
    assert instructions("EXPOSE") == [image_env()["PORT"]]
    metrics_port = str(bot["environment"].get("METRICS_PORT", ""))
    assert metrics_port and all(metrics_port not in str(port) for port in bot["ports"])


def test_the_health_check_fails_for_a_socket_mode_bot_that_never_reached_slack(
    start_bot: Any, slack: FakeSlack
) -> None:
    [check] = instructions("HEALTHCHECK")
    argv = json.loads(check.split("CMD", 1)[1])
    slack.stop()  # Slack unreachable from the start
    bot: BotThread = start_bot(slack_app_token=slack.app_token, slack_signing_secret=None)
    env = {**os.environ, "PORT": str(bot.bot.port)}
    result = subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True, timeout=30)
    assert result.returncode != 0 and b"503" in result.stderr
