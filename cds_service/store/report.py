"""The governance report's figures, aggregated in SQL on SQLite and PostgreSQL alike.

Each query groups one table by (month, pack version, …) over ``[since, until)`` so the database
does the counting; Python only joins the small results. Months are UTC calendar months
(``YYYY-MM``), stored with each call and card so that the GROUP BY streams over an index in its
order (``ix_hook_call_report``, ``ix_card_sent_report``) instead of sorting every row. Response-time percentiles are nearest-rank (the ``ceil(p·n)``-th smallest
duration) over a histogram of 0.1 ms buckets (``hook_call.duration_tenths``) that the database counts in
the same scan as the calls, so they are exact to 0.1 ms (rounded down) on both databases without sorting every call.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from cds_service.store.models import UTCDateTime


@dataclass
class CallGroup:
    """The calls of one month under one pack version."""

    calls: int = 0
    errors: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    first_call: datetime | None = None


@dataclass
class FindingGroup:
    """What one finding did in one month under one pack version."""

    cards: int = 0
    accepted: int = 0
    accepted_by_suggestion: dict[str, int] = field(default_factory=dict)
    overridden: int = 0
    overridden_by_reason: dict[str, int] = field(default_factory=dict)
    no_feedback: int = 0
    suppressed: int = 0
    undetermined: int = 0
    undetermined_by_missing: dict[str, int] = field(default_factory=dict)


@dataclass
class Figures:
    """Everything the report counts, keyed by (month, pack version[, finding])."""

    calls: dict[tuple[str, str], CallGroup]
    findings: dict[tuple[str, str, str], FindingGroup]


def _accepted_match(dialect: str) -> str:
    """SQL: the suggestion ``s`` is among the ids the feedback ``f`` accepted (a JSON array)."""
    if dialect == "postgresql":
        return "(f.accepted_suggestions::jsonb) ? s.uuid"
    return "EXISTS (SELECT 1 FROM json_each(f.accepted_suggestions) AS j WHERE j.value = s.uuid)"


def figures(engine: Engine, since: datetime, until: datetime) -> Figures:
    """Count calls, cards, feedback, suppressions and undecided findings over [since, until)."""
    dialect = engine.dialect.name
    bind = UTCDateTime().process_bind_param
    params = {"since": bind(since, engine.dialect), "until": bind(until, engine.dialect),
              "first_month": since.astimezone(UTC).strftime("%Y-%m"),
              "last_month": (until.astimezone(UTC) - timedelta(microseconds=1)).strftime("%Y-%m")}
    calls: dict[tuple[str, str], CallGroup] = defaultdict(CallGroup)
    found: dict[tuple[str, str, str], FindingGroup] = defaultdict(FindingGroup)
    in_period = "{col} >= :since AND {col} < :until"
    call_month, card_month = "c.month", "k.month"
    with engine.connect() as connection:
        def rows(sql: str) -> list[Any]:
            return connection.execute(sa.text(sql), params).all()

        histograms: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
        for month, pack, bucket, n, errors, first in rows(
            "SELECT c.month, c.pack_version, c.duration_tenths, count(*), "
            "sum(CASE WHEN c.status >= 500 THEN 1 ELSE 0 END), min(c.called_at) "
            f"FROM hook_call c WHERE c.month >= :first_month AND c.month <= :last_month "
            f"AND {in_period.format(col='c.called_at')} GROUP BY c.month, c.pack_version, c.duration_tenths"
        ):
            group = calls[(month, pack)]
            group.calls += n
            group.errors += int(errors or 0)
            first = _as_instant(first)
            if group.first_call is None or first < group.first_call:
                group.first_call = first
            if bucket is not None:
                histograms[(month, pack)].append((int(bucket), n))
        for key, histogram in histograms.items():
            calls[key].p50_ms, calls[key].p99_ms = nearest_rank(histogram, 0.50), nearest_rank(histogram, 0.99)
        for month, pack, finding, n in rows(
            "SELECT k.month, k.pack_version, k.primary_finding, count(*) FROM card_sent k "
            "WHERE k.month >= :first_month AND k.month <= :last_month "
            f"AND {in_period.format(col='k.sent_at')} GROUP BY k.month, k.pack_version, k.primary_finding"
        ):
            group = found[(month, pack, finding)]
            group.cards = group.no_feedback = n
        # feedback is a few percent of cards: each query starts from it (CROSS JOIN fixes that
        # order on SQLite; PostgreSQL plans it as the inner join it is) and reaches cards by key
        for month, pack, finding, answered, accepted, overridden in rows(
            "SELECT m, pack_version, primary_finding, count(*), sum(acc), sum(ovr) FROM ("
            f"SELECT {card_month} AS m, k.pack_version, k.primary_finding, k.uuid, "
            "max(CASE WHEN f.outcome = 'accepted' THEN 1 ELSE 0 END) AS acc, "
            "max(CASE WHEN f.outcome = 'overridden' THEN 1 ELSE 0 END) AS ovr "
            "FROM feedback f CROSS JOIN card_sent k WHERE k.uuid = f.card_sent_uuid "
            f"AND {in_period.format(col='k.sent_at')} GROUP BY {card_month}, k.pack_version, k.primary_finding, k.uuid"
            ") answered GROUP BY m, pack_version, primary_finding"
        ):
            group = found[(month, pack, finding)]
            group.no_feedback -= answered
            group.accepted, group.overridden = int(accepted or 0), int(overridden or 0)
        for month, pack, finding, reason, n in rows(
            f"SELECT {card_month} AS m, k.pack_version, k.primary_finding, "
            "coalesce(f.override_reason_code, CASE WHEN f.override_reason_display IS NULL "
            "THEN '(no reason)' ELSE '(display only)' END) AS r, count(DISTINCT k.uuid) "
            "FROM feedback f CROSS JOIN card_sent k WHERE k.uuid = f.card_sent_uuid "
            f"AND f.outcome = 'overridden' AND {in_period.format(col='k.sent_at')} "
            "GROUP BY m, k.pack_version, k.primary_finding, r"
        ):
            found[(month, pack, finding)].overridden_by_reason[reason] = n
        for month, pack, finding, key, n in rows(
            f"SELECT {card_month} AS m, k.pack_version, k.primary_finding, s.key, count(DISTINCT k.uuid) "
            "FROM feedback f CROSS JOIN card_sent k JOIN card_suggestion s ON s.card_uuid = k.uuid "
            f"WHERE k.uuid = f.card_sent_uuid AND f.outcome = 'accepted' AND {in_period.format(col='k.sent_at')} "
            f"AND {_accepted_match(dialect)} GROUP BY m, k.pack_version, k.primary_finding, s.key"
        ):
            found[(month, pack, finding)].accepted_by_suggestion[key] = n
        for month, pack, finding, state, missing, n in rows(
            f"SELECT {call_month} AS m, c.pack_version, s.finding, s.state, coalesce(s.missing, ''), count(*) "
            "FROM call_finding s JOIN hook_call c ON c.id = s.call_id "
            f"WHERE {in_period.format(col='c.called_at')} "
            "GROUP BY m, c.pack_version, s.finding, s.state, coalesce(s.missing, '')"
        ):
            group = found[(month, pack, finding)]
            if state == "suppressed":
                group.suppressed += n
            elif state == "undetermined":
                group.undetermined += n
                label = missing or "(not recorded)"
                group.undetermined_by_missing[label] = group.undetermined_by_missing.get(label, 0) + n
    return Figures(dict(calls), dict(found))


def _as_instant(value: Any) -> datetime:
    """A raw aggregate timestamp (SQLite: naive UTC text; PostgreSQL: aware) as aware UTC."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def nearest_rank(histogram: list[tuple[int, int]], p: float) -> float | None:
    """The nearest-rank percentile (the ceil(p·n)-th smallest) of durations counted in tenths of
    a millisecond, in ms: exact to the 0.1 ms the histogram keeps."""
    total = sum(n for _, n in histogram)
    if not total:
        return None
    rank = max(1, math.ceil(p * total - 1e-9))
    seen = 0
    for bucket, n in sorted(histogram):
        seen += n
        if seen >= rank:
            return bucket / 10
    return sorted(histogram)[-1][0] / 10
