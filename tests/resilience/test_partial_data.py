"""Partial answers: a key that failed to fetch makes its resource type unknown, never 'missing'.

`observations: null` in the prefetch means the EHR has none, so "no L3 muscle value on record" is a real
finding (the CT body-composition card). The same key failing on the FHIR server means the service does
not know: that card must not appear, and the warning says which key failed and why.
"""

from __future__ import annotations

import pytest

from tests.resilience.helpers import PV, UNKNOWN, fetching_body, full_body, topics, warnings_of
from tests.support.ehr import hook_request, prefetch_for
from tests.support.fhir_server import FhirTestServer
from tests.support.patients import severe_sarcopenia

CT_CARD = "ct-body-composition-available"


@pytest.fixture()
def failing():
    with FhirTestServer(severe_sarcopenia()) as server:
        server.mode = "500"
        yield server


def test_no_observations_on_record_is_a_finding(ehr):
    prefetch = prefetch_for(severe_sarcopenia(), ehr.templates("patient-view"))
    prefetch["observations"] = None
    response = ehr.post(PV, hook_request("patient-view", "sev-1", prefetch))
    assert response.status_code == 200
    assert topics(response.get_json()) == [CT_CARD]


def test_observations_that_could_not_be_fetched_are_unknown_not_missing(ehr, failing):
    keep = ("patient", "conditions", "imagingStudies", "serviceRequests")
    response = ehr.post(PV, fetching_body(ehr, failing.base, keep=keep))
    assert response.status_code == 200
    body = response.get_json()
    assert topics(body) == [], "no card may claim that measurements are missing"
    assert warnings_of(body, "fhir-data-unavailable") == [
        "prefetch 'observations' could not be fetched: the FHIR server answered HTTP 500" + UNKNOWN.format("Observation")]


@pytest.mark.parametrize(("key", "kind"), [("imagingStudies", "ImagingStudy"), ("serviceRequests", "ServiceRequest")])
def test_findings_that_do_not_need_the_failed_type_still_come(ehr, failing, key, kind):
    full = ehr.post(PV, full_body(ehr)).get_json()
    keep = tuple(k for k in ehr.templates("patient-view") if k != key)
    response = ehr.post(PV, fetching_body(ehr, failing.base, keep=keep))
    assert response.status_code == 200
    body = response.get_json()
    assert topics(body) == topics(full) == ["severe-sarcopenia"]
    assert warnings_of(body, "fhir-data-unavailable") == [
        f"prefetch '{key}' could not be fetched: the FHIR server answered HTTP 500" + UNKNOWN.format(kind)]


def test_conditions_unavailable_give_no_cancer_cards_and_say_why(ehr, failing):
    keep = ("patient", "observations", "imagingStudies", "serviceRequests")
    response = ehr.post(PV, fetching_body(ehr, failing.base, keep=keep))
    assert response.status_code == 200
    assert topics(response.get_json()) == []
    assert warnings_of(response.get_json(), "fhir-data-unavailable") == [
        "prefetch 'conditions' could not be fetched: the FHIR server answered HTTP 500" + UNKNOWN.format("Condition")]
