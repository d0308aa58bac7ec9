"""Discovery: GET {baseUrl}/cds-services (CDS Hooks 2.0 §Discovery, §Prefetch tokens)."""

from __future__ import annotations

import re

import pytest

from cds_service.protocol import validate_discovery

ALLOWED_TOKENS = {"context.userId", "context.patientId", "context.encounterId",
                  "userPractitionerId", "userPractitionerRoleId", "userPatientId", "userRelatedPersonId"}


@pytest.mark.req(4, 5, 6, 13, 1)
def test_discovery_answers_200_with_a_json_list_of_services(ehr):
    response = ehr.get("/cds-services")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert isinstance(body["services"], list)
    assert validate_discovery(body) == []


@pytest.mark.req(7, 9, 10, 16)
def test_one_service_per_hook_with_required_fields(ehr):
    services = ehr.discovery()["services"]
    assert sorted((s["id"], s["hook"]) for s in services) == [
        ("sarcopenia-order-select", "order-select"),
        ("sarcopenia-order-sign", "order-sign"),
        ("sarcopenia-patient-view", "patient-view"),
    ]
    for service in services:
        assert service["description"] and service["title"] and service["usageRequirements"]
        # the service is reachable at {baseUrl}/cds-services/{id}: an empty POST is a 400, not a 404
        assert ehr.post(f"/cds-services/{service['id']}", {}).status_code == 400


@pytest.mark.req(29, 36, 55, 56, 57, 59)
def test_prefetch_templates_use_only_2_0_tokens(ehr):
    for service in ehr.discovery()["services"]:
        prefetch = service["prefetch"]
        assert prefetch["patient"] == "Patient/{{context.patientId}}"
        for key, template in prefetch.items():
            assert re.fullmatch(r"[A-Za-z]+", key)
            tokens = re.findall(r"\{\{(.*?)\}\}", template)
            assert tokens, template
            assert set(tokens) <= ALLOWED_TOKENS, template
            assert template.count("{{") == template.count("}}")
            assert "_sort" not in template or "sort:" not in template


def test_prefetch_asks_for_exactly_what_the_rules_read(ehr):
    """patient-view reads diagnoses, coded Observations, CT studies and open referrals; order hooks
    read the orders from context.draftOrders, so they ask for no MedicationRequest history."""
    services = {s["hook"]: s["prefetch"] for s in ehr.discovery()["services"]}
    patient_view = services["patient-view"]
    assert sorted(patient_view) == ["conditions", "imagingStudies", "observations", "patient", "serviceRequests"]
    assert patient_view["conditions"] == "Condition?patient={{context.patientId}}"
    assert patient_view["observations"].startswith("Observation?patient={{context.patientId}}&code=")
    for coding in ("http://loinc.org|29463-7", "http://loinc.org|8302-2", "http://loinc.org|1988-5", "http://loinc.org|1751-7",
                   "https://sarcopenia-cds.org/CodeSystem/measure|grip-strength",
                   "https://sarcopenia-cds.org/CodeSystem/measure|l3-skeletal-muscle-area"):
        assert coding in patient_view["observations"]
    assert "http://loinc.org|2089-1" not in patient_view["observations"]
    assert patient_view["imagingStudies"] == "ImagingStudy?patient={{context.patientId}}"
    for hook in ("order-select", "order-sign"):
        assert sorted(services[hook]) == ["conditions", "observations", "patient", "serviceRequests"]
