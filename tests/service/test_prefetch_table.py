"""The prefetch decision table against a real FHIR server on 127.0.0.1 (spec-digest §1.4)."""

from __future__ import annotations

import time

import pytest

from cds_service.config import DEFAULTS
from cds_service.fhir import Budget, FetchError, FhirClient, gather
from tests.support.fhir_server import FhirTestServer

TEMPLATES = {
    "patient": "Patient/{{context.patientId}}",
    "observations": "Observation?patient={{context.patientId}}",
}
TOKENS = {"context.patientId": "p1"}
PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "female"}
OBS = [{"resourceType": "Observation", "id": f"o{i}", "status": "final", "code": {"text": "x"}} for i in range(5)]


def client(**overrides) -> FhirClient:
    return FhirClient({**DEFAULTS["fhir"], "max_bundle_pages": 10, "allow_private_addresses": True, **overrides})


@pytest.fixture()
def server():
    with FhirTestServer([PATIENT, *OBS], page_size=2) as srv:
        yield srv


def ids(gathered) -> list[str]:
    return sorted(f"{r['resourceType']}/{r['id']}" for r in gathered.resources)


def test_prefetched_resource_and_bundle_are_used_without_fetching(server):
    """Req 28: prefetched data is used as sent; nothing is fetched."""
    prefetch = {"patient": PATIENT, "observations": {"resourceType": "Bundle", "type": "searchset",
                                                     "entry": [{"resource": OBS[0]}]}}
    got = gather(prefetch, TEMPLATES, TOKENS, server.base, "tok", client(), Budget(2))
    assert ids(got) == ["Observation/o0", "Patient/p1"]
    assert got.sources == {"patient": "prefetch", "observations": "prefetch"}
    assert server.requests == []


def test_null_means_no_data_and_is_never_fetched(server):
    """Spec §Prefetch: null = the client has no data; the service must not re-fetch it."""
    got = gather({"patient": PATIENT, "observations": None}, TEMPLATES, TOKENS, server.base, "tok", client(), Budget(2))
    assert ids(got) == ["Patient/p1"]
    assert got.sources["observations"] == "null"
    assert got.missing == {}
    assert server.requests == []


def test_absent_key_is_fetched_with_the_bearer_token_and_all_pages(server):
    """Req 34, 60, 61: absent keys are fetched from fhirServer with the access token; next links followed."""
    got = gather({"patient": PATIENT}, TEMPLATES, TOKENS, server.base, "secret-token", client(), Budget(2))
    assert ids(got) == ["Observation/o0", "Observation/o1", "Observation/o2", "Observation/o3", "Observation/o4", "Patient/p1"]
    assert got.sources["observations"] == "fetched"
    assert [r["path"] for r in server.requests] == [
        "/fhir/Observation?patient=p1", "/fhir/Observation?_page=1", "/fhir/Observation?_page=2"]
    assert {r["authorization"] for r in server.requests} == {"Bearer secret-token"}


def test_operation_outcome_in_prefetch_is_refetched(server):
    """Req 52: an OperationOutcome in place of prefetch data is treated as absent and fetched."""
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "timeout"}]}
    got = gather({"patient": outcome, "observations": None}, TEMPLATES, TOKENS, server.base, "t", client(), Budget(2))
    assert ids(got) == ["Patient/p1"]
    assert got.sources["patient"] == "fetched"
    assert [r["path"] for r in server.requests] == ["/fhir/Patient/p1"]


def test_missing_key_without_fhir_server_is_reported_with_the_real_reason():
    """Req 54: no prefetch and no fhirServer → the key is missing (412 only if it is the Patient)."""
    got = gather({"patient": PATIENT}, TEMPLATES, TOKENS, None, None, client(), Budget(2))
    assert got.missing == {"observations": "prefetch 'observations' was not in the prefetch, and the request gave no fhirServer to fetch it from"}


def test_a_server_without_authorization_is_not_called_unless_open(server):
    """fhirServer without fhirAuthorization: not called, and the warning says so (not 'no fhirServer')."""
    got = gather({"patient": PATIENT}, TEMPLATES, TOKENS, server.base, None, client(), Budget(2))
    assert got.missing == {"observations": "prefetch 'observations' was not in the prefetch, and the fhirServer "
                                           "came without fhirAuthorization and is not listed in fhir.open_servers"}
    assert server.requests == []


def test_an_open_server_is_called_without_a_token_and_paged(server):
    """fhir.open_servers: fetched with no Authorization header, every page read."""
    got = gather({"patient": PATIENT}, TEMPLATES, TOKENS, server.base, None, client(), Budget(2), open_server=True)
    assert ids(got) == ["Observation/o0", "Observation/o1", "Observation/o2", "Observation/o3", "Observation/o4", "Patient/p1"]
    assert [r["path"] for r in server.requests] == [
        "/fhir/Observation?patient=p1", "/fhir/Observation?_page=1", "/fhir/Observation?_page=2"]
    assert {r["authorization"] for r in server.requests} == {None}


def test_a_prefetched_bundle_with_more_pages_and_no_usable_server_says_why(server):
    first = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": OBS[0]}],
             "link": [{"relation": "next", "url": f"{server.base}/Observation?_page=1"}]}
    got = gather({"patient": PATIENT, "observations": first}, TEMPLATES, TOKENS, server.base, None, client(), Budget(2))
    assert ids(got) == ["Observation/o0", "Patient/p1"]
    assert got.warnings == ["prefetch 'observations' has more pages, which were not read: the fhirServer came "
                            "without fhirAuthorization and is not listed in fhir.open_servers"]
    got = gather({"patient": PATIENT, "observations": first}, TEMPLATES, TOKENS, None, None, client(), Budget(2))
    assert got.warnings == ["prefetch 'observations' has more pages, which were not read: "
                            "the request gave no fhirServer to fetch it from"]


@pytest.mark.parametrize(("link", "problem"), [
    ({"relation": "next"}, "the Bundle's next link (link[0]) has no url"),
    ({"relation": "next", "url": 12345}, "the Bundle's next link (link[0]) has a url that is not a string (int)"),
    ({"relation": "next", "url": " "}, "the Bundle's next link (link[0]) has an empty url"),
])
def test_a_malformed_next_link_in_a_prefetched_bundle_is_a_warning(server, link, problem):
    """Issue 16 item 7: {"relation": "next"} without url, or url 12345, is read as one page and warned."""
    first = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": OBS[0]}], "link": [link]}
    got = gather({"patient": PATIENT, "observations": first}, TEMPLATES, TOKENS, server.base, "t", client(), Budget(2))
    assert ids(got) == ["Observation/o0", "Patient/p1"]
    assert got.warnings == [f"prefetch 'observations' was read as sent (1 page): {problem}"]
    assert server.requests == []


def test_a_malformed_next_link_on_a_fetched_page_is_a_warning(server, monkeypatch):
    """A fetched page whose next link has url 12345: its entries are kept, paging stops with a warning."""
    fhir = client()
    original = fhir.get_json

    def broken_second_page(url, token, budget, server=None):
        page = original(url, token, budget, server)
        if "_page=1" in url:
            page["link"] = [{"relation": "self", "url": url}, {"relation": "next", "url": 12345}]
        return page

    monkeypatch.setattr(fhir, "get_json", broken_second_page)
    got = gather({"patient": PATIENT}, TEMPLATES, TOKENS, server.base, "t", fhir, Budget(2))
    assert ids(got) == ["Observation/o0", "Observation/o1", "Observation/o2", "Observation/o3", "Patient/p1"]
    assert got.warnings == ["'observations': paging stopped after 2 page(s): the Bundle's next link (link[1]) "
                            "has a url that is not a string (int)"]
    assert got.missing == {}


def test_prefetched_bundle_with_next_link_is_paged_through(server):
    """Spec: a CDS Client MAY paginate prefetch results; the service follows next."""
    first = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": OBS[0]}, {"resource": OBS[1]}],
             "link": [{"relation": "next", "url": f"{server.base}/Observation?_page=1"}]}
    got = gather({"patient": PATIENT, "observations": first}, TEMPLATES, TOKENS, server.base, "t", client(), Budget(2))
    assert ids(got) == ["Observation/o0", "Observation/o1", "Observation/o2", "Observation/o3", "Observation/o4", "Patient/p1"]


def test_next_link_to_another_origin_is_not_followed(server):
    """A next link pointing outside fhirServer is never fetched (no SSRF through paging)."""
    first = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": OBS[0]}],
             "link": [{"relation": "next", "url": "http://127.0.0.2:9/evil?page=2"}]}
    got = gather({"patient": PATIENT, "observations": first}, TEMPLATES, TOKENS, server.base, "t", client(), Budget(2))
    assert ids(got) == ["Observation/o0", "Patient/p1"]
    assert got.warnings == ["'observations': a Bundle next link pointed outside fhirServer and was not followed"]


def test_paging_forever_stops_at_the_page_bound(server):
    server.mode = "forever"
    got = gather({"patient": PATIENT}, TEMPLATES, TOKENS, server.base, "t", client(), Budget(2))
    assert got.sources["observations"] == "fetched"
    assert "'observations': paging stopped after 10 pages" in got.warnings
    assert len(server.requests) == 10


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("500", "the FHIR server answered HTTP 500"),
        ("html", "the FHIR server answered text/html, not FHIR JSON"),
        ("close", "the FHIR server could not be reached or closed the connection"),
        ("slow", "the FHIR server did not answer in time"),
    ],
)
def test_failing_server_gives_a_specific_missing_reason_within_the_budget(server, mode, message):
    server.mode = mode
    started = time.monotonic()
    got = gather({"patient": PATIENT}, TEMPLATES, TOKENS, server.base, "t", client(), Budget(2.0))
    elapsed = time.monotonic() - started
    assert got.missing == {"observations": f"prefetch 'observations' could not be fetched: {message}"}
    assert elapsed < 2.2


def test_unreachable_server_is_reported():
    got = gather({"patient": PATIENT}, TEMPLATES, TOKENS, "http://127.0.0.1:9/fhir", "t", client(), Budget(2))
    assert got.missing == {"observations": "prefetch 'observations' could not be fetched: the FHIR server could not be reached or closed the connection"}


def test_circuit_opens_after_repeated_failures(server):
    server.mode = "500"
    fhir = client(breaker_failures=2, retries=0)
    for _ in range(2):
        with pytest.raises(FetchError):
            fhir.fetch(server.base, "Observation?patient=p1", "t", Budget(2))
    count = len(server.requests)
    with pytest.raises(FetchError, match="circuit open"):
        fhir.fetch(server.base, "Observation?patient=p1", "t", Budget(2))
    assert len(server.requests) == count


def test_get_is_retried_once_on_a_transient_failure(server):
    server.mode = "500"
    with pytest.raises(FetchError):
        client(retries=1, breaker_failures=99).fetch(server.base, "Observation?patient=p1", "t", Budget(2))
    assert len(server.requests) == 2
