"""Property-based requests against every endpoint: never a 5xx, every answer valid against our schemas.

Bodies come from the project's own JSON Schemas (request.schema.json with each hook's CONTEXT_SCHEMA,
feedback.schema.json) through hypothesis-jsonschema, from valid requests with one part replaced by
arbitrary JSON, and from arbitrary JSON and bytes with assorted content types. Every call carries a
valid JWT for its endpoint, so the requests reach the protocol code behind authentication. A 200 must
validate against response.schema.json (service calls), discovery.schema.json (discovery) or be
{"stored", "duplicates"} (feedback); every error must be an OperationOutcome
(operation-outcome.schema.json). How many requests were made is printed at the end (`-s`).
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from tests.fuzz.compat import patch

patch()

import hooks as hook_registry
from cds_service.protocol import schema_problems, validate_discovery, validate_response
from tests.conftest import BASE_URL, NOW, service_config
from tests.fuzz.conftest import TOTAL
from tests.support import tokens
from tests.support.ehr import hook_request, prefetch_for
from tests.support.fhir_server import FhirTestServer
from tests.support.patients import severe_sarcopenia

SCHEMAS = Path(__file__).resolve().parents[2] / "cds_service" / "protocol" / "schemas"
ORDERS = Path(__file__).resolve().parents[2] / "cds_service" / "demo" / "patients" / "orders"
SERVICES = sorted(hook_registry.SERVICES)
UNREACHABLE = "http://127.0.0.1:9/fhir"
WEIGHTS = {"schema": 0.30, "mutated": 0.20, "garbage": 0.10, "feedback": 0.12, "feedback_cards": 0.10,
           "fetched": 0.10, "discovery": 0.08}
COUNTS: Counter = Counter()


def examples(kind: str, share: int = 1) -> settings:
    return settings(settings.get_profile("sarcopenia-fuzz"),
                    max_examples=max(1, math.ceil(TOTAL * WEIGHTS[kind] / share)))


@pytest.fixture(scope="module")
def fhir():
    with FhirTestServer(severe_sarcopenia(), page_size=3) as server:
        yield server


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from cds_service.app import create_app

    config = service_config(tmp_path_factory.mktemp("fuzz"), logging={"level": "WARNING", "format": "json"})
    app = create_app(config, clock=lambda: NOW)
    yield app.test_client()
    app.extensions["cds"].store.dispose()
    print(f"\nfuzz: {sum(COUNTS.values())} requests, by status {dict(sorted(COUNTS.items()))}")


def schema(name: str) -> dict[str, Any]:
    document = json.loads((SCHEMAS / f"{name}.schema.json").read_text(encoding="utf-8"))
    document.pop("$schema", None)
    return document


def request_schema(service: str, fhir_base: str) -> dict[str, Any]:
    """request.schema.json with the hook's context schema; fhirServer only ever a local address."""
    hook = hook_registry.HOOKS[hook_registry.SERVICES[service]]
    document = schema("request")
    document["properties"]["hook"] = {"anyOf": [{"const": hook.HOOK}, {"type": "string", "minLength": 1}]}
    document["properties"]["context"] = copy.deepcopy(hook.CONTEXT_SCHEMA)
    document["properties"]["fhirServer"] = {"enum": [fhir_base, UNREACHABLE]}
    return document


def valid_body(service: str, fhir_base: str, templates: dict[str, dict[str, str]]) -> dict[str, Any]:
    hook = hook_registry.SERVICES[service]
    prefetch = prefetch_for(severe_sarcopenia(), templates[hook])
    if hook == "patient-view":
        return hook_request(hook, "sev-1", prefetch)
    orders = json.loads(next(ORDERS.glob("01-*.json")).read_text(encoding="utf-8"))
    selection = f"MedicationRequest/{orders['entry'][0]['resource']['id']}"
    return hook_request(hook, "sev-1", prefetch, selections=[selection], draftOrders=orders)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
CONTENT_TYPES = st.sampled_from(["application/json", "application/fhir+json", "application/json; charset=utf-8",
                                 "text/plain", "application/x-www-form-urlencoded", "", "multipart/form-data"])


def send(client, method: str, path: str, *, data: bytes | str | None = None,
         content_type: str | None = "application/json", headers: dict[str, str] | None = None):
    signed = {"Authorization": f"Bearer {tokens.token(BASE_URL + path.split('?', 1)[0])}", **(headers or {})}
    response = client.open(path, method=method, data=data, content_type=content_type, headers=signed)
    COUNTS[response.status_code] += 1
    return response


def check(response, kind: str) -> None:
    status = response.status_code
    text = response.get_data(as_text=True)
    assert status < 500, f"{status}: {text[:500]}"
    assert response.mimetype == "application/json", response.mimetype
    body = json.loads(text)
    if status == 200 and kind == "service":
        assert validate_response(body) == [], text[:500]
    elif status == 200 and kind == "feedback":
        assert set(body) == {"stored", "duplicates"}
    elif status == 200 and kind == "discovery":
        assert validate_discovery(body) == []
    else:
        assert schema_problems("operation-outcome", body) == [], text[:500]


@pytest.fixture(scope="module")
def templates(client):
    discovery = send(client, "GET", "/cds-services").get_json()
    return {s["hook"]: s.get("prefetch", {}) for s in discovery["services"]}


@pytest.mark.parametrize("service", SERVICES)
def test_schema_generated_requests(client, fhir, templates, service):
    strategy = from_schema(request_schema(service, fhir.base))
    valid_prefetch = valid_body(service, fhir.base, templates)["prefetch"]

    @examples("schema", len(SERVICES))
    @given(body=strategy, use_valid_prefetch=st.booleans(), with_token=st.booleans())
    def run(body, use_valid_prefetch, with_token):
        if use_valid_prefetch:
            body = {**body, "prefetch": valid_prefetch}
        if with_token and "fhirServer" in body and "fhirAuthorization" not in body:
            body["fhirAuthorization"] = {"access_token": "at-fuzz", "token_type": "Bearer", "expires_in": 300,
                                         "scope": "patient/*.read", "subject": "fuzz"}
        check(send(client, "POST", f"/cds-services/{service}", data=json.dumps(body)), "service")

    run()


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


def _replace(node: Any, path: tuple, value: Any, delete: bool) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if delete and not rest:
        if isinstance(node, dict):
            return {k: v for k, v in node.items() if k != head}
        return [v for i, v in enumerate(node) if i != head]
    copied = copy.copy(node)
    copied[head] = _replace(node[head], rest, value, delete)
    return copied


@pytest.mark.parametrize("service", SERVICES)
def test_valid_requests_with_one_part_replaced(client, fhir, templates, service):
    base = valid_body(service, fhir.base, templates)
    base["fhirServer"] = fhir.base
    base["fhirAuthorization"] = {"access_token": "at-fuzz", "token_type": "Bearer", "expires_in": 300,
                                 "scope": "patient/*.read", "subject": "fuzz"}
    paths = _paths(base)

    @examples("mutated", len(SERVICES))
    @given(path=st.sampled_from(paths), value=JSON_VALUES, delete=st.booleans(), drop_prefetch=st.booleans())
    def run(path, value, delete, drop_prefetch):
        body = _replace(base, path, value, delete and bool(path))
        if drop_prefetch and isinstance(body, dict) and isinstance(body.get("prefetch"), dict):
            body = {**body, "prefetch": {k: v for k, v in body["prefetch"].items() if k == "patient"}}
        check(send(client, "POST", f"/cds-services/{service}", data=json.dumps(body)), "service")

    run()


@examples("garbage")
@given(service=st.sampled_from([*SERVICES, "no-such-service"]), feedback=st.booleans(),
       payload=st.one_of(st.binary(max_size=300), JSON_VALUES.map(json.dumps),
                         st.text(max_size=300), st.just("{\"hook\": NaN}"), st.just("[" * 5000)),
       content_type=CONTENT_TYPES)
def test_arbitrary_bytes_and_json(client, service, feedback, payload, content_type):
    path = f"/cds-services/{service}" + ("/feedback" if feedback else "")
    check(send(client, "POST", path, data=payload, content_type=content_type), "feedback" if feedback else "service")


@examples("feedback")
@given(service=st.sampled_from(SERVICES),
       body=st.one_of(from_schema(schema("feedback")), JSON_VALUES, st.dictionaries(
           st.just("feedback"), st.lists(st.dictionaries(st.sampled_from(
               ["card", "outcome", "outcomeTimestamp", "overrideReason", "acceptedSuggestions", "extension"]),
               JSON_VALUES, max_size=6), max_size=3))))
def test_feedback_requests(client, service, body):
    check(send(client, "POST", f"/cds-services/{service}/feedback", data=json.dumps(body)), "feedback")


# -- feedback about real cards, then the hooks that read it ---------------------------------------

TIMESTAMPS = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59),
                 timezones=st.sampled_from([UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12)),
                                            timezone(timedelta(minutes=-30))])).map(lambda d: d.isoformat()),
    st.sampled_from(["9999-12-31T23:59:59Z", "0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00Z",
                     "2200-01-01T00:00:00Z", "9999-12-31T23:59:59-12:00", "2026-11-28T12:00:00Z"]),
    st.text(max_size=30),
)
REASONS = st.one_of(st.sampled_from(["patient-declined", "already-under-care", "palliative-focus",
                                     "measurement-doubtful", "not-a-reason"]), st.text(max_size=20))


@pytest.fixture(scope="module")
def sent_cards(client, templates):
    """Cards (with their suggestions) the service really sent, per service, to give feedback on."""
    cards = {}
    for service in SERVICES:
        response = send(client, "POST", f"/cds-services/{service}",
                        data=json.dumps(valid_body(service, "", templates)))
        assert response.status_code == 200
        cards[service] = response.get_json()["cards"]
    return cards


@pytest.mark.parametrize("service", SERVICES)
def test_feedback_on_sent_cards_then_the_hooks(client, templates, sent_cards, service):
    """Hostile feedback (any instant from year 1 to 9999, any offset, unknown reasons and
    suggestions, another service's cards) about cards really sent; then every hook for the
    patient must still answer."""
    cards = [c for cs in sent_cards.values() for c in cs]
    if not cards:
        pytest.skip("the bundled patient produced no cards")

    @examples("feedback_cards", len(SERVICES))
    @given(entries=st.lists(st.fixed_dictionaries({
        "card": st.one_of(st.sampled_from([c["uuid"] for c in cards]), st.text(max_size=40)),
        "outcome": st.sampled_from(["accepted", "overridden"]),
        "outcomeTimestamp": TIMESTAMPS,
    }, optional={
        "overrideReason": st.fixed_dictionaries({"reason": st.fixed_dictionaries(
            {"code": REASONS}, optional={"system": st.text(max_size=30), "display": st.text(max_size=30)})},
            optional={"userComment": st.text(max_size=50)}),
        "acceptedSuggestions": st.lists(st.fixed_dictionaries({"id": st.one_of(
            st.sampled_from([s["uuid"] for c in cards for s in c.get("suggestions", [])] or ["none"]),
            st.text(max_size=40))}), max_size=3),
    }), min_size=1, max_size=4), hook_after=st.sampled_from(SERVICES))
    def run(entries, hook_after):
        check(send(client, "POST", f"/cds-services/{service}/feedback", data=json.dumps({"feedback": entries})),
              "feedback")
        check(send(client, "POST", f"/cds-services/{hook_after}",
                   data=json.dumps(valid_body(hook_after, "", templates))), "service")

    run()


# -- Bundles fetched from fhirServer -------------------------------------------------------------

RESOURCE_TYPES = st.sampled_from(["Patient", "Observation", "Condition", "ImagingStudy", "ServiceRequest",
                                  "MedicationRequest", "OperationOutcome", "Bundle", "Nonsense", ""])
RESOURCES = st.one_of(
    JSON_VALUES,
    st.builds(lambda kind, extra, resource: {**resource, **extra, "resourceType": kind}, RESOURCE_TYPES,
              st.dictionaries(st.sampled_from(["id", "subject", "code", "valueQuantity", "effectiveDateTime",
                                               "status", "category", "extension", "meta"]), JSON_VALUES, max_size=5),
              st.sampled_from(severe_sarcopenia())),
)
LINKS = st.lists(st.one_of(JSON_VALUES, st.fixed_dictionaries({"relation": st.sampled_from(["next", "self", 3, None])},
                                                               optional={"url": st.one_of(st.text(max_size=40), JSON_VALUES)})),
                 max_size=3)
BUNDLES = st.one_of(
    st.builds(lambda entries, links, total: {"resourceType": "Bundle", "type": "searchset", "total": total,
                                             "entry": entries, **({"link": links} if links else {})},
              st.lists(st.one_of(st.builds(lambda r: {"resource": r}, RESOURCES), JSON_VALUES), max_size=8),
              LINKS, st.one_of(st.integers(), JSON_VALUES)),
    RESOURCES,
)


class ScriptedFhirServer:
    """Answers every GET with the status, content type and body a test sets (127.0.0.1)."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.answer = (200, "application/fhir+json", b"{}")
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                status, content_type, body = server.answer
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/fhir"

    def __enter__(self) -> ScriptedFhirServer:
        import threading

        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_fetched_bundles(tmp_path_factory, templates):
    """Whatever the FHIR server answers (odd Bundles, entries, links, resources, statuses, bytes),
    the hook call answers without a 5xx."""
    from cds_service.app import create_app

    config = service_config(tmp_path_factory.mktemp("fuzz-fetched"), logging={"level": "WARNING", "format": "json"},
                            fhir={"allow_private_addresses": True, "breaker_failures": 10**6, "retries": 0})
    app = create_app(config, clock=lambda: NOW)
    fetching = app.test_client()
    prefetch = prefetch_for(severe_sarcopenia(), templates["patient-view"])
    try:
        with ScriptedFhirServer() as server:
            @examples("fetched")
            @given(answer=st.one_of(BUNDLES.map(lambda b: json.dumps(b).encode()), st.binary(max_size=200)),
                   status=st.sampled_from([200, 200, 200, 201, 301, 401, 404, 500, 503]),
                   content_type=st.sampled_from(["application/fhir+json", "application/json", "text/html", ""]),
                   keep_patient=st.booleans())
            def run(answer, status, content_type, keep_patient):
                server.answer = (status, content_type, answer)
                body = hook_request("patient-view", "sev-1", {"patient": prefetch["patient"]} if keep_patient else {})
                body["fhirServer"] = server.base
                body["fhirAuthorization"] = {"access_token": "at-fuzz", "token_type": "Bearer", "expires_in": 300,
                                             "scope": "patient/*.read", "subject": "fuzz"}
                check(send(fetching, "POST", "/cds-services/sarcopenia-patient-view", data=json.dumps(body)), "service")

            run()
    finally:
        app.extensions["cds"].store.dispose()


def test_impossible_feedback_timestamp_is_a_400(client):
    """Found by the fuzzer: the shape of a timestamp is not enough; the store must never see month 13."""
    body = {"feedback": [{"card": "c-1", "outcome": "overridden", "outcomeTimestamp": "2026-13-45T25:61:00Z"}]}
    path = f"/cds-services/{SERVICES[0]}/feedback"
    response = client.post(path, data=json.dumps(body), content_type="application/json",
                           headers={"Authorization": f"Bearer {tokens.token(BASE_URL + path)}"})
    assert response.status_code == 400
    assert response.get_json()["issue"] == [{
        "severity": "error", "code": "value", "expression": ["$.feedback[0].outcomeTimestamp"],
        "diagnostics": "$.feedback[0].outcomeTimestamp: '2026-13-45T25:61:00Z' is not a valid date and time"}]


SEGMENT = st.text(st.characters(codec="ascii", exclude_characters="/?#%"), min_size=1, max_size=20)


@examples("discovery")
@given(method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
       path=st.one_of(st.just("/cds-services"), st.just("/cds-services/"),
                      st.builds(lambda s: f"/cds-services/{s}", SEGMENT),
                      st.builds(lambda s: f"/cds-services/{s}/feedback", SEGMENT),
                      st.sampled_from([f"/cds-services/{s}" for s in SERVICES])),
       query=st.one_of(st.just(""), st.builds(lambda k, v: f"?{k}={v}", SEGMENT, SEGMENT)),
       accept=st.sampled_from(["application/json", "text/html", "*/*", "application/fhir+json"]))
def test_discovery_and_other_methods(client, method, path, query, accept):
    from urllib.parse import quote

    target = quote(path, safe="/") + query
    response = send(client, method, target, data=None if method in ("GET", "HEAD", "OPTIONS") else "{}",
                    headers={"Accept": accept})
    if method in ("HEAD", "OPTIONS") and response.status_code < 500:
        return  # no body to check (HEAD), or the CORS preflight's empty answer
    check(response, "discovery" if path.rstrip("/") == "/cds-services" and method == "GET" else "service")


def test_the_run_made_requests():
    """Run last in the module: the sample really exercised the service (counts printed with -s)."""
    assert sum(COUNTS.values()) >= min(TOTAL, 100) or os.environ.get("PYTEST_XDIST_WORKER")
