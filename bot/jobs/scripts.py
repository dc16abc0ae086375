"""What the store's parts share: Redis time inside a Lua script, scripts batched per event-loop turn, and
reading Redis's replies as text.

Each part of the store (lanes, records, inbox, caches, indexes, marks) keeps its own scripts beside their
KEYS/ARGV contracts; time in them comes from Redis (`TIME`), never from the processes' clocks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

# Sets `now`: Redis time in ms. Put in front of a script that needs it.
NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""


class Batched:
    """A script whose calls made in the same turn of the event loop go to Redis in one pipeline (a lone
    call goes as is). Each caller still gets its own result or error. Pipelined, a call costs the bot
    about a third of the CPU of a call of its own (bench/poll_sweep.py)."""

    def __init__(self, *, redis: Redis, script: AsyncScript) -> None:
        self._redis, self._script = redis, script
        self._calls: list[tuple[list[str], list[str | int], asyncio.Future[Any]]] = []
        self._sending: set[asyncio.Task[None]] = set()

    async def __call__(self, keys: list[str], args: list[str | int]) -> Any:
        loop = asyncio.get_running_loop()
        result: asyncio.Future[Any] = loop.create_future()
        self._calls.append((keys, args, result))
        if len(self._calls) == 1:
            loop.call_soon(self._send_all)
        return await result

    def _send_all(self) -> None:
        task = asyncio.ensure_future(self._send(self._calls))
        self._calls = []
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, calls: list[tuple[list[str], list[str | int], asyncio.Future[Any]]]) -> None:
        results: list[Any]
        try:
            if len(calls) == 1:
                results = [await self._script(keys=calls[0][0], args=calls[0][1])]
            else:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for keys, args, _ in calls:
                        pipe.evalsha(self._script.sha, len(keys), *keys, *args)
                    results = await pipe.execute(raise_on_error=False)
        except Exception as exc:  # Redis unreachable: every caller hears it
            results = [exc] * len(calls)
        for index, (keys, args, _) in enumerate(calls):
            if isinstance(results[index], NoScriptError):  # Redis restarted: nothing ran, load and run
                try:
                    results[index] = await self._script(keys=keys, args=args)
                except Exception as exc:
                    results[index] = exc
        for (_, _, future), value in zip(calls, results, strict=True):
            if future.done():  # the caller was cancelled
                continue
            if isinstance(value, Exception):
                future.set_exception(value)
            else:
                future.set_result(value)


def flatten(fields: Mapping[str, object]) -> list[str]:
    """Field/value pairs as a script's ARGV."""
    return [str(x) for pair in fields.items() for x in pair]


def named(script: str, names: Mapping[str, str]) -> str:
    """A Lua script with each placeholder (an upper-case word, in the order given) replaced by its value:
    the hash's field names and the states' values come from bot.jobs.codec and bot.jobs.model, never
    spelled twice."""
    for placeholder, value in names.items():
        script = script.replace(placeholder, value)
    return script


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def decode(raw: Mapping[Any, Any]) -> dict[str, str]:
    return {text(k): text(v) for k, v in raw.items()}
