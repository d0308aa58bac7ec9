"""One bucket of patients through the service's own path (pipeline.evaluate_resources) → worklist rows.

A bucket is read in patient order, one patient's resources at a time, so memory follows the
bucket, never the export. Nothing here decides a finding: the rows only report what the engine made."""

from __future__ import annotations

import hashlib
import itertools
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

import hooks as hook_registry
from cds_service.config import load_config
from cds_service.engine import EngineSettings, load_ruleset
from cds_service.pipeline import evaluate_resources

HOOK = "patient-view"
#: the user a population run acts as, in the hook context (no person opened a chart)
USER = "Device/sarcopenia-cds-screen"

COLUMNS = pa.schema([
    ("patient_id", pa.string()),
    ("finding", pa.string()),
    ("finding_display", pa.string()),
    ("primary_finding", pa.string()),
    ("indicator", pa.string()),
    ("deciding_values", pa.string()),
    ("suggested_actions", pa.string()),
    ("suggestion_keys", pa.string()),
    ("cancer_code", pa.string()),
    ("cancer_site", pa.string()),
    ("sex", pa.string()),
    ("age", pa.int32()),
    ("weight_loss_pct", pa.float64()),
    ("evidence_json", pa.string()),
    ("suggestions_json", pa.string()),
    ("pack_version", pa.string()),
    ("profile", pa.string()),
    ("ct_cutoffs", pa.string()),
    ("evaluated_at", pa.string()),
])


@dataclass
class Engine:
    """The rule packs and settings of a run, loaded once per process (a Dask worker keeps its own)."""

    ruleset: Any
    settings: EngineSettings
    config: dict[str, Any]

    @property
    def pack_digest(self) -> str:
        """Version and content of the pack files: a changed pack re-runs every bucket."""
        digest = hashlib.sha256(self.ruleset.version.encode())
        for name in self.ruleset.files:
            digest.update(Path(name).read_bytes())
        return digest.hexdigest()[:16]


_ENGINES: dict[str, Engine] = {}


def engine_for(overrides: dict[str, Any] | None = None) -> Engine:
    """The service's configuration (file, environment, `overrides`), its packs and its engine settings."""
    from cds_service.app import engine_settings

    key = orjson.dumps(overrides or {}, option=orjson.OPT_SORT_KEYS).decode()
    found = _ENGINES.get(key)
    if found is None:
        config = load_config(overrides=overrides)
        ruleset = load_ruleset(config["rules"]["paths"] or None)
        settings = engine_settings(config)
        ruleset.warm(settings)
        found = _ENGINES[key] = Engine(ruleset, settings, config)
        from cds_service.cli import freeze_startup_objects

        freeze_startup_objects()  # as serve does: the packs live as long as the process, out of the collector's way
    return found


@dataclass
class BucketResult:
    """What one bucket gave: counts, rows written, problems (file-free: patient and reason)."""

    bucket: int
    patients: int = 0
    resources: int = 0
    rows: int = 0
    findings: dict[str, int] = field(default_factory=dict)
    problems: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"bucket": self.bucket, "patients": self.patients, "resources": self.resources, "rows": self.rows,
                "findings": self.findings, "problems": self.problems, "seconds": round(self.seconds, 3)}


def _age(birth: Any, now: datetime) -> int | None:
    try:
        born = date.fromisoformat(str(birth)[:10])
    except ValueError:
        return None
    today = now.date()
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def _deciding(evidence: list[dict[str, Any]], facts: dict[str, Any]) -> str:
    """The evidence as one readable line: values (at their facts' precision) with units and dates,
    and the cut-offs applied."""
    parts = []
    for item in evidence:
        if "parameter" in item:
            parts.append(f"{item['parameter']} {item.get('comparison', '')} {item.get('unit', '')}".strip()
                         + (f" ({item['source']})" if item.get("source") else ""))
        elif "value" in item:
            value = item["value"]
            fact = facts.get(item.get("fact"))
            if isinstance(value, float) and fact is not None:
                value = round(value, fact.precision)
            unit = f" {item['unit']}" if item.get("unit") else ""
            when = f" ({item['date']})" if item.get("date") else ""
            parts.append(f"{item.get('label') or item.get('fact')}: {value}{unit}{when}")
        elif item.get("count"):
            parts.append(f"{item.get('label') or item.get('fact')} ×{item['count']}")
        elif item.get("label"):
            parts.append(f"{item['label']}: none")
    return "; ".join(parts)


def _references(evidence: list[dict[str, Any]]) -> list[str]:
    refs: list[str] = []
    for item in evidence:
        if isinstance(item.get("resource"), str):
            refs.append(item["resource"])
        refs.extend(r for r in item.get("resources") or () if isinstance(r, str))
    return refs


def _cancer(findings: list[Any], by_ref: dict[str, dict[str, Any]]) -> tuple[str | None, str | None]:
    """The diagnosis the findings' evidence names (the Condition the rules counted as active cancer)."""
    for finding in findings:
        for ref in _references(finding.evidence):
            condition = by_ref.get(ref)
            if condition is None or condition.get("resourceType") != "Condition":
                continue
            for coding in (condition.get("code") or {}).get("coding") or ():
                if coding.get("code"):
                    return str(coding["code"]), coding.get("display") or (condition.get("code") or {}).get("text")
    return None, None


def _percent(evidence: list[dict[str, Any]]) -> float | None:
    for item in evidence:
        if item.get("unit") == "%" and isinstance(item.get("value"), int | float) and "parameter" not in item:
            return float(item["value"])
    return None


def patient_rows(
    pid: str, resources: list[dict[str, Any]], engine: Engine, now: datetime, problems: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """Evaluate one patient as a patient-view call with these resources as prefetch; one row per finding."""
    hook = hook_registry.HOOKS[HOOK]
    context = {"userId": USER, "patientId": pid}
    checked = evaluate_resources(resources, hook=hook, context=context, ruleset=engine.ruleset,
                                 engine_settings=engine.settings, now=now)
    for item in checked.invalid:
        problems.append({"patient_id": pid, "kind": "invalid resource (FHIR R4 model)", "reason": f"invalid {item['reference']}: {'; '.join(item['problems'][:3])}"})
    for note in checked.lenient:
        problems.append({"patient_id": pid, "kind": "resource read leniently", "reason": note.message()})
    evaluation = checked.evaluation
    for error in evaluation.errors:
        problems.append({"patient_id": pid, "kind": "rule failed on this patient's data", "reason": f"rule {error['rule']} skipped: {error['error']}"})
    if not evaluation.findings:
        return []
    by_ref = {f"{r.get('resourceType')}/{r.get('id')}": r for r in resources}
    patient = next((r for r in resources if r.get("resourceType") == "Patient"), {})
    cards = {card.get("uuid"): card for card in evaluation.cards}
    covering: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for sent in evaluation.sent:
        card = cards.get(sent["uuid"], {})
        for code in sent["findings"]:
            covering.setdefault(code, []).append((sent, card))
    cancer_code, cancer_site = _cancer(evaluation.findings, by_ref)
    loss = next((v for v in (_percent(f.evidence) for f in evaluation.findings) if v is not None), None)
    s = engine.settings
    rows = []
    for finding in evaluation.findings:
        suggestions: list[dict[str, Any]] = []
        primary, indicator = None, None
        for sent, card in covering.get(finding.code, ()):
            primary = primary or sent["primary"]
            indicator = indicator or card.get("indicator")
            for suggestion in card.get("suggestions") or ():
                key = sent["suggestions"].get(suggestion.get("uuid"))
                if key and all(key != seen["key"] for seen in suggestions):
                    suggestions.append({"key": key, "label": suggestion.get("label"),
                                        "actions": suggestion.get("actions") or []})
        rows.append({
            "patient_id": pid,
            "finding": finding.code,
            "finding_display": finding.display,
            "primary_finding": primary,
            "indicator": indicator,
            "deciding_values": _deciding(finding.evidence, engine.ruleset.facts),
            "suggested_actions": " | ".join(str(x["label"]) for x in suggestions),
            "suggestion_keys": " ".join(x["key"] for x in suggestions),
            "cancer_code": cancer_code,
            "cancer_site": cancer_site,
            "sex": patient.get("gender"),
            "age": _age(patient.get("birthDate"), now),
            "weight_loss_pct": loss,
            "evidence_json": orjson.dumps(finding.evidence).decode(),
            "suggestions_json": orjson.dumps(suggestions).decode(),
            "pack_version": engine.ruleset.version,
            "profile": s.profile,
            "ct_cutoffs": s.ct_cutoffs or engine.ruleset.default_ct_cutoffs(s.profile),
            "evaluated_at": now.isoformat(),
        })
    return rows


def patients_of(bucket_dir: Path, con: duckdb.DuckDBPyConnection, batch: int = 20_000):
    """(patient id, its resources in file order, where its first line is) for each patient of a bucket."""
    pattern = str(bucket_dir / "*.parquet").replace("'", "''")
    reader = con.sql(
        f"SELECT patient_id, file, line, rtype, j FROM read_parquet('{pattern}') ORDER BY patient_id, file, line"
    ).to_arrow_reader(batch)

    def rows():
        for record_batch in reader:
            columns = record_batch.to_pydict()
            yield from zip(columns["patient_id"], columns["file"], columns["line"], columns["rtype"], columns["j"],
                           strict=True)

    for pid, group in itertools.groupby(rows(), key=lambda r: r[0]):
        yield pid, list(group)


def evaluate_bucket(
    bucket_dir: Path, result: Path, engine: Engine, now: datetime, on_patients: Any = None,
) -> BucketResult:
    """Evaluate every patient of one bucket; write its rows to `result` (Parquet) and return the counts."""
    started = time.perf_counter()
    out = BucketResult(int(bucket_dir.name.split("=", 1)[1]))
    rows: list[dict[str, Any]] = []
    con = duckdb.connect()
    con.execute("SET threads = 1")
    pending = 0
    for pid, lines in patients_of(bucket_dir, con):
        resources = [orjson.loads(j) for *_, j in lines]
        patients = [r for r in resources if r.get("resourceType") == "Patient"]
        if not patients:
            out.problems.append({"patient_id": pid, "file_index": lines[0][1], "line": lines[0][2],
                                 "kind": "no Patient resource for the patient referred to",
                                 "reason": f"{len(lines)} resource(s) refer to a patient with no Patient resource "
                                           "in the export; not evaluated (the service answers 412 without it)"})
            continue
        if len(patients) > 1:
            out.problems.append({"patient_id": pid, "kind": "duplicate Patient resource",
                                 "reason": f"{len(patients)} Patient resources with this id; "
                                 "the first in the export was used"})
            first = patients[0]
            resources = [r for r in resources if r.get("resourceType") != "Patient" or r is first]
        out.patients += 1
        out.resources += len(resources)
        made = patient_rows(pid, resources, engine, now, out.problems)
        for row in made:
            out.findings[row["finding"]] = out.findings.get(row["finding"], 0) + 1
        rows.extend(made)
        pending += 1
        if on_patients is not None and pending >= 200:
            on_patients(pending)
            pending = 0
    if on_patients is not None and pending:
        on_patients(pending)
    con.close()
    table = pa.Table.from_pylist(rows, schema=COLUMNS)
    tmp = result.with_suffix(".tmp")
    pq.write_table(table, tmp)
    tmp.replace(result)
    out.rows = len(rows)
    out.seconds = time.perf_counter() - started
    return out
