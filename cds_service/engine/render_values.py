"""How numbers, dates and quantities are written in texts (one place, so lengths are bounded)."""

from __future__ import annotations

from datetime import date, datetime

from .units import display as unit_display


def format_number(value: float, precision: int | None) -> str:
    """Fixed decimals for facts; parameters (precision None) as written in the pack (27, 52.4)."""
    if precision is None:
        text = f"{value:g}" if abs(value) < 1e15 else str(value)
        return text
    return f"{value:.{precision}f}"


def format_quantity(value: float, unit: str | None, precision: int | None) -> str:
    shown = unit_display(unit)
    number = format_number(value, precision)
    return f"{number} {shown}" if shown else number


def format_date(value) -> str:
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)
