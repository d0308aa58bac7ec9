"""Cards sent: one row per card and per suggestion, idempotent on the card uuid."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import sqlalchemy as sa

from cds_service.store.models import card_sent, card_suggestion, feedback

from .helpers import T0, accepted, card, count, record


def test_one_row_per_card_and_suggestion(store):
    a = card("low-grip-strength", ["low-grip-strength", "slow-gait"], {"s-a1": "pt-referral"})
    b = card("cachexia", [], {"s-b1": "dietitian-referral", "s-b2": "oral-nutrition"})
    record(store, "p1", a, b, hook_instance="hi-1")
    assert count(store, "card_sent") == 2
    assert count(store, "card_suggestion") == 3
    with store.engine.connect() as connection:
        row = connection.execute(sa.select(card_sent).where(card_sent.c.uuid == a["uuid"])).one()
        keys = dict(
            connection.execute(sa.select(card_suggestion.c.uuid, card_suggestion.c.key)).all()
        )
    assert row.hook_instance == "hi-1" and row.hook == "patient-view"
    assert row.primary_finding == "low-grip-strength"
    assert row.findings == ["low-grip-strength", "slow-gait"]
    assert row.pack_version == "sarcopenia@1.0.0"
    assert row.sent_at == T0 and row.sent_at.tzinfo is not None
    assert keys == {"s-a1": "pt-referral", "s-b1": "dietitian-referral", "s-b2": "oral-nutrition"}


def test_record_cards_is_idempotent(store):
    a = card("low-smi", suggestions={"s1": "ct-review"})
    record(store, "p1", a)
    record(store, "p1", a)
    record(store, "p1", a, card())
    assert count(store, "card_sent") == 2
    assert count(store, "card_suggestion") == 1


def test_sent_at_stored_in_utc(store):
    local = datetime(2026, 3, 1, 8, 0, tzinfo=timezone(timedelta(hours=8)))
    a = card()
    record(store, "p1", a, sent_at=local)
    with store.engine.connect() as connection:
        sent = connection.execute(sa.select(card_sent.c.sent_at)).scalar_one()
    assert sent == local and sent.utcoffset() == timedelta(0)
    assert sent == datetime(2026, 3, 1, 0, 0, tzinfo=UTC)


def test_naive_datetime_refused(store):
    import pytest

    with pytest.raises(ValueError, match="timezone-aware"):
        record(store, "p1", card(), sent_at=datetime(2026, 1, 1))
    assert count(store, "card_sent") == 0


def test_feedback_before_its_card_is_linked_later(store):
    a = card(suggestions={"s1": "dietitian-referral"})
    result = store.record_feedback("sarcopenia-patient-view", [accepted(a["uuid"], "s1")], datetime.now(UTC))
    assert result.unknown_cards == [a["uuid"]]
    record(store, "p1", a)
    with store.engine.connect() as connection:
        linked = connection.execute(sa.select(feedback.c.card_sent_uuid)).scalar_one()
    assert linked == a["uuid"]
    assert store.stats()["feedback_unknown_card"] == 0
