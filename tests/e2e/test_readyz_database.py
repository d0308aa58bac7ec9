"""/readyz follows the real database: PostgreSQL stopped → 503, started again → 200, no service restart."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.support.pg import temporary_database
from tests.support.server import running_service

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.pg_restart]


def cluster(action: str) -> None:
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[0]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action],
                   check=True, capture_output=True, timeout=60)


def wait_status(base: str, status: int, seconds: float = 20.0) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        response = requests.get(base + "/readyz", timeout=10)
        if response.status_code == status:
            return response.json()
        if time.monotonic() > deadline:
            raise AssertionError(f"/readyz stayed {response.status_code}: {response.text}")
        time.sleep(0.3)


def test_readyz_turns_unhealthy_without_the_database_and_recovers(tmp_path):
    with temporary_database("cds_readyz") as url, running_service(url, tmp_path) as (base, process):
        assert wait_status(base, 200)["database"] == "ok"
        try:
            cluster("stop")
            down = wait_status(base, 503)
            assert down == {"status": "unavailable", "database": "unreachable", "rules": down["rules"]}
            assert requests.get(base + "/healthz", timeout=5).status_code == 200  # alive, not ready
        finally:
            cluster("start")
        assert wait_status(base, 200, seconds=30)["database"] == "ok"
        assert process.poll() is None
