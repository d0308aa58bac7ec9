"""Flask integration via init_auth: 401 shape, public paths, CORS preflight, no token in logs."""

from __future__ import annotations

import json
import logging

import pytest
from authkit import BASE_URL, ISS, bearer, claims, jwk_set, sign
from flask import Flask, g, jsonify

from cds_service.auth import Authenticator, init_auth

EXPECTED_401 = {"resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "login", "diagnostics": "Unauthorized"}]}
SERVICE = "/cds-services/sarcopenia-screen"


def build_app(auth, origins=("*",), auth_cfg=None, **init_kwargs):
    """A tiny app with CDS-like routes; ``app.calls`` counts view invocations."""
    app = Flask(__name__)
    app.calls = 0

    def view(**_):
        app.calls += 1
        claims_ = g.jwt_claims
        return jsonify({"iss": claims_["iss"] if claims_ else None})

    for rule, methods in [("/cds-services", ["GET"]), ("/cds-services/<sid>", ["POST"]),
                          ("/cds-services/<sid>/feedback", ["POST"]), ("/healthz", ["GET"]),
                          ("/metrics", ["GET"]), ("/demo/ehr", ["GET"]), ("/trend/p1", ["GET"]),
                          ("/admin", ["GET"]), ("/openapi.json", ["GET"])]:
        app.add_url_rule(rule, rule, view, methods=methods)
    config = {"auth": auth_cfg or {"required": True}, "cors": {"origins": list(origins)}}
    init_auth(app, auth, config, **init_kwargs)
    return app


@pytest.fixture
def auth(keys):
    return Authenticator({"issuers": [{"iss": ISS, "jwks": jwk_set(keys["ES384"], keys["RS384"])}]},
                         BASE_URL)


def token_for(keys, path=SERVICE, **kw):
    return sign(keys["ES384"], claims(aud=BASE_URL + path, **kw))


def test_valid_token_reaches_view_with_claims(auth, keys):
    app = build_app(auth)
    headers = {"Authorization": bearer(token_for(keys))}
    resp = app.test_client().post(SERVICE, json={}, headers=headers)
    assert resp.status_code == 200 and resp.get_json() == {"iss": ISS} and app.calls == 1


@pytest.mark.parametrize("header", [None, "Bearer garbage", "Basic dXNlcjpwYXNz"])
def test_401_body_and_header_exact_and_view_not_called(auth, header):
    app = build_app(auth)
    headers = {"Authorization": header} if header else {}
    resp = app.test_client().post(SERVICE, json={}, headers=headers)
    assert resp.status_code == 401
    assert resp.get_data() == json.dumps(EXPECTED_401, separators=(",", ":")).encode()
    assert resp.get_json() == EXPECTED_401
    assert resp.headers["WWW-Authenticate"] == "Bearer"
    assert app.calls == 0


def test_every_attack_is_a_bare_401_at_http_level(auth, keys, other_key):
    app = build_app(auth)
    client = app.test_client()
    attacks = [
        sign(other_key, claims(aud=BASE_URL + SERVICE), kid=keys["ES384"].kid),
        token_for(keys, path="/cds-services/other"),
        token_for(keys, lifetime=5000),
        token_for(keys, iss="https://evil.example.org"),
    ]
    for token in attacks:
        resp = client.post(SERVICE, json={}, headers={"Authorization": bearer(token)})
        assert resp.status_code == 401 and resp.get_json() == EXPECTED_401
    assert app.calls == 0


def test_replay_at_http_level(auth, keys):
    app = build_app(auth)
    client = app.test_client()
    headers = {"Authorization": bearer(token_for(keys))}
    assert client.post(SERVICE, json={}, headers=headers).status_code == 200
    assert client.post(SERVICE, json={}, headers=headers).status_code == 401
    assert app.calls == 1


def test_feedback_needs_its_own_aud(auth, keys):
    app = build_app(auth)
    client = app.test_client()
    path = SERVICE + "/feedback"
    wrong = {"Authorization": bearer(token_for(keys))}
    right = {"Authorization": bearer(token_for(keys, path=path))}
    assert client.post(path, json={}, headers=wrong).status_code == 401
    assert client.post(path, json={}, headers=right).status_code == 200


def test_discovery_requires_token_by_default(auth, keys):
    client = build_app(auth).test_client()
    assert client.get("/cds-services").status_code == 401
    ok = client.get("/cds-services",
                    headers={"Authorization": bearer(token_for(keys, path="/cds-services"))})
    assert ok.status_code == 200


def test_discovery_public_when_configured(keys):
    auth = Authenticator({"discovery_requires_auth": False,
                          "issuers": [{"iss": ISS, "jwks": jwk_set(keys["ES384"])}]}, BASE_URL)
    app = build_app(auth)
    client = app.test_client()
    assert client.get("/cds-services").status_code == 200
    assert client.post(SERVICE, json={}).status_code == 401  # service calls still protected


def test_public_paths_pass_without_token_and_unknown_paths_fail_closed(auth):
    app = build_app(auth)
    client = app.test_client()
    for path in ("/healthz", "/metrics", "/demo/ehr", "/trend/p1", "/openapi.json"):
        assert client.get(path).status_code == 200, path
    assert client.get("/static/missing.js").status_code == 404  # passes auth, no such file
    assert client.get("/admin").status_code == 401
    assert client.get("/demo/../admin").status_code == 401  # dot segments are never public
    assert build_app(auth, extra_public={"/admin"}).test_client().get("/admin").status_code == 200


def test_preflight_answered_without_jwt_with_cors_headers(auth):
    app = build_app(auth)
    resp = app.test_client().options(SERVICE, headers={
        "Origin": "https://ehr.example.org", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert resp.status_code == 204
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert resp.headers["Access-Control-Allow-Headers"] == "Authorization, Content-Type"
    assert resp.headers["Access-Control-Allow-Methods"] == "GET, POST, OPTIONS"
    assert int(resp.headers["Access-Control-Max-Age"]) > 0
    assert app.calls == 0


def test_cors_origin_list_echoes_allowed_origin_and_varies(auth, keys):
    app = build_app(auth, origins=["https://ehr.example.org"])
    client = app.test_client()
    resp = client.post(SERVICE, json={}, headers={"Origin": "https://ehr.example.org",
                                                  "Authorization": bearer(token_for(keys))})
    assert resp.headers["Access-Control-Allow-Origin"] == "https://ehr.example.org"
    assert "Origin" in resp.headers["Vary"]
    denied = client.post(SERVICE, json={}, headers={"Origin": "https://evil.example.org"})
    assert "Access-Control-Allow-Origin" not in denied.headers
    assert "Origin" in denied.headers["Vary"]
    pre = client.options(SERVICE, headers={"Origin": "https://evil.example.org",
                                           "Access-Control-Request-Method": "POST"})
    assert pre.status_code == 204 and "Access-Control-Allow-Origin" not in pre.headers


def test_401_carries_cors_header_so_browsers_can_read_it(auth):
    resp = build_app(auth).test_client().post(SERVICE, json={},
                                              headers={"Origin": "https://ehr.example.org"})
    assert resp.status_code == 401 and resp.headers["Access-Control-Allow-Origin"] == "*"
    assert "Vary" not in resp.headers


def test_no_cors_headers_when_no_origins(auth):
    resp = build_app(auth, origins=()).test_client().get(
        "/healthz", headers={"Origin": "https://ehr.example.org"})
    assert "Access-Control-Allow-Origin" not in resp.headers


def test_tokens_never_logged_but_reason_endpoint_iss_kid_are(auth, keys, other_key, caplog):
    app = build_app(auth)
    client = app.test_client()
    tokens = [sign(other_key, claims(aud=BASE_URL + SERVICE), kid=keys["ES384"].kid),
              token_for(keys, lifetime=5000), token_for(keys, path="/x"), "abc.def.ghi"]
    good = token_for(keys)
    with caplog.at_level(logging.DEBUG):
        for token in tokens:
            client.post(SERVICE, json={}, headers={"Authorization": bearer(token)})
        client.post(SERVICE, json={}, headers={"Authorization": bearer(good)})
        client.post(SERVICE, json={}, headers={"Authorization": bearer(good)})  # replay
    rejected = [r for r in caplog.records if r.getMessage() == "auth rejected"]
    assert len(rejected) == len(tokens) + 1
    assert all(r.levelno == logging.WARNING and r.endpoint == "/cds-services/<sid>" for r in rejected)  # the route, not the path
    assert rejected[0].reason == "signature invalid" and rejected[0].iss == ISS
    assert rejected[0].kid == keys["ES384"].kid and rejected[-1].reason == "jti replayed"
    from cds_service.logs import JsonFormatter, TextFormatter

    formatted = [f.format(r) for r in caplog.records for f in (JsonFormatter(), TextFormatter())]
    assert '"reason": "signature invalid"' in formatted[0] or "signature invalid" in formatted[0]
    everything = caplog.text + " ".join(str(vars(r)) for r in caplog.records) + " ".join(formatted)
    for token in tokens + [good]:
        assert token not in everything
        assert token.split(".")[2] not in everything  # not even the signature


def test_aud_trailing_slash_and_proxy_base_url_at_http_level(keys):
    auth = Authenticator({"issuers": [{"iss": ISS, "jwks": jwk_set(keys["ES384"])}]},
                         "https://CDS.example.org:443/")
    app = build_app(auth)
    token = sign(keys["ES384"], claims(aud="https://cds.example.org" + SERVICE + "/"))
    assert app.test_client().post(SERVICE, json={},
                                  headers={"Authorization": bearer(token)}).status_code == 200


def test_init_auth_refuses_required_without_authenticator():
    with pytest.raises(ValueError):
        build_app(None)


def test_auth_not_required_passes_everything_with_no_claims():
    app = build_app(None, auth_cfg={"required": False})
    assert app.test_client().post(SERVICE, json={}).get_json() == {"iss": None}
