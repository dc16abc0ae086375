"""The gate a job passes before anything is paid for (issue "money under control").

In order, at the start of the submit step and until it lets the job through (`checked`):
  1. the links are checked (bot/money/preflight.py: reachable, media, not too large; their lengths read);
     shared files use what Slack says of them, their lengths measured from Slack's download where it
     gives none
  2. the result cache: the same inputs on the same provider with the same options were dubbed within
     CACHE_DAYS → answered from that result at no cost (`Cached`); shared files are known by their bytes,
     hashed while they are hosted, so for them the pipeline asks `cached` after hosting (the entries:
     bot/lanes/cached_results.py)
  3. a quote from the lengths, by the provider's rule, and by the unknown-cost rule (`quote_for`) when a
     length could not be learnt: an upper estimate
  4. the provider's balance, where it reports one: a quote it cannot cover is refused (and admins are told
     once when it runs low); an upper estimate is not held against it
  5. the budgets of the channel and the person (bot/money/budgets.py): the quote is reserved atomically
  6. above CONFIRM_ABOVE (an unknown or estimated cost included), the requester's go-ahead (a private
     quote with Dub it / Cancel); unanswered, it expires and nothing is sent
Each refusal ends the job with a reply that says why and that nothing was charged. `settle` gives back
what a job reserved, or keeps what it really cost, when the job ends; `remember` files a new result.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from bot.jobs.caches import ResultCache, SharedValues
from bot.jobs.codec import Moment
from bot.jobs.decisions import Decision, Stay, backoff_ms, finish
from bot.jobs.files import SlackFile
from bot.jobs.lanes import Lane, Lanes
from bot.jobs.marks import Marks
from bot.jobs.model import Confirmation, CreateState, Job, Source, Status
from bot.lanes.cached_results import Cached, answer_from, cache_key, read_entry, result_entry
from bot.money.budgets import Admission, Ledger
from bot.money.preflight import LinkRefused, MediaFacts, Preflight
from bot.providers.base import Cost, Provider
from bot.slack.out import SlackOut
from bot.views.money import balance_low, balance_refusal, budget_refusal, quote_prompt

log = logging.getLogger(__name__)

# A job waiting for its go-ahead looks again this often: a click makes it due at once, but one that lands
# while a step holds the job is only seen on the next look.
QUOTE_RECHECK_MS = 15_000
MAX_CHECK_TRIES = 4  # a link that times out or answers 5xx is tried again, then refused
BALANCE_FRESH_MS = 30_000  # a provider's balance is read at most this often, by one process for all
# Our refusal codes, for the job's reply (bot/views/jobs.py).
LINK_REFUSED = "link_refused"
REFUSED_BALANCE = "refused_balance"
REFUSED_BUDGET = "refused_budget"
QUOTE_EXPIRED = "quote_expired"
REFUSALS = (LINK_REFUSED, REFUSED_BALANCE, REFUSED_BUDGET)


@dataclass(frozen=True)
class MoneyRules:
    confirm_above: Mapping[str, Decimal]  # unit → ask first when a quote is above it
    warn_below: Mapping[str, Decimal]  # unit → tell ADMIN_CHANNEL once when a balance falls below it
    cache_ttl_s: int  # 0: no result cache
    unknown_length_s: Decimal  # an input whose length could not be learnt counts as this long (a ceiling)
    admin_channel: str = ""
    max_input_bytes: int | None = None
    quote_ttl_ms: int = 15 * 60_000  # an unanswered quote expires (QUOTE_EXPIRES_MINUTES)


@dataclass(frozen=True, kw_only=True)
class Quote:
    """What a job is counted as costing before it is paid for (reserved, asked about, settled after)."""

    amount: Decimal | None  # None: the provider has no price rule, so no amount bounds the cost
    unit: str
    unknown: str = ""  # what the bot could not learn ("the audio's length"); "" for a quote by the rule

    @property
    def estimated(self) -> bool:
        """An upper estimate (or no amount at all), not the provider's rule applied to known lengths."""
        return bool(self.unknown)


def quote_for(
    provider: Provider,
    video_s: Decimal | None,
    audio_s: Decimal | None,
    playback: str,
    model: str,
    unknown_length_s: Decimal,
) -> Quote:
    """The unknown-cost rule, in one place. By the provider's rule from the inputs' lengths where it gives
    a quote; otherwise, for each length the bot could not learn, as if that input were `unknown_length_s`
    long (the ceiling: an upper estimate); a provider with no price rule has no amount at all."""
    exact = provider.quote(video_s, audio_s, playback, model)
    if exact is not None:
        return Quote(amount=exact.amount, unit=exact.unit)
    missing = [what for what, seconds in (("video", video_s), ("audio", audio_s)) if seconds is None]
    if missing:
        ceiling = provider.quote(
            video_s if video_s is not None else unknown_length_s,
            audio_s if audio_s is not None else unknown_length_s,
            playback,
            model,
        )
        if ceiling is not None:
            what = "the audio's length" if missing == ["audio"] else "the video's length"
            if len(missing) == 2:
                what = "the lengths of the video and the audio"
            return Quote(amount=ceiling.amount, unit=ceiling.unit, unknown=what)
    return Quote(amount=None, unit=provider.unit, unknown=f"{provider.label}'s price")


class Gate:
    def __init__(
        self,
        *,
        lanes: Lanes,
        results: ResultCache,
        values: SharedValues,
        marks: Marks,
        ledger: Ledger,
        slack: SlackOut,
        rules: MoneyRules,
        preflight: Preflight | None,  # None: PREFLIGHT=off
        slack_files: Preflight,  # measures shared files with the bot token (HostToken)
    ) -> None:
        self.lanes = lanes
        self.results = results
        self.values = values
        self.marks = marks
        self.ledger = ledger
        self.slack = slack
        self.rules = rules
        self.preflight = preflight
        self.slack_files = slack_files

    async def check(self, job: Job, token: str, now_ms: int, provider: Provider) -> Decision | Cached | None:
        """None once the job may be paid for; otherwise what to do with it instead."""
        if job.progress.task_id or job.progress.create is CreateState.ATTEMPTED:
            return None  # sent, or perhaps sent (or by a bot from before the gate): never refuse it
        money = job.money
        if money.checked:
            return await self._reserve_unquoted(job, token, provider)
        if money.confirmation is Confirmation.ASKED and not money.confirm_ms:  # it may not have gone out
            above = self.rules.confirm_above.get(money.quote_unit, Decimal(0))
            return await self._prompt(job, token, provider, self._quote_of(job, provider), above)
        if job.money.confirmation is Confirmation.ASKED:
            return await self._waiting(job, now_ms)
        if job.money.confirmation is not Confirmation.CONFIRMED:
            verdict = await self._appraise(job, token, provider)
            if verdict is not None:
                return verdict
        job.money.checked, job.progress.errors = True, 0
        await self.lanes.update(Lane.SUBMIT, job, token)  # with what `_appraise` learnt
        return None

    async def _appraise(self, job: Job, token: str, provider: Provider) -> Decision | Cached | None:
        """Steps 1 to 6 for a job seen for the first time; None when it may go on."""
        inputs = await self._measure(job)
        if not isinstance(inputs, tuple):
            return inputs
        lengths = [facts.duration_s if facts else None for facts in inputs]
        job.money.video_s, job.money.audio_s = (f"{s:f}" if s is not None else None for s in lengths)
        if job.identity.source is not Source.FILES:
            # A link whose file changed (another size or length) is another input.
            video, audio = (
                f"url:{url}|{_seen(facts)}"
                for url, facts in zip((job.inputs.video.link, job.inputs.audio.link), inputs, strict=True)
            )
            job.money.cache_key = self._cache_key(job, video, audio) or None
            if (hit := await self.cached(job)) is not None:
                return hit
        quoted = self._quote_of(job, provider)
        job.money.quote = f"{quoted.amount:f}" if quoted.amount is not None else None
        job.money.quote_unit = quoted.unit
        if not quoted.estimated and quoted.amount is not None:
            # An upper estimate is not held against the balance: it would refuse dubs that fit, and a
            # provider refuses, without charging, a dub its balance cannot cover.
            refusal = await self._balance_refusal(job, provider, Cost(quoted.amount, quoted.unit))
            if refusal is not None:
                return refusal
        admission = await self._admit(job, quoted)
        if not admission.admitted:
            return _budget_refusal(job, admission, quoted)
        threshold = self.rules.confirm_above.get(quoted.unit)
        if threshold is not None and (quoted.amount is None or quoted.amount > threshold):
            return await self._ask(job, token, provider, quoted, threshold)
        return None

    async def _reserve_unquoted(self, job: Job, token: str, provider: Provider) -> Decision | None:
        """A job let through with no quote amount. A bot from before the unknown-cost rule let a job whose
        length it could not learn through at 0, and it may still wait here (in line for its provider's
        POST slot) when this version takes over: that 0 is given back and the job's quote by the rule
        reserved instead, or the job refused, before it is paid for. A quote found is stored, so this
        happens once; a cost no amount bounds is admitted again each time (0 where no budget applies)."""
        if job.money.quote:
            return None
        quoted = self._quote_of(job, provider)
        await self.ledger.settle(job.id, Decimal(0))
        admission = await self._admit(job, quoted)
        if not admission.admitted:
            return _budget_refusal(job, admission, quoted)
        if quoted.amount is not None:
            log.info("job %s: let through unquoted by an older version; %s reserved", job.id, quoted.amount)
            job.money.quote, job.money.quote_unit = f"{quoted.amount:f}", quoted.unit
            await self.lanes.update(Lane.SUBMIT, job, token)
        return None

    async def _admit(self, job: Job, quoted: Quote) -> Admission:
        who = job.identity
        return await self.ledger.admit(job.id, who.team, who.channel, who.person, quoted.unit, quoted.amount)

    def _quote_of(self, job: Job, provider: Provider) -> Quote:
        """The job's quote from the lengths found (the same answer each time it is asked)."""
        video_s, audio_s = (
            _decimal(text) if text else None for text in (job.money.video_s, job.money.audio_s)
        )
        return quote_for(
            provider, video_s, audio_s, job.inputs.playback, job.order.model, self.rules.unknown_length_s
        )

    # -- 1. the links

    async def _measure(self, job: Job) -> tuple[MediaFacts | None, MediaFacts | None] | Decision:
        """What is known of both inputs (None: nothing), or the job's refusal (or retry) for a bad link."""
        if job.identity.source is Source.FILES:
            files = (self._file_facts(job.inputs.video.file), self._file_facts(job.inputs.audio.file))
            video, audio = await asyncio.gather(*files)
            return video, audio
        if self.preflight is None:
            return None, None
        checks = [
            self.preflight.check(url, self.rules.max_input_bytes)
            for url in (job.inputs.video.link, job.inputs.audio.link)
        ]
        results = await asyncio.gather(*checks, return_exceptions=True)
        found: list[MediaFacts] = []
        for which, outcome in zip(("video link", "audio link"), results, strict=True):
            if isinstance(outcome, LinkRefused):
                errors = job.progress.errors + 1
                if outcome.transient and errors < MAX_CHECK_TRIES:
                    log.info("job %s: %s not answering (%s), retry %d", job.id, which, outcome.code, errors)
                    job.progress.errors, job.progress.last_error = errors, f"{which}: {outcome.reason}"
                    return Stay(backoff_ms(errors))
                log.info("job %s: %s refused: %s", job.id, which, outcome.code)
                reason = outcome.reason
                return finish(job, Status.FAILED, error_code=LINK_REFUSED, error=reason, error_file=which)
            if isinstance(outcome, BaseException):
                raise outcome
            found.append(outcome)
        return found[0], found[1]

    async def _file_facts(self, file: SlackFile | None) -> MediaFacts | None:
        """What Slack says of a shared file; its length, where Slack gives none, measured from Slack's
        download as a link is (ranged reads, with the bot token). Unmeasurable: the length stays unknown
        (the transfer reports a download that fails)."""
        facts = _slack_facts(file)
        if file is None or facts is None or facts.duration_s is not None:
            return facts
        if file.external or not file.url:
            return facts
        try:
            measured = await self.slack_files.check(file.url)
        except LinkRefused as exc:
            log.info("shared file %s: length not measured (%s)", file.id, exc.code)
            return facts
        return MediaFacts(facts.size or measured.size, facts.content_type, measured.duration_s)

    # -- 2. the result cache

    def _cache_key(self, job: Job, video: str, audio: str) -> str:
        if not self.rules.cache_ttl_s or job.money.no_cache:
            return ""
        return cache_key(job, video, audio)

    def files_cache_key(self, job: Job, video_sha256: str, audio_sha256: str) -> str:
        """The cache identity of a job from shared files: their bytes, not their Slack ids."""
        return self._cache_key(job, f"sha256:{video_sha256}", f"sha256:{audio_sha256}")

    async def cached(self, job: Job) -> Cached | None:
        """The earlier result for the job's `cache_key`, if there is one and its video is still there."""
        key = job.money.lookup_key
        if key is None:
            return None
        raw = await self.results.cached_result(key)
        if raw is None:
            return None
        earlier = read_entry(raw)
        if earlier is None:
            return None
        result_url = earlier["result_url"]
        if self.preflight is not None:
            try:  # providers' result links may expire before CACHE_DAYS
                await self.preflight.check(result_url)
            except LinkRefused as exc:
                log.info("job %s: the cached result is gone (%s); dubbing afresh", job.id, exc.code)
                return None
        log.info("job %s: answered from the result of job %s", job.id, earlier["job"])
        return answer_from(earlier)

    async def remember(self, job: Job, now_ms: int) -> None:
        """File a new result under its inputs' identity (idempotent: a retried send files the same)."""
        key = job.money.lookup_key
        if job.status is not Status.SUCCEEDED or job.money.cached_from or key is None or not job.result.url:
            return
        entry = result_entry(job, now_ms)
        await self.results.save_result(key, entry, self.rules.cache_ttl_s)

    # -- 4. the provider's balance

    async def _balance_refusal(self, job: Job, provider: Provider, quote: Cost | None) -> Decision | None:
        left = await self.remaining(provider)
        if left is None or quote is None or quote.amount <= left.amount:
            return None
        log.info(
            "job %s: %s balance %s is below the quote %s", job.id, provider.label, left.amount, quote.amount
        )
        return finish(
            job,
            Status.FAILED,
            error_code=REFUSED_BALANCE,
            error=balance_refusal(provider.label, left, quote),
        )

    async def remaining(self, provider: Provider) -> Cost | None:
        """The provider's balance, read at most every BALANCE_FRESH_MS by any process; warns the admins'
        channel once when it is below BALANCE_WARN_BELOW (and again after it has been topped up)."""
        key = f"balance:{provider.name}:{provider.key_id}"
        shared = await self.values.shared_value(key)
        if shared is not None:
            try:
                return Cost(Decimal(shared), provider.unit) if shared != "-" else None
            except InvalidOperation:
                pass
        left = await provider.remaining()
        await self.values.share_value(key, f"{left.amount:f}" if left else "-", BALANCE_FRESH_MS)
        if left is not None:
            await self._warn_when_low(provider, left)
        return left

    async def _warn_when_low(self, provider: Provider, left: Cost) -> None:
        threshold = self.rules.warn_below.get(left.unit)
        if threshold is None or not self.rules.admin_channel:
            return
        mark = f"balance-low:{provider.name}:{provider.key_id}"
        if left.amount >= threshold:
            await self.marks.unmark(mark)
        elif await self.marks.mark_once(mark, ttl_s=400 * 24 * 3600):
            log.warning("%s balance is low: %s %s", provider.label, left.amount, left.unit)
            message = balance_low(provider.label, left, threshold)
            await self.slack.notify(self.rules.admin_channel, None, message)

    # -- 6. the go-ahead

    async def _ask(
        self, job: Job, token: str, provider: Provider, quote: Quote, threshold: Decimal
    ) -> Decision:
        # Marked before the question goes out, so a click always finds the job asking; `confirm_ms` is
        # set once it has gone out (a crash in between asks again: at worst a second, equal question).
        job.money.confirmation, job.money.confirm_ms, job.progress.errors = Confirmation.ASKED, 0, 0
        await self.lanes.update(Lane.SUBMIT, job, token)  # with what `_appraise` learnt
        return await self._prompt(job, token, provider, quote, threshold)

    async def _prompt(
        self, job: Job, token: str, provider: Provider, quote: Quote, threshold: Decimal
    ) -> Decision:
        minutes = max(1, round(self.rules.quote_ttl_ms / 60_000))
        asked = Cost(quote.amount, quote.unit) if quote.amount is not None else None
        prompt = quote_prompt(job, provider.label, asked, threshold, minutes, quote.unknown)
        if job.identity.response_url:
            told = await self.slack.respond(job.identity.response_url, prompt)
        else:
            told = await self.slack.tell(
                job.identity.channel, job.identity.person, job.posts.parent.ts, prompt
            )
        if not told:
            log.warning("job %s: could not ask %s to confirm the quote", job.id, job.identity.person)
        await self.lanes.update(Lane.SUBMIT, job, token, stamp=Moment.QUOTE_ASKED)
        log.info(
            "job %s: quote %s %s is above %s; asked to confirm", job.id, quote.amount, quote.unit, threshold
        )
        return Stay(QUOTE_RECHECK_MS)

    async def _waiting(self, job: Job, now_ms: int) -> Decision | None:
        expires_ms = job.money.confirm_ms + self.rules.quote_ttl_ms
        if now_ms < expires_ms:
            return Stay(min(QUOTE_RECHECK_MS, expires_ms - now_ms))
        log.info("job %s: quote not answered in time; nothing sent", job.id)
        return finish(job, Status.CANCELLED, error_code=QUOTE_EXPIRED)

    # -- settling

    async def settle(self, job: Job) -> None:
        """The job has ended: keep what it cost (or may have cost) against the budgets, give back the rest."""
        await self.ledger.settle(job.id, spent(job))


def _budget_refusal(job: Job, admission: Admission, quoted: Quote) -> Decision:
    assert admission.refused_by is not None
    log.info("job %s: refused by a budget (quote %s, %s)", job.id, quoted.amount, quoted.unknown)
    return finish(
        job,
        Status.FAILED,
        error_code=REFUSED_BUDGET,
        error=budget_refusal(admission.refused_by, quoted.amount, quoted.unit, quoted.unknown),
    )


def spent(job: Job) -> Decimal:
    """What an ended job counts against budgets: its cost; for a job that may have been charged without a
    result (a failure after its create), its quote; nothing for one never sent or answered from the cache."""
    if job.money.cached_from:
        return Decimal(0)
    quote = _decimal(job.money.quote)
    if job.status is Status.SUCCEEDED:
        cost = _decimal(job.result.cost)
        return cost if cost is not None else quote or Decimal(0)
    if job.progress.task_id or job.progress.create is CreateState.ATTEMPTED:
        return quote or Decimal(0)
    return Decimal(0)


def _decimal(text: str | None) -> Decimal | None:
    try:
        value = Decimal(text) if text else None
    except InvalidOperation:
        return None
    return value if value is not None and value.is_finite() and value >= 0 else None


def _slack_facts(file: SlackFile | None) -> MediaFacts | None:
    """What Slack says of a shared file: its size, and its length where it gives one."""
    if file is None:
        return None
    seconds = Decimal(file.duration_ms) / 1000 if file.duration_ms else None
    return MediaFacts(size=file.size or None, content_type=file.content_type, duration_s=seconds)


def _seen(facts: MediaFacts | None) -> str:
    return f"{facts.size}:{facts.duration_s}" if facts else "?"
