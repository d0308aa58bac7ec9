"""The realistic synthetic patients (tests/patients) through the running HTTP service, end to end.

Expectations come from tests/patients/expected.yaml, computed by hand from the knowledge base.
Two real server processes run (EWGSOP2 + Martin 2013, AWGS 2019 + Zhuang 2016); each bundle is
moved in time so that its reference instant (2026-11-28T12:00Z) is now, fed to the service as an
EHR would (prefetch from the discovery templates; draft orders in the context), and the findings
and suggestions of the answer are compared with the expectation."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests
import yaml

from tests.support import tokens
from tests.support.ehr import hook_request, prefetch_for, shift_dates
from tests.support.expectations import check_care_context, offered
from tests.support.server import running_service

pytestmark = pytest.mark.slow
PATIENTS = Path(__file__).resolve().parents[1] / "patients"
EXPECTED = yaml.safe_load((PATIENTS / "expected.yaml").read_text(encoding="utf-8"))
REFERENCE_NOW = datetime.fromisoformat(EXPECTED["now"].replace("Z", "+00:00"))

NEVER_SUGGESTED_WORDS = {"enteral-or-parenteral-nutrition": ("enteral", "parenteral"), "anamorelin": ("anamorelin",),
                         "androgens": ("androgen", "testosterone"), "ketogenic-or-vlckd-diet": ("ketogenic", "vlckd")}


def scenarios():
    for name, patient in EXPECTED["patients"].items():
        for scenario in patient["scenarios"]:
            yield pytest.param(name, patient["bundle"], scenario, id=f"{name}:{scenario['id']}")


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    """One real server per profile, sharing nothing."""
    started = {}
    stack = []
    for profile, cutoffs in (("ewgsop2", "martin2013"), ("awgs2019", "zhuang2016")):
        workdir = tmp_path_factory.mktemp(profile)
        context = running_service(f"sqlite:///{workdir / 'cds.db'}", workdir, extra_env={
            "SARCOPENIA_CDS_RULES__PROFILE": profile, "SARCOPENIA_CDS_RULES__CT_CUTOFFS": cutoffs})
        base, _process = context.__enter__()
        stack.append(context)
        discovery = requests.get(base + "/cds-services", timeout=5,
                                 headers={"Authorization": f"Bearer {tokens.token(base + '/cds-services')}"}).json()
        started[(profile, cutoffs)] = (base, {s["hook"]: s for s in discovery["services"]})
    yield started
    for context in reversed(stack):
        context.__exit__(None, None, None)


def call(base: str, service: dict, body: dict) -> dict:
    path = f"/cds-services/{service['id']}"
    response = requests.post(base + path, json=body, timeout=15,
                             headers={"Authorization": f"Bearer {tokens.token(base + path)}"})
    assert response.status_code == 200, response.text
    return response.json()


def reported_findings(answer: dict) -> set[str]:
    codes = set()
    for card in answer["cards"]:
        codes.add(card["source"]["topic"]["code"])
        codes.update(f["code"]["code"] for f in card["extension"]["org.sarcopenia-cds.findings"])
    return codes


def range_in(text: str, unit: str) -> tuple[float, float]:
    match = re.search(rf"([\d.]+) {re.escape(unit)}–([\d.]+) {re.escape(unit)}", text)
    assert match, f"no '{unit}' range in {text!r}"
    return float(match.group(1)), float(match.group(2))


@pytest.mark.parametrize(("name", "bundle", "scenario"), list(scenarios()))
def test_patient_scenario(services, name, bundle, scenario):
    base, discovered = services[(scenario["profile"], scenario["ct_cutoffs"])]
    service = discovered[scenario["hook"]]
    delta = datetime.now(timezone.utc) - REFERENCE_NOW
    resources = shift_dates([e["resource"] for e in json.loads((PATIENTS / bundle).read_text())["entry"]], delta)
    patient_id = next(r["id"] for r in resources if r["resourceType"] == "Patient")
    context = {}
    if scenario.get("order"):
        orders = json.loads((PATIENTS / "orders" / scenario["order"]).read_text())
        orders["entry"] = [{**e, "resource": shift_dates([e["resource"]], delta)[0]} for e in orders["entry"]]
        context["draftOrders"] = orders
        if scenario["hook"] == "order-select":
            context["selections"] = [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in orders["entry"]]
    body = hook_request(scenario["hook"], patient_id, prefetch_for(resources, service["prefetch"]), **context)
    answer = call(base, service, body)
    findings = reported_findings(answer)

    if "findings" in scenario:
        assert findings == set(scenario["findings"])
        if not scenario["findings"]:
            assert answer["cards"] == []
    assert set(scenario.get("findings_include", [])) <= findings
    assert not set(scenario.get("findings_exclude", [])) & findings

    suggestions = offered(answer["cards"])
    wanted = set(scenario.get("suggestions", [])) - {"information-only"}
    if scenario.get("exercise_supervised") and "exercise-referral" in wanted:
        wanted = wanted - {"exercise-referral"} | {"physiotherapy-referral"}
    assert wanted <= set(suggestions), f"offered {sorted(suggestions)}"
    if scenario.get("exercise_supervised") is False:
        assert "physiotherapy-referral" not in suggestions
    for item in scenario.get("not_suggested", []):
        assert item not in suggestions
        words = NEVER_SUGGESTED_WORDS.get(item, ())
        offered_text = json.dumps([c.get("suggestions", []) for c in answer["cards"]]).lower()
        assert not any(word in offered_text for word in words), item

    targets = scenario.get("targets")
    if targets:
        details = " ".join(d["text"] for a in suggestions["dietitian-referral"]["actions"]
                           for d in a["resource"].get("orderDetail", []))
        protein = range_in(details, "g/d")
        energy = range_in(details, "kcal/d")
        assert protein == pytest.approx(tuple(targets["protein_g_per_day"]), abs=0.05)
        assert energy == pytest.approx(tuple(targets["energy_kcal_per_day"]), abs=0.5)
    check_care_context(scenario, answer["cards"])
