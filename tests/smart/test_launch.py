"""The SMART EHR launch end to end against a fake EHR: launch → authorize → callback → trend page."""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, urlsplit

import fakeredis
import pytest

from cds_service.smart import (
    MemorySessionStore,
    RedisSessionStore,
    SmartConfigError,
    register_smart,
)
from cds_service.smart.oauth import challenge_of
from tests.smart.conftest import CLIENT_ID, LAUNCH, authorize, callback, full_flow, launch

SVG = "{http://www.w3.org/2000/svg}"


def charts(html: str) -> dict[str, ET.Element]:
    return {
        ET.fromstring(svg).get("data-chart"): ET.fromstring(svg)
        for svg in re.findall(r"<svg .*?</svg>", html, flags=re.DOTALL)
    }


def test_launch_redirects_to_authorize_with_pkce_state_aud_launch_and_scopes(smart_app, fake_ehr):
    client = smart_app().test_client()
    answer = launch(client, fake_ehr.iss)
    assert answer.status_code == 302
    location = urlsplit(answer.headers["Location"])
    assert (
        f"{location.scheme}://{location.netloc}{location.path}"
        == f"{fake_ehr.origin}/auth/authorize"
    )
    params = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert params["response_type"] == "code"
    assert params["client_id"] == CLIENT_ID
    assert params["redirect_uri"] == "http://cds.test/trend/callback"
    assert params["scope"].split() == [
        "launch",
        "openid",
        "fhirUser",
        "patient/Patient.read",
        "patient/Observation.read",
        "patient/MedicationRequest.read",
        "patient/Condition.read",
    ]
    assert params["aud"] == fake_ehr.iss and params["launch"] == LAUNCH
    assert params["code_challenge_method"] == "S256" and re.fullmatch(
        r"[A-Za-z0-9_-]{43}", params["code_challenge"]
    )
    assert len(params["state"]) >= 40
    assert answer.headers["Cache-Control"] == "no-store"
    # the only request so far: the issuer's smart-configuration
    assert [r["path"] for r in fake_ehr.requests] == ["/fhir/.well-known/smart-configuration"]


def test_full_flow_renders_the_demo_svg_with_weight_polyline_and_cutoffs(smart_app, fake_ehr):
    client = smart_app().test_client()
    page = full_flow(client, fake_ehr)
    html = page.get_data(as_text=True)
    assert page.status_code == 200, html
    assert (
        page.headers["Cache-Control"] == "no-store"
        and page.headers["Referrer-Policy"] == "no-referrer"
    )
    # the fake authorize endpoint received everything a SMART EHR launch needs
    (params,) = fake_ehr.authorize_params
    assert params["launch"] == LAUNCH and params["aud"] == fake_ehr.iss and params["code_challenge"]
    # the token endpoint got the verifier of that challenge (it would have refused otherwise)
    (token_call,) = [r for r in fake_ehr.requests if r["path"] == "/auth/token"]
    assert challenge_of(token_call["form"]["code_verifier"]) == params["code_challenge"]
    assert token_call["form"]["client_id"] == CLIENT_ID and token_call["authorization"] is None
    assert fake_ehr.token_errors == []
    # the FHIR API was read with the token, and Observation paging followed next links
    fhir = fake_ehr.fhir_requests()
    assert fhir and all(r["authorization"] == f"Bearer {next(iter(fake_ehr.tokens))}" for r in fhir)
    assert next(r["path"] for r in fhir) == "/fhir/Patient/syn-01"
    observation_pages = [r for r in fhir if r["path"] == "/fhir/Observation"]
    assert len(observation_pages) > 1 and "_page=1" in observation_pages[1]["query"]
    assert "code=" in observation_pages[0]["query"]  # only the charts' codes are asked for
    # the same SVG as the demo: five charts, the weight polyline, the cut-off lines
    svgs = charts(html)
    assert list(svgs) == ["weight", "bmi", "grip", "gait", "smi"]
    polyline = svgs["weight"].find(f"{SVG}polyline[@data-series='weight']")
    assert (
        polyline is not None and len(polyline.get("points").split()) == 5
    )  # five weights of patient 01
    assert svgs["weight"].find(f"{SVG}line[@class='cutoff relative']") is not None
    assert svgs["grip"].find(f"{SVG}line[@data-parameter='grip_low']").get("data-value") == "16"
    assert svgs["smi"].find(f"{SVG}line[@data-parameter='smi_low']").get("data-value") == "41"
    assert [
        c.get("data-reference") for c in svgs["weight"].findall(f"{SVG}line[@class='chemo']")
    ] == ["MedicationRequest/syn-01-mr-19"]
    assert "Synthetic, Ada" in html and "Traceback" not in html
    assert "Pancreatic ductal adenocarcinoma, head" in html  # the Condition in malignant-neoplasm


def test_state_works_once(smart_app, fake_ehr):
    client = smart_app().test_client()
    started = launch(client, fake_ehr.iss)
    back = authorize(started.headers["Location"])
    assert callback(client, back).status_code == 200
    again = callback(client, back)
    assert again.status_code == 400
    assert "unknown or has expired" in again.get_data(as_text=True)


def test_wrong_state_is_400_and_no_code_is_exchanged(smart_app, fake_ehr):
    client = smart_app().test_client()
    back = authorize(launch(client, fake_ehr.iss).headers["Location"])
    answer = callback(client, back, state="not-the-state-we-issued")
    assert answer.status_code == 400
    assert "unknown or has expired" in answer.get_data(as_text=True)
    assert not [r for r in fake_ehr.requests if r["path"] == "/auth/token"]
    assert callback(client, back).status_code == 200  # the real state still works afterwards


def test_missing_state_is_400(smart_app):
    assert smart_app().test_client().get("/trend/callback?code=abc").status_code == 400


def test_pkce_mismatch_is_refused_by_the_ehr_and_shown_as_a_clear_error(smart_app, fake_ehr):
    fake_ehr.tamper_challenge = True
    client = smart_app().test_client()
    answer = full_flow(client, fake_ehr)
    html = answer.get_data(as_text=True)
    assert answer.status_code == 502
    assert fake_ehr.token_errors == ["invalid_grant"]
    assert "token endpoint refused the authorization (HTTP 400 (invalid_grant))" in html
    assert "Traceback" not in html and answer.mimetype == "text/html"
    assert fake_ehr.fhir_requests() == []


def test_issuer_not_allowed_is_400_without_any_request(smart_app, fake_ehr):
    client = smart_app(allowed_issuers=["https://ehr.hospital.example.org/fhir"]).test_client()
    answer = launch(client, fake_ehr.iss)
    assert answer.status_code == 400
    assert "smart.allowed_issuers" in answer.get_data(as_text=True)
    assert fake_ehr.requests == []


def test_allowed_issuer_compared_without_trailing_slash(smart_app, fake_ehr):
    client = smart_app(allowed_issuers=[fake_ehr.iss + "/"]).test_client()
    assert launch(client, fake_ehr.iss).status_code == 302


def test_http_issuer_refused_when_fhir_allow_http_is_false(make_app, fake_ehr):
    app = make_app(fhir={"allow_http": False})
    register_smart(
        app,
        {
            **app.config["CDS"],
            "smart": {"enabled": True, "client_id": CLIENT_ID, "allowed_issuers": [fake_ehr.iss]},
        },
    )
    answer = launch(app.test_client(), fake_ehr.iss)
    assert answer.status_code == 400 and fake_ehr.requests == []


def test_expired_session_is_400(smart_app, fake_ehr):
    app = smart_app(session_ttl_seconds=120)
    now = [1000.0]
    app.extensions["smart"].sessions = MemorySessionStore(clock=lambda: now[0])
    client = app.test_client()
    back = authorize(launch(client, fake_ehr.iss).headers["Location"])
    now[0] += 121
    answer = callback(client, back)
    assert answer.status_code == 400
    assert "expired" in answer.get_data(as_text=True)
    assert not [r for r in fake_ehr.requests if r["path"] == "/auth/token"]


def test_callback_from_another_browser_is_400(smart_app, fake_ehr):
    app = smart_app()
    back = authorize(launch(app.test_client(), fake_ehr.iss).headers["Location"])
    answer = callback(app.test_client(), back)  # a fresh client: no launch cookie
    assert answer.status_code == 400
    assert "does not belong to the browser" in answer.get_data(as_text=True)
    assert not [r for r in fake_ehr.requests if r["path"] == "/auth/token"]


def test_browser_binding_can_be_turned_off(smart_app, fake_ehr):
    app = smart_app(browser_binding=False)
    back = authorize(launch(app.test_client(), fake_ehr.iss).headers["Location"])
    assert callback(app.test_client(), back).status_code == 200


def test_authorize_error_is_400(smart_app, fake_ehr):
    client = smart_app().test_client()
    back = authorize(launch(client, fake_ehr.iss).headers["Location"])
    parts = urlsplit(back)
    state = parse_qs(parts.query)["state"][0]
    answer = client.get(parts.path, query_string={"state": state, "error": "access_denied"})
    assert answer.status_code == 400 and "(access_denied)" in answer.get_data(as_text=True)


@pytest.mark.parametrize("query", [{"iss": ""}, {"launch": ""}])
def test_iss_and_launch_are_required(smart_app, fake_ehr, query):
    client = smart_app().test_client()
    answer = client.get(
        "/trend/launch", query_string={"iss": fake_ehr.iss, "launch": LAUNCH, **query}
    )
    assert answer.status_code == 400 and fake_ehr.requests == []


def test_routes_are_404_when_smart_is_not_enabled(smart_app, fake_ehr):
    client = smart_app(enabled=False).test_client()
    assert launch(client, fake_ehr.iss).status_code == 404
    assert client.get("/trend/callback?state=x&code=y").status_code == 404
    assert fake_ehr.requests == []


def test_confidential_client_uses_client_secret_basic(make_app, fake_ehr):
    fake_ehr.client_secret = "s3cret"
    app = make_app()
    register_smart(
        app,
        {
            **app.config["CDS"],
            "smart": {
                "enabled": True,
                "client_id": CLIENT_ID,
                "client_secret": "s3cret",
                "allowed_issuers": [fake_ehr.iss],
            },
        },
    )
    page = full_flow(app.test_client(), fake_ehr)
    assert page.status_code == 200
    (token_call,) = [r for r in fake_ehr.requests if r["path"] == "/auth/token"]
    assert (
        token_call["authorization"].startswith("Basic ") and "client_id" not in token_call["form"]
    )


def test_wrong_client_secret_is_a_clear_502(make_app, fake_ehr):
    fake_ehr.client_secret = "s3cret"
    app = make_app()
    register_smart(
        app,
        {
            **app.config["CDS"],
            "smart": {
                "enabled": True,
                "client_id": CLIENT_ID,
                "client_secret": "wrong",
                "allowed_issuers": [fake_ehr.iss],
            },
        },
    )
    page = full_flow(app.test_client(), fake_ehr)
    assert page.status_code == 502 and "invalid_client" in page.get_data(as_text=True)


def test_token_patient_is_authoritative_over_app_context(smart_app, fake_ehr, caplog):
    fake_ehr.app_context = "patient=someone-else"
    caplog.set_level(logging.INFO, logger="cds_service")
    page = full_flow(smart_app().test_client(), fake_ehr)
    assert page.status_code == 200 and "Synthetic, Ada" in page.get_data(as_text=True)
    assert all("someone-else" not in r["path"] for r in fake_ehr.fhir_requests())
    assert any(
        r.getMessage().startswith("smart appContext names another patient") for r in caplog.records
    )


def test_smart_configuration_without_s256_is_refused(smart_app, fake_ehr):
    fake_ehr.smart_configuration_extra = {"code_challenge_methods_supported": ["plain"]}
    answer = launch(smart_app().test_client(), fake_ehr.iss)
    assert answer.status_code == 502 and "S256" in answer.get_data(as_text=True)


def test_fhir_failure_is_a_clear_502(smart_app, fake_ehr):
    fake_ehr.resources = [r for r in fake_ehr.resources if r["resourceType"] != "Patient"]
    answer = full_flow(smart_app().test_client(), fake_ehr)
    html = answer.get_data(as_text=True)
    assert answer.status_code == 502 and "the patient could not be read from the EHR" in html
    assert "HTTP 404" in html and "Traceback" not in html


def test_redis_session_store(smart_app, fake_ehr):
    app = smart_app(session_ttl_seconds=90)
    redis_client = fakeredis.FakeRedis()
    app.extensions["smart"].sessions = RedisSessionStore(None, "test:smart:", client=redis_client)
    client = app.test_client()
    started = launch(client, fake_ehr.iss)
    (key,) = redis_client.keys("test:smart:*")
    state = parse_qs(urlsplit(started.headers["Location"]).query)["state"][0]
    assert state.encode() not in key  # stored under the state's hash
    assert 0 < redis_client.ttl(key) <= 90
    assert callback(client, authorize(started.headers["Location"])).status_code == 200
    assert redis_client.keys("test:smart:*") == []


def test_redis_down_is_503(smart_app, fake_ehr):
    import redis

    app = smart_app()
    app.extensions["smart"].sessions = RedisSessionStore(
        "redis://127.0.0.1:1/0", "test:smart:", timeout=0.2
    )
    answer = launch(app.test_client(), fake_ehr.iss)
    assert answer.status_code == 503 and "session store is unavailable" in answer.get_data(
        as_text=True
    )
    assert issubclass(redis.ConnectionError, redis.RedisError)


def test_logs_carry_no_token_state_or_patient_id(smart_app, fake_ehr, caplog):
    caplog.set_level(logging.DEBUG)
    client = smart_app().test_client()
    started = launch(client, fake_ehr.iss)
    state = parse_qs(urlsplit(started.headers["Location"]).query)["state"][0]
    assert callback(client, authorize(started.headers["Location"])).status_code == 200
    (token,) = fake_ehr.tokens
    text = "\n".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records)
    assert "smart trend rendered" in text
    for secret in (token, state, "syn-01", LAUNCH):
        assert secret not in text


def test_enabled_without_client_id_stops_startup(make_app):
    app = make_app()
    with pytest.raises(SmartConfigError, match="smart.client_id"):
        register_smart(app, {**app.config["CDS"], "smart": {"enabled": True}})


def test_register_twice_replaces_settings(smart_app, fake_ehr):
    app = smart_app(enabled=False)
    register_smart(
        app,
        {
            **app.config["CDS"],
            "smart": {"enabled": True, "client_id": CLIENT_ID, "allowed_issuers": [fake_ehr.iss]},
        },
    )
    assert launch(app.test_client(), fake_ehr.iss).status_code == 302


def test_a_refused_condition_read_only_drops_the_header_diagnosis(smart_app, fake_ehr, caplog):
    fake_ehr.resources = [r for r in fake_ehr.resources if r["resourceType"] != "Condition"]
    caplog.set_level(logging.INFO, logger="cds_service")
    original = fake_ehr._fhir

    def no_conditions(handler, path, query):
        if path == "Condition":
            return fake_ehr._send(
                handler,
                403,
                {"resourceType": "OperationOutcome", "issue": []},
                "application/fhir+json",
            )
        return original(handler, path, query)

    fake_ehr._fhir = no_conditions
    page = full_flow(smart_app().test_client(), fake_ehr)
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "may be incomplete" not in html
    assert any(r.getMessage() == "smart optional FHIR read skipped" for r in caplog.records)


def test_the_demo_trend_route_and_the_launch_routes_coexist(tmp_path, fake_ehr):
    from cds_service.demo import create_demo_app

    app = create_demo_app("127.0.0.1", 8080, tmp_path, overrides={"rules": {"watch": False}})
    try:
        register_smart(app, app.config["CDS"])  # no smart section: disabled
        client = app.test_client()
        assert client.get("/trend/syn-01").status_code == 200
        assert launch(client, fake_ehr.iss).status_code == 404
        assert fake_ehr.requests == []
    finally:
        app.extensions["cds"].store.dispose()


def test_token_response_without_patient_is_a_clear_502(smart_app, fake_ehr):
    fake_ehr.omit_patient = True
    answer = full_flow(smart_app().test_client(), fake_ehr)
    assert answer.status_code == 502
    assert "did not name a patient" in answer.get_data(as_text=True)
    assert fake_ehr.fhir_requests() == []


def test_paging_is_bounded_and_the_page_says_so(make_app, fake_ehr):
    app = make_app(limits={"max_bundle_pages": 2})
    register_smart(
        app,
        {
            **app.config["CDS"],
            "smart": {"enabled": True, "client_id": CLIENT_ID, "allowed_issuers": [fake_ehr.iss]},
        },
    )
    page = full_flow(app.test_client(), fake_ehr)
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert len([r for r in fake_ehr.fhir_requests() if r["path"] == "/fhir/Observation"]) == 2
    assert "may be incomplete" in html and "paging stopped after 2 pages" in html
