"""The result cache's entries (step 2 of the gate, bot/lanes/gate.py): a job's identity by its inputs
(`cache_key`), a result as it is filed (`result_entry`, compact: it is kept CACHE_DAYS), an entry read back
(`read_entry`), and the answer an earlier result gives a job (`answer_from`, a `Cached`). No I/O here: the
gate reads and files the entries.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

from bot.jobs.decisions import Decision, finish
from bot.jobs.model import Job, Status

# A cached result as stored: a JSON list of these, in this order, where the cover link is the length it
# shares with the result link, then the rest of it. Entries written before were JSON objects with the names
# (and the whole cover link); both are read.
_CACHED_FIELDS = ("job", "result_url", "cover_url", "duration_s", "cost_unit", "task_id", "made_ms")
_STORED_FIELDS = ("job", "result_url", "shared", "cover_url", "duration_s", "cost_unit", "task_id", "made_ms")


@dataclass(frozen=True)
class Cached:
    """An earlier result answers this job, at no cost."""

    earlier: Mapping[str, str]  # the result-cache entry, by name (`read_entry`)

    def decision(self, job: Job) -> Decision:
        """End the job with the earlier result."""
        earlier, result = self.earlier, job.result
        result.url, result.cover_url = earlier["result_url"], earlier["cover_url"]
        result.duration_s = earlier["duration_s"] or None
        result.cost, result.cost_unit = "0", job.money.quote_unit or earlier["cost_unit"]
        job.money.cached_from = earlier["job"]
        job.money.cached_ms = int(earlier["made_ms"]) if earlier["made_ms"].isdigit() else 0
        job.progress.task_id = earlier["task_id"]
        return finish(job, Status.SUCCEEDED)


def cache_key(job: Job, video: str, audio: str) -> str:
    """The identity of the job's result: the same inputs on the same provider with the same options."""
    identity = "\n".join((job.order.provider, job.order.model, job.inputs.playback, video, audio))
    return hashlib.sha256(identity.encode()).hexdigest()


def result_entry(job: Job, now_ms: int) -> str:
    """The job's result as it is filed under its `cache_key`."""
    result = job.result
    shared = _shared_length(result.url, result.cover_url)
    cover = [shared, result.cover_url[shared:]]  # providers' cover links mostly repeat the result's path
    payload = [
        job.id,
        result.url,
        *cover,
        result.duration_s or "",
        result.cost_unit,
        job.progress.task_id,
        now_ms,
    ]
    return json.dumps(payload, separators=(",", ":"))


def read_entry(raw: str) -> dict[str, str] | None:
    """A result-cache entry by name; None when it is unreadable or has no result link."""
    try:
        stored = json.loads(raw)
    except ValueError:
        return None
    if isinstance(stored, list):
        stored = dict(zip(_STORED_FIELDS, stored))  # noqa: B905 (an entry may be shorter)
    if not isinstance(stored, dict) or not stored.get("result_url"):
        return None
    read = {name: str(stored.get(name) or "") for name in _CACHED_FIELDS}
    shared = stored.get("shared")
    if isinstance(shared, int) and read["cover_url"]:
        read["cover_url"] = read["result_url"][:shared] + read["cover_url"]
    return read


def answer_from(earlier: Mapping[str, str]) -> Cached:
    """The answer the earlier result `earlier` (an entry read back) gives a job, at no cost."""
    return Cached(earlier)


def _shared_length(first: str, second: str) -> int:
    """How many characters the two strings share at their start."""
    return next(
        (i for i, (a, b) in enumerate(zip(first, second, strict=False)) if a != b),
        min(len(first), len(second)),
    )
