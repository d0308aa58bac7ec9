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


def test_prefetch_asks_for_what_the_rules_read(ehr):
    """Conditions, Observations by code, ImagingStudies, and the draft-order context for order hooks."""
    prefetch = next(s for s in ehr.discovery()["services"] if s["hook"] == "patient-view")["prefetch"]
    assert prefetch["conditions"].startswith("Condition?patient={{context.patientId}}")
    assert prefetch["observations"].startswith("Observation?patient={{context.patientId}}")
    assert "http://loinc.org|29463-7" in prefetch["observations"]
    assert prefetch["imagingStudies"].startswith("ImagingStudy?patient={{context.patientId}}")
    order_sign = next(s for s in ehr.discovery()["services"] if s["hook"] == "order-sign")["prefetch"]
    assert order_sign["medicationRequests"].startswith("MedicationRequest?patient={{context.patientId}}")
