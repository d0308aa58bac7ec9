"""Benchmark `sarcopenia-cds screen`: patients/s, resources/s and peak memory, embedded and on Dask.

Run on demand (not part of pytest):
    python bench/bench_screen.py [--patients 100000] [--out bench/out] [--seed 7] [--rounds 1]
It writes a synthetic export once (timed apart), then runs the real command in a subprocess for
each configuration — embedded, Dask LocalCluster with 1 worker, with 2 workers — each into a fresh
output folder (no bucket is skipped), in turns, `--rounds` times. Peak memory is the largest sum
of the resident set sizes of the command and all its descendants (the Dask workers), sampled
every 0.1 s. End-to-end times include reading the export with DuckDB and, for Dask, starting the
local cluster; the evaluation rate is the bucket phase alone (run.json, seconds.evaluate).
Targets: ≥ 1,000 patients/s end to end embedded (100,000 in < 100 s), peak memory < 2 GB, 2 Dask
workers ≥ 1.7× one.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
NOW = "2026-11-28T12:00:00+00:00"
CONFIGS = (("embedded", ["--engine", "embedded"]), ("dask-1", ["--engine", "dask", "--workers", "1"]),
           ("dask-2", ["--engine", "dask", "--workers", "2"]))


def _command() -> list[str]:
    script = Path(sys.executable).with_name("sarcopenia-cds")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cds_service.cli"]


def _tree_rss(process: psutil.Process) -> int:
    total = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            total += member.memory_info().rss
        except psutil.Error:
            pass
    return total


def measured(argv: list[str], env: dict[str, str]) -> tuple[float, int, int, float]:
    """(wall seconds, peak RSS of the process tree in bytes, exit code, CPU seconds of the tree) of one
    command. CPU time (user + system of the command and every descendant it waited for, the Dask
    workers included) says what the work costs when other jobs take the cores."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    child = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    process = psutil.Process(child.pid)
    peak = [0]

    def sample() -> None:
        while child.poll() is None:
            try:
                peak[0] = max(peak[0], _tree_rss(process))
            except psutil.Error:
                pass
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = child.communicate()
    sampler.join()
    if child.returncode != 0:
        print(err[-2000:], file=sys.stderr)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return time.perf_counter() - started, peak[0], child.returncode, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--out", default=str(ROOT / "bench" / "out"))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--configs", default="embedded,dask-1,dask-2", help="which runs, in this order")
    args = parser.parse_args()
    out = Path(args.out)
    export = out / f"export-{args.patients}"
    env = {**os.environ, "SARCOPENIA_CDS_RULES__WATCH": "false", "SARCOPENIA_CDS_LOGGING__FORMAT": "text"}
    if not (export / ".synth.json").exists():
        shutil.rmtree(export, ignore_errors=True)
        started = time.perf_counter()
        subprocess.run([*_command(), "screen", "synth", "--patients", str(args.patients), "--out", str(export),
                        "--seed", str(args.seed), "--as-of", NOW], env=env, check=True, stdout=subprocess.DEVNULL)
        print(f"synthetic export of {args.patients:,} patients written in {time.perf_counter() - started:.1f} s")
    synth = json.loads((export / ".synth.json").read_text())
    lines = sum(synth["resources"].values())
    size = sum(p.stat().st_size for p in export.glob("*.ndjson*"))
    print(f"export: {args.patients:,} patients, {lines:,} resources, {size / 1e6:,.0f} MB; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    by_name = dict(CONFIGS)
    chosen = [(name, by_name[name]) for name in args.configs.split(",")]  # in the order given
    results: dict[str, list[dict]] = {name: [] for name, _ in chosen}
    for round_number in range(1, args.rounds + 1):
        for name, flags in chosen:
            target = out / f"run-{args.patients}-{name}"
            shutil.rmtree(target, ignore_errors=True)
            argv = [*_command(), "screen", str(export), "--out", str(target), "--now", NOW, "--progress", "none",
                    *flags]
            load_before = os.getloadavg()[0]
            seconds, peak, code, cpu = measured(argv, env)
            if code != 0:
                print(f"{name}: exit {code}")
                return 1
            run = json.loads((target / "run.json").read_text())
            evaluate = run["seconds"]["evaluate"]
            row = {"seconds": seconds, "peak": peak, "patients": run["patients"], "resources": run["resources"],
                   "lines": run["lines_read"], "evaluate": evaluate, "partition": run["seconds"]["partition"],
                   "load": load_before, "cpu": cpu}
            results[name].append(row)
            print(f"round {round_number} {name:8s}: {seconds:7.1f} s end to end, "
                  f"{run['patients'] / seconds:7,.0f} patients/s, {run['lines_read'] / seconds:8,.0f} resources/s read "
                  f"({run['resources'] / seconds:7,.0f}/s evaluated); evaluation phase {evaluate:6.1f} s = "
                  f"{run['patients'] / evaluate:6,.0f} patients/s; DuckDB partition {run['seconds']['partition']:5.1f} s; "
                  f"peak memory {peak / 2**20:6,.0f} MiB; CPU {cpu:6.1f} s = {run['patients'] / cpu:6,.0f} patients "
                  f"per CPU-second; load average before {load_before:.2f}", flush=True)
            shutil.rmtree(target / "work", ignore_errors=True)
    best = {name: min(rows, key=lambda r: r["seconds"]) for name, rows in results.items()}
    if "dask-1" in best and "dask-2" in best:
        e2e = best["dask-1"]["seconds"] / best["dask-2"]["seconds"]
        phase = best["dask-1"]["evaluate"] / best["dask-2"]["evaluate"]
        print(f"2 Dask workers vs 1: {e2e:.2f}x end to end, {phase:.2f}x in the evaluation phase (target ≥ 1.7x)")
    if "embedded" in best:
        rate = best["embedded"]["patients"] / best["embedded"]["seconds"]
        print(f"embedded: {rate:,.0f} patients/s end to end (target ≥ 1,000); peak "
              f"{max(r['peak'] for rows in results.values() for r in rows) / 2**30:.2f} GiB over all runs (target < 2 GB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
