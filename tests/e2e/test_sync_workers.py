"""`serve --threads 1` runs gunicorn's sync worker: one call at a time per worker, no keep-alive."""

from __future__ import annotations

import importlib

import pytest
import requests

from cds_service import cli
from tests.e2e.test_server_process import patient_now, signed
from tests.support.ehr import hook_request, prefetch_for
from tests.support.server import running_service


SYNC, GTHREAD = "cds_service.workers.SyncWorker", "cds_service.workers.ThreadWorker"


def test_one_thread_is_the_sync_worker_more_is_gthread():
    assert cli.worker_class(1) == SYNC
    assert cli.worker_class(2) == GTHREAD
    assert cli.worker_class(8) == GTHREAD


@pytest.mark.parametrize(("threads", "expected"), [("1", SYNC), ("4", GTHREAD)])
def test_gunicorn_conf_follows_the_same_rule(monkeypatch, threads, expected):
    monkeypatch.setenv("GUNICORN_THREADS", threads)
    import cds_service.gunicorn_conf as conf

    conf = importlib.reload(conf)
    assert (conf.worker_class, conf.threads) == (expected, int(threads))


@pytest.mark.slow
def test_sync_worker_answers_calls_each_on_its_own_connection(tmp_path):
    with running_service(f"sqlite:///{tmp_path / 'cds.db'}", tmp_path, threads=1) as (base, _process):
        discovery = requests.get(base + "/cds-services", headers=signed(base, "/cds-services"), timeout=5)
        service = next(s for s in discovery.json()["services"] if s["hook"] == "patient-view")
        path = f"/cds-services/{service['id']}"
        body = hook_request("patient-view", "sev-1", prefetch_for(patient_now(), service["prefetch"]))
        with requests.Session() as session:  # the session would keep the connection if it could
            answers = [session.post(base + path, json=body, headers=signed(base, path), timeout=10) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert [a.json()["cards"][0]["source"]["topic"]["code"] for a in answers] == ["severe-sarcopenia"] * 3
        assert [a.headers.get("Connection") for a in answers] == ["close"] * 3
        assert "SyncWorker" in (tmp_path.glob("server-*.log").__next__().read_text())
