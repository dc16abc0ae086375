"""The container deployment: what can be checked without a Docker engine (none runs on the CI machine).

compose.yaml must give the bot a Redis configured for jobs (RELIABILITY.md, "What Redis must be"), and the
image must run as a non-root user with a health check that really tells a healthy bot from a dead one.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any

import yaml

from bot.app import HEALTH_PATH
from tests.harness import REPO, BotThread, free_port

DOCKERFILE = (REPO / "Dockerfile").read_text()


def instructions(name: str) -> list[str]:
    """The arguments of every `name` instruction in the Dockerfile (continuation lines joined)."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [line.split(None, 1)[1] for line in joined.splitlines() if line.upper().startswith(name + " ")]


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((REPO / "compose.yaml").read_text()))


def test_compose_runs_the_bot_on_a_redis_configured_for_jobs() -> None:
    services = compose()["services"]
    redis_args = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_args and "--appendfsync everysec" in redis_args
    assert "--maxmemory-policy noeviction" in redis_args and "--hash-max-listpack-value 512" in redis_args
    assert services["redis"]["image"].startswith("redis:7")
    volume = services["redis"]["volumes"][0]
    assert volume.endswith(":/data") and volume.split(":")[0] in compose()["volumes"]  # survives restarts
    bot = services["bot"]
    assert bot["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    assert bot["depends_on"]["redis"]["condition"] == "service_healthy"
    assert bot["env_file"] == ".env" and bot["build"] == "."


def test_the_image_is_pinned_runs_as_a_user_and_keeps_secrets_out() -> None:
    [base] = instructions("FROM")
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base), base  # a patch release, not a moving tag
    [user] = instructions("USER")
    assert user not in ("root", "0")
    [command] = instructions("CMD")
    script = json.loads(command)[0]
    assert (
        script == "lipsync-bot" and 'lipsync-bot = "bot.main:main"' in (REPO / "pyproject.toml").read_text()
    )
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
