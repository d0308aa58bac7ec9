"""Load benchmark: the service under gunicorn vs a bare Flask echo app, same body, same client.

Run on demand (not a test):  python bench/bench_service.py [--seconds 15] [--rounds 5] [--workers 2] [--threads 1]

The service runs as in production (`sarcopenia-cds serve`: gunicorn workers, SQLite, Redis for
the JWT replay cache, JSON logs at INFO, multiprocess metrics) and gets a patient-view call whose
prefetch holds the 30 resources of shared/bench/patient-30-resources.json, keyed as discovery
asks, each request with its own JWT (authentication on), signed RS384 (Epic's default) and ES384.
The echo app gets the same body under gunicorn with the same workers and threads. The client
(wrk, or a Python fallback) keeps one connection per concurrent caller.

Each run (a target at a concurrency, 15 s) is cut into `--rounds` slices that take turns with the
other targets' slices, so that the service and the echo share the machine's good and bad moments:
on a shared VM the speed drifts by half within minutes, which back-to-back 15 s runs turn into
a false ratio. For each target and concurrency 1 and 8 it reports requests/s, p50 / p99 latency
(the slices' latency distributions pooled), the server processes' CPU time per request (user +
system, from /proc), the share of CPU time the hypervisor stole, and the service / echo ratios,
pooled and round by round."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_engine import patient_file  # noqa: E402
from cds_service.cli import worker_class  # noqa: E402
from tests.support import tokens  # noqa: E402
from tests.support.ehr import prefetch_for  # noqa: E402
from tests.support.server import free_port  # noqa: E402

RESOURCES = ROOT.parent / "shared" / "bench" / "patient-30-resources.json"
PATH = "/cds-services/sarcopenia-patient-view"


def gunicorn(app: str, port: int, workers: int, threads: int, env: dict[str, str], cwd: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
               "--worker-class", worker_class(threads), "--threads", str(threads), "--log-level", "warning", app]
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def serve(port: int, workers: int, threads: int, env: dict[str, str], cwd: Path) -> subprocess.Popen:
    """The service exactly as the README and the Dockerfile start it."""
    command = [sys.executable, "-m", "cds_service.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--workers", str(workers), "--threads", str(threads)]
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def cpu_seconds(master: subprocess.Popen) -> float:
    """User + system CPU time of a gunicorn master and its workers (Linux /proc), in seconds."""
    pids = [master.pid, *subprocess.run(["pgrep", "-P", str(master.pid)], capture_output=True, text=True).stdout.split()]
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def cpu_ticks() -> tuple[int, int]:
    """(all, stolen) CPU ticks of the machine so far (Linux /proc/stat): the hypervisor's share
    taken from this VM, the usual cause of a noisy run."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields[:8]), fields[7]


class MachineProbe:
    """How fast this machine runs the service's kind of work at the moment: the median time of
    the rule engine evaluating the benchmark patient's patient-view in this process (µs), taken
    before every slice while the servers idle. On a shared VM it drifts by half or more within
    minutes, with no steal reported, and the service's figures drift with it."""

    def __init__(self) -> None:
        from cds_service.engine import EngineSettings, load_ruleset

        self.ruleset = load_ruleset(None)
        self.settings = EngineSettings()
        self.ruleset.warm(self.settings)
        self.resources = patient_file(self.ruleset, RESOURCES)
        self.context = {"patientId": next(r["id"] for r in self.resources if r.get("resourceType") == "Patient")}
        self.now = datetime.now(UTC)

    def __call__(self) -> float:
        times = []
        for _ in range(40):
            started = time.perf_counter()
            self.ruleset.evaluate(self.resources, hook="patient-view", context=self.context, now=self.now,
                                  settings=self.settings)
            times.append(time.perf_counter() - started)
        return statistics.median(times) * 1e6


def wait_ready(port: int, path: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", path)
            connection.getresponse().read()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing answered on port {port}")


def body_for(templates: dict[str, str]) -> dict:
    resources = json.loads(RESOURCES.read_text(encoding="utf-8"))
    return {"hook": "patient-view", "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/bench", "patientId": "bench-pt-1"},
            "prefetch": prefetch_for(resources, templates)}


class TokenPool:
    """JWTs signed ahead of time, so the client's signing does not load the machine during a run."""

    def __init__(self, audience: str, count: int, alg: str) -> None:
        self.audience, self.alg = audience, alg
        self.tokens = [tokens.token(audience, alg=alg, lifetime=600) for _ in range(count)]
        self.lock = threading.Lock()

    def headers(self) -> dict[str, str]:
        with self.lock:
            token = self.tokens.pop() if self.tokens else None
        token = token or tokens.token(self.audience, alg=self.alg)
        return {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}


def load(port: int, body: bytes, headers_for, concurrency: int, seconds: float) -> dict:
    """Closed-loop load: `concurrency` threads, each on one keep-alive connection."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        mine: list[float] = []
        while time.monotonic() < stop:
            headers = headers_for()
            started = time.perf_counter()
            connection.request("POST", PATH, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            mine.append(time.perf_counter() - started)
            if response.status != 200:
                with lock:
                    errors[0] += 1
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    latencies.sort()
    quantiles = [latencies[min(len(latencies) - 1, max(0, round(len(latencies) * step / 1000) - 1))] * 1e6
                 for step in range(1, 1001)] if latencies else [0.0] * 1000
    return {"requests": len(latencies), "errors": errors[0], "seconds": elapsed, "quantiles_us": quantiles}


def load_wrk(port: int, body_file: Path, tokens_file: Path | None, concurrency: int, seconds: float) -> dict:
    """Closed-loop load with wrk (C; a Python client would take a core of the two away)."""
    threads = min(2, concurrency)
    command = ["wrk", "-t", str(threads), "-c", str(concurrency), "-d", f"{seconds:.0f}s",
               "-s", str(Path(__file__).with_name("wrk_post.lua")), f"http://127.0.0.1:{port}{PATH}", "--",
               str(body_file)]
    if tokens_file is not None:
        command += [str(tokens_file), str(threads)]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def pooled(slices: list[dict]) -> dict:
    """One run's figures from its slices: requests/s over their time, and p50 / p99 from their
    latency distributions (1,000 quantiles each) weighted by the requests each slice served."""
    requests = sum(s["requests"] for s in slices)
    points = sorted((q, s["requests"] / len(s["quantiles_us"])) for s in slices for q in s["quantiles_us"])

    def percentile(share: float) -> float:
        seen = 0.0
        for value, weight in points:
            seen += weight
            if seen >= share * requests - 1e-9:
                return value / 1000
        return points[-1][0] / 1000 if points else 0.0

    seconds = sum(s["seconds"] for s in slices)
    return {"requests": requests, "errors": sum(s["errors"] for s in slices), "rps": requests / seconds if seconds else 0.0,
            "p50_ms": percentile(0.50), "p99_ms": percentile(0.99),
            "cpu_ms": sum(s["cpu_s"] for s in slices) * 1000 / max(1, requests),
            "steal": 100 * sum(s["stolen"] for s in slices) / max(1, sum(s["ticks"] for s in slices)),
            "probe_us": statistics.median(s.get("probe_us", 0.0) for s in slices) if slices else 0.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="load per target and concurrency (default 15)")
    parser.add_argument("--rounds", type=int, default=5, help="slices each run is cut into, taking turns with the other targets' (default 5)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="threads per worker (default 1: gunicorn's sync worker, as serve --threads 1)")
    parser.add_argument("--algs", default="RS384,ES384", help="JWT algorithms to run the service with (comma-separated)")
    parser.add_argument("--baseline", type=Path,
                        help="a checkout of another version (e.g. `git archive main | tar -x -C DIR`) run as a third "
                             "target in the same rounds, for a before/after ratio on the same machine")
    parser.add_argument("--client", choices=["wrk", "python"], default="wrk" if shutil.which("wrk") else "python",
                        help="load generator (default: wrk when installed: apt-get install wrk)")
    args = parser.parse_args()
    algs = [a.strip() for a in args.algs.split(",") if a.strip()]

    work = Path(tempfile.mkdtemp(prefix="cds-bench-"))
    service_port, echo_port = free_port(), free_port()
    base = f"http://127.0.0.1:{service_port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SARCOPENIA_CDS_")}
    env.update({"SARCOPENIA_CDS_DATABASE__URL": f"sqlite:///{work / 'bench.db'}",
                "SARCOPENIA_CDS_BASE_URL": base, "SARCOPENIA_CDS_RULES__WATCH": "false",
                "SARCOPENIA_CDS_AUTH__ISSUERS": json.dumps([tokens.issuer_config()]),
                "SARCOPENIA_CDS_AUTH__REPLAY_KEY_PREFIX": f"bench:{uuid.uuid4().hex}:",
                "PYTHONPATH": str(ROOT)})
    if args.workers > 1:
        env["SARCOPENIA_CDS_REDIS__URL"] = "redis://127.0.0.1:6379/0"
    service = serve(service_port, args.workers, args.threads, env, work)
    baseline = baseline_port = None
    if args.baseline is not None:
        baseline_port = free_port()
        (work / "baseline").mkdir()
        baseline = serve(baseline_port, args.workers, args.threads,
                         {**env, "PYTHONPATH": str(args.baseline.resolve()),
                          "SARCOPENIA_CDS_BASE_URL": f"http://127.0.0.1:{baseline_port}",
                          "SARCOPENIA_CDS_DATABASE__URL": f"sqlite:///{work / 'baseline' / 'bench.db'}"}, work / "baseline")
    echo = gunicorn("echo_app:app", echo_port, args.workers, args.threads, {**env, "PYTHONPATH": str(ROOT / "bench")}, work)
    try:
        wait_ready(service_port, "/healthz")
        wait_ready(echo_port, "/")
        if baseline_port is not None:
            wait_ready(baseline_port, "/healthz")
        discovery = http.client.HTTPConnection("127.0.0.1", service_port, timeout=5)
        discovery.request("GET", "/cds-services", headers={"Authorization": f"Bearer {tokens.token(base + '/cds-services')}"})
        templates = next(s for s in json.loads(discovery.getresponse().read())["services"]
                         if s["hook"] == "patient-view")["prefetch"]
        body = json.dumps(body_for(templates)).encode()
        audience = base + PATH
        plain = lambda: {"Content-Type": "application/json"}
        # warm-up: every worker thread, both algorithms
        for alg in algs:
            load(service_port, body, TokenPool(audience, 3000, alg).headers, 2, 2.0)
            if baseline_port is not None:
                load(baseline_port, body, TokenPool(f"http://127.0.0.1:{baseline_port}{PATH}", 3000, alg).headers, 2, 2.0)
        load(echo_port, body, plain, 2, 2.0)
        body_file = work / "body.json"
        body_file.write_bytes(body)

        def measure(port: int, alg: str | None, concurrency: int, seconds: float) -> dict:
            """One slice: load, plus the server's CPU time and the machine's stolen ticks meanwhile."""
            process = service if port == service_port else baseline if port == baseline_port else echo
            audience = f"http://127.0.0.1:{port}{PATH}"
            # the tokens are signed first: signing is the client's work, outside the readings
            if args.client == "python":
                headers = TokenPool(audience, int(seconds * 1500) + 3000, alg).headers if alg else plain
                run_load = lambda: load(port, body, headers, concurrency, seconds)  # noqa: E731
            else:
                tokens_file = None
                if alg:
                    tokens_file = work / f"tokens-{alg}-{concurrency}.txt"
                    tokens_file.write_text("\n".join(tokens.token(audience, alg=alg, lifetime=900)
                                                     for _ in range(int(seconds * 1500) + 500)))
                run_load = lambda: load_wrk(port, body_file, tokens_file, concurrency, seconds)  # noqa: E731
            probe = machine_probe()
            before, (total0, stolen0) = cpu_seconds(process), cpu_ticks()
            result = run_load()
            (total, stolen) = cpu_ticks()
            return {**result, "cpu_s": cpu_seconds(process) - before, "ticks": total - total0, "stolen": stolen - stolen0,
                    "probe_us": probe}

        machine_probe = MachineProbe()
        targets = [*((f"service {a}", service_port, a) for a in algs), ("echo", echo_port, None)]
        if baseline_port is not None:
            targets += [(f"baseline {a}", baseline_port, a) for a in algs]
        slice_seconds = args.seconds / args.rounds
        print(f"body {len(body)} bytes, {args.workers} gunicorn workers x {args.threads} threads, {args.seconds:.0f} s per run "
              f"in {args.rounds} slices taking turns, client {args.client}, {os.cpu_count()} cores, "
              f"load average {os.getloadavg()[0]:.2f}")
        print(f"machine probe: {machine_probe():.0f} µs now (the rule engine evaluating this patient in the benchmark's "
              f"process; lower is faster; reported per run as the median over its slices)")
        print(f"{'run':<24}{'requests':>9}{'errors':>8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'CPU ms/req':>12}{'steal %':>9}{'probe µs':>10}")
        slices: dict[tuple[str, int], list[dict]] = {}
        for concurrency in (1, 8):
            for round_ in range(args.rounds):
                turn = round_ % len(targets)  # each target leads in turn
                for name, port, alg in targets[turn:] + targets[:turn]:
                    slices.setdefault((name, concurrency), []).append(measure(port, alg, concurrency, slice_seconds))
            for name, _, _ in targets:
                result = pooled(slices[(name, concurrency)])
                print(f"{name + ' c=' + str(concurrency):<24}{result['requests']:>9}{result['errors']:>8}"
                      f"{result['rps']:>9.0f}{result['p50_ms']:>9.2f}{result['p99_ms']:>9.2f}{result['cpu_ms']:>12.2f}{result['steal']:>9.1f}"
                      f"{result['probe_us']:>10.0f}")
        for alg in algs:
            for concurrency in (1, 8):
                mine, echoes = slices[(f"service {alg}", concurrency)], slices[("echo", concurrency)]
                s, e = pooled(mine), pooled(echoes)
                rounds = [(e1["rps"] / max(1e-9, s1["rps"]), s1["cpu_ms"] / max(1e-9, e1["cpu_ms"]))
                          for s1, e1 in ((pooled([a]), pooled([b])) for a, b in zip(mine, echoes))]
                print(f"{alg} c={concurrency}: service/echo  p50 {s['p50_ms'] / e['p50_ms']:.2f}x  "
                      f"p99 {s['p99_ms'] / e['p99_ms']:.2f}x  throughput {e['rps'] / s['rps']:.2f}x  CPU/request {s['cpu_ms'] / e['cpu_ms']:.2f}x"
                      f"  (rounds: throughput {min(r[0] for r in rounds):.2f}-{max(r[0] for r in rounds):.2f}x, "
                      f"CPU/request {min(r[1] for r in rounds):.2f}-{max(r[1] for r in rounds):.2f}x)")
                if baseline_port is not None:
                    b = pooled(slices[(f"baseline {alg}", concurrency)])
                    print(f"{alg} c={concurrency}: baseline/echo CPU/request {b['cpu_ms'] / e['cpu_ms']:.2f}x, "
                          f"service/baseline CPU/request {s['cpu_ms'] / b['cpu_ms']:.2f}x, "
                          f"throughput {s['rps'] / b['rps']:.2f}x, p99 {s['p99_ms']:.2f} vs {b['p99_ms']:.2f} ms")
        return 0
    finally:
        for process in (service, echo, baseline):
            if process is None:
                continue
            process.terminate()
            process.wait(timeout=20)


if __name__ == "__main__":
    sys.exit(main())
