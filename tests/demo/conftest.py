"""A demo app (create_demo_app in a temp dir, real clock: the demo data are moved to today)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

BASE = "http://127.0.0.1:8080"


@pytest.fixture()
def demo_app(tmp_path):
    from cds_service.demo import create_demo_app

    app = create_demo_app(
        "127.0.0.1",
        8080,
        tmp_path,
        clock=lambda: datetime.now(timezone.utc),
        overrides={"rules": {"watch": False}},
    )
    yield app
    app.extensions["cds"].store.dispose()


@pytest.fixture()
def client(demo_app):
    return demo_app.test_client()


@pytest.fixture()
def fhir_token(client):
    def grant(patient: str = "syn-01") -> dict:
        answer = client.post("/demo/fhir-authorization", json={"patient": patient})
        assert answer.status_code == 200
        return {"Authorization": f"Bearer {answer.get_json()['access_token']}"}

    return grant
