"""Build the governance report from the store's figures and render it as JSON, CSV or HTML.

Rows: one per month, pack version and finding, for every finding that appears anywhere in the
period (so a finding that stopped firing shows as 0, not as a missing row). Cards count by
their primary finding; accepted and overridden count cards with at least one such feedback
entry; a card with both counts in both. The HTML draws its plots offline (matplotlib → inline
SVG); nothing is fetched from a CDN.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cds_service.governance.alarms import ALPHA, Alarm, compare
from cds_service.store.report import FindingGroup, figures

FORMATS = ("html", "csv", "json")
METHOD = (
    "Alarms compare a finding's cards per hook call between two consecutive months under one pack "
    "version, and between a pack version and the one that replaced it, with the conditional test for "
    "two Poisson rates (Przyborowski & Wilenski, Biometrika 1940; Krishnamoorthy & Thomson, J Stat Plan "
    f"Inference 2004), raising an alarm at p < {ALPHA}. Percentiles are nearest-rank."
)


@dataclass
class Report:
    """The report's content, ready for any format."""

    period: dict[str, Any]
    calls: list[dict[str, Any]]
    rows: list[dict[str, Any]]
    alarms: list[Alarm] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"period": self.period, "method": METHOD, "calls": self.calls, "findings": self.rows,
                "alarms": [a.as_dict() for a in self.alarms]}


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def build_report(store: Any, since: datetime, until: datetime, *, retention_days: int | None = None,
                 now: datetime | None = None) -> Report:
    """The report over [since, until) from ``store``'s database."""
    store.flush_journal()
    fig = figures(store.engine, since, until)
    first, last = store.coverage()
    pack_first: dict[str, datetime] = {}
    for (_month, pack), group in fig.calls.items():
        if group.first_call is not None and (pack not in pack_first or group.first_call < pack_first[pack]):
            pack_first[pack] = group.first_call
    order = {pack: i for i, pack in enumerate(sorted(pack_first, key=lambda p: (pack_first[p], p)))}
    groups = sorted(fig.calls, key=lambda key: (key[0], order.get(key[1], 0)))
    all_findings = sorted({finding for (_m, _p, finding) in fig.findings})
    calls = []
    for month, pack in groups:
        group = fig.calls[(month, pack)]
        calls.append({"month": month, "pack_version": pack, "calls": group.calls, "errors": group.errors,
                      "p50_ms": group.p50_ms, "p99_ms": group.p99_ms})
    rows = []
    empty = None
    for month, pack in groups:
        group = fig.calls[(month, pack)]
        for finding in all_findings:
            got = fig.findings.get((month, pack, finding))
            if got is None:
                empty = empty or FindingGroup()
                got = empty
            rows.append({
                "month": month, "pack_version": pack, "finding": finding, "calls": group.calls,
                "cards": got.cards,
                "rate_per_1000": round(1000 * got.cards / group.calls, 3) if group.calls else None,
                "accepted": got.accepted, "accepted_by_suggestion": dict(sorted(got.accepted_by_suggestion.items())),
                "overridden": got.overridden, "overridden_by_reason": dict(sorted(got.overridden_by_reason.items())),
                "no_feedback": got.no_feedback, "suppressed": got.suppressed,
                "undetermined": got.undetermined,
                "undetermined_by_missing": dict(sorted(got.undetermined_by_missing.items())),
                "p50_ms": group.p50_ms, "p99_ms": group.p99_ms, "errors": group.errors,
            })
    for (month, pack, finding) in fig.findings:  # findings of months without a recorded call
        if (month, pack) not in fig.calls:
            got = fig.findings[(month, pack, finding)]
            rows.append({"month": month, "pack_version": pack, "finding": finding, "calls": 0,
                         "cards": got.cards, "rate_per_1000": None, "accepted": got.accepted,
                         "accepted_by_suggestion": got.accepted_by_suggestion, "overridden": got.overridden,
                         "overridden_by_reason": got.overridden_by_reason, "no_feedback": got.no_feedback,
                         "suppressed": got.suppressed, "undetermined": got.undetermined,
                         "undetermined_by_missing": got.undetermined_by_missing,
                         "p50_ms": None, "p99_ms": None, "errors": 0})
    period = {
        "since": _iso(since), "until": _iso(until),
        "data_from": _iso(first), "data_to": _iso(last),
        "retention_days": retention_days,
        "generated_at": _iso(now or datetime.now(UTC)),
        "note": ("rows older than retention.days are purged, so the period is covered only from "
                 f"{_iso(first)}" if retention_days else "nothing is purged (retention.days unset)"),
    }
    return Report(period, calls, rows, _alarms(rows, order))


def _alarms(rows: list[dict[str, Any]], order: dict[str, int]) -> list[Alarm]:
    """Month-to-month changes under one pack, and pack-to-pack changes, per finding."""
    alarms: list[Alarm] = []
    by_finding: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row["calls"]:
            by_finding.setdefault(row["finding"], []).append(row)
    for finding, found in sorted(by_finding.items()):
        packs: dict[str, dict[str, Any]] = {}
        for row in found:
            total = packs.setdefault(row["pack_version"], {"pack_version": row["pack_version"], "cards": 0, "calls": 0})
            total["cards"] += row["cards"]
            total["calls"] += row["calls"]
        ordered = sorted(packs.values(), key=lambda p: order.get(p["pack_version"], 0))
        for before, after in zip(ordered, ordered[1:]):
            alarm = compare(finding, "pack", before, after)
            if alarm is not None:
                alarms.append(alarm)
        for pack in packs:
            months = sorted((r for r in found if r["pack_version"] == pack), key=lambda r: r["month"])
            for a, b in zip(months, months[1:]):
                alarm = compare(finding, "month", _point(a), _point(b))
                if alarm is not None:
                    alarms.append(alarm)
    return alarms


def _point(row: dict[str, Any]) -> dict[str, Any]:
    return {"month": row["month"], "pack_version": row["pack_version"], "cards": row["cards"], "calls": row["calls"]}


# -- rendering ------------------------------------------------------------------------------


def render(report: Report, fmt: str) -> str:
    """The report as ``json``, ``csv`` or ``html`` text."""
    if fmt == "json":
        return json.dumps(report.as_dict(), indent=2, sort_keys=False) + "\n"
    if fmt == "csv":
        return _csv(report)
    if fmt == "html":
        return _html(report)
    raise ValueError(f"unknown report format {fmt!r}; use one of {', '.join(FORMATS)}")


CSV_COLUMNS = ["month", "pack_version", "finding", "calls", "cards", "rate_per_1000", "accepted",
               "accepted_by_suggestion", "overridden", "overridden_by_reason", "no_feedback", "suppressed",
               "undetermined", "undetermined_by_missing", "p50_ms", "p99_ms", "errors"]


def _flat(value: Any) -> Any:
    if isinstance(value, dict):
        return ";".join(f"{k}={v}" for k, v in value.items())
    return "" if value is None else value


def _csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in report.rows:
        writer.writerow([_flat(row[c]) for c in CSV_COLUMNS])
    return out.getvalue()


def _svg(figure: Any) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buffer.getvalue()
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.DOTALL)  # (RDF naming the tool)
    return text[text.index("<svg"):]


def _plots(report: Report) -> list[tuple[str, str]]:
    """(title, inline SVG) of each trend: card rate per finding, and response times. One line
    per finding across months; a dotted vertical line marks the month a pack version began."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    matplotlib.rcParams["svg.fonttype"] = "none"
    plots = []
    months = sorted({c["month"] for c in report.calls})
    findings = sorted({r["finding"] for r in report.rows})
    starts: dict[str, str] = {}
    for c in report.calls:
        starts.setdefault(c["pack_version"], c["month"])

    def frame(axes, ylabel: str) -> None:
        for n, (pack, month) in enumerate(starts.items()):
            if n:
                axes.axvline(months.index(month) - 0.5, color="#888", linestyle=":", linewidth=1)
                axes.annotate(pack, (months.index(month) - 0.45, 1.0), xycoords=("data", "axes fraction"),
                              fontsize=7, va="top", color="#555")
        axes.set_xticks(range(len(months)), months, rotation=45, ha="right")
        axes.set_ylabel(ylabel)
        axes.set_ylim(bottom=0)
        axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        axes.grid(alpha=0.3)

    if months and findings:
        figure, axes = plt.subplots(figsize=(8, 3.6))
        for finding in findings:
            by_month: dict[str, list[int]] = {}
            for r in report.rows:
                if r["finding"] == finding and r["calls"]:
                    cards_calls = by_month.setdefault(r["month"], [0, 0])
                    cards_calls[0] += r["cards"]
                    cards_calls[1] += r["calls"]
            points = sorted((months.index(m), 1000 * k / n) for m, (k, n) in by_month.items() if m in months)
            if points:
                axes.plot([x for x, _ in points], [y for _, y in points], marker="o", label=finding)
        frame(axes, "cards per 1,000 calls")
        plots.append(("Cards per 1,000 hook calls, by finding (dotted: a new pack version)", _svg(figure)))
        plt.close(figure)
    timed = sorted((months.index(c["month"]), c) for c in report.calls if c["p50_ms"] is not None)
    if timed:
        figure, axes = plt.subplots(figsize=(8, 3.0))
        axes.plot([x for x, _ in timed], [c["p50_ms"] for _, c in timed], marker="o", label="p50")
        axes.plot([x for x, _ in timed], [c["p99_ms"] for _, c in timed], marker="s", linestyle="--", label="p99")
        frame(axes, "ms")
        plots.append(("Response time of hook calls (p50, p99)", _svg(figure)))
        plt.close(figure)
    return plots


def _html(report: Report) -> str:
    e = html.escape
    period = report.period
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>CDS governance report</title><style>",
        "body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;font-size:.85em}",
        "td,th{border:1px solid #ccc;padding:.25em .5em;text-align:right}th{background:#f4f4f4}",
        "td.t{text-align:left}.alarm{background:#fde8e8;border-left:4px solid #c00;padding:.5em;margin:.3em 0}",
        "figure{margin:1em 0}</style></head><body>",
        "<h1>CDS governance report</h1>",
        f"<p id='period'>Period: {e(str(period['since']))} to {e(str(period['until']))} (until excluded). "
        f"Data held from {e(str(period['data_from']))} to {e(str(period['data_to']))}; "
        f"{e(period['note'])}. Generated {e(str(period['generated_at']))}.</p>",
        "<h2>Alarms</h2>",
    ]
    if report.alarms:
        parts += [f"<div class='alarm' data-kind='{e(a.kind)}'>{e(a.message)}</div>" for a in report.alarms]
    else:
        parts.append("<p>No alarm.</p>")
    parts.append(f"<p><small>{e(METHOD)}</small></p><h2>Trends</h2>")
    for title, svg in _plots(report):
        parts.append(f"<figure class='plot'><figcaption>{e(title)}</figcaption>{svg}</figure>")
    parts.append("<h2>Per finding, pack version and month</h2><table id='findings'><tr>")
    parts += [f"<th>{e(c.replace('_', ' '))}</th>" for c in CSV_COLUMNS]
    parts.append("</tr>")
    for row in report.rows:
        cells = [f"<td class='t'>{e(str(_flat(row[c])))}</td>" if c in ("month", "pack_version", "finding")
                 or isinstance(row[c], dict) else f"<td>{e(str(_flat(row[c])))}</td>" for c in CSV_COLUMNS]
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</table><h2>Hook calls</h2><table id='calls'><tr><th>month</th><th>pack version</th>"
                 "<th>calls</th><th>errors</th><th>p50 ms</th><th>p99 ms</th></tr>")
    for c in report.calls:
        parts.append(f"<tr><td class='t'>{e(c['month'])}</td><td class='t'>{e(c['pack_version'])}</td>"
                     f"<td>{c['calls']}</td><td>{c['errors']}</td><td>{_flat(c['p50_ms'])}</td><td>{_flat(c['p99_ms'])}</td></tr>")
    parts.append("</table></body></html>\n")
    return "".join(parts)
