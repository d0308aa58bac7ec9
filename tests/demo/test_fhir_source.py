"""The demo FHIR source: bearer token, read, search by patient / code / status, _count paging."""

from __future__ import annotations

import re
from datetime import date, timedelta
from urllib.parse import urlsplit

from cds_service.demo.data import DemoData, shift_value


def _get(client, url, headers):
    parts = urlsplit(url)
    return client.get(parts.path + (f"?{parts.query}" if parts.query else ""), headers=headers)


def test_read_needs_a_demo_token(client, fhir_token):
    assert client.get("/demo/fhir/Patient/syn-01").status_code == 401
    assert (
        client.get(
            "/demo/fhir/Patient/syn-01", headers={"Authorization": "Bearer forged"}
        ).status_code
        == 401
    )
    answer = client.get("/demo/fhir/Patient/syn-01", headers=fhir_token())
    assert answer.status_code == 200
    assert answer.mimetype == "application/fhir+json"
    patient = answer.get_json()
    assert patient["resourceType"] == "Patient" and patient["id"] == "syn-01"
    assert patient["name"][0]["family"] == "Synthetic"


def test_read_unknown_is_404_operation_outcome(client, fhir_token):
    answer = client.get("/demo/fhir/Patient/nobody", headers=fhir_token())
    assert answer.status_code == 404
    assert answer.get_json()["resourceType"] == "OperationOutcome"


def test_token_is_limited_to_its_patient(client, fhir_token):
    headers = fhir_token("syn-01")
    assert client.get("/demo/fhir/Patient/syn-02", headers=headers).status_code == 403
    assert client.get("/demo/fhir/Observation?patient=syn-02", headers=headers).status_code == 403
    assert client.get("/demo/fhir/Observation/syn-02-obs-3", headers=headers).status_code == 403


def test_search_by_patient_gives_a_searchset(client, fhir_token):
    bundle = client.get("/demo/fhir/Condition?patient=syn-01", headers=fhir_token()).get_json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    assert bundle["total"] == 2
    assert {e["resource"]["id"] for e in bundle["entry"]} == {"syn-01-cond-1", "syn-01-cond-2"}
    assert all(e["resource"]["subject"]["reference"] == "Patient/syn-01" for e in bundle["entry"])
    same = client.get(
        "/demo/fhir/Condition?subject=Patient/syn-01", headers=fhir_token()
    ).get_json()
    assert same["total"] == 2


def test_search_by_code_and_status(client, fhir_token):
    weights = client.get(
        "/demo/fhir/Observation?patient=syn-01&code=http://loinc.org|29463-7", headers=fhir_token()
    ).get_json()
    assert weights["total"] == 5  # tests/patients/README: the weight series of patient 01
    assert {e["resource"]["code"]["coding"][0]["code"] for e in weights["entry"]} == {"29463-7"}
    either = client.get(
        "/demo/fhir/Observation?patient=syn-01&code=http://loinc.org|29463-7,http://loinc.org|8302-2",
        headers=fhir_token(),
    ).get_json()
    assert either["total"] == 6
    wrong_system = client.get(
        "/demo/fhir/Observation?patient=syn-01&code=http://snomed.info/sct|29463-7",
        headers=fhir_token(),
    ).get_json()
    assert wrong_system["total"] == 0 and "entry" not in wrong_system
    completed = client.get(
        "/demo/fhir/MedicationRequest?patient=syn-01&status=completed", headers=fhir_token()
    ).get_json()
    assert completed["total"] == 1


def test_count_paging_follows_next_links(client, fhir_token):
    headers = fhir_token()
    everything = client.get("/demo/fhir/Observation?patient=syn-01", headers=headers).get_json()
    total = everything["total"]
    assert total > 5
    seen, url, pages = [], "/demo/fhir/Observation?patient=syn-01&_count=4", 0
    while url:
        page = _get(client, url, headers).get_json()
        pages += 1
        assert page["total"] == total
        assert len(page.get("entry", [])) <= 4
        seen += [e["resource"]["id"] for e in page.get("entry", [])]
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
        if url:
            assert url.startswith(
                "http://localhost/demo/fhir/Observation?"
            )  # absolute, same origin
    assert pages == -(-total // 4)
    assert seen == [e["resource"]["id"] for e in everything["entry"]]
    assert len(set(seen)) == total


def test_bad_count_is_400(client, fhir_token):
    assert (
        client.get(
            "/demo/fhir/Observation?patient=syn-01&_count=lots", headers=fhir_token()
        ).status_code
        == 400
    )


def test_capability_statement_is_public(client):
    statement = client.get("/demo/fhir/metadata").get_json()
    assert (
        statement["resourceType"] == "CapabilityStatement" and statement["fhirVersion"] == "4.0.1"
    )


def test_dates_move_so_that_the_bundles_now_is_today():
    same = DemoData(today=date(2026, 11, 28))
    later = DemoData(today=date(2026, 12, 5))
    assert later.delta == timedelta(days=7)
    assert same.read("Patient", "syn-01")["birthDate"] == "1958-03-14"
    assert later.read("Patient", "syn-01")["birthDate"] == "1958-03-21"
    assert same.read("Observation", "syn-01-obs-4")["effectiveDateTime"] == "2026-04-02T09:30:00Z"
    assert later.read("Observation", "syn-01-obs-4")["effectiveDateTime"] == "2026-04-09T09:30:00Z"
    orders = later.draft_orders("syn-02", "gemcitabine-atc")
    assert orders["entry"][0]["resource"]["authoredOn"].startswith("2026-12-05")
    assert shift_value("not a date", timedelta(days=3)) == "not a date"


def test_at_least_ten_synthetic_patients_with_orders():
    data = DemoData()
    assert len(data.patients) >= 10
    for patient in data.patients.values():
        tags = patient.resources[0].get("meta", {}).get("tag", [])
        assert any(t.get("code") == "synthetic" for t in tags)
    assert {"syn-01", "syn-02", "syn-11"} <= {p.id for p in data.patients.values() if p.orders}


def test_page_and_assets_are_local(client):
    """No CDN: every script and stylesheet of the page is served by the demo itself."""
    html = client.get("/demo").get_data(as_text=True)
    sources = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', html)
    assert sources and all(s.startswith("/demo/static/") or s == "/favicon.svg" for s in sources), sources
    for source in sources:
        assert client.get(source).status_code == 200
    assert "syn-01" in html and "Synthetic" in html


def test_demo_copies_match_the_test_patients():
    """The bundled demo data are copies of the test patients (cds_service/demo/patients/README.md).

    A difference only warns: whoever changes tests/patients should not be blocked by the demo."""
    import warnings
    from pathlib import Path

    from cds_service.demo.data import PATIENT_DIR

    source = Path(__file__).resolve().parents[1] / "patients"
    stale = [
        str(original.relative_to(source))
        for original in sorted(source.glob("*.json")) + sorted((source / "orders").glob("*.json"))
        if not (PATIENT_DIR / original.relative_to(source)).is_file()
        or (PATIENT_DIR / original.relative_to(source)).read_bytes() != original.read_bytes()
    ]
    if stale:
        warnings.warn(f"demo patients differ from tests/patients (copy again): {stale}", stacklevel=1)
