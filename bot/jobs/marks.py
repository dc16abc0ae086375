"""Marks: a thing done once across processes and restarts (a dedupe marker), and groups of jobs whose
last member to end posts what follows, once.

Every key is named in bot.jobs.keys.
"""

from __future__ import annotations

from redis.asyncio import Redis

from bot.jobs.keys import group_key, group_owner_key, seen_key
from bot.jobs.lanes import FINISHED_JOB_TTL_SECONDS
from bot.jobs.scripts import text

DEDUPE_TTL_SECONDS = 24 * 3600  # Slack retries within minutes; a day is ample
# A slash command's trigger_id is unique per invocation and only ever redelivered within seconds (a proxy
# retry, an envelope handed to two Socket Mode connections): an hour is ample, and the marker then goes
# instead of staying a day beside every job.
COMMAND_DEDUPE_TTL_SECONDS = 3600

# KEYS: group hash, group owner. ARGV: job id, what it ended with, ttl_s, group size. Records the member
# and returns {owner or false, id, value, id, value...}: the owner is the first member to see the group
# complete (it posts what follows, once; a retry of its step finds itself the owner again).
_GROUP_DONE = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[4]) then
  redis.call('SET', KEYS[2], ARGV[1], 'NX', 'EX', tonumber(ARGV[3]))
end
local out = {redis.call('GET', KEYS[2])}
for _, v in ipairs(redis.call('HGETALL', KEYS[1])) do table.insert(out, v) end
return out
"""


class Marks:
    """Once-marks and groups' outcomes."""

    def __init__(self, *, redis: Redis) -> None:
        self.redis = redis
        self._group_done = redis.register_script(_GROUP_DONE)

    async def mark_once(self, key: str, ttl_s: int = DEDUPE_TTL_SECONDS) -> bool:
        """True the first time `key` is marked (across processes and restarts), False afterwards."""
        return bool(await self.redis.set(seen_key(key), 1, nx=True, ex=ttl_s))

    async def unmark(self, key: str) -> None:
        """Forget a `mark_once` mark, so the next `mark_once` is a first time again."""
        await self.redis.delete(seen_key(key))

    async def group_done(self, group: str, job_id: str, value: str, size: int) -> tuple[dict[str, str], str]:
        """Record a job of a group (the jobs from one Slack message, or one compare) as ended with `value`.
        Returns every member's value so far, and the owner: the first job that saw the group complete
        ("" while it is not)."""
        raw = await self._group_done(
            keys=[group_key(group), group_owner_key(group)],
            args=[job_id, value, FINISHED_JOB_TTL_SECONDS, size],
        )
        owner, flat = raw[0], raw[1:]
        entries = {text(k): text(v) for k, v in zip(flat[0::2], flat[1::2], strict=True)}
        return entries, text(owner) if owner else ""
