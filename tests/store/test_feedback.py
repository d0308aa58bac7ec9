"""Feedback: stored once per (card, outcome, outcomeTimestamp), whatever the concurrency."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from cds_service.store.models import feedback

from .helpers import T0, accepted, card, count, iso, overridden, record

NOW = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)


def test_posted_twice_stored_once(store):
    c = card(suggestions={"s1": "dietitian-referral"})
    record(store, "p1", c)
    entries = [overridden(c["uuid"], comment="declined today"), accepted(c["uuid"], "s1")]
    first = store.record_feedback("sarcopenia-patient-view", entries, NOW)
    second = store.record_feedback("sarcopenia-patient-view", entries, NOW)
    assert (first.stored, first.duplicates, first.unknown_cards) == (2, 0, [])
    assert (second.stored, second.duplicates, second.unknown_cards) == (0, 2, [])
    assert count(store, "feedback") == 2


def test_same_instant_in_another_offset_is_a_duplicate(store):
    c = card()
    record(store, "p1", c)
    store.record_feedback("sarcopenia-patient-view", [overridden(c["uuid"], at=T0)], NOW)
    shifted = overridden(c["uuid"])
    shifted["outcomeTimestamp"] = "2026-01-15T17:30:00+08:00"  # T0, seen from Shanghai
    assert store.record_feedback("sarcopenia-patient-view", [shifted], NOW).duplicates == 1
    later = overridden(c["uuid"], at=T0.replace(second=1))
    assert store.record_feedback("sarcopenia-patient-view", [later], NOW).stored == 1


def test_duplicate_within_one_post(store):
    c = card()
    result = store.record_feedback("sarcopenia-patient-view", [overridden(c["uuid"])] * 3, NOW)
    assert (result.stored, result.duplicates) == (1, 2)


def test_fields_stored(store):
    c = card(suggestions={"s1": "dietitian-referral", "s2": "pt-referral"})
    record(store, "p1", c)
    store.record_feedback(
        "sarcopenia-patient-view",
        [
            overridden(
                c["uuid"], code="palliative-focus", display="Palliative focus", comment="free text"
            ),
            accepted(c["uuid"], "s1", "s2"),
        ],
        NOW,
    )
    with store.engine.connect() as connection:
        rows = {r.outcome: r for r in connection.execute(sa.select(feedback))}
    o, a = rows["overridden"], rows["accepted"]
    assert o.card_uuid == o.card_sent_uuid == c["uuid"]
    assert o.override_reason_code == "palliative-focus"
    assert o.override_reason_system == "https://sarcopenia-cds.org/CodeSystem/override-reason"
    assert o.override_reason_display == "Palliative focus"
    assert o.user_comment == "free text"
    assert o.outcome_timestamp == T0 and o.received_at == NOW
    assert o.service_id == "sarcopenia-patient-view"
    assert (o.issuer, o.tenant, o.lift_id) == ("", "", None)
    assert o.accepted_suggestions == []
    assert a.accepted_suggestions == ["s1", "s2"]
    assert a.override_reason_code is None and a.user_comment is None


def test_unknown_card_still_stored(store):
    result = store.record_feedback("sarcopenia-patient-view", [overridden("never-sent"), accepted("also-unknown")], NOW)
    assert (result.stored, result.duplicates) == (2, 0)
    assert result.unknown_cards == ["never-sent", "also-unknown"]
    with store.engine.connect() as connection:
        links = connection.execute(sa.select(feedback.c.card_uuid, feedback.c.card_sent_uuid)).all()
    assert sorted(links) == [("also-unknown", None), ("never-sent", None)]
    stats = store.stats()
    assert stats["feedback"] == 2 and stats["feedback_unknown_card"] == 2


def test_user_comment_never_logged(store, caplog):
    secret = "Mrs Example, DOB 1950-02-03, refuses"
    c = card()
    record(store, "Patient/raw-id-77", c)
    with caplog.at_level(logging.DEBUG):
        store.record_feedback("sarcopenia-patient-view", [overridden(c["uuid"], comment=secret)], NOW)
        store.record_feedback("sarcopenia-patient-view", [overridden("unknown", comment=secret)], NOW)
        store.suppressions("Patient/raw-id-77", NOW, {}, 30, 90)
    text = "\n".join(
        [r.getMessage() for r in caplog.records] + [repr(r.__dict__) for r in caplog.records]
    )
    assert caplog.records, "nothing was logged: the check would prove nothing"
    assert secret not in text and "raw-id-77" not in text


def test_bad_timestamp_rejects_the_whole_post(store):
    c = card()
    with pytest.raises(ValueError):
        store.record_feedback(
            "sarcopenia-patient-view",
            [overridden(c["uuid"]), {**overridden(c["uuid"]), "outcomeTimestamp": "soon"}],
            NOW,
        )
    assert count(store, "feedback") == 0


def test_concurrent_duplicate_posts_stored_once(make_store):
    workers = [make_store() for _ in range(4)]  # four "gunicorn workers", four pools
    cards = [card(suggestions={f"s-{i}": "dietitian-referral"}) for i in range(20)]
    record(workers[0], "p1", *cards)
    entries = (
        [overridden(c["uuid"], comment="x") for c in cards]
        + [accepted(c["uuid"], f"s-{i}") for i, c in enumerate(cards)]
        + [overridden(f"unknown-{i}") for i in range(10)]
    )
    threads_n = 16
    barrier = threading.Barrier(threads_n)
    results, errors = [], []

    def post(i: int) -> None:
        barrier.wait()
        try:
            batch = entries[i % 5 :] + entries[: i % 5]  # same entries, different order
            results.append(workers[i % 4].record_feedback("sarcopenia-patient-view", batch, NOW))
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(r.stored for r in results) == len(entries)
    assert sum(r.duplicates for r in results) == len(entries) * (threads_n - 1)
    assert count(workers[0], "feedback") == len(entries)


def test_timestamp_formats():
    from cds_service.store import parse_timestamp

    assert parse_timestamp("2026-01-15T09:30:00Z") == T0
    assert parse_timestamp("2026-01-15T09:30:00.000Z") == T0
    assert parse_timestamp("2026-01-15T10:30:00+01:00") == T0
    assert parse_timestamp("2026-01-15T09:30:00") == T0  # no offset: UTC, as the spec says
    assert parse_timestamp(iso(T0)) == T0
    with pytest.raises(ValueError):
        parse_timestamp("15/01/2026")


@pytest.mark.parametrize("missing", ["card", "outcome", "outcomeTimestamp"])
def test_entry_without_required_field_is_a_value_error(store, missing):
    entry = overridden("c1")
    del entry[missing]
    with pytest.raises(ValueError, match=missing):
        store.record_feedback("sarcopenia-patient-view", [entry], NOW)


def test_database_errors_do_not_carry_the_comment(make_store):
    secret = "Mr Example lives at 1 High Street"
    store = make_store(migrate=False)  # no tables: the insert fails inside the database
    with pytest.raises(sa.exc.DBAPIError) as raised:
        store.record_feedback("sarcopenia-patient-view", [overridden("c1", comment=secret)], NOW)
    assert secret not in str(raised.value)
    assert "hidden due to hide_parameters" in str(raised.value)
