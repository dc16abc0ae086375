"""The process the link check's container parser runs in: one for the whole bot process, so that a burst
of checks takes at most one core and never the event loop's interpreter lock (parsing in a thread slowed acks
under bursts: BENCHMARKS.md, "The link check before paying"), and a hostile file that keeps the parser busy
stalls nothing but later checks, which queue.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Sequence

from bot.money.media_probe import Probe, probe

log = logging.getLogger(__name__)

# One process parses for the whole bot process: a burst of checks then takes at most one core and never the
# event loop's interpreter lock (parsing in a thread slowed acks under bursts: BENCHMARKS.md, "The link check
# before paying"), and queues instead. Started on first use; a worker that died is replaced.
_parser: concurrent.futures.ProcessPoolExecutor | None = None


def _parser_pool() -> concurrent.futures.ProcessPoolExecutor:
    global _parser
    if _parser is None:
        spawn = multiprocessing.get_context("spawn")  # no fork of a process with threads and a loop
        _parser = concurrent.futures.ProcessPoolExecutor(
            max_workers=1, mp_context=spawn, initializer=_follow_parent, initargs=(os.getpid(),)
        )
    return _parser


def _follow_parent(parent: int) -> None:
    """In the parser process: end when the bot process is gone (a kill -9 leaves no orphan behind)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=watch, name="follow-parent", daemon=True).start()


def start_parser() -> None:
    """Start the parser process now (it takes about half a second), not on the first user's link."""
    _parser_pool().submit(probe, 0, [])


def stop_parser() -> None:
    """Stop the parser process (the bot is stopping); a later check would start another."""
    global _parser
    if _parser is not None:
        _parser.shutdown(wait=False, cancel_futures=True)
        _parser = None


async def parsed(size: int, pieces: Sequence[tuple[int, bytes]]) -> Probe:
    global _parser
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(_parser_pool(), probe, size, list(pieces))
    except concurrent.futures.BrokenExecutor:
        _parser = None  # the parser process died (killed, out of memory): the next check starts another
        log.warning("preflight: the parser process died; the duration is unknown")
        return Probe(None, None, frozenset(), (), ())
