"""LipSync.dev client: the one place that knows LipSync.dev's wire formats (the team's provider notes,
shared/docs/providers.md §3).

Two versions of the vendor's docs describe two different APIs; `LIPSYNCDEV_API_VERSION` picks one (`a`,
`b`) or, `auto` (the default), asks the server which one it speaks and remembers the answer. Everything but
the wire is shared: one Provider, two small wire adapters (`WireA`, `WireB`) for headers, paths, bodies and
the harmless documented read that tells them apart.

Version A, the "Bearer" docs (§3.1, §3.4):
- `Authorization: Bearer <key>`. `POST {base}/v1/lipsync/submit` with `srcVideoUrl`, `audioUrl` and the
  required `videoParams` (`video_width`/`video_height` 0 = keep the original size, `video_enhance` 0|1, `fps`
  "25"|"original"), answered `{jobId, status, estimatedCredits, createdAt}` (`jobId` a number: kept as text).
- `GET {base}/v1/lipsync/status/{jobId}` → `{jobId, status, createdAt, outputUrl, creditsUsed,
  errorMessage}`, status pending | processing | completed | failed.
- `GET {base}/v1/usage` is cheap and needs the key: the key check (and the version probe) uses it.
Version B, the "X-API-Key" docs (§3.2; base `https://lipsync-api-yft3.onrender.com/api`):
- `X-API-Key: <key>`. `POST {base}/v1/lipsync/generate` with `videoUrl`, `audioUrl`, `settings` (`fps`) and
  `webhookUrl`, answered `{success, data: {jobId, status: "queued", estimatedCredits, estimatedTime}}`.
- `GET {base}/v1/lipsync/status/{jobId}` → `{success, data: {jobId, status, outputUrl, processingTime}}`.
  Its probe reads the status of a job that does not exist: its `{success: false}` answer names the version,
  its HTTP status says whether the key passed. Webhooks: with PUBLIC_URL the job carries the bot's
  `/webhooks/lipsyncdev`; no signature is documented, so a delivery is only a hint to poll now.

Both: no upload API (the bot serves shared files itself at signed links), no lookup by inputs, no
idempotency key, no documented duration (read if a field carries one). The cost is the `creditsUsed` the
service reports, kept as exact decimal text; the submit's `estimatedCredits` is kept as the task's
`estimated_cost`.

Errors are read from the HTTP status (the docs give no error vocabulary): 401/403 refused key, 402 credits
(both ADMIN), 429 RATE_LIMITED, 400/422 PERMANENT, 404 NOT_FOUND (a job) or ADMIN (the submit or usage
endpoint itself is missing: a wrong `LIPSYNCDEV_API_URL`; so is a redirect, which is never followed), 5xx and
unreadable answers TRANSIENT (ambiguous for a submit). `{"success": false}` inside a 200 is PERMANENT.

Residual risk, for the reader: a submit whose answer is lost (a read timeout after sending, a 5xx, a
truncated body: `ProviderError.ambiguous`) cannot be reconciled. LipSync.dev documents no lookup and no
idempotency key, so nothing can tell whether that job exists: `recovery = Recovery.NONE`, and the pipeline
never repeats such a submit (repeating could pay twice); the job ends and says so. Version B's statuses
other than `queued`/`completed`, its webhook body and any `maxDuration` default are unconfirmed.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from pydantic import SecretStr

from bot.providers.base import (
    Cost,
    ErrorKind,
    KeyCheck,
    KeyState,
    Order,
    Provider,
    ProviderError,
    ProviderUnreachable,
    Recovery,
    Task,
    unchecked,
)
from bot.providers.http import Answer, ApiSession
from bot.providers.lipsyncdev.answers import JOB_ID, body_code, body_text, http_error, parse, read_task
from bot.providers.lipsyncdev.wires import STATUS_PATH, USAGE_PATH, Probe, Version, Wire, WireA, WireB

DEFAULT_BASE_URL = "https://www.lipsync.dev/api"
VERSION_CHOICES = ("auto", "a", "b")
FPS_CHOICES = ("25", "original")
_KEY_ADVICE = "LipSync.dev refused the API key. An admin needs to check `LIPSYNCDEV_API_KEY`."
_CREDITS_ADVICE = (
    "The LipSync.dev account is out of credits (or its plan does not allow this). "
    "An admin needs to top it up at lipsync.dev."
)
_RATE_ADVICE = "LipSync.dev is rate limiting this account; try again in a minute."
_URL_ADVICE = "LipSync.dev does not know this address. An admin may need to check `LIPSYNCDEV_API_URL`."
_INPUT_ADVICE = (
    "LipSync.dev refused the request as sent: check that both files are a supported video and audio."
)

# Words in an error code the body may carry (the docs give no vocabulary), for `explain`.
_KEY_WORDS = ("api_key", "apikey", "invalid_key", "unauthorized", "unauthenticated", "forbidden")
_CREDIT_WORDS = ("credit", "balance", "payment", "billing", "quota")
_RATE_WORDS = ("rate_limit", "ratelimit", "too_many")


class LipSyncDevProvider(Provider):
    name = "lipsyncdev"
    label = "LipSync.dev"
    unit = "LipSync.dev credits"  # not JoggAI's: budgets keep them apart
    recovery = Recovery.NONE  # no lookup, no idempotency key documented
    playback: Mapping[str, str | None] = MappingProxyType({"normal": None})  # it has no playback option
    models = ()
    hosts_uploads = False  # no upload API: the bot serves shared files itself
    accepts_webhook = False  # version B's does (set once the version is known)
    creates_per_minute = 60  # the free plan's 60 requests per minute

    def __init__(
        self,
        api_key: SecretStr,
        *,
        base_url: str = DEFAULT_BASE_URL,
        video_enhance: int = 1,
        fps: str = "25",
        timeout_s: float = 10.0,
        version: str = "a",
    ) -> None:
        """`version`: "a" or "b" speaks that version; "auto" asks the server first (the setting's default;
        the class keeps "a", what it spoke before version B existed)."""
        if video_enhance not in (0, 1) or isinstance(video_enhance, bool):
            raise ValueError(f"video_enhance must be 0 or 1, not {video_enhance!r}")
        if fps not in FPS_CHOICES:
            raise ValueError(f"fps must be one of {', '.join(FPS_CHOICES)}, not {fps!r}")
        if version not in VERSION_CHOICES:
            raise ValueError(f"version must be one of {', '.join(VERSION_CHOICES)}, not {version!r}")
        super().__init__(api_key)
        self._secret = api_key
        self._configured = version
        self._wires: dict[Version, Wire] = {
            "a": WireA(video_enhance=video_enhance, fps=fps),
            "b": WireB(fps=fps),
        }
        self._wire: Wire | None = None
        for wire in self._wires.values():
            if wire.version == version:
                self._use(wire)
        self._detecting = asyncio.Lock()
        self._api = ApiSession(label=self.label, base_url=base_url, headers={}, timeout_s=timeout_s)

    @property
    def version(self) -> Version | None:
        """The API version in use; None while `auto` has not had an answer."""
        return self._wire.version if self._wire is not None else None

    async def create(self, order: Order) -> Task:
        wire = await self._current_wire()
        data = await self._call(wire, "POST", wire.submit_path, json=wire.submit_body(order))
        return read_task(data, submitted=True)

    async def get(self, task_id: str) -> Task:
        wire = await self._current_wire()
        path = f"{STATUS_PATH}/{urllib.parse.quote(task_id, safe='')}"
        return read_task(await self._call(wire, "GET", path), submitted=False)

    def cost(self, task: Task, model: str) -> Cost | None:
        if not task.cost:
            return None
        return Cost(Decimal(task.cost), self.unit)

    def cost_rule(self, model: str) -> str:
        return "creditsUsed as reported by LipSync.dev"

    def explain(self, code: str) -> str | None:
        word = code.lower().replace("-", "_")
        if word in ("http_401", "http_403") or any(k in word for k in _KEY_WORDS):
            return _KEY_ADVICE
        if word == "http_402" or any(k in word for k in _CREDIT_WORDS):
            return _CREDITS_ADVICE
        if word == "http_429" or any(k in word for k in _RATE_WORDS):
            return _RATE_ADVICE
        if word == "http_404" or word.startswith("http_3"):
            return _URL_ADVICE
        if word in ("http_400", "http_422"):
            return _INPUT_ADVICE
        return None

    async def key_check(self) -> KeyCheck:
        """Which version answers at the API URL, by each one's harmless documented read (A's usage first,
        then B's status of a job that does not exist), and whether it takes the key. A configured version
        the server does not speak is refused like a key; `auto` remembers a clear answer."""
        a_probe = await self._probe(self._wires["a"])
        b_probe: Probe | None = None
        answered: Version | None = None
        if isinstance(a_probe, Answer) and 200 <= a_probe.status < 300 and WireA.speaks(a_probe):
            answered = "a"
        else:
            b_probe = await self._probe(self._wires["b"])
            if isinstance(b_probe, Answer) and WireB.speaks(b_probe):
                answered = "b"
            elif isinstance(a_probe, Answer) and WireA.speaks(a_probe):
                answered = "a"
        if answered is not None and self._configured not in ("auto", answered):
            return KeyCheck(
                KeyState.REFUSED,
                f"LIPSYNCDEV_API_VERSION is {self._configured}, but {self._api.host} answers "
                f"{self._wires[answered].title}: set LIPSYNCDEV_API_VERSION={answered} (or auto).",
            )
        chosen: Version | None = answered or (self.version if self._configured != "auto" else None)
        if chosen is None:
            return _no_version(self._api.host, a_probe, b_probe)
        probe = a_probe if chosen == "a" else b_probe
        wire = self._wires[chosen]
        if probe is None:  # not reached: B's read is made whenever A's did not answer as A
            return _no_version(self._api.host, a_probe, b_probe)
        if isinstance(probe, ProviderError):
            return unchecked(probe)
        if answered is not None:
            self._use(wire)  # a clear answer: remembered (for `auto`)
        if probe.status in (401, 403):
            which = "" if chosen == "a" else f" ({wire.name})"
            reason = body_text(parse(probe.body))
            return KeyCheck(
                KeyState.REFUSED,
                f"LipSync.dev{which} refused `LIPSYNCDEV_API_KEY` (HTTP {probe.status}"
                + (f": {reason})." if reason else ")."),
            )
        if answered is None and not 200 <= probe.status < 300:
            return KeyCheck(KeyState.UNCLEAR, f"LipSync.dev answered HTTP {probe.status} to the key check")
        return KeyCheck(KeyState.ACCEPTED, f"{wire.title} answered at {self._api.host}")

    async def balance(self) -> str | None:
        """The plan's requests used this period, from version A's /v1/usage (no credit balance is
        reported; version B reports nothing of the kind)."""
        if self.version != "a":
            return None
        try:
            data = await self._call(self._wires["a"], "GET", USAGE_PATH)
        except ProviderError:
            return None
        period = data.get("current_period")
        if not isinstance(period, dict):
            return None
        used, limit = period.get("requests_used"), period.get("requests_limit")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (used, limit)):
            return None
        return f"{used:,} of {limit:,} requests used this period"

    def webhook_task_id(self, headers: Mapping[str, str], body: bytes, now_s: float) -> str | None:
        """Version B's delivery names its job (`jobId`, at the top or under `data`). No signature is
        documented, so it is taken as the hint it is: the job is polled now, and the poll decides."""
        if not self.accepts_webhook:
            return None
        data = parse(body)
        for source in (data, data.get("data") if isinstance(data, dict) else None):
            if isinstance(source, dict):
                job_id = source.get("jobId")
                usable = isinstance(job_id, str | int) and not isinstance(job_id, bool)
                if usable and JOB_ID.fullmatch(str(job_id)):
                    return str(job_id)
        return None

    async def aclose(self) -> None:
        await self._api.aclose()

    def _use(self, wire: Wire) -> None:
        self._wire = wire
        self.accepts_webhook = wire.accepts_webhook

    async def _current_wire(self) -> Wire:
        """The version to speak; with `auto` and no answer yet, ask now (once at a time)."""
        if self._wire is not None:
            return self._wire
        async with self._detecting:
            check = await self.key_check() if self._wire is None else None
        if self._wire is not None:
            return self._wire
        detail = check.detail if check is not None else "no API version answered"
        if check is not None and check.state is KeyState.UNREACHABLE:
            raise ProviderUnreachable(detail)
        # Nothing was sent but the reads: trying again later is safe.
        raise ProviderError(ErrorKind.TRANSIENT, detail)

    async def _probe(self, wire: Wire) -> Probe:
        try:
            return await self._api.request("GET", wire.probe_path, headers=self._auth(wire))
        except ProviderError as exc:
            return exc

    def _auth(self, wire: Wire) -> dict[str, str]:
        return wire.auth(self._secret.get_secret_value())

    async def _call(self, wire: Wire, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        answer = await self._api.request(method, path, headers=self._auth(wire), **kwargs)
        is_post = method == "POST"
        if answer.status >= 300:
            raise http_error(answer, is_post, job_path=path.startswith(STATUS_PATH))
        body = parse(answer.body)
        if not isinstance(body, dict):
            raise ProviderError(
                ErrorKind.TRANSIENT, f"{self.label} sent a malformed answer", ambiguous=is_post
            )
        if body.get("success") is False:
            # A refusal inside a 200: the request was read and turned down.
            raise ProviderError(
                ErrorKind.PERMANENT,
                body_text(body) or f"{self.label} refused the request",
                code=body_code(body) or f"http_{answer.status}",
            )
        data = body.get("data")
        if "jobId" not in body and isinstance(data, dict):
            return data  # version B: {"success": true, "data": {...}}
        return body


def _no_version(host: str, a_probe: Probe, b_probe: Probe | None) -> KeyCheck:
    """Neither version answered clearly: why, for the operator."""
    probes = [p for p in (a_probe, b_probe) if p is not None]
    if probes and all(isinstance(p, ProviderUnreachable) for p in probes):
        return unchecked(next(p for p in probes if isinstance(p, ProviderError)))
    said = [
        f"{name}: {p.message if isinstance(p, ProviderError) else f'HTTP {p.status}'}"
        for name, p in (("version A's usage read", a_probe), ("version B's status read", b_probe))
        if p is not None
    ]
    return KeyCheck(
        KeyState.UNCLEAR,
        f"neither LipSync.dev API version answered clearly at {host} ({'; '.join(said)})",
    )
