"""Rule order: file order, except that a rule referring to a finding runs after its makers."""

from datetime import UTC, datetime

from cds_service.engine import EngineSettings, load_ruleset

PACK = """
pack: {id: order, version: 1.0.0}
references: {r: {citation: "Author A. A fixture reference for rule order. J Test 2020;1:1-2."}}
code_systems: {loinc: http://loinc.org}
value_sets: {grip-strength: [{system: loinc, code: 83174-3}]}
facts:
  grip: {from: Observation, codes: grip-strength, unit: kg, plausible: {above: 0, max: 150}}
parameters: {grip_low: {unit: kg, value: 20, source: r}, grip_lower: {unit: kg, value: 30, source: r}}
rules:
  - id: uses-it
    finding: probable-sarcopenia
    hooks: [patient-view]
    when: {all: [{fact: grip, lt: grip_lower}, {not: {finding: sarcopenia}}]}
    card: {indicator: info, summary: {en: "Probable"}, source: {label: {en: x}}}
  - id: z-first
    finding: sarcopenia
    hooks: [patient-view]
    when: {fact: grip, lt: grip_low}
    card: {indicator: info, summary: {en: "First {{grip}}"}, source: {label: {en: x}}}
  - id: a-second
    finding: sarcopenia
    hooks: [patient-view]
    when: {fact: grip, lt: grip_lower}
    card: {indicator: info, summary: {en: "Second {{grip}}"}, source: {label: {en: x}}}
"""


def test_makers_of_one_finding_keep_file_order_when_another_rule_refers_to_it(tmp_path):
    (tmp_path / "p.yaml").write_text(PACK)
    rs = load_ruleset([tmp_path])
    assert [r.id for r in rs.rules] == ["z-first", "a-second", "uses-it"]
    grip = {
        "resourceType": "Observation",
        "id": "g",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "83174-3"}]},
        "effectiveDateTime": "2025-05-30",
        "valueQuantity": {"value": 10, "unit": "kg", "code": "kg"},
    }
    now = datetime(2025, 6, 1, tzinfo=UTC)
    ev = rs.evaluate(
        [grip], hook="patient-view", context={"patientId": "p"}, now=now, settings=EngineSettings()
    )
    assert [(f.code, f.rule_id) for f in ev.findings] == [("sarcopenia", "z-first")]
    assert ev.cards[0]["summary"] == "First 10.0 kg"


def test_independent_rules_keep_file_order(tmp_path):
    (tmp_path / "p.yaml").write_text(
        PACK.replace("{not: {finding: sarcopenia}}", "{fact: grip, gt: 0}")
    )
    rs = load_ruleset([tmp_path])
    assert [r.id for r in rs.rules] == ["uses-it", "z-first", "a-second"]
