"""The process the link check's container parser runs in: one for the whole bot process, so that a burst
of checks takes at most one core and never the event loop's interpreter lock (parsing in a thread slowed acks
under bursts: BENCHMARKS.md, "The link check before paying"), and a hostile file that keeps the parser busy
stalls nothing but later checks, which queue.

How a parse travels: the file's size and pieces go over a socket pair as a small binary header and the raw
bytes (nothing pickled on the way there), the parser process answers with the pickled `Probe`. One thread of
ours talks to it, one request at a time (blocking on the socket, which frees the interpreter lock), so any
event loop may ask and a cancelled check never leaves half a request on the socket. This replaced a
`ProcessPoolExecutor`, whose manager and feeder threads and pickled call items cost the bot's process about
as much CPU per parse as the rest of its part of the check (BENCHMARKS.md, "CPU per job").

A parser process that died (killed, out of memory) is noticed on the socket: that parse's duration is unknown
and the next parse starts another process. The parser process ends with the bot process, even a killed one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import multiprocessing
import os
import pickle
import socket
import struct
import threading
import time
from collections.abc import Sequence
from multiprocessing.process import BaseProcess

from bot.money.media_probe import Piece, Probe, probe

log = logging.getLogger(__name__)

_REQUEST = struct.Struct("!QI")  # the file's size, how many pieces follow
_PIECE = struct.Struct("!QQ")  # a piece's offset in the file and its length; its bytes follow the header
_REPLY = struct.Struct("!I")  # the length of the pickled Probe that follows
_UNKNOWN = Probe(None, None, frozenset(), (), ())


class _ParserGone(Exception):
    """The parser process ended (or was stopped) before it answered."""


class _Parser:
    """The parser process, our end of its socket, and the one thread that talks to it."""

    def __init__(self) -> None:
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="link-parser")
        self._process: BaseProcess | None = None
        self._socket: socket.socket | None = None
        self._stopped = False

    async def parse(self, size: int, pieces: Sequence[Piece]) -> Probe:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._thread, self._exchange, size, pieces)
        except RuntimeError:
            if not self._stopped:
                raise
            return _UNKNOWN  # the bot is stopping: the thread takes no more work
        except _ParserGone:
            if not self._stopped:
                log.warning("preflight: the parser process died; the duration is unknown")
            return _UNKNOWN

    def start(self) -> None:
        """Start the process now and load libmediainfo there (about half a second), not on a user's link."""
        self._thread.submit(self._warm)

    def stop(self) -> None:
        """End the process, at once even if it is parsing; parses waiting for it get no duration."""
        self._stopped = True
        if self._process is not None:
            self._process.kill()
        self._thread.submit(self._close)
        self._thread.shutdown(wait=False, cancel_futures=False)

    # -- in our thread ------------------------------------------------------------------------------------

    def _warm(self) -> None:
        with contextlib.suppress(_ParserGone):  # stopped already, or it died: the next parse starts another
            self._exchange(0, [])

    def _exchange(self, size: int, pieces: Sequence[Piece]) -> Probe:
        connection = self._connected()
        spans = b"".join(_PIECE.pack(at, len(data)) for at, data in pieces)
        try:
            connection.sendall(_REQUEST.pack(size, len(pieces)) + spans)
            for _, data in pieces:
                connection.sendall(data)
            (length,) = _REPLY.unpack(_receive(connection, _REPLY.size))
            answer: Probe = pickle.loads(_receive(connection, length))  # from our own child
        except (OSError, EOFError):
            self._close()  # the next parse starts another process
            raise _ParserGone from None
        return answer

    def _connected(self) -> socket.socket:
        if self._stopped:
            raise _ParserGone
        if self._socket is None:
            spawn = multiprocessing.get_context("spawn")  # no fork of a process with threads and a loop
            ours, theirs = socket.socketpair()
            self._process = spawn.Process(
                target=serve, args=(theirs, os.getpid()), name="link-check-parser", daemon=True
            )
            self._process.start()
            theirs.close()
            self._socket = ours
        return self._socket

    def _close(self) -> None:
        if self._socket is not None:
            self._socket.close()  # the process reads the end and exits
            self._socket = None
        if self._process is not None:
            self._process.join(timeout=1)  # reaped: no zombie left behind
            self._process = None


def _receive(connection: socket.socket, length: int) -> memoryview:
    """Exactly `length` bytes from the socket (EOFError if it ends first)."""
    buffer = bytearray(length)
    view = memoryview(buffer)
    received = 0
    while received < length:
        count = connection.recv_into(view[received:])
        if count == 0:
            raise EOFError
        received += count
    return view


# One for the whole bot process; started on first use (or by start_parser), replaced after stop_parser.
_parser: _Parser | None = None
_parser_lock = threading.Lock()  # event loops in other threads (the tests' bots) share it


def _current() -> _Parser:
    global _parser
    with _parser_lock:
        if _parser is None:
            _parser = _Parser()
        return _parser


def start_parser() -> None:
    """Start the parser process now (it takes about half a second), not on the first user's link."""
    _current().start()


def stop_parser() -> None:
    """Stop the parser process (the bot is stopping); a later check would start another."""
    global _parser
    with _parser_lock:
        stopping, _parser = _parser, None
    if stopping is not None:
        stopping.stop()


async def parsed(size: int, pieces: Sequence[Piece]) -> Probe:
    """What the parser makes of a file of `size` bytes of which we have `pieces` (offset, bytes)."""
    return await _current().parse(size, pieces)


# -- in the parser process ----------------------------------------------------------------------------


def serve(connection: socket.socket, parent: int) -> None:
    """The parser process: answer requests until the socket ends."""
    _follow_parent(parent)
    with connection:
        while True:
            try:
                size, count = _REQUEST.unpack(_receive(connection, _REQUEST.size))
                spans = [_PIECE.unpack(_receive(connection, _PIECE.size)) for _ in range(count)]
                pieces = [(at, _receive(connection, length)) for at, length in spans]
            except (EOFError, OSError):
                return
            answer = pickle.dumps(probe(size, pieces))
            connection.sendall(_REPLY.pack(len(answer)) + answer)


def _follow_parent(parent: int) -> None:
    """End when the bot process is gone (a kill -9 leaves no orphan behind)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=watch, name="follow-parent", daemon=True).start()
