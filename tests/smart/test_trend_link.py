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
