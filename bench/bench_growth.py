"""Growth benchmark: how the cost of one patient-view grows with the patient's record.

Run on demand (not a test):  python bench/bench_growth.py [--sizes 30,300,3000,30000]
  [--shapes burst,history] [--http] [--validation]

The patient is shared/bench/patient-30-resources.json (the load benchmark's): its 20 Observations
are copied until the record holds N resources, 2 of every 20 being ones the rules read (a weight
and a height), so about a tenth of the copies are kept (RuleSet.relevant). Two shapes:
- `burst`: every copy a second after the one before, all within one day (the same_day conflict
  window holds them all: an inpatient's monitor feed);
- `history`: one copy a day, going back N/20 days (years of vitals).
Values vary by less than the conflict limits, so no value is excluded.

For each size and shape it reports: the engine's evaluation (µs, median, the kept resources
only, as the service calls it) and its cost per kept resource; with --validation the FHIR
validation of those resources (first time: every model checked; again: verdicts remembered) and
the parse of the request body; with --http the whole call through the service in process (Flask
test client: body parse, request schema, validation, engine, cards, response schema, store),
first and again."""

from __future__ import annotations

import argparse
import copy
import gc
import json
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import orjson  # noqa: E402

from cds_service.engine import EngineSettings, load_ruleset  # noqa: E402

RESOURCES = ROOT.parent / "shared" / "bench" / "patient-30-resources.json"
NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)  # the day after the patient's latest vitals


def _stamp(text: str, delta: timedelta) -> str:
    when = datetime.fromisoformat(text.replace("Z", "+00:00")) + delta
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def grown_patient(n: int, shape: str) -> list[dict]:
    """The benchmark patient with its Observations copied until it holds n resources."""
    base = json.loads(RESOURCES.read_text(encoding="utf-8"))
    observations = [r for r in base if r["resourceType"] == "Observation"]
    others = [r for r in base if r["resourceType"] != "Observation"]
    out = list(others) + list(observations)
    k = 0
    while len(out) < n:
        k += 1
        for original in observations:
            if len(out) >= n:
                break
            r = copy.deepcopy(original)
            r["id"] = f"{original['id']}-c{k}"
            delta = timedelta(seconds=-k) if shape == "burst" else timedelta(days=-k)
            r["effectiveDateTime"] = _stamp(original["effectiveDateTime"], delta)
            quantity = r.get("valueQuantity")
            if isinstance(quantity, dict) and isinstance(quantity.get("value"), (int, float)):
                # ±0.6 %: well inside the conflict limits (5 % same-day weight, 5 cm height)
                quantity["value"] = round(quantity["value"] * (1 + 0.002 * ((k % 7) - 3)), 2)
            out.append(r)
    return out[:n]


def timed(function, runs: int) -> float:
    """Median CPU seconds of this process for one of `runs` calls, after one warm-up call (CPU
    time, not wall time: on a machine shared with other work the wall clock counts their turns)."""
    function()
    gc.collect()
    samples = []
    for _ in range(runs):
        started = time.process_time()
        function()
        samples.append(time.process_time() - started)
    return statistics.median(samples)


def runs_for(n: int) -> int:
    return max(15, min(400, 60000 // max(n, 1)))


def engine_row(rs, settings, resources) -> tuple[int, float]:
    kept = [r for r in resources if rs.relevant(r)]
    context = {"patientId": "bench-pt-1"}
    seconds = timed(
        lambda: rs.evaluate(kept, hook="patient-view", context=context, now=NOW, settings=settings),
        runs_for(len(resources)),
    )
    return len(kept), seconds


def validation_row(rs, resources) -> dict:
    from cds_service.fhir.validate import Verdicts, validate_resources

    kept = sum(1 for r in resources if rs.relevant(r))
    firsts = []
    for _ in range(3):  # every model checked: a fresh memory each time (median of 3)
        verdicts = Verdicts()
        started = time.process_time()
        validate_resources(resources, rs.relevant, verdicts)
        firsts.append(time.process_time() - started)
    first = statistics.median(firsts)
    again = timed(lambda: validate_resources(resources, rs.relevant, verdicts), max(3, runs_for(len(resources)) // 4))
    body = orjson.dumps({"prefetch": {"observations": {"resourceType": "Bundle", "entry": [{"resource": r} for r in resources]}}})
    from cds_service.api.http import parse_json

    parse = timed(lambda: parse_json(body), max(3, runs_for(len(resources)) // 4))
    return {"kept": kept, "first_ms": first * 1e3, "again_ms": again * 1e3, "bytes": len(body), "parse_ms": parse * 1e3}


class InProcessService:
    """The service app in this process (auth off, limits raised for the large sizes)."""

    def __init__(self) -> None:
        from cds_service.app import create_app

        self.work = Path(tempfile.mkdtemp(prefix="cds-growth-"))
        self.app = create_app(
            {
                "database": {"url": f"sqlite:///{self.work / 'growth.db'}"},
                "auth": {"required": False},
                "rules": {"watch": False},
                "limits": {"max_body_bytes": 256 * 1024 * 1024, "max_prefetch_resources": 100000},
                "logging": {"level": "WARNING"},
            },
            clock=lambda: NOW,
        )
        self.client = self.app.test_client()
        templates = self.client.get("/cds-services").get_json()
        self.templates = next(s for s in templates["services"] if s["hook"] == "patient-view")["prefetch"]

    def body(self, resources) -> bytes:
        from tests.support.ehr import prefetch_for

        return orjson.dumps(
            {
                "hook": "patient-view",
                "hookInstance": str(uuid.uuid4()),
                "context": {"userId": "Practitioner/bench", "patientId": "bench-pt-1"},
                "prefetch": prefetch_for(resources, self.templates),
            }
        )

    def call(self, body: bytes) -> float:
        started = time.process_time()
        response = self.client.post(
            "/cds-services/sarcopenia-patient-view", data=body, content_type="application/json"
        )
        elapsed = time.process_time() - started
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {response.get_data(as_text=True)[:300]}")
        return elapsed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="30,300,3000,30000")
    parser.add_argument("--shapes", default="burst,history")
    parser.add_argument("--http", action="store_true", help="also time the whole call in process")
    parser.add_argument("--validation", action="store_true", help="also time FHIR validation and parsing")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    shapes = [s for s in args.shapes.split(",") if s]

    rs = load_ruleset(None)
    settings = EngineSettings()
    rs.warm(settings)
    if args.validation:  # the models' validators are built on first use: before any timing
        from cds_service.fhir.validate import Verdicts, validate_resources

        validate_resources(grown_patient(30, "burst"), lambda _r: True, Verdicts())
    service = InProcessService() if args.http else None
    gc.collect()
    print(f"{'shape':<8}{'resources':>10}{'kept':>7}{'engine µs':>11}{'µs/kept':>9}", end="")
    if args.validation:
        print(f"{'valid. 1st ms':>14}{'µs/kept':>9}{'again ms':>10}{'body MB':>9}{'parse ms':>10}", end="")
    if args.http:
        print(f"{'HTTP 1st ms':>12}{'HTTP ms':>9}", end="")
    print()
    for shape in shapes:
        base_cost = None
        for n in sizes:
            resources = grown_patient(n, shape)
            kept, seconds = engine_row(rs, settings, resources)
            per = seconds * 1e6 / kept
            base_cost = base_cost or per
            print(f"{shape:<8}{n:>10}{kept:>7}{seconds * 1e6:>11.0f}{per:>9.2f}", end="")
            if args.validation:
                v = validation_row(rs, resources)
                print(f"{v['first_ms']:>14.1f}{v['first_ms'] * 1e3 / v['kept']:>9.1f}{v['again_ms']:>10.2f}"
                      f"{v['bytes'] / 1e6:>9.2f}{v['parse_ms']:>10.1f}", end="")
            if service is not None:
                body = service.body(resources)
                first = service.call(body)
                again = statistics.median(service.call(service.body(resources)) for _ in range(max(3, min(20, 3000 // n + 3))))
                print(f"{first * 1e3:>12.1f}{again * 1e3:>9.1f}", end="")
            print(flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
