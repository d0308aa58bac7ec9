"""summary.html: counts per finding and per cancer site, findings by age band, weight-loss distribution.

Rendered offline: matplotlib draws SVG that is embedded in the page (no script, no CDN). The page
holds counts only, never a patient id; the worklist beside it holds those."""

from __future__ import annotations

import html
import io
import os
from pathlib import Path
from typing import Any

import duckdb

from cds_service.population.worklist import private_files

#: display bands for the age plot (a summary's grouping, not a clinical criterion)
AGE_BANDS = ((0, 50, "< 50"), (50, 60, "50–59"), (60, 70, "60–69"), (70, 80, "70–79"), (80, 200, "≥ 80"))


def _svg(figure: Any) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.find("<svg"):]


def _age_plot(rows: list[tuple[str, int | None]], findings: list[str]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [band[2] for band in AGE_BANDS]
    figure, axis = plt.subplots(figsize=(9, 4.2))
    bottoms = [0] * len(AGE_BANDS)
    palette = plt.get_cmap("tab20").colors  # one colour per finding (tab10 repeats after ten)
    for index, finding in enumerate(findings):
        counts = [sum(1 for f, age in rows if f == finding and age is not None and lo <= age < hi)
                  for lo, hi, _ in AGE_BANDS]
        axis.bar(labels, counts, bottom=bottoms, label=finding, color=palette[index % len(palette)])
        bottoms = [b + c for b, c in zip(bottoms, counts, strict=True)]
    axis.set_xlabel("age band (years)")
    axis.set_ylabel("patients with the finding")
    axis.set_title("Findings by age band")
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    svg = _svg(figure)
    plt.close(figure)
    return svg


def _loss_plot(losses: list[float]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 3.6))
    axis.hist(losses, bins=30, color="#7a4b9c")
    axis.set_xlabel("weight loss over the packs' reference period (%), from the findings' evidence")
    axis.set_ylabel("patients")
    axis.set_title(f"Weight-loss distribution ({len(losses)} patients)")
    svg = _svg(figure)
    plt.close(figure)
    return svg


def _table(headers: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_summary(worklist: Path, path: Path, report: Any) -> None:
    """The HTML summary of one run (mode 0600 like the worklist: it describes the same patients)."""
    con = duckdb.connect()
    src = str(worklist).replace("'", "''")
    con.execute(f"CREATE VIEW w AS SELECT * FROM read_parquet('{src}')")
    per_finding = con.execute(
        "SELECT finding, any_value(finding_display), count(DISTINCT patient_id) FROM w GROUP BY finding "
        "ORDER BY 3 DESC, 1").fetchall()
    per_site = con.execute(
        "SELECT coalesce(cancer_site, '(not named in the evidence)'), coalesce(cancer_code, ''), "
        "count(DISTINCT patient_id), count(*) FROM w GROUP BY 1, 2 ORDER BY 3 DESC, 1").fetchall()
    by_age = con.execute("SELECT finding, age FROM w").fetchall()
    losses = [r[0] for r in con.execute(
        "SELECT any_value(weight_loss_pct) FROM w WHERE weight_loss_pct IS NOT NULL GROUP BY patient_id").fetchall()]
    patients_listed = con.execute("SELECT count(DISTINCT patient_id) FROM w").fetchone()[0]
    con.close()
    findings = [row[0] for row in per_finding]
    age_svg = _age_plot(by_age, findings) if by_age else "<p>No findings.</p>"
    loss_svg = _loss_plot(losses) if losses else "<p>No finding's evidence carried a weight loss.</p>"
    problems = sorted(report.problem_counts.items(), key=lambda kv: -kv[1])
    not_read = sorted(report.not_read.items(), key=lambda kv: -kv[1])
    rate = report.patients / report.seconds["evaluate"] if report.seconds.get("evaluate") else 0
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sarcopenia screening summary</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; max-width: 1100px; }}
table {{ border-collapse: collapse; margin: .5rem 0 1.5rem; }}
th, td {{ border: 1px solid #ccc; padding: .25rem .6rem; text-align: left; }}
th {{ background: #f3f0f7; }} .note {{ color: #555; font-size: .9rem; }}
</style></head><body>
<h1>Sarcopenia screening summary</h1>
<p>Evaluated at {html.escape(report.now.isoformat())} with rule packs <code>{html.escape(report.pack_version)}</code>:
{report.patients:,} patients, {report.resources:,} resources the packs read, {report.rows:,} worklist rows
for {patients_listed:,} patients. {report.buckets} buckets ({report.buckets_skipped} already done and skipped);
{rate:,.0f} patients/s in the evaluation, {report.seconds.get('total', 0):,.1f} s in all.</p>
<p class="note">The worklist (worklist.csv, worklist.parquet) beside this page lists real patient ids; it is
readable by its owner only. This page shows counts only.</p>
<h2>Patients per finding</h2>
{_table(("finding", "display", "patients"), per_finding)}
<h2>Per cancer site</h2>
<p class="note">The diagnosis the findings' evidence names as the active cancer.</p>
{_table(("cancer site", "code", "patients", "worklist rows"), per_site)}
<h2>Findings by age band</h2>
{age_svg}
<h2>Weight loss</h2>
{loss_svg}
<h2>Input set aside</h2>
<p class="note">Every line not evaluated, by reason; problems.csv lists each with file and line.</p>
{_table(("reason", "count"), problems) if problems else "<p>None.</p>"}
<h2>Resource types the packs do not read</h2>
{_table(("resource type", "lines"), not_read) if not_read else "<p>None.</p>"}
</body></html>
"""
    with private_files():
        path.write_text(page, encoding="utf-8")
    os.chmod(path, 0o600)
