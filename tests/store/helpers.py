"""Builders for cards and feedback entries shared by the store tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

T0 = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def card(
    primary: str = "low-grip-strength",
    findings: list[str] | None = None,
    suggestions: dict[str, str] | None = None,
    card_uuid: str | None = None,
) -> dict[str, Any]:
    return {
        "uuid": card_uuid or str(uuid.uuid4()),
        "primary": primary,
        "findings": findings if findings is not None else [primary],
        "suggestions": suggestions or {},
    }


def record(
    store,
    patient_id: str,
    *cards: dict[str, Any],
    sent_at: datetime = T0,
    hook_instance: str | None = None,
) -> None:
    store.record_cards(
        hook_instance=hook_instance or str(uuid.uuid4()),
        service_id="sarcopenia-patient-view",
        hook="patient-view",
        patient_id=patient_id,
        pack_version="sarcopenia@1.0.0",
        cards=list(cards),
        sent_at=sent_at,
    )


def overridden(
    card_uuid: str,
    at: datetime = T0,
    code: str | None = "patient-declined",
    comment: str | None = None,
    display: str | None = None,
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "card": card_uuid,
        "outcome": "overridden",
        "outcomeTimestamp": iso(at),
    }
    reason: dict[str, Any] = {}
    if code is not None or display is not None:
        coding = {"system": "https://sarcopenia-cds.org/CodeSystem/override-reason"}
        if code is not None:
            coding["code"] = code
        if display is not None:
            coding["display"] = display
        reason["reason"] = coding
    if comment is not None:
        reason["userComment"] = comment
    if reason:
        entry["overrideReason"] = reason
    return entry


def accepted(card_uuid: str, *suggestion_ids: str, at: datetime = T0) -> dict[str, Any]:
    return {
        "card": card_uuid,
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": s} for s in suggestion_ids],
        "outcomeTimestamp": iso(at),
    }


def count(store, table: str) -> int:
    with store.engine.connect() as connection:
        return connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


def all_text(store) -> list[tuple[str, str, str]]:
    """(table, column, value-as-text) for every non-null value in every table of the store."""
    out: list[tuple[str, str, str]] = []
    inspector = sa.inspect(store.engine)
    with store.engine.connect() as connection:
        for table in inspector.get_table_names():
            columns = [c["name"] for c in inspector.get_columns(table)]
            for row in connection.execute(sa.text(f'SELECT * FROM "{table}"')).mappings():
                for column in columns:
                    if row[column] is not None:
                        out.append((table, column, str(row[column])))
    return out
