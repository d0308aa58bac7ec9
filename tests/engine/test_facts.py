"""Selections, derivations and plausibility limits, each checked against hand-computed values."""

import pytest

from .helpers import fact, obs


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
