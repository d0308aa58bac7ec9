"""How numbers, dates and quantities are written in texts (one place, so lengths are bounded)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal

from .units import display as unit_display


def format_number(value: float, precision: int | None) -> str:
    """Fixed decimals for facts; parameters (precision None) as written in the pack (7 stays 7, 1.25 stays 1.25)."""
    if precision is None:
        text = f"{value:g}" if abs(value) < 1e15 else str(value)
        return text
    if f"{value:.{precision + 3}f}".endswith("500"):  # near a tie: decide on the decimal value,
        # rounding half up as people do (1812.5 → 1813, not binary round-half-even's 1812)
        exact = Decimal(repr(value)).quantize(Decimal(1).scaleb(-precision), ROUND_HALF_UP)
        return f"{exact:.{precision}f}"
    return f"{value:.{precision}f}"


def format_quantity(value: float, unit: str | None, precision: int | None, locale: str = "en") -> str:
    """A number with its unit as the locale writes it (68 years, 68 岁; 54.0 kg in both)."""
    shown = unit_display(unit, locale)
    number = format_number(value, precision)
    return f"{number} {shown}" if shown else number


def format_date(value) -> str:
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)
