"""What FHIR validation costs per request: fhir.resources (R4B) per resource, how many the rules
make us validate, and what remembering verdicts saves when the same resources come again.
Run on demand:  python bench/bench_validation.py"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from fhir.resources.R4B import get_fhir_model_class

from cds_service.engine import load_ruleset
from cds_service.fhir.validate import Verdicts, validate_resources

RESOURCES = Path(__file__).resolve().parents[2] / "shared" / "bench" / "patient-30-resources.json"


def per_call(function, repeat: int = 200) -> float:
    """Median seconds of one call, after warm-up."""
    for _ in range(20):
        function()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    resources = json.loads(RESOURCES.read_text(encoding="utf-8"))
    ruleset = load_ruleset()
    by_type: dict[str, list[float]] = {}
    for resource in resources:
        model = get_fhir_model_class(resource["resourceType"])
        by_type.setdefault(resource["resourceType"], []).append(per_call(lambda: model.model_validate(resource)))
    print("fhir.resources R4B model_validate, median per resource:")
    for kind, times in sorted(by_type.items()):
        print(f"  {kind:<18} {statistics.median(times) * 1e6:7.1f} µs  ({len(times)} resources)")
    relevant = [r for r in resources if ruleset.relevant(r)]
    forgetful = Verdicts(size=0, most=0)
    everything = per_call(lambda: validate_resources(resources, lambda _r: True, forgetful), 50)
    needed = per_call(lambda: validate_resources(resources, ruleset.relevant, forgetful), 50)
    remembered = Verdicts()
    again = per_call(lambda: validate_resources(resources, ruleset.relevant, remembered), 200)
    print(f"all {len(resources)} resources: {everything * 1e3:.2f} ms per request")
    print(f"only the {len(relevant)} the rules read: {needed * 1e3:.2f} ms per request")
    print(f"the same {len(relevant)} again (verdicts remembered by content digest): {again * 1e3:.3f} ms per request")


if __name__ == "__main__":
    main()
