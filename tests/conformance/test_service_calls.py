"""Service calls: POST {baseUrl}/cds-services/{id} (CDS Hooks 2.0 §Calling a CDS Service, §Response)."""

from __future__ import annotations

import base64
import json
import logging

import jwt
import pytest

from cds_service.protocol import validate_response
from tests.conftest import BASE_URL
from tests.support.ehr import hook_request, prefetch_for
from tests.support.fhir_server import FhirTestServer
from tests.support.patients import no_cancer, severe_sarcopenia

SERVICE = "/cds-services/sarcopenia-patient-view"


def walk(value, path="$"):
    """Every (path, value) inside a JSON document."""
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from walk(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from walk(item, f"{path}[{index}]")


@pytest.fixture()
def severe_response(ehr):
    resources = severe_sarcopenia()
    body = hook_request("patient-view", "sev-1", prefetch_for(resources, ehr.templates("patient-view")))
    response = ehr.post(SERVICE, body)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


@pytest.mark.req(74, 16, 1)
def test_a_call_answers_200_with_a_cards_array(severe_response):
    assert isinstance(severe_response["cards"], list) and severe_response["cards"]
    assert validate_response(severe_response) == []


@pytest.mark.req(3)
def test_no_null_or_empty_value_anywhere_in_a_real_response(severe_response):
    empties = [path for path, value in walk(severe_response)
               if value is None or value == "" or value == [] or value == {}]
    assert empties == []


@pytest.mark.req(80, 119, 83, 87, 88, 90, 105, 115)
def test_every_card_has_uuid_summary_indicator_source_with_finding_topic(severe_response):
    uuids = set()
    for card in severe_response["cards"]:
        assert isinstance(card["uuid"], str) and card["uuid"] not in uuids
        uuids.add(card["uuid"])
        assert 0 < len(card["summary"]) < 140
        assert card["indicator"] in ("info", "warning", "critical")
        assert card["source"]["label"]
        assert card["source"]["topic"]["system"] == "https://sarcopenia-cds.org/CodeSystem/finding"
        for suggestion in card.get("suggestions", []):
            assert isinstance(suggestion["uuid"], str) and suggestion["uuid"] not in uuids
            uuids.add(suggestion["uuid"])


@pytest.mark.req(85)
def test_detail_is_github_flavoured_markdown_with_an_evidence_table(severe_response):
    main = severe_response["cards"][0]
    assert "|---" in main["detail"] or "| ---" in main["detail"]


@pytest.mark.req(92, 93, 96, 98, 100, 136, 124, 127, 128, 130, 131, 117, 121)
def test_suggestions_create_draft_service_requests_and_override_reasons_have_display(severe_response):
    main = severe_response["cards"][0]
    assert main["selectionBehavior"] in ("any", "at-most-one")
    assert main["overrideReasons"] and all(r["display"] for r in main["overrideReasons"])
    for suggestion in main["suggestions"]:
        assert suggestion["label"]
        for action in suggestion.get("actions", []):
            assert action["type"] == "create" and action["description"]
            assert action["resource"]["resourceType"] in ("ServiceRequest", "Task", "CommunicationRequest")
            assert action["resource"]["subject"] == {"reference": "Patient/sev-1"}


@pytest.mark.req(214, 215)
def test_card_extension_is_a_reverse_domain_object_listing_findings(severe_response):
    for card in severe_response["cards"]:
        extension = card["extension"]
        assert isinstance(extension, dict)
        assert all(key.startswith("org.sarcopenia-cds.") for key in extension)
        findings = extension["org.sarcopenia-cds.findings"]
        assert card["source"]["topic"]["code"] in [f["code"]["code"] for f in findings]


@pytest.mark.req(77)
def test_no_guidance_is_200_with_an_empty_cards_array(ehr):
    body = hook_request("patient-view", "hist-1", prefetch_for(no_cancer(), ehr.templates("patient-view")))
    response = ehr.post(SERVICE, body)
    assert response.status_code == 200
    assert response.get_json() == {"cards": []}


@pytest.mark.req(54)
def test_missing_patient_without_fhir_server_is_412_naming_the_key(ehr):
    """The Patient is required data (age, sex): without it and without a fhirServer, 412."""
    templates = ehr.templates("patient-view")
    prefetch = prefetch_for(severe_sarcopenia(), templates)
    del prefetch["patient"]
    response = ehr.post(SERVICE, hook_request("patient-view", "sev-1", prefetch))
    assert response.status_code == 412
    assert response.get_json() == {"resourceType": "OperationOutcome", "issue": [{
        "severity": "error", "code": "incomplete",
        "diagnostics": "prefetch 'patient' was not in the prefetch, and the request gave no fhirServer to fetch it from",
        "expression": ["$.prefetch.patient"]}]}


@pytest.mark.req(54)
def test_another_missing_key_is_evaluated_as_unavailable_not_412(ehr):
    """A missing key other than the Patient: the call is answered, its rules are unknown, and it says so."""
    templates = ehr.templates("patient-view")
    prefetch = prefetch_for(severe_sarcopenia(), templates)
    del prefetch["observations"]
    response = ehr.post(SERVICE, hook_request("patient-view", "sev-1", prefetch))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["extension"]["org.sarcopenia-cds.warnings"] == [{
        "code": "fhir-data-unavailable",
        "message": "prefetch 'observations' was not in the prefetch, and the request gave no fhirServer to fetch it "
                   "from; rules reading Observation were evaluated as unknown, so cards may be missing"}]


@pytest.mark.req(34, 60, 61, 28)
def test_without_prefetch_the_service_fetches_with_the_access_token(ehr):
    with FhirTestServer(severe_sarcopenia(), page_size=3) as fhir:
        body = hook_request("patient-view", "sev-1")
        body["fhirServer"] = fhir.base
        body["fhirAuthorization"] = {"access_token": "at-123", "token_type": "Bearer", "expires_in": 300,
                                     "scope": "patient/*.read", "subject": "sarcopenia-cds"}
        response = ehr.post(SERVICE, body)
        assert response.status_code == 200, response.get_data(as_text=True)
        assert {r["authorization"] for r in fhir.requests} == {"Bearer at-123"}
        assert any(r["path"] == "/fhir/Patient/sev-1" for r in fhir.requests)
    direct = ehr.post(SERVICE, hook_request("patient-view", "sev-1", prefetch_for(severe_sarcopenia(), ehr.templates("patient-view"))))
    assert [c["summary"] for c in response.get_json()["cards"]] == [c["summary"] for c in direct.get_json()["cards"]]


def test_a_card_that_would_break_the_schema_is_not_sent(app, ehr, caplog, monkeypatch):
    """A response failing its own schema is a server bug: log it, send {"cards": []} with a warning."""
    ruleset = app.extensions["cds"].rules.current
    real = ruleset.evaluate

    def bad_evaluate(*args, **kwargs):
        evaluation = real(*args, **kwargs)
        evaluation.cards[0]["summary"] = "x" * 200
        return evaluation

    monkeypatch.setattr(ruleset, "evaluate", bad_evaluate)
    body = hook_request("patient-view", "sev-1", prefetch_for(severe_sarcopenia(), ehr.templates("patient-view")))
    with caplog.at_level(logging.ERROR, logger="cds_service"):
        response = ehr.post(SERVICE, body)
    assert response.status_code == 200
    assert response.get_json() == {"cards": [], "extension": {"org.sarcopenia-cds.warnings": [{
        "code": "internal-response-invalid",
        "message": "The service produced guidance that failed its own response schema; no cards were sent."}]}}
    assert any(r.getMessage() == "response failed its schema; sent no cards" for r in caplog.records)


@pytest.mark.req(176, 177)
def test_a_call_without_a_jwt_is_401_and_reaches_no_rules(app, monkeypatch):
    ruleset = app.extensions["cds"].rules.current
    calls = []
    monkeypatch.setattr(ruleset, "evaluate", lambda *a, **k: calls.append(1))
    body = hook_request("patient-view", "sev-1", {})
    response = app.test_client().post(SERVICE, json=body)
    assert response.status_code == 401
    assert calls == []


def _unsigned(aud: str) -> str:
    def part(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    import time
    import uuid
    now = int(time.time())
    return part({"alg": "none", "typ": "JWT", "kid": "ehr-es384"}) + "." + part(
        {"iss": "https://ehr.test/fhir", "aud": aud, "exp": now + 300, "iat": now, "jti": str(uuid.uuid4())}) + "."


@pytest.mark.req(201, 203)
def test_unsigned_and_symmetric_jwts_are_refused(app):
    from tests.support import tokens
    client = app.test_client()
    aud = BASE_URL + SERVICE
    body = hook_request("patient-view", "sev-1", {})
    pem = tokens.es384_key().public_key().public_bytes(
        encoding=__import__("cryptography").hazmat.primitives.serialization.Encoding.PEM,
        format=__import__("cryptography").hazmat.primitives.serialization.PublicFormat.SubjectPublicKeyInfo)
    hs = jwt.encode({"iss": tokens.ISSUER, "aud": aud, "exp": 9999999999, "iat": 1, "jti": "x"},
                    pem.decode()[:64], algorithm="HS256", headers={"kid": "ehr-es384"})
    for bad in (_unsigned(aud), hs):
        response = client.post(SERVICE, json=body, headers={"Authorization": f"Bearer {bad}"})
        assert response.status_code == 401


@pytest.mark.req(208)
def test_cors_preflight_is_answered_without_a_jwt(make_app):
    app = make_app(cors={"origins": ["https://sandbox.cds-hooks.org"]})
    response = app.test_client().options(SERVICE, headers={
        "Origin": "https://sandbox.cds-hooks.org", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert response.status_code in (200, 204)
    assert response.headers["Access-Control-Allow-Origin"] == "https://sandbox.cds-hooks.org"
    assert "authorization" in response.headers["Access-Control-Allow-Headers"].lower()
