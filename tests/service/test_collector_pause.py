"""Large requests run with the garbage collector paused (cds_service/api/http.py CollectorPause)."""

from __future__ import annotations

import gc
import json

import pytest

from cds_service.api.http import GC_PAUSE_BYTES, CollectorPause, parse_json
from cds_service.app import create_app


@pytest.fixture
def collector_on():
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def test_overlapping_pauses_resume_the_collector_when_the_last_ends(collector_on):
    pause = CollectorPause()
    pause.pause()
    pause.pause()
    assert not gc.isenabled()
    pause.resume()
    assert not gc.isenabled()  # the other request is still running
    pause.resume()
    assert gc.isenabled()


def test_a_collector_switched_off_before_stays_off(collector_on):
    gc.disable()
    with CollectorPause().paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_a_large_body_is_parsed_with_the_collector_paused_and_resumed_after(collector_on, monkeypatch):
    seen = []
    import orjson

    real = orjson.loads
    monkeypatch.setattr(orjson, "loads", lambda raw: seen.append(gc.isenabled()) or real(raw))
    large = json.dumps({"x": "y" * GC_PAUSE_BYTES}).encode()
    assert parse_json(large) == {"x": "y" * GC_PAUSE_BYTES}
    assert parse_json(b'{"a": 1}') == {"a": 1}
    assert seen == [False, True]
    assert gc.isenabled()


@pytest.mark.parametrize("body", ["valid", "not JSON"])
def test_a_large_request_resumes_the_collector_when_it_ends(collector_on, tmp_path, body):
    app = create_app({"database": {"url": f"sqlite:///{tmp_path / 'c.db'}"}, "auth": {"required": False},
                      "rules": {"watch": False}, "limits": {"max_body_bytes": 4 * GC_PAUSE_BYTES}})
    during = []

    @app.before_request
    def look():  # runs after the service's own before_request functions
        during.append(gc.isenabled())

    padding = [{"resource": {"resourceType": "Basic", "id": f"b{i}", "code": {"text": "x" * 200}}}
               for i in range(GC_PAUSE_BYTES // 200)]
    document = {"hook": "patient-view", "hookInstance": "d1c4c1a6-7b6f-4e5b-9f11-5a4c2d1e0f01",
                "context": {"userId": "Practitioner/1", "patientId": "p1"},
                "prefetch": {"patient": {"resourceType": "Patient", "id": "p1"},
                             "extra": {"resourceType": "Bundle", "type": "searchset", "entry": padding}}}
    raw = json.dumps(document).encode() if body == "valid" else b"{" + b" " * GC_PAUSE_BYTES
    response = app.test_client().post("/cds-services/sarcopenia-patient-view", data=raw,
                                      content_type="application/json")
    assert response.status_code in (200, 400, 412)
    assert during == [False]
    assert gc.isenabled()
    small = app.test_client().get("/healthz")
    assert small.status_code == 200 and during == [False, True]
