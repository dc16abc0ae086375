"""How the facts many messages repeat read: a provider's name, a cost, an amount, a duration, a file."""

from __future__ import annotations

from decimal import Decimal

from bot.jobs.files import SlackFile
from bot.jobs.model import Job
from bot.providers.registry import REGISTRY
from bot.views.text import NAME_MAX, _code, _escape, _shorten


def _label(name: str) -> str:
    """How messages name a provider: its label, or the stored name shown as code if it is unknown."""
    return REGISTRY.labels.get(name) or _code(name, 40)


def _provider_model(job: Job, label: str = "") -> str:
    return (label or _label(job.order.provider)) + (
        f" {_code(job.order.model, 64)}" if job.order.model else ""
    )


def _name(file: SlackFile) -> str:
    return _code(file.name, NAME_MAX)


def cost_text(amount: str | None, unit: str) -> str:
    """An exact cost in the provider's own unit: "0.10 credits", "$0.625", or "unknown"."""
    if not amount:
        return "unknown"
    amount, unit = _escape(_shorten(amount, 40)), _escape(_shorten(unit, 20))
    return f"${amount}" if unit == "USD" else f"{amount} {unit}"


def amount_text(amount: Decimal, unit: str) -> str:
    """An amount in a provider's unit, as people read it: "$1.25", "0.48 credits"."""
    shown = (
        amount.quantize(Decimal("0.01")) if amount == amount.quantize(Decimal("0.01")) else amount.normalize()
    )
    return cost_text(f"{shown:f}", unit)


def took_text(took_ms: int) -> str:
    if not took_ms:
        return "—"
    seconds = round(took_ms / 1000)
    return f"{seconds} s" if seconds < 120 else f"{seconds // 60} min {seconds % 60:02d} s"


def _duration(duration_s: str | None) -> str:
    try:
        return f"{Decimal(duration_s):f} s" if duration_s else "unknown"
    except ArithmeticError:
        return "unknown"
