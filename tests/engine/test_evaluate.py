"""Findings, evidence, profiles, CT cut-off sets with BMI bands, three-valued logic, trace."""

from datetime import UTC

from cds_service.engine import EngineSettings

from .helpers import SETTINGS, codes, obs, run

SMI_LOW_BMI = [
    obs("l3-area", 112, "cm2", 20),
    obs("body-height", 170, "cm", 20),
    obs("body-weight", 64, "kg", 5),
]


def test_no_cancer_no_findings():
    assert codes(run([obs("grip-strength", 10, "kg", 3)], cancer=False)) == []


def test_probable_sarcopenia_with_grip_in_lbf():
    # 55 lbf = 24.95 kg < 27 kg (prof-a, male)
    ev = run([obs("grip-strength", 55, "[lbf_av]", 3, id="g1")])
    assert codes(ev) == ["probable-sarcopenia"]
    evidence = ev.findings[0].evidence
    grip = next(e for e in evidence if e.get("fact") == "grip_max" and "value" in e)
    assert grip["value"] == 24.947580 or abs(grip["value"] - 24.9476) < 1e-4
    assert (
        grip["unit"] == "kg"
        and grip["resource"] == "Observation/g1"
        and grip["original"]["unit"] == "[lbf_av]"
    )
    threshold = next(e for e in evidence if e.get("parameter") == "grip_low")
    assert threshold["value"] == 27 and threshold["source"] == "ref-a" and "citation" in threshold
    assert threshold["result"] is True


def test_female_threshold():
    # 20 kg: below 27 (male) but not below 16 (female)
    assert codes(run([obs("grip-strength", 20, "kg", 3)], gender="female")) == []
    assert codes(run([obs("grip-strength", 20, "kg", 3)])) == ["probable-sarcopenia"]


def test_unknown_sex_decides_only_when_both_sexes_agree():
    # issue 14: a value below BOTH sexes' cut-offs (27 male, 16 female) is low whatever the sex
    ev = run([obs("grip-strength", 5, "kg", 3)], gender="unknown")
    assert codes(ev) == ["probable-sarcopenia"]
    threshold = next(e for e in ev.findings[0].evidence if e.get("parameter") == "grip_low")
    assert threshold["comparison"] == (
        "< 16 / 27 (the same for both sexes: record the sex used for clinical reference ranges)"
    )
    assert threshold["result"] is True
    # 20 kg is below 27 but not below 16: undecided without the sex (never "not low")
    assert codes(run([obs("grip-strength", 20, "kg", 3)], gender="unknown")) == []
    # 30 kg is below neither: not low whatever the sex (no finding either)
    assert codes(run([obs("grip-strength", 30, "kg", 3)], gender="other")) == []


def test_profile_changes_threshold():
    # 27.5 kg: not < 27 (prof-a), but < 28 (prof-b)
    data = [obs("grip-strength", 27.5, "kg", 3)]
    assert codes(run(data)) == []
    assert codes(run(data, settings=EngineSettings(profile="prof-b", ct_cutoffs="set-banded"))) == [
        "probable-sarcopenia"
    ]


def test_martin_style_bmi_band():
    # SMI 38.75; BMI 64/1.7² = 22.1 < 25 → male cut-off 43 → low
    assert "low-skeletal-muscle-index" in codes(run(SMI_LOW_BMI))
    # SMI 48.4 (140/2.89): BMI 22.1 → cut-off 43 → not low; BMI 90/2.89 = 31.1 ≥ 25 → cut-off 53 → low
    data = [obs("l3-area", 140, "cm2", 20), obs("body-height", 170, "cm", 20)]
    assert "low-skeletal-muscle-index" not in codes(run(data + [obs("body-weight", 64, "kg", 5)]))
    assert "low-skeletal-muscle-index" in codes(run(data + [obs("body-weight", 90, "kg", 5)]))


def test_band_unknown_without_bmi():
    # issue 14 (Martin 2013): without a BMI the male cut-off is 43 or 53; an SMI below both
    # is low at any BMI, one between them is unknown (never "not low")
    data = [obs("l3-area", 100, "cm2", 20), obs("body-height", 170, "cm", 20)]
    assert codes(run(data)) == ["low-skeletal-muscle-index"]  # 100 / 2.89 = 34.6 < 43 and < 53
    assert codes(run(data, gender="female")) == ["low-skeletal-muscle-index"]  # 41, no band
    between = [obs("l3-area", 140, "cm2", 20), obs("body-height", 170, "cm", 20)]
    assert codes(run(between)) == []  # 48.4: < 53 but not < 43 → unknown without the BMI


def test_ct_cutoff_set_is_selectable():
    # SMI 50.2 (145/2.89), female: not < 41 (banded set) but < 38.5? no; male flat 52.4 → low
    data = [
        obs("l3-area", 145, "cm2", 20),
        obs("body-height", 170, "cm", 20),
        obs("body-weight", 64, "kg", 5),
    ]
    flat = EngineSettings(profile="prof-a", ct_cutoffs="set-flat")
    assert "low-skeletal-muscle-index" not in codes(run(data))
    assert "low-skeletal-muscle-index" in codes(run(data, settings=flat))


def test_finding_reference_blocks_probable_when_smi_low():
    ev = run(SMI_LOW_BMI + [obs("grip-strength", 10, "kg", 3)])
    assert codes(ev) == ["low-skeletal-muscle-index"]


def test_order_hook_uses_draft_orders():
    chemo = {"order": {"med": {"code": "atc:L01BC06"}}}
    ev = run(SMI_LOW_BMI + [chemo], hook="order-select")
    assert codes(ev) == ["chemotherapy-toxicity-risk", "low-skeletal-muscle-index"]
    not_chemo = {"order": {"med": {"code": "atc:L02BG04"}}}
    assert codes(run(SMI_LOW_BMI + [not_chemo], hook="order-select")) == [
        "low-skeletal-muscle-index"
    ]


def test_ct_available_requires_missing_l3():
    ct = {"imaging": {"modality": "CT", "body_site": "snomed:818982008", "days_ago": 30}}
    assert codes(run([ct])) == ["ct-body-composition-available"]
    assert "ct-body-composition-available" not in codes(run([ct, obs("l3-area", 112, "cm2", 20)]))


def test_cachexia_and_evidence_dates():
    ev = run([obs("body-weight", 64.0, "kg", 5), obs("body-weight", 72.0, "kg", 180)])
    assert codes(ev) == ["cancer-cachexia"]
    loss = next(e for e in ev.findings[0].evidence if e.get("fact") == "weight_loss")
    assert (
        abs(loss["value"] - 11.111) < 1e-3 and loss["unit"] == "%" and loss["date"] == "2025-05-27"
    )


def test_implausible_measurement_finding_and_data_quality():
    ev = run([obs("body-height", 400, "cm", 2, id="h1")])
    assert codes(ev) == ["implausible-measurement"]
    assert ev.data_quality[0]["resource"] == "Observation/h1"


def test_trace_records_every_condition():
    ev = run([obs("grip-strength", 20, "kg", 3)], trace=True)
    conditions = [t for t in ev.trace if "condition" in t]
    assert any(t["condition"] == "grip_max < grip_low" and t["result"] is True for t in conditions)
    assert any(t["condition"] == "l3_smi < smi_low" and t["result"] is None for t in conditions)
    assert any(t.get("finding") == "probable-sarcopenia" and t["result"] is True for t in ev.trace)


def test_no_trace_by_default():
    assert run([]).trace is None


def test_evaluation_is_deterministic_apart_from_uuids():
    data = SMI_LOW_BMI + [obs("grip-strength", 10, "kg", 3)]
    a, b = run(data), run(data)
    strip = lambda cards: [
        {k: v for k, v in c.items() if k not in ("uuid", "suggestions")} for c in cards
    ]
    assert strip(a.cards) == strip(b.cards)
    assert SETTINGS.profile == "prof-a"


def test_odd_data_does_not_break_evaluation():
    from .helpers import NOW, core

    odd = [
        {
            "resourceType": "Observation",
            "id": "x1",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
            "effectiveDateTime": "not a date",
            "valueQuantity": {"value": "heavy", "code": "kg"},
        },
        {"resourceType": "Observation", "id": "x2", "code": "not a concept", "valueQuantity": None},
        {"resourceType": "Condition", "id": "x3", "code": {"coding": [None, {"code": "C16.9"}]}},
        {"resourceType": "Patient", "id": "p1", "gender": 3, "birthDate": "19xx"},
        {"no": "resourceType"},
    ]
    ev = core().evaluate(
        odd, hook="patient-view", context={"patientId": "p1"}, now=NOW, settings=SETTINGS
    )
    assert ev.findings == [] and ev.errors == []


def test_a_rule_that_raises_is_skipped_and_reported():
    from .helpers import NOW, core

    rs = core()
    rule = rs.rules_by_hook["patient-view"][0]
    original = rule.when, rule.test
    rule.when = rule.test = lambda run: 1 / 0  # the full closure and its bare form
    rs.forget_plans()  # (generated plans hold the bare tests they were made with)
    try:
        runs = [
            rs.evaluate([], hook="patient-view", context={}, now=NOW, settings=SETTINGS, trace=t)
            for t in (False, True)
        ]
    finally:
        rule.when, rule.test = original
        rs.forget_plans()
    for ev in runs:
        assert ev.errors == [{"rule": rule.id, "error": "ZeroDivisionError: division by zero"}]


def test_ct_cutoffs_unset_uses_the_first_set_or_the_profile_default(tmp_path):
    from cds_service.engine import load_ruleset

    from .helpers import PACKS

    unset = EngineSettings(profile="prof-a", ct_cutoffs=None)
    assert "low-skeletal-muscle-index" in codes(run(SMI_LOW_BMI, settings=unset))  # set-banded
    text = (
        (PACKS / "core" / "pack.yaml")
        .read_text()
        .replace(
            "prof-a: {title: {en: Profile A, zh-CN: 方案A}, reference: ref-a}",
            "prof-a: {title: {en: Profile A, zh-CN: 方案A}, reference: ref-a, default_ct_cutoffs: set-flat}",
        )
    )
    (tmp_path / "pack.yaml").write_text(text)
    rs = load_ruleset([tmp_path / "pack.yaml"])
    # SMI 50.2 (145 / 2.89), male, BMI 22.1: not < 43 (banded) but < 52.4 (flat)
    data = [
        obs("l3-area", 145, "cm2", 20),
        obs("body-height", 170, "cm", 20),
        obs("body-weight", 64, "kg", 5),
    ]
    assert "low-skeletal-muscle-index" in codes(run(data, settings=unset, rs=rs))


def test_parameter_condition(tmp_path):
    from datetime import datetime

    import pytest

    from cds_service.engine import PackErrors, load_ruleset

    pack = """
pack: {id: switch, version: 1.0.0}
references: {r: {citation: "Author A. A fixture reference for switches. J Test 2020;1:1-2."}}
parameters: {feature_on: {unit: "1", value: SWITCH, source: r}, other: {unit: "1", value: 1, source: r}}
rules:
  - id: r
    finding: probable-sarcopenia
    hooks: [patient-view]
    when: {all: [{parameter: feature_on, eq: 1}, {parameter: feature_on, ge: other}]}
    card: {indicator: info, summary: {en: "x"}, source: {label: {en: x}}}
"""
    now = datetime(2025, 6, 1, tzinfo=UTC)
    for switch, want in ((1, ["probable-sarcopenia"]), (0, [])):
        folder = tmp_path / str(switch)
        folder.mkdir()
        (folder / "p.yaml").write_text(pack.replace("SWITCH", str(switch)))
        ev = load_ruleset([folder]).evaluate(
            [], hook="patient-view", context={"patientId": "p"}, now=now, settings=EngineSettings()
        )
        assert codes(ev) == want
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "p.yaml").write_text(pack.replace("SWITCH", "1").replace("eq: 1}", "eq: nothing}"))
    with pytest.raises(PackErrors) as info:
        load_ruleset([bad])
    assert [e.code for e in info.value.errors] == ["rule_reference_error"]
