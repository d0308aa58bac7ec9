"""Bad input is counted and reported (file, line, reason), never fatal unless nothing can be read."""

from __future__ import annotations

import csv
import gzip
import stat

import orjson

from cds_service.cli import main
from tests.conftest import NOW
from tests.support.patients import severe_sarcopenia


def _lines(*items) -> bytes:
    return b"".join((item if isinstance(item, bytes) else orjson.dumps(item)) + b"\n" for item in items)


def _problems(out) -> list[dict[str, str]]:
    with (out / "problems.csv").open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_each_bad_line_and_file_is_reported_and_the_rest_is_screened(tmp_path, capsys):
    export, out = tmp_path / "export", tmp_path / "run"
    export.mkdir()
    resources = severe_sarcopenia()
    patient = resources[0]
    others = resources[1:]
    (export / "Patient.ndjson").write_bytes(_lines(patient))
    (export / "Observation.000.ndjson.gz").write_bytes(gzip.compress(_lines(
        *[r for r in others if r["resourceType"] == "Observation"][:3],
        b'{"resourceType": "Observation", "id": "cut-sh',                       # line 4: malformed
        {"resourceType": "Observation", "id": "no-subject", "status": "final",  # line 5: no patient reference
         "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]}},
        b"[1, 2, 3]",                                                           # line 6: not an object
    )))
    (export / "Observation.001.ndjson").write_bytes(_lines(*[r for r in others if r["resourceType"] == "Observation"][3:]))
    (export / "Condition.ndjson").write_bytes(_lines(
        *[r for r in others if r["resourceType"] == "Condition"],
        {"resourceType": "Conditoin", "id": "typo", "subject": {"reference": "Patient/sev-1"}},  # line 2: unknown type
        {"resourceType": "HumanName", "id": "datatype", "subject": {"reference": "Patient/sev-1"}},  # line 3: not a resource
        {"resourceType": "Condition", "id": "orphan", "subject": {"reference": "Patient/nobody"},
         "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "C18.7"}]}},
    ))
    (export / "ImagingStudy.ndjson").write_bytes(_lines(*[r for r in others if r["resourceType"] == "ImagingStudy"]))
    (export / "Encounter.ndjson").write_bytes(_lines({"resourceType": "Encounter", "id": "e1", "status": "finished",
                                                      "subject": {"reference": "Patient/sev-1"}}))
    (export / "Binary.ndjson").write_bytes(bytes(range(256)) * 8)
    (export / "notes.txt").write_text("not an export file\n")

    code = main(["screen", str(export), "--out", str(out), "--now", NOW.isoformat(), "--progress", "none"])
    assert code == 0
    err = capsys.readouterr().err
    assert "WITH REAL PATIENT IDS" in err and "0600" in err

    found = {(p["file"], p["line"], p["reason"]) for p in _problems(out)}
    assert ("Observation.000.ndjson.gz", "4", "malformed JSON") in found
    assert ("Observation.000.ndjson.gz", "5", "no patient reference (subject / patient) or Patient.id") in found
    assert ("Observation.000.ndjson.gz", "6", "not a JSON object") in found
    assert ("Condition.ndjson", "2", "unknown resource type 'Conditoin'") in found
    assert ("Condition.ndjson", "3", "unknown resource type 'HumanName'") in found
    assert ("notes.txt", "", "not an NDJSON file (name does not end in .ndjson or .ndjson.gz); not read") in found
    assert ("Binary.ndjson", "3", "not NDJSON text (binary or not UTF-8 from this line on); file skipped") in found
    orphan = [p for p in _problems(out) if p["patient_id"] == "nobody"]
    assert orphan and orphan[0]["file"] == "Condition.ndjson" and orphan[0]["line"] == "4"
    assert "no Patient resource" in orphan[0]["reason"]
    assert "Encounter 1" in err  # read but not used by the packs: counted, never silently dropped

    rows = list(csv.DictReader((out / "worklist.csv").open(encoding="utf-8")))
    assert {r["patient_id"] for r in rows} == {"sev-1"}
    # severe sarcopenia with cachexia by hand (tests/support/patients.py): grip 14.0 < 16 kg, SMI 35.2 < 41,
    # gait 0.6 ≤ 0.8 m/s, weight 58.0 → 52.0 kg = 10.3 % > 5 %
    assert {"severe-sarcopenia", "cancer-cachexia", "low-skeletal-muscle-index"} <= {r["finding"] for r in rows}
    for name in ("worklist.csv", "worklist.parquet", "problems.csv", "summary.html"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE((out / "work").stat().st_mode) == 0o700


def test_nothing_readable_is_an_error(tmp_path, capsys):
    export = tmp_path / "export"
    export.mkdir()
    (export / "Observation.ndjson").write_bytes(b"garbage\n{oops\n")
    code = main(["screen", str(export), "--out", str(tmp_path / "run"), "--progress", "none"])
    assert code == 1
    assert "nothing could be read" in capsys.readouterr().err
