"""The trend view: server-rendered SVG, points where the data put them, cut-offs from the rule set."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest

SVG = "{http://www.w3.org/2000/svg}"
# Chart geometry of cds_service/demo/trend.py (viewBox 1100 x 250, plot from y=18 to y=250-34).
TOP, BOTTOM_Y = 18, 250 - 34


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


def test_implausible_values_are_listed_not_drawn_at_the_axis_edge(client):
    """Patient 14: grip 400 kg is outside the pack's plausibility limits (> 0 and ≤ 150 kg) and far off
    the axis: it is not drawn (it was drawn at the top edge as if measured there), but listed under
    the chart with the engine's reason; the valid grip 24.0 kg is drawn."""
    page = client.get("/trend/syn-14").get_data(as_text=True)
    grip = charts(page)["grip"]
    assert [c.get("data-value") for c in grip.findall(f"{SVG}circle")] == ["24"]
    assert float(grip.get("data-y-max")) < 400
    figure = page[page.index('id="chart-grip"'):page.index('id="chart-gait"')]
    assert re.search(r'class="off-scale-value" data-reference="Observation/syn-14-obs-12">\d{4}-\d\d-\d\d: 400 — '
                     r"excluded: outside plausible limits &gt; 0 and ≤ 150 kg</span>", figure), figure


def test_same_day_weight_pair_the_card_excluded_is_shown_as_excluded(client):
    """Patient 14: 72.0 kg at 08:00 and 66.0 kg at 14:00 the same day differ by 8.3 % > 5 %: the
    engine excludes both (data-quality card), so the chart draws them hollow, outside the line,
    and the weight −72 kg (≤ 0) is off the scale and listed."""
    page = client.get("/trend/syn-14").get_data(as_text=True)
    weight = charts(page)["weight"]
    excluded = weight.findall(f"{SVG}circle[@class='point excluded']")
    assert sorted(c.get("data-value") for c in excluded) == ["66", "72"]
    assert {c.get("data-reference") for c in excluded} == {"Observation/syn-14-obs-7", "Observation/syn-14-obs-8"}
    for circle in excluded:
        assert "differ by more than 5 %" in circle.find(f"{SVG}title").text
    line = weight.find(f"{SVG}polyline[@data-series='weight']")
    drawn = {c.get("cx") + "," + c.get("cy") for c in excluded}
    assert drawn.isdisjoint(line.get("points").split())
    assert float(weight.get("data-y-min")) >= 0
    figure = page[page.index('id="chart-weight"'):page.index('id="chart-bmi"')]
    assert 'data-reference="Observation/syn-14-obs-9">' in figure and ": -72 — excluded: outside plausible limits" in figure


def test_cutoff_labels_are_words_outside_the_plot(severe):
    """The cut-off values are written right of the plot area (never over the data line) and the
    figure caption names each cut-off in words from the packs, not by its parameter id."""
    page = severe
    for svg in charts(page).values():
        right = float(svg.get("data-plot-right"))
        for label in svg.findall(f"{SVG}text[@class='cutoff-label']"):
            assert float(label.get("x")) > right
        rows = sorted(float(label.get("y")) for label in svg.findall(f"{SVG}text[@class='cutoff-label']"))
        assert all(b - a >= 13 for a, b in zip(rows, rows[1:]))  # labels do not overlap each other
    captions = re.findall(r'<div class="cut" data-parameter="([a-z_]+)"><i class="swatch [a-z]+"></i>([^<]+)</div>', page)
    shown = dict(captions)
    assert shown["grip_low"] == "Grip strength &lt; 16 kg (EWGSOP2 2019)"
    assert shown["obesity_bmi"].startswith("Sarcopenic obesity: BMI ≥ ")
    assert shown["cachexia_bmi_low"] == "BMI &lt; 20 kg/m² (Fearon 2011)"
    assert shown["gait_slow"] == "Severe sarcopenia: Usual gait speed ≤ 0.8 m/s (EWGSOP2 2019)"
    for parameter, text in captions:
        assert parameter.replace("_", " ") not in text


def test_an_empty_chart_axis_does_not_run_below_zero(client):
    """Patient 05 has no gait speed on record: the axis shows the cut-off from 0, never −0.5 m/s."""
    page = client.get("/trend/syn-05").get_data(as_text=True)
    gait = charts(page)["gait"]
    assert gait.find(f"{SVG}text[@class='empty']").text == "no values on record"
    assert gait.findall(f"{SVG}circle") == []
    assert float(gait.get("data-y-min")) == 0
    assert float(gait.get("data-y-max")) >= 0.8


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
