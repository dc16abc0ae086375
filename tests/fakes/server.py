"""A real aiohttp server running in a background thread, the base of every fake.

Tests talk to the fakes over real sockets so that the bot's HTTP clients, retries, timeouts and
streaming are exercised exactly as in production; only the base URLs differ.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Generic, Self, TypeVar

from aiohttp import web

T = TypeVar("T")
F = TypeVar("F")

# Large enough for any Web API body; big uploads are read as streams and never hit this limit.
_MAX_BUFFERED_BODY = 16 * 1024 * 1024


def wait_until(
    predicate: Callable[[], T | None],
    timeout: float = 10,
    interval: float = 0.02,
    message: str = "",
) -> T:
    """Poll `predicate` until it returns something truthy and return that value.

    Raises AssertionError naming the predicate and its last value, so a failing test says what it
    was waiting for instead of just timing out.
    """
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            what = message or getattr(predicate, "__name__", repr(predicate))
            raise AssertionError(f"condition not met within {timeout}s: {what} (last value: {last!r})")
        time.sleep(interval)


def lower_headers(request: web.Request) -> dict[str, str]:
    """Request headers as a plain dict with lower-cased names, so tests can look them up simply."""
    return {name.lower(): value for name, value in request.headers.items()}


def client_gone(request: web.Request) -> bool:
    """True when the client already closed the connection (e.g. it timed out while we slept)."""
    transport = request.transport
    return transport is None or transport.is_closing()


class BackgroundServer:
    """Runs an aiohttp Application on 127.0.0.1:<ephemeral port> in a daemon thread.

    Subclasses register handlers in `routes(app)`. Handlers run on the server's own event loop, so
    `await asyncio.sleep(...)` delays one request without blocking the others. State recorded by
    handlers must be mutated under `self.lock`, because tests read it from their own thread.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None

    # -- hooks ---------------------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        """Override to add routes to the application."""

    async def on_shutdown(self, app: web.Application) -> None:
        """Override to close long-lived connections (websockets) so stop() is quick."""

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self, timeout: float = 10) -> Self:
        if self._thread is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        self._ready.clear()
        self._startup_error = None
        self._thread = threading.Thread(target=self._serve, name=f"{type(self).__name__}-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"{type(self).__name__} did not start within {timeout}s")
        if self._startup_error is not None:
            raise RuntimeError(f"{type(self).__name__} failed to start") from self._startup_error
        return self

    def stop(self, timeout: float = 10) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._thread = None
        self._loop = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- cross-thread helpers --------------------------------------------------------------------

    def run_coroutine(self, factory: Callable[[], Awaitable[T]], timeout: float = 10) -> T:
        """Run a coroutine on the server loop from a test thread and wait for its result.

        Never call this from a handler: the loop would wait on itself.
        """
        if self._loop is None:
            raise RuntimeError(f"{type(self).__name__} is not started")

        async def run() -> T:
            return await factory()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    # -- internals -----------------------------------------------------------------------------

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(self._setup())
        except BaseException as exc:
            self._startup_error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            if self._runner is not None:
                loop.run_until_complete(self._runner.cleanup())
            _cancel_leftover_tasks(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _setup(self) -> None:
        app = web.Application(client_max_size=_MAX_BUFFERED_BODY)
        app.on_shutdown.append(self.on_shutdown)
        self.routes(app)
        # A short shutdown timeout: a test that leaves a delayed request in flight must not make
        # stop() hang for aiohttp's default 60 s.
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        self._port = int(runner.addresses[0][1])


def _cancel_leftover_tasks(loop: asyncio.AbstractEventLoop) -> None:
    # Handlers still sleeping on an injected delay outlive the runner's short shutdown timeout;
    # cancel them so stop() leaves no "Task was destroyed but it is pending" noise.
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


class FaultQueue(Generic[F]):
    """Per-key FIFO of injected faults, consumed one per matching request. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, deque[F]] = defaultdict(deque)

    def push(self, key: str, fault: F) -> None:
        with self._lock:
            self._queues[key].append(fault)

    def pop(self, key: str) -> F | None:
        with self._lock:
            queue = self._queues.get(key)
            return queue.popleft() if queue else None

    def pending(self, key: str) -> int:
        with self._lock:
            return len(self._queues.get(key, ()))

    def clear(self) -> None:
        with self._lock:
            self._queues.clear()
