"""A real aiohttp server running in a background thread, the base of every fake.

Tests talk to the fakes over real sockets so that the bot's HTTP clients, retries, timeouts and
streaming are exercised exactly as in production; only the base URLs differ.

The second half is what the provider stand-ins (JoggAI, sync.so, LipSync.dev) share: `ProviderFake` (request
records, injected faults with "delay"/"late"/`after`), a per-minute `SlidingWindow`, body helpers
(`json_body`, `consume_body`, `drain`) and the storage bucket's answers to presigned uploads (`refuse_put`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Generic, NamedTuple, Protocol, Self, TypeVar

from aiohttp import web

T = TypeVar("T")
F = TypeVar("F")

# Large enough for any Web API body; big uploads are read as streams and never hit this limit.
_MAX_BUFFERED_BODY = 16 * 1024 * 1024

# How much of a streamed body (an upload, a download) is read at a time.
CHUNK_SIZE = 64 * 1024

# A provider fake's endpoint handler: the request and its JSON body (None if not a POST or not JSON).
Handler = Callable[[web.Request, Any], Awaitable[web.Response]]


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

    # Where it listens: any loopback address (127.0.0.2 serves as "another host"), any port (0: a free one).
    bind_host = "127.0.0.1"
    bind_port = 0

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
        return f"http://{self.bind_host}:{self.port}"

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
        site = web.TCPSite(runner, self.bind_host, self.bind_port)
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


# -- shared by the provider stand-ins (JoggAI, sync.so, LipSync.dev) -----------------------------


class RecordedRequest(NamedTuple):
    """One request as a provider fake saw it (`ProviderFake.requests`)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    at: float = 0.0  # time.monotonic() when the request arrived


async def json_body(request: web.Request) -> Any:
    """A POST's body parsed as JSON; None for other methods or a body that is not JSON."""
    if request.method != "POST":
        return None
    try:
        return json.loads(await request.read())  # buffered once; later reads get the same bytes
    except ValueError:
        return None


async def consume_body(request: web.Request, keep: bool) -> tuple[str, int, bytes | None]:
    """Read a streamed body (an upload): its sha256 hex digest, its size, and its bytes if `keep`.

    It is hashed and counted chunk by chunk, so uploads of any size cost no memory unless kept.
    """
    digest = hashlib.sha256()
    size = 0
    kept: list[bytes] | None = [] if keep else None
    async for chunk in request.content.iter_chunked(CHUNK_SIZE):
        digest.update(chunk)
        size += len(chunk)
        if kept is not None:
            kept.append(chunk)
    return digest.hexdigest(), size, b"".join(kept) if kept is not None else None


async def drain(request: web.Request) -> None:
    """Read and drop what is left of a PUT or POST body, so that answering early (an error) does not
    reset a client that is still sending."""
    if request.method in ("PUT", "POST") and not request.content.at_eof():
        async for _ in request.content.iter_chunked(CHUNK_SIZE):
            pass


def html_error_page(status: int) -> web.Response:
    """HTTP `status` with an HTML error page, as a proxy or load balancer in front of an API answers."""
    title = f"{status} {web.Response(status=status).reason}"
    html = f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>"
    return web.Response(status=status, text=html, content_type="text/html")


def storage_error(status: int, code: str, message: str) -> web.Response:
    """An S3-style XML error, as a presigned upload URL (a storage bucket, not the API) answers."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )
    return web.Response(status=status, text=body, content_type="application/xml")


async def refuse_put(
    request: web.Request, content_type: str | None, require_length: bool
) -> web.Response | None:
    """Check a PUT to a presigned upload URL as the storage bucket would: its error answer, or None if good.

    `content_type` is the type the URL was signed for; None when the URL is unknown or its signature wrong.
    `require_length`: a PUT without Content-Length (chunked) is refused with 411, as S3 presigned URLs do.
    A refused body is drained first, so the client gets the answer instead of a reset mid-upload.
    """
    if content_type is None:
        refusal = storage_error(403, "AccessDenied", "Request has expired or the signature is invalid.")
    elif request.headers.get("Content-Type", "") != content_type:
        refusal = storage_error(
            403,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
        )
    elif require_length and request.content_length is None:
        refusal = storage_error(
            411, "MissingContentLength", "You must provide the Content-Length HTTP header."
        )
    else:
        return None
    await drain(request)
    return refusal


class SlidingWindow:
    """A per-minute rate limit: the times of the events let in during the last `span` seconds.

    The limit and the clock stay the fake's own public attributes (tests change them at will), so each
    call passes them in. Thread-safe.
    """

    def __init__(self, span: float = 60.0) -> None:
        self.span = span
        self._lock = threading.Lock()
        self._times: list[float] = []

    def admit(self, limit: int | None, now: float) -> bool:
        """Let one more event in at `now` if fewer than `limit` came in the window (None: no limit)."""
        if limit is None:
            return True
        with self._lock:
            self._times = [t for t in self._times if now - t < self.span]
            if len(self._times) >= limit:
                return False
            self._times.append(now)
            return True


class InjectedFault(Protocol):
    """What `ProviderFake` reads of a fake's own Fault dataclass."""

    @property
    def kind(self) -> str: ...

    @property
    def delay(self) -> float: ...

    @property
    def after(self) -> bool: ...


E = TypeVar("E", bound=str)
FaultT = TypeVar("FaultT", bound=InjectedFault)


class ProviderFake(BackgroundServer, Generic[E, FaultT]):
    """The request handling every provider stand-in shares; `E` names its endpoints, `FaultT` is its Fault.

    - `record_middleware` records every request in `requests` (and its Authorization header, if any, in
      `authorization_headers_seen`), unless `record_requests` is False.
    - `_endpoint(name, handler)` wraps a handler: it parses the JSON body, lets `_refusal` turn the request
      away (wrong key, rate limit), then does the work through `_run`, or, when a fault was injected for
      `name` with `inject`, applies that fault.
    - The fault kinds "delay" and "late" and the flag `after` mean the same for every fake (see their Fault
      docstrings); any other kind is answered by the fake's `_fault_response`.

    A fake implements `_fault_response`, overrides `_refusal` and `_run` where it has rules of its own, and
    extends `_init_state` with its own state.
    """

    record_requests = True

    def __init__(self) -> None:
        super().__init__()
        self._faults: FaultQueue[FaultT] = FaultQueue()

    def _init_state(self) -> None:
        """Start the records afresh (at construction and on `reset`); a fake adds its own state."""
        self.requests: list[RecordedRequest] = []
        self.authorization_headers_seen: list[str] = []
        self.late_in_flight = 0  # requests with a "late" fault whose work is not done yet

    def reset(self) -> None:
        """Forget all state, records and faults (configuration attributes are kept)."""
        with self.lock:
            self._init_state()
        self._faults.clear()

    def inject(self, endpoint: E, fault: FaultT) -> None:
        """Queue `fault` for the next request to `endpoint` (FIFO per endpoint)."""
        self._faults.push(endpoint, fault)

    # -- hooks -----------------------------------------------------------------------------------

    def _refusal(self, request: web.Request, needs_key: bool) -> web.Response | None:
        """The answer to a request turned away before any fault or work (e.g. a wrong key), or None."""
        return None

    async def _run(self, name: E, handler: Handler, request: web.Request, body: Any) -> web.Response:
        """Do the work of one request: the handler, plus whatever rules the fake adds around it."""
        return await handler(request, body)

    def _fault_response(
        self, name: E, fault: FaultT, request: web.Request, made: web.Response | None
    ) -> web.Response:
        """The answer to a request failed by `fault`; `made` is the lost real answer (with `after`)."""
        raise NotImplementedError

    async def _run_late(
        self, name: E, delay: float, handler: Handler, request: web.Request, body: Any
    ) -> web.Response:
        """The work of a "late" request: sleep `delay`, then run it. A fake may pause elsewhere."""
        await asyncio.sleep(delay)
        return await self._run(name, handler, request, body)

    # -- request handling ------------------------------------------------------------------------

    @web.middleware
    async def record_middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Record the request; add it first to the fake's app.middlewares."""
        if not self.record_requests:
            return await handler(request)
        body = await json_body(request)  # PUT bodies are streamed by the handler, never buffered here
        recorded = RecordedRequest(
            request.method, request.path, dict(request.query), lower_headers(request), body, time.monotonic()
        )
        with self.lock:
            self.requests.append(recorded)
            if "Authorization" in request.headers:
                self.authorization_headers_seen.append(request.headers["Authorization"])
        return await handler(request)

    def _endpoint(
        self, name: E, handler: Handler, needs_key: bool = True
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        """The aiohttp handler for endpoint `name`: refusal, then the injected fault or the work."""

        async def serve(request: web.Request) -> web.Response:
            body = await json_body(request)
            refusal = self._refusal(request, needs_key)
            if refusal is not None:
                return refusal
            fault = self._faults.pop(name)
            if fault is None:
                return await self._run(name, handler, request, body)
            return await self._apply_fault(name, fault, handler, request, body)

        return serve

    async def _apply_fault(
        self, name: E, fault: FaultT, handler: Handler, request: web.Request, body: Any
    ) -> web.Response:
        if fault.kind == "delay":
            return await self._delayed(name, fault, handler, request, body)
        if fault.kind == "late":
            # Shielded: the work happens even if the server cancels the handler of a client that left.
            return await asyncio.shield(self._late(name, fault.delay, handler, request, body))
        made: web.Response | None = None
        if fault.after:
            made = await self._run(name, handler, request, body)  # the work happens; the answer is lost
        else:
            await drain(request)  # answer cleanly instead of resetting a client mid-upload
        return self._fault_response(name, fault, request, made)

    async def _delayed(
        self, name: E, fault: FaultT, handler: Handler, request: web.Request, body: Any
    ) -> web.Response:
        if fault.after:
            response = await self._run(name, handler, request, body)
            await asyncio.sleep(fault.delay)
            return response
        await asyncio.sleep(fault.delay)
        if client_gone(request):
            return web.Response(status=499)  # nobody listens; the point is that no work was done
        return await self._run(name, handler, request, body)

    async def _late(
        self, name: E, delay: float, handler: Handler, request: web.Request, body: Any
    ) -> web.Response:
        with self.lock:
            self.late_in_flight += 1
        try:
            return await self._run_late(name, delay, handler, request, body)
        finally:
            with self.lock:
                self.late_in_flight -= 1
