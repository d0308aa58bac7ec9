"""The `screen` command: population screening of a Bulk Data export, `--export` first, or `screen synth`."""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_ERRORS, EXIT_USAGE = 0, 1, 2


def add_screen_command(subparsers: Any) -> argparse.ArgumentParser:
    """Add `screen` to an argparse subparsers object."""
    screen = subparsers.add_parser(
        "screen", help="population screening of a FHIR Bulk Data export (or `screen synth` to write one)",
        description="Run the service's rule packs over every patient of a FHIR Bulk Data export and write a "
                    "worklist (real patient ids, mode 0600) under --out. `screen synth --patients N --out DIR` "
                    "writes a synthetic export instead.",
    )
    screen.add_argument("source", nargs="?", help="folder of NDJSON files (optionally .gz), or `synth`")
    screen.add_argument("--out", required=True, help="folder for the worklist, summary and work files")
    screen.add_argument("--engine", choices=("embedded", "dask"), default="embedded",
                        help="embedded (default) or dask (with --scheduler, or a local cluster)")
    screen.add_argument("--scheduler", help="address of a running Dask scheduler, tcp://HOST:PORT (data on shared storage)")
    screen.add_argument("--workers", type=int, default=2, help="worker processes of the local Dask cluster (default 2)")
    screen.add_argument("--buckets", type=int, help="number of patient buckets (default: from the export's size)")
    screen.add_argument("--now", help="evaluation time, ISO 8601 (default: now; a resumed run keeps its own)")
    screen.add_argument("--tasks", action="store_true", help="also write tasks.json, a transaction Bundle of Tasks")
    screen.add_argument("--progress", choices=("auto", "bar", "log", "none"), default="auto")
    screen.add_argument("--memory-limit", default="1GB", help="DuckDB memory limit while reading (default 1GB)")
    screen.add_argument("--export", metavar="FHIR_BASE_URL", help="run a Bulk Data $export from this server first")
    screen.add_argument("--group", help="with --export: export this Group (Group/ID/$export)")
    screen.add_argument("--patient-level", action="store_true", help="with --export: Patient/$export (all patients)")
    screen.add_argument("--no-type-filter", action="store_true", help="with --export: do not send _typeFilter")
    screen.add_argument("--patients", type=int, help="synth: how many patients")
    screen.add_argument("--seed", type=int, default=1, help="synth: random seed (default 1)")
    screen.add_argument("--as-of", help="synth: the export date the data is dated from (default: today)")
    screen.add_argument("--gzip", action="store_true", help="synth: write .ndjson.gz files")
    return screen


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _synth(args: argparse.Namespace) -> int:
    from cds_service.population.evaluate import engine_for
    from cds_service.population.synth import generate

    if not args.patients or args.patients < 1:
        print("sarcopenia-cds screen synth: --patients N is required (N ≥ 1)", file=sys.stderr)
        return EXIT_USAGE
    engine = engine_for()
    stats = generate(Path(args.out), args.patients, ruleset=engine.ruleset, settings=engine.settings,
                     seed=args.seed, as_of=_time(args.as_of), gzip_files=args.gzip)
    total = sum(stats.resources.values())
    print(f"wrote a synthetic export of {stats.patients:,} patients ({total:,} resources, {len(stats.files)} files) "
          f"to {args.out}; planted: " + ", ".join(f"{k} {v}" for k, v in stats.archetypes.items()))
    return EXIT_OK


def _export(args: argparse.Namespace, say: Any) -> tuple[Path, list[dict[str, Any]], datetime | None]:
    import requests

    from cds_service.config import load_config
    from cds_service.population.backend_auth import BackendClient
    from cds_service.population.bulk import BulkExport, discover_token_url
    from cds_service.population.evaluate import engine_for
    from cds_service.population.reader import ReadPlan

    config = load_config()
    session = requests.Session()
    token_url = None
    if config["bulk"]["client_id"] and not config["bulk"]["token_url"]:
        token_url = discover_token_url(args.export, session)
    auth = BackendClient.from_config(config["bulk"], token_url)
    plan = ReadPlan.of(engine_for().ruleset)
    folder = Path(args.out) / "export"
    export = BulkExport(args.export, folder, plan, auth=auth, group=args.group, patient_level=args.patient_level,
                        use_type_filter=not args.no_type_filter, session=session, on_event=say)
    result = export.run()
    when = _time(result.transaction_time) if result.transaction_time else None
    return folder, result.problems, when


def run_screen(args: argparse.Namespace) -> int:
    """Run `screen` as parsed; exit 0 when the worklist was written, 1 when nothing could be read."""
    if args.source == "synth":
        return _synth(args)
    from cds_service.population.backend_auth import AuthError
    from cds_service.population.bulk import ExportError
    from cds_service.population.run import RunOptions, run

    logging.getLogger("sarcopenia_cds.screen").setLevel(logging.INFO)

    def say(message: str) -> None:
        print(f"screen: {message}", file=sys.stderr, flush=True)

    if bool(args.source) == bool(args.export):
        print("sarcopenia-cds screen: give either an NDJSON folder or --export FHIR_BASE_URL", file=sys.stderr)
        return EXIT_USAGE
    extra_problems: list[dict[str, Any]] = []
    now = _time(args.now)
    if args.export:
        try:
            source, extra_problems, _transaction_time = _export(args, say)
        except (ExportError, AuthError) as exc:
            say(f"export failed: {exc}")
            if not (Path(args.out) / "export").exists() or not any((Path(args.out) / "export").glob("*.ndjson")):
                return EXIT_ERRORS
            say("screening the files downloaded so far")
            source = Path(args.out) / "export"
    else:
        source = Path(args.source)
        if not source.is_dir():
            print(f"sarcopenia-cds screen: {source} is not a folder", file=sys.stderr)
            return EXIT_USAGE
    options = RunOptions(source, Path(args.out), engine=args.engine, scheduler=args.scheduler, workers=args.workers,
                         buckets=args.buckets, now=now, tasks=args.tasks, progress=args.progress,
                         memory_limit=args.memory_limit, extra_problems=extra_problems)
    try:
        report = run(options, on_stage=say)
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        return EXIT_ERRORS
    rate = report.patients / report.seconds["evaluate"] if report.seconds.get("evaluate") else 0.0
    say(f"{report.patients:,} patients, {report.resources:,} resources read by the packs, evaluated at "
        f"{report.now.isoformat()} with {report.pack_version}; {report.buckets} bucket(s), "
        f"{report.buckets_skipped} skipped as already done; {rate:,.0f} patients/s, {report.seconds['total']:,.1f} s")
    for code, count in report.findings.items():
        say(f"  {code}: {count:,}")
    if report.problem_counts:
        say(f"input set aside ({sum(report.problem_counts.values()):,}; each with file, line and reason in problems.csv):")
        for reason, count in sorted(report.problem_counts.items(), key=lambda kv: -kv[1]):
            say(f"  {count:,} × {reason}")
        for problem in report.problems[:10]:
            where = f"{problem.get('file') or problem.get('patient_id') or ''}"
            where += f":{problem['line']}" if problem.get("line") else ""
            say(f"    {where}: {problem['reason']}")
    if report.not_read:
        say("not read by the packs (counted, not evaluated): "
            + ", ".join(f"{k} {v:,}" for k, v in sorted(report.not_read.items())))
    say(f"wrote {report.rows:,} worklist rows WITH REAL PATIENT IDS, readable by the owner only (0600): "
        + ", ".join(str(p) for p in report.outputs) + f"; work files (buckets, mode 0700) in {Path(args.out) / 'work'}")
    return EXIT_OK
