"""The bot's Redis client: timeouts, retries, and commands packed by hiredis.

redis-py's asyncio connections pack every command in Python, one `encode` per argument; the sync ones
use hiredis (a dependency of ours). On the ack path (a job create is one script call with a dozen
fields) that packing was a tenth of the bot's CPU (bench/ack_latency.py), so the asyncio connections
here use hiredis too.
"""

from __future__ import annotations

from typing import Any

import hiredis
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import DataError


def connect(url: str) -> Redis:
    """A client for `url` (redis://, rediss:// or unix://). Connections open on first use."""
    client = Redis.from_url(
        url,
        socket_timeout=5,
        socket_connect_timeout=5,
        health_check_interval=30,
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=1), 3),
    )
    # The pool picked the class for the URL's scheme (TCP, TLS or unix socket): keep it, add the packer.
    pool = client.connection_pool
    pool.connection_class = type(
        f"Hiredis{pool.connection_class.__name__}", (HiredisPacking, pool.connection_class), {}
    )
    return client


class HiredisPacking:
    """Mixed into a redis.asyncio connection class: `pack_command` by hiredis (same bytes on the wire)."""

    def pack_command(self, *args: Any) -> list[bytes]:
        # As redis-py does: a command name with a space ("SCRIPT LOAD") goes as separate arguments.
        first = args[0]
        if isinstance(first, str):
            args = (*first.encode().split(), *args[1:])
        elif b" " in first:
            args = (*first.split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError as exc:  # redis-py raises DataError for values it cannot send
            raise DataError(str(exc)) from None
