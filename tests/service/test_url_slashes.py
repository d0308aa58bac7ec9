"""Trailing and doubled slashes: `/cds-services/` is discovery, `/cds-services//id` is the service `id`.

A discovery URL typed with a trailing slash makes clients (the CDS Hooks Sandbox among them) call
`{discovery}/{id}` = `…/cds-services//id` and sign that URL as the JWT `aud`."""

from __future__ import annotations

from tests.support.ehr import hook_request, prefetch_for
from tests.support.patients import severe_sarcopenia


def test_discovery_answers_with_a_trailing_slash(ehr):
    plain = ehr.get("/cds-services")
    for path in ("/cds-services/", "/cds-services//"):
        response = ehr.get(path)
        assert response.status_code == 200, (path, response.get_data(as_text=True))
        assert response.get_json() == plain.get_json()


def test_a_service_called_with_a_doubled_or_trailing_slash_answers_as_without(ehr):
    body = hook_request("patient-view", "sev-1", prefetch_for(severe_sarcopenia(), ehr.templates("patient-view")))
    expected = ehr.post("/cds-services/sarcopenia-patient-view", body).get_json()
    for path in ("/cds-services//sarcopenia-patient-view", "/cds-services/sarcopenia-patient-view/"):
        response = ehr.post(path, {**body, "hookInstance": body["hookInstance"][:-4] + "0000"})
        assert response.status_code == 200, (path, response.get_data(as_text=True))
        assert [c["summary"] for c in response.get_json()["cards"]] == [c["summary"] for c in expected["cards"]]


def test_other_paths_keep_their_slashes(ehr):
    assert ehr.get("/cds-servicesx").status_code in (401, 404)
    assert ehr.get("/healthz/").status_code == 404
