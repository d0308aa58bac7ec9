"""Load benchmark of `serve`'s worker layouts at one concurrency: the old default (1 worker x 8
threads) against one worker per core (with Redis sharing the replay cache), and the sync layout.

Run on demand (not a test):  python bench/bench_workers.py [--seconds 15] [--rounds 5] [--concurrency 32]

Every layout runs at once as its own `sarcopenia-cds serve`, SQLite with its card journal, Redis,
and gets the 30-resource patient-view call of bench_service.py with a JWT of its own per request
(RS384), from wrk. Each layout's run is cut into `--rounds` slices taking turns with the other
layouts', so that they share the machine's good and bad moments; p50 / p99 are pooled."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_service import ROOT, body_for, free_port, load_wrk, pooled, serve, wait_ready  # noqa: E402
from tests.support import tokens  # noqa: E402

PATH = "/cds-services/sarcopenia-patient-view"


def ready(port: int, seconds: float = 180.0) -> None:
    """Wait for /healthz (three services starting at once on a loaded machine take a while)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            wait_ready(port, "/healthz")
            return
        except RuntimeError:
            if time.monotonic() > deadline:
                raise


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="load per layout (default 15)")
    parser.add_argument("--rounds", type=int, default=5, help="slices taking turns (default 5)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--layouts", default="1x8,2x8,2x1", help="workers x threads, comma-separated")
    args = parser.parse_args()
    layouts = [tuple(int(n) for n in item.split("x")) for item in args.layouts.split(",")]

    work = Path(tempfile.mkdtemp(prefix="cds-bench-workers-"))
    servers = []
    try:
        for workers, threads in layouts:
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            env = {k: v for k, v in os.environ.items() if not k.startswith("SARCOPENIA_CDS_")}
            env.update({"SARCOPENIA_CDS_DATABASE__URL": f"sqlite:///{work / f'{workers}x{threads}.db'}",
                        "SARCOPENIA_CDS_BASE_URL": base, "SARCOPENIA_CDS_RULES__WATCH": "false",
                        "SARCOPENIA_CDS_AUTH__ISSUERS": json.dumps([tokens.issuer_config()]),
                        "SARCOPENIA_CDS_AUTH__REPLAY_KEY_PREFIX": f"bench:{uuid.uuid4().hex}:",
                        "SARCOPENIA_CDS_REDIS__URL": "redis://127.0.0.1:6379/0",
                        "SARCOPENIA_CDS_LOGGING__LEVEL": "WARNING", "PYTHONPATH": str(ROOT)})
            servers.append((f"{workers}x{threads}", port, base, serve(port, workers, threads, env, work)))
        for _, port, _, _ in servers:
            ready(port)
        _, port, base, _ = servers[0]
        discovery = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        discovery.request("GET", "/cds-services", headers={"Authorization": f"Bearer {tokens.token(base + '/cds-services')}"})
        templates = next(s for s in json.loads(discovery.getresponse().read())["services"]
                         if s["hook"] == "patient-view")["prefetch"]
        body_file = work / "body.json"
        body_file.write_text(json.dumps(body_for(templates)))
        slice_seconds = args.seconds / args.rounds

        def run(name: str, port: int, base: str, seconds: float) -> dict:
            tokens_file = work / f"tokens-{name}.txt"
            tokens_file.write_text("\n".join(tokens.token(base + PATH, alg="RS384", lifetime=900)
                                             for _ in range(int(seconds * 600) + 300)))
            result = load_wrk(port, body_file, tokens_file, args.concurrency, seconds)
            return {**result, "cpu_s": 0.0, "ticks": 0, "stolen": 0}

        for name, port, base, _ in servers:  # warm every worker
            run(name, port, base, 2.0)
        slices: dict[str, list[dict]] = {name: [] for name, *_ in servers}
        for round_ in range(args.rounds):
            turn = round_ % len(servers)
            for name, port, base, _ in servers[turn:] + servers[:turn]:
                slices[name].append(run(name, port, base, slice_seconds))
        print(f"concurrency {args.concurrency}, {args.seconds:.0f} s per layout in {args.rounds} slices taking turns, "
              f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
        print(f"{'workers x threads':<20}{'requests':>9}{'non-200':>9}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}")
        for name, *_ in servers:
            result = pooled(slices[name])
            print(f"{name:<20}{result['requests']:>9}{result['errors']:>9}{result['rps']:>9.0f}"
                  f"{result['p50_ms']:>9.1f}{result['p99_ms']:>9.1f}")
    finally:
        for *_, process in servers:
            process.terminate()
        for *_, process in servers:
            process.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
