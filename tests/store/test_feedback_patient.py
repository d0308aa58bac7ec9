"""Feedback carries its card's patient: set when linked, now or when the card arrives later."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from cds_service.store.models import feedback

from .helpers import T0, accepted, card, overridden, record

OVERRIDE_DAYS = {"patient-declined": 90}


def suppressed(store, patient, now=T0 + timedelta(days=1)):
    return store.suppressions(patient, now, OVERRIDE_DAYS, 30, 90)


def feedback_patients(store) -> dict[str, str | None]:
    with store.engine.connect() as connection:
        rows = connection.execute(sa.select(feedback.c.outcome, feedback.c.patient_pseudonym))
        return dict(rows.all())


def test_feedback_on_a_known_card_carries_its_patient(store):
    c = card(suggestions={"s1": "dietitian-referral"})
    record(store, "Patient/a", c)
    store.record_feedback("sarcopenia-patient-view", [overridden(c["uuid"]), accepted(c["uuid"], "s1")], T0)
    assert feedback_patients(store) == {
        "overridden": store.pseudonymise("Patient/a"),
        "accepted": store.pseudonymise("Patient/a"),
    }


def test_feedback_on_an_unknown_card_has_no_patient(store):
    store.record_feedback("sarcopenia-patient-view", [overridden("never-sent")], T0)
    assert feedback_patients(store) == {"overridden": None}


def test_feedback_linked_later_suppresses(store):
    early = card("low-smi", suggestions={"s1": "dietitian-referral"})
    store.record_feedback("sarcopenia-patient-view", [overridden(early["uuid"]), accepted(early["uuid"], "s1")], T0)
    assert suppressed(store, "Patient/a").findings == frozenset()

    record(store, "Patient/a", early)

    s = suppressed(store, "Patient/a")
    assert s.findings == frozenset({"low-smi"})
    assert s.suggestions == frozenset({"dietitian-referral"})
    assert set(feedback_patients(store).values()) == {store.pseudonymise("Patient/a")}
    assert suppressed(store, "Patient/b").findings == frozenset()


def test_a_card_recorded_again_keeps_its_first_patient(store):
    """A uuid already recorded is left as it was, and so is the patient its feedback gets."""
    c = card("low-smi")
    record(store, "Patient/a", c)
    store.record_feedback("sarcopenia-patient-view", [overridden(c["uuid"])], T0)
    record(store, "Patient/b", c)
    assert suppressed(store, "Patient/a").findings == frozenset({"low-smi"})
    assert suppressed(store, "Patient/b").findings == frozenset()


def test_overrides_and_acceptances_of_several_cards_in_one_read(store):
    a = card("low-smi", ["low-smi", "low-grip-strength"], suggestions={"s1": "dietitian-referral"})
    b = card("low-gait-speed", suggestions={"s2": "physio-referral", "s3": "dietitian-referral"})
    old = card("weight-loss")
    record(store, "Patient/a", a, b)
    record(store, "Patient/a", old, sent_at=T0 - timedelta(days=201))
    store.record_feedback(
        "sarcopenia-patient-view",
        [
            overridden(a["uuid"]),
            accepted(b["uuid"], "s2"),
            overridden(old["uuid"], at=T0 - timedelta(days=200)),
            accepted(a["uuid"], "s2"),  # another card's suggestion id: not a's to accept
        ],
        T0,
    )
    s = suppressed(store, "Patient/a")
    assert s.findings == frozenset({"low-smi", "low-grip-strength"})
    assert s.suggestions == frozenset({"physio-referral"})


def test_early_feedback_on_several_cards_of_one_response_all_linked(store):
    a, b, c = card("low-smi"), card("low-grip-strength"), card("low-gait-speed")
    store.record_feedback("sarcopenia-patient-view", [overridden(a["uuid"]), overridden(c["uuid"])], T0)
    record(store, "Patient/a", a, b, c)
    assert suppressed(store, "Patient/a").findings == frozenset({"low-smi", "low-gait-speed"})
    assert store.stats()["feedback_unknown_card"] == 0
