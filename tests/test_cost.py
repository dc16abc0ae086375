from __future__ import annotations

from decimal import Decimal

import pytest

from bot.providers.jogg import credits_for, to_decimal
from bot.views.formats import amount_text, cost_text

# seconds → displayed credits. 17.5 and 35 are the cases a float computation gets wrong (0.15, 0.29).
KNOWN = [
    (12.5, "0.10"),
    (13, "0.11"),
    (17.5, "0.14"),
    (30, "0.24"),
    (31, "0.25"),
    (35, "0.28"),
    (60, "0.48"),
    (125, "1.00"),
    (250, "2.00"),
    (0.001, "0.01"),
    (0, "0.00"),
    (1, "0.01"),
    (1.25, "0.01"),
    (1.26, "0.02"),
    (124.99, "1.00"),
    (125.01, "1.01"),
    (3600, "28.80"),
    (1542.5, "12.34"),
]


def shown(credits: Decimal) -> str:
    """A job's cost as its reply reads: kept as the pipeline keeps it, written as the messages write it."""
    return cost_text(f"{credits:f}", "credits")


@pytest.mark.parametrize(("seconds", "expected"), KNOWN)
def test_known_values(seconds: float, expected: str) -> None:
    credits = credits_for(seconds)
    assert credits == Decimal(expected)
    assert credits.as_tuple().exponent == -2  # quantized to hundredths, not just numerically equal
    assert shown(credits) == f"{expected} credits"


@pytest.mark.parametrize(("seconds", "expected"), KNOWN)
@pytest.mark.parametrize("kind", [float, str, Decimal])
def test_input_types_agree(seconds: float, expected: str, kind: type) -> None:
    value = kind(repr(seconds)) if kind is not float else float(seconds)
    assert shown(credits_for(value)) == f"{expected} credits"


@pytest.mark.parametrize(("seconds", "expected"), [(13, "0.11"), (31, "0.25"), (35, "0.28"), (0, "0.00")])
def test_int_input(seconds: int, expected: str) -> None:
    assert credits_for(seconds) == Decimal(expected)
    assert credits_for(float(seconds)) == Decimal(expected)


def test_returns_decimal() -> None:
    assert type(credits_for(12.5)) is Decimal
    assert credits_for(12.5) == Decimal("0.10")
    assert str(credits_for(12.5)) == "0.10"


def test_just_above_a_boundary_rounds_up() -> None:
    assert credits_for(12.500000000000002) == Decimal("0.11")  # the next float after 12.5
    assert credits_for("12.5000000000000000000000000001") == Decimal("0.11")  # beyond float precision
    assert credits_for(Decimal("124.99999999999999999999999999999")) == Decimal("1.00")


def test_tiny_positive_rounds_up_to_one_hundredth() -> None:
    assert credits_for("1e-30") == Decimal("0.01")
    assert credits_for(Decimal("0.0000001")) == Decimal("0.01")


def test_string_input_forms() -> None:
    assert credits_for(" 35 ") == Decimal("0.28")
    assert credits_for("35.000") == Decimal("0.28")
    assert credits_for("3.5e1") == Decimal("0.28")


@pytest.mark.parametrize("zero", [0, 0.0, -0.0, "0", "-0", Decimal("-0"), Decimal("0E+5")])
def test_zero_is_zero_without_sign(zero: float | int | str | Decimal) -> None:
    credits = credits_for(zero)
    assert credits == 0
    assert shown(credits) == "0.00 credits"


@pytest.mark.parametrize(
    "bad",
    [
        -1,
        -0.001,
        "-12.5",
        Decimal("-0.0001"),
        float("nan"),
        float("inf"),
        float("-inf"),
        "NaN",
        "sNaN",
        "Infinity",
        "-Infinity",
        Decimal("NaN"),
        Decimal("sNaN"),
        Decimal("Infinity"),
        "",
        "   ",
        "abc",
        "12.5s",
        "1,5",
        "1e999999999",
    ],
)
def test_invalid_values_raise_value_error(bad: float | int | str | Decimal) -> None:
    with pytest.raises(ValueError):
        credits_for(bad)


@pytest.mark.parametrize("bad", [None, True, False, [12.5], object()])
def test_non_numeric_types_raise_value_error(bad: object) -> None:
    with pytest.raises(ValueError):
        credits_for(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("credits", "expected"),
    [
        (Decimal("0.1"), "0.10"),
        (Decimal("1"), "1.00"),
        (Decimal("12.34"), "12.34"),
        (Decimal("12.341"), "12.341"),  # a quote or a budget is shown exactly, never rounded
        (Decimal("1E+2"), "100.00"),
        (Decimal("0.00"), "0.00"),
        (Decimal("1234567.8"), "1234567.80"),
    ],
)
def test_amounts_show_at_least_two_decimals(credits: Decimal, expected: str) -> None:
    assert amount_text(credits, "credits") == f"{expected} credits"


@pytest.mark.parametrize("bad", [Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity")])
def test_non_finite_amounts_are_refused(bad: Decimal) -> None:
    with pytest.raises(ValueError):
        to_decimal(bad)
    with pytest.raises(ValueError):
        credits_for(bad)


def test_a_stray_float_is_read_as_written() -> None:
    # 0.1 as a binary float is 0.1000000000000000055…; read exactly, it would round up past what it says.
    assert to_decimal(0.1) == Decimal("0.1")
    assert to_decimal(0.29) == Decimal("0.29")
