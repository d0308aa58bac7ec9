"""Where one hook call's CPU goes: thread CPU time per stage, in process.

Run on demand (not a test):  python bench/bench_stages.py [--alg RS384] [--calls 1500]

The app runs as the load benchmark runs it (authentication on with the test EHR's keys, the
JWT replay check in Redis at redis://127.0.0.1:6379/0, SQLite with its card journal, JSON logs
at INFO, written to /dev/null here) and gets the same patient-view body (the 30 resources of
shared/bench/patient-30-resources.json), each call with its own JWT, through Flask's test client
instead of gunicorn. Each stage's function is wrapped by a timer of the calling thread's CPU
time; stages nest (the JWT check holds its signature check and its replay SET, the pipeline
holds validation and the engine), and what no stage holds is Flask, Werkzeug, the test client
and the metrics."""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESOURCES = ROOT.parent / "shared" / "bench" / "patient-30-resources.json"
PATH = "/cds-services/sarcopenia-patient-view"
SPENT: collections.Counter = collections.Counter()


def timed(owner, name: str, label: str) -> None:
    """Replace owner.name by a wrapper adding its thread CPU time to SPENT[label]."""
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):
        started = time.thread_time()
        try:
            return original(*args, **kwargs)
        finally:
            SPENT[label] += time.thread_time() - started

    setattr(owner, name, wrapper)


def instrument() -> None:
    from cds_service import pipeline
    from cds_service.api import services
    from cds_service.auth import replay, verify
    from cds_service.engine import ruleset
    from cds_service.store import repository

    timed(verify.Authenticator, "_verify", "JWT check (all)")
    timed(verify.Authenticator, "_decode", "JWT: signature and claims")
    for value in list(vars(replay).values()):
        if isinstance(value, type) and value.__module__ == replay.__name__ and "add" in vars(value):
            timed(value, "add", "JWT: replay store add")
    timed(services, "read_json", "body parse")
    timed(services, "check_request", "request schema")
    timed(services, "answer_hook", "pipeline (all)")
    timed(pipeline, "gather", "prefetch gathering")
    timed(pipeline, "validate_resources", "FHIR validation")
    timed(ruleset.RuleSet, "evaluate", "rule evaluation and cards")
    timed(pipeline, "validate_response", "response schema")
    timed(repository.Store, "suppressions", "store: suppression read")
    timed(repository.Store, "record_cards", "store: journal line")
    timed(services, "log_event", "log line")
    timed(services, "json_response", "JSON response")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alg", default="RS384", choices=["RS384", "ES384"])
    parser.add_argument("--calls", type=int, default=1500)
    args = parser.parse_args(argv)

    from cds_service.app import create_app
    from tests.support import tokens
    from tests.support.ehr import prefetch_for

    instrument()
    work = Path(tempfile.mkdtemp(prefix="cds-stages-"))
    base = "http://127.0.0.1:9"
    app = create_app(
        {
            "database": {"url": f"sqlite:///{work / 'stages.db'}"},
            "base_url": base,
            "rules": {"watch": False},
            "auth": {"issuers": [tokens.issuer_config()], "replay_key_prefix": f"stages:{uuid.uuid4().hex}:"},
            "redis": {"url": "redis://127.0.0.1:6379/0"},
        }
    )
    for handler in logging.getLogger("cds_service").handlers:
        handler.stream = open(os.devnull, "w")  # noqa: SIM115 - for the process's life
    client = app.test_client()
    discovery = client.get("/cds-services", headers={"Authorization": "Bearer " + tokens.token(base + "/cds-services")})
    templates = next(s for s in discovery.get_json()["services"] if s["hook"] == "patient-view")["prefetch"]
    resources = json.loads(RESOURCES.read_text(encoding="utf-8"))
    body = json.dumps({"hook": "patient-view", "hookInstance": str(uuid.uuid4()),
                       "context": {"userId": "Practitioner/bench", "patientId": "bench-pt-1"},
                       "prefetch": prefetch_for(resources, templates)}).encode()
    signed = [tokens.token(base + PATH, alg=args.alg, lifetime=900) for _ in range(args.calls + 200)]

    def call(token: str) -> None:
        response = client.post(PATH, data=body, headers={"Authorization": f"Bearer {token}",
                                                         "Content-Type": "application/json"})
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}")

    for token in signed[:200]:  # warm-up
        call(token)
    SPENT.clear()
    started, process_started = time.thread_time(), time.process_time()
    for token in signed[200:]:
        call(token)
    total = (time.thread_time() - started) / args.calls
    process = (time.process_time() - process_started) / args.calls
    if hasattr(os, "getloadavg"):
        print(f"{args.alg}, {args.calls} calls, load average {os.getloadavg()[0]:.2f}")
    for label, seconds in sorted(SPENT.items(), key=lambda item: -item[1]):
        share = 100 * seconds / args.calls / total
        print(f"  {label:<32}{seconds / args.calls * 1e6:8.0f} µs {share:5.1f} %")
    print(f"  {'the call (request thread)':<32}{total * 1e6:8.0f} µs; the process {process * 1e6:.0f} µs "
          "(with the journal's background batches)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
