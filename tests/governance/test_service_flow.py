"""Through the app: an override hides a card, an audited lift brings it back, explain shows why;
feedback timestamps are bounded and suppressions scoped (issue 16 items 2 and 3).

Every refusal asserts its exact status and message, and that the next good request is answered.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from cds_service.app import create_app
from cds_service.auth.admin import token_digest
from cds_service.cli import main
from cds_service.store.models import admin_audit, feedback, suppression_lift
from tests.conftest import BASE_URL, NOW, service_config
from tests.support import tokens
from tests.support.ehr import EhrClient, hook_request, prefetch_for
from tests.support.patients import severe_sarcopenia
from tests.support.pg import temporary_database

PV = "/cds-services/sarcopenia-patient-view"
OS = "/cds-services/sarcopenia-order-sign"
REASON_SYSTEM = "https://sarcopenia-cds.org/CodeSystem/override-reason"
ISSUER_B = "https://ehr-b.test/fhir"
ADMIN_TOKEN = "admin-secret-for-tests-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PSEUDONYM_KEY = "governance-test-key"


class IssuerB(EhrClient):
    """The same EHR software at another hospital: its own issuer (same test keys)."""

    def _headers(self, path, headers):
        signed = {"Authorization": f"Bearer {tokens.token(self.base_url + path, iss=ISSUER_B)}"}
        signed.update(headers or {})
        return signed


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'governance.db'}"
        return
    with temporary_database("governance") as url:
        yield url


@pytest.fixture()
def config(database_url, tmp_path):
    return service_config(
        tmp_path, database={"url": database_url}, privacy={"pseudonym_key": PSEUDONYM_KEY},
        auth={"required": True, "issuers": [tokens.issuer_config(), {"iss": ISSUER_B, "jwks": tokens.jwks()}]},
        admin={"tokens": [{"name": "committee", "sha256": token_digest(ADMIN_TOKEN)}]},
    )


@pytest.fixture()
def app(config):
    app = create_app(config, clock=lambda: NOW)
    yield app
    app.extensions["cds"].store.dispose()


@pytest.fixture()
def ehr(app):
    return EhrClient(app.test_client(), BASE_URL)


def call(ehr, path=PV, patient="sev-1", hook_instance=None):
    body = hook_request("patient-view", patient, prefetch_for(severe_sarcopenia(), ehr.templates("patient-view")))
    if hook_instance:
        body["hookInstance"] = hook_instance
    response = ehr.post(path, body)
    assert response.status_code == 200, response.get_data(as_text=True)
    return body["hookInstance"], response.get_json()


def topics(body):
    return sorted(c["source"]["topic"]["code"] for c in body["cards"])


def override(card, at=NOW, code="patient-declined"):
    return {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "overrideReason": {"reason": {"system": REASON_SYSTEM, "code": code}}}


def post_feedback(ehr, entries, path=PV):
    return ehr.post(path + "/feedback", {"feedback": entries})


def diagnostics(response):
    return [issue["diagnostics"] for issue in response.get_json()["issue"]]


# -- an audited lift, after which the card fires again -------------------------------------------------


def test_override_hides_the_card_and_an_audited_lift_brings_it_back(app, ehr):
    _, first = call(ehr)
    shown = topics(first)
    target = first["cards"][0]
    finding = target["source"]["topic"]["code"]
    assert post_feedback(ehr, [override(target)]).status_code == 200

    hidden_call, second = call(ehr)
    assert finding not in topics(second)

    admin = app.test_client()
    listed = admin.post("/admin/suppressions/list", json={"patient": "sev-1"}, headers=ADMIN)
    assert listed.status_code == 200
    in_force = listed.get_json()["in_force"]
    assert finding in {r["target"] for r in in_force}
    assert {r["reason"] for r in in_force} == {"patient-declined"}

    explained = admin.get(f"/admin/explain/{hidden_call}", headers=ADMIN).get_json()["calls"][0]
    assert finding in [s["target"] for s in explained["detail"]["suppressed"]]
    assert {"finding": finding, "state": "suppressed", "missing": None} in explained["states"]
    assert "sev-1" not in json.dumps(explained)

    lifted = admin.post("/admin/suppressions/lift", json={"patient": "sev-1", "finding": finding,
                                                          "reason": "override entered on the wrong patient"},
                        headers=ADMIN)
    assert lifted.status_code == 200
    assert lifted.get_json()["entries"] == 1 and finding in lifted.get_json()["findings"]

    _, third = call(ehr)
    assert topics(third) == shown  # the card fires again

    store = app.extensions["cds"].store
    with store.engine.connect() as connection:
        lift = connection.execute(sa.select(suppression_lift)).one()
        actions = [(r.actor, r.action) for r in connection.execute(sa.select(admin_audit).order_by(admin_audit.c.id))]
        lifted_ids = connection.execute(sa.select(feedback.c.lift_id)).scalars().all()
    assert (lift.actor, lift.reason, lift.finding, lift.entries) == (
        "token:committee", "override entered on the wrong patient", finding, 1)
    assert lift.lifted_at == NOW
    assert lifted_ids == [lift.id]  # the feedback is kept, marked as lifted
    assert actions == [("token:committee", "suppressions.list"), ("token:committee", "explain"),
                       ("token:committee", "suppressions.lift")]
    again = admin.post("/admin/suppressions/list", json={"patient": "sev-1"}, headers=ADMIN).get_json()
    assert again["in_force"] == [] and again["lifts"][0]["actor"] == "token:committee"


def test_the_cli_lists_lifts_and_explains(app, ehr, config, monkeypatch, capsys, tmp_path):
    _, first = call(ehr)
    target = first["cards"][0]
    finding = target["source"]["topic"]["code"]
    assert post_feedback(ehr, [override(target)]).status_code == 200
    hidden_call, _ = call(ehr)
    app.extensions["cds"].store.flush_journal()
    monkeypatch.setenv("SARCOPENIA_CDS_DATABASE__URL", config["database"]["url"])
    monkeypatch.setenv("SARCOPENIA_CDS_PRIVACY__PSEUDONYM_KEY", PSEUDONYM_KEY)
    monkeypatch.setenv("USER", "operator1")
    monkeypatch.setattr("cds_service.cli_governance._now", lambda: NOW)

    assert main(["suppressions", "list", "--patient", "sev-1"]) == 0
    out = capsys.readouterr().out
    assert f"finding {finding}: hidden until" in out and "patient-declined" in out

    assert main(["explain", "--hook-instance", hidden_call]) == 0
    out = capsys.readouterr().out
    assert f"hookInstance {hidden_call}" in out and f"suppressed by earlier feedback: {finding}" in out
    assert "rules fired: " in out and "sev-1" not in out

    assert main(["suppressions", "lift", "--patient", "sev-1", "--reason", "entered in error", "--actor", "dr-x"]) == 0
    assert "1 feedback entries no longer hide anything" in capsys.readouterr().out
    assert main(["suppressions", "lift", "--patient", "sev-1", "--reason", "again"]) == 1  # nothing left to lift
    capsys.readouterr()
    _, third = call(ehr)
    assert finding in topics(third)

    out_file = tmp_path / "report.json"
    assert main(["report", "--since", "2026-11-01", "--until", "2026-11-30", "--format", "json",
                 "--out", str(out_file)]) == 0
    data = json.loads(out_file.read_text())
    rows = [r for r in data["findings"] if r["finding"] == finding]
    assert [(r["calls"], r["cards"], r["overridden"], r["suppressed"]) for r in rows] == [(3, 2, 1, 1)]
    assert main(["explain", "--hook-instance", "never-called"]) == 1


# -- /admin access ----------------------------------------------------------------------------------


def test_admin_is_off_unless_configured(tmp_path):
    """Off, /admin is an unknown path: 404 with an OperationOutcome, with an admin token or an EHR's
    JWT alike (unknown paths need no auth, as the front door's routing has it)."""
    app = create_app(service_config(tmp_path), clock=lambda: NOW)
    try:
        response = app.test_client().get("/admin/report", headers=ADMIN)
        assert response.status_code == 404
        assert response.get_json()["resourceType"] == "OperationOutcome"
        response = EhrClient(app.test_client(), BASE_URL).get("/admin/report")
        assert response.status_code == 404
    finally:
        app.extensions["cds"].store.dispose()


def test_admin_needs_a_configured_token(app, ehr):
    client = app.test_client()
    missing = client.get("/admin/report")
    assert missing.status_code == 401 and diagnostics(missing) == ["a bearer token is required for /admin"]
    wrong = client.get("/admin/report", headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 401 and diagnostics(wrong) == ["the bearer token is not valid for /admin"]
    ehr_token = client.get("/admin/report", headers={"Authorization": f"Bearer {tokens.token(BASE_URL + '/admin/report')}"})
    assert ehr_token.status_code == 401  # an EHR's CDS Hooks JWT is no operator token
    page = client.get("/admin/report?since=2026-11-01&until=2026-11-30", headers=ADMIN)
    assert page.status_code == 200 and page.mimetype == "text/html" and b"<svg" not in page.data  # no data yet
    call(ehr)
    page = client.get("/admin/report?since=2026-11-01&until=2026-11-30", headers=ADMIN)
    assert page.status_code == 200 and page.data.count(b"<svg") == 2
    bad = client.get("/admin/report?since=yesterday", headers=ADMIN)
    assert bad.status_code == 400 and diagnostics(bad) == ["since: 'yesterday' is not a date YYYY-MM-DD"]


# -- issue 16 item 2: feedback timestamps are bounded --------------------------------------------------


@pytest.mark.parametrize(("stamp", "message"), [
    ("9999-12-31T00:00:00Z",
     "$.feedback[0].outcomeTimestamp: '9999-12-31T00:00:00Z' is in the future (the service's clock reads "
     "2026-11-28T12:00:00Z, allowing 60 s of clock skew)"),
    ("2200-01-01T00:00:00Z",
     "$.feedback[0].outcomeTimestamp: '2200-01-01T00:00:00Z' is in the future (the service's clock reads "
     "2026-11-28T12:00:00Z, allowing 60 s of clock skew)"),
    ("0001-01-01T00:00:00+01:00",
     "$.feedback[0].outcomeTimestamp: '0001-01-01T00:00:00+01:00' lies outside the years 0001-9999 in UTC"),
])
def test_an_impossible_outcome_timestamp_is_a_clear_400_and_stores_nothing(app, ehr, stamp, message):
    _, body = call(ehr)
    target = body["cards"][0]
    entry = {**override(target), "outcomeTimestamp": stamp}
    response = post_feedback(ehr, [entry])
    assert response.status_code == 400
    assert diagnostics(response) == [message]
    assert response.get_json()["issue"][0]["expression"] == ["$.feedback[0].outcomeTimestamp"]
    assert app.extensions["cds"].store.stats()["feedback"] == 0
    _, after = call(ehr)  # the next call is answered, the card not hidden
    assert topics(after) == topics(body)
    assert post_feedback(ehr, [override(target)]).get_json() == {"stored": 1, "duplicates": 0}


def test_feedback_dated_before_its_card_was_sent_is_refused(ehr):
    _, body = call(ehr)
    target = body["cards"][0]
    response = post_feedback(ehr, [override(target, at=NOW - timedelta(days=3))])
    assert response.status_code == 400
    assert diagnostics(response) == [
        f"$.feedback[0].outcomeTimestamp: '2026-11-25T12:00:00Z' is before card {target['uuid']} was sent "
        "(2026-11-28T12:00:00Z, allowing 60 s of clock skew)"]
    assert post_feedback(ehr, [override(target)]).status_code == 200


def test_poisoned_feedback_already_stored_cannot_break_or_hide_later_calls(app, ehr):
    """Rows stored by the old release with such timestamps are checked again when read."""
    _, body = call(ehr)
    target = body["cards"][0]
    store = app.extensions["cds"].store
    store.flush_journal()
    with store.engine.begin() as connection:
        for n, moment in enumerate((datetime(9999, 12, 31, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC),
                                    datetime(1, 1, 1, tzinfo=UTC))):
            connection.execute(feedback.insert().values(
                card_uuid=target["uuid"], card_sent_uuid=target["uuid"], patient_pseudonym=store.pseudonymise("sev-1"),
                outcome="overridden", outcome_timestamp=moment, override_reason_system=REASON_SYSTEM,
                override_reason_code="patient-declined", accepted_suggestions=[], service_id="sarcopenia-patient-view",
                received_at=NOW, issuer=tokens.ISSUER, tenant="", user_comment=f"poison {n}"))
    _, after = call(ehr)
    assert topics(after) == topics(body)
    listed = app.test_client().post("/admin/suppressions/list", json={"patient": "sev-1"}, headers=ADMIN)
    assert listed.status_code == 200 and listed.get_json()["in_force"] == []


def test_suppression_arithmetic_cannot_overflow(config, tmp_path):
    """A period of 3,000,000 days from 2026 passes the year 9999: the window ends at the last instant."""
    config["suppression"] = {"override_days": {"patient-declined": 3_000_000}, "default_override_days": 3_000_000,
                             "accepted_referral_days": 3_000_000}
    app = create_app(config, clock=lambda: NOW)
    try:
        client = EhrClient(app.test_client(), BASE_URL)
        _, body = call(client)
        target = body["cards"][0]
        assert post_feedback(client, [override(target)]).status_code == 200
        _, after = call(client)
        assert target["source"]["topic"]["code"] not in topics(after)
        listed = app.test_client().post("/admin/suppressions/list", json={"patient": "sev-1"}, headers=ADMIN)
        assert {r["until"] for r in listed.get_json()["in_force"]} == {"9999-12-31T23:59:59.999999+00:00"}
    finally:
        app.extensions["cds"].store.dispose()


# -- issue 16 item 3: suppression, feedback and card lookup are scoped ----------------------------------


def test_another_issuer_cannot_hide_or_override_this_issuers_cards(app, ehr):
    other = IssuerB(app.test_client(), BASE_URL)
    _, a_body = call(ehr)
    _, b_body = call(other)  # the same patient id at the other hospital
    assert topics(a_body) == topics(b_body)
    b_card, a_card = b_body["cards"][0], a_body["cards"][0]
    # B overrides its own card: A's card for "the same" patient id stays
    assert post_feedback(other, [override(b_card)]).get_json() == {"stored": 1, "duplicates": 0}
    _, a_again = call(ehr)
    assert topics(a_again) == topics(a_body)
    _, b_again = call(other)
    assert b_card["source"]["topic"]["code"] not in topics(b_again)
    # B names A's card uuid: stored as feedback on an unknown card, A unaffected
    assert post_feedback(other, [override(a_card)]).get_json() == {"stored": 1, "duplicates": 0}
    _, a_third = call(ehr)
    assert topics(a_third) == topics(a_body)
    store = app.extensions["cds"].store
    with store.engine.connect() as connection:
        linked = connection.execute(
            sa.select(feedback.c.card_sent_uuid).where(feedback.c.card_uuid == a_card["uuid"])).scalar_one()
    assert linked is None


def test_feedback_posted_to_order_sign_does_not_suppress_a_patient_view_card(app, ehr):
    _, body = call(ehr)
    target = body["cards"][0]
    assert post_feedback(ehr, [override(target)], path=OS).get_json() == {"stored": 1, "duplicates": 0}
    _, after = call(ehr)
    assert topics(after) == topics(body)
    assert post_feedback(ehr, [override(target)], path=PV).status_code == 200
    _, hidden = call(ehr)
    assert target["source"]["topic"]["code"] not in topics(hidden)
