"""Issue 16, from an attacker's point of view: one regression test per item this branch fixes,
each with the exact status and message, and the next good request answered.

Items 2 and 3 (feedback timestamps, suppression scoped by issuer, tenant and service) are the
store's scoped suppressions, tested with the store; the malformed Bundle `link` and paging are
the FHIR client's paging tests; tests/e2e/test_http_hardening.py has the real-server items
(slow headers, oversized headers, the metrics port)."""

from __future__ import annotations

import json
import logging
import socket
import stat
from datetime import timedelta

import pytest
import sqlalchemy as sa

from cds_service import cli
from cds_service.fhir import Budget, FhirClient
from cds_service.fhir.egress import EgressPolicy, is_public_address
from tests.conftest import BASE_URL
from tests.resilience.helpers import PV, authorization, diagnostics, fetching_body, full_body, topics
from tests.support import tokens
from tests.support.ehr import EhrClient, hook_request
from tests.support.fhir_server import FhirTestServer
from tests.support.patients import severe_sarcopenia

UNREACHABLE = "the FHIR server could not be reached or closed the connection"
KEYS = ["conditions", "imagingStudies", "observations", "patient", "serviceRequests"]
CARDS = ["severe-sarcopenia"]


def unreachable(keys=KEYS) -> list[str]:
    return [f"prefetch '{key}' could not be fetched: {UNREACHABLE}" for key in sorted(keys)]


@pytest.fixture()
def fhir():
    with FhirTestServer(severe_sarcopenia(), page_size=3) as server:
        yield server


def client_for(make_app, **overrides) -> EhrClient:
    return EhrClient(make_app(**overrides).test_client(), BASE_URL)


def assert_next_good_request_answered(ehr: EhrClient) -> None:
    response = ehr.post(PV, full_body(ehr))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert topics(response.get_json()) == CARDS


# -- 1. fhir.allow_http: false holds for fhirServer ---------------------------------------------


def test_1_allow_http_false_sends_nothing_over_plain_http(make_app, fhir):
    ehr = client_for(make_app, fhir={"allow_http": False, "allow_private_addresses": True})
    response = ehr.post(PV, fetching_body(ehr, fhir.base, keep=()))
    assert response.status_code == 412
    assert sorted(diagnostics(response.get_json())) == unreachable()
    assert fhir.requests == [], "the bearer token went out over plain HTTP"
    assert_next_good_request_answered(ehr)


def test_1_allow_http_false_holds_for_the_smart_client_too():
    policy = EgressPolicy({"allow_http": False, "allow_private_addresses": True}, trusted=["http://ehr.test/fhir"])
    client = FhirClient({"connect_timeout_seconds": 0.5, "read_timeout_seconds": 0.5, "retries": 0,
                         "backoff_seconds": 0.1, "breaker_failures": 5, "breaker_reset_seconds": 30}, egress=policy)
    with pytest.raises(Exception, match=f"^{UNREACHABLE}$"):
        client.fetch("http://ehr.test/fhir", "Patient/p1", "t", Budget(1))


# -- 4. the circuit breaker counts server failures only, by origin ------------------------------


def test_4_a_callers_401s_never_open_the_breaker_for_the_next_caller(make_app, fhir):
    ehr = client_for(make_app)
    fhir.accepted_tokens = {"good-token"}
    for _ in range(6):  # more than fhir.breaker_failures (5) calls, each with five 401s
        response = ehr.post(PV, fetching_body(ehr, fhir.base, keep=(), token="expired-token"))
        assert response.status_code == 412
        assert sorted(diagnostics(response.get_json())) == [
            f"prefetch '{key}' could not be fetched: the FHIR server answered HTTP 401" for key in KEYS]
    response = ehr.post(PV, fetching_body(ehr, fhir.base, keep=(), token="good-token"))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert topics(response.get_json()) == CARDS


def test_4_the_breaker_is_keyed_by_origin_not_by_the_base_path(make_app, fhir):
    """Five failing calls under one base path pause every base path on that server."""
    ehr = client_for(make_app)
    fhir.mode = "500"
    for _ in range(5):
        assert ehr.post(PV, fetching_body(ehr, fhir.base + "/a", keep=())).status_code == 412
    fhir.mode = "ok"
    seen = len(fhir.requests)
    response = ehr.post(PV, fetching_body(ehr, fhir.base, keep=()))
    assert response.status_code == 412
    assert sorted(diagnostics(response.get_json())) == [
        f"prefetch '{key}' could not be fetched: the FHIR server failed repeatedly; calls are paused (circuit open)"
        for key in KEYS]
    assert len(fhir.requests) == seen
    assert_next_good_request_answered(ehr)


# -- 5. SSRF: the issuer's fhir_servers, no internal addresses, one message ----------------------


def test_5_an_issuer_that_lists_its_servers_is_answered_as_if_it_sent_no_other(make_app, fhir):
    with FhirTestServer(severe_sarcopenia(), page_size=3) as listed:
        issuer = {**tokens.issuer_config(), "fhir_servers": [listed.base + "/"]}
        ehr = client_for(make_app, auth={"required": True, "issuers": [issuer]},
                         fhir={"allow_private_addresses": False})
        response = ehr.post(PV, fetching_body(ehr, fhir.base, keep=()))
        assert response.status_code == 412
        assert sorted(diagnostics(response.get_json())) == [
            f"prefetch '{key}' was not in the prefetch, and the request gave no fhirServer to fetch it from"
            for key in KEYS]
        assert fhir.requests == []
        # the listed server is called, on loopback too: the operator configured it
        response = ehr.post(PV, fetching_body(ehr, listed.base, keep=()))
        assert response.status_code == 200, response.get_data(as_text=True)
        assert topics(response.get_json()) == CARDS
        assert {r["authorization"] for r in listed.requests} == {"Bearer at-resilience"}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_5_internal_addresses_are_refused_with_the_message_of_a_dead_server(make_app, fhir):
    """Loopback (an open FHIR port, Redis's port, a closed port), private, link-local and a name
    resolving to loopback: nothing is sent, and every answer reads the same (no port oracle)."""
    ehr = client_for(make_app, fhir={"allow_private_addresses": False})
    targets = [fhir.base, "http://127.0.0.1:6379/", f"http://127.0.0.1:{_closed_port()}/fhir",
               "http://10.0.0.7/fhir", "http://169.254.169.254/latest", "http://[::1]:5432/",
               f"http://localhost:{fhir.port}/fhir", "http://no-such-host.invalid/fhir"]
    for target in targets:
        response = ehr.post(PV, fetching_body(ehr, target, keep=()))
        assert response.status_code == 412, target
        assert sorted(diagnostics(response.get_json())) == unreachable(), target
    assert fhir.requests == []
    assert_next_good_request_answered(ehr)


def test_5_a_public_address_fails_like_a_refused_one(monkeypatch):
    """The message for a public server that does not answer is the refusal's message too."""
    real = socket.getaddrinfo
    port = _closed_port()
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: real("127.0.0.1", *a, **k)
                        if host == "public.test" else real(host, *a, **k))
    monkeypatch.setattr("cds_service.fhir.egress.is_public_address", lambda _address: True)
    client = FhirClient({"connect_timeout_seconds": 0.5, "read_timeout_seconds": 0.5, "retries": 0,
                         "backoff_seconds": 0.1, "breaker_failures": 5, "breaker_reset_seconds": 30})
    with pytest.raises(Exception, match=f"^{UNREACHABLE}$"):
        client.fetch(f"https://public.test:{port}/fhir", "Patient/p1", "t", Budget(1))


def test_5_a_name_that_rebinds_to_loopback_is_connected_to_the_address_that_was_checked(monkeypatch, fhir):
    """DNS rebinding: the name resolves to a public address once, then to 127.0.0.1. The
    connection goes to the address that was checked, never a second lookup's answer."""
    calls = []
    real = socket.getaddrinfo

    def rebinding(host, port, *args, **kwargs):
        if host != "rebind.test":
            return real(host, port, *args, **kwargs)
        calls.append(host)
        address = "192.0.2.1" if len(calls) == 1 else "127.0.0.1"  # TEST-NET-1: never answers
        return real(address, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    monkeypatch.setattr("cds_service.fhir.egress.is_public_address",
                        lambda address: address == "192.0.2.1")  # as if TEST-NET-1 were public
    client = FhirClient({"connect_timeout_seconds": 0.3, "read_timeout_seconds": 0.3, "retries": 0,
                         "backoff_seconds": 0.1, "breaker_failures": 5, "breaker_reset_seconds": 30})
    with pytest.raises(Exception, match=f"^{UNREACHABLE}$"):
        client.fetch(f"http://rebind.test:{fhir.port}/fhir", "Patient/p1", "t", Budget(1))
    assert calls == ["rebind.test"], "resolved once, for the check and the connection"
    assert fhir.requests == []


@pytest.mark.parametrize(("address", "public"), [
    ("93.184.216.34", True), ("2606:2800:220:1:248:1893:25c8:1946", True),
    ("127.0.0.1", False), ("10.1.2.3", False), ("172.16.0.1", False), ("192.168.1.1", False),
    ("169.254.169.254", False), ("100.64.0.1", False), ("0.0.0.0", False), ("::1", False),
    ("fe80::1", False), ("fc00::1", False), ("::ffff:127.0.0.1", False), ("224.0.0.1", False),
])
def test_5_which_addresses_are_public(address, public):
    assert is_public_address(address) is public


# -- 6. every resource counts against limits.max_prefetch_resources ------------------------------


def test_6_fetched_resources_count_against_the_limit(make_app, fhir):
    ehr = client_for(make_app, limits={"max_prefetch_resources": 5})
    response = ehr.post(PV, fetching_body(ehr, fhir.base, keep=("patient",)))
    fetched = len(severe_sarcopenia()) - 1  # every resource of the patient but the Patient itself
    assert response.status_code == 413
    assert diagnostics(response.get_json()) == [
        f"the request brings {fetched + 1} resources (1 in the prefetch, {fetched} fetched from fhirServer, "
        "0 draft orders); the limit is 5 (limits.max_prefetch_resources)"]
    ehr = client_for(make_app)
    assert_next_good_request_answered(ehr)


def test_6_draft_orders_count_against_the_limit(make_app):
    ehr = client_for(make_app, limits={"max_prefetch_resources": 3})
    orders = [{"resourceType": "MedicationRequest", "id": f"mr-{i}", "status": "draft", "intent": "order",
               "subject": {"reference": "Patient/sev-1"},
               "medicationCodeableConcept": {"text": "cisplatin"}} for i in range(4)]
    body = hook_request("order-sign", "sev-1", {}, draftOrders={
        "resourceType": "Bundle", "type": "collection", "entry": [{"resource": o} for o in orders]})
    response = ehr.post("/cds-services/sarcopenia-order-sign", body)
    assert response.status_code == 413
    assert diagnostics(response.get_json()) == [
        "the request brings 4 resources (0 in the prefetch, 0 fetched from fhirServer, 4 draft orders); "
        "the limit is 3 (limits.max_prefetch_resources)"]


def test_6_4999_observations_under_the_default_limits_are_answered(ehr):
    """The default body limit (16 MiB) holds the default 5,000 resources at about 2.4 KB each
    (5 MiB did not: 1 KB each); the resource limit counts every key's resources."""
    body = full_body(ehr)
    observation = next(e["resource"] for e in body["prefetch"]["observations"]["entry"]
                       if e["resource"]["id"] == "sev-1-g1")
    others = sum(1 for r in severe_sarcopenia() if r["resourceType"] != "Observation")
    padding = {"text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">" + "x" * 2000 + "</div>"}}
    body["prefetch"]["observations"]["entry"] = [
        {"resource": {**observation, **padding, "id": f"o-{i}"}} for i in range(5000 - others)]
    assert len(json.dumps(body)) > 2 * 5 * 1024 * 1024  # twice the old limit
    response = ehr.post(PV, body)
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    body["prefetch"]["observations"]["entry"].append({"resource": {**observation, "id": "o-one-too-many"}})
    response = ehr.post(PV, body)
    assert response.status_code == 413
    assert diagnostics(response.get_json()) == [
        "the request brings 5001 resources (5001 in the prefetch, 0 fetched from fhirServer, 0 draft orders); "
        "the limit is 5000 (limits.max_prefetch_resources)"]


# -- 7. deep nesting, database outages ---------------------------------------------------------


def test_7_deeply_nested_extensions_are_a_400(ehr):
    body = full_body(ehr)
    extension = {"url": "http://example.org/e", "valueString": "v"}
    for _ in range(150):
        extension = {"url": "http://example.org/e", "extension": [extension]}
    deep = {**body["prefetch"]["observations"]["entry"][0]["resource"], "id": "deep-1", "extension": [extension]}
    body["prefetch"]["observations"]["entry"].append({"resource": deep})
    response = ehr.post(PV, body)
    assert response.status_code == 400
    assert diagnostics(response.get_json()) == [
        "Observation/deep-1 is nested too deeply to be checked (elements or extensions more than about 100 "
        "levels down); the request was not processed"]
    assert_next_good_request_answered(ehr)


def test_7_an_unreachable_database_is_a_503_with_retry_after(app, ehr, monkeypatch):
    try:  # the real error of PostgreSQL that is not there (as while it restarts)
        sa.create_engine("postgresql+psycopg://cds@127.0.0.1:1/cds", connect_args={"connect_timeout": 1}).connect()
    except sa.exc.OperationalError as exc:
        outage = exc
    store = app.extensions["cds"].store

    def down(*_args, **_kwargs):
        raise outage

    monkeypatch.setattr(store, "suppressions", down)
    response = ehr.post(PV, full_body(ehr))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert diagnostics(response.get_json()) == ["the service's database is unavailable; try again shortly"]
    monkeypatch.undo()
    assert_next_good_request_answered(ehr)


# -- 8. smaller leaks --------------------------------------------------------------------------


def test_8_metrics_need_the_token_and_are_not_served_without_one(make_app, ehr):
    plain = make_app().test_client()
    response = plain.get("/metrics")
    assert response.status_code == 404
    assert diagnostics(response.get_json()) == ["metrics are served only with metrics.token or on metrics.port"]
    guarded = make_app(metrics={"token": "m" * 32}).test_client()
    for header in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "m" * 32}):
        response = guarded.get("/metrics", headers=header)
        assert response.status_code == 401
        assert response.get_json() == {"resourceType": "OperationOutcome", "issue": [
            {"severity": "error", "code": "login", "diagnostics": "Unauthorized"}]}
    response = guarded.get("/metrics", headers={"Authorization": "Bearer " + "m" * 32})
    assert response.status_code == 200
    assert "cds_requests_total" in response.get_data(as_text=True)


def test_8_the_demo_keeps_metrics_open(tmp_path):
    from cds_service.demo import create_demo_app

    app = create_demo_app("127.0.0.1", 8080, tmp_path)  # not bound: the test client only
    try:
        assert app.test_client().get("/metrics").status_code == 200
    finally:
        app.extensions["cds"].store.dispose()


@pytest.mark.parametrize("patient_id", [".", ".."])
def test_8_dot_ids_are_refused(ehr, fhir, patient_id):
    body = fetching_body(ehr, fhir.base, keep=(), patient_id=patient_id)
    response = ehr.post(PV, body)
    assert response.status_code == 400
    assert diagnostics(response.get_json()) == [
        f"$.context.patientId: '{patient_id}' is not allowed: '.' and '..' are not FHIR ids"]
    assert fhir.requests == []
    assert_next_good_request_answered(ehr)


def test_8_a_dot_segment_never_goes_into_a_prefetch_query():
    """userId 'Practitioner/..' passes the reference pattern; its id never reaches a template."""
    from cds_service.fhir.templates import render_template

    assert render_template("Practitioner/{{userPractitionerId}}", {"userPractitionerId": ".."}) is None
    assert render_template("Patient/{{context.patientId}}", {"context.patientId": "."}) is None
    assert render_template("Patient/{{context.patientId}}", {"context.patientId": "p.1"}) == "Patient/p.1"


def test_8_a_401_logs_the_route_never_the_path(app, ehr, caplog):
    """A rejected call logs its route template; an unknown path (404 before the JWT gate) logs no path."""
    client = app.test_client()
    with caplog.at_level(logging.DEBUG):
        assert client.get("/metrics/Patient/syn-01").status_code == 404
        assert client.post("/cds-services/sarcopenia-patient-view", json={}).status_code == 401
    logged = "\n".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records)
    assert "syn-01" not in logged and "sarcopenia-patient-view" not in logged
    endpoints = [r.endpoint for r in caplog.records if r.getMessage() == "auth rejected"]
    assert endpoints == ["/cds-services/<service_id>"]
    assert_next_good_request_answered(ehr)


def test_8_an_integer_grip_of_10_to_the_309_is_an_implausible_value(ehr):
    body = full_body(ehr)
    raw = None
    for entry in body["prefetch"]["observations"]["entry"]:
        if entry["resource"]["id"] == "sev-1-g2":
            entry["resource"]["valueQuantity"]["value"] = "__HUGE__"
    raw = json.dumps(body).replace('"__HUGE__"', str(10**309))
    response = ehr.post(PV, data=raw)
    assert response.status_code == 200, response.get_data(as_text=True)
    cards = response.get_json()["cards"]
    assert topics({"cards": cards})[0] == "severe-sarcopenia"  # the other grip (13.5 kg) still counts
    assert cards[0]["summary"].startswith("Severe sarcopenia (EWGSOP2): grip 13.5 kg")
    quality = [c for c in cards if c["summary"].startswith("Implausible or contradictory measurement ignored")]
    assert len(quality) == 1
    assert "1.00e+309" in quality[0]["detail"] and "not a finite number" in quality[0]["detail"]
    assert_next_good_request_answered(ehr)


def test_8_database_journal_and_key_files_are_0600(tmp_path, make_app):
    app = make_app()
    ehr = EhrClient(app.test_client(), BASE_URL)
    assert_next_good_request_answered(ehr)  # cards journaled, key generated
    app.extensions["cds"].store.flush_journal()
    files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir() if p.name.startswith("cds.db")}
    assert {"cds.db", "cds.db-wal", "cds.db-pseudonym.key", "cds.db-writelock"} <= set(files)
    assert {name: mode for name, mode in files.items() if mode != 0o600} == {}


# -- 9. serve: one worker per core -------------------------------------------------------------


def test_9_serve_runs_one_worker_per_core_when_the_replay_cache_is_shared(monkeypatch):
    monkeypatch.setattr(cli, "cores", lambda: 4)
    assert cli.default_workers({"redis": {"url": "redis://127.0.0.1:6379/0"}}) == 4
    assert cli.default_workers({"redis": {"url": None}}) == 1
