"""The trend view: server-rendered SVG, points where the data put them, cut-offs from the rule set."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest

SVG = "{http://www.w3.org/2000/svg}"
# Chart geometry of cds_service/demo/trend.py (viewBox 760 x 230, plot from y=18 to y=230-34).
TOP, BOTTOM_Y = 18, 230 - 34


def charts(html: str) -> dict[str, ET.Element]:
    found = {}
    for svg in re.findall(r"<svg .*?</svg>", html, flags=re.S):
        root = ET.fromstring(svg)
        found[root.get("data-chart")] = root
    return found


def y_of(svg: ET.Element, value: float) -> float:
    y_min, y_max = float(svg.get("data-y-min")), float(svg.get("data-y-max"))
    return TOP + (BOTTOM_Y - TOP) * (y_max - value) / (y_max - y_min)


@pytest.fixture()
def severe(client):
    answer = client.get("/trend/syn-01")
    assert answer.status_code == 200
    return answer.get_data(as_text=True)


def test_five_charts_with_points_and_cutoffs(severe):
    svgs = charts(severe)
    assert list(svgs) == ["weight", "bmi", "grip", "gait", "smi"]
    weight = svgs["weight"]
    polyline = weight.find(f"{SVG}polyline[@data-series='weight']")
    assert (
        polyline is not None and len(polyline.get("points").split()) == 5
    )  # five weights of patient 01
    assert weight.find(f"{SVG}line[@class='cutoff relative']") is not None
    assert svgs["grip"].find(f"{SVG}line[@data-parameter='grip_low']") is not None


def test_hand_checked_grip_point_and_cutoff(severe, demo_app):
    """Patient 01 (female, EWGSOP2): latest grip 14.0 kg on NOW-5 days; EWGSOP2 women's cut-off < 16 kg."""
    data = demo_app.extensions["demo"].data
    grip = charts(severe)["grip"]
    cutoff = grip.find(f"{SVG}line[@data-parameter='grip_low']")
    assert cutoff.get("data-value") == "16"
    assert float(cutoff.get("y1")) == pytest.approx(y_of(grip, 16.0), abs=0.01)
    points = {p.get("data-date"): p for p in grip.findall(f"{SVG}circle")}
    point = points[(data.now - timedelta(days=5)).date().isoformat()]
    assert point.get("data-value") == "14"
    assert point.get("data-reference") == "Observation/syn-01-obs-12"
    assert float(point.get("cy")) == pytest.approx(y_of(grip, 14.0), abs=0.01)
    assert float(point.get("cy")) > float(cutoff.get("y1"))  # drawn below the cut-off line


def test_smi_from_area_and_height_with_the_ct_cutoff(severe):
    """96.5 cm² / 1.62 m² → 36.77 cm²/m²; Martin 2013 women < 41."""
    smi = charts(severe)["smi"]
    (point,) = smi.findall(f"{SVG}circle")
    assert point.get("data-value") == "36.77"
    assert smi.find(f"{SVG}line[@data-parameter='smi_low']").get("data-value") == "41"


def test_chemotherapy_orders_are_vertical_lines(severe):
    lines = charts(severe)["weight"].findall(f"{SVG}line[@class='chemo']")
    assert [line.get("data-reference") for line in lines] == ["MedicationRequest/syn-01-mr-19"]
    assert all(line.get("x1") == line.get("x2") for line in lines)


def test_martin_band_follows_bmi(client):
    """Patient 02: man, BMI 26.78 ≥ 25 → Martin 2013 cut-off 53 (the band, read from the pack)."""
    smi = charts(client.get("/trend/syn-02").get_data(as_text=True))["smi"]
    assert smi.find(f"{SVG}line[@data-parameter='smi_low']").get("data-value") == "53"


def test_implausible_values_are_shown_as_excluded(client):
    """Patient 14: grip 400 kg is outside the pack's plausibility limits; it is marked, not plotted in the line."""
    grip = charts(client.get("/trend/syn-14").get_data(as_text=True))["grip"]
    excluded = grip.findall(f"{SVG}circle[@class='point excluded']")
    assert [p.get("data-value") for p in excluded] == ["400"]


def test_cutoffs_follow_the_configured_profile(tmp_path):
    from datetime import datetime, timezone

    from cds_service.demo import create_demo_app

    app = create_demo_app(
        "127.0.0.1",
        8080,
        tmp_path,
        clock=lambda: datetime.now(timezone.utc),
        overrides={"rules": {"watch": False, "profile": "awgs2019"}},
    )
    try:
        svgs = charts(app.test_client().get("/trend/syn-01").get_data(as_text=True))
        assert (
            svgs["grip"].find(f"{SVG}line[@data-parameter='grip_low']").get("data-value") == "18"
        )  # AWGS women
        assert (
            svgs["smi"].find(f"{SVG}line[@data-parameter='smi_low']").get("data-value") == "34.9"
        )  # Zhuang 2016
    finally:
        app.extensions["cds"].store.dispose()


def test_unknown_patient_is_404(client):
    assert client.get("/trend/nobody").status_code == 404
