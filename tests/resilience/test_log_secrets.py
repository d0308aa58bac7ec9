"""No patient data or secrets in the logs, on success and on every error path (issue item 4).

A request full of planted secrets (access token, JWT, name, MRN, birth date, patient id, userComment, a
resource field) goes through success, each 4xx, a 500, feedback and every FHIR fetch failure. Every log
record of every logger is captured at DEBUG and rendered as the JSON and text formatters would write it
(and with all its attributes); none of the secrets may appear. A second test does the same through the
real server process and reads gunicorn's whole stderr. The database must not hold the patient id,
name, MRN or birth date either: patient ids are stored only as keyed hashes.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from cds_service.logs import JsonFormatter, TextFormatter
from tests.conftest import BASE_URL, NOW
from tests.resilience.helpers import PV, authorization
from tests.support import tokens
from tests.support.ehr import EhrClient, hook_request, prefetch_for, shift_dates
from tests.support.fhir_server import FhirTestServer
from tests.support.patients import severe_sarcopenia
from tests.support.server import running_service

ACCESS_TOKEN = "at-PLANTED-7f3a9c11e0"
PATIENT_ID = "pt-PLANTED-4242"
NAME_FAMILY = "Quartermainezzz"
NAME_GIVEN = "Zebulonia"
MRN = "MRN-99887766"
BIRTH_DATE = "1931-07-19"
USER_COMMENT = "comment-PLANTED-Wolfsbane"
REASON_DISPLAY = "display-PLANTED-Hellebore"
RESOURCE_FIELD = "note-PLANTED-Hyacinth"
STORED_SECRETS = [PATIENT_ID, NAME_FAMILY, NAME_GIVEN, MRN, BIRTH_DATE, RESOURCE_FIELD]
FB = PV + "/feedback"


def planted_patient() -> list[dict]:
    """severe_sarcopenia() with a distinctive id, name, MRN, birth date and a note on an Observation."""
    text = json.dumps(severe_sarcopenia()).replace("sev-1", PATIENT_ID)
    resources = json.loads(text)
    patient = resources[0]
    patient.update({"name": [{"family": NAME_FAMILY, "given": [NAME_GIVEN]}], "birthDate": BIRTH_DATE,
                    "identifier": [{"system": "urn:oid:1.2.3.4.5", "value": MRN}]})
    resources[-1]["note"] = [{"text": RESOURCE_FIELD}]
    return resources


class Recorder:
    """Every token sent, so the test can look for each JWT (and its signature) in the logs."""

    def __init__(self) -> None:
        self.jwts: list[str] = []

    def token(self, aud: str, **claims) -> str:
        jwt = tokens.token(aud, **claims)
        self.jwts.append(jwt)
        return jwt

    def headers(self, base: str, path: str, **claims) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(base + path, **claims)}"}

    def secrets(self) -> list[str]:
        found = [ACCESS_TOKEN, USER_COMMENT, REASON_DISPLAY, *STORED_SECRETS]
        for jwt in self.jwts:
            found += [jwt, jwt.rsplit(".", 1)[1]]
        return found


def rendered(records: list[logging.LogRecord]) -> str:
    """Each record as the service's formatters write it, plus all of its attributes."""
    json_format, text_format = JsonFormatter(), TextFormatter()
    lines = []
    for record in records:
        lines += [json_format.format(record), text_format.format(record), record.getMessage(), repr(vars(record))]
    return "\n".join(lines)


def assert_clean(text: str, secrets: list[str]) -> None:
    leaked = [s for s in secrets if s in text]
    assert not leaked, f"leaked into the logs: {leaked}"


@pytest.fixture()
def capture_all(caplog):
    caplog.set_level(logging.DEBUG)  # the root logger: every library's records
    for name in ("cds_service", "urllib3", "requests", "werkzeug", "sqlalchemy", "alembic", "gunicorn"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def test_no_secret_reaches_the_logs_on_any_path(make_app, monkeypatch, capture_all, capfd, tmp_path):
    app = make_app(logging={"level": "DEBUG", "format": "json"})
    small = make_app(limits={"max_body_bytes": 2048}, logging={"level": "DEBUG", "format": "json"},
                     database={"url": f"sqlite:///{tmp_path / 'small.db'}"})
    capture_all.set_level(logging.DEBUG, logger="cds_service")  # create_app sets the configured level
    rec = Recorder()
    client, small_client = app.test_client(), small.test_client()
    ehr = EhrClient(client, BASE_URL)
    resources = planted_patient()
    templates = ehr.templates("patient-view")
    prefetch = prefetch_for(resources, templates)
    statuses: dict[str, int] = {}

    def post(name, path, body=None, *, data=None, content_type="application/json", headers=None, via=None,
             query=""):
        sent = headers if headers is not None else rec.headers(BASE_URL, path)
        payload = data if data is not None else json.dumps(body)
        response = (via or client).post(path + query, data=payload, content_type=content_type, headers=sent)
        statuses[name] = response.status_code
        return response

    def hook(**extra):
        body = hook_request("patient-view", PATIENT_ID, json.loads(json.dumps(prefetch)))
        body.update(extra)
        return body

    # success, cards stored
    ok = post("success", PV, hook())
    assert ok.status_code == 200 and ok.get_json()["cards"], ok.get_data(as_text=True)
    card = ok.get_json()["cards"][0]
    # success and failures through the FHIR server (token in the Authorization header, patient id in URLs)
    with FhirTestServer(resources, page_size=2) as fhir:
        fhir.delay = 3.0
        for mode in ("ok", "forever", "slow", "500", "html", "close", "outcome"):
            fhir.mode = mode
            for keep in (("patient",), ()):
                body = hook_request("patient-view", PATIENT_ID, {k: v for k, v in prefetch.items() if k in keep})
                body.update(fhirServer=fhir.base, fhirAuthorization=authorization(ACCESS_TOKEN))
                post(f"fhir-{mode}-{len(keep)}", PV, body)
        assert {r["authorization"] for r in fhir.requests} == {f"Bearer {ACCESS_TOKEN}"}
    # 400 of each kind, every one echoing a secret in the request
    post("400-not-json", PV, data=f'{{"patientId": "{PATIENT_ID}" MRN {MRN}')
    post("400-nan", PV, data=f'{{"hook": NaN, "p": "{PATIENT_ID}"}}')
    post("400-not-utf8", PV, data=f"{{\"p\": \"{NAME_FAMILY}\xff\"}}".encode("latin-1"))
    post("400-empty", PV, data="")
    post("400-array", PV, data=json.dumps([PATIENT_ID, MRN]))
    post("400-schema", PV, hook(hookInstance=f"{PATIENT_ID}-{MRN}"))
    post("400-context", PV, hook(context={"userId": NAME_FAMILY, "patientId": [PATIENT_ID, BIRTH_DATE]}))
    post("400-hook-mismatch", PV, hook(hook=f"{PATIENT_ID}-hook"))
    bad_prefetch = hook()
    bad_prefetch["prefetch"]["patient"] = f"Patient/{PATIENT_ID} {NAME_FAMILY} {MRN}"
    post("400-prefetch", PV, bad_prefetch)
    post("400-authz-without-server", PV, hook(fhirAuthorization=authorization(ACCESS_TOKEN)))
    post("400-fhir-server", PV, hook(fhirServer=f"not a url {ACCESS_TOKEN}", fhirAuthorization=authorization(ACCESS_TOKEN)))
    selection = hook_request("order-select", PATIENT_ID, prefetch_for(resources, ehr.templates("order-select")),
                             selections=[f"MedicationRequest/{MRN}"],
                             draftOrders={"resourceType": "Bundle", "type": "collection", "entry": []})
    post("400-selection", "/cds-services/sarcopenia-order-select", selection)
    # 401: no token, a malformed one, a foreign audience, expired, replayed
    post("401-missing", PV, hook(), headers={})
    post("401-malformed", PV, hook(), headers={"Authorization": f"Bearer {ACCESS_TOKEN}"})
    post("401-audience", PV, hook(), headers={"Authorization": f"Bearer {rec.token('http://elsewhere/x')}"})
    post("401-expired", PV, hook(), headers={"Authorization": f"Bearer {rec.token(BASE_URL + PV, lifetime=-120)}"})
    replayed = rec.headers(BASE_URL, PV)
    post("replay-first", PV, hook(), headers=replayed)
    post("401-replayed", PV, hook(), headers=replayed)
    post("401-claims", PV, hook(), headers=rec.headers(BASE_URL, PV, sub=PATIENT_ID, jti=""))
    # 404, 405, 412, 413, 415 (tokens in query strings as well)
    post("404-service", "/cds-services/no-such-service", hook(), query=f"?access_token={ACCESS_TOKEN}&patient={PATIENT_ID}")
    statuses["405"] = client.get(PV + f"?access_token={ACCESS_TOKEN}", headers=rec.headers(BASE_URL, PV)).status_code
    statuses["404-path"] = client.get(f"/cds-services/x/y?patient={PATIENT_ID}&access_token={ACCESS_TOKEN}",
                                      headers=rec.headers(BASE_URL, "/cds-services/x/y")).status_code
    partial = hook()
    del partial["prefetch"]["patient"]  # (only a missing Patient is 412; other keys are unavailable)
    post("412", PV, partial)
    post("413-body", PV, hook(pad="x" * 4096), via=small_client)
    post("413-prefetch", PV, json.loads(json.dumps(hook())), via=make_app(
        limits={"max_prefetch_resources": 2}, database={"url": f"sqlite:///{tmp_path / 'p.db'}"},
        logging={"level": "DEBUG", "format": "json"}).test_client())
    post("415", PV, data=f"patient={PATIENT_ID}&token={ACCESS_TOKEN}", content_type="application/x-www-form-urlencoded")
    # feedback: stored (override with a reason, accepted), duplicate, and rejected with echoed values
    override = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-28T12:00:30Z",
                "overrideReason": {"reason": {"system": "https://sarcopenia-cds.org/CodeSystem/override-reason",
                                              "code": "patient-declined", "display": REASON_DISPLAY},
                                   "userComment": USER_COMMENT}}
    post("feedback", FB, {"feedback": [override]})
    post("feedback-duplicate", FB, {"feedback": [override]})
    post("400-feedback", FB, {"feedback": [{**override, "outcome": USER_COMMENT, "card": PATIENT_ID}]})
    # 500: the engine fails with patient data in the exception
    ruleset = app.extensions["cds"].rules.current

    def explode(*args, **kwargs):
        raise KeyError(f"{NAME_GIVEN} {NAME_FAMILY} {BIRTH_DATE} {MRN} {PATIENT_ID}")

    monkeypatch.setattr(ruleset, "evaluate", explode)
    post("500", PV, hook())

    expected = {name: code for name, code in statuses.items() if name.split("-")[0].isdigit()}
    assert expected == {name: int(name.split("-")[0]) for name in expected}, statuses
    assert statuses["success"] == statuses["feedback"] == statuses["replay-first"] == 200
    assert statuses["fhir-ok-1"] == statuses["fhir-slow-1"] == 200 and statuses["fhir-slow-0"] == 412

    records = capture_all.records
    assert any(r.name.startswith("urllib3") for r in records), "library debug logs were captured too"
    answered = [json.loads(JsonFormatter().format(r)) for r in records if r.getMessage() == "hook answered"]
    assert answered, "hook events were logged"
    assert {"hookInstance", "service", "hook", "pack_version", "findings", "cards", "unavailable", "timings_ms",
            "duration_ms"} <= set(answered[0]), answered[0]
    assert set(answered[0]["timings_ms"]) >= {"fhir", "validate", "engine", "total"}
    out, err = capfd.readouterr()
    assert_clean(rendered(records) + capture_all.text + out + err, rec.secrets())
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("*.db*"))
    assert_clean(stored.decode("latin-1"), STORED_SECRETS)


@pytest.mark.slow
def test_no_secret_in_the_real_server_output(tmp_path):
    """The real process (gunicorn, DEBUG level): its whole stdout and stderr are free of the secrets."""
    rec = Recorder()
    resources = shift_dates(planted_patient(), datetime.now(UTC) - NOW)
    url = f"sqlite:///{tmp_path / 'secrets.db'}"
    env = {"SARCOPENIA_CDS_LOGGING__LEVEL": "DEBUG"}
    with running_service(url, tmp_path, extra_env=env) as (base, _process), FhirTestServer(resources) as fhir:
        discovery = requests.get(base + "/cds-services", headers=rec.headers(base, "/cds-services"), timeout=5).json()
        templates = next(s for s in discovery["services"] if s["id"] == PV.rsplit("/", 1)[1])["prefetch"]
        prefetch = prefetch_for(resources, templates)
        session = requests.Session()

        def post(path, body=None, query="", headers=None, **kwargs):
            sent = headers if headers is not None else rec.headers(base, path)
            return session.post(base + path + query, json=body, headers=sent, timeout=10, **kwargs)

        full = hook_request("patient-view", PATIENT_ID, prefetch)
        ok = post(PV, full, query=f"?access_token={ACCESS_TOKEN}")
        assert ok.status_code == 200 and ok.json()["cards"], ok.text
        card = ok.json()["cards"][0]
        for mode in ("ok", "500", "close"):
            fhir.mode = mode
            body = hook_request("patient-view", PATIENT_ID, {"patient": prefetch["patient"]})
            body.update(fhirServer=fhir.base, fhirAuthorization=authorization(ACCESS_TOKEN))
            assert post(PV, body).status_code == 200
        assert post(PV, {**full, "hookInstance": PATIENT_ID}).status_code == 400
        assert post(PV, full, headers={"Authorization": f"Bearer {ACCESS_TOKEN}"}).status_code == 401
        assert post("/cds-services/x", full, query=f"?access_token={ACCESS_TOKEN}").status_code == 404
        assert session.get(base + PV + f"?access_token={ACCESS_TOKEN}", timeout=5).status_code in (401, 405)
        missing = hook_request("patient-view", PATIENT_ID, {k: v for k, v in prefetch.items() if k != "patient"})
        assert post(PV, missing).status_code == 412
        assert post(PV, data=f"patient={PATIENT_ID}", headers={**rec.headers(base, PV),
                                                              "Content-Type": "text/plain"}).status_code == 415
        override = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                    "overrideReason": {"reason": {"code": "patient-declined", "display": REASON_DISPLAY,
                                                  "system": "https://sarcopenia-cds.org/CodeSystem/override-reason"},
                                       "userComment": USER_COMMENT}}
        assert post(FB, {"feedback": [override]}).status_code == 200
    logs = "".join(p.read_text(errors="replace") for p in Path(tmp_path).glob("server-*.log"))
    assert '"hook answered"' in logs, logs[-2000:]
    assert_clean(logs, rec.secrets())
