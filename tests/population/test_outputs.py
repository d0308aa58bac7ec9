"""The Task Bundle and the HTML summary, checked against the worklist they come from."""

from __future__ import annotations

import json
import re
import stat
from collections import Counter

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.task import Task

from tests.population.conftest import worklist_rows


def test_the_task_bundle_holds_one_valid_task_per_patient_and_suggested_referral(screened_1000):
    out, _report = screened_1000
    bundle = json.loads((out / "tasks.json").read_text())
    Bundle.model_validate(bundle)
    assert bundle["type"] == "transaction"
    expected = set()
    for row in worklist_rows(out):
        for suggestion in json.loads(row["suggestions_json"]):
            if any((a.get("resource") or {}).get("resourceType") == "ServiceRequest" for a in suggestion["actions"]):
                expected.add((row["patient_id"], suggestion["label"]))
    made = set()
    for entry in bundle["entry"]:
        task = entry["resource"]
        Task.model_validate(task)
        assert entry["request"]["method"] == "POST" and entry["request"]["url"] == "Task"
        assert task["status"] == "requested" and task["intent"] == "proposal"
        referral = task["contained"][0]
        assert task["focus"] == {"reference": "#referral"} and referral["resourceType"] == "ServiceRequest"
        assert referral["subject"] == task["for"]
        made.add((task["for"]["reference"].removeprefix("Patient/"), task["description"]))
    assert made == expected and len(made) == len(bundle["entry"]) > 100
    assert stat.S_IMODE((out / "tasks.json").stat().st_mode) == 0o600


def test_the_summary_counts_what_the_worklist_holds_and_needs_no_network(screened_1000):
    out, report = screened_1000
    page = (out / "summary.html").read_text()
    rows = worklist_rows(out)
    per_finding = Counter(code for _pid, code in {(r["patient_id"], r["finding"]) for r in rows})
    for code, count in per_finding.items():
        assert f"<tr><td>{code}</td>" in page
        assert re.search(rf"<tr><td>{re.escape(code)}</td><td>[^<]*</td><td>{count}</td></tr>", page), code
    assert page.count("<svg") == 2  # findings by age band, weight-loss distribution
    assert not re.search(r"<script|<link|src=\"http|href=\"http", page)
    assert not any(r["patient_id"] in page for r in rows)  # counts only
    assert "Encounter" in page  # read but not used by the packs: counted
    assert report.patients == 1000
