"""A slow or failing FHIR server: the service answers within fhir.budget_seconds + 200 ms with the right outcome.

Each fault runs against a FhirTestServer on 127.0.0.1 (tests/support/fhir_server.py):
- with the Patient in the prefetch and the other keys to fetch → 200 with the cards the service can make and a
  `fhir-data-unavailable` warning per key, naming the key and why;
- with nothing in the prefetch → 412, every key named with the reason (nothing to go on);
then the next request, to a healthy server, answers with the full cards.
"""

from __future__ import annotations

from datetime import UTC

import pytest
import requests

from tests.resilience.helpers import (
    BUDGET,
    PV,
    SLACK,
    UNKNOWN,
    diagnostics,
    fetching_body,
    full_body,
    timed,
    topics,
    warnings_of,
)
from tests.support import tokens
from tests.support.fhir_server import FhirTestServer
from tests.support.patients import severe_sarcopenia
from tests.support.server import running_service

SEARCH_KEYS = {"conditions": "Condition", "imagingStudies": "ImagingStudy", "observations": "Observation",
               "serviceRequests": "ServiceRequest"}
FAULTS = {
    "slow": "the FHIR server did not answer in time",
    "500": "the FHIR server answered HTTP 500",
    "html": "the FHIR server answered text/html, not FHIR JSON",
    "close": "the FHIR server could not be reached or closed the connection",
}


@pytest.fixture()
def healthy():
    with FhirTestServer(severe_sarcopenia(), page_size=3) as server:
        yield server


@pytest.fixture()
def faulty():
    with FhirTestServer(severe_sarcopenia(), page_size=3) as server:
        server.delay = 5.0
        yield server


def expected_cards(ehr) -> list[str]:
    response = ehr.post(PV, full_body(ehr))
    assert response.status_code == 200
    return topics(response.get_json())


def assert_healthy_server_works(ehr, healthy, cards: list[str]) -> None:
    response, elapsed = timed(ehr.post, PV, fetching_body(ehr, healthy.base, keep=()))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert topics(response.get_json()) == cards
    assert warnings_of(response.get_json(), "fhir-data-unavailable") == []
    assert elapsed < BUDGET + SLACK


@pytest.mark.parametrize("mode", FAULTS)
def test_partial_answer_with_a_warning_per_key_within_the_budget(ehr, faulty, healthy, mode):
    cards = expected_cards(ehr)
    faulty.mode = mode
    response, elapsed = timed(ehr.post, PV, fetching_body(ehr, faulty.base, keep=("patient",)))
    assert elapsed < BUDGET + SLACK, f"{mode}: answered after {elapsed:.3f} s"
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert warnings_of(body, "fhir-data-unavailable") == [
        f"prefetch '{key}' could not be fetched: {FAULTS[mode]}" + UNKNOWN.format(kind)
        for key, kind in sorted(SEARCH_KEYS.items())
    ]
    assert len(faulty.requests) >= len(SEARCH_KEYS)
    faulty.mode = "ok"
    assert_healthy_server_works(ehr, healthy, cards)


@pytest.mark.parametrize("mode", FAULTS)
def test_nothing_to_go_on_is_412_naming_every_key_within_the_budget(ehr, faulty, healthy, mode):
    cards = expected_cards(ehr)
    faulty.mode = mode
    response, elapsed = timed(ehr.post, PV, fetching_body(ehr, faulty.base, keep=()))
    assert elapsed < BUDGET + SLACK, f"{mode}: answered after {elapsed:.3f} s"
    assert response.status_code == 412, response.get_data(as_text=True)
    assert diagnostics(response.get_json()) == [
        f"prefetch '{key}' could not be fetched: {FAULTS[mode]}"
        for key in sorted(["patient", *SEARCH_KEYS])
    ]
    faulty.mode = "ok"
    assert_healthy_server_works(ehr, healthy, cards)


def test_patient_missing_is_412_even_when_the_searches_work(ehr, faulty):
    """The Patient itself could not be read: 412, not an answer without age or sex."""
    faulty.resources = [r for r in severe_sarcopenia() if r["resourceType"] != "Patient"]
    response, elapsed = timed(ehr.post, PV, fetching_body(ehr, faulty.base, keep=()))
    assert elapsed < BUDGET + SLACK
    assert response.status_code == 412
    assert diagnostics(response.get_json()) == ["prefetch 'patient' could not be fetched: the FHIR server answered HTTP 404"]


def test_operation_outcome_answers_are_partial_data(ehr, faulty):
    faulty.mode = "outcome"
    response = ehr.post(PV, fetching_body(ehr, faulty.base, keep=("patient",)))
    assert response.status_code == 200
    assert warnings_of(response.get_json(), "fhir-data-unavailable") == [
        f"prefetch '{key}': the FHIR server answered an OperationOutcome" + UNKNOWN.format(kind)
        for key, kind in sorted(SEARCH_KEYS.items())
    ]


def test_paging_forever_stops_at_the_page_limit_with_cards_and_a_warning(ehr, faulty, healthy):
    cards = expected_cards(ehr)
    faulty.mode = "forever"
    response, elapsed = timed(ehr.post, PV, fetching_body(ehr, faulty.base, keep=()))
    assert elapsed < BUDGET + SLACK
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert topics(body) == cards
    assert warnings_of(body, "fhir-data-unavailable") == []
    assert sorted(warnings_of(body, "fhir-data")) == [
        f"'{key}': paging stopped after 10 pages" for key in sorted(SEARCH_KEYS)]
    assert len(faulty.requests) == 1 + 10 * len(SEARCH_KEYS)
    faulty.mode = "ok"
    assert_healthy_server_works(ehr, healthy, cards)


def test_the_cards_the_service_can_make_still_come(ehr, faulty):
    """Observations and Conditions prefetched, imaging and orders failing: the sarcopenia card still comes."""
    faulty.mode = "500"
    body = fetching_body(ehr, faulty.base, keep=("patient", "conditions", "observations"))
    response = ehr.post(PV, body)
    assert response.status_code == 200
    assert "severe-sarcopenia" in topics(response.get_json())
    assert warnings_of(response.get_json(), "fhir-data-unavailable") == [
        f"prefetch '{key}' could not be fetched: the FHIR server answered HTTP 500" + UNKNOWN.format(kind)
        for key, kind in (("imagingStudies", "ImagingStudy"), ("serviceRequests", "ServiceRequest"))
    ]


def test_the_breaker_opens_per_server_and_fails_fast(ehr, faulty, healthy):
    """After breaker_failures failing requests a server is paused (fast 412), other servers are
    unaffected. One request counts once, however many of its fetches failed."""
    cards = expected_cards(ehr)
    faulty.mode = "500"
    for _ in range(5):  # fhir.breaker_failures: five requests, each with five failing keys
        seen = len(faulty.requests)
        assert ehr.post(PV, fetching_body(ehr, faulty.base, keep=())).status_code == 412
        assert len(faulty.requests) > seen, "the circuit is still closed"
    faulty.mode = "ok"
    seen = len(faulty.requests)
    response, elapsed = timed(ehr.post, PV, fetching_body(ehr, faulty.base, keep=()))
    assert response.status_code == 412
    assert elapsed < 0.5
    assert len(faulty.requests) == seen, "an open circuit sends nothing"
    assert set(diagnostics(response.get_json())) == {
        f"prefetch '{key}' could not be fetched: the FHIR server failed repeatedly; calls are paused (circuit open)"
        for key in ["patient", *SEARCH_KEYS]}
    assert_healthy_server_works(ehr, healthy, cards)


def _signed(base: str, path: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens.token(base + path)}"}


@pytest.mark.slow
def test_real_server_process_answers_a_slow_fhir_server_within_the_budget(tmp_path):
    """The same through `sarcopenia-cds serve`: slow (5 s) → 200 with warnings in time, then a healthy server."""
    from datetime import datetime

    from tests.conftest import NOW
    from tests.support.ehr import hook_request, prefetch_for, shift_dates

    resources = shift_dates(severe_sarcopenia(), datetime.now(UTC) - NOW)
    url = f"sqlite:///{tmp_path / 'faults.db'}"
    with running_service(url, tmp_path) as (base, _process), \
            FhirTestServer(resources, page_size=3) as slow, FhirTestServer(resources, page_size=3) as ok:
        slow.mode, slow.delay = "slow", 5.0
        discovery = requests.get(base + "/cds-services", headers=_signed(base, "/cds-services"), timeout=5).json()
        templates = next(s for s in discovery["services"] if s["id"] == PV.rsplit("/", 1)[1])["prefetch"]
        prefetch = prefetch_for(resources, templates)
        warm = requests.post(base + PV, json=hook_request("patient-view", "sev-1", prefetch), headers=_signed(base, PV),
                             timeout=10)  # the first call of a worker loads what it needs; time the next ones
        assert warm.status_code == 200
        for server, status in ((slow, 200), (ok, 200)):
            body = hook_request("patient-view", "sev-1", {"patient": prefetch["patient"]})
            body["fhirServer"] = server.base
            body["fhirAuthorization"] = {"access_token": "at-process", "token_type": "Bearer", "expires_in": 300,
                                         "scope": "patient/*.read", "subject": "sarcopenia-cds"}
            response, elapsed = timed(requests.post, base + PV, json=body, headers=_signed(base, PV), timeout=10)
            assert elapsed < BUDGET + SLACK, f"answered after {elapsed:.3f} s"
            assert response.status_code == status, response.text
            unavailable = warnings_of(response.json(), "fhir-data-unavailable")
            if server is slow:
                assert unavailable == [f"prefetch '{key}' could not be fetched: {FAULTS['slow']}" + UNKNOWN.format(kind)
                                       for key, kind in sorted(SEARCH_KEYS.items())]
            else:
                assert unavailable == []
                assert "severe-sarcopenia" in topics(response.json())
