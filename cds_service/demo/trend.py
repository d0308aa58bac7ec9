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
from cds_service.demo.i18n import gender, scenario, t, texts

bp = Blueprint("trend", __name__, template_folder="templates")

#: the drawing's own coordinates; the SVG scales to the page's width (CSS width: 100%). The
#: cut-off values are written in the right margin, outside the plot, so they never cover the data.
W, H = 1100, 250
LEFT, RIGHT, TOP, BOTTOM = 64, 132, 18, 34


@dataclass(frozen=True)
class SeriesSpec:
    """One chart: which value set feeds it, which fact gives its plausibility limits, which cut-offs."""

    key: str
    title: str  # English; the page shows t(locale, "chart.<key>")
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
    plausible: bool = True  # False: excluded (implausible, or contradicting another value)
    note: str = ""
    implausible: bool = False  # outside the fact's plausibility limits: never sets the axis


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
    title: str = ""
    locale: str = "en"
    off_scale: list[Point] = field(default_factory=list)  # excluded values outside the drawn axis


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


def _mark_excluded(points: list[Point], reasons: dict[str, str], locale: str) -> None:
    """Flag the values the rule engine set aside for this patient (implausible, or contradicting
    another value, such as a same-day weight pair), with the engine's reason."""
    for point in points:
        reason = reasons.get(point.reference)
        if reason:
            point.plausible = False
            point.note = t(locale, "trend.excluded_because", reason=reason)


def _mark_plausibility(ruleset: Any, fact: str | None, points: list[Point], unit: str,
                       locale: str = "en") -> None:
    """Flag values outside the fact's plausibility limits (compared in the fact's own unit), also
    those the engine did not read (older than its windows)."""
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
            point.implausible = True
            if not point.note:
                point.note = t(locale, "trend.excluded_because", reason=_outside_text(limits, fact_unit, locale))


def _outside_text(limits: dict[str, float], unit: str | None, locale: str) -> str:
    from cds_service.engine.messages import phrase
    from cds_service.engine.units import display

    parts = [f"{symbol} {limits[key]:g}" for key, symbol in (("above", ">"), ("min", "≥"), ("below", "<"), ("max", "≤"))
             if key in limits]
    shown = display(unit, locale) if unit else ""
    return phrase(locale, "outside", limits=phrase(locale, "and").join(parts) + (f" {shown}" if shown else ""))


def _latest(points: list[Point]) -> Point | None:
    usable = [p for p in points if p.plausible]
    return usable[-1] if usable else None


def chemotherapy(ruleset: Any, resources: list[dict[str, Any]], locale: str = "en") -> list[Marker]:
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
            Marker(when, name or t(locale, "trend.chemotherapy_default"), f"MedicationRequest/{resource.get('id')}")
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
    fact: str | None = None,
) -> CutoffLine | None:
    found = ruleview.threshold(ruleset, name, sex=sex, facts=facts, **settings)
    if found is None:
        return None
    factor = _factor(found.unit, unit)
    if factor is None:
        return None
    value = found.value * factor
    # a pack's note is written for its authors, in English: shown only to English readers
    note = found.note if settings.get("locale", "en") == "en" else None
    return CutoffLine(name, value, _cutoff_label(ruleset, found, value, unit, fact, settings), note=note)


def _cutoff_label(ruleset: Any, found: Any, value: float, unit: str, fact: str | None,
                  settings: dict[str, str]) -> str:
    """A cut-off in words, as the rules apply it: "Sarcopenic obesity: BMI ≥ 30 kg/m² (…)" or
    "Grip strength (max, latest session) < 16 kg (EWGSOP2 2019)"; the parameter's own label
    when the packs give it one."""
    locale = settings.get("locale", "en")
    symbol, finding = ruleview.cutoff_meaning(ruleset, found.name, locale, settings.get("profile"))
    measured = (ruleview.fact_label(ruleset, fact, locale) if fact else None) or ""
    if found.label != found.name.replace("_", " "):  # a label from the packs
        head = found.label
    elif finding:
        head = f"{finding}: {_short(measured)}".rstrip(": ")
    else:
        head = _short(measured) or t(locale, "trend.legend.cutoff")
    text = f"{head} {symbol or ''} {value:g} {UNIT_DISPLAY.get(unit, unit)}".replace("  ", " ")
    if found.band:
        text += f", {found.band}"
    return text + (f" ({found.source})" if found.source else "")


def _short(label: str) -> str:
    """A fact label without its explanation in brackets: "BMI (current weight / height²)" → "BMI"."""
    return ruleview.short_label(label)


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
    locale = settings.get("locale", "en")
    _symbol, finding = ruleview.cutoff_meaning(ruleset, "cachexia_weight_loss", locale, settings.get("profile"))
    relative = t(locale, "trend.weight_loss", loss=f"{loss.value:g}", reference=f"{reference.value:g}",
                 date=reference.when.date().isoformat(), value=f"{value:.1f}")
    return CutoffLine("cachexia_weight_loss", value, f"{finding + ': ' if finding else ''}{relative}{source}", "relative")


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
    reasons = ruleview.excluded_by_rules(ruleset, resources, now=now, profile=profile, ct_cutoffs=ct_cutoffs,
                                         locale=locale)
    heights = observations(ruleset, resources, "body-height", "m")
    _mark_excluded(heights, reasons, locale)
    _mark_plausibility(ruleset, "height", heights, "m", locale)
    height = _latest(heights)
    charts = {spec.key: Chart(spec, title=t(locale, f"chart.{spec.key}"), locale=locale) for spec in CHARTS}
    for spec in CHARTS:
        if spec.value_set:
            points = observations(ruleset, resources, spec.value_set, spec.unit)
            _mark_excluded(points, reasons, locale)
            _mark_plausibility(ruleset, spec.fact, points, spec.unit, locale)
            charts[spec.key].points = _day_max(points) if spec.per_day_max else points
    if height is not None:
        for weight in charts["weight"].points:
            charts["bmi"].points.append(
                Point(
                    weight.when,
                    weight.value / height.value**2,
                    weight.reference,
                    weight.plausible,
                    weight.note or t(locale, "trend.bmi_note", height=f"{height.value * 100:g}"),
                    weight.implausible,
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
                        note=t(locale, "trend.smi_note", height=f"{height.value * 100:g}"),
                    )
                )
        charts["smi"].points.sort(key=lambda p: p.when)
        _mark_plausibility(ruleset, "l3_smi", charts["smi"].points, "cm2/m2", locale)
    latest_weight = _latest(charts["weight"].points)
    facts: dict[str, float] = {}
    if latest_weight is not None and height is not None:
        facts["bmi"] = latest_weight.value / height.value**2
    for spec in CHARTS:
        for name in spec.cutoffs:
            line = (
                _weight_loss_line(ruleset, charts["weight"].points, now, settings)
                if name == "cachexia_weight_loss"
                else _cutoff(ruleset, name, spec.unit, sex, settings, facts, spec.fact)
            )
            if line is not None:
                charts[spec.key].cutoffs.append(line)
    markers = chemotherapy(ruleset, resources, locale)
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


def _axis(chart: Chart) -> tuple[float, float, float]:
    """(y_min, y_max, step) covering the values (excluded contradicting ones too, not implausible
    ones) and the cut-offs. An axis of quantities that
    cannot be negative never goes below 0; an empty chart shows its cut-offs, or 0–1."""
    values = [p.value for p in chart.points if not p.implausible] + [c.value for c in chart.cutoffs]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    pad = (high - low) * 0.12 or max(abs(high) * 0.1, 1.0 if values else 0.0)
    step = _nice_step(high - low + 2 * pad)
    y_min = math.floor((low - pad) / step) * step
    y_max = math.ceil((high + pad) / step) * step
    if low >= 0 and y_min < 0:
        y_min = 0.0
    return y_min, y_max, step


def _label_rows(wanted: list[float], height: float = 13.0) -> list[float]:
    """Text baselines near the wanted heights, at least `height` apart (labels never overlap)."""
    placed: list[float] = []
    for y_wanted in sorted(wanted):
        placed.append(max(y_wanted, placed[-1] + height) if placed else y_wanted)
    order = sorted(range(len(wanted)), key=lambda i: wanted[i])
    result = [0.0] * len(wanted)
    for rank, index in enumerate(order):
        result[index] = placed[rank]
    return result


def render_svg(chart: Chart, markers: list[Marker], start: datetime, end: datetime) -> Markup:
    spec = chart.spec
    locale = chart.locale
    title = chart.title or spec.title
    unit = UNIT_DISPLAY.get(spec.unit, spec.unit)
    span_s = max((end - start).total_seconds(), 1.0)
    plot_right = W - RIGHT

    def x(moment: datetime) -> float:
        return round(LEFT + (plot_right - LEFT) * (moment - start).total_seconds() / span_s, 2)

    y_min, y_max, step = _axis(chart)

    def y(value: float) -> float:
        return round(TOP + (H - TOP - BOTTOM) * (y_max - value) / (y_max - y_min), 2)

    def on_scale(value: float) -> bool:
        return y_min <= value <= y_max

    chart.off_scale = [p for p in chart.points if not on_scale(p.value)]
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="100%" role="img" '
        f'preserveAspectRatio="xMinYMin meet" class="trend-chart" data-chart="{spec.key}" data-unit="{escape(spec.unit)}" '
        f'data-y-min="{_fmt(y_min)}" data-y-max="{_fmt(y_max)}" data-plot-right="{plot_right}" '
        f'aria-label="{escape(title)} {escape(t(locale, "trend.over_time"))}">',
        f"<title>{escape(title)} ({escape(unit)})</title>",
        f'<rect class="plot" x="{LEFT}" y="{TOP}" width="{plot_right - LEFT}" height="{H - TOP - BOTTOM}"/>',
    ]
    tick = y_min
    while tick <= y_max + step / 1000:
        ty = y(tick)
        out.append(
            f'<line class="grid" x1="{LEFT}" x2="{plot_right}" y1="{ty}" y2="{ty}"/>'
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
    chemo = t(locale, "trend.chemotherapy")
    for marker in markers:
        mx = x(marker.when)
        out.append(
            f'<line class="chemo" data-reference="{escape(marker.reference)}" x1="{mx}" x2="{mx}" y1="{TOP}" '
            f'y2="{H - BOTTOM}"><title>{escape(chemo)}: {escape(marker.label)} '
            f"({marker.when.date().isoformat()}, {escape(marker.reference)})</title></line>"
            f'<text class="chemo-label" x="{mx + 3}" y="{TOP + 10}">{escape(marker.label.split(" ")[0])}</text>'
        )
    rows = _label_rows([y(line.value) + 4 for line in chart.cutoffs])
    for line, row in zip(chart.cutoffs, rows):
        ly = y(line.value)
        out.append(
            f'<line class="cutoff {line.kind}" data-parameter="{escape(line.parameter)}" '
            f'data-value="{_fmt(line.value)}" x1="{LEFT}" x2="{plot_right}" y1="{ly}" y2="{ly}">'
            f"<title>{escape(line.label)}{escape(' — ' + line.note) if line.note else ''}</title></line>"
            f'<text class="cutoff-label" data-parameter="{escape(line.parameter)}" x="{plot_right + 6}" y="{row}">'
            f"{f'{line.value:.1f}' if line.kind == 'relative' else _fmt(line.value)} {escape(unit)}"
            f"<title>{escape(line.label)}</title></text>"
        )
    good = [p for p in chart.points if p.plausible]
    if len(good) > 1:
        points = " ".join(f"{x(p.when)},{y(p.value)}" for p in good)
        out.append(f'<polyline class="series" data-series="{spec.key}" points="{points}"/>')
    for p in chart.points:
        if not on_scale(p.value):
            continue  # listed under the chart instead of being drawn at the edge as if measured there
        css = "point" if p.plausible else "point excluded"
        note = f" — {escape(p.note)}" if p.note else ""
        out.append(
            f'<circle class="{css}" data-series="{spec.key}" data-date="{p.when.date().isoformat()}" '
            f'data-value="{_fmt(p.value)}" data-reference="{escape(p.reference)}" cx="{x(p.when)}" '
            f'cy="{y(p.value)}" r="{4 if p.plausible else 5}"><title>{p.when.date().isoformat()}: '
            f"{_fmt(p.value)} {escape(unit)} ({escape(p.reference)}){note}</title></circle>"
        )
    if not good:
        empty = t(locale, "trend.no_values" if not chart.points else "trend.no_usable")
        out.append(
            f'<text class="empty" x="{(plot_right + LEFT) / 2}" y="{H / 2}" text-anchor="middle">{escape(empty)}</text>'
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
    summary = patient.summary()
    if settings.locale != "en":  # the demo's scenario in the page's language (the record's text is English)
        summary["cancer"] = scenario(settings.locale, patient.number, summary["cancer"])
    return render_template(
        "demo/trend.html",
        tx=texts(settings.locale),
        lang=settings.locale,
        gender=gender(settings.locale, patient.gender),
        patient=summary,
        charts=charts,
        markers=markers,
        facts=facts,
        profile=ruleview.title_of(ruleset, "profiles", settings.profile, settings.locale),
        ct_set=ruleview.title_of(ruleset, "ct_sets", settings.ct_cutoffs, settings.locale),
        pack_version=getattr(ruleset, "version", ""),
        now=now,
    )
