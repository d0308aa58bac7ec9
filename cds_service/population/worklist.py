"""The outputs that hold patient ids: worklist CSV + Parquet, problems CSV, the Task Bundle — all 0600."""

from __future__ import annotations

import contextlib
import csv
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import orjson

#: worklist columns written to the CSV (the Parquet file has every column)
CSV_COLUMNS = ("patient_id", "finding", "finding_display", "primary_finding", "indicator", "deciding_values",
               "suggested_actions", "suggestion_keys", "cancer_code", "cancer_site", "sex", "age",
               "weight_loss_pct", "pack_version", "profile", "ct_cutoffs", "evaluated_at")
TASK_NAMESPACE = uuid.UUID("8d0c6a2e-3f4b-4c55-9a3e-2b6f3c1d7e10")


@contextlib.contextmanager
def private_files() -> Iterator[None]:
    """Files created inside are readable by their owner only (umask 077), from their first byte."""
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def make_private_dir(path: Path) -> Path:
    with private_files():
        path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def write_worklist(results: Path, out: Path) -> int:
    """Merge the buckets' rows (results/*.parquet) into out/worklist.parquet and out/worklist.csv."""
    parquet, text = out / "worklist.parquet", out / "worklist.csv"
    con = duckdb.connect()
    source = str(results / "bucket-*.parquet").replace("'", "''")
    with private_files():
        con.execute(f"CREATE VIEW rows AS SELECT * FROM read_parquet('{source}') ORDER BY patient_id, finding")
        con.execute(f"COPY (SELECT * FROM rows) TO '{_q(parquet)}' (FORMAT parquet, COMPRESSION zstd)")
        columns = ", ".join(CSV_COLUMNS)
        con.execute(f"COPY (SELECT {columns} FROM rows) TO '{_q(text)}' (FORMAT csv, HEADER true)")
    count = con.execute("SELECT count(*) FROM rows").fetchone()[0]
    con.close()
    for path in (parquet, text):
        os.chmod(path, 0o600)
    return int(count)


def _q(path: Path) -> str:
    return str(path).replace("'", "''")


def write_problems(problems: list[dict[str, Any]], path: Path) -> None:
    """Every line, file or patient set aside, with why (file, line, patient_id, reason)."""
    with private_files(), path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=("file", "line", "patient_id", "reason"))
        writer.writeheader()
        for item in problems:
            writer.writerow({k: item.get(k) for k in ("file", "line", "patient_id", "reason")})
    os.chmod(path, 0o600)


def task_bundle(worklist: Path, path: Path, now_iso: str, finding_system: str) -> int:
    """A FHIR transaction Bundle of Task resources: one per patient and suggested referral.

    Each Task (status requested, intent proposal) carries the referral the packs suggested as a
    contained draft ServiceRequest, the finding as reasonCode and the deciding values as a note.
    Ids are derived from patient, suggestion and run time, so posting the same run twice with
    conditional create (ifNoneExist on the identifier) does not duplicate Tasks."""
    con = duckdb.connect()
    rows = con.execute(
        f"SELECT patient_id, finding, finding_display, deciding_values, suggestions_json, pack_version "
        f"FROM read_parquet('{_q(worklist)}') WHERE suggestion_keys <> '' ORDER BY patient_id, finding"
    ).fetchall()
    con.close()
    entries: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for pid, finding, display, deciding, suggestions_json, pack_version in rows:
        for suggestion in orjson.loads(suggestions_json):
            key = suggestion["key"]
            if (pid, key) in seen:
                continue
            seen.add((pid, key))
            request = next((a.get("resource") for a in suggestion.get("actions") or ()
                            if isinstance(a.get("resource"), dict)
                            and a["resource"].get("resourceType") == "ServiceRequest"), None)
            if request is None:
                continue
            ident = str(uuid.uuid5(TASK_NAMESPACE, f"{pid}|{key}|{now_iso}"))
            contained = {**request, "id": "referral"}
            task: dict[str, Any] = {
                "resourceType": "Task",
                "identifier": [{"system": "urn:sarcopenia-cds:screen", "value": ident}],
                "status": "requested",
                "intent": "proposal",
                "priority": "routine",
                "description": str(suggestion.get("label") or key),
                "for": {"reference": f"Patient/{pid}"},
                "authoredOn": now_iso,
                "contained": [contained],
                "focus": {"reference": "#referral"},
                "reasonCode": {"coding": [{"system": finding_system,
                                           "code": finding, "display": display}]},
                "note": [{"text": f"{deciding} (rule packs {pack_version})"}],
            }
            entries.append({
                "fullUrl": f"urn:uuid:{ident}",
                "resource": task,
                "request": {"method": "POST", "url": "Task",
                            "ifNoneExist": f"identifier=urn:sarcopenia-cds:screen|{ident}"},
            })
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    with private_files():
        path.write_bytes(orjson.dumps(bundle, option=orjson.OPT_INDENT_2))
    os.chmod(path, 0o600)
    return len(entries)
