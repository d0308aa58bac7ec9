"""A service app with the SMART launch registered, a fake SMART EHR, and the browser's round trip."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.smart.fake_ehr import FakeSmartEhr, load_bundle

CLIENT_ID = "trend-app"
LAUNCH = "launch-ctx-123"


@pytest.fixture()
def fake_ehr():
    with FakeSmartEhr(load_bundle(), client_id=CLIENT_ID) as server:
        yield server


@pytest.fixture()
def smart_app(make_app, fake_ehr):
    """make an app whose `smart` section is `smart_overrides` on top of a working default."""
    from cds_service.smart import register_smart

    def build(**smart_overrides: Any):
        app = make_app()
        smart = {
            "enabled": True,
            "client_id": CLIENT_ID,
            "allowed_issuers": [fake_ehr.iss],
            **smart_overrides,
        }
        register_smart(app, {**app.config["CDS"], "smart": smart})
        return app

    return build


def launch(client, iss: str, launch_id: str = LAUNCH):
    return client.get("/trend/launch", query_string={"iss": iss, "launch": launch_id})


def authorize(location: str) -> str:
    """What the browser does at the EHR's authorize endpoint: follow to the redirect_uri."""
    answer = requests.get(location, allow_redirects=False, timeout=5)
    assert answer.status_code == 302, answer.text
    return answer.headers["Location"]


def callback(client, redirect_location: str, **replace: str):
    """GET the callback on the app (path + query only, so the test client's cookies apply)."""
    parts = urlsplit(redirect_location)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(replace)
    return client.get(parts.path, query_string=query)


def full_flow(client, fake: FakeSmartEhr):
    started = launch(client, fake.iss)
    assert started.status_code == 302, started.get_data(as_text=True)
    return callback(client, authorize(started.headers["Location"]))
