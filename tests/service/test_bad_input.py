"""Bad input never crashes the service: each row gets its exact status and message, and the next good call works."""

from __future__ import annotations

import json

import pytest

from tests.support.ehr import hook_request, prefetch_for
from tests.support.fhir_server import FhirTestServer
from tests.support.patients import severe_sarcopenia

PV = "/cds-services/sarcopenia-patient-view"
SEL = "/cds-services/sarcopenia-order-select"
AUTHZ = {"access_token": "at-1", "token_type": "Bearer", "expires_in": 300, "scope": "patient/*.read", "subject": "cds"}


def good_body(ehr, **changes):
    body = hook_request("patient-view", "sev-1", prefetch_for(severe_sarcopenia(), ehr.templates("patient-view")))
    body.update(changes)
    return body


def outcome(status_code_issues):
    return status_code_issues


def issues(response):
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    return [i["diagnostics"] for i in body["issue"]]


def send(ehr, case, fhir):
    kind = case["send"]
    if kind == "raw":
        return ehr.post(case.get("path", PV), data=case["data"], content_type=case.get("type", "application/json"))
    if kind == "get":
        return ehr.get(case["path"])
    body = case["body"](ehr, fhir)
    return ehr.post(case.get("path", PV), body)


def without(key):
    def build(ehr, fhir):
        body = good_body(ehr)
        del body[key]
        return body
    return build


def prefetch_change(key, value):
    def build(ehr, fhir):
        body = good_body(ehr)
        body["prefetch"][key] = value
        return body
    return build


def fetch_from(mode):
    def build(ehr, fhir):
        fhir.mode = mode
        body = good_body(ehr)
        del body["prefetch"]["observations"]
        body["fhirServer"] = fhir.base
        body["fhirAuthorization"] = AUTHZ
        return body
    return build


def unreachable(ehr, fhir):
    body = good_body(ehr)
    del body["prefetch"]["conditions"]
    body["fhirServer"] = "http://127.0.0.1:9/fhir"
    body["fhirAuthorization"] = AUTHZ
    return body


def invalid_resource(ehr, fhir):
    body = good_body(ehr)
    entries = body["prefetch"]["observations"]["entry"]
    bad = json.loads(json.dumps(entries[0]["resource"]))
    bad["id"] = "broken-1"
    bad["valueQuantity"] = {"value": "fourteen", "unit": "kg"}
    entries.append({"resource": bad})
    return body


def selection_not_in_orders(ehr, fhir):
    body = hook_request("order-select", "sev-1", prefetch_for(severe_sarcopenia(), ehr.templates("order-select")),
                        selections=["MedicationRequest/missing"],
                        draftOrders={"resourceType": "Bundle", "type": "collection", "entry": []})
    return body


CASES = [
    dict(id="not-json", send="raw", data="{not json", status=400,
         messages=["the request body is not valid JSON: Expecting property name enclosed in double quotes at line 1 column 2"]),
    dict(id="empty-body", send="raw", data="", status=400,
         messages=["the request body is empty; a JSON object is required"]),
    dict(id="nan", send="raw", data='{"hook": NaN}', status=400,
         messages=["the request body is not valid JSON: NaN is not allowed in JSON"]),
    dict(id="json-array", send="raw", data="[1, 2]", status=400, messages=["$: [1, 2] is not of type 'object'"]),
    dict(id="json-string", send="raw", data='"patient-view"', status=400,
         messages=["$: 'patient-view' is not of type 'object'"]),
    dict(id="missing-hook", send="body", body=without("hook"), status=400,
         messages=["$: 'hook' is a required property"]),
    dict(id="missing-hookInstance", send="body", body=without("hookInstance"), status=400,
         messages=["$: 'hookInstance' is a required property"]),
    dict(id="missing-context", send="body", body=without("context"), status=400,
         messages=["$: 'context' is a required property"]),
    dict(id="hookInstance-not-uuid", send="body", status=400,
         body=lambda ehr, f: good_body(ehr, hookInstance="abc"),
         messages=["$.hookInstance: 'abc' does not match '^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$'"]),
    dict(id="context-wrong-type", send="body", status=400,
         body=lambda ehr, f: good_body(ehr, context={"userId": "Practitioner/1", "patientId": 42}),
         messages=["$.context.patientId: 42 is not of type 'string'"]),
    dict(id="hook-mismatch", send="body", status=400, body=lambda ehr, f: good_body(ehr, hook="order-sign"),
         messages=["$.hook: 'order-sign' does not match service 'sarcopenia-patient-view', which answers 'patient-view'"]),
    dict(id="prefetch-not-object", send="body", status=400, body=lambda ehr, f: good_body(ehr, prefetch=[1]),
         messages=["$.prefetch: [1] is not of type 'object'"]),
    dict(id="prefetch-value-string", send="body", status=400, body=prefetch_change("patient", "Patient/sev-1"),
         messages=["$.prefetch.patient: 'Patient/sev-1' is not of type 'object', 'null'"]),
    dict(id="authorization-without-server", send="body", status=400,
         body=lambda ehr, f: good_body(ehr, fhirAuthorization=AUTHZ),
         messages=["$: 'fhirServer' is a dependency of 'fhirAuthorization'"]),
    dict(id="selection-not-in-draft-orders", send="body", path=SEL, status=400, body=selection_not_in_orders,
         messages=["$.context.selections[0]: 'MedicationRequest/missing' is not in context.draftOrders"]),
    dict(id="prefetch-operation-outcome", send="body", status=200,
         body=prefetch_change("conditions", {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "forbidden"}]}),
         warnings=["prefetch 'conditions' held an OperationOutcome, and the request gave no fhirServer to fetch it from"
                   "; rules reading Condition were evaluated as unknown, so cards may be missing"]),
    dict(id="prefetch-patient-operation-outcome", send="body", status=412,
         body=prefetch_change("patient", {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "forbidden"}]}),
         messages=["prefetch 'patient' held an OperationOutcome, and the request gave no fhirServer to fetch it from"]),
    dict(id="fhir-server-unreachable", send="body", status=200, body=unreachable,
         warnings=["prefetch 'conditions' could not be fetched: the FHIR server could not be reached or closed the connection"
                   "; rules reading Condition were evaluated as unknown, so cards may be missing"]),
    dict(id="fhir-server-slow", send="body", status=200, body=fetch_from("slow"),
         warnings=["prefetch 'observations' could not be fetched: the FHIR server did not answer in time"
                   "; rules reading Observation were evaluated as unknown, so cards may be missing"]),
    dict(id="fhir-server-500", send="body", status=200, body=fetch_from("500"),
         warnings=["prefetch 'observations' could not be fetched: the FHIR server answered HTTP 500"
                   "; rules reading Observation were evaluated as unknown, so cards may be missing"]),
    dict(id="fhir-server-html", send="body", status=200, body=fetch_from("html"),
         warnings=["prefetch 'observations' could not be fetched: the FHIR server answered text/html, not FHIR JSON"
                   "; rules reading Observation were evaluated as unknown, so cards may be missing"]),
    dict(id="fhir-server-closes", send="body", status=200, body=fetch_from("close"),
         warnings=["prefetch 'observations' could not be fetched: the FHIR server could not be reached or closed the connection"
                   "; rules reading Observation were evaluated as unknown, so cards may be missing"]),
    dict(id="wrong-content-type", send="raw", data="hook=patient-view", type="application/x-www-form-urlencoded",
         status=415, messages=["Content-Type must be application/json (got 'application/x-www-form-urlencoded')"]),
    dict(id="unknown-service", send="body", path="/cds-services/no-such-service", status=404,
         body=lambda ehr, f: good_body(ehr),
         messages=["there is no CDS service 'no-such-service'; services: sarcopenia-order-select, sarcopenia-order-sign, sarcopenia-patient-view"]),
    dict(id="get-on-a-service", send="get", path=PV, status=405,
         messages=["method GET is not allowed on /cds-services/sarcopenia-patient-view; use POST"]),
    dict(id="unknown-path", send="get", path="/cds-services/x/y/z", status=404,
         messages=["there is no such endpoint: /cds-services/x/y/z"]),
    dict(id="feedback-accepted-without-suggestions", send="raw", path=PV + "/feedback", status=400,
         data=json.dumps({"feedback": [{"card": "c-1", "outcome": "accepted", "outcomeTimestamp": "2026-11-28T12:00:00Z"}]}),
         messages=["$.feedback[0]: 'acceptedSuggestions' is a required property"]),
    dict(id="feedback-bad-outcome", send="raw", path=PV + "/feedback", status=400,
         data=json.dumps({"feedback": [{"card": "c-1", "outcome": "ignored", "outcomeTimestamp": "yesterday"}]}),
         messages=["$.feedback[0].outcome: 'ignored' is not one of ['accepted', 'overridden']",
                   "$.feedback[0].outcomeTimestamp: 'yesterday' does not match '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\\\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$'"]),
]


@pytest.fixture(scope="module")
def fhir():
    with FhirTestServer(severe_sarcopenia(), page_size=50) as server:
        yield server


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_bad_input_gets_its_exact_answer_and_the_next_good_call_works(ehr, fhir, case):
    fhir.mode = "ok"
    response = send(ehr, case, fhir)
    assert response.status_code == case["status"], response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    if "warnings" in case:  # the FHIR server failed for some keys: an answer from what there is, with a warning
        warnings = response.get_json()["extension"]["org.sarcopenia-cds.warnings"]
        assert [w["message"] for w in warnings if w["code"] == "fhir-data-unavailable"] == case["warnings"]
    else:
        assert issues(response) == case["messages"]
    fhir.mode = "ok"
    again = ehr.post(PV, good_body(ehr))
    assert again.status_code == 200
    assert again.get_json()["cards"]


def test_body_over_the_limit_is_413(make_app):
    from tests.conftest import BASE_URL
    from tests.support.ehr import EhrClient
    ehr = EhrClient(make_app(limits={"max_body_bytes": 2048}).test_client(), BASE_URL)
    response = ehr.post(PV, data=json.dumps({"hook": "patient-view", "pad": "x" * 4096}))
    assert response.status_code == 413
    assert issues(response) == ["the request body is larger than the limit of 2048 bytes"]


def test_too_many_prefetch_resources_is_413(make_app):
    from tests.conftest import BASE_URL
    from tests.support.ehr import EhrClient
    ehr = EhrClient(make_app(limits={"max_prefetch_resources": 5}).test_client(), BASE_URL)
    response = ehr.post(PV, good_body(ehr))
    assert response.status_code == 413
    assert issues(response) == ["the request brings 10 resources (10 in the prefetch, 0 fetched from fhirServer, "
                                "0 draft orders); the limit is 5 (limits.max_prefetch_resources)"]


def test_an_invalid_resource_is_reported_in_the_extension_and_skipped(ehr, fhir):
    response = ehr.post(PV, invalid_resource(ehr, fhir))
    assert response.status_code == 200
    body = response.get_json()
    assert body["cards"]
    invalid = body["extension"]["org.sarcopenia-cds.invalid-resources"]
    assert [i["reference"] for i in invalid] == ["Observation/broken-1"]
    assert invalid[0]["problems"][0].startswith("valueQuantity.value:")


def test_an_internal_error_is_500_without_internals(app, ehr, monkeypatch):
    ruleset = app.extensions["cds"].rules.current

    def explode(*args, **kwargs):
        raise KeyError("Synthetic, Severe 1958-03-14")

    monkeypatch.setattr(ruleset, "evaluate", explode)
    response = ehr.post(PV, good_body(ehr))
    assert response.status_code == 500
    [message] = issues(response)
    assert message.startswith("the service failed to process the request; reference ")
    assert "Synthetic" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)
