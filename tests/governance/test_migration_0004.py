"""0004 on a database created at the old head (0003): nothing stored is lost, old calls count."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from cds_service.governance import build_report
from cds_service.store import migrator


def _old_rows(connection, patient: str) -> None:
    """Two calls' cards, a suggestion and feedback as the 0003 release stored them."""
    connection.execute(sa.text(
        "INSERT INTO card_sent (uuid, hook_instance, service_id, hook, patient_pseudonym, pack_version,"
        " primary_finding, findings, sent_at) VALUES (:uuid, :hi, 'sarcopenia-patient-view', 'patient-view',"
        " :patient, 'sarcopenia-core@0.9.0', :finding, :findings, :at)"), [
        {"uuid": "old-1", "hi": "hi-1", "patient": patient, "finding": "low-smi", "findings": '["low-smi"]',
         "at": "2026-01-15 09:00:00"},
        {"uuid": "old-2", "hi": "hi-1", "patient": patient, "finding": "cachexia", "findings": '["cachexia"]',
         "at": "2026-01-15 09:00:00"},
        {"uuid": "old-3", "hi": "hi-2", "patient": patient, "finding": "low-smi", "findings": '["low-smi"]',
         "at": "2026-02-03 10:00:00"},
    ])
    connection.execute(sa.text(
        "INSERT INTO card_suggestion (uuid, card_uuid, key) VALUES ('s-1', 'old-1', 'dietitian-referral')"))
    connection.execute(sa.text(
        "INSERT INTO feedback (card_uuid, card_sent_uuid, patient_pseudonym, outcome, outcome_timestamp,"
        " override_reason_system, override_reason_code, user_comment, accepted_suggestions, service_id,"
        " received_at) VALUES ('old-3', 'old-3', :patient, 'overridden', '2026-02-03 10:05:00',"
        " 'https://sarcopenia-cds.org/CodeSystem/override-reason', 'patient-declined', 'kept words', '[]',"
        " 'sarcopenia-patient-view', '2026-02-03 10:05:00')"), {"patient": patient})


def test_upgrade_from_0003_keeps_everything_and_counts_the_old_calls(make_store):
    store = make_store(migrate=False)
    migrator.upgrade(store.engine, "0003")
    patient = store.pseudonymise("Patient/old")
    with store.engine.begin() as connection:
        _old_rows(connection, patient)
    store.migrate()
    assert migrator.current(store.engine) == "0004"

    with store.engine.connect() as connection:
        calls = connection.execute(sa.text(
            "SELECT id, hook_instance, status, cards, duration_ms, issuer FROM hook_call ORDER BY id")).all()
        cards = connection.execute(sa.text("SELECT uuid, call_id, issuer FROM card_sent ORDER BY uuid")).all()
        kept = connection.execute(sa.text(
            "SELECT card_uuid, user_comment, override_reason_code, issuer, lift_id FROM feedback")).all()
        suggestions = connection.execute(sa.text("SELECT uuid, card_uuid, key FROM card_suggestion")).all()
    assert [tuple(c) for c in calls] == [
        ("legacy:sarcopenia-patient-view:hi-1", "hi-1", 200, 2, None, None),
        ("legacy:sarcopenia-patient-view:hi-2", "hi-2", 200, 1, None, None),
    ]
    assert [tuple(c) for c in cards] == [
        ("old-1", "legacy:sarcopenia-patient-view:hi-1", None),
        ("old-2", "legacy:sarcopenia-patient-view:hi-1", None),
        ("old-3", "legacy:sarcopenia-patient-view:hi-2", None),
    ]
    assert [tuple(k) for k in kept] == [("old-3", "kept words", "patient-declined", None, None)]
    assert [tuple(s) for s in suggestions] == [("s-1", "old-1", "dietitian-referral")]

    # the old override still suppresses, for every caller (its caller was never recorded)
    now = datetime(2026, 2, 10, tzinfo=UTC)
    for issuer in ("https://ehr-a.test", "https://ehr-b.test"):
        hidden = store.suppressions("Patient/old", now, {"patient-declined": 90}, 30, 90,
                                    service_id="sarcopenia-patient-view", issuer=issuer, tenant="")
        assert hidden.findings == frozenset({"low-smi"})

    report = build_report(store, datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC))
    assert [(c["month"], c["calls"], c["p50_ms"]) for c in report.calls] == [("2026-01", 1, None), ("2026-02", 1, None)]
    feb = [r for r in report.rows if r["month"] == "2026-02" and r["finding"] == "low-smi"]
    assert [(r["cards"], r["overridden"], r["overridden_by_reason"]) for r in feb] == [(1, 1, {"patient-declined": 1})]

    migrator.downgrade(store.engine, "0003")  # and back: the old columns and rows are intact
    with store.engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM card_sent")).scalar_one() == 3
        assert connection.execute(sa.text("SELECT user_comment FROM feedback")).scalar_one() == "kept words"
    store.migrate()
