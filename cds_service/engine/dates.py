"""FHIR date and dateTime strings to timezone-aware datetimes (partial dates allowed), cached."""

from __future__ import annotations

from datetime import UTC, date, datetime
from functools import lru_cache


@lru_cache(maxsize=8192)
def parse(text: str) -> datetime | None:
    """'2024', '2024-05', '2024-05-01', '2024-05-01T10:00:00Z' → aware datetime (UTC if no zone)."""
    if not isinstance(text, str) or not text:
        return None
    try:
        if len(text) == 4:
            value = datetime(int(text), 1, 1)
        elif len(text) == 7:
            value = datetime(int(text[:4]), int(text[5:7]), 1)
        else:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def as_datetime(value) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        return parse(value)
    return None


@lru_cache(maxsize=8192)
def parse_stamped(text: str) -> tuple[datetime | None, float]:
    """parse(text) and its POSIX timestamp (-inf when unparseable), cached together."""
    value = parse(text)
    return value, (value.timestamp() if value is not None else float("-inf"))


def stamped(value) -> tuple[datetime | None, float]:
    if isinstance(value, str):
        return parse_stamped(value)
    value = as_datetime(value)
    return value, (value.timestamp() if value is not None else float("-inf"))
