"""Monthly spending limits per channel and per person, shared by every bot process and never overdrawn.

An admin sets a budget for a channel or a person in a provider's unit ("credits", "USD"; opaque here).
Before a job is submitted its quote is checked against every budget that applies (its channel's and its
requester's, in that unit, this month) and, if it fits all of them, reserved in the same Lua script, so
any number of processes admitting at once can never take a budget past its limit. When the job ends its
reservation is settled to the real cost (0 releases it). Spending is counted whether or not a budget is
set, so it can be shown. A cost no amount bounds (quote None) is refused wherever a budget applies.

Amounts are integer micro-units (Decimal times 1,000,000) added with HINCRBY: exact, never floats. "This
month" is the calendar month in UTC by Redis time (`TIME` in the scripts), so every process agrees; a
reservation remembers its month, and settles against it even when the month has changed since.

Keys: a team's limits, a month's spend per team, one reservation per job (bot.jobs.keys lists them).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, localcontext
from typing import Any

from redis.asyncio import Redis

from bot.jobs.keys import BUDGET_SPENT, budget_limits_key, budget_reservation_key

SCOPES = ("channel", "user")
MICROS = 6  # decimal places kept
# The scripts compare amounts as Lua numbers (doubles, exact to 2^53 ≈ 9e15 micro-units): amounts stay
# well below that, and HINCRBY itself is exact to 2^63.
MAX_AMOUNT = Decimal(10) ** 9
RESERVATION_TTL_SECONDS = 70 * 24 * 3600  # a job ends within hours; a lost settle must not pin it forever
SPENT_TTL_SECONDS = 400 * 24 * 3600  # a year of months to look back on, plus late settles

# Calendar month ('YYYY-MM', UTC) of the unix time in ARGV[3], or of Redis time when it is ''. The
# override exists for tests (month boundaries); the bot never sets it. Days → civil date is Howard
# Hinnant's days_from_civil inverse (proleptic Gregorian, eras of 400 years); Lua 5.1 has only doubles,
# hence math.floor for each integer division (all operands are non-negative from 1970 on).
_MONTH = """
local now_s
if ARGV[3] ~= '' then now_s = tonumber(ARGV[3]) else now_s = tonumber(redis.call('TIME')[1]) end
local z = math.floor(now_s / 86400) + 719468
local era = math.floor(z / 146097)
local doe = z - era * 146097
local yoe = doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)
yoe = math.floor(yoe / 365)
local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
local mp = math.floor((5 * doy + 2) / 153)
local m, y = mp + 3, yoe + era * 400
if mp >= 10 then m, y = mp - 9, y + 1 end
local month = string.format('%04d-%02d', y, m)
local spent_key = ARGV[1] .. month .. ':' .. ARGV[2]
"""

# KEYS: limits, reservation. ARGV: spent key prefix, team, now override, channel field, user field, quote
# (micro), channel, user, unit, reservation ttl, spent ttl, unbounded ('1': no amount bounds the cost). The
# spent key is built here, since only Redis knows the month; it shares the hash tag with KEYS. Returns
# {1, month} when admitted, {2, month} when the job was admitted before (nothing changes),
# {0, month, 1 or 2 (which field refused), limit, spent} when refused. A budget already at or over its
# limit refuses even a quote of 0; any budget refuses an unbounded cost (which reserves 0 where none is set).
_ADMIT = (
    """
local held = redis.call('HGET', KEYS[2], 'month')
if held then return {2, held} end
"""
    + _MONTH
    + """
local quote = tonumber(ARGV[6])
local unbounded = ARGV[12] == '1'
local fields = {ARGV[4], ARGV[5]}
for i, f in ipairs(fields) do
  local limit = redis.call('HGET', KEYS[1], f)
  if limit then
    local spent = redis.call('HGET', spent_key, f) or '0'
    local l, s = tonumber(limit), tonumber(spent)
    if unbounded or s >= l or s + quote > l then return {0, month, i, limit, spent} end
  end
end
for _, f in ipairs(fields) do redis.call('HINCRBY', spent_key, f, ARGV[6]) end
redis.call('EXPIRE', spent_key, tonumber(ARGV[11]))
redis.call('HSET', KEYS[2], 'month', month, 'team', ARGV[2], 'channel', ARGV[7], 'user', ARGV[8],
  'unit', ARGV[9], 'micros', ARGV[6])
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[10]))
return {1, month}
"""
)

# KEYS: reservation. ARGV: spent key prefix, actual (micro), spent ttl. Moves both spends of the
# reservation's month from what was reserved to what it cost, and drops the reservation, so a retried
# settle does nothing. Amounts go to HINCRBY as the strings they came as (Lua would format a large number
# as 1e+15).
_SETTLE = """
local r = redis.call('HMGET', KEYS[1], 'month', 'team', 'channel', 'user', 'unit', 'micros')
if not r[1] then return 0 end
local spent_key = ARGV[1] .. r[1] .. ':' .. r[2]
for _, f in ipairs({'channel:' .. r[3] .. ':' .. r[5], 'user:' .. r[4] .. ':' .. r[5]}) do
  if ARGV[2] ~= '0' then redis.call('HINCRBY', spent_key, f, ARGV[2]) end
  if r[6] ~= '0' then redis.call('HINCRBY', spent_key, f, '-' .. r[6]) end
end
if redis.call('TTL', spent_key) < 0 then redis.call('EXPIRE', spent_key, tonumber(ARGV[3])) end
redis.call('DEL', KEYS[1])
return 1
"""

# KEYS: limits. ARGV: spent key prefix, team, now override, then one field or none. Reads this month's
# spend in the same step as the month: {month, {}, spent or false} for one field; {month, limits, spends}
# (both flat field/value lists) for the whole team.
_READ = (
    _MONTH
    + """
if #ARGV >= 4 then return {month, {}, redis.call('HGET', spent_key, ARGV[4])} end
return {month, redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', spent_key)}
"""
)


@dataclass(frozen=True)
class Limit:
    scope: str  # "channel" or "user"
    id: str  # Slack channel id (C…/G…) or user id (U…/W…)
    unit: str
    amount: Decimal  # the monthly budget
    spent: Decimal  # this month so far, reservations included

    @property
    def left(self) -> Decimal:
        """What is left of the budget this month (0 when it is used up or overdrawn by settles)."""
        return max(self.amount - self.spent, Decimal(0))


@dataclass(frozen=True)
class Admission:
    admitted: bool
    refused_by: Limit | None = None  # the first budget it would overdraw (channel's before the person's)
    month: str = ""  # 'YYYY-MM' (UTC) the quote was reserved in, or checked against
    repeated: bool = False  # the job had been admitted before: nothing was reserved this time


def to_micros(value: Decimal, *, round_up: bool) -> int:
    """`value` in integer micro-units, exactly, rounded up (quotes, costs) or down (limits)."""
    if not isinstance(value, Decimal) or not value.is_finite() or value < 0 or value > MAX_AMOUNT:
        raise ValueError(f"not an amount between 0 and {MAX_AMOUNT}: {value!r}")
    with localcontext() as ctx:
        # Enough digits that the scaling itself never rounds: only the explicit rounding below does.
        ctx.prec = len(value.as_tuple().digits) + 20
        scaled = value.scaleb(MICROS)
        return int(scaled.to_integral_value(rounding=ROUND_CEILING if round_up else ROUND_FLOOR))


def from_micros(micros: int) -> Decimal:
    """Micro-units as a Decimal without trailing zeros: 500000 → 0.5, 20000000 → 20 (never 2E+1)."""
    value = Decimal(micros).scaleb(-MICROS)
    if value == value.to_integral_value():
        return value.quantize(Decimal(1))
    return value.normalize()


class Ledger:
    """Budgets, spending and reservations of every team, in Redis."""

    def __init__(self, redis: Redis, *, now_s: int | None = None) -> None:
        # `now_s` pins "now" to a unix time instead of Redis time: for tests of month boundaries only.
        self._redis = redis
        self._now = "" if now_s is None else str(int(now_s))
        self._admit = redis.register_script(_ADMIT)
        self._settle = redis.register_script(_SETTLE)
        self._read = redis.register_script(_READ)

    async def set_limit(
        self, team: str, scope: str, scope_id: str, unit: str, amount: Decimal | None
    ) -> None:
        """Set the monthly budget of a channel or person in `unit` (rounded down to a micro-unit, so it is
        never more than asked); None removes it. It applies from the next admission on, to this month's
        spend so far: lowering it below that spend refuses new jobs, and reserves nothing back."""
        field = _field(scope, scope_id, unit)
        if amount is None:
            await self._redis.hdel(budget_limits_key(team), field)
        else:
            await self._redis.hset(budget_limits_key(team), field, to_micros(amount, round_up=False))

    async def limits(self, team: str) -> list[Limit]:
        """Every budget set in the team with this month's spend: channels first, then people."""
        _, raw_limits, raw_spent = await self._read(
            keys=[budget_limits_key(team)], args=[BUDGET_SPENT, team, self._now]
        )
        spent = _pairs(raw_spent)
        out: list[Limit] = []
        for field, micros in _pairs(raw_limits).items():
            scope, scope_id, unit = field.split(":", 2)
            out.append(
                Limit(scope, scope_id, unit, from_micros(int(micros)), from_micros(int(spent.get(field, 0))))
            )
        out.sort(key=lambda lim: (SCOPES.index(lim.scope), lim.id, lim.unit))
        return out

    async def spent(self, team: str, scope: str, scope_id: str, unit: str) -> Decimal:
        """What the channel or person spent in `unit` this month, reservations included (budget or not)."""
        field = _field(scope, scope_id, unit)
        _, _, value = await self._read(
            keys=[budget_limits_key(team)], args=[BUDGET_SPENT, team, self._now, field]
        )
        return from_micros(int(value or 0))

    async def month(self) -> str:
        """The ledger's current month, 'YYYY-MM' in UTC, by Redis time."""
        month, _, _ = await self._read(
            keys=[budget_limits_key("-")], args=[BUDGET_SPENT, "-", self._now, "-"]
        )
        return _str(month)

    async def admit(
        self, job_id: str, team: str, channel: str, user: str, unit: str, quote: Decimal | None
    ) -> Admission:
        """Admit the job if its quote fits the channel's and the requester's budgets in `unit` this month,
        reserving the quote on both spends (budget or not) in the same step; otherwise change nothing and
        name the first budget it would overdraw. The quote must never be below what the job can cost (the
        gate quotes a job of unknown length at a ceiling, bot/lanes/gate.py); None says no amount bounds it (a
        provider without a price rule): any budget in `unit` refuses it, and without one it reserves 0.
        A budget already used up refuses even a quote of 0. The quote is rounded up to a micro-unit.
        Admitting the same job again reserves nothing and answers admitted (`repeated`)."""
        if not job_id:
            raise ValueError("job id must be non-empty")
        fields = [_field("channel", channel, unit), _field("user", user, unit)]
        micros = to_micros(quote if quote is not None else Decimal(0), round_up=True)
        reply = await self._admit(
            keys=[budget_limits_key(team), budget_reservation_key(job_id)],
            args=[
                BUDGET_SPENT,
                team,
                self._now,
                *fields,
                micros,
                channel,
                user,
                unit,
                RESERVATION_TTL_SECONDS,
                SPENT_TTL_SECONDS,
                "1" if quote is None else "0",
            ],
        )
        status, month = int(reply[0]), _str(reply[1])
        if status == 1:
            return Admission(True, month=month)
        if status == 2:
            return Admission(True, month=month, repeated=True)
        which, limit, spent = int(reply[2]), int(reply[3]), int(reply[4])
        scope, scope_id = ("channel", channel) if which == 1 else ("user", user)
        refused_by = Limit(scope, scope_id, unit, from_micros(limit), from_micros(spent))
        return Admission(False, refused_by=refused_by, month=month)

    async def settle(self, job_id: str, actual: Decimal) -> bool:
        """Replace the job's reservation by what it actually cost (rounded up to a micro-unit; 0 releases
        it), on the spends of the month it was admitted in. False when there is nothing to settle (never
        admitted, already settled, or expired): each reservation is settled at most once. A cost beyond
        MAX_AMOUNT (a provider's answer is outside text) counts as MAX_AMOUNT: every budget used up."""
        if not job_id:
            raise ValueError("job id must be non-empty")
        micros = to_micros(min(actual, MAX_AMOUNT), round_up=True)
        return bool(
            await self._settle(
                keys=[budget_reservation_key(job_id)], args=[BUDGET_SPENT, micros, SPENT_TTL_SECONDS]
            )
        )


def _check_id(what: str, value: str) -> None:
    # Channel and user ids are read back out of hash fields, split at ':'.
    if not value or ":" in value:
        raise ValueError(f"{what} must be non-empty and without ':': {value!r}")


def _field(scope: str, scope_id: str, unit: str) -> str:
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}: {scope!r}")
    _check_id(scope, scope_id)
    if not unit:
        raise ValueError("unit must be non-empty")
    return f"{scope}:{scope_id}:{unit}"


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(flat: list[Any]) -> dict[str, str]:
    return {_str(flat[i]): _str(flat[i + 1]) for i in range(0, len(flat), 2)}
