"""Fragments and suggestion policies: one rule per decision, its card chosen by condition.

Semantics (docs/rule-pack-format.md, "Fragments and suggestion policies"): each fragment takes
the first option whose `when` holds; the policy takes its first entry whose `when` holds, else its
`default`; the combination tried first (fragments in the order written, the policy innermost)
that holds makes the finding, with the evidence of that combination's conditions.
"""

from datetime import UTC, datetime

import pytest

from cds_service.engine import EngineSettings, PackErrors, load_ruleset

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
PACK = """\
pack: {id: composed, version: 1.0.0}
references: {r: {citation: "Author A. A fixture reference for composed rules. J Test 2020;1:1-2."}}
code_systems: {loinc: http://loinc.org, test: https://example.org/test}
value_sets:
  grip-strength: [{system: loinc, code: 83174-3}]
  chair-stand: [{system: test, code: chair}]
  ecog: [{system: test, code: ecog}]
facts:
  grip: {from: Observation, codes: grip-strength, unit: kg, plausible: {above: 0, max: 150}}
  chair: {from: Observation, codes: chair-stand, unit: s, plausible: {above: 0, max: 300}}
  ecog: {from: Observation, codes: ecog, unit: "{score}", precision: 0, plausible: {min: 0, max: 5}}
parameters:
  grip_low: {unit: kg, value: 20, source: r}
  chair_slow: {unit: s, value: 15, source: r}
  ecog_supervised: {unit: "{score}", value: 2, source: r}
  ecog_bedbound: {unit: "{score}", value: 4, source: r}
conditions:
  low_grip: {fact: grip, lt: grip_low}
  slow_chair: {fact: chair, gt: chair_slow}
fragments:
  strength:
    - when: {condition: low_grip}
      text: {en: "grip {{grip}}"}
    - when: {condition: slow_chair}
      text: {en: "chair stand {{chair}}"}
suggestions:
  diet: {label: {en: Diet}}
  exercise: {label: {en: Exercise}}
  physio: {label: {en: Physiotherapy}}
  assess: {label: {en: Assess}}
suggestion_policies:
  care:
    title: {en: Care context}
    rules:
      - id: bedbound
        title: {en: Bed-bound}
        when: {fact: ecog, ge: ecog_bedbound}
        suggestions: []
        detail: {en: " Bed-bound."}
      - id: supervised
        title: {en: Supervised}
        when: {fact: ecog, ge: ecog_supervised}
        replace: {exercise: physio}
        add: [assess]
        detail: {en: " ECOG {{ecog}}: supervised."}
    default: {title: {en: Otherwise}}
rules:
  - id: weak
    finding: probable-sarcopenia
    hooks: [patient-view]
    when: {any: [{condition: low_grip}, {condition: slow_chair}]}
    fragments:
      strength: strength
      data:
        - when: {exists: ecog}
          text: {en: "ECOG known"}
        - text: {en: "ECOG not recorded"}
          suggestions: [assess]
    card:
      indicator: warning
      summary: {en: "Weak: {{strength}}; {{data}}"}
      detail: {en: "Strength low."}
      source: {label: {en: Fixture}, reference: r}
    suggestions: [diet, exercise]
    suggestion_policy: care
"""


def _rs(tmp_path, text=PACK):
    (tmp_path / "composed.yaml").write_text(text)
    return load_ruleset([tmp_path / "composed.yaml"])


def _obs(code, system, value, unit, n):
    return {
        "resourceType": "Observation",
        "id": f"o{n}",
        "status": "final",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": system, "code": code}]},
        "effectiveDateTime": "2025-05-30T10:00:00Z",
        "valueQuantity": {
            "value": value,
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        },
    }


def _evaluate(rs, grip=None, chair=None, ecog=None, **kw):
    resources = [{"resourceType": "Patient", "id": "p1", "gender": "male"}]
    if grip is not None:
        resources.append(_obs("83174-3", "http://loinc.org", grip, "kg", 1))
    if chair is not None:
        resources.append(_obs("chair", "https://example.org/test", chair, "s", 2))
    if ecog is not None:
        resources.append(_obs("ecog", "https://example.org/test", ecog, "{score}", 3))
    return rs.evaluate(
        resources,
        hook="patient-view",
        context={"patientId": "p1"},
        now=NOW,
        settings=EngineSettings(profile="none", ct_cutoffs=None),
        **kw,
    )


def _card(ev):
    (card,) = ev.cards
    return (
        card["summary"],
        card.get("detail", ""),
        [s["label"] for s in card.get("suggestions", [])],
    )


def test_the_first_fragment_option_that_holds_is_chosen(tmp_path):
    rs = _rs(tmp_path)
    summary, detail, labels = _card(_evaluate(rs, grip=15, chair=20, ecog=0))
    assert summary == "Weak: grip 15.0 kg; ECOG known"
    assert (detail.split("\n")[0], labels) == ("Strength low.", ["Diet", "Exercise"])
    summary, _, _ = _card(_evaluate(rs, grip=25, chair=20, ecog=0))
    assert summary == "Weak: chair stand 20.0 s; ECOG known"


def test_an_option_without_when_is_the_otherwise_and_adds_its_suggestions_first(tmp_path):
    summary, _, labels = _card(_evaluate(_rs(tmp_path), grip=15))
    assert summary == "Weak: grip 15.0 kg; ECOG not recorded"
    assert labels == ["Assess", "Diet", "Exercise"]  # ECOG unknown: the policy's default


def test_the_policy_takes_its_first_entry_that_holds(tmp_path):
    rs = _rs(tmp_path)
    _, detail, labels = _card(_evaluate(rs, grip=15, ecog=2))
    assert labels == ["Diet", "Physiotherapy", "Assess"]  # replace in place, add at the end
    assert detail.split("\n")[0] == "Strength low. ECOG 2: supervised."
    _, detail, labels = _card(_evaluate(rs, grip=15, ecog=4))  # ≥ 4 and ≥ 2: the first wins
    assert labels == [] and detail.split("\n")[0] == "Strength low. Bed-bound."


def test_the_finding_names_the_rule_as_written_with_the_evidence_of_its_case(tmp_path):
    ev = _evaluate(_rs(tmp_path), grip=25, chair=20, ecog=3)
    (finding,) = ev.findings
    assert finding.rule_id == "weak"
    facts = [e.get("fact") for e in finding.evidence if "parameter" not in e]
    # the `any` noted grip and chair; the chosen options noted grip/chair again and ecog;
    # the supervised entry noted ecog (the bed-bound entry, not chosen, noted nothing)
    thresholds = [(e["parameter"], e["result"]) for e in finding.evidence if "parameter" in e]
    assert ("ecog_supervised", True) in thresholds
    assert ("ecog_bedbound", False) not in thresholds
    assert "ecog" in facts


def test_no_option_holds_no_finding(tmp_path):
    assert _evaluate(_rs(tmp_path), grip=25, chair=10).findings == []


def test_the_rule_set_lists_each_case_under_the_rule_id(tmp_path):
    rs = _rs(tmp_path)
    assert {r.id for r in rs.rules} == {"weak"}
    assert len(rs.rules) == 2 * 2 * 3  # strength options × data options × (2 entries + default)
    assert rs.rules[0].key == "weak#1" and rs.rules[-1].key == "weak#12"
    assert rs.rules[0].case == ((("strength", 0), ("data", 0)), "bedbound")


def _errors(tmp_path, old, new):
    assert old in PACK
    with pytest.raises(PackErrors) as info:
        _rs(tmp_path, PACK.replace(old, new))
    return [str(e).split("composed.yaml:", 1)[1] for e in info.value.errors]


def _line(text):
    return PACK.splitlines().index(text) + 1


def test_unknown_policy_name(tmp_path):
    errors = _errors(tmp_path, "suggestion_policy: care\n", "suggestion_policy: cares\n")
    line = _line("    suggestion_policy: care")
    assert errors == [
        f"{line}:24: rule_reference_error: $.rules[0].suggestion_policy: unknown suggestion "
        "policy 'cares' (known: care)"
    ]


def test_fragment_option_with_an_unknown_condition(tmp_path):
    errors = _errors(
        tmp_path, "- when: {condition: slow_chair}", "- when: {condition: slow_chairs}"
    )
    line = _line("    - when: {condition: slow_chair}")
    assert errors == [
        f"{line}:25: rule_reference_error: $.fragments.strength[1].when.condition: unknown "
        "condition 'slow_chairs'; did you mean 'slow_chair'?"
    ]


def test_policy_without_default(tmp_path):
    errors = _errors(tmp_path, "    default: {title: {en: Otherwise}}\n", "")
    line = _line("  care:")
    assert errors == [
        f"{line + 1}:5: rule_schema_error: $.suggestion_policies.care: 'default' is a required property"
    ]


def test_undefined_template_variable_inside_a_fragment(tmp_path):
    errors = _errors(
        tmp_path, 'text: {en: "chair stand {{chair}}"}', 'text: {en: "chair stand {{chairs}}"}'
    )
    line = _line('      text: {en: "chair stand {{chair}}"}')
    assert errors == [
        f"{line}:18: rule_template_error: $.fragments.strength[1].text.en: undefined template "
        "variable {{chairs}}"
    ]


def test_unknown_shared_fragments_and_unused_fragment(tmp_path):
    errors = _errors(tmp_path, "strength: strength\n", "strength: strengths\n")
    line = _line("      strength: strength")
    assert errors == [
        f"{line}:17: rule_reference_error: $.rules[0].fragments.strength: unknown fragments "
        "'strengths' (known: strength)"
    ]
    errors = _errors(tmp_path, '"Weak: {{strength}}; {{data}}"', '"Weak: {{strength}}"')
    line = _line("      data:")
    assert errors == [
        f"{line}:7: rule_template_error: $.rules[0].fragments.data: fragment 'data' is not used "
        "in the card: write {{data}} in its summary or detail, or remove it"
    ]


def test_an_option_without_when_must_be_last(tmp_path):
    errors = _errors(
        tmp_path,
        '        - when: {exists: ecog}\n          text: {en: "ECOG known"}\n',
        '        - text: {en: "ECOG known"}\n',
    )
    assert len(errors) == 1 and errors[0].endswith(
        "rule_reference_error: $.rules[0].fragments.data[0]: fragment 'data' option 1 has no "
        "'when', so the options after it can never be chosen: give it a 'when' or move it last"
    )


def test_policy_naming_an_unknown_suggestion(tmp_path):
    errors = _errors(tmp_path, "replace: {exercise: physio}", "replace: {exercise: physiotherapy}")
    line = _line("        replace: {exercise: physio}")
    assert errors == [
        f"{line}:29: rule_reference_error: $.suggestion_policies.care.rules[1].replace.exercise: "
        "unknown suggestion 'physiotherapy'"
    ]


def test_an_entry_marked_unknown_stop_lets_no_later_entry_apply_when_unknown(tmp_path):
    text = PACK.replace(
        "        when: {fact: ecog, ge: ecog_bedbound}\n",
        "        when: {fact: ecog, ge: ecog_bedbound}\n        unknown: stop\n",
    )
    rs = _rs(tmp_path, text)
    assert _evaluate(rs, grip=15).findings == []  # ECOG unknown: bed-bound cannot be ruled out
    ev = _evaluate(rs, grip=15, ecog=2)
    (finding,) = ev.findings
    thresholds = [(e["parameter"], e["result"]) for e in finding.evidence if "parameter" in e]
    assert ("ecog_bedbound", False) in thresholds  # ruled out, and the evidence says so
    assert _card(ev)[2] == ["Diet", "Physiotherapy", "Assess"]
    assert _card(_evaluate(rs, grip=15, ecog=0))[2] == ["Diet", "Exercise"]


# ---- issue 14: several policies, coded answers, windows relative to another fact -----------------
SECOND = """\
  weighed:
    title: {en: Weighed}
    rules:
      - id: chair-known
        title: {en: Chair stand known}
        when: {exists: chair}
        replace: {diet: assess}
        detail: {en: " Chair known."}
    default: {title: {en: Otherwise}}
rules:"""


def test_two_policies_apply_in_the_order_named(tmp_path):
    text = PACK.replace("rules:\n  - id: weak", SECOND + "\n  - id: weak", 1)
    text = text.replace("suggestion_policy: care\n", "suggestion_policy: [care, weighed]\n")
    rs = _rs(tmp_path, text)
    assert len(rs.rules) == 2 * 2 * 3 * 2  # …× the second policy's entry + default
    # grip 10 (low), chair 20 (known), ECOG 2: care gives supervised (exercise -> physio, + assess),
    # then weighed replaces diet by assess (already there, so once)
    summary, detail, labels = _card(_evaluate(rs, grip=10, chair=20, ecog=2))
    assert labels == ["Assess", "Physiotherapy"]
    assert detail.startswith("Strength low. ECOG 2: supervised. Chair known.\n")
    assert rs.rules[0].case == ((("strength", 0), ("data", 0)), ("bedbound", "chair-known"))


def test_coded_answers_are_read_as_numbers(tmp_path):
    text = PACK.replace(
        'ecog: {from: Observation, codes: ecog, unit: "{score}", precision: 0,',
        'ecog: {from: Observation, codes: ecog, unit: "{score}", answers: {loinc: {LA9625-0: 3}},'
        " precision: 0,",
    )
    rs = _rs(tmp_path, text)
    coded = _obs("ecog", "https://example.org/test", 0, "{score}", 3)
    del coded["valueQuantity"]
    coded["valueCodeableConcept"] = {"coding": [{"system": "http://loinc.org", "code": "LA9625-0"}]}
    grip = _obs("83174-3", "http://loinc.org", 10, "kg", 1)
    ev = rs.evaluate(
        [{"resourceType": "Patient", "id": "p1", "gender": "male"}, grip, coded],
        hook="patient-view", context={"patientId": "p1"}, now=NOW,
        settings=EngineSettings(profile="none", ct_cutoffs=None),
    )
    assert _card(ev)[1].startswith("Strength low. ECOG 3: supervised.\n")  # 3 >= 2, not >= 4


def test_answers_need_a_known_code_system(tmp_path):
    old = 'ecog: {from: Observation, codes: ecog, unit: "{score}", precision: 0,'
    errors = _errors(tmp_path, old, old.replace("precision: 0,", "answers: {lonc: {A: 1}}, precision: 0,"))
    assert len(errors) == 1 and "unknown code system 'lonc'" in errors[0]


def test_before_needs_a_known_fact(tmp_path):
    old = "  chair: {from: Observation, codes: chair-stand, unit: s,"
    new = "  chair: {from: Observation, codes: chair-stand, before: {fact: grap, min_days: 1, max_days: 2}, unit: s,"
    errors = _errors(tmp_path, old, new)
    assert len(errors) == 1 and "unknown fact 'grap'" in errors[0]
