"""Selections, derivations and plausibility limits, each checked against hand-computed values."""

import pytest

from .helpers import NOW, fact, obs


def test_latest_within_window():
    # weights 5 and 20 days ago; window 30 days → the one 5 days ago
    value, _ = fact([obs("body-weight", 70, "kg", 20), obs("body-weight", 68, "kg", 5)], "weight")
    assert value == 68


def test_latest_outside_window_is_missing():
    value, _ = fact([obs("body-weight", 70, "kg", 45)], "weight")
    assert value is None


def test_future_values_are_ignored():
    value, _ = fact([obs("body-weight", 70, "kg", -3)], "weight")
    assert value is None


def test_max_of_latest_session():
    # latest session (10 days ago): 14 and 17 kg → 17; an older 30 kg does not count
    items = [
        obs("grip-strength", 30, "kg", 40),
        obs("grip-strength", 14, "kg", 10),
        {"obs": {"code": "loinc:83174-3", "value": 17, "unit": "kg", "days_ago": 10}},
    ]
    value, _ = fact(items, "grip_max")
    assert value == 17


def test_max_and_earliest_selections():
    items = [obs("grip-strength", 30, "kg", 40), obs("grip-strength", 14, "kg", 10)]
    assert fact(items, "grip_peak")[0] == 30
    assert fact(items, "grip_first")[0] == 30


def test_closest_to_180_days_within_tolerance():
    # candidates 150, 175 and 215 days ago: 175 is 5 days from 180 → chosen; 215 is outside ±30
    items = [
        obs("body-weight", 71, "kg", 150),
        obs("body-weight", 72, "kg", 175),
        obs("body-weight", 90, "kg", 215),
    ]
    assert fact(items, "weight_6mo_ago")[0] == 72


def test_closest_outside_tolerance_is_missing():
    assert fact([obs("body-weight", 72, "kg", 100)], "weight_6mo_ago")[0] is None


def test_all_values_in_window():
    items = [
        obs("body-weight", 70, "kg", 20),
        obs("body-weight", 68, "kg", 5),
        obs("body-weight", 80, "kg", 400),
    ]
    _, run = fact(items, "weights")
    fv = run.fact("weights")
    assert [i.value for i in fv.items] == [68, 70]


def test_smi_from_area_and_height():
    # 112 cm² / (1.70 m)² = 112 / 2.89 = 38.754 cm²/m²
    items = [obs("l3-area", 112, "cm2", 20), obs("body-height", 170, "cm", 20)]
    assert fact(items, "l3_smi")[0] == pytest.approx(38.754, abs=1e-3)


def test_bmi_with_height_in_inches():
    # 70 kg / (67 in × 2.54 = 1.7018 m)² = 70 / 2.89612 = 24.170 kg/m²
    items = [obs("body-weight", 70, "kg", 2), obs("body-height", 67, "[in_i]", 2)]
    assert fact(items, "bmi")[0] == pytest.approx(24.170, abs=1e-3)


def test_weight_loss_percent_over_six_months():
    # (72.0 − 64.0) / 72.0 = 0.11111 → 11.11 %
    items = [obs("body-weight", 64.0, "kg", 5), obs("body-weight", 72.0, "kg", 180)]
    assert fact(items, "weight_loss")[0] == pytest.approx(11.11, abs=0.01)


def test_weight_gain_is_negative_loss():
    # (70 − 77) / 70 = −0.1 → −10 %
    items = [obs("body-weight", 77, "kg", 5), obs("body-weight", 70, "kg", 180)]
    assert fact(items, "weight_loss")[0] == pytest.approx(-10.0)


def test_age_at_now():
    # born 1955-05-31 (helpers: age 70 → birthday the day before now) → 70 on 2025-06-01
    assert fact([], "age")[0] == 70


def test_protein_target_from_parameters():
    # 1.0 g/kg/d × 64 kg = 64 g/d; 1.5 × 64 = 96 g/d
    items = [obs("body-weight", 64, "kg", 5)]
    assert fact(items, "protein_low")[0] == pytest.approx(64)
    assert fact(items, "protein_high")[0] == pytest.approx(96)


def test_derived_fact_unknown_when_an_input_is_missing():
    assert fact([obs("l3-area", 112, "cm2", 20)], "l3_smi")[0] is None


def test_implausible_height_is_excluded_and_reported():
    # 400 cm > 230 cm limit → excluded; the plausible 170 cm one is used instead
    items = [obs("body-height", 170, "cm", 30), obs("body-height", 400, "cm", 2, id="tall")]
    value, run = fact(items, "height")
    assert value == 170
    assert run.data_quality == [
        {
            "fact": "height",
            "resource": "Observation/tall",
            "value": 400,
            "unit": "cm",
            "reason": "outside plausible limits ≥ 100 and ≤ 230 cm",
            "date": "2025-05-30",
        }
    ]


def test_exclusive_lower_limit():
    # grip: above 0 (exclusive) → 0 kg is excluded
    value, run = fact([obs("grip-strength", 0, "kg", 3)], "grip_max")
    assert value is None and run.excluded == {"grip_max"}


def test_limits_apply_after_conversion():
    # 340 lbf × 0.4536 = 154.2 kg > 150 kg → excluded
    value, run = fact([obs("grip-strength", 340, "[lbf_av]", 3)], "grip_max")
    assert value is None and run.data_quality[0]["unit"] == "[lbf_av]"


def test_status_filter():
    value, _ = fact([obs("grip-strength", 12, "kg", 3, status="entered-in-error")], "grip_max")
    assert value is None


def test_condition_filters_and_icd_range():
    items = [
        {"condition": {"code": "icd10:Z85.3"}},
        {"condition": {"code": "icd10:C50.9", "status": "resolved"}},
        {"condition": {"code": "icd10:D12.0"}},
    ]
    assert fact(items, "cancer", cancer=False)[0] is None
    assert fact([{"condition": {"code": "icd10:C7A.0"}}], "cancer", cancer=False)[0] is not None


def test_imaging_where_value_set():
    ok = [
        {
            "imaging": {
                "modality": "CT",
                "body_site": "snomed:818981001",
                "days_ago": 10,
                "id": "ct1",
            }
        }
    ]
    assert fact(ok, "ct_study")[0] == "ImagingStudy/ct1"
    chest = [{"imaging": {"modality": "CT", "body_site": "snomed:51185008", "days_ago": 10}}]
    assert fact(chest, "ct_study")[0] is None
    mr = [{"imaging": {"modality": "MR", "body_site": "snomed:818981001", "days_ago": 10}}]
    assert fact(mr, "ct_study")[0] is None


def test_window_from_parameter():
    # grip window is the parameter window_days = 90
    assert fact([obs("grip-strength", 20, "kg", 89)], "grip_max")[0] == 20
    assert fact([obs("grip-strength", 20, "kg", 91)], "grip_max")[0] is None


def test_facts_are_computed_at_most_once():
    _, run = fact([obs("body-weight", 64, "kg", 5), obs("body-height", 170, "cm", 5)], "bmi")
    calls = []
    original = run._read
    run._read = lambda f: calls.append(f.name) or original(f)
    run.fact("bmi"), run.fact("weight"), run.fact("bmi")
    assert calls == []


# ---- conflicting values (fact option `conflict`) and floating-point boundaries ---------------

CONFLICT_PACK = """
pack: {id: conflict, version: 1.0.0}
references: {r: {citation: "Author A. A fixture reference for conflicts. J Test 2020;1:1-2."}}
code_systems: {loinc: http://loinc.org}
value_sets:
  body-weight: [{system: loinc, code: 29463-7}]
  body-height: [{system: loinc, code: 8302-2}]
facts:
  weight:
    from: Observation
    codes: body-weight
    unit: kg
    within_days: 30
    plausible: {above: 0, max: 350}
    conflict: {same_day_relative: day_limit}
  height:
    from: Observation
    codes: body-height
    unit: cm
    conflict: {any_absolute: 5}
  bmi: {derive: "weight / height ** 2", unit: kg/m2}
parameters:
  day_limit: {unit: "%", value: 5, source: r}
rules:
  - id: flag
    finding: implausible-measurement
    hooks: [patient-view]
    when: {implausible: any}
    card: {indicator: info, summary: {en: "Check"}, source: {label: {en: x}}}
"""


def _conflict_run(tmp_path, observations):
    from cds_service.engine import EngineSettings, load_ruleset
    from cds_service.engine.facts import Run

    (tmp_path / "p.yaml").write_text(CONFLICT_PACK)
    rs = load_ruleset([tmp_path])
    loinc = {"weight": "29463-7", "height": "8302-2"}
    resources = [
        {
            "resourceType": "Observation",
            "id": f"o{i}",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": loinc[kind]}]},
            "effectiveDateTime": when,
            "valueQuantity": {"value": value, "unit": unit, "code": unit},
        }
        for i, (kind, value, unit, when) in enumerate(observations)
    ]
    settings = EngineSettings(profile="x", ct_cutoffs=None)
    run = Run(rs, resources, [], "patient-view", {"patientId": "p"}, NOW, settings, False)
    ev = rs.evaluate(
        resources, hook="patient-view", context={"patientId": "p"}, now=NOW, settings=settings
    )
    return run, ev


def test_same_day_weights_more_than_5_percent_apart_are_both_excluded(tmp_path):
    # 66.0 at 08:00 and 72.0 at 14:00 (the later one is the larger): 6 / 72 = 8.3 % > 5 %
    run, ev = _conflict_run(
        tmp_path,
        [
            ("weight", 70.0, "kg", "2025-05-10T09:00:00Z"),
            ("weight", 66.0, "kg", "2025-05-25T08:00:00Z"),
            ("weight", 72.0, "kg", "2025-05-25T14:00:00Z"),
        ],
    )
    assert run.fact("weight").value == 70.0  # the conflicting day is not used; the valid one is
    reasons = {e["resource"]: e["reason"] for e in run.data_quality}
    assert set(reasons) == {"Observation/o1", "Observation/o2"}
    assert "72.0 kg (2025-05-25 14:00) and 66.0 kg (2025-05-25 08:00)" in reasons["Observation/o1"]
    assert "more than 5 %" in reasons["Observation/o1"]
    assert [f.code for f in ev.findings] == ["implausible-measurement"]
    excluded = [e for e in ev.findings[0].evidence if e.get("excluded")]
    assert {e["value"] for e in excluded} == {66.0, 72.0}


def test_same_day_weights_within_5_percent_are_kept(tmp_path):
    # 70.0 and 67.0: 3 / 70 = 4.3 % -> consistent, latest (67.0) used
    run, ev = _conflict_run(
        tmp_path,
        [
            ("weight", 70.0, "kg", "2025-05-25T08:00:00Z"),
            ("weight", 67.0, "kg", "2025-05-25T14:00:00Z"),
        ],
    )
    assert run.fact("weight").value == 67.0 and ev.findings == []


def test_exactly_5_percent_is_not_a_conflict(tmp_path):
    # 60 and 57: 3 / 60 = 0.05 exactly (0.04999999999999993 in binary) -> not > 5 %
    run, _ = _conflict_run(
        tmp_path,
        [
            ("weight", 60.0, "kg", "2025-05-25T08:00:00Z"),
            ("weight", 57.0, "kg", "2025-05-25T14:00:00Z"),
        ],
    )
    assert run.fact("weight").value == 57.0 and run.data_quality == []


def test_heights_more_than_5_cm_apart_exclude_every_height(tmp_path):
    run, ev = _conflict_run(
        tmp_path,
        [
            ("height", 176, "cm", "2024-06-01T09:00:00Z"),
            ("height", 170, "cm", "2025-05-01T09:00:00Z"),
            ("weight", 70.0, "kg", "2025-05-25T08:00:00Z"),
        ],
    )
    assert run.fact("height") is None and run.fact("bmi") is None
    assert run.fact("weight").value == 70.0
    assert [f.code for f in ev.findings] == ["implausible-measurement"]


def test_heights_5_cm_apart_are_consistent(tmp_path):
    run, ev = _conflict_run(
        tmp_path,
        [
            ("height", 176, "cm", "2024-06-01T09:00:00Z"),
            ("height", 171, "cm", "2025-05-01T09:00:00Z"),
        ],
    )
    assert run.fact("height").value == 171 and ev.findings == []


def test_conflict_needs_a_ratio_parameter(tmp_path):
    import pytest

    from cds_service.engine import PackErrors, load_ruleset

    (tmp_path / "p.yaml").write_text(
        CONFLICT_PACK.replace('unit: "%", value: 5', "unit: kg, value: 5")
    )
    with pytest.raises(PackErrors) as info:
        load_ruleset([tmp_path])
    assert [e.code for e in info.value.errors] == ["rule_unit_error"]


def test_comparisons_ignore_binary_noise_only():
    from cds_service.engine.facts import ge, gt, lt

    assert (60 - 58.8) / 60 * 100 > 2 and not gt((60 - 58.8) / 60 * 100, 2)
    bmi = 24.999999999999996  # a BMI of exactly 25 after binary arithmetic
    assert bmi < 25 and not lt(bmi, 25) and ge(bmi, 25)
    assert gt(2.0001, 2) and lt(24.9999, 25) and not gt(2.0, 2.0)


# ---- joins: where: {path, references: fact} -----------------------------------------------

CT1 = {"imaging": {"modality": "CT", "body_site": "snomed:818981001", "days_ago": 10, "id": "ct1"}}


def test_join_keeps_observations_derived_from_the_facts_resource():
    area = obs("l3-area", 120, "cm2", 200, derived_from="ImagingStudy/ct1")  # outside any window
    value, _ = fact([CT1, area], "l3_of_ct")
    assert str(value).startswith("Observation/")


def test_join_accepts_absolute_and_versioned_references():
    for ref in ("https://fhir.example.org/r4/ImagingStudy/ct1", "ImagingStudy/ct1/_history/2"):
        value, _ = fact([CT1, obs("l3-area", 120, "cm2", 5, derived_from=ref)], "l3_of_ct")
        assert value is not None, ref


def test_join_drops_observations_of_another_study_or_without_one():
    other = obs("l3-area", 120, "cm2", 5, derived_from="ImagingStudy/ct0")
    assert fact([CT1, other], "l3_of_ct")[0] is None
    assert fact([CT1, obs("l3-area", 120, "cm2", 5)], "l3_of_ct")[0] is None
    # the joined fact's own filters apply: no CT in its window, nothing to join to
    old_ct = {
        "imaging": {"modality": "CT", "body_site": "snomed:818981001", "days_ago": 200, "id": "ct1"}
    }
    linked = obs("l3-area", 120, "cm2", 5, derived_from="ImagingStudy/ct1")
    assert fact([old_ct, linked], "l3_of_ct")[0] is None


def test_join_needs_a_resource_fact(tmp_path):
    from cds_service.engine import PackErrors, load_ruleset

    (tmp_path / "p.yaml").write_text(
        """
pack: {id: join, version: 1.0.0}
code_systems: {loinc: http://loinc.org}
value_sets: {w: [{system: loinc, code: 29463-7}]}
facts:
  weight: {from: Observation, codes: w, unit: kg}
  linked: {from: Observation, codes: w, where: [{path: derivedFrom, references: weight}]}
"""
    )
    with pytest.raises(PackErrors) as info:
        load_ruleset([tmp_path])
    assert [e.code for e in info.value.errors] == ["rule_reference_error"]


def test_medication_code_from_a_contained_medication():
    from cds_service.engine.facts import Run

    from .helpers import SETTINGS, core

    order = {
        "resourceType": "MedicationRequest",
        "id": "mr1",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "contained": [
            {
                "resourceType": "Medication",
                "id": "m1",
                "code": {"coding": [{"system": "http://www.whocc.no/atc", "code": "L01BC05"}]},
            }
        ],
        "medicationReference": {"reference": "#m1"},
    }
    other = dict(order, id="mr2", medicationReference={"reference": "#nope"})
    run = Run(core(), [], [order, other], "order-select", {"patientId": "p1"}, NOW, SETTINGS, False)
    fv = run.fact("chemo_order")
    assert [i.reference for i in fv.items] == ["MedicationRequest/mr1"]


def test_same_day_means_less_than_24_hours_apart_not_a_calendar_day(tmp_path):
    # 72.0 at 23:00 and 66.0 at 01:00 the next (UTC) day: 2 hours apart -> a conflict
    run, _ = _conflict_run(
        tmp_path,
        [
            ("weight", 72.0, "kg", "2025-05-24T23:00:00Z"),
            ("weight", 66.0, "kg", "2025-05-25T01:00:00Z"),
        ],
    )
    assert run.fact("weight") is None and len(run.data_quality) == 2


def test_daily_weights_drifting_more_than_5_percent_are_not_a_conflict(tmp_path):
    # one weight a day, 23.5 h apart, each step < 5 %, 80 -> 72 kg overall (10 %): real change
    days = ["2025-05-20T08:00:00Z", "2025-05-21T07:30:00Z", "2025-05-22T07:00:00Z"]
    run, _ = _conflict_run(
        tmp_path, [("weight", w, "kg", d) for w, d in zip((80.0, 76.5, 73.0), days, strict=True)]
    )
    assert run.fact("weight").value == 73.0 and run.data_quality == []
