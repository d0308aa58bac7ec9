"""/admin with an OpenID Connect issuer: JWKS found through discovery, audience and role checked;
and retention.days purging what is older than the limit."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from cds_service.app import create_app
from cds_service.store import Store
from tests.conftest import NOW, service_config

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
AUDIENCE = "sarcopenia-cds-admin"


@pytest.fixture(scope="module")
def issuer():
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(KEY.public_key()))
    jwk.update({"kid": "k1", "alg": "RS256", "use": "sig"})
    box: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            if self.path == "/.well-known/openid-configuration":
                body = {"issuer": box["url"], "jwks_uri": box["url"] + "/jwks"}
            elif self.path == "/jwks":
                body = {"keys": [jwk]}
            else:
                self.send_response(404)
                self.end_headers()
                return
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield box["url"]
    server.shutdown()


def bearer(issuer, *, key=KEY, aud=AUDIENCE, roles=("cds-governance",), lifetime=300, sub="u-42"):
    now = int(time.time())
    token = jwt.encode({"iss": issuer, "aud": aud, "sub": sub, "iat": now, "exp": now + lifetime,
                        "realm_access": {"roles": list(roles)}}, key, algorithm="RS256", headers={"kid": "k1"})
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture()
def client(issuer, tmp_path):
    app = create_app(service_config(tmp_path, admin={"oidc_issuer": issuer, "audience": AUDIENCE,
                                                     "role_claim": "realm_access.roles"}), clock=lambda: NOW)
    yield app.test_client()
    app.extensions["cds"].store.dispose()


def test_a_token_of_the_issuer_with_the_role_is_accepted_and_audited(client, issuer):
    response = client.get("/admin/report?since=2026-11-01&format=json", headers=bearer(issuer))
    assert response.status_code == 200 and response.get_json()["findings"] == []
    audit = client.application.extensions["cds"].store.audit_log()
    assert [(a["actor"], a["action"]) for a in audit] == [("oidc:u-42", "report")]
    assert client.get("/admin/report?since=2026-11-01", headers=bearer(issuer)).status_code == 200


@pytest.mark.parametrize(("make", "status", "message"), [
    (lambda iss: bearer(iss, roles=("viewer",)), 403,
     "the token lacks the role 'cds-governance' in claim 'realm_access.roles'"),
    (lambda iss: bearer(iss, aud="another-app"), 401, "the bearer token is not valid for /admin"),
    (lambda iss: bearer(iss, key=OTHER_KEY), 401, "the bearer token is not valid for /admin"),
    (lambda iss: bearer(iss, lifetime=-120), 401, "the bearer token is not valid for /admin"),
    (lambda iss: bearer("https://elsewhere.test"), 401, "the bearer token is not valid for /admin"),
])
def test_tokens_that_do_not_qualify_are_refused(client, issuer, make, status, message):
    response = client.get("/admin/report", headers=make(issuer))
    assert response.status_code == status
    assert [i["diagnostics"] for i in response.get_json()["issue"]] == [message]
    assert client.get("/admin/report", headers=bearer(issuer)).status_code == 200  # the next good one passes


def test_retention_purges_what_is_older_than_the_limit(tmp_path):
    url = f"sqlite:///{tmp_path / 'cds.db'}"
    store = Store(url, "k" * 32)
    store.migrate()
    now = datetime.now(UTC)
    for n, at in enumerate((now - timedelta(days=400), now - timedelta(days=10))):
        store.record_call(hook_instance=f"hi-{n}", service_id="sarcopenia-patient-view", hook="patient-view",
                          patient_id="p", pack_version="v", called_at=at, duration_ms=1.0,
                          cards=[{"uuid": f"card-{n}", "primary": "cachexia", "suggestions": {f"s-{n}": "x"}}],
                          states=[("low-smi", "suppressed", None)])
        stamp = (at + timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
        store.record_feedback("sarcopenia-patient-view", [{"card": f"card-{n}", "outcome": "accepted",
                                                          "outcomeTimestamp": stamp}], at + timedelta(minutes=1))
        store.audit("token:x", "report", {}, at)
    store.dispose()
    app = create_app(service_config(tmp_path, database={"url": url}, privacy={"pseudonym_key": "k" * 32},
                                    retention={"days": 365}))
    store = app.extensions["cds"].store
    try:
        stats = store.stats()
        assert (stats["cards"], stats["suggestions"], stats["feedback"]) == (1, 1, 1)
        assert [c["hook_instance"] for c in store.explain_call("hi-1")] == ["hi-1"]
        assert store.explain_call("hi-0") == []
        assert len(store.audit_log()) == 1
        first, _last = store.coverage()
        assert first > now - timedelta(days=11)
    finally:
        store.dispose()
