"""The 16 hand-computed patients (tests/patients/expected.yaml) through the bundled packs."""

import json
import re
from pathlib import Path

import pytest
import yaml

from cds_service.engine import EngineSettings, load_ruleset
from tests.support.expectations import check_care_context

PATIENTS = Path(__file__).resolve().parents[1] / "patients"
EXPECTED = yaml.safe_load((PATIENTS / "expected.yaml").read_text(encoding="utf-8"))
SCENARIOS = [
    (pid, patient, scenario)
    for pid, patient in EXPECTED["patients"].items()
    for scenario in patient["scenarios"]
]


@pytest.fixture(scope="module")
def bundled():
    return load_ruleset()


def _resources(path: Path) -> list[dict]:
    return [e["resource"] for e in json.loads(path.read_text(encoding="utf-8"))["entry"]]


@pytest.mark.parametrize(
    ("pid", "patient", "scenario"), SCENARIOS, ids=[f"{p}-{s['id']}" for p, _, s in SCENARIOS]
)
def test_patient_scenario(bundled, pid, patient, scenario):
    resources = _resources(PATIENTS / patient["bundle"])
    orders = _resources(PATIENTS / "orders" / scenario["order"]) if scenario.get("order") else []
    subject = next(r for r in resources if r["resourceType"] == "Patient")
    ev = bundled.evaluate(
        resources,
        hook=scenario["hook"],
        context={"patientId": subject["id"], "userId": "Practitioner/test"},
        orders=orders,
        now=EXPECTED["now"],
        settings=EngineSettings(profile=scenario["profile"], ct_cutoffs=scenario["ct_cutoffs"]),
    )
    got = sorted(f.code for f in ev.findings)
    if "findings" in scenario:
        assert got == sorted(scenario["findings"])
    assert set(scenario.get("findings_include", [])) <= set(got)
    assert not set(scenario.get("findings_exclude", [])) & set(got)
    keys = {k for sent in ev.sent for k in sent["suggestions"].values()}
    assert not set(scenario.get("not_suggested", [])) & keys
    targets = scenario.get("targets")
    if targets:  # the dietitian label shows the KB ranges of the valid current weight
        label = next(
            s["label"]
            for card in ev.cards
            for s in card.get("suggestions", ())
            if s["label"].startswith("Refer to dietitian")
        )
        shown = [float(x) for x in re.findall(r"(\d+(?:\.\d+)?) (?:g/d|kcal/d)", label)]
        want = list(targets["protein_g_per_day"]) + list(targets["energy_kcal_per_day"])
        assert shown == pytest.approx(want, abs=0.5), label
    check_care_context(scenario, ev.cards)
