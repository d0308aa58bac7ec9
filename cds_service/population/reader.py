"""NDJSON export → patient buckets, with DuckDB: keep what the rules read, count every line set aside.

Each line of each file is classified once: a resource the packs read (kept, bucketed by a hash of
its patient id), a resource the packs do not read (counted by type), or a problem (malformed
JSON, not a resource, no patient reference, an unknown resource type, a file that is not NDJSON)
reported by file, line and reason. The resource types and codes read are the ones the packs'
patient-view prefetch asks an EHR for (RuleSet.prefetch_templates), the service's own request."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import duckdb
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.resource import Resource

from cds_service.pipeline import template_type

#: File names a Bulk Data export writes (``Observation.ndjson``, ``Observation.003.ndjson.gz`` …).
SUFFIXES = (".ndjson", ".ndjson.gz", ".jsonl", ".jsonl.gz")
HOOK = "patient-view"
#: how many example lines are kept per (file, reason); the rest are counted
EXAMPLES_PER_REASON = 20

_REASONS = {
    "malformed": "malformed JSON",
    "not-object": "not a JSON object",
    "no-type": "no resourceType",
    "no-patient": "no patient reference (subject / patient) or Patient.id",
}


@dataclass(frozen=True)
class ReadPlan:
    """What the packs read: resource types, and per type the codes asked for (None: any code)."""

    types: frozenset[str]
    codes: dict[str, tuple[str, ...] | None]

    @classmethod
    def of(cls, ruleset: Any, hook: str = HOOK) -> ReadPlan:
        """The plan from the hook's prefetch templates (the request the service makes of an EHR)."""
        codes: dict[str, tuple[str, ...] | None] = {}
        for template in ruleset.prefetch_templates(hook).values():
            kind = template_type(template)
            query = parse_qs(template.split("?", 1)[1]) if "?" in template else {}
            asked = [c for value in query.get("code", []) for c in value.split(",") if c]
            codes[kind] = tuple(sorted(asked)) if asked else None
        return cls(frozenset(codes), codes)

    def digest(self) -> str:
        return hashlib.sha256(repr(sorted((k, v) for k, v in self.codes.items())).encode()).hexdigest()[:16]


@dataclass
class Problem:
    """One line (or file, line None) set aside, and why."""

    file: str
    line: int | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "reason": self.reason}


@dataclass
class ReadStats:
    """What partitioning read, kept and set aside."""

    files: int = 0
    lines: int = 0
    kept: int = 0
    patients: int = 0
    not_read: dict[str, int] = field(default_factory=dict)  # resource type → lines the packs do not read
    problems: list[Problem] = field(default_factory=list)
    problem_counts: dict[str, int] = field(default_factory=dict)  # reason → count

    def add_problem(self, file: str, line: int | None, reason: str, count: int = 1, examples: Iterable[int] = ()) -> None:
        self.problem_counts[reason] = self.problem_counts.get(reason, 0) + count
        shown = list(examples)[:EXAMPLES_PER_REASON] if line is None and examples else [line]
        for item in shown:
            self.problems.append(Problem(file, item, reason))
        if count > len(shown):
            self.problems.append(Problem(file, None, f"{reason}: {count - len(shown)} more line(s) of this file"))

    def as_dict(self) -> dict[str, Any]:
        return {
            "files": self.files, "lines": self.lines, "kept": self.kept, "patients": self.patients,
            "not_read": self.not_read, "problem_counts": self.problem_counts,
            "problems": [p.as_dict() for p in self.problems],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReadStats:
        stats = cls(data["files"], data["lines"], data["kept"], data["patients"], dict(data["not_read"]))
        stats.problems = [Problem(**p) for p in data["problems"]]
        stats.problem_counts = dict(data["problem_counts"])
        return stats


def input_files(folder: Path, stats: ReadStats) -> list[Path]:
    """The export's NDJSON files, by name; any other file is reported (hidden files are the tools' own)."""
    found: list[Path] = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_file() and path.name.endswith(SUFFIXES):
            found.append(path)
        elif path.is_file():
            stats.add_problem(path.name, None, "not an NDJSON file (name does not end in .ndjson or .ndjson.gz); not read")
    return found


def fingerprint(files: list[Path]) -> str:
    """Names, sizes and modification times of the input files: changes when the export does."""
    digest = hashlib.sha256()
    for path in files:
        info = path.stat()
        digest.update(f"{path.name}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def is_resource_type(name: str) -> bool:
    """Whether `name` is a FHIR R4 resource type (fhir.resources R4B models)."""
    try:
        model = get_fhir_model_class(name)
    except (KeyError, ValueError):
        return False
    return issubclass(model, Resource)  # a data type (HumanName, Reference …) is not a resource


def connect(work: Path, memory_limit: str = "1GB", threads: int = 2) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection that spills to `work` instead of growing past `memory_limit`."""
    con = duckdb.connect()
    tmp = work / "duckdb-tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute(f"SET threads = {int(threads)}")
    con.execute(f"SET temp_directory = '{_sql_text(str(tmp))}'")
    con.execute("SET preserve_insertion_order = true")
    return con


def _sql_text(text: str) -> str:
    return text.replace("'", "''")


def _classify_sql(path: Path, plan: ReadPlan, n_buckets: int, file_index: int) -> str:
    kinds = ", ".join(f"'{_sql_text(k)}'" for k in sorted(plan.types))
    code_tests = []
    for kind, codes in sorted(plan.codes.items()):
        if codes:
            listed = ", ".join(f"'{_sql_text(c)}'" for c in codes)
            code_tests.append(
                f"(rtype = '{_sql_text(kind)}' AND NOT list_has_any(list_transform("
                f"coalesce(json_extract(j, '$.code.coding[*]'), []::JSON[]), "
                f"lambda x: coalesce(x->>'system', '') || '|' || coalesce(x->>'code', '')), [{listed}]))"
            )
    code_miss = " OR ".join(code_tests) or "false"
    source = (
        f"read_csv('{_sql_text(str(path))}', columns = {{'j': 'VARCHAR'}}, header = false, delim = '\\x01', "
        f"quote = '', escape = '', auto_detect = false, compression = 'auto', max_line_size = 16777216, buffer_size = 33554432, "
        f"strict_mode = false)"
    )
    return f"""
        WITH l AS (SELECT row_number() OVER () AS line, j FROM {source}),
        c AS (
            SELECT line, j, CASE
                WHEN j IS NULL OR trim(j) = '' THEN 'blank'
                WHEN NOT json_valid(j) THEN 'malformed'
                WHEN json_type(j) <> 'OBJECT' THEN 'not-object' END AS bad
            FROM l),
        d AS (SELECT line, j, bad, CASE WHEN bad IS NULL THEN j->>'$.resourceType' END AS rtype FROM c),
        e AS (
            SELECT line, j, bad, rtype, CASE
                WHEN rtype = 'Patient' THEN j->>'$.id'
                WHEN rtype IS NOT NULL THEN regexp_extract(
                    coalesce(j->>'$.subject.reference', j->>'$.patient.reference', ''),
                    '(^|/)Patient/([^/]+)', 2) END AS pid
            FROM d),
        f AS (
            SELECT line, j, rtype, nullif(pid, '') AS patient_id, CASE
                WHEN bad IS NOT NULL THEN bad
                WHEN rtype IS NULL OR rtype = '' THEN 'no-type'
                WHEN rtype NOT IN ({kinds}) THEN 'not-read'
                WHEN {code_miss} THEN 'not-read'
                WHEN nullif(pid, '') IS NULL THEN 'no-patient'
                ELSE 'ok' END AS status
            FROM e)
        SELECT CASE WHEN status = 'ok' THEN hash(patient_id) % {int(n_buckets)} ELSE -1 END AS bucket,
               patient_id, {int(file_index)} AS file, line, rtype,
               CASE WHEN status = 'ok' THEN j END AS j, status
        FROM f WHERE status <> 'blank'
    """


def partition(
    files: list[Path], plan: ReadPlan, parts: Path, n_buckets: int, con: duckdb.DuckDBPyConnection,
    stats: ReadStats, on_file: Callable[[Path], None] | None = None,
) -> ReadStats:
    """Write every kept line into parts/bucket=K/ (Parquet), one file at a time; count the rest."""
    parts.mkdir(parents=True, exist_ok=True)
    for index, path in enumerate(files):
        stats.files += 1
        query = _classify_sql(path, plan, n_buckets, index)
        try:
            con.execute(
                f"COPY ({query}) TO '{_sql_text(str(parts))}' (FORMAT parquet, PARTITION_BY (bucket), "
                f"FILENAME_PATTERN 'f{index:05d}_{{i}}', OVERWRITE_OR_IGNORE, COMPRESSION zstd)"
            )
        except duckdb.Error as exc:
            message = str(exc).splitlines()[0][:200]
            at = re.search(r"Error on Line: (\d+)", message)
            if at:  # DuckDB's text reader stopped on bytes that are not UTF-8 text
                stats.add_problem(path.name, int(at.group(1)),
                                  "not NDJSON text (binary or not UTF-8 from this line on); file skipped")
            else:
                stats.add_problem(path.name, None, f"not readable as NDJSON ({message}); file skipped")
            _remove_file_parts(parts, index)
            continue
        if on_file is not None:
            on_file(path)
        _count_file(con, parts, index, path.name, stats)
    return stats


def _remove_file_parts(parts: Path, index: int) -> None:
    for leftover in parts.glob(f"bucket=*/f{index:05d}_*.parquet"):
        leftover.unlink()


def _count_file(con: duckdb.DuckDBPyConnection, parts: Path, index: int, name: str, stats: ReadStats) -> None:
    """Tally one file's lines: kept, not read (by type), problems (by reason, with example lines)."""
    pattern = _sql_text(str(parts / "bucket=*" / f"f{index:05d}_*.parquet"))
    if not list(parts.glob(f"bucket=*/f{index:05d}_*.parquet")):
        stats.add_problem(name, None, "empty file: no resources")
        return
    rows = con.execute(
        f"SELECT status, rtype, count(*), min(line), list(line ORDER BY line)[1:{EXAMPLES_PER_REASON}], "
        f"count(*) FILTER (WHERE rtype = 'Patient') "
        f"FROM read_parquet('{pattern}', hive_partitioning = true) GROUP BY status, rtype ORDER BY status, rtype"
    ).fetchall()
    for status, rtype, count, _first, examples, patients in rows:
        stats.lines += count
        if status == "ok":
            stats.kept += count
            stats.patients += patients
        elif status == "not-read":
            if is_resource_type(rtype):
                stats.not_read[rtype] = stats.not_read.get(rtype, 0) + count
            else:
                stats.add_problem(name, None, f"unknown resource type '{rtype[:60]}'", count, examples)
        else:
            stats.add_problem(name, None, _REASONS.get(status, status), count, examples)
    # what the evaluation needs no longer: lines set aside hold no resource content (j is NULL)
    for leftover in parts.glob(f"bucket=-1/f{index:05d}_*.parquet"):
        leftover.unlink()


def buckets(parts: Path) -> list[int]:
    """The bucket numbers that hold resources."""
    found = []
    for path in parts.glob("bucket=*"):
        number = int(path.name.split("=", 1)[1])
        if number >= 0 and any(path.glob("*.parquet")):
            found.append(number)
    return sorted(found)
