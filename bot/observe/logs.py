"""Logging: plain text by default, or one JSON object per line (LOG_FORMAT=json) for log pipelines.

While a step works on a job (bot/lanes/worker.py), `job_context` names the job, its provider, workspace and
channel; every record logged meanwhile carries them, as fields in JSON and nowhere else in text (the
messages already start with "job <id>:"). A traceback is kept to one line in JSON, so one record is one line.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator
from contextvars import ContextVar

from bot.jobs.model import Job

# Set per asyncio task (each step runs in its own), so concurrent steps never mix their fields.
_context: ContextVar[dict[str, str] | None] = ContextVar("job_context", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
QUIET = ("apscheduler", "httpx")  # they log every tick and every request at INFO


@contextlib.contextmanager
def job_context(job: Job) -> Iterator[None]:
    fields = {
        "job_id": job.id,
        "provider": job.order.provider,
        "team": job.identity.team,
        "channel": job.identity.channel,
    }
    token = _context.set({k: v for k, v in fields.items() if v})
    try:
        yield
    finally:
        _context.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, the job's fields, and an
    `error` line when an exception is attached."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **(_context.get() or {}),
        }
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            entry["error"] = f"{type(exc).__name__}: {exc}"
            entry["traceback"] = self.formatException(record.exc_info)  # escaped by json: still one line
        return json.dumps(entry, ensure_ascii=False, default=str)


def setup(level: str, fmt: str) -> None:
    """Configure the root logger once, at start: `fmt` is "text" or "json"."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    for noisy in QUIET:
        logging.getLogger(noisy).setLevel(logging.WARNING)
