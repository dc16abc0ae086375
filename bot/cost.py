"""JoggAI lip-sync cost: 1 credit per 125 s of output, shown rounded up to 2 decimals.

All arithmetic is exact (Decimal / integers). Binary floats get this wrong: 35 / 125 * 100 is
28.000000000000004, which rounds up to 0.29 instead of 0.28.
"""

from __future__ import annotations

import decimal
from decimal import ROUND_CEILING, Decimal

__all__ = ["SECONDS_PER_CREDIT", "credits_for", "format_credits"]

SECONDS_PER_CREDIT = 125

_HUNDREDTH = Decimal("0.01")

# Far beyond any real video; it bounds the work done on hostile input such as "1e999999999".
_MAX_SECONDS = Decimal(10) ** 9


def credits_for(duration_seconds: float | int | str | Decimal) -> Decimal:
    """Credits for ``duration_seconds`` of output, quantized to 0.01 and rounded up (12.5 → Decimal("0.10")).

    Raises ValueError for negative, NaN, infinite, absurdly large or non-numeric input.
    """
    seconds = _to_decimal(duration_seconds)
    if seconds < 0:
        raise ValueError(f"duration must not be negative, got {duration_seconds!r}")
    if seconds > _MAX_SECONDS:
        raise ValueError(f"duration is implausibly large: {duration_seconds!r}")

    # hundredths = ceil(seconds * 100 / 125) = ceil(seconds * 4 / 5). Dividing by 5 always terminates, so
    # with enough precision every step is exact; the Inexact trap turns any mistake into an error, not a
    # silently wrong bill.
    with decimal.localcontext() as ctx:
        ctx.prec = len(seconds.as_tuple().digits) + 40
        ctx.Emax = decimal.MAX_EMAX
        ctx.Emin = decimal.MIN_EMIN
        ctx.traps[decimal.Inexact] = True
        hundredths = int((seconds * 4 / 5).to_integral_value(rounding=ROUND_CEILING))

    # Built from a string, so no context rounding applies and -0 cannot leak through as "-0.00".
    return Decimal(f"{hundredths}E-2")


def format_credits(credits: Decimal) -> str:
    """Two decimals, rounded up like the cost rule: "0.10", "1.00", "12.34".

    Raises ValueError for NaN, infinite, absurdly large or non-numeric input.
    """
    value = _to_decimal(credits)
    if abs(value) > _MAX_SECONDS:
        raise ValueError(f"credit amount is implausibly large: {credits!r}")
    with decimal.localcontext() as ctx:
        ctx.prec = len(value.as_tuple().digits) + 40
        ctx.Emax = decimal.MAX_EMAX
        ctx.Emin = decimal.MIN_EMIN
        shown = value.quantize(_HUNDREDTH, rounding=ROUND_CEILING)
    if shown.is_zero():
        shown = abs(shown)
    return f"{shown:f}"


def _to_decimal(value: object) -> Decimal:
    # bool is an int subclass, but True seconds is a bug upstream, not a duration.
    if isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        # repr() is the shortest string that round-trips, i.e. the number the JSON actually said;
        # Decimal(float) would expose the binary approximation (12.5 is exact, 0.1 is not).
        result = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except decimal.InvalidOperation:
            raise ValueError(f"not a number: {value!r}") from None
    else:
        raise ValueError(f"not a number: {value!r}")
    if not result.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return result
