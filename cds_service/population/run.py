"""A screening run: partition once, evaluate every bucket not yet done (embedded or on Dask), write outputs.

State lives in OUT/work (mode 0700): the buckets, each bucket's rows and its done marker
(the fingerprint of the inputs, the packs and the settings). A re-run with the same inputs,
packs and settings skips every bucket already done; anything else starts those buckets again."""

from __future__ import annotations

import logging
import math
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from cds_service.population import reader, worklist
from cds_service.population.evaluate import BucketResult, Engine, engine_for, evaluate_bucket

log = logging.getLogger("sarcopenia_cds.screen")
#: patients per bucket aimed at: a bucket's resources must fit in memory easily
PATIENTS_PER_BUCKET = 2_000
#: NDJSON bytes per patient assumed when sizing buckets before the export is read (about 1.8 kB in
#: the synthetic export; a real record with years of vital signs is larger, giving smaller buckets)
BYTES_PER_PATIENT = 2_000


@dataclass
class RunOptions:
    """What the operator chose."""

    inputs: Path
    out: Path
    engine: str = "embedded"  # or "dask"
    scheduler: str | None = None
    workers: int = 2  # LocalCluster workers when --engine dask has no scheduler
    buckets: int | None = None
    now: datetime | None = None
    tasks: bool = False
    overrides: dict[str, Any] | None = None
    progress: str = "auto"  # auto | bar | log | none
    memory_limit: str = "1GB"
    extra_problems: list[dict[str, Any]] = field(default_factory=list)  # e.g. export files not downloaded


@dataclass
class RunReport:
    """What a run did, for the final summary and the tests."""

    now: datetime
    patients: int = 0
    resources: int = 0
    rows: int = 0
    buckets: int = 0
    buckets_skipped: int = 0
    findings: dict[str, int] = field(default_factory=dict)
    problems: list[dict[str, Any]] = field(default_factory=list)
    problem_counts: dict[str, int] = field(default_factory=dict)
    not_read: dict[str, int] = field(default_factory=dict)
    read: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    outputs: list[Path] = field(default_factory=list)
    pack_version: str = ""


def _write_json(path: Path, data: Any) -> None:
    with worklist.private_files():
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
        tmp.replace(path)


def _read_json(path: Path) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None


def run_key(input_print: str, engine: Engine, plan: reader.ReadPlan, now: datetime, n_buckets: int) -> str:
    """The fingerprint a done marker must carry: inputs, packs (version and content), settings, date."""
    s = engine.settings
    return "-".join([input_print, engine.pack_digest, plan.digest(), s.profile, str(s.ct_cutoffs), s.locale,
                     now.isoformat(), str(n_buckets)])


class Progress:
    """A rich progress bar on a terminal (patients/s, ETA); a log line every 10 s otherwise."""

    def __init__(self, total: int, mode: str) -> None:
        self.total, self.done, self.started = total, 0, time.perf_counter()
        self.mode = ("bar" if sys.stderr.isatty() else "log") if mode == "auto" else mode
        self.last_log = self.started
        self.notes: dict[str, float] = {}
        self.bar = None
        if self.mode == "bar":
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress as Bar, TaskProgressColumn,
                                       TextColumn, TimeElapsedColumn, TimeRemainingColumn)

            self.bar = Bar(TextColumn("screening"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                           TextColumn("{task.fields[rate]} patients/s"), TimeElapsedColumn(), TextColumn("ETA"),
                           TimeRemainingColumn(), transient=False)
            self.bar.start()
            self.task = self.bar.add_task("screening", total=total, rate="–")

    def note(self, name: str, seconds: float) -> None:
        """Time spent before the first patient (e.g. Dask workers loading the packs), kept apart."""
        self.notes[name] = seconds
        self.started = time.perf_counter()

    def advance(self, patients: int) -> None:
        self.done += patients
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        rate = self.done / elapsed
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done, rate=f"{rate:,.0f}")
        elif self.mode == "log" and time.perf_counter() - self.last_log >= 10:
            self.last_log = time.perf_counter()
            eta = (self.total - self.done) / rate if rate > 0 else math.inf
            log.info("screen: %d/%d patients (%.0f patients/s, ETA %.0f s)", self.done, self.total, rate, eta)
            print(f"screen: {self.done}/{self.total} patients ({rate:,.0f} patients/s, ETA {eta:,.0f} s)",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _bucket_task(bucket_dir: str, result: str, marker: str, key: str, overrides: dict[str, Any] | None,
                 now_iso: str) -> dict[str, Any]:
    """One bucket as a Dask task: the worker loads the packs once and writes to shared storage."""
    engine = engine_for(overrides)
    done = evaluate_bucket(Path(bucket_dir), Path(result), engine, datetime.fromisoformat(now_iso))
    _write_json(Path(marker), {"key": key, **done.as_dict()})
    return done.as_dict()


def _warm_worker(config: dict[str, Any]) -> str:
    """Load the packs in a Dask worker (once per process) and answer their version."""
    return engine_for(config).ruleset.version


def _evaluate_embedded(todo: list[tuple[int, Path, Path, Path]], engine: Engine, now: datetime, key: str,
                       progress: Progress) -> list[dict[str, Any]]:
    results = []
    for _number, bucket_dir, result, marker in todo:
        done: BucketResult = evaluate_bucket(bucket_dir, result, engine, now, on_patients=progress.advance)
        _write_json(marker, {"key": key, **done.as_dict()})
        results.append(done.as_dict())
    return results


def _evaluate_dask(todo: list[tuple[int, Path, Path, Path]], options: RunOptions, engine: Engine, now: datetime,
                   key: str, progress: Progress) -> list[dict[str, Any]]:
    """Each bucket a task; the workers get this process's whole configuration (packs, profile, CT
    set, locale), so a remote worker with other environment variables still runs the same settings."""
    if not todo:
        return []
    from distributed import Client, LocalCluster, as_completed

    config = engine.config
    started = time.perf_counter()
    cluster = None
    if options.scheduler:
        client = Client(options.scheduler)
    else:
        cluster = LocalCluster(n_workers=options.workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, memory_limit="2GB")
        client = Client(cluster)
    try:
        client.run(_warm_worker, config)  # every worker loads the packs before the clock of the buckets starts
        progress.note("workers_ready", time.perf_counter() - started)  # cluster start included
        futures = [
            client.submit(_bucket_task, str(bucket_dir), str(result), str(marker), key, config,
                          now.isoformat(), key=f"screen-bucket-{number}-{key[:12]}", pure=False)
            for number, bucket_dir, result, marker in todo
        ]
        results = []
        for future in as_completed(futures):
            done = future.result()
            progress.advance(done["patients"])
            results.append(done)
        return results
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def run(options: RunOptions, on_stage: Callable[[str], None] | None = None) -> RunReport:
    """Screen an export folder into options.out (see the module docstring for what is skipped)."""
    stage = on_stage or (lambda _m: None)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    engine = engine_for(options.overrides)
    plan = reader.ReadPlan.of(engine.ruleset)
    out = worklist.make_private_dir(options.out)
    work = worklist.make_private_dir(out / "work")
    stats = reader.ReadStats()
    files = reader.input_files(options.inputs, stats)
    input_print = reader.fingerprint(files)

    state_path = work / "state.json"
    state = _read_json(state_path) or {}
    if options.now is not None:
        now = options.now.astimezone(UTC)
    elif state.get("inputs") == input_print and state.get("now"):
        now = datetime.fromisoformat(state["now"])  # a resumed run keeps the date it started with
        stage(f"resuming the run of {now.isoformat()} (same inputs); --now starts a new one")
    else:
        now = datetime.now(UTC).replace(microsecond=0)

    partition_key = f"{input_print}-{plan.digest()}-{options.buckets or 'auto'}"
    marker = _read_json(work / "partition.json")
    parts = work / "buckets"
    if marker and marker.get("key") == partition_key and parts.exists():
        stats = reader.ReadStats.from_dict(marker["stats"])
        n_buckets = int(marker["buckets"])
        stage(f"partition of these inputs already done ({stats.kept} resources kept), reused")
    else:
        if parts.exists():
            shutil.rmtree(parts)
        shutil.rmtree(work / "results", ignore_errors=True)
        if not files:
            raise SystemExit(f"screen: no NDJSON files in {options.inputs}")
        # a first estimate of patients from file sizes; refined below from the Patient lines read
        size = sum(p.stat().st_size for p in files)
        n_buckets = options.buckets or max(4, min(4096, int(size / (PATIENTS_PER_BUCKET * BYTES_PER_PATIENT)) + 1))
        stage(f"reading {len(files)} file(s) ({size / 1e6:,.1f} MB) into {n_buckets} patient buckets with DuckDB")
        con = reader.connect(work, options.memory_limit)
        reader.partition(files, plan, parts, n_buckets, con, stats)
        con.close()
        shutil.rmtree(parts / "bucket=-1", ignore_errors=True)
        shutil.rmtree(work / "duckdb-tmp", ignore_errors=True)
        _write_json(work / "partition.json", {"key": partition_key, "buckets": n_buckets, "stats": stats.as_dict(),
                                              "files": [p.name for p in files]})
    timings["partition"] = time.perf_counter() - t0
    if stats.kept == 0:
        raise SystemExit(f"screen: nothing could be read from {options.inputs}: "
                         + "; ".join(f"{k}: {v}" for k, v in stats.problem_counts.items()))
    _write_json(state_path, {"inputs": input_print, "now": now.isoformat()})

    key = run_key(input_print, engine, plan, now, n_buckets)
    results_dir = worklist.make_private_dir(work / "results")
    todo, finished = [], []
    for number in reader.buckets(parts):
        result = results_dir / f"bucket-{number:05d}.parquet"
        done_path = results_dir / f"bucket-{number:05d}.done.json"
        done = _read_json(done_path)
        if done and done.get("key") == key and result.exists():
            finished.append(done)
        else:
            todo.append((number, parts / f"bucket={number}", result, done_path))
    if finished:
        stage(f"{len(finished)} bucket(s) already done for these inputs, packs and settings: skipped")
    total = stats.patients - sum(d["patients"] for d in finished)
    progress = Progress(max(total, 0), options.progress)
    t1 = time.perf_counter()
    try:
        if options.engine == "dask":
            fresh = _evaluate_dask(todo, options, engine, now, key, progress)
        else:
            fresh = _evaluate_embedded(todo, engine, now, key, progress)
    finally:
        progress.close()
    timings.update(progress.notes)
    timings["evaluate"] = time.perf_counter() - t1 - sum(progress.notes.values())

    t2 = time.perf_counter()
    files_by_index = (_read_json(work / "partition.json") or {}).get("files", [])
    report = RunReport(now=now, pack_version=engine.ruleset.version)
    report.buckets, report.buckets_skipped = len(todo) + len(finished), len(finished)
    report.not_read, report.read = stats.not_read, stats.as_dict()
    report.problems = [p.as_dict() for p in stats.problems] + list(options.extra_problems)
    report.problem_counts = dict(stats.problem_counts)
    for problem in options.extra_problems:
        report.problem_counts[problem["reason"]] = report.problem_counts.get(problem["reason"], 0) + 1
    for done in finished + fresh:
        report.patients += done["patients"]
        report.resources += done["resources"]
        for code, count in done["findings"].items():
            report.findings[code] = report.findings.get(code, 0) + count
        for problem in done["problems"]:
            index = problem.pop("file_index", None)
            if index is not None and index < len(files_by_index):
                problem["file"] = files_by_index[index]
            report.problems.append(problem)
            kind = problem.pop("kind", problem["reason"])
            report.problem_counts[kind] = report.problem_counts.get(kind, 0) + 1
    report.findings = dict(sorted(report.findings.items(), key=lambda kv: (-kv[1], kv[0])))
    report.rows = worklist.write_worklist(results_dir, out)
    worklist.write_problems(report.problems, out / "problems.csv")
    report.outputs = [out / "worklist.csv", out / "worklist.parquet", out / "problems.csv"]
    if options.tasks:
        worklist.task_bundle(out / "worklist.parquet", out / "tasks.json", now.isoformat(),
                             engine.settings.finding_system)
        report.outputs.append(out / "tasks.json")
    from cds_service.population.summary import write_summary

    timings["outputs"] = time.perf_counter() - t2
    timings["total"] = time.perf_counter() - t0
    report.seconds = {k: round(v, 3) for k, v in timings.items()}
    write_summary(out / "worklist.parquet", out / "summary.html", report)
    report.outputs.append(out / "summary.html")
    _write_json(out / "run.json", {  # counts and timings only, no patient id: for monitoring a nightly run
        "now": now.isoformat(), "pack_version": report.pack_version, "engine": options.engine,
        "patients": report.patients, "resources": report.resources, "rows": report.rows,
        "lines_read": stats.lines, "buckets": report.buckets, "buckets_skipped": report.buckets_skipped,
        "findings": report.findings, "problem_counts": report.problem_counts, "not_read": report.not_read,
        "seconds": report.seconds,
    })
    report.outputs.append(out / "run.json")
    return report
