"""The bot's Redis client packs commands with hiredis: the same bytes as redis-py, against a real Redis."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from bot import redis_client
from bot.redis_client import HiredisPacking

ARGUMENTS = [
    ("SET", "k", "v"),
    ("SCRIPT LOAD", "return 1"),  # a two-word command name goes as two arguments
    (b"CLIENT SETINFO", b"LIB-NAME", b"x"),
    ("HSET", "{lip}:job:1", "user", "Ü😀\r\n$*", "timeout_s", 1800, "ratio", 0.25, "raw", b"\x00\xff"),
    ("EVALSHA", "a" * 40, 3, *("x" * 100_000 for _ in range(3))),  # past redis-py's chunking cut-off
]


class HiredisConnection(HiredisPacking, Connection):
    pass


@pytest.mark.parametrize("args", ARGUMENTS)
def test_commands_are_packed_as_redis_py_packs_them(args: tuple[object, ...]) -> None:
    ours = b"".join(HiredisConnection().pack_command(*args))
    theirs = b"".join(bytes(chunk) for chunk in Connection().pack_command(*args))
    assert ours == theirs


def test_a_value_redis_cannot_take_is_refused_as_redis_py_does() -> None:
    with pytest.raises(DataError):
        HiredisConnection().pack_command("SET", "k", None)


def test_values_round_trip_through_a_real_redis(redis_url: str) -> None:
    async def round_trip() -> tuple[dict[bytes, bytes], list[object]]:
        client = redis_client.connect(redis_url)
        try:
            value = {"text": "Ü😀 <&> \r\n", "number": "1800", "big": "y" * 200_000}
            await client.hset("{lip}:test", mapping=value)
            async with client.pipeline(transaction=False) as pipe:
                pipe.set("{lip}:a", 1).incrbyfloat("{lip}:a", 0.5).get("{lip}:a")
                return await client.hgetall("{lip}:test"), await pipe.execute()
        finally:
            await client.aclose()

    stored, piped = asyncio.run(round_trip())
    assert stored == {b"text": "Ü😀 <&> \r\n".encode(), b"number": b"1800", b"big": b"y" * 200_000}
    assert piped == [True, 1.5, b"1.5"]
