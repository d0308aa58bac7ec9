"""The cases the fuzzer found, kept as plain tests: each was a 500 before its fix."""

from __future__ import annotations

import json

import pytest

from tests.support.ehr import hook_request, prefetch_for
from tests.support.fhir_server import FhirTestServer
from tests.support.patients import severe_sarcopenia

PV = "/cds-services/sarcopenia-patient-view"
SIGN = "/cds-services/sarcopenia-order-sign"


def body_for(ehr, hook="patient-view", **context):
    return hook_request(hook, "sev-1", prefetch_for(severe_sarcopenia(), ehr.templates(hook)), **context)


@pytest.mark.parametrize("kind", [[], None, "", 7, {"a": 1}])
def test_a_prefetch_resource_whose_resource_type_is_not_a_name_is_reported_invalid(ehr, kind):
    body = body_for(ehr)
    body["prefetch"]["conditions"]["entry"].append({"resource": {"resourceType": kind, "id": "odd-1"}})
    response = ehr.post(PV, body)
    assert response.status_code == 200, response.get_data(as_text=True)
    invalid = response.get_json()["extension"]["org.sarcopenia-cds.invalid-resources"]
    assert invalid == [{"reference": "(resource)/odd-1", "problems": ["resourceType: not a resource type name"]}]


def test_draft_orders_with_empty_resource_types_are_reported_invalid(ehr):
    orders = {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": None}}, {"resource": {"resourceType": ""}}]}
    body = body_for(ehr, "order-sign", draftOrders=orders)
    response = ehr.post(SIGN, body)
    assert response.status_code == 200, response.get_data(as_text=True)


def test_an_access_token_that_cannot_be_an_http_header_is_a_failed_fetch(ehr):
    with FhirTestServer(severe_sarcopenia()) as fhir:
        body = body_for(ehr)
        del body["prefetch"]["observations"]
        body["fhirServer"] = fhir.base
        body["fhirAuthorization"] = {"access_token": "tök\u20ac\ud83d\ude00", "token_type": "Bearer", "expires_in": 1,
                                     "scope": "s", "subject": "s"}
        response = ehr.post(PV, data=json.dumps(body))
    assert response.status_code == 200, response.get_data(as_text=True)
    [warning] = response.get_json()["extension"]["org.sarcopenia-cds.warnings"]
    assert warning["message"] == ("prefetch 'observations' could not be fetched: the FHIR request could not be sent "
                                  "(UnicodeEncodeError); rules reading Observation were evaluated as unknown, "
                                  "so cards may be missing")
    assert fhir.requests == []
