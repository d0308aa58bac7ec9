"""Issue 16 item 7, through HTTP: a prefetched Bundle whose next link has no url, or url 12345, is read as sent
with a clear warning; never a 500. Here with a fhirServer that could be paged (token given) and without one."""

from __future__ import annotations

import pytest

from tests.support.ehr import hook_request, prefetch_for
from tests.support.fhir_server import FhirTestServer
from tests.support.patients import severe_sarcopenia

PV = "/cds-services/sarcopenia-patient-view"
AUTHZ = {"access_token": "at-1", "token_type": "Bearer", "expires_in": 300, "scope": "patient/*.read",
         "subject": "sarcopenia-cds"}


@pytest.mark.parametrize(("link", "problem"), [
    ({"relation": "next"}, "the Bundle's next link (link[0]) has no url"),
    ({"relation": "next", "url": 12345}, "the Bundle's next link (link[0]) has a url that is not a string (int)"),
])
@pytest.mark.parametrize("with_server", [True, False])
def test_a_malformed_next_link_is_a_warning_not_a_500(ehr, link, problem, with_server):
    prefetch = prefetch_for(severe_sarcopenia(), ehr.templates("patient-view"))
    prefetch["observations"]["link"] = [link]
    body = hook_request("patient-view", "sev-1", prefetch)
    with FhirTestServer(severe_sarcopenia()) as fhir:
        if with_server:
            body.update(fhirServer=fhir.base, fhirAuthorization=AUTHZ)
        response = ehr.post(PV, body)
        assert fhir.requests == []
    assert response.status_code == 200, response.get_data(as_text=True)
    answer = response.get_json()
    assert {"code": "fhir-data", "message": f"prefetch 'observations' was read as sent (1 page): {problem}"} in \
        answer["extension"]["org.sarcopenia-cds.warnings"]
    assert answer["cards"][0]["source"]["topic"]["code"] == "severe-sarcopenia"
