"""The synthetic patients are valid FHIR R4 and their expectations use only contract codes.

- every patient bundle and draft-order bundle parses with fhir.resources.R4B;
- every expected finding code is one of the finding codes of findings.md;
- every scenario in expected.yaml names an existing bundle / order file and a known hook,
  profile and suggestion kind, and asserts something.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from fhir.resources.R4B.bundle import Bundle

HERE = Path(__file__).parent
REPO = HERE.parent.parent
NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)

#: The finding codes of findings.md (the contract). Cross-checked against the document
#: itself when a copy is reachable (test_finding_list_matches_findings_md).
FINDING_CODES = frozenset({
    "sarcopenia-screening-due",
    "ct-body-composition-available",
    "sarcopenia-case-finding-positive",
    "probable-sarcopenia",
    "possible-sarcopenia",
    "sarcopenia",
    "severe-sarcopenia",
    "low-skeletal-muscle-index",
    "sarcopenic-obesity",
    "pre-cachexia",
    "cancer-cachexia",
    "refractory-cachexia",
    "systemic-inflammation",
    "chemotherapy-toxicity-risk",
    "surgical-risk-prehabilitation",
    "implausible-measurement",
})

SUGGESTION_KINDS = frozenset({
    "dietitian-referral",
    "exercise-referral",
    "mdt-referral",
    "palliative-care-referral",
    "ct-body-composition-analysis",
    "information-only",
})

#: Things knowledge-base §3.9 says must never be auto-suggested (names used in not_suggested).
NOT_RECOMMENDED = frozenset({
    "enteral-or-parenteral-nutrition",
    "anamorelin",
    "androgens",
    "myostatin-inhibitor",
    "ketogenic-or-vlckd-diet",
    "high-dose-micronutrients",
    "hmb-bcaa-cannabinoids-standalone",
    "aggressive-nutrition-exercise-targets",
})

INFORMATION_KEYS = frozenset({
    "I-ASSESS", "I-REPEAT", "I-DQ", "I-TOX", "I-PREHAB", "I-SO", "I-INFLAM", "I-EPA",
    "I-APP", "I-ONS",
})

HOOKS = {"patient-view", "order-select", "order-sign"}

#: Every key a scenario may carry (a misspelt key would otherwise assert nothing).
SCENARIO_KEYS = frozenset({
    "id", "hook", "profile", "ct_cutoffs", "order", "findings", "findings_include",
    "findings_exclude", "suggestions", "information", "not_suggested", "exercise_supervised",
    "targets", "exercise_deferred", "no_protein_target", "first_card_topic", "text_includes",
    "suggestions_text_excludes",
})
PROFILES = {("ewgsop2", "martin2013"), ("awgs2019", "zhuang2016")}

BUNDLE_FILES = sorted(HERE.glob("[0-9][0-9]-*.json"))
ORDER_FILES = sorted((HERE / "orders").glob("*.json"))
EXPECTED = yaml.safe_load((HERE / "expected.yaml").read_text(encoding="utf-8"))


def _findings_md() -> Path | None:
    for candidate in (REPO / "docs" / "findings.md",
                      REPO.parent / "shared" / "clinical" / "findings.md",
                      Path("/work/shared/clinical/findings.md")):
        if candidate.is_file():
            return candidate
    return None


def _all_scenarios():
    for pid, patient in EXPECTED["patients"].items():
        for scenario in patient["scenarios"]:
            yield pid, patient, scenario


def test_at_least_fourteen_patients():
    assert len(BUNDLE_FILES) >= 14
    assert len(EXPECTED["patients"]) == len(BUNDLE_FILES)


@pytest.mark.parametrize("path", BUNDLE_FILES + ORDER_FILES, ids=lambda p: p.name)
def test_bundle_parses_as_r4(path: Path):
    data = json.loads(path.read_text(encoding="utf-8"))
    bundle = Bundle.model_validate(data)
    assert bundle.type == "collection"
    assert bundle.entry, "empty bundle"
    for entry in bundle.entry:
        res = entry.resource
        assert entry.fullUrl.endswith(f"/{res.get_resource_type()}/{res.id}")


@pytest.mark.parametrize("path", BUNDLE_FILES, ids=lambda p: p.name)
def test_patient_bundle_is_synthetic_and_dated_before_now(path: Path):
    data = json.loads(path.read_text(encoding="utf-8"))
    resources = [e["resource"] for e in data["entry"]]
    patients = [r for r in resources if r["resourceType"] == "Patient"]
    assert len(patients) == 1
    patient = patients[0]
    assert patient["identifier"][0]["system"] == "urn:example:synthetic"
    assert patient["name"][0]["family"] == "Synthetic"
    for r in resources:
        if r["resourceType"] != "Patient":
            assert r["subject"]["reference"] == f"Patient/{patient['id']}"
        for key in ("effectiveDateTime", "started", "authoredOn", "onsetDateTime"):
            if key in r:
                when = datetime.fromisoformat(r[key].replace("Z", "+00:00"))
                assert when <= NOW, f"{r['id']}.{key} is after NOW"


@pytest.mark.parametrize("path", ORDER_FILES, ids=lambda p: p.name)
def test_order_bundle_holds_draft_orders_for_its_patient(path: Path):
    data = json.loads(path.read_text(encoding="utf-8"))
    nn = path.name[:2]
    for entry in data["entry"]:
        r = entry["resource"]
        assert r["resourceType"] in {"MedicationRequest", "ServiceRequest"}
        assert r["status"] == "draft"
        assert r["subject"]["reference"] == f"Patient/syn-{nn}"


def test_finding_list_matches_findings_md():
    path = _findings_md()
    if path is None:
        pytest.skip("findings.md not reachable from this checkout")
    text = path.read_text(encoding="utf-8")
    table = text.split("## Findings", 1)[1].split("## Suggestions", 1)[0]
    codes = set(re.findall(r"^\| `([a-z-]+)` \|", table, flags=re.M))
    assert codes == FINDING_CODES


@pytest.mark.parametrize(
    ("pid", "scenario_id"),
    [(pid, s["id"]) for pid, _, s in _all_scenarios()],
)
def test_expectation_is_well_formed(pid: str, scenario_id: str):
    patient = EXPECTED["patients"][pid]
    scenario = next(s for s in patient["scenarios"] if s["id"] == scenario_id)
    assert (HERE / patient["bundle"]).is_file()
    assert pid == patient["bundle"][:-len(".json")]
    assert scenario["hook"] in HOOKS
    assert (scenario["profile"], scenario["ct_cutoffs"]) in PROFILES
    if scenario["hook"] == "patient-view":
        assert "order" not in scenario
        assert isinstance(scenario["findings"], list), "patient-view: exact finding set"
        codes = scenario["findings"]
    else:
        assert (HERE / "orders" / scenario["order"]).is_file()
        assert scenario["order"].startswith(pid)
        assert "findings_include" in scenario and "findings_exclude" in scenario
        codes = scenario["findings_include"] + scenario["findings_exclude"]
    unknown = set(codes) - FINDING_CODES
    assert not unknown, f"not a findings.md code: {unknown}"
    assert len(codes) == len(set(codes)), "duplicate finding code"
    suggestions = scenario.get("suggestions", [])
    assert set(suggestions) <= SUGGESTION_KINDS
    not_suggested = set(scenario.get("not_suggested", []))
    assert not_suggested <= SUGGESTION_KINDS | NOT_RECOMMENDED
    assert not (set(suggestions) & not_suggested)
    assert set(scenario.get("information", [])) <= INFORMATION_KEYS
    if scenario.get("information"):
        assert "information-only" in suggestions
    unknown_keys = set(scenario) - SCENARIO_KEYS
    assert not unknown_keys, f"unknown scenario keys: {sorted(unknown_keys)}"
    if scenario.get("exercise_deferred"):
        assert "exercise-referral" not in suggestions and not scenario.get("exercise_supervised")
    if scenario.get("no_protein_target"):
        assert "dietitian-referral" in suggestions and "targets" not in scenario
    if "first_card_topic" in scenario:
        assert scenario["first_card_topic"] in set(scenario.get("findings", [])) | set(
            scenario.get("findings_include", []))
    targets = scenario.get("targets")
    if targets:
        assert "dietitian-referral" in suggestions
        w = targets["weight_kg"]
        # the hand-written targets must be the knowledge-base ranges of that weight
        assert targets["protein_g_per_day"] == pytest.approx([1.0 * w, 1.5 * w])
        assert targets["energy_kcal_per_day"] == pytest.approx([25 * w, 30 * w])


def test_every_patient_has_both_profiles_on_patient_view():
    for pid, patient in EXPECTED["patients"].items():
        seen = {(s["profile"], s["hook"]) for s in patient["scenarios"]}
        assert ("ewgsop2", "patient-view") in seen, pid
        assert ("awgs2019", "patient-view") in seen, pid
