"""Suppression windows, with exact day arithmetic: now < outcomeTimestamp + period."""

from __future__ import annotations

from datetime import timedelta

import pytest

from .helpers import T0, accepted, card, overridden, record

OVERRIDE_DAYS = {"patient-declined": 90, "measurement-doubtful": 14}
DEFAULT_DAYS = 30
REFERRAL_DAYS = 90
PATIENT = "Patient/p-1"


def suppressed(store, now, patient=PATIENT):
    return store.suppressions(patient, now, OVERRIDE_DAYS, DEFAULT_DAYS, REFERRAL_DAYS)


@pytest.fixture
def declined(store):
    """A low-SMI card (also listing low grip strength), overridden at T0 as patient-declined."""
    c = card("low-smi", ["low-smi", "low-grip-strength"])
    record(store, PATIENT, c)
    store.record_feedback("sarcopenia-patient-view", [overridden(c["uuid"], at=T0, code="patient-declined")], T0)
    return store


def test_nothing_recorded(store):
    s = suppressed(store, T0)
    assert s.findings == frozenset() and s.suggestions == frozenset()


@pytest.mark.parametrize(
    ("elapsed", "expected"),
    [
        (timedelta(0), True),
        (timedelta(days=1), True),
        (timedelta(days=89), True),
        (timedelta(days=90) - timedelta(microseconds=1), True),
        (timedelta(days=90), False),  # the period has elapsed
        (timedelta(days=91), False),
        (timedelta(days=400), False),
    ],
    ids=["day0", "day1", "day89", "day90-1us", "day90", "day91", "day400"],
)
def test_override_with_reason_90_days(declined, elapsed, expected):
    s = suppressed(declined, T0 + elapsed)
    if expected:
        assert s.findings == frozenset({"low-smi", "low-grip-strength"})
    else:
        assert s.findings == frozenset()
    assert s.suggestions == frozenset()


def test_only_this_patient(declined):
    assert (
        suppressed(declined, T0 + timedelta(days=1), patient="Patient/p-2").findings == frozenset()
    )


def test_override_without_reason_does_not_suppress(store):
    c = card("low-smi")
    record(store, PATIENT, c)
    store.record_feedback(
        "sarcopenia-patient-view",
        [
            overridden(c["uuid"], at=T0, code=None),
            overridden(c["uuid"], at=T0 + timedelta(hours=1), code=None, comment="no coded reason"),
        ],
        T0 + timedelta(hours=1),
    )
    assert suppressed(store, T0 + timedelta(days=1)).findings == frozenset()


@pytest.mark.parametrize(
    ("code", "display", "days"),
    [
        ("measurement-doubtful", None, 14),  # its own period
        ("some-local-code", None, DEFAULT_DAYS),  # a code without a period: the default
        (None, "Patient wants to wait", DEFAULT_DAYS),  # uncoded reason: the default
    ],
)
def test_period_by_reason(store, code, display, days):
    c = card("slow-gait")
    record(store, PATIENT, c)
    store.record_feedback("sarcopenia-patient-view", [overridden(c["uuid"], at=T0, code=code, display=display)], T0)
    assert suppressed(store, T0 + timedelta(days=days - 1)).findings == {"slow-gait"}
    assert suppressed(store, T0 + timedelta(days=days + 1)).findings == frozenset()


def test_override_on_unknown_card_suppresses_nothing(store):
    store.record_feedback("sarcopenia-patient-view", [overridden("not-ours", at=T0)], T0)
    assert suppressed(store, T0 + timedelta(days=1)).findings == frozenset()


def test_accepted_suggestion_suppressed_within_referral_days(store):
    c = card("cachexia", suggestions={"s-diet": "dietitian-referral", "s-pt": "pt-referral"})
    record(store, PATIENT, c)
    store.record_feedback("sarcopenia-patient-view", [accepted(c["uuid"], "s-diet", at=T0)], T0)
    for day, expected in [(0, True), (89, True), (90, False), (91, False)]:
        s = suppressed(store, T0 + timedelta(days=day))
        assert s.suggestions == (frozenset({"dietitian-referral"}) if expected else frozenset()), (
            day
        )
        assert s.findings == frozenset()  # accepting is not overriding
    assert (
        suppressed(store, T0 + timedelta(days=1), patient="Patient/p-2").suggestions == frozenset()
    )


def test_accepted_suggestion_of_another_card_ignored(store):
    a = card("cachexia", suggestions={"s-a": "dietitian-referral"})
    b = card("low-smi", suggestions={"s-b": "ct-review"})
    record(store, PATIENT, a, b)
    # the EHR names card a but b's suggestion: nothing to suppress
    store.record_feedback("sarcopenia-patient-view", [accepted(a["uuid"], "s-b", at=T0)], T0)
    assert suppressed(store, T0 + timedelta(days=1)).suggestions == frozenset()


def test_period_changes_apply_to_stored_feedback(declined):
    """Periods come from today's configuration, not from the one at feedback time."""
    now = T0 + timedelta(days=60)
    longer = declined.suppressions(PATIENT, now, {"patient-declined": 30}, 30, 90)
    assert longer.findings == frozenset()
    assert suppressed(declined, now).findings == {"low-smi", "low-grip-strength"}


def test_naive_now_refused(store):
    with pytest.raises(ValueError, match="timezone-aware"):
        suppressed(store, T0.replace(tzinfo=None))
