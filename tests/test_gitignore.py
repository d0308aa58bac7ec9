"""Every file the service writes in its working folder is in .gitignore (a real service run lists them)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from tests.support import tokens
from tests.support.ehr import hook_request, prefetch_for
from tests.support.patients import severe_sarcopenia
from tests.support.server import running_service

ROOT = Path(__file__).resolve().parents[1]


def ignored(name: str) -> bool:
    return subprocess.run(["git", "check-ignore", "-q", "--no-index", name], cwd=ROOT).returncode == 0


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
@pytest.mark.parametrize("name", [
    "sarcopenia-cds.db", "sarcopenia-cds.db-wal", "sarcopenia-cds.db-shm", "sarcopenia-cds.db-journal",
    "sarcopenia-cds.db-writelock", "sarcopenia-cds.db-cards.journal", "sarcopenia-cds.db-cards.journal.append-lock",
    "sarcopenia-cds.db-cards.journal.flush-lock", "sarcopenia-cds.db-cards.journal.20261208T030000.123.flushing",
    "sarcopenia-cds.db-cards.journal.rejected", "sarcopenia-cds-demo.db", "sarcopenia-cds-demo.db-cards.journal",
    "cds-client-key.pem", "cds-client-jwks.json", "keys/cds-client-key.pem", "test-artifacts/browser/x.png",
])
def test_known_service_files_are_ignored(name):
    assert ignored(name), f"{name} is not in .gitignore"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_every_file_a_real_service_run_writes_is_ignored(tmp_path):
    with running_service("sqlite:///sarcopenia-cds.db", tmp_path) as (base, _process):
        discovery = requests.get(base + "/cds-services", timeout=5,
                                 headers={"Authorization": f"Bearer {tokens.token(base + '/cds-services')}"}).json()
        service = next(s for s in discovery["services"] if s["hook"] == "patient-view")
        path = f"/cds-services/{service['id']}"
        body = hook_request("patient-view", "sev-1", prefetch_for(severe_sarcopenia(), service["prefetch"]))
        answer = requests.post(base + path, json=body, timeout=15,
                               headers={"Authorization": f"Bearer {tokens.token(base + path)}"})
        assert answer.status_code == 200
        written = {p.name for p in tmp_path.iterdir() if not p.name.startswith("server-")}  # the test's own log
    assert "sarcopenia-cds.db" in written
    assert [name for name in sorted(written) if not ignored(name)] == []
