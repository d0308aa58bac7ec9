"""The SMART trend view at /trend/<patient_id>: weight, BMI, grip strength, gait speed and L3 SMI over
time as server-rendered SVG, with the active profile's cut-offs and chemotherapy orders marked.

Cut-offs, value sets and plausibility limits are read from the loaded rule set (`ruleview`); the
only things named here are the packs' vocabulary (value-set, fact and parameter names). In demo
mode the data come from the demo FHIR source; the production SMART launch is described in
docs/integrating-with-an-ehr.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

from flask import Blueprint, abort, current_app, render_template
from markupsafe import Markup, escape

from cds_service.demo import ruleview

bp = Blueprint("trend", __name__, template_folder="templates")

W, H = 760, 230
LEFT, RIGHT, TOP, BOTTOM = 64, 24, 18, 34


@dataclass(frozen=True)
class SeriesSpec:
    """One chart: which value set feeds it, which fact gives its plausibility limits, which cut-offs."""

    key: str
    title: str
    unit: str
    value_set: str | None
    fact: str | None
    cutoffs: tuple[str, ...]
    per_day_max: bool = False


#: The charts, in the packs' vocabulary (value-set, fact and parameter names of rules/sarcopenia).
CHARTS = (
    SeriesSpec("weight", "Body weight", "kg", "body-weight", "weight", ("cachexia_weight_loss",)),
    SeriesSpec("bmi", "BMI", "kg/m2", None, "bmi", ("cachexia_bmi_low", "obesity_bmi")),
    SeriesSpec(
        "grip",
        "Grip strength (highest of the day)",
        "kg",
        "grip-strength",
        "grip_max",
        ("grip_low",),
        True,
    ),
    SeriesSpec("gait", "Gait speed", "m/s", "gait-speed", "gait_speed", ("gait_slow",)),
    SeriesSpec(
        "smi",
        "CT L3 skeletal muscle index",
        "cm2/m2",
        "l3-skeletal-muscle-index",
        "l3_smi",
        ("smi_low",),
    ),
)

UNIT_DISPLAY = {"kg/m2": "kg/m²", "cm2/m2": "cm²/m²", "cm2": "cm²"}


@dataclass
class Point:
    when: datetime
    value: float
    reference: str
    plausible: bool = True
    note: str = ""


@dataclass
class CutoffLine:
    parameter: str
    value: float
    label: str
    kind: str = "threshold"  # or "relative" (weight-loss line)
    note: str | None = None


@dataclass
class Chart:
    spec: SeriesSpec
    points: list[Point] = field(default_factory=list)
    cutoffs: list[CutoffLine] = field(default_factory=list)
    svg: Markup = Markup("")


@dataclass
class Marker:
    when: datetime
    label: str
    reference: str


# ---- reading FHIR resources ------------------------------------------------------------------


def _when(resource: dict[str, Any]) -> datetime | None:
    for key in ("effectiveDateTime", "issued", "authoredOn"):
        text = resource.get(key)
        if text is None and key == "effectiveDateTime":
            text = (resource.get("effectivePeriod") or {}).get("start")
        if isinstance(text, str):
            try:
                moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                continue
            return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    return None


def _codings(concept: Any) -> list[tuple[str | None, str | None]]:
    if not isinstance(concept, dict):
        return []
    return [
        (c.get("system"), c.get("code")) for c in concept.get("coding") or [] if isinstance(c, dict)
    ]


def _factor(from_unit: str | None, to_unit: str) -> float | None:
    if from_unit in (None, to_unit):
        return 1.0 if from_unit == to_unit else None
    try:
        from cds_service.engine import units

        return units.factor(from_unit, to_unit)
    except Exception:  # noqa: BLE001 - an unconvertible unit is left out, as the engine does
        return None


def _quantity(resource: dict[str, Any], unit: str) -> float | None:
    quantity = resource.get("valueQuantity")
    if not isinstance(quantity, dict) or not isinstance(quantity.get("value"), (int, float)):
        return None
    factor = _factor(quantity.get("code") or quantity.get("unit"), unit)
    return None if factor is None else quantity["value"] * factor


def _usable(resource: dict[str, Any]) -> bool:
    return resource.get("status", "final") in ("final", "amended", "corrected", "preliminary")


def observations(
    ruleset: Any, resources: list[dict[str, Any]], value_set: str, unit: str
) -> list[Point]:
    points = []
    for resource in resources:
        if resource.get("resourceType") != "Observation" or not _usable(resource):
            continue
        if not ruleview.value_set_matches(ruleset, value_set, _codings(resource.get("code"))):
            continue
        when, value = _when(resource), _quantity(resource, unit)
        if when is not None and value is not None:
            points.append(Point(when, value, f"Observation/{resource.get('id')}"))
    return sorted(points, key=lambda p: p.when)


def _day_max(points: list[Point]) -> list[Point]:
    best: dict[date, Point] = {}
    for point in points:
        day = point.when.date()
        if point.plausible and (
            day not in best or not best[day].plausible or point.value > best[day].value
        ):
            best[day] = point
        elif day not in best:
            best[day] = point
    excluded = [p for p in points if not p.plausible and best.get(p.when.date()) is not p]
    return sorted(list(best.values()) + excluded, key=lambda p: p.when)


def _mark_plausibility(ruleset: Any, fact: str | None, points: list[Point], unit: str) -> None:
    """Flag values outside the fact's plausibility limits (compared in the fact's own unit)."""
    limits = ruleview.plausible_limits(ruleset, fact) if fact else {}
    fact_unit = ruleview.fact_unit(ruleset, fact) if fact else None
    factor = _factor(unit, fact_unit) if fact_unit else 1.0
    for point in points:
        if (
            limits
            and factor is not None
            and not ruleview.is_plausible(point.value * factor, limits)
        ):
            point.plausible = False
            point.note = "excluded: outside the plausibility limits of the rule set"


def _latest(points: list[Point]) -> Point | None:
    usable = [p for p in points if p.plausible]
    return usable[-1] if usable else None


def chemotherapy(ruleset: Any, resources: list[dict[str, Any]]) -> list[Marker]:
    """MedicationRequests whose medication is in the packs' antineoplastic value set (ATC L01…)."""
    markers = []
    for resource in resources:
        if (
            resource.get("resourceType") != "MedicationRequest"
            or resource.get("status") == "entered-in-error"
        ):
            continue
        concept = resource.get("medicationCodeableConcept") or {}
        if not ruleview.value_set_matches(ruleset, "antineoplastic", _codings(concept)):
            continue
        when = _when(resource)
        if when is None:
            continue
        name = concept.get("text") or next(
            (c.get("display") for c in concept.get("coding") or [] if c.get("display")), ""
        )
        markers.append(
            Marker(when, name or "chemotherapy", f"MedicationRequest/{resource.get('id')}")
        )
    return sorted(markers, key=lambda m: m.when)


# ---- building the charts ---------------------------------------------------------------------


def _param_days(ruleset: Any, name: str, settings: dict[str, str]) -> float | None:
    found = ruleview.threshold(ruleset, name, sex=None, **settings)
    if found is None:
        return None
    factor = _factor(found.unit, "d")
    return None if factor is None else found.value * factor


def _cutoff(
    ruleset: Any,
    name: str,
    unit: str,
    sex: str | None,
    settings: dict[str, str],
    facts: dict[str, float],
) -> CutoffLine | None:
    found = ruleview.threshold(ruleset, name, sex=sex, facts=facts, **settings)
    if found is None:
        return None
    factor = _factor(found.unit, unit)
    if factor is None:
        return None
    value = found.value * factor
    source = f" ({found.source})" if found.source else ""
    band = f", {found.band}" if found.band else ""
    return CutoffLine(
        name,
        value,
        f"{found.label}: {value:g} {UNIT_DISPLAY.get(unit, unit)}{band}{source}",
        note=found.note,
    )


def _weight_loss_line(
    ruleset: Any, weights: list[Point], now: datetime, settings: dict[str, str]
) -> CutoffLine | None:
    """The weight that would mean the packs' cachexia weight loss against the reference weight:
    of the plausible weights dated weight_reference_min_days–max_days before the latest one, the
    heaviest (the largest loss, as the pack's weight_6mo fact selects it)."""
    loss = ruleview.threshold(ruleset, "cachexia_weight_loss", sex=None, **settings)
    low = _param_days(ruleset, "weight_reference_min_days", settings)
    high = _param_days(ruleset, "weight_reference_max_days", settings)
    plausible = [p for p in weights if p.plausible]
    if loss is None or low is None or high is None or not plausible:
        return None
    current = max(plausible, key=lambda p: p.when)
    candidates = [
        p
        for p in plausible
        if low * 86400 <= (current.when - p.when).total_seconds() <= high * 86400
    ]
    if not candidates:
        return None
    reference = max(candidates, key=lambda p: p.value)
    fraction = loss.value * (_factor(loss.unit, "1") or 0.01)
    value = reference.value * (1 - fraction)
    source = f" ({loss.source})" if loss.source else ""
    return CutoffLine(
        "cachexia_weight_loss",
        value,
        f"{loss.value:g} % below {reference.value:g} kg of {reference.when.date().isoformat()}: "
        f"{value:.1f} kg{source}",
        "relative",
    )


def build_charts(
    ruleset: Any,
    resources: list[dict[str, Any]],
    *,
    now: datetime,
    profile: str,
    ct_cutoffs: str,
    locale: str = "en",
) -> tuple[list[Chart], list[Marker], dict[str, Any]]:
    """Every chart of one patient's record, and the facts the cut-offs depended on."""
    settings = {"profile": profile, "ct_cutoffs": ct_cutoffs, "locale": locale}
    patient = next((r for r in resources if r.get("resourceType") == "Patient"), {})
    sex = patient.get("gender")
    heights = observations(ruleset, resources, "body-height", "m")
    _mark_plausibility(ruleset, "height", heights, "m")
    height = _latest(heights)
    charts = {spec.key: Chart(spec) for spec in CHARTS}
    for spec in CHARTS:
        if spec.value_set:
            points = observations(ruleset, resources, spec.value_set, spec.unit)
            _mark_plausibility(ruleset, spec.fact, points, spec.unit)
            charts[spec.key].points = _day_max(points) if spec.per_day_max else points
    if height is not None:
        for weight in charts["weight"].points:
            charts["bmi"].points.append(
                Point(
                    weight.when,
                    weight.value / height.value**2,
                    weight.reference,
                    weight.plausible,
                    weight.note or f"weight / height² ({height.value * 100:g} cm)",
                )
            )
        smi_days = {p.when.date() for p in charts["smi"].points}
        for area in observations(ruleset, resources, "l3-skeletal-muscle-area", "cm2"):
            if area.when.date() not in smi_days:
                charts["smi"].points.append(
                    Point(
                        area.when,
                        area.value / height.value**2,
                        area.reference,
                        note=f"L3 area / height² ({height.value * 100:g} cm)",
                    )
                )
        charts["smi"].points.sort(key=lambda p: p.when)
        _mark_plausibility(ruleset, "l3_smi", charts["smi"].points, "cm2/m2")
    latest_weight = _latest(charts["weight"].points)
    facts: dict[str, float] = {}
    if latest_weight is not None and height is not None:
        facts["bmi"] = latest_weight.value / height.value**2
    for spec in CHARTS:
        for name in spec.cutoffs:
            line = (
                _weight_loss_line(ruleset, charts["weight"].points, now, settings)
                if name == "cachexia_weight_loss"
                else _cutoff(ruleset, name, spec.unit, sex, settings, facts)
            )
            if line is not None:
                charts[spec.key].cutoffs.append(line)
    markers = chemotherapy(ruleset, resources)
    return (
        list(charts.values()),
        markers,
        {"sex": sex, "height_m": height.value if height else None, **facts},
    )


# ---- SVG -------------------------------------------------------------------------------------


def _nice_step(span: float) -> float:
    raw = span / 4 if span > 0 else 1
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)


def _fmt(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def render_svg(chart: Chart, markers: list[Marker], start: datetime, end: datetime) -> Markup:
    spec = chart.spec
    unit = UNIT_DISPLAY.get(spec.unit, spec.unit)
    span_s = max((end - start).total_seconds(), 1.0)

    def x(moment: datetime) -> float:
        return round(LEFT + (W - LEFT - RIGHT) * (moment - start).total_seconds() / span_s, 2)

    values = [p.value for p in chart.points if p.plausible] + [c.value for c in chart.cutoffs]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    pad = (high - low) * 0.12 or max(abs(high) * 0.1, 1.0)
    step = _nice_step(high - low + 2 * pad)
    y_min = math.floor((low - pad) / step) * step
    y_max = math.ceil((high + pad) / step) * step

    def y(value: float) -> float:
        clamped = min(max(value, y_min), y_max)
        return round(TOP + (H - TOP - BOTTOM) * (y_max - clamped) / (y_max - y_min), 2)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
        f'class="trend-chart" data-chart="{spec.key}" data-unit="{escape(spec.unit)}" '
        f'data-y-min="{_fmt(y_min)}" data-y-max="{_fmt(y_max)}" aria-label="{escape(spec.title)} over time">',
        f"<title>{escape(spec.title)} ({escape(unit)})</title>",
        f'<rect class="plot" x="{LEFT}" y="{TOP}" width="{W - LEFT - RIGHT}" height="{H - TOP - BOTTOM}"/>',
    ]
    tick = y_min
    while tick <= y_max + step / 1000:
        ty = y(tick)
        out.append(
            f'<line class="grid" x1="{LEFT}" x2="{W - RIGHT}" y1="{ty}" y2="{ty}"/>'
            f'<text class="tick" x="{LEFT - 6}" y="{ty + 4}" text-anchor="end">{_fmt(tick)}</text>'
        )
        tick += step
    month = date(start.year, start.month, 1)
    while datetime(month.year, month.month, 1, tzinfo=timezone.utc) <= end:
        moment = datetime(month.year, month.month, 1, tzinfo=timezone.utc)
        if moment >= start:
            tx = x(moment)
            out.append(
                f'<line class="grid v" x1="{tx}" x2="{tx}" y1="{TOP}" y2="{H - BOTTOM}"/>'
                f'<text class="tick" x="{tx}" y="{H - BOTTOM + 16}" text-anchor="middle">{month:%Y-%m}</text>'
            )
        month = date(month.year + (month.month == 12), month.month % 12 + 1, 1)
    out.append(f'<text class="unit" x="{LEFT}" y="{TOP - 5}">{escape(unit)}</text>')
    for marker in markers:
        mx = x(marker.when)
        out.append(
            f'<line class="chemo" data-reference="{escape(marker.reference)}" x1="{mx}" x2="{mx}" y1="{TOP}" '
            f'y2="{H - BOTTOM}"><title>Chemotherapy: {escape(marker.label)} '
            f"({marker.when.date().isoformat()}, {escape(marker.reference)})</title></line>"
            f'<text class="chemo-label" x="{mx + 3}" y="{TOP + 10}">{escape(marker.label.split(" ")[0])}</text>'
        )
    for line in chart.cutoffs:
        ly = y(line.value)
        out.append(
            f'<line class="cutoff {line.kind}" data-parameter="{escape(line.parameter)}" '
            f'data-value="{_fmt(line.value)}" x1="{LEFT}" x2="{W - RIGHT}" y1="{ly}" y2="{ly}">'
            f"<title>{escape(line.label)}{escape(' — ' + line.note) if line.note else ''}</title></line>"
            f'<text class="cutoff-label" x="{W - RIGHT - 4}" y="{ly - 4}" text-anchor="end">{escape(line.label)}</text>'
        )
    good = [p for p in chart.points if p.plausible]
    if len(good) > 1:
        points = " ".join(f"{x(p.when)},{y(p.value)}" for p in good)
        out.append(f'<polyline class="series" data-series="{spec.key}" points="{points}"/>')
    for p in chart.points:
        css = "point" if p.plausible else "point excluded"
        note = f" — {escape(p.note)}" if p.note else ""
        out.append(
            f'<circle class="{css}" data-series="{spec.key}" data-date="{p.when.date().isoformat()}" '
            f'data-value="{_fmt(p.value)}" data-reference="{escape(p.reference)}" cx="{x(p.when)}" '
            f'cy="{y(p.value)}" r="{4 if p.plausible else 5}"><title>{p.when.date().isoformat()}: '
            f"{_fmt(p.value)} {escape(unit)} ({escape(p.reference)}){note}</title></circle>"
        )
    if not chart.points:
        out.append(
            f'<text class="empty" x="{(W + LEFT) / 2}" y="{H / 2}" text-anchor="middle">no values on record</text>'
        )
    out.append("</svg>")
    return Markup("".join(out))


def render_charts(charts: list[Chart], markers: list[Marker], now: datetime) -> None:
    moments = [p.when for c in charts for p in c.points] + [m.when for m in markers] + [now]
    start = min(moments) - timedelta(days=10)
    end = max(moments) + timedelta(days=10)
    for chart in charts:
        chart.svg = render_svg(chart, markers, start, end)


def charts_for(
    state: Any, ruleset: Any, resources: list[dict], now: datetime
) -> tuple[list[Chart], list[Marker], dict]:
    """The drawn charts, chemotherapy markers and facts of one patient at `now`, with the service's
    active profile, CT cut-off set and locale (shared by the demo page and the SMART launch)."""
    settings = state.engine_settings
    charts, markers, facts = build_charts(
        ruleset, resources, now=now, profile=settings.profile, ct_cutoffs=settings.ct_cutoffs,
        locale=settings.locale,
    )
    render_charts(charts, markers, now)
    return charts, markers, facts


# ---- the route -------------------------------------------------------------------------------


@bp.get("/trend/<patient_id>")
def trend(patient_id: str):
    """One page per patient (demo mode: data from the demo FHIR source)."""
    demo = current_app.extensions.get("demo")
    if demo is None or not current_app.config["CDS"].get("demo", {}).get("enabled"):
        abort(404)  # production: reached by a SMART launch (docs/integrating-with-an-ehr.md)
    patient = demo.data.patients.get(patient_id)
    if patient is None:
        abort(404)
    state = current_app.extensions["cds"]
    ruleset = state.rules.current
    settings = state.engine_settings
    now = state.clock()
    charts, markers, facts = charts_for(state, ruleset, patient.resources, now)
    return render_template(
        "demo/trend.html",
        patient=patient.summary(),
        charts=charts,
        markers=markers,
        facts=facts,
        profile=ruleview.title_of(ruleset, "profiles", settings.profile, settings.locale),
        ct_set=ruleview.title_of(ruleset, "ct_sets", settings.ct_cutoffs, settings.locale),
        pack_version=getattr(ruleset, "version", ""),
        now=now,
    )
