"""The front door (/), the API reference (/docs), the favicon, 404 for unknown paths, and the
OpenAPI document checked by openapi-spec-validator, with a request schema per hook and every route."""

from __future__ import annotations

import logging

import pytest
from openapi_spec_validator import validate

from cds_service.api.openapi import openapi_document
from tests.support.ehr import hook_request


def test_front_door_needs_no_token_and_shows_version_packs_profile_hooks_and_links(app):
    response = app.test_client().get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "version 0.1.0" in page
    assert "<code>sarcopenia-core</code></td><td>1.0.0</td>" in page
    assert '<span class="pill" id="profile">ewgsop2</span>' in page
    assert '<span class="pill" id="ct-cutoffs">martin2013</span>' in page
    for service_id, hook in (("sarcopenia-patient-view", "patient-view"), ("sarcopenia-order-select", "order-select"),
                             ("sarcopenia-order-sign", "order-sign")):
        assert f'data-service-id="{service_id}"' in page
        assert f"<code>/cds-services/{service_id}</code>" in page
        assert f'<span class="pill">{hook}</span>' in page
    assert "<code>patient</code></td><td><code>Patient/{{context.patientId}}</code>" in page  # a prefetch template
    for href in ("/cds-services", "/docs", "/openapi.json", "/healthz", "/readyz", "/metrics"):
        assert f'<a href="{href}">' in page
    assert 'href="/demo"' not in page  # only when the demo runs
    assert "CDS Hooks discovery</a></td><td><code>/cds-services</code></td><td class=\"muted\">the services, their hooks and prefetch templates (JWT required)" in page


def test_front_door_shows_no_patient_data_after_a_call(app, ehr):
    ehr.post("/cds-services/sarcopenia-patient-view", hook_request("patient-view", "pat-front-door-1", {}))
    assert "pat-front-door-1" not in app.test_client().get("/").get_data(as_text=True)


def test_front_door_links_the_demo_in_demo_mode(tmp_path):
    from cds_service.demo import create_demo_app

    app = create_demo_app("127.0.0.1", 8999, tmp_path, overrides={"rules": {"watch": False}})
    try:
        page = app.test_client().get("/").get_data(as_text=True)
        assert '<a href="/demo">demo EHR</a>' in page
    finally:
        app.extensions["cds"].store.dispose()


@pytest.mark.parametrize("path", ["/nothing-here", "/docs/nope", "/cds-services-x", "/admin.php", "/.env"])
def test_unknown_paths_answer_404_operation_outcome_without_a_token(app, path):
    response = app.test_client().get(path)
    assert response.status_code == 404
    assert response.get_json() == {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "not-found", "diagnostics": f"there is no such endpoint: {path}"}]}


def test_known_cds_paths_still_need_a_token(app):
    client = app.test_client()
    assert client.post("/cds-services/sarcopenia-patient-view", json={}).status_code == 401
    assert client.post("/cds-services/no-such-service", json={}).status_code == 401  # a real route: no probing
    assert client.get("/cds-services").status_code == 401


def test_favicon_is_an_icon_and_logs_no_warning(app, caplog):
    client = app.test_client()
    with caplog.at_level(logging.INFO):
        icon = client.get("/favicon.ico")
        svg = client.get("/favicon.svg")
    assert icon.status_code == 200 and icon.mimetype == "image/vnd.microsoft.icon"
    assert icon.data[:4] == b"\x00\x00\x01\x00"  # ICO header
    assert svg.status_code == 200 and svg.data.startswith(b"<svg")
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_openapi_document_is_valid_for_openapi_spec_validator():
    validate(openapi_document())  # raises on the first error (it raised PointerToNowhere '/$defs/card')


def test_every_route_of_the_app_is_in_the_openapi_document(tmp_path):
    from cds_service.demo import create_demo_app

    app = create_demo_app("127.0.0.1", 8999, tmp_path, overrides={
        "rules": {"watch": False},
        "smart": {"enabled": True, "client_id": "trend", "allowed_issuers": ["https://ehr.example.org/fhir"]}})
    try:
        paths = openapi_document()["paths"]
        documented = {(path, method.upper()) for path, item in paths.items() for method in item}
        for rule in app.url_map.iter_rules():
            if rule.endpoint.endswith("static") or rule.rule.endswith("/") and rule.rule != "/":
                continue
            path = rule.rule.replace("<service_id>", "{id}")
            for name in rule.arguments:
                path = path.replace(f"<{name}>", "{" + name + "}")
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                if path == "/cds-services/{id}" and method == "POST":  # one path per service instead
                    assert {f"/cds-services/{s}" for s in ("sarcopenia-patient-view", "sarcopenia-order-select",
                                                           "sarcopenia-order-sign")} <= set(paths)
                    continue
                assert (path, method) in documented, f"{method} {rule.rule} is not in /openapi.json"
    finally:
        app.extensions["cds"].store.dispose()


def test_each_hook_has_its_own_request_schema_with_its_context():
    import jsonschema

    document = openapi_document()
    order_sign = document["paths"]["/cds-services/sarcopenia-order-sign"]["post"]["requestBody"]
    ref = order_sign["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/Request_order_sign"
    schema = {**document["components"]["schemas"]["Request_order_sign"], "components": document["components"]}
    validator = jsonschema.Draft202012Validator(schema)
    good = {"hook": "order-sign", "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
            "context": {"userId": "Practitioner/1", "patientId": "p1", "draftOrders": {"resourceType": "Bundle", "entry": []}}}
    assert [e.message for e in validator.iter_errors(good)] == []
    wrong = {**good, "hook": "patient-view", "context": {"userId": "Practitioner/1"}}
    messages = sorted(e.message for e in validator.iter_errors(wrong))
    assert "'order-sign' was expected" in messages
    assert any("'patientId' is a required property" in m for m in messages)


def test_api_reference_page_lists_every_operation_offline(app):
    response = app.test_client().get("/docs")
    assert response.status_code == 200 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    for path, item in openapi_document()["paths"].items():
        for method, op in item.items():
            assert f'id="{op["operationId"]}"' in page
            assert f"<code>{path}</code>" in page
    assert 'id="schema-Request_patient_view"' in page
    assert "<script" not in page and "https://cdn" not in page and "unpkg" not in page
