"""Same answers as the service: every patient's findings from `screen` equal a patient-view call's."""

from __future__ import annotations

import json
from collections import defaultdict

from tests.conftest import BASE_URL
from tests.population.conftest import read_export, worklist_rows
from tests.support.ehr import EhrClient, hook_request, prefetch_for

FINDINGS = "org.sarcopenia-cds.findings"


def _service_answer(ehr: EhrClient, templates: dict[str, str], pid: str, resources: list[dict]) -> dict:
    """{finding code: (evidence, suggestion labels on the cards that carry it)} from patient-view."""
    body = hook_request("patient-view", pid, prefetch_for(resources, templates))
    response = ehr.post("/cds-services/sarcopenia-patient-view", body)
    assert response.status_code == 200, response.get_data(as_text=True)
    answer: dict[str, tuple[list, set[str]]] = {}
    for card in response.get_json()["cards"]:
        labels = {s["label"] for s in card.get("suggestions", [])}
        for item in card["extension"][FINDINGS]:
            code = item["code"]["code"]
            evidence, seen = answer.get(code, (item.get("evidence", []), set()))
            answer[code] = (evidence, seen | labels)
    return answer


def test_every_patient_gets_the_findings_a_patient_view_call_gives(app, export_1000, screened_1000):
    out, report = screened_1000
    ehr = EhrClient(app.test_client(), BASE_URL)
    templates = ehr.templates("patient-view")
    patients = read_export(export_1000)
    assert report.patients == len(patients) == 1000

    screened: dict[str, dict] = defaultdict(dict)
    for row in worklist_rows(out):
        labels = set(row["suggested_actions"].split(" | ")) if row["suggested_actions"] else set()
        screened[row["patient_id"]][row["finding"]] = (json.loads(row["evidence_json"]), labels)
        assert row["pack_version"] == app.extensions["cds"].rules.current.version

    mismatched = []
    for pid, resources in sorted(patients.items()):
        if _service_answer(ehr, templates, pid, resources) != screened.get(pid, {}):
            mismatched.append(pid)
    assert mismatched == []
    # the export holds planted cases of every patient-view finding the packs make from records
    made = {code for answer in screened.values() for code in answer}
    assert {"sarcopenia-screening-due", "ct-body-composition-available", "probable-sarcopenia", "sarcopenia",
            "severe-sarcopenia", "low-skeletal-muscle-index", "sarcopenic-obesity", "cancer-cachexia",
            "refractory-cachexia", "pre-cachexia", "systemic-inflammation", "sarcopenia-case-finding-positive",
            "implausible-measurement"} <= made
