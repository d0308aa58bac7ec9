"""POST /demo/token: a fresh ES384 JWT for base_url + path, verifiable with the demo JWK Set and
accepted by the service; 404 outside demo mode. The browser never sees the private key."""

from __future__ import annotations

import json
import time

import jwt
import pytest

from tests.demo.conftest import BASE


def _public_key(jwks: dict, kid: str):
    key = next(k for k in jwks["keys"] if k["kid"] == kid)
    assert key["kty"] == "EC" and key["crv"] == "P-384" and "d" not in key  # public only
    return jwt.algorithms.ECAlgorithm.from_jwk(json.dumps(key))


def test_token_claims_and_signature(client, demo_app):
    before = int(time.time())
    answer = client.post("/demo/token", json={"path": "/cds-services/sarcopenia-patient-view"})
    assert answer.status_code == 200
    body = answer.get_json()
    header = jwt.get_unverified_header(body["token"])
    assert header["alg"] == "ES384" and header["typ"] == "JWT"
    jwks = client.get("/demo/jwks.json").get_json()
    claims = jwt.decode(
        body["token"],
        _public_key(jwks, header["kid"]),
        algorithms=["ES384"],
        audience=f"{BASE}/cds-services/sarcopenia-patient-view",
    )
    assert claims["aud"] == f"{BASE}/cds-services/sarcopenia-patient-view"
    assert claims["iss"] == f"{BASE}/demo"
    assert before <= claims["iat"] <= int(time.time())
    assert claims["exp"] - claims["iat"] == 300
    assert claims["jti"]
    # the JWK Set the service trusts is the one the page's tokens verify with
    issuers = demo_app.config["CDS"]["auth"]["issuers"]
    assert [i["iss"] for i in issuers] == [claims["iss"]]
    assert issuers[0]["jwks"] == jwks


def test_each_token_is_fresh(client):
    first = client.post("/demo/token", json={"path": "/cds-services"}).get_json()
    second = client.post("/demo/token", json={"path": "/cds-services"}).get_json()
    assert first["jti"] != second["jti"] and first["token"] != second["token"]


def test_the_service_accepts_the_demo_token_and_still_requires_one(client):
    assert client.get("/cds-services").status_code == 401
    token = client.post("/demo/token", json={"path": "/cds-services"}).get_json()["token"]
    answer = client.get("/cds-services", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200
    assert {s["hook"] for s in answer.get_json()["services"]} == {
        "patient-view",
        "order-select",
        "order-sign",
    }
    # aud is bound to the path: the discovery token does not open a service endpoint
    wrong = client.post(
        "/cds-services/sarcopenia-patient-view",
        json={},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert wrong.status_code == 401


@pytest.mark.parametrize(
    "path",
    [
        None,
        "",
        "/demo/token",
        "/healthz",
        "https://evil.example/cds-services",
        "/cds-services/../admin",
        "/cds-services/x/feedback/more",
    ],
)
def test_only_cds_hooks_paths_are_signed(client, path):
    assert client.post("/demo/token", json={"path": path}).status_code == 400


def test_404_when_not_in_demo_mode(tmp_path):
    from cds_service.app import create_app
    from cds_service.demo import DemoIssuer, build_demo_config, register_demo

    issuer = DemoIssuer(BASE)
    config = build_demo_config("127.0.0.1", 8080, issuer, tmp_path)
    config["demo"] = {"enabled": False}
    config["rules"] = {"watch": False}
    app = create_app(config)
    try:
        register_demo(app, issuer)
        client = app.test_client()
        for method, path in (
            ("POST", "/demo/token"),
            ("GET", "/demo"),
            ("POST", "/demo/fhir-authorization"),
            ("GET", "/demo/fhir/Patient/syn-01"),
            ("GET", "/demo/jwks.json"),
            ("GET", "/trend/syn-01"),
        ):
            assert (
                client.open(path, method=method, json={"path": "/cds-services"}).status_code == 404
            ), path
    finally:
        app.extensions["cds"].store.dispose()


def test_plain_service_has_no_demo_routes(tmp_path):
    from cds_service.app import create_app

    app = create_app(
        {
            "base_url": BASE,
            "database": {"url": f"sqlite:///{tmp_path / 'x.db'}"},
            "rules": {"watch": False},
            "auth": {"required": False},
        }
    )
    try:
        assert (
            app.test_client().post("/demo/token", json={"path": "/cds-services"}).status_code == 404
        )
    finally:
        app.extensions["cds"].store.dispose()


def test_run_demo_config(tmp_path):
    from cds_service.demo import DemoIssuer, build_demo_config

    issuer = DemoIssuer("http://127.0.0.1:9999")
    config = build_demo_config("127.0.0.1", 9999, issuer, tmp_path)
    assert config["auth"]["required"] is True
    assert config["auth"]["issuers"][0]["iss"] == "http://127.0.0.1:9999/demo"
    assert "d" not in config["auth"]["issuers"][0]["jwks"]["keys"][0]  # no private part
    assert config["demo"] == {"enabled": True}
    assert config["database"]["url"] == f"sqlite:///{tmp_path / 'sarcopenia-cds-demo.db'}"
    assert config["base_url"] == "http://127.0.0.1:9999"
