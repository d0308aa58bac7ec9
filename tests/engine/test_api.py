"""The seam other rooms call: exports, prefetch templates, relevant(), overrides, reload, the doc example."""

import re
import time
from pathlib import Path

import pytest

from cds_service import engine
from cds_service.engine import PackErrors, RuleSetHolder, load_ruleset
from cds_service.engine.testcases import read_cases, run_case

from .helpers import PACKS, core

DOC = Path(__file__).resolve().parents[2] / "docs" / "rule-pack-format.md"


def test_public_exports():
    assert set(engine.__all__) == {
        "CODES",
        "EngineSettings",
        "Evaluation",
        "Finding",
        "PackError",
        "PackErrors",
        "RuleSet",
        "RuleSetHolder",
        "Suppression",
        "load_ruleset",
    }


def test_version_and_hooks():
    rs = core()
    assert rs.version == "engine-fixture@0.1.0"
    assert rs.versions == {"engine-fixture": "0.1.0"}
    assert rs.hooks == ["patient-view", "order-select", "order-sign"]


def test_prefetch_templates_use_only_cds_hooks_tokens():
    templates = core().prefetch_templates("patient-view")
    assert templates["patient"] == "Patient/{{context.patientId}}"
    assert templates["conditions"] == "Condition?patient={{context.patientId}}"
    assert "http://loinc.org|29463-7" in templates["observations"]
    assert templates["imagingStudies"] == "ImagingStudy?patient={{context.patientId}}"
    assert "serviceRequests" in templates  # unless_open_order needs the open referrals
    for value in templates.values():
        assert set(re.findall(r"\{\{([^}]*)\}\}", value)) <= {"context.patientId"}


def test_prefetch_follows_the_hook():
    assert "imagingStudies" not in core().prefetch_templates("order-sign")


def test_relevant():
    rs = core()
    assert rs.relevant(
        {
            "resourceType": "Observation",
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        }
    )
    assert not rs.relevant(
        {
            "resourceType": "Observation",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        }
    )
    assert rs.relevant(
        {
            "resourceType": "Condition",
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "C16.9"}]},
        }
    )
    assert not rs.relevant(
        {
            "resourceType": "Condition",
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "I10"}]},
        }
    )
    assert rs.relevant({"resourceType": "Patient", "id": "p"})
    assert rs.relevant({"resourceType": "ImagingStudy"})
    assert not rs.relevant({"resourceType": "Encounter"})
    assert rs.relevant(
        {
            "resourceType": "ServiceRequest",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "103699006"}]},
        }
    )


def _worked_example(tmp_path):
    text = DOC.read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text[text.index("## Worked example") :], re.DOTALL)
    pack, cases = blocks[0], blocks[1]
    (tmp_path / "grip.yaml").write_text(pack)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "grip.yaml").write_text(cases)
    return tmp_path


def test_worked_example_in_the_docs_loads_and_its_cases_pass(tmp_path):
    root = _worked_example(tmp_path)
    rs = load_ruleset([root / "grip.yaml"])
    cases = read_cases(root / "tests" / "grip.yaml")
    assert len(cases) == 2
    for case in cases:
        assert run_case(rs, case) == []


HOSPITAL = """
pack: {id: hospital-x, version: 2024.1.0, locales: [en, zh-CN]}
references:
  hx-policy: {citation: "Hospital X nutrition committee policy NC-12, 2024 (fixture)."}
value_sets:
  grip-strength: [{system: "urn:oid:1.2.3.4.5", code: GRIP-MAX}]
parameters:
  window_days: {unit: d, value: 30, source: hx-policy}
suggestions:
  body-composition:
    label: {en: Order DXA at Hospital X, zh-CN: 在X医院做DXA}
"""


def test_hospital_override_adds_codes_and_replaces_parameters(tmp_path):
    from .helpers import obs, run

    override = tmp_path / "hospital.yaml"
    override.write_text(HOSPITAL)
    rs = load_ruleset([PACKS / "core" / "pack.yaml", override])
    assert rs.version == "engine-fixture@0.1.0+hospital-x@2024.1.0"
    local = {
        "obs": {"code": "urn:oid:1.2.3.4.5|GRIP-MAX", "value": 12, "unit": "kg", "days_ago": 10}
    }
    ev = run([local], rs=rs)
    assert [f.code for f in ev.findings] == ["probable-sarcopenia"]
    assert any(s["label"] == "Order DXA at Hospital X" for s in ev.cards[0]["suggestions"])
    # the window is now 30 days: a 45-day-old grip no longer counts
    assert run([obs("grip-strength", 12, "kg", 45)], rs=rs).findings == []
    assert run([obs("grip-strength", 12, "kg", 45)]).findings != []


def test_redefining_a_fact_in_an_override_is_a_duplicate(tmp_path):
    override = tmp_path / "hospital.yaml"
    override.write_text(HOSPITAL + "facts:\n  crp: {from: Observation, codes: crp, unit: mg/L}\n")
    with pytest.raises(PackErrors) as info:
        load_ruleset([PACKS / "core" / "pack.yaml", override])
    assert [e.code for e in info.value.errors] == ["rule_duplicate_error"]


def test_holder_keeps_last_good_set_and_reloads(tmp_path):
    pack = tmp_path / "pack.yaml"
    good = (PACKS / "core" / "pack.yaml").read_text()
    pack.write_text(good)
    errors = []
    holder = RuleSetHolder([pack], on_error=errors.append)
    first = holder.current
    assert holder.last_error is None and holder.loaded_at is not None
    pack.write_text(good.replace("indicator: warning", "indicator: hard-stop", 1))
    assert holder.reload() is False
    assert holder.current is first
    assert "rule_schema_error" in holder.last_error and len(errors) == 1
    pack.write_text(good.replace("version: 0.1.0", "version: 0.2.0", 1))
    assert holder.reload() is True
    assert holder.current.version == "engine-fixture@0.2.0" and holder.last_error is None


def test_holder_watches_mtimes(tmp_path):
    pack = tmp_path / "pack.yaml"
    good = (PACKS / "core" / "pack.yaml").read_text()
    pack.write_text(good)
    holder = RuleSetHolder([pack])
    holder.start_watching(0.05)
    try:
        time.sleep(0.1)
        pack.write_text(good.replace("version: 0.1.0", "version: 0.3.0", 1))
        import os

        os.utime(pack, (time.time() + 5, time.time() + 5))
        deadline = time.time() + 3
        while time.time() < deadline and holder.current.version != "engine-fixture@0.3.0":
            time.sleep(0.05)
        assert holder.current.version == "engine-fixture@0.3.0"
    finally:
        holder.stop_watching()


def test_bundled_packs_load_if_present():
    from cds_service.engine.load import BUNDLED, pack_files

    if not pack_files():
        pytest.skip("no bundled packs yet")
    rs = load_ruleset()
    assert rs.rules and str(BUNDLED)


def test_multi_file_pack_shares_names_and_metadata(tmp_path):
    (tmp_path / "a.yaml").write_text("""
pack: {id: split, version: 1.0.0}
references: {r: {citation: "Author A. A fixture reference for split packs. J Test 2020;1:1-2."}}
code_systems: {loinc: http://loinc.org}
value_sets: {grip-strength: [{system: loinc, code: 83174-3}]}
facts:
  grip: {from: Observation, codes: grip-strength, unit: kg, plausible: {above: 0, max: 150}}
""")
    (tmp_path / "b.yaml").write_text("""
pack: {id: split, version: 1.0.0, locales: [en, zh-CN]}
parameters: {grip_low: {unit: kg, value: 20, source: r}}
rules:
  - id: low
    finding: probable-sarcopenia
    hooks: [patient-view]
    when: {fact: grip, lt: grip_low}
    card: {indicator: info, summary: {en: "Grip {{grip}}"}, source: {label: {en: x, zh-CN: x}}}
""")
    with pytest.raises(PackErrors) as info:
        load_ruleset([tmp_path])
    # b.yaml's pack declares zh-CN, so the English-only summary is reported, in b.yaml
    assert [(Path(e.file).name, e.code) for e in info.value.errors] == [
        ("b.yaml", "rule_template_error")
    ]
    (tmp_path / "b.yaml").write_text(
        (tmp_path / "b.yaml")
        .read_text()
        .replace(
            'summary: {en: "Grip {{grip}}"}',
            'summary: {en: "Grip {{grip}}", zh-CN: "握力 {{grip}}"}',
        )
    )
    rs = load_ruleset([tmp_path])
    assert rs.version == "split@1.0.0" and [r.id for r in rs.rules] == ["low"]


def test_every_suggestions_open_order_codes_keep_service_requests_relevant():
    """A ServiceRequest matching any suggestion's unless_open_order must reach the engine
    (a table keyed by getter once kept only the last suggestion's codes)."""
    from cds_service.engine import load_ruleset

    ruleset = load_ruleset()
    snomed = "http://snomed.info/sct"
    for code in ("103699006", "390864007", "308447003", "306237005"):
        request = {"resourceType": "ServiceRequest", "id": code, "status": "active", "intent": "order",
                   "subject": {"reference": "Patient/p1"}, "code": {"coding": [{"system": snomed, "code": code}]}}
        assert ruleset.relevant(request), code
    other = {"resourceType": "ServiceRequest", "id": "x", "status": "active", "intent": "order",
             "subject": {"reference": "Patient/p1"}, "code": {"coding": [{"system": snomed, "code": "73761001"}]}}
    assert not ruleset.relevant(other)
