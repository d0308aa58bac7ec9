"""Benchmark the rule engine: load+compile of the packs, and per-request evaluation of 300 resources.

Run on demand (not part of pytest):  python bench/bench_engine.py [--packs PATH ...] [--runs N]
  [--resources N | --patient FILE]
--patient FILE: a JSON list of resources (or a Bundle), kept as the service keeps them
(RuleSet.relevant), e.g. /work/shared/bench/patient-30-resources.json.
Targets: load + compile < 1 s; evaluation of a 300-resource patient < 1 ms median after warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cds_service.engine import EngineSettings, load_ruleset
from cds_service.engine.load import pack_files

NOW = datetime(2025, 6, 1, 12, tzinfo=UTC)


def synthetic_patient(rs, n: int = 300, seed: int = 7) -> list[dict]:
    """A patient whose resources hit every data fact's value set, padded with irrelevant vitals."""
    rnd = random.Random(seed)
    out = [{"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "1950-03-02"}]
    facts = [
        f
        for f in rs.facts.values()
        if f.kind == "data" and f.source == "record" and f.valueset is not None
    ]
    i = 0
    while len(out) < n:
        i += 1
        when = (NOW - timedelta(days=rnd.randint(0, 400))).isoformat()
        if i % 3 == 0 or not facts:
            out.append(
                {
                    "resourceType": "Observation",
                    "id": f"noise{i}",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                    "effectiveDateTime": when,
                    "valueQuantity": {"value": rnd.randint(50, 110), "code": "/min"},
                }
            )
            continue
        fact = facts[i % len(facts)]
        system, code = fact.valueset.first_code() or ("http://hl7.org/fhir/sid/icd-10", "C16.9")
        if fact.resource_type == "Observation":
            low = fact.plausible.get("min", fact.plausible.get("above", 0))
            high = fact.plausible.get("max", fact.plausible.get("below", low + 100))
            value = {"value": round(rnd.uniform(low, high), 1), "code": fact.unit or "1"}
            if rnd.random() < 0.02:  # a few implausible values, as real data has
                value["value"] = high * 3 + 1
            out.append(
                {
                    "resourceType": "Observation",
                    "id": f"o{i}",
                    "status": "final",
                    "code": {"coding": [{"system": system, "code": code}]},
                    "effectiveDateTime": when,
                    "valueQuantity": value,
                }
            )
        elif fact.resource_type == "Condition":
            out.append(
                {
                    "resourceType": "Condition",
                    "id": f"c{i}",
                    "code": {"coding": [{"system": system, "code": code}]},
                    "clinicalStatus": {"coding": [{"code": "active"}]},
                    "verificationStatus": {"coding": [{"code": "confirmed"}]},
                    "recordedDate": when,
                }
            )
        else:
            out.append(
                {
                    "resourceType": fact.resource_type,
                    "id": f"r{i}",
                    "status": "active",
                    "code": {"coding": [{"system": system, "code": code}]},
                    "medicationCodeableConcept": {"coding": [{"system": system, "code": code}]},
                    "authoredOn": when,
                    "started": when,
                }
            )
    # make sure there is an active cancer with a low-ish grip, so cards are rendered too
    out.append(
        {
            "resourceType": "Condition",
            "id": "cancer",
            "code": {
                "coding": [
                    {"system": "http://hl7.org/fhir/sid/icd-10", "code": "C16.9"},
                    {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "C16.9"},
                ]
            },
            "clinicalStatus": {"coding": [{"code": "active"}]},
            "recordedDate": "2025-01-01",
        }
    )
    return out


def patient_file(rs, path: Path) -> list[dict]:
    """The resources of a JSON list or Bundle that the service would evaluate (rs.relevant)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict):
        data = [e["resource"] for e in data.get("entry", ())]
    return [r for r in data if rs.relevant(r)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--packs", nargs="*", help="pack files or folders (default: bundled packs under rules/)"
    )
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--resources", type=int, default=300)
    parser.add_argument(
        "--patient", type=Path, help="a JSON list of resources or a Bundle (instead of synthetic)"
    )
    args = parser.parse_args(argv)

    paths = args.packs or None
    if paths is None and not pack_files():
        fixture = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "packs" / "core"
        print(f"no bundled packs found; benchmarking the engine fixture pack {fixture}")
        paths = [fixture]
    loads = []
    for _ in range(5):
        start = time.perf_counter()
        rs = load_ruleset(paths)
        loads.append(time.perf_counter() - start)
    print(
        f"packs: {rs.version}: {len(rs.rules)} rules, {len(rs.facts)} facts, {len(rs.params)} parameters"
    )
    print(
        f"load + compile: median {statistics.median(loads) * 1000:.1f} ms, first {loads[0] * 1000:.1f} ms "
        f"(target < 1000 ms)"
    )

    resources = (
        patient_file(rs, args.patient) if args.patient else synthetic_patient(rs, args.resources)
    )
    patient_id = next((r["id"] for r in resources if r.get("resourceType") == "Patient"), "p1")
    profile = next(iter(rs.profiles), "ewgsop2")
    ct = next(iter(rs.ct_sets), "martin2013")
    settings = EngineSettings(profile=profile, ct_cutoffs=ct)
    results = {}
    for hook in rs.hooks:
        for _ in range(50):  # warm-up
            ev = rs.evaluate(
                resources, hook=hook, context={"patientId": patient_id}, now=NOW, settings=settings
            )
        times = []
        cpu_start = time.process_time()
        for _ in range(args.runs):
            start = time.perf_counter()
            ev = rs.evaluate(
                resources, hook=hook, context={"patientId": patient_id}, now=NOW, settings=settings
            )
            times.append(time.perf_counter() - start)
        cpu = (time.process_time() - cpu_start) / args.runs
        times.sort()
        results[hook] = (
            statistics.median(times),
            times[int(len(times) * 0.95)],
            cpu,
            len(ev.findings),
            len(ev.cards),
        )
    for hook, (median, p95, cpu, findings, cards) in results.items():
        print(
            f"evaluate {hook} ({len(resources)} resources, profile {profile}, CT {ct}): median "
            f"{median * 1e6:.0f} µs, p95 {p95 * 1e6:.0f} µs, CPU mean {cpu * 1e6:.0f} µs — "
            f"{findings} findings, {cards} cards (target < 1000 µs)"
        )
    if hasattr(os, "getloadavg"):
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"machine: {os.cpu_count()} CPUs, load average {load} (medians rise with load)")
    start = time.perf_counter()
    kept = sum(1 for r in resources if rs.relevant(r))
    print(
        f"relevant(): {kept}/{len(resources)} resources kept, {(time.perf_counter() - start) * 1e6:.0f} µs total"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
