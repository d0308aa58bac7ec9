"""End to end: `sarcopenia-cds serve` and an open FHIR server (no fhirAuthorization), as the CDS Hooks Sandbox sends.

The server is listed in fhir.open_servers; its searches answer two resources a page (the patient's seven
Observations come on four pages) and its ServiceRequest search fails with HTTP 500. Every page is read, the
call is not a 412, the severe-sarcopenia card comes (grip 14.0 < 16 kg, L3 SMI 92.4 / 1.62² = 35.2 < 41,
gait 0.6 ≤ 0.8 m/s: EWGSOP2 severe, tests/support/patients.py), and the one warning names the failed key.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import requests

from tests.conftest import NOW
from tests.resilience.helpers import PV, UNKNOWN, topics, warnings_of
from tests.support import tokens
from tests.support.ehr import hook_request, prefetch_for, shift_dates
from tests.support.fhir_server import FhirTestServer
from tests.support.patients import severe_sarcopenia
from tests.support.server import running_service


def _signed(base: str, path: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens.token(base + path)}"}


@pytest.mark.slow
def test_an_open_server_is_paged_through_and_one_failing_search_is_a_warning_not_a_412(tmp_path):
    resources = shift_dates(severe_sarcopenia(), datetime.now(UTC) - NOW)
    with FhirTestServer(resources, page_size=2) as fhir:
        fhir.failing_types = {"ServiceRequest"}
        env = {"SARCOPENIA_CDS_FHIR__OPEN_SERVERS": json.dumps([fhir.base + "/"])}  # (a trailing slash matches)
        with running_service(f"sqlite:///{tmp_path / 'open.db'}", tmp_path, extra_env=env) as (base, _process):
            discovery = requests.get(base + "/cds-services", headers=_signed(base, "/cds-services"), timeout=5).json()
            templates = next(s for s in discovery["services"] if s["id"] == PV.rsplit("/", 1)[1])["prefetch"]

            # the sandbox sends fhirServer and no fhirAuthorization; here with no prefetch at all
            body = hook_request("patient-view", "sev-1")
            body["fhirServer"] = fhir.base
            response = requests.post(base + PV, json=body, headers=_signed(base, PV), timeout=10)
            assert response.status_code == 200, response.text
            answer = response.json()

            paths = [r["path"] for r in fhir.requests]
            assert {r["authorization"] for r in fhir.requests} == {None}
            observation_pages = [p for p in paths if p.startswith("/fhir/Observation")]
            assert observation_pages[0].startswith("/fhir/Observation?patient=sev-1&code=")  # the template's search
            assert observation_pages[1:] == [
                "/fhir/Observation?_page=1", "/fhir/Observation?_page=2", "/fhir/Observation?_page=3"]
            assert warnings_of(answer) == [
                "prefetch 'serviceRequests' could not be fetched: the FHIR server answered HTTP 500"
                + UNKNOWN.format("ServiceRequest")]
            assert topics(answer)[0] == "severe-sarcopenia"
            assert answer["cards"][0]["indicator"] == "critical"
            assert "sarcopenia-screening-due" not in topics(answer)

            # the same patient sent whole in the prefetch gives the same cards: nothing on pages 2-4 was lost
            full = hook_request("patient-view", "sev-1", prefetch_for(resources, templates))
            complete = requests.post(base + PV, json=full, headers=_signed(base, PV), timeout=10).json()
            assert topics(answer) == topics(complete)

            # the same server, not listed as open and without fhirAuthorization, is not called
            fhir.requests.clear()
            other = FhirTestServer(resources, page_size=2)
            with other:
                body = hook_request("patient-view", "sev-1", {"patient": prefetch_for(resources, templates)["patient"]})
                body["fhirServer"] = other.base
                response = requests.post(base + PV, json=body, headers=_signed(base, PV), timeout=10)
            assert response.status_code == 200, response.text
            assert other.requests == []
            assert warnings_of(response.json())[0] == (
                "prefetch 'conditions' was not in the prefetch, and the fhirServer came without fhirAuthorization "
                "and is not listed in fhir.open_servers" + UNKNOWN.format("Condition"))
