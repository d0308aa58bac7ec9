"""trend_link: the Link a patient-view card carries to the trend view."""

from __future__ import annotations

import copy

import pytest

from cds_service.protocol import validate_response
from cds_service.smart import trend_link
from tests.conformance.test_response_schema import GOOD_CARD

BASE = {"base_url": "https://cds.hospital.example.org/"}


def test_production_link_is_a_smart_launch_with_app_context():
    link = trend_link({"patientId": "pat-1"}, {**BASE, "smart": {"enabled": True}}, "en")
    assert link == {
        "label": "Muscle and weight trend",
        "url": "https://cds.hospital.example.org/trend/launch",
        "type": "smart",
        "appContext": "patient=pat-1",
    }


def test_demo_link_is_absolute_to_the_patient_page():
    link = trend_link({"patientId": "syn-01"}, {**BASE, "demo": {"enabled": True}}, "en")
    assert link == {
        "label": "Muscle and weight trend",
        "url": "https://cds.hospital.example.org/trend/syn-01",
        "type": "absolute",
    }


def test_label_in_chinese_and_english_fallback():
    config = {**BASE, "smart": {"enabled": True}}
    assert trend_link({"patientId": "p"}, config, "zh-CN")["label"] == "肌肉与体重趋势图"
    assert trend_link({"patientId": "p"}, config, "fr")["label"] == "Muscle and weight trend"


def test_no_link_without_smart_base_url_or_patient():
    assert trend_link({"patientId": "p"}, {**BASE}, "en") is None  # production, smart not enabled
    assert (
        trend_link({"patientId": "p"}, {"base_url": None, "smart": {"enabled": True}}, "en") is None
    )
    assert trend_link({}, {**BASE, "smart": {"enabled": True}}, "en") is None
    assert trend_link({"patientId": "../x"}, {**BASE, "demo": {"enabled": True}}, "en") is None


@pytest.mark.parametrize("mode", [{"smart": {"enabled": True}}, {"demo": {"enabled": True}}])
def test_a_card_with_the_link_passes_the_cds_hooks_response_schema(mode):
    card = {
        **copy.deepcopy(GOOD_CARD),
        "links": [trend_link({"patientId": "p"}, {**BASE, **mode}, "zh-CN")],
    }
    assert validate_response({"cards": [card]}) == []


def _main_card(app_factory, **config):
    from tests.conftest import BASE_URL
    from tests.support.ehr import EhrClient, hook_request, prefetch_for
    from tests.support.patients import severe_sarcopenia

    ehr = EhrClient(app_factory(**config).test_client(), BASE_URL)
    body = hook_request("patient-view", "sev-1", prefetch_for(severe_sarcopenia(), ehr.templates("patient-view")))
    response = ehr.post("/cds-services/sarcopenia-patient-view", body)
    assert response.status_code == 200
    return response.get_json()["cards"][0]


def test_patient_view_cards_link_the_trend_view_by_smart_launch(make_app):
    card = _main_card(make_app, smart={"enabled": True, "client_id": "cds-trend",
                                       "allowed_issuers": ["https://ehr.test/fhir"]})
    assert card["links"][-1] == {"label": "Muscle and weight trend", "url": "http://cds.test/trend/launch",
                                 "type": "smart", "appContext": "patient=sev-1"}


def test_without_smart_there_is_no_trend_link(make_app):
    card = _main_card(make_app)
    assert all("/trend" not in link["url"] for link in card.get("links", []))
