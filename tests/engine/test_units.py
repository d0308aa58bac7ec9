"""UCUM → pint conversions, with the arithmetic done by hand in comments."""

from datetime import UTC

import pytest

from cds_service.engine import units

from .helpers import fact, obs


@pytest.mark.parametrize(
    "source, target, expected",
    [
        ("[lbf_av]", "kg", 0.45359237),  # 1 lbf = 1 lb × g0 = 0.45359237 kgf, read as kg for grip
        ("[lb_av]", "kg", 0.45359237),
        ("mg/dL", "mg/L", 10.0),  # 1 dL = 0.1 L → ×10
        ("g/dL", "g/L", 10.0),
        ("[in_i]", "cm", 2.54),
        ("m", "cm", 100.0),
        ("cm2/m2", "cm2/m2", 1.0),
        ("g", "kg", 0.001),
        ("%", "1", 0.01),
        ("a", "d", 365.25),
    ],
)
def test_factor(source, target, expected):
    assert units.factor(source, target) == pytest.approx(expected)


@pytest.mark.parametrize("source, target", [("kg", "cm"), ("mg/L", "kg"), ("m/s", "s")])
def test_impossible_conversion(source, target):
    with pytest.raises(units.UnitError):
        units.factor(source, target)


@pytest.mark.parametrize("code", ["kgs", "[foo]", "/m", ""])
def test_unknown_unit(code):
    with pytest.raises(units.UnitError):
        units.parse(code)


def test_annotations_are_dimensionless():
    assert units.factor("{score}", "1") == 1.0


def test_grip_55_lbf_is_24_95_kg():
    # 55 × 0.45359237 = 24.9476 kg
    value, _ = fact([obs("grip-strength", 55, "[lbf_av]", 10)], "grip_max")
    assert value == pytest.approx(24.9476, abs=1e-4)


def test_crp_mg_dl_to_mg_l():
    # 2.5 mg/dL × 10 = 25 mg/L
    value, _ = fact([obs("crp", 2.5, "mg/dL", 3)], "crp")
    assert value == pytest.approx(25.0)


def test_albumin_g_dl_to_g_l():
    # 3.4 g/dL × 10 = 34 g/L
    value, _ = fact([obs("albumin", 3.4, "g/dL", 3)], "albumin")
    assert value == pytest.approx(34.0)


def test_height_inches_to_cm():
    # 67 in × 2.54 = 170.18 cm
    value, _ = fact([obs("body-height", 67, "[in_i]", 3)], "height")
    assert value == pytest.approx(170.18)


def test_unconvertible_unit_in_data_is_excluded_and_reported():
    value, run = fact([obs("crp", 5, "mmol/L", 3)], "crp")
    assert value is None
    assert run.data_quality[0]["fact"] == "crp"
    assert "does not convert" in run.data_quality[0]["reason"]


def test_display_of_units():
    assert units.display("cm2/m2") == "cm²/m²"
    assert units.display("[lbf_av]") == "lbf"
    assert units.display("{score}") == ""


def test_calendar_days_between_counts_dates_not_hours():
    from datetime import datetime

    from cds_service.engine.expressions import _calendar_days, _days

    a = datetime(2025, 5, 20, 7, 40, tzinfo=UTC)
    b = datetime(2025, 5, 22, 9, 0, tzinfo=UTC)
    assert _days(a, b) > 2 and _calendar_days(a, b) == 2.0
    late = datetime(2025, 5, 19, 23, 50, tzinfo=UTC)
    early = datetime(2025, 5, 22, 0, 10, tzinfo=UTC)
    assert _days(late, early) < 3 and _calendar_days(late, early) == 3.0
    assert _calendar_days(b, a) == -2.0


def test_texts_round_half_up():
    from cds_service.engine.render_values import format_number

    # 72.5 kg × 25 kcal/kg = 1812.5 kcal is written 1813 (not 1812, binary round-half-even)
    assert format_number(1812.5, 0) == "1813"
    assert format_number(108.75, 1) == "108.8"
    assert format_number(2.675, 2) == "2.68"  # 2.67499999… in binary, 2.675 as written
    assert format_number(24.9476, 1) == "24.9" and format_number(-2.5, 0) == "-3"
