"""Checks of the care-context keys of tests/patients/expected.yaml on a list of rendered cards.

Both runners (the engine in process and the real HTTP service) call `check_care_context`, so an
expectation means the same thing in both. The keys are described at the top of expected.yaml."""

from __future__ import annotations

import json
import re
from typing import Any

#: suggestion keys recognised from the code of the ServiceRequest each suggestion creates
SUGGESTION_BY_CODE = {
    ("http://snomed.info/sct", "103699006"): "dietitian-referral",
    ("http://snomed.info/sct", "390864007"): "exercise-referral",
    ("http://snomed.info/sct", "308447003"): "physiotherapy-referral",
    ("http://snomed.info/sct", "306237005"): "palliative-care-referral",
    ("https://sarcopenia-cds.org/CodeSystem/referral", "multidisciplinary-team"): "mdt-referral",
    ("https://sarcopenia-cds.org/CodeSystem/referral", "ct-l3-body-composition"): "ct-body-composition-analysis",
    ("https://sarcopenia-cds.org/CodeSystem/referral", "muscle-assessment"): "muscle-assessment",
}


def offered(cards: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Suggestion key → the suggestion, recognised by the code of the resource it creates."""
    found = {}
    for card in cards:
        for suggestion in card.get("suggestions", []):
            for action in suggestion.get("actions", []):
                for coding in action.get("resource", {}).get("code", {}).get("coding", []):
                    key = SUGGESTION_BY_CODE.get((coding.get("system"), coding.get("code")))
                    if key:
                        found[key] = suggestion
    return found


def _suggestion_texts(cards: list[dict[str, Any]]) -> list[str]:
    texts = []
    for card in cards:
        for suggestion in card.get("suggestions", []):
            texts.append(suggestion.get("label", ""))
            for action in suggestion.get("actions", []):
                texts.append(action.get("description", ""))
                resource = action.get("resource", {})
                texts.extend(d.get("text", "") for d in resource.get("orderDetail", []))
                texts.extend(n.get("text", "") for n in resource.get("note", []))
    return texts


def check_care_context(scenario: dict[str, Any], cards: list[dict[str, Any]]) -> None:
    """Assert the care-context keys of one scenario against the cards the service sent."""
    suggestions = offered(cards)
    if scenario.get("exercise_deferred"):
        assert not {"exercise-referral", "physiotherapy-referral"} & set(suggestions), \
            f"exercise offered although deferred: {sorted(suggestions)}"
    if scenario.get("no_protein_target"):
        assert "dietitian-referral" in suggestions, f"offered {sorted(suggestions)}"
        dietitian = json.dumps(suggestions["dietitian-referral"], ensure_ascii=False)
        assert not re.search(r"\d+(?:\.\d+)? ?g/d", dietitian), \
            f"computed protein target in {dietitian}"
    if "first_card_topic" in scenario:
        assert cards, "no card"
        assert cards[0]["source"]["topic"]["code"] == scenario["first_card_topic"]
    everything = json.dumps(cards, ensure_ascii=False).lower()
    for text in scenario.get("text_includes", []):
        assert text.lower() in everything, f"{text!r} appears in no card"
    shown = _suggestion_texts(cards)
    for text in scenario.get("suggestions_text_excludes", []):
        hits = [t for t in shown if text in t]
        assert not hits, f"{text!r} in a suggestion: {hits}"
