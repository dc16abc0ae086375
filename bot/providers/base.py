"""The one provider interface the core depends on.

Each provider module (jogg, sync, lipsyncdev) alone knows its wire format, error vocabulary, options,
cost rule and upload flow, and turns every answer into the normalized values below: a `Task` whose
`state` is running / succeeded / failed, or a `ProviderError` whose `kind` tells the pipeline what to do.
Retrying is never a provider's job: the pipeline reschedules the job in Redis, so a retry survives a
restart and never blocks a worker.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping
from dataclasses import asdict, dataclass
from decimal import Decimal
from enum import StrEnum

from pydantic import SecretStr


class TaskState(StrEnum):
    RUNNING = "running"  # queued or rendering at the provider: ask again later
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class ErrorKind(StrEnum):
    PERMANENT = "permanent"  # this request cannot succeed as sent (bad input or option): tell the user
    ADMIN = "admin"  # the account needs an admin (refused key, no credit, billing): tell the user, stop
    TRANSIENT = "transient"  # 5xx, timeouts, malformed answers: retry with backoff
    RATE_LIMITED = "rate_limited"  # "not now", nothing was done: try again in a few seconds
    BUSY = "busy"  # the plan's concurrency cap is reached, nothing was done: wait for a running task
    NOT_FOUND = "not_found"  # no such task


class ProviderError(Exception):
    """A provider call that gave no usable answer.

    `message` is the provider's own text (outside text: escape before showing); `code` its error code
    as text ("" when it has none); `ambiguous` is True when a POST may have been carried out although
    no clear answer came back (a timeout after sending, a 5xx, a truncated body). `retry_after_s`, for
    RATE_LIMITED/BUSY: the provider client sends no such request again for that long (0: no hold).
    """

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        code: str = "",
        ambiguous: bool = False,
        *,
        retry_after_s: float = 0.0,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.code = code
        self.ambiguous = ambiguous
        self.retry_after_s = retry_after_s

    def __str__(self) -> str:
        return f"{self.message} (code {self.code})" if self.code else self.message


class ProviderUnreachable(ProviderError):
    """No connection to the provider at all (its name does not resolve, the connection is refused or
    times out): nothing was sent, and `message` says "cannot reach <label> (<host>): <why>"."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorKind.TRANSIENT, message)


class KeyState(StrEnum):
    ACCEPTED = "accepted"  # the provider answered and took the key
    REFUSED = "refused"  # a setting must be fixed first (a refused key, an API version that does not answer)
    UNREACHABLE = "unreachable"  # no connection to the provider: nothing could be asked
    UNCLEAR = "unclear"  # it answered, but not clearly (a 5xx, a malformed answer): ask again later


@dataclass(frozen=True)
class KeyCheck:
    """What a provider said to the bot's key check. `detail`: REFUSED, the sentence naming the setting to
    fix; UNREACHABLE/UNCLEAR, why it could not be checked; ACCEPTED, anything worth a line ("API version B
    answered"), else ""."""

    state: KeyState
    detail: str = ""


def unchecked(exc: ProviderError) -> KeyCheck:
    """A key check that got no usable answer: UNREACHABLE without a connection, UNCLEAR otherwise."""
    state = KeyState.UNREACHABLE if isinstance(exc, ProviderUnreachable) else KeyState.UNCLEAR
    return KeyCheck(state, exc.message)


@dataclass(frozen=True)
class Task:
    """A provider's task, normalized."""

    id: str
    state: TaskState
    created_at: float | None = None  # unix seconds, when the provider says
    result_url: str = ""
    cover_url: str = ""
    duration_s: str = ""  # output duration, exact decimal text as the provider sent it
    cost: str = ""  # the cost the provider itself reported (exact decimal text), if it reports one
    estimated_cost: str = ""  # what the provider expects it to cost (exact decimal text), if it says so
    error: str = ""  # the provider's failure text (outside text)
    error_code: str = ""  # the provider's failure code, if any


def task_to_text(task: Task) -> str:
    """A task's outcome as compact JSON, to keep with its job (`Job.delivered`)."""
    fields = {name: value for name, value in asdict(task).items() if value not in ("", None)}
    return json.dumps(fields, separators=(",", ":"))


def task_from_text(value: str) -> Task | None:
    """A task kept by `task_to_text`; None for anything else (an older or damaged record)."""
    try:
        fields = json.loads(value)
        return Task(**{**fields, "state": TaskState(fields["state"])})
    except (ValueError, TypeError, KeyError, RecursionError):
        return None


@dataclass(frozen=True)
class Order:
    """What to make. `video`/`audio` are public URLs, or references returned by `Provider.upload`."""

    key: str  # the job id: stable across retries of the same create (idempotency keys derive from it)
    video: str
    audio: str
    playback: str  # the bot's vocabulary (normal, normal_reverse, ...), already accepted by `options_problem`
    model: str = ""  # "" for providers without models
    webhook_url: str = ""  # where the provider may say "done" ("" = no webhook)


class Recovery(StrEnum):
    """What may follow a create whose answer was lost (RELIABILITY.md, "No second paid task")."""

    LOOKUP = "lookup"  # `find(order)` finds a task made with these inputs; create again only once settled
    IDEMPOTENT = "idempotent"  # the create carries a key derived from `Order.key`: repeating it is safe
    NONE = "none"  # nothing can tell: never repeat it; the job ends and says so


@dataclass(frozen=True)
class Cost:
    amount: Decimal  # exact
    unit: str  # "credits", "USD"


class Provider(ABC):
    """One lip-sync service. Class attributes describe it; instances hold its key and HTTP session."""

    name: str  # the word users type: jogg, sync, lipsyncdev
    label: str  # how messages name it: JoggAI, sync.so, LipSync.dev
    recovery: Recovery
    # Our playback type → the provider's own word for it (None: the provider's default, nothing sent).
    # A playback type missing here has no honest mapping and is refused.
    playback: Mapping[str, str | None]
    models: tuple[str, ...] = ()  # () when the provider has no model choice
    default_model: str = ""
    hosts_uploads: bool = True  # False: no upload API; the bot serves shared files itself (PUBLIC_URL)
    uploads_use_create_limit: bool = False  # uploads count against the create rate limit (JoggAI)
    accepts_webhook: bool = False  # create takes a per-request webhook URL
    creates_per_minute: int = 60  # per API key, across every bot process
    max_concurrent: int = 0  # tasks running at once per account; 0 = no cap the bot must keep
    unit: str = "credits"  # what its costs, quotes and budgets are counted in (distinct per currency)

    def __init__(self, api_key: SecretStr) -> None:
        # A stable, non-secret name for the account, for per-key limits and caches.
        self.key_id = hashlib.sha256(api_key.get_secret_value().encode()).hexdigest()[:16]

    def options_problem(self, playback: str, model: str) -> str | None:
        """Why this provider cannot honour these options, as one friendly sentence; None when it can."""
        if playback not in self.playback:
            accepted = ", ".join(f"`{p}`" for p in self.playback)
            return f"{self.label} has no `{playback}` playback; it takes {accepted}."
        if model and model not in self.models:
            if not self.models:
                return f"{self.label} has no model choice, so `model=` does not apply to it."
            return (
                f"{self.label} has no model `{model}`; it offers {', '.join(f'`{m}`' for m in self.models)}."
            )
        return None

    @abstractmethod
    async def create(self, order: Order) -> Task: ...

    @abstractmethod
    async def get(self, task_id: str) -> Task: ...

    async def find(self, order: Order) -> Task | None:
        """The latest task made with exactly these inputs (Recovery.LOOKUP only), or None."""
        raise NotImplementedError

    async def upload(self, name: str, content_type: str, size: int, body: AsyncIterator[bytes]) -> str:
        """Host `size` bytes at the provider; returns what to pass as `Order.video`/`audio`."""
        raise NotImplementedError

    @abstractmethod
    def cost(self, task: Task, model: str) -> Cost | None:
        """What a succeeded task cost, exactly, in the provider's own unit; None when unknown."""

    def quote(
        self, video_s: Decimal | None, audio_s: Decimal | None, playback: str, model: str
    ) -> Cost | None:
        """What a dub of inputs this long is expected to cost, by the provider's rule; None when it cannot
        be known (an input's length, or the rule). Never an understatement where the rule is known."""
        return None

    @abstractmethod
    def cost_rule(self, model: str) -> str:
        """One short line saying how the cost was worked out, for the reply's footer."""

    def explain(self, code: str) -> str | None:
        """Advice for a user (or their admin) about a known error code; None for unknown codes."""
        return None

    async def key_check(self) -> KeyCheck:
        """Ask the provider, by a harmless read, whether it takes the key (at start-up, in `doctor`, before
        a terminal dub). Providers without such a read accept every key."""
        return KeyCheck(KeyState.ACCEPTED)

    async def check_key(self) -> str | None:
        """A sentence naming the refused key (or other setting), or None when it works or cannot be
        checked now."""
        check = await self.key_check()
        return check.detail if check.state is KeyState.REFUSED else None

    async def balance(self) -> str | None:
        """What the account has left, in the provider's words ("812.5 credits"), where it reports it; None
        otherwise or when it cannot be read now. For admins on App Home."""
        return None

    async def remaining(self) -> Cost | None:
        """The account's balance as a number in `unit`, where the provider reports one; None otherwise or
        when it cannot be read now. Jobs whose quote exceeds it are refused before paying."""
        return None

    def webhook_task_id(self, headers: Mapping[str, str], body: bytes, now_s: float) -> str | None:
        """The task id a webhook delivery is about, once its signature (if configured) is good; None to
        ignore it. Unless `webhook_result` vouches for it, a delivery is only a hint: the poll step
        re-fetches the task."""
        return None

    def webhook_result(self, headers: Mapping[str, str], body: bytes, now_s: float) -> Task | None:
        """The ended task a delivery states, only when its signature is configured and good (an unsigned
        delivery anyone could send); None for a running task, an unreadable one, or an unsigned delivery.
        The poll step then takes it instead of fetching the task again."""
        return None

    @abstractmethod
    async def aclose(self) -> None: ...
