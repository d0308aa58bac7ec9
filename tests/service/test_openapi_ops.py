"""The OpenAPI document, health and readiness endpoints, and metrics."""

from __future__ import annotations

import jsonschema

from cds_service.protocol.validation import validator
from tests.support.ehr import hook_request, prefetch_for
from tests.support.patients import severe_sarcopenia


def test_openapi_is_served_without_a_token_and_embeds_the_project_schemas(app):
    response = app.test_client().get("/openapi.json")
    assert response.status_code == 200
    document = response.get_json()
    assert document["openapi"] == "3.1.0"
    services = ["/cds-services/sarcopenia-patient-view", "/cds-services/sarcopenia-order-select",
                "/cds-services/sarcopenia-order-sign"]
    assert set(services) | {"/cds-services", "/cds-services/{id}/feedback", "/healthz", "/readyz", "/metrics",
                            "/openapi.json", "/trend/launch", "/trend/callback"} <= set(document["paths"])
    assert document["paths"]["/cds-services/{id}/feedback"]["post"]["parameters"][0]["schema"]["enum"] == [
        "sarcopenia-order-select", "sarcopenia-order-sign", "sarcopenia-patient-view"]
    for name in ("Discovery", "Request", "Response", "Feedback", "OperationOutcome"):
        jsonschema.Draft202012Validator.check_schema(document["components"]["schemas"][name])
    for path in services:
        assert set(document["paths"][path]["post"]["responses"]) == {
            "200", "400", "401", "404", "405", "412", "413", "415", "500"}


def test_error_bodies_match_the_operation_outcome_schema(ehr):
    response = ehr.post("/cds-services/sarcopenia-patient-view", data="{")
    assert list(validator("operation-outcome").iter_errors(response.get_json())) == []


def test_healthz_shows_the_active_pack_versions(app):
    body = app.test_client().get("/healthz").get_json()
    assert body["status"] == "ok"
    assert body["rules"]["versions"] == {"sarcopenia-core": "1.0.0"}
    assert body["rules"]["version"] == "sarcopenia-core@1.0.0"
    assert "last_error" not in body["rules"]


def test_readyz_follows_the_database(app, monkeypatch):
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    store = app.extensions["cds"].store
    monkeypatch.setattr(store, "ping", lambda: False)
    down = client.get("/readyz")
    assert down.status_code == 503
    assert down.get_json()["database"] == "unreachable"
    monkeypatch.undo()
    assert client.get("/readyz").status_code == 200


def test_metrics_expose_requests_latency_cards_feedback_and_fhir_errors(make_app):
    from tests.conftest import BASE_URL
    from tests.support.ehr import EhrClient

    app = make_app(metrics={"token": "metrics-token-of-the-test"})  # /metrics needs it (issue 16)
    ehr = EhrClient(app.test_client(), BASE_URL)
    body = hook_request("patient-view", "sev-1", prefetch_for(severe_sarcopenia(), ehr.templates("patient-view")))
    answer = ehr.post("/cds-services/sarcopenia-patient-view", body).get_json()
    card = answer["cards"][0]
    ehr.post("/cds-services/sarcopenia-patient-view/feedback", {"feedback": [{
        "card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-28T12:01:00Z",
        "overrideReason": {"reason": {"system": "https://sarcopenia-cds.org/CodeSystem/override-reason",
                                      "code": "patient-declined", "display": "Patient declined"}}}]})
    text = app.test_client().get("/metrics", headers={"Authorization": "Bearer metrics-token-of-the-test"}).get_data(
        as_text=True)
    assert 'cds_requests_total{hook="patient-view",status="200"} 1.0' in text
    assert 'cds_request_duration_seconds_bucket{hook="patient-view",le="+Inf",status="200"} 1.0' in text
    assert 'cds_cards_total{finding="severe-sarcopenia"} 1.0' in text
    assert 'cds_feedback_total{outcome="overridden",result="received"} 1.0' in text
    assert "cds_fhir_fetch_errors_total" in text
