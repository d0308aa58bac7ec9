"""Cards: CDS Hooks 2.0 shape, grouping, suppression, de-duplicated suggestions, locales, open orders."""

import json

from cds_service.engine import EngineSettings, Suppression

from .helpers import obs, run

GRIP = obs("grip-strength", 20, "kg", 3)
CACHEXIA = [
    obs("body-weight", 64.0, "kg", 5),
    obs("body-weight", 72.0, "kg", 180),
    obs("body-height", 170, "cm", 5),
]
CRP = [obs("crp", 2.5, "mg/dL", 3), obs("albumin", 3.0, "g/dL", 3)]


def _walk(value, path="$"):
    if isinstance(value, dict):
        assert value, path
        for k, v in value.items():
            yield from _walk(v, f"{path}.{k}")
    elif isinstance(value, list):
        assert value, path
        for i, v in enumerate(value):
            yield from _walk(v, f"{path}[{i}]")
    else:
        yield path, value


def test_card_shape():
    ev = run([GRIP] + CACHEXIA + CRP)
    assert ev.cards
    for card in ev.cards:
        json.dumps(card)
        for path, value in _walk(card):
            assert value is not None and value != "", path
        assert len(card["summary"]) < 140
        assert card["indicator"] in ("info", "warning", "critical")
        assert set(card["source"]["topic"]) == {"system", "code", "display"}
        assert (
            card["extension"]["org.sarcopenia-cds.rule-pack"]["version"] == "engine-fixture@0.1.0"
        )
        for s in card.get("suggestions", []):
            assert s["uuid"] and s["label"]
            assert card["selectionBehavior"] == "any"
        for r in card.get("overrideReasons", []):
            assert r["display"] and r["code"]
        for link in card.get("links", []):
            assert link["type"] in ("absolute", "smart")


def test_grouped_findings_make_one_card_with_primary_topic():
    ev = run([GRIP] + CACHEXIA)
    assert sorted(f.code for f in ev.findings) == ["cancer-cachexia", "probable-sarcopenia"]
    assert len(ev.cards) == 1
    card = ev.cards[0]
    assert (
        card["source"]["topic"]["code"] == "probable-sarcopenia"
    )  # first of the group's list that was made
    assert [f["code"]["code"] for f in card["extension"]["org.sarcopenia-cds.findings"]] == [
        "probable-sarcopenia",
        "cancer-cachexia",
    ]
    assert "**Cancer cachexia**" in card["detail"]
    assert "| Grip strength | 20.0 kg |" in card["detail"]
    assert ev.sent[0]["primary"] == "probable-sarcopenia"
    assert ev.sent[0]["findings"] == ["probable-sarcopenia", "cancer-cachexia"]


def test_summary_text():
    ev = run([obs("grip-strength", 55, "[lbf_av]", 3)])
    assert ev.cards[0]["summary"] == "Probable sarcopenia: grip 24.9 kg (cut-off < 27 kg)"


def test_suggestions_are_deduplicated_and_computed():
    ev = run([GRIP] + CACHEXIA)
    keys = [k for s in ev.sent for k in s["suggestions"].values()]
    assert sorted(keys) == ["body-composition", "dietitian"]
    dietitian = next(s for s in ev.cards[0]["suggestions"] if s["label"].startswith("Refer"))
    # protein 1.0 × 64 = 64 g/d and 1.5 × 64 = 96 g/d
    assert dietitian["label"] == "Refer to dietitian (protein 64–96 g/d)"
    resource = dietitian["actions"][0]["resource"]
    assert resource["subject"] == {"reference": "Patient/p1"}
    assert resource["reasonCode"][0]["coding"][0]["code"] == "probable-sarcopenia"
    assert resource["note"] == [{"text": "Protein 64–96 g/d"}]
    assert set(ev.sent[0]["suggestions"]) == {s["uuid"] for s in ev.cards[0]["suggestions"]}


def test_open_referral_suppresses_the_suggestion():
    open_referral = {"service": {"code": "snomed:103699006", "status": "active"}}
    ev = run([GRIP, open_referral] + CACHEXIA)
    assert [k for s in ev.sent for k in s["suggestions"].values()] == ["body-composition"]
    done = {"service": {"code": "snomed:103699006", "status": "completed"}}
    ev = run([GRIP, done] + CACHEXIA)
    assert "dietitian" in [k for s in ev.sent for k in s["suggestions"].values()]


def test_suppressed_finding_recomposes_the_card():
    ev = run([GRIP] + CACHEXIA, suppress=Suppression(findings=frozenset({"probable-sarcopenia"})))
    assert len(ev.cards) == 1
    assert ev.cards[0]["source"]["topic"]["code"] == "cancer-cachexia"
    assert ev.suppressed == ["probable-sarcopenia"]


def test_suppressed_suggestion_is_dropped():
    ev = run([GRIP] + CACHEXIA, suppress=Suppression(suggestions=frozenset({"dietitian"})))
    assert [k for s in ev.sent for k in s["suggestions"].values()] == ["body-composition"]


def test_cards_are_ordered_by_severity():
    ev = run([GRIP] + CRP)
    assert [c["indicator"] for c in ev.cards] == ["warning", "info"]


def test_locale_zh_cn():
    settings = EngineSettings(profile="prof-a", ct_cutoffs="set-banded", locale="zh-CN")
    ev = run([GRIP], settings=settings)
    card = ev.cards[0]
    assert card["summary"].startswith("可能的肌少症")
    assert card["source"]["topic"]["display"] == "可能的肌少症"
    assert "| 测量 |" in card["detail"]
    assert card["overrideReasons"][0]["display"] == "已处理"


def test_smart_link_with_app_context():
    link = run([GRIP]).cards[0]["links"][0]
    assert link == {
        "label": "Muscle trend",
        "url": "https://cds.example.org/smart/launch",
        "type": "smart",
        "appContext": "patient=p1",
    }


def test_finding_system_is_configurable():
    settings = EngineSettings(
        profile="prof-a", ct_cutoffs="set-banded", finding_system="urn:local:findings"
    )
    assert (
        run([GRIP], settings=settings).cards[0]["source"]["topic"]["system"] == "urn:local:findings"
    )


def test_cds_hooks_card_schema_if_available():
    """Validate against the protocol room's CDS Hooks response schema when it is present."""
    import importlib
    from pathlib import Path

    import jsonschema
    import pytest

    candidates = list(
        Path(importlib.import_module("cds_service").__file__).parent.rglob("*response*.json")
    )
    if not candidates:
        pytest.skip("no CDS Hooks response schema in the tree yet")
    schema = json.loads(candidates[0].read_text())
    ev = run([GRIP] + CACHEXIA + CRP)
    jsonschema.validate({"cards": ev.cards}, schema)


def test_suggestion_without_its_data_uses_label_without_data_and_drops_numeric_fragments():
    ev = run([GRIP])  # no weight: no protein target
    dietitian = next(s for s in ev.cards[0]["suggestions"] if s["label"].startswith("Refer"))
    assert dietitian["label"] == "Refer to dietitian (no current weight for targets)"
    resource = dietitian["actions"][0]["resource"]
    assert "note" not in resource  # the fragment showing the targets is dropped (no `otherwise`)
    assert "not available" not in json.dumps(ev.cards)


def _pack_with_suggestion(tmp_path, suggestion):
    (tmp_path / "p.yaml").write_text(
        """
pack: {id: sugg, version: 1.0.0}
references: {r: {citation: "Author A. A fixture reference for suggestions. J Test 2020;1:1-2."}}
code_systems: {loinc: http://loinc.org}
value_sets: {body-weight: [{system: loinc, code: 29463-7}]}
facts:
  weight: {from: Observation, codes: body-weight, unit: kg, plausible: {above: 0, max: 350}}
rules:
  - id: r
    finding: probable-sarcopenia
    hooks: [patient-view]
    when: {missing: weight}
    card: {indicator: info, summary: {en: "x"}, source: {label: {en: x}}}
    suggestions: [s]
suggestions:
  s:
"""
        + suggestion
    )


def test_label_showing_a_fact_needs_label_without_data(tmp_path):
    import pytest

    from cds_service.engine import PackErrors, load_ruleset

    _pack_with_suggestion(tmp_path, '    label: {en: "Weight {{weight}}"}\n')
    with pytest.raises(PackErrors) as info:
        load_ruleset([tmp_path])
    assert [e.code for e in info.value.errors] == ["rule_template_error"]
    assert "label_without_data" in info.value.errors[0].message


def test_requires_and_otherwise(tmp_path):
    from cds_service.engine import EngineSettings, load_ruleset

    from .helpers import NOW

    _pack_with_suggestion(
        tmp_path,
        """    label: {en: "Refer"}
    label_without_data: {en: "Refer (weigh first)"}
    requires: [weight]
    actions:
      - type: create
        description: {en: Referral}
        resource:
          resourceType: ServiceRequest
          status: draft
          intent: proposal
          supportingInfo: [{reference: "{{weight.reference}}"}]
          note:
            - text: {$text: {en: "Weight {{weight}}"}, otherwise: {en: "No weight"}}
""",
    )
    rs = load_ruleset([tmp_path])
    ev = rs.evaluate(
        [], hook="patient-view", context={"patientId": "p"}, now=NOW, settings=EngineSettings()
    )
    suggestion = ev.cards[0]["suggestions"][0]
    assert suggestion["label"] == "Refer (weigh first)"
    resource = suggestion["actions"][0]["resource"]
    assert resource["note"] == [{"text": "No weight"}] and "supportingInfo" not in resource


def test_resource_string_mixing_text_and_fact_is_rejected(tmp_path):
    import pytest

    from cds_service.engine import PackErrors, load_ruleset

    _pack_with_suggestion(
        tmp_path,
        """    label: {en: "Refer"}
    actions:
      - type: create
        description: {en: Referral}
        resource: {resourceType: ServiceRequest, note: [{text: "Weight {{weight}}"}]}
""",
    )
    with pytest.raises(PackErrors) as info:
        load_ruleset([tmp_path])
    assert [e.code for e in info.value.errors] == ["rule_template_error"]


def test_new_uuid_is_what_uuid4_would_write(monkeypatch):
    import os
    import uuid

    from cds_service.engine import cards

    for seed in (b"\x00" * 16, b"\xff" * 16, bytes(range(16)), bytes(range(240, 256))):
        monkeypatch.setattr(os, "urandom", lambda n, seed=seed: seed[:n])
        assert cards.new_uuid() == str(uuid.UUID(bytes=seed, version=4))
    monkeypatch.undo()
    assert uuid.UUID(cards.new_uuid()).version == 4
    assert cards.new_uuid() != cards.new_uuid()
