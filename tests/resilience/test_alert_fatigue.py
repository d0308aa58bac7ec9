"""Alert-fatigue control from feedback, end to end through the app, on SQLite and PostgreSQL (issue item 5).

- an override with a reason hides the same finding for the same patient for suppression.override_days[reason]
  (the card disappears or is recomposed without it), and it comes back after the period;
- an override without a reason hides nothing;
- an accepted dietitian referral is not suggested again within suppression.accepted_referral_days, nor while an
  open ServiceRequest (active, SNOMED 103699006) is in the prefetch;
- two app instances on one database (two gunicorn workers) share it: feedback to one suppresses on the other.
Time moves through the app's clock (create_app(config, clock=...)); the patient's data moves with it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from cds_service.app import create_app
from tests.conftest import BASE_URL, NOW, service_config
from tests.resilience.helpers import DIETITIAN, PV, all_suggestion_codes, topics
from tests.support.ehr import EhrClient, hook_request, prefetch_for, shift_dates
from tests.support.patients import severe_sarcopenia
from tests.support.pg import temporary_database

REASON_SYSTEM = "https://sarcopenia-cds.org/CodeSystem/override-reason"
DECLINED_DAYS = 7
REFERRAL_DAYS = 14
SEVERE = "severe-sarcopenia"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fatigue.db'}"
        return
    with temporary_database("fatigue") as url:  # holds the shared PostgreSQL restart lock
        yield url


@pytest.fixture()
def workers(database_url, tmp_path):
    """Two apps on one database, like two gunicorn workers, sharing one clock."""
    clock = Clock(NOW)
    config = service_config(tmp_path, database={"url": database_url},
                            privacy={"pseudonym_key": "fatigue-test-key"},
                            suppression={"override_days": {"patient-declined": DECLINED_DAYS},
                                         "default_override_days": 30, "accepted_referral_days": REFERRAL_DAYS})
    apps = [create_app(config, clock=clock) for _ in range(2)]
    yield [EhrClient(app.test_client(), BASE_URL) for app in apps], clock
    for app in apps:
        app.extensions["cds"].store.dispose()


def fire(ehr, clock, extra=(), patient="sev-1"):
    """patient-view for the synthetic patient, its data dated relative to the clock."""
    resources = shift_dates(severe_sarcopenia(), clock.now - NOW) + list(extra)
    response = ehr.post(PV, hook_request("patient-view", patient, prefetch_for(resources, ehr.templates("patient-view"))))
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def feedback(ehr, entries):
    response = ehr.post(PV + "/feedback", {"feedback": entries})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def stamp(clock) -> str:
    return clock.now.strftime("%Y-%m-%dT%H:%M:%SZ")


def override(card, clock, reason=True):
    entry = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": stamp(clock)}
    if reason:
        entry["overrideReason"] = {"reason": {"system": REASON_SYSTEM, "code": "patient-declined",
                                              "display": "Patient declined"}}
    return entry


def card_with(body, topic):
    return next(c for c in body["cards"] if c["source"]["topic"]["code"] == topic)


def test_override_with_a_reason_hides_the_finding_for_its_period_on_both_workers(workers):
    (one, two), clock = workers
    first = fire(one, clock)
    assert SEVERE in topics(first)
    assert feedback(one, [override(card_with(first, SEVERE), clock)]) == {"stored": 1, "duplicates": 0}

    for ehr in (one, two):  # the other worker sees the same store
        assert SEVERE not in topics(fire(ehr, clock))
    clock.now = NOW + timedelta(days=DECLINED_DAYS) - timedelta(minutes=1)
    assert SEVERE not in topics(fire(two, clock)), "still inside the patient-declined period"
    clock.now = NOW + timedelta(days=DECLINED_DAYS, minutes=1)
    assert SEVERE in topics(fire(one, clock)), "shown again after the period"


def test_another_patient_is_not_suppressed(workers):
    (one, two), clock = workers
    first = fire(one, clock)
    feedback(one, [override(card_with(first, SEVERE), clock)])
    other = [{**r, "id": r["id"].replace("sev-1", "sev-2")} for r in severe_sarcopenia()]
    resources = [dict(r, subject={"reference": "Patient/sev-2"}) if "subject" in r else r for r in other]
    response = two.post(PV, hook_request("patient-view", "sev-2", prefetch_for(resources, two.templates("patient-view"))))
    assert SEVERE in topics(response.get_json())


def test_override_without_a_reason_hides_nothing(workers):
    (one, two), clock = workers
    first = fire(one, clock)
    card = card_with(first, SEVERE)
    without = override(card, clock, reason=False)
    without["overrideReason"] = {"userComment": "not now"}
    assert feedback(one, [without])["stored"] == 1
    assert SEVERE in topics(fire(two, clock))
    assert topics(fire(one, clock)) == topics(first)


def test_accepted_dietitian_referral_is_not_suggested_again_within_its_period(workers):
    (one, two), clock = workers
    first = fire(one, clock)
    card = next(c for c in first["cards"] if DIETITIAN in [s for s in _codes(c)])
    suggestion = next(s for s in card["suggestions"] if _codes({"suggestions": [s]}) == [DIETITIAN])
    accepted = {"card": card["uuid"], "outcome": "accepted", "acceptedSuggestions": [{"id": suggestion["uuid"]}],
                "outcomeTimestamp": stamp(clock)}
    assert feedback(two, [accepted]) == {"stored": 1, "duplicates": 0}
    for ehr in (one, two):
        body = fire(ehr, clock)
        assert SEVERE in topics(body), "the finding itself is still shown"
        assert DIETITIAN not in all_suggestion_codes(body)
    clock.now = NOW + timedelta(days=REFERRAL_DAYS) - timedelta(minutes=1)
    assert DIETITIAN not in all_suggestion_codes(fire(one, clock))
    clock.now = NOW + timedelta(days=REFERRAL_DAYS, minutes=1)
    assert DIETITIAN in all_suggestion_codes(fire(two, clock)), "suggested again after the period"


def test_an_open_dietitian_referral_in_the_prefetch_is_not_suggested_again(workers):
    (one, _two), clock = workers
    assert DIETITIAN in all_suggestion_codes(fire(one, clock))
    referral = {"resourceType": "ServiceRequest", "id": "sev-1-sr", "status": "active", "intent": "order",
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": DIETITIAN}]},
                "subject": {"reference": "Patient/sev-1"}, "authoredOn": "2026-11-21"}
    body = fire(one, clock, extra=[referral])
    assert SEVERE in topics(body)
    assert DIETITIAN not in all_suggestion_codes(body)
    done = {**referral, "status": "completed"}
    assert DIETITIAN in all_suggestion_codes(fire(one, clock, extra=[done])), "a completed referral is not open"


def _codes(card):
    from tests.resilience.helpers import suggestion_codes
    return suggestion_codes(card)
