"""Graceful shutdown under gunicorn: SIGTERM lets the request in flight finish, then the process exits 0."""

from __future__ import annotations

import signal
import threading
import time

import pytest
import requests

from tests.support import tokens
from tests.support.ehr import hook_request
from tests.support.fhir_server import FhirTestServer
from tests.support.patients import severe_sarcopenia
from tests.support.server import running_service

pytestmark = pytest.mark.slow


def test_sigterm_waits_for_the_request_in_flight(tmp_path):
    with FhirTestServer(severe_sarcopenia(), page_size=50) as fhir, \
            running_service(f"sqlite:///{tmp_path / 'cds.db'}", tmp_path) as (base, process):
        fhir.mode = "slow"
        fhir.delay = 1.0  # each FHIR answer takes 1 s: the call is in flight when SIGTERM arrives
        path = "/cds-services/sarcopenia-patient-view"
        body = hook_request("patient-view", "sev-1")
        body["fhirServer"] = fhir.base
        body["fhirAuthorization"] = {"access_token": "at", "token_type": "Bearer", "expires_in": 300,
                                     "scope": "patient/*.read", "subject": "cds"}
        result = {}

        def call():
            result["response"] = requests.post(base + path, json=body, timeout=20,
                                               headers={"Authorization": f"Bearer {tokens.token(base + path)}"})

        caller = threading.Thread(target=call)
        caller.start()
        deadline = time.monotonic() + 5
        while not fhir.requests and time.monotonic() < deadline:
            time.sleep(0.02)
        assert fhir.requests, "the call reached the FHIR server"
        process.send_signal(signal.SIGTERM)
        caller.join(timeout=20)
        assert result["response"].status_code == 200
        assert result["response"].json()["cards"]
        assert process.wait(timeout=25) == 0
