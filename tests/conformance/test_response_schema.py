"""The response gate: a card that would break CDS Hooks 2.0 never leaves the service."""

from __future__ import annotations

import copy

import pytest

from cds_service.protocol import validate_response

GOOD_CARD = {
    "uuid": "5a1f5a8e-3c1c-4a8e-9a57-0d3c5d2b1e11",
    "summary": "Severe sarcopenia: grip 14.0 kg, gait 0.6 m/s",
    "detail": "| fact | value |\n|---|---|\n| grip | 14.0 kg |",
    "indicator": "critical",
    "source": {"label": "EWGSOP2", "url": "https://doi.org/10.1093/ageing/afy169",
               "icon": "https://cds.example.org/icon.png",
               "topic": {"system": "https://sarcopenia-cds.org/CodeSystem/finding", "code": "severe-sarcopenia"}},
    "suggestions": [{"label": "Refer to dietitian", "uuid": "b9a0e1a2-0000-4000-8000-000000000001", "isRecommended": True,
                     "actions": [{"type": "create", "description": "Dietitian referral",
                                  "resource": {"resourceType": "ServiceRequest", "status": "draft"}}]}],
    "selectionBehavior": "any",
    "overrideReasons": [{"system": "https://sarcopenia-cds.org/CodeSystem/override-reason", "code": "patient-declined",
                         "display": "Patient declined"}],
    "links": [{"label": "Trend", "url": "https://cds.example.org/trend", "type": "smart", "appContext": "patient=1"}],
    "extension": {"org.sarcopenia-cds.findings": [{"code": {"system": "s", "code": "c"}}]},
}


def broken(path: list, value=None, delete=False) -> dict:
    card = copy.deepcopy(GOOD_CARD)
    node = card
    for step in path[:-1]:
        node = node[step]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return {"cards": [card]}


def test_a_complete_card_is_valid():
    assert validate_response({"cards": [GOOD_CARD]}) == []
    assert validate_response({"cards": []}) == []


@pytest.mark.req(3)
@pytest.mark.parametrize(("path", "value"), [
    (["detail"], None), (["detail"], ""), (["links"], []), (["extension"], {}), (["overrideReasons"], None),
    (["source", "url"], None),
])
def test_null_or_empty_optional_values_are_refused(path, value):
    assert validate_response(broken(path, value)) != []


@pytest.mark.req(83)
def test_summary_must_be_under_140_characters():
    assert validate_response(broken(["summary"], "x" * 139)) == []
    assert [i.expression for i in validate_response(broken(["summary"], "x" * 140))] == ["$.cards[0].summary"]


@pytest.mark.req(87, 88)
def test_indicator_is_required_and_one_of_info_warning_critical():
    assert validate_response(broken(["indicator"], "hard-stop")) != []
    assert validate_response(broken(["indicator"], delete=True)) != []


@pytest.mark.req(90, 105)
def test_source_with_label_is_required():
    assert validate_response(broken(["source"], delete=True)) != []
    assert validate_response(broken(["source", "label"], delete=True)) != []


@pytest.mark.req(107, 111)
def test_source_url_and_icon_must_be_absolute():
    assert validate_response(broken(["source", "url"], "/relative")) != []
    assert validate_response(broken(["source", "icon"], "icon.png")) != []


@pytest.mark.req(115, 216, 217, 218, 220)
def test_topic_is_a_coding_with_code_and_system_display_optional():
    assert validate_response(broken(["source", "topic", "system"], delete=True)) != []
    assert validate_response(broken(["source", "topic", "code"], 7)) != []
    assert validate_response(broken(["source", "topic", "display"], "Severe sarcopenia")) == []


@pytest.mark.req(92, 93, 96)
def test_suggestions_array_requires_selection_behavior():
    assert validate_response(broken(["selectionBehavior"], delete=True)) != []
    assert validate_response(broken(["suggestions"], {"label": "x"})) != []


@pytest.mark.req(95)
def test_selection_behavior_values():
    assert validate_response(broken(["selectionBehavior"], "at-most-one")) == []
    assert validate_response(broken(["selectionBehavior"], "all")) != []


@pytest.mark.req(98, 100, 136, 219)
def test_override_reasons_are_codings_with_display():
    assert validate_response(broken(["overrideReasons", 0, "display"], delete=True)) != []
    assert validate_response(broken(["overrideReasons"], {"code": "x"})) != []


@pytest.mark.req(117, 119, 121, 124)
def test_suggestion_fields_have_their_types():
    assert validate_response(broken(["suggestions", 0, "label"], delete=True)) != []
    assert validate_response(broken(["suggestions", 0, "uuid"], 12)) != []
    assert validate_response(broken(["suggestions", 0, "isRecommended"], "yes")) != []
    assert validate_response(broken(["suggestions", 0, "actions"], {"type": "create"})) != []


@pytest.mark.req(127, 128, 130, 131, 135)
def test_actions_have_type_description_and_a_resource_to_create():
    assert validate_response(broken(["suggestions", 0, "actions", 0, "type"], "upsert")) != []
    assert validate_response(broken(["suggestions", 0, "actions", 0, "description"], delete=True)) != []
    assert validate_response(broken(["suggestions", 0, "actions", 0, "resource"], delete=True)) != []
    assert validate_response(broken(["suggestions", 0, "actions", 0, "resource"], "ServiceRequest/1")) != []
    delete_action = {"type": "delete", "description": "Remove", "resourceId": 5}
    assert validate_response(broken(["suggestions", 0, "actions", 0], delete_action)) != []


@pytest.mark.req(103, 138, 139, 141, 142, 144, 147)
def test_links_have_label_url_type_and_app_context_only_for_smart():
    assert validate_response(broken(["links", 0, "label"], delete=True)) != []
    assert validate_response(broken(["links", 0, "url"], "trend")) != []
    assert validate_response(broken(["links", 0, "type"], delete=True)) != []
    assert validate_response(broken(["links", 0, "type"], "relative")) != []
    assert validate_response(broken(["links", 0, "appContext"], {"patient": 1})) != []
    assert validate_response(broken(["links", 0, "type"], "absolute")) != []  # absolute + appContext
    assert validate_response(broken(["links"], {"label": "x"})) != []


@pytest.mark.req(214)
def test_extension_must_be_an_object():
    assert validate_response(broken(["extension"], "org.example=1")) != []


@pytest.mark.req(75)
def test_system_actions_are_optional_and_follow_the_action_schema():
    assert validate_response({"cards": [], "systemActions": [{"type": "create", "description": "d",
                                                               "resource": {"resourceType": "Task"}}]}) == []
    assert validate_response({"cards": [], "systemActions": [{"type": "create"}]}) != []


@pytest.mark.req(80)
def test_uuid_is_a_string():
    assert validate_response(broken(["uuid"], 5)) != []
