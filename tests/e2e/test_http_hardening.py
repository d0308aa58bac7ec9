"""The real server against slow and oversized requests (issue 16, items 8 and 9): a slow-header
client cannot stall the service, oversized headers are answered with an OperationOutcome, and
/metrics is served on its own internal port. Bounded in time; loopback only."""

from __future__ import annotations

import json
import socket
import time

import pytest
import requests

from tests.e2e.test_server_process import signed
from tests.support.server import free_port, running_service


def _raw(base: str, data: bytes, timeout: float = 10.0) -> bytes:
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def _slow_clients(base: str, count: int) -> list[socket.socket]:
    """Connections that send the start of a request and then one header byte now and then."""
    host, port = base.removeprefix("http://").split(":")
    clients = []
    for _ in range(count):
        sock = socket.create_connection((host, int(port)), timeout=5)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        clients.append(sock)
    return clients


@pytest.mark.slow
@pytest.mark.parametrize(("threads", "slow"), [(1, 1), (8, 12)], ids=["sync-1-slow", "gthread-12-slow"])
def test_slow_header_clients_do_not_stall_the_service(tmp_path, threads, slow):
    """Slow-header connections against 1 worker: each is cut after REQUEST_READ_SECONDS (10 s),
    and a good request is answered meanwhile or right after. gthread (8 threads) with 12 of
    them; the sync worker, which reads one connection at a time, with one (more of them wait
    in turn: docs/security.md leaves slow clients to the reverse proxy)."""
    with running_service(f"sqlite:///{tmp_path / 'cds.db'}", tmp_path, threads=threads) as (base, _process):
        clients = _slow_clients(base, slow)
        try:
            started = time.monotonic()
            answered = None
            while time.monotonic() - started < 25:  # bounded: the deadline is 10 s, gunicorn's timeout 30 s
                for sock in clients:
                    try:
                        sock.sendall(b"a")
                    except OSError:
                        pass
                try:
                    if requests.get(base + "/healthz", timeout=2).status_code == 200:
                        answered = time.monotonic() - started
                        break
                except requests.RequestException:
                    pass
                time.sleep(0.5)
            assert answered is not None, "the service stalled for 25 s"
            assert answered < 13.0, f"a good request waited {answered:.1f} s"
            closed = 0
            for sock in clients:  # every slow connection is cut by the deadline
                sock.settimeout(15)
                try:
                    closed += sock.recv(1) == b""
                except OSError:
                    closed += 1
            assert closed == len(clients)
        finally:
            for sock in clients:
                sock.close()
        assert requests.get(base + "/healthz", timeout=5).status_code == 200


@pytest.mark.slow
def test_oversized_headers_get_an_operation_outcome_and_the_next_request_is_answered(tmp_path):
    with running_service(f"sqlite:///{tmp_path / 'cds.db'}", tmp_path) as (base, _process):
        answer = _raw(base, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n")
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.splitlines()[0] == b"HTTP/1.1 431 Request Header Fields Too Large"
        assert b"Content-Type: application/json" in head
        assert json.loads(body) == {"resourceType": "OperationOutcome", "issue": [{
            "severity": "error", "code": "too-long",
            "diagnostics": "the request headers are larger than the limits: at most 100 fields of at most "
                           "8190 bytes each"}]}
        line = _raw(base, b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert line.split(b"\r\n", 1)[0] == b"HTTP/1.1 414 URI Too Long"
        assert json.loads(line.partition(b"\r\n\r\n")[2])["issue"][0]["diagnostics"] == \
            "the request line is longer than 4094 bytes"
        assert requests.get(base + "/healthz", timeout=5).status_code == 200
        log = next(tmp_path.glob("server-*.log")).read_text()
        assert "aaaa" not in log, "the request line or header went into the log"


@pytest.mark.slow
def test_metrics_on_their_own_port_and_not_on_the_service_port(tmp_path):
    metrics_port = free_port()
    with running_service(f"sqlite:///{tmp_path / 'cds.db'}", tmp_path, workers=2,
                         extra_env={"SARCOPENIA_CDS_METRICS__PORT": str(metrics_port)}) as (base, _process):
        public = requests.get(base + "/metrics", timeout=5)
        assert public.status_code == 404
        assert public.json()["issue"][0]["diagnostics"] == f"metrics are served on the internal metrics port {metrics_port}"
        assert requests.get(base + "/cds-services", headers=signed(base, "/cds-services"), timeout=5).status_code == 200
        deadline = time.monotonic() + 10
        while True:
            try:
                internal = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "the metrics port never opened"
                time.sleep(0.2)
        assert internal.status_code == 200
        assert 'cds_requests_total{hook="discovery",status="200"} 1.0' in internal.text
        assert requests.get(base + "/healthz", timeout=5).status_code == 200
