"""The governance report's figures, aggregated in SQL on SQLite and PostgreSQL alike.

Each query groups one table by (month, pack version, …) over ``[since, until)`` so the database
does the counting; Python only joins the small results. Months are UTC calendar months
(``YYYY-MM``). Response-time percentiles are nearest-rank (the ``ceil(p·n)``-th smallest
duration), worked out with window functions, so they are exact on both databases.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

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


def _month(column: str, dialect: str) -> str:
    """SQL for the UTC month (YYYY-MM) of a timestamp column."""
    if dialect == "postgresql":
        return f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM')"
    return f"substr({column}, 1, 7)"  # SQLite stores the naive UTC time as text


def _accepted_match(dialect: str) -> str:
    """SQL: the suggestion ``s`` is among the ids the feedback ``f`` accepted (a JSON array)."""
    if dialect == "postgresql":
        return "(f.accepted_suggestions::jsonb) ? s.uuid"
    return "EXISTS (SELECT 1 FROM json_each(f.accepted_suggestions) AS j WHERE j.value = s.uuid)"


def figures(engine: Engine, since: datetime, until: datetime) -> Figures:
    """Count calls, cards, feedback, suppressions and undecided findings over [since, until)."""
    dialect = engine.dialect.name
    bind = UTCDateTime().process_bind_param
    params = {"since": bind(since, engine.dialect), "until": bind(until, engine.dialect)}
    calls: dict[tuple[str, str], CallGroup] = defaultdict(CallGroup)
    found: dict[tuple[str, str, str], FindingGroup] = defaultdict(FindingGroup)
    in_period = "{col} >= :since AND {col} < :until"
    call_month, card_month = _month("c.called_at", dialect), _month("k.sent_at", dialect)
    with engine.connect() as connection:
        def rows(sql: str) -> list[Any]:
            return connection.execute(sa.text(sql), params).all()

        for month, pack, n, errors, first in rows(
            f"SELECT {call_month} AS m, c.pack_version, count(*), "
            "sum(CASE WHEN c.status >= 500 THEN 1 ELSE 0 END), min(c.called_at) "
            f"FROM hook_call c WHERE {in_period.format(col='c.called_at')} GROUP BY m, c.pack_version"
        ):
            group = calls[(month, pack)]
            group.calls, group.errors = n, int(errors or 0)
            group.first_call = _as_instant(first)
        for month, pack, rank, value in _percentiles(connection, call_month, in_period, params):
            group = calls[(month, pack)]
            if rank == "p50":
                group.p50_ms = value
            else:
                group.p99_ms = value
        for month, pack, finding, n, unanswered in rows(
            f"SELECT {card_month} AS m, k.pack_version, k.primary_finding, count(*), "
            "sum(CASE WHEN NOT EXISTS (SELECT 1 FROM feedback f WHERE f.card_sent_uuid = k.uuid) "
            "THEN 1 ELSE 0 END) "
            f"FROM card_sent k WHERE {in_period.format(col='k.sent_at')} "
            "GROUP BY m, k.pack_version, k.primary_finding"
        ):
            group = found[(month, pack, finding)]
            group.cards, group.no_feedback = n, int(unanswered or 0)
        for month, pack, finding, outcome, n in rows(
            f"SELECT {card_month} AS m, k.pack_version, k.primary_finding, f.outcome, "
            "count(DISTINCT k.uuid) FROM card_sent k JOIN feedback f ON f.card_sent_uuid = k.uuid "
            f"WHERE {in_period.format(col='k.sent_at')} GROUP BY m, k.pack_version, k.primary_finding, f.outcome"
        ):
            group = found[(month, pack, finding)]
            if outcome == "accepted":
                group.accepted = n
            elif outcome == "overridden":
                group.overridden = n
        for month, pack, finding, reason, n in rows(
            f"SELECT {card_month} AS m, k.pack_version, k.primary_finding, "
            "coalesce(f.override_reason_code, CASE WHEN f.override_reason_display IS NULL "
            "THEN '(no reason)' ELSE '(display only)' END) AS r, count(DISTINCT k.uuid) "
            "FROM card_sent k JOIN feedback f ON f.card_sent_uuid = k.uuid "
            f"WHERE f.outcome = 'overridden' AND {in_period.format(col='k.sent_at')} "
            "GROUP BY m, k.pack_version, k.primary_finding, r"
        ):
            found[(month, pack, finding)].overridden_by_reason[reason] = n
        for month, pack, finding, key, n in rows(
            f"SELECT {card_month} AS m, k.pack_version, k.primary_finding, s.key, count(DISTINCT k.uuid) "
            "FROM card_sent k JOIN feedback f ON f.card_sent_uuid = k.uuid "
            "JOIN card_suggestion s ON s.card_uuid = k.uuid "
            f"WHERE f.outcome = 'accepted' AND {in_period.format(col='k.sent_at')} "
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


def _percentiles(connection: Connection, month: str, in_period: str, params: dict[str, Any]) -> list[Any]:
    """(month, pack, "p50"|"p99", duration) by nearest rank: the k-th smallest with
    k = ceil(p·n), which is (n+1)/2 and (99n+99)/100 in integer arithmetic."""
    sql = (
        "SELECT m, pack_version, CASE WHEN rn = (n + 1) / 2 THEN 'p50' ELSE 'p99' END, duration_ms, "
        "rn = (n + 1) / 2 AS is50, rn = (99 * n + 99) / 100 AS is99 FROM ("
        f"SELECT {month} AS m, c.pack_version, c.duration_ms, "
        f"row_number() OVER (PARTITION BY {month}, c.pack_version ORDER BY c.duration_ms) AS rn, "
        f"count(*) OVER (PARTITION BY {month}, c.pack_version) AS n "
        f"FROM hook_call c WHERE c.duration_ms IS NOT NULL AND {in_period.format(col='c.called_at')}"
        ") ranked WHERE rn = (n + 1) / 2 OR rn = (99 * n + 99) / 100"
    )
    out = []
    for m, pack, _label, value, is50, is99 in connection.execute(sa.text(sql), params):
        if is50:
            out.append((m, pack, "p50", value))
        if is99:
            out.append((m, pack, "p99", value))
    return out
